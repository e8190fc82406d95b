"""The core stays light and the dependency direction of DESIGN §2 holds."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEAVY = ("torch", "click", "matplotlib", "sims", "analysis", "transformers", "peft", "rich")


def test_import_revstats_is_light():
    code = (
        "import sys, revstats, revstats.store, revstats.schema\n"
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "", f"import revstats pulled in: {out.stdout.strip()}"


def _top_level_imports(path: pathlib.Path) -> set[str]:
    """Modules imported at module level (not inside functions: those are lazy on purpose)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _all_imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_sims_or_analysis():
    # the CLI is the composition root and may import them inside commands
    offenders = []
    for path in (ROOT / "revstats").rglob("*.py"):
        if path.name.startswith("cli"):
            continue
        bad = _all_imports(path) & {"sims", "analysis"}
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, offenders


def test_sims_never_imports_analysis():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "sims").rglob("*.py")
        if "analysis" in _all_imports(p)
    ]
    assert not offenders, offenders


def test_core_modules_do_not_import_click_or_matplotlib_at_top_level():
    offenders = []
    for path in (ROOT / "revstats").rglob("*.py"):
        if path.name.startswith("cli") or path.name == "__main__.py":
            continue
        bad = _top_level_imports(path) & {"click", "matplotlib", "rich"}
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)} at module level")
    assert not offenders, offenders
