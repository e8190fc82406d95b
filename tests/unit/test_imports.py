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


def _names(nodes) -> set[str]:
    """Imported module names, top-level name plus `revstats.<sub>` (so `revstats.sims` counts)."""
    names: set[str] = set()
    for node in nodes:
        mods: list[str] = []
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods = [node.module]
            if node.module == "revstats":
                mods += [f"revstats.{a.name}" for a in node.names]
        for m in mods:
            parts = m.split(".")
            names.add(parts[0])
            if parts[0] == "revstats" and len(parts) > 1:
                names.add(parts[1])
    return names


def _top_level_imports(path: pathlib.Path) -> set[str]:
    """Modules imported at module level (not inside functions: those are lazy on purpose)."""
    return _names(ast.parse(path.read_text()).body)


def _all_imports(path: pathlib.Path) -> set[str]:
    return _names(ast.walk(ast.parse(path.read_text())))


def test_core_never_imports_sims_or_analysis():
    # the CLI is the composition root and may import them inside commands
    offenders = []
    for path in (ROOT / "revstats").rglob("*.py"):
        if "cli" in path.relative_to(ROOT).parts[1:2]:
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
        if "cli" in path.relative_to(ROOT).parts[1:2] or path.name == "__main__.py":
            continue
        bad = _top_level_imports(path) & {"click", "matplotlib", "rich"}
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)} at module level")
    assert not offenders, offenders
