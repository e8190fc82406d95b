"""Old import paths of modules that moved, kept importable for one release (CHANGELOG.md).

``import revstats.torch_blocking`` (and the other names in `MOVED`) returns the module at its new
path -- the same module object, so monkeypatching and ``isinstance`` keep working -- and emits a
`DeprecationWarning` naming the new path. A meta-path finder does this instead of shim files at
the old paths, so no stale file shadows the moved one (and version control sees plain renames).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from importlib.abc import Loader

MOVED: dict[str, str] = {
    "revstats.torch_blocking": "revstats.training.blocking",
    "revstats.torch_monitor": "revstats.training.monitor",
    "revstats.hf_callbacks": "revstats.training.hf_callbacks",
    "revstats.schema": "revstats.store.schema",
    "revstats.ingest": "revstats.store.ingest",
}
# Private modules regrouped into their concept's package (issue 15.3). Not public API: these
# aliases only keep code written against the old layout working while branches merge; remove
# them once nothing in the repository warns.
MOVED_PRIVATE: dict[str, str] = {
    "revstats._np_geometry": "revstats.geometry._np",
    "revstats._null_types": "revstats.nulls._types",
    "revstats._cosine_law": "revstats.nulls._cosine_law",
    "revstats._bootstrap": "revstats.intervals._bootstrap",
    "revstats._proportions": "revstats.intervals._proportions",
    "revstats._summary": "revstats.intervals._summary",
    "revstats._results": "revstats.intervals._results",
    "revstats._cluster_proportion": "revstats.intervals._cluster_proportion",
    "revstats._trend": "revstats.effects._trend",
    "revstats._calibration": "revstats.calibration",
    "revstats._coverage": "revstats.calibration._coverage",
    "revstats._chunkio": "revstats.store._chunkio",
    "revstats._dtypes": "revstats.store._dtypes",
    "revstats._torch_probes": "revstats.training._probes",
}
_ALL = {**MOVED, **MOVED_PRIVATE}


class _AliasLoader:  # the loader protocol (importlib.abc is not imported: startup cost)
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


class MovedModuleFinder:  # the meta-path finder protocol
    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        new = _ALL.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, cast("Loader", _AliasLoader(new)))


def install() -> None:
    # first on the meta path: an installer's editable finder for another checkout could still
    # hold a file at the old path
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
