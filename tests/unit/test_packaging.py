"""The wheel ships `revstats.sims` / `revstats.analysis` only, and works beside a foreign `analysis/`.

`sims/` and `analysis/` are top-level folders of the repository, installed under the `revstats`
namespace (issue 18.3): a research repository with its own `analysis/` or `sims/` package must not
break `revstats analyze`. The wheel test builds a real non-editable wheel from a copy of the
checkout, installs it into a fresh venv that borrows the dev venv's dependencies (a `.pth` line,
`pip install --no-deps`), and runs the CLI and an import from a directory holding foreign
`analysis/` and `sims/` packages (also on PYTHONPATH). It takes ~10 s, so it is marked `wheel`
(deselect with `-m "not wheel"`) but runs in `make test`.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Every Python file of the repository (the checkout's own copies; revstats/sims and
# revstats/analysis are symlinks to them and are not walked twice).
SCANNED = ("revstats", "sims", "analysis", "tests", "benchmarks", "examples")


def _python_files() -> list[pathlib.Path]:
    files = []
    for top in SCANNED:
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT)
            if rel.parts[:2] in (("revstats", "sims"), ("revstats", "analysis")):
                continue
            files.append(path)
    return files


def _top_level_sims_or_analysis(tree: ast.AST) -> list[str]:
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.split(".")[0] in {"sims", "analysis"}]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in {"sims", "analysis"}:
                bad.append(node.module)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None)
              in {"importorskip", "import_module"} and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and node.args[0].value.split(".")[0] in {"sims", "analysis"}):
            bad.append(node.args[0].value)
    return bad


def test_no_top_level_sims_or_analysis_imports():
    offenders = []
    for path in _python_files():
        bad = _top_level_sims_or_analysis(ast.parse(path.read_text(), str(path)))
        if bad:
            offenders.append(f"{path.relative_to(ROOT)}: {sorted(set(bad))}")
    assert not offenders, (
        "import the simulator and the pipelines as `revstats.sims` / `revstats.analysis` "
        f"(the wheel installs no top-level `sims`/`analysis`): {offenders}")


def test_no_top_level_imports_in_docs():
    offenders = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            s = line.strip()
            if s.startswith(("from sims", "import sims", "from analysis", "import analysis")) \
                    or "python -m sims" in s or "python -m analysis" in s:
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {s}")
    assert not offenders, offenders


def test_checkout_resolves_the_namespace_to_this_worktree():
    # Several worktrees can share one venv whose editable install points at another checkout:
    # revstats.sims / revstats.analysis must come from the checkout on sys.path (the symlinks),
    # never through the installer's path mapping.
    code = ("import revstats, revstats.sims, revstats.analysis.pipeline as p\n"
            "print(revstats.__file__); print(revstats.sims.__file__); print(p.__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in out.stdout.split():
        assert pathlib.Path(line).resolve().is_relative_to(ROOT), out.stdout
    for link, target in (("sims", "../sims"), ("analysis", "../analysis")):
        path = ROOT / "revstats" / link
        assert path.is_symlink() and os.readlink(path) == target, (
            f"revstats/{link} must be the relative symlink -> {target} (see docs/ARCHITECTURE.md)")


def _copy_checkout(dest: pathlib.Path) -> pathlib.Path:
    """A clean copy (no build/, egg-info, caches), so a stale build dir cannot leak into the wheel."""
    ignore = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__",
                                    ".*_cache", ".hypothesis", "*.zarr", "revstats-demo")
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "revstats", "sims", "analysis"):
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(p, src / name)
    return src


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    import importlib.util

    assert importlib.util.find_spec("setuptools") is not None, (
        "building the wheel without build isolation needs setuptools in this venv: "
        "pip install -e '.[dev]' (the dev extra lists it)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = _copy_checkout(tmp)
    out = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(out), str(src)],
                   check=True, capture_output=True, text=True)
    (whl,) = out.glob("revstats-*.whl")
    return whl


@pytest.mark.wheel
def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"revstats"}, f"the wheel installs top-level {sorted(tops - {'revstats'})}"
    for needed in ("revstats/sims/__init__.py", "revstats/sims/organism/__init__.py",
                   "revstats/analysis/pipeline.py", "revstats/analysis/results.schema.json",
                   "revstats/py.typed", "revstats/cli/__init__.py"):
        assert needed in names, f"{needed} missing from the wheel"


@pytest.mark.wheel
def test_wheel_install_beside_a_foreign_analysis_package(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    vpy = venv / "bin" / "python"
    purelib = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # the dev venv's dependencies (numpy, xarray, ...): a plain path line, so the dev venv's own
    # .pth files (e.g. an editable revstats of another checkout) are NOT processed
    dev_paths = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    pathlib.Path(purelib, "_dev_deps.pth").write_text("".join(f"{p}\n" for p in dev_paths))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(vpy), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, capture_output=True, text=True)

    work = tmp_path / "research"
    for pkg in ("analysis", "sims"):
        (work / pkg).mkdir(parents=True)
        (work / pkg / "__init__.py").write_text(
            f"raise ImportError('the foreign {pkg} package was imported')\n")
    env = {**os.environ, "PYTHONPATH": str(work)}
    env.pop("PYTHONHOME", None)

    code = ("import revstats, revstats.analysis, revstats.analysis.pipeline, revstats.sims\n"
            "print(revstats.__file__); print(revstats.analysis.__file__)")
    out = subprocess.run([str(vpy), "-c", code], cwd=work, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for line in out.stdout.split():
        assert pathlib.Path(line).resolve().is_relative_to(pathlib.Path(purelib).resolve()), out.stdout

    from revstats.analysis.testing import write_synthetic_store

    store = write_synthetic_store(str(tmp_path / "s.zarr"), layers=("a",), runs_per_arm=3)
    res = tmp_path / "res.json"
    for cmd in ([str(venv / "bin" / "revstats")], [str(vpy), "-m", "revstats"]):
        out = subprocess.run([*cmd, "analyze", store, "--json", str(res), "--n-resamples", "100"],
                             cwd=work, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        assert json.loads(res.read_text())["store"]["path"] == store
        res.unlink()
