"""Old import paths of modules that moved, kept importable for one release (CHANGELOG.md).

``import revstats.torch_blocking`` (and the other names in `MOVED`) returns the module at its new
path -- the same module object, so monkeypatching and ``isinstance`` keep working -- and emits a
`DeprecationWarning` naming the new path. A meta-path finder does this instead of shim files at
the old paths, so no stale file shadows the moved one (and version control sees plain renames).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

MOVED: dict[str, str] = {
    "revstats.torch_blocking": "revstats.training.blocking",
    "revstats.torch_monitor": "revstats.training.monitor",
    "revstats.hf_callbacks": "revstats.training.hf_callbacks",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # a placeholder; exec_module swaps in the moved module

    def exec_module(self, module: ModuleType) -> None:
        warnings.warn(f"`{module.__name__}` moved to `{self.new}`; import it from there "
                      "(the old path is removed in the next release, see CHANGELOG.md)",
                      # warnings skips importlib's frames itself: 2 is the import statement
                      DeprecationWarning, stacklevel=2)
        # importlib returns what sys.modules holds after exec_module: the moved module itself
        sys.modules[module.__name__] = importlib.import_module(self.new)


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install() -> None:
    # first on the meta path: an installer's editable finder for another checkout could still
    # hold a file at the old path
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
