"""The dependency rule of docs/ARCHITECTURE.md holds, and importing revstats stays light.

Floors, bottom up: the core (`revstats/` without `cli/`; `capture/` and `training/` are its torch
rooms) <- `revstats.sims` <- `revstats.analysis` <- `revstats.cli` (the composition root, reached
only through the `revstats` entry point / `python -m revstats`). No floor imports one above it,
not even inside a function; heavy dependencies load when a function that needs them runs.
"""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PKG = ROOT / "revstats"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _modules_after(code: str) -> set[str]:
    code = f"{code}\nimport sys\nprint('\\n@@modules@@', ' '.join(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=_env(), check=True)
    return set(out.stdout.rpartition("@@modules@@")[2].split())


def _loaded(mods: set[str], names) -> list[str]:
    return sorted(n for n in names if n in mods)


# --- what a fresh interpreter has loaded -------------------------------------------------------

NEVER_ON_IMPORT = ("torch", "click", "rich", "matplotlib", "transformers", "peft", "statsmodels",
                   "scipy.stats", "zarr", "numcodecs", "dask", "distributed", "numba", "llvmlite",
                   "revstats.sims", "revstats.analysis", "revstats.cli", "revstats.training",
                   "revstats.capture", "sims", "analysis")


def test_import_revstats_is_light():
    mods = _modules_after("import revstats")
    assert not _loaded(mods, NEVER_ON_IMPORT), f"import revstats pulled in {_loaded(mods, NEVER_ON_IMPORT)}"


def test_statistics_api_does_not_load_the_heavy_dependencies():
    # the statistics rooms and the framework-free training definitions, used by name
    mods = _modules_after(
        "import revstats as rs\n"
        "rs.alignment, rs.reversion_direction, rs.nulls.isotropic_cosine, rs.nulls.adjust_pvalues\n"
        "rs.intervals.proportion_ci, rs.intervals.bootstrap_ci, rs.effects.hedges_g\n"
        "import revstats.monitor, revstats.blocking, revstats.placebo\n")
    bad = _loaded(mods, ("torch", "click", "rich", "matplotlib", "statsmodels", "scipy.stats",
                         "zarr", "numcodecs", "dask", "distributed", "numba", "revstats.sims",
                         "revstats.analysis", "revstats.cli"))
    assert not bad, f"the statistics API pulled in {bad} at import (defer them into the functions)"


def test_store_api_does_not_load_plotting_torch_or_the_cli():
    mods = _modules_after("import revstats as rs\nrs.open_store, rs.create_store, rs.read_acts\n"
                          "import revstats.store.schema, revstats.scheduler")
    bad = _loaded(mods, ("torch", "click", "rich", "matplotlib", "statsmodels", "distributed",
                         "revstats.sims", "revstats.analysis", "revstats.cli"))
    assert not bad, bad


def test_functions_still_reach_their_deferred_dependencies():
    mods = _modules_after(
        "import revstats as rs\n"
        "assert rs.intervals.mean_ci([1.0, 2.0, 4.0]).low < 2.33\n"
        "assert 0 < rs.effects.hedges_g([1.0, 2, 3, 4], [2.0, 3, 5, 6]).high\n")
    assert "scipy.stats" in mods


_CORE_ONLY = {"revstats", "revstats._moved", "revstats._version", "revstats.errors"}
COMMANDS = ["analyze", "calibrate", "capture", "demo", "info", "ingest", "monitor-config",
            "organism", "report", "simulate"]


@pytest.mark.parametrize("argv", [["--help"], *[[c, "--help"] for c in COMMANDS]],
                         ids=lambda a: " ".join(a))
def test_help_imports_neither_the_core_nor_heavy_dependencies(argv):
    mods = _modules_after(
        "from revstats.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n")
    core = sorted(m for m in mods if m.startswith("revstats") and m not in _CORE_ONLY
                  and not m.startswith("revstats.cli"))
    heavy = _loaded(mods, ("numpy", "scipy", "xarray", "pandas", "zarr", "dask", "torch",
                           "transformers", "statsmodels", "matplotlib", "rich"))
    assert not core and not heavy, (
        f"`revstats {' '.join(argv)}` imported {core + heavy}: define options without importing "
        "the implementation (import inside the command function)")


def test_literal_cli_choices_match_their_registries():
    # choices are spelled out in the command modules so that --help imports no implementation
    from revstats.cli.organism import PROFILE_NAMES
    from revstats.sims.organism import registry

    assert sorted(PROFILE_NAMES) == sorted(registry.profile_names())


def test_commands_are_all_tested_here():
    from revstats.cli import _COMMANDS

    assert sorted(_COMMANDS) == sorted(COMMANDS)


# --- the import graph, read from the source ----------------------------------------------------


def _imports(path: pathlib.Path, *, top_level_only: bool = False) -> set[str]:
    """Absolute module names imported (`from revstats import x` counts as `revstats.x`)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _hits(names: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))


def _files(folder: pathlib.Path, exclude: tuple[str, ...] = ()) -> list[pathlib.Path]:
    """Python files under `folder` (symlinked folders are not followed: revstats/sims and
    revstats/analysis are the top-level sims/ and analysis/)."""
    out = []
    for p in sorted(folder.rglob("*.py")):
        rel = p.relative_to(ROOT).as_posix()
        if not any(rel.startswith(e) for e in exclude):
            out.append(p)
    return out


def _check(files, forbidden, *, top_level_only=False) -> list[str]:
    offenders = []
    for p in files:
        bad = _hits(_imports(p, top_level_only=top_level_only), forbidden)
        if bad:
            offenders.append(f"{p.relative_to(ROOT)} imports {bad}")
    return offenders


def test_namespace_symlinks_are_not_walked_twice():
    files = {p.relative_to(ROOT).as_posix() for p in _files(PKG)}
    assert not any(f.startswith(("revstats/sims/", "revstats/analysis/")) for f in files)
    assert any(f.startswith("revstats/nulls/") for f in files)


def test_core_never_imports_cli_sims_or_analysis():
    offenders = _check(_files(PKG, exclude=("revstats/cli/", "revstats/__main__.py")),
                       ("revstats.cli", "revstats.sims", "revstats.analysis", "sims", "analysis"))
    assert not offenders, offenders


def test_sims_never_imports_analysis_or_cli():
    offenders = _check(_files(ROOT / "sims"),
                       ("revstats.analysis", "revstats.cli", "analysis"))
    assert not offenders, offenders


def test_analysis_never_imports_cli():
    assert not _check(_files(ROOT / "analysis"), ("revstats.cli",))


def test_nothing_but_the_entry_point_imports_the_cli():
    # benchmarks/ may: bench_analyze times the `revstats analyze` command itself, in a child process
    files = [*_files(PKG, exclude=("revstats/cli/", "revstats/__main__.py")),
             *_files(ROOT / "sims"), *_files(ROOT / "analysis"), *_files(ROOT / "examples")]
    offenders = _check(files, ("revstats.cli",))
    assert not offenders, (
        f"only revstats/__main__.py (and the tests and benchmarks) import revstats.cli: {offenders}")


def test_core_modules_keep_heavy_imports_out_of_module_level():
    # click/rich belong to the CLI, matplotlib to the report, torch/transformers to the torch
    # rooms; statsmodels and scipy.stats load inside the functions that need them
    offenders = _check(_files(PKG, exclude=("revstats/cli/", "revstats/__main__.py")),
                       ("click", "rich", "matplotlib", "statsmodels", "scipy.stats"),
                       top_level_only=True)
    torch_outside = _check(
        _files(PKG, exclude=("revstats/cli/", "revstats/capture/", "revstats/training/")),
        ("torch", "transformers", "peft"), top_level_only=True)
    assert not offenders + torch_outside, offenders + torch_outside


def test_command_modules_import_only_click_at_module_level():
    allowed_prefix = ("click", "revstats.errors", "revstats.cli")
    offenders = []
    for p in _files(PKG / "cli"):
        names = _imports(p, top_level_only=True)
        third = sorted(n for n in names if n.split(".")[0] not in sys.stdlib_module_names
                       and not n.startswith(allowed_prefix) and n != "__future__"
                       and not n.startswith("__future__."))
        if third:
            offenders.append(f"{p.relative_to(ROOT)} imports {third} at module level")
    assert not offenders, offenders
