"""Modules that moved (CHANGELOG.md) stay importable at their old paths, with a DeprecationWarning."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

import revstats
from revstats._moved import MOVED, MOVED_PRIVATE

ALL = {**MOVED, **MOVED_PRIVATE}


def test_moved_targets_exist_and_old_files_are_gone():
    import pathlib

    top = pathlib.Path(revstats.__path__[0])
    for old, new in ALL.items():
        assert not (top / f"{old.split('.')[-1]}.py").exists(), f"{old}: a stale file shadows the alias"
        path = top.parent.joinpath(*new.split("."))
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), (
            f"{new} (the new home of {old}) is missing")


@pytest.mark.parametrize("old", sorted(ALL))
def test_old_path_warns_and_is_the_same_module(old):
    if "training" in ALL[old]:
        pytest.importorskip("torch")
    if "hf_" in old:
        pytest.importorskip("transformers")
    code = (
        "import importlib, warnings, sys\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        f"new = importlib.import_module({ALL[old]!r})\n"
        "try:\n"
        f"    importlib.import_module({old!r})\n"
        "except DeprecationWarning as w:\n"
        "    print('warned', w)\n"
        "warnings.simplefilter('ignore', DeprecationWarning)\n"
        f"old = importlib.import_module({old!r})\n"
        f"print(old is new, new.__name__, new.__spec__.name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("warned") and ALL[old] in lines[0], out.stdout + out.stderr
    assert lines[1] == f"True {ALL[old]} {ALL[old]}", out.stdout


def test_from_import_of_a_moved_name_points_at_the_import():
    pytest.importorskip("torch")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sys.modules.pop("revstats.torch_monitor", None)
        from revstats.torch_monitor import TorchMonitor  # noqa: F401
    dep = [w for w in caught if issubclass(w.category, DeprecationWarning)
           and "revstats.training.monitor" in str(w.message)]
    assert dep and dep[0].filename == __file__, [(w.filename, str(w.message)) for w in caught]


def test_training_package_exports_lazily():
    code = ("import sys, revstats.training as t\n"
            "print('torch' in sys.modules, sorted(t.__all__) == t.__all__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
    pytest.importorskip("torch")
    from revstats.training import TorchMonitor, block_reversion
    from revstats.training.blocking import block_reversion as b
    from revstats.training.monitor import TorchMonitor as m

    assert block_reversion is b and TorchMonitor is m
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import revstats.training as t

        t.nope  # noqa: B018
