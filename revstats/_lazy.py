"""Deferred imports of heavy dependencies (issue 17.2: `import revstats` stays light).

``stats = lazy_module("scipy.stats")`` binds a stand-in that imports the real module on first
attribute access, so module-level code can keep writing ``stats.t.ppf(...)`` while the import
cost (scipy.stats: ~1 s on a loaded 2-core machine) is paid only by the functions that need it.
Unlike `importlib.util.LazyLoader` it puts nothing in `sys.modules` until the module is used.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any


class _LazyModule:
    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def _load(self) -> ModuleType:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return self._module

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded yet"
        return f"<lazy module {self._name!r} ({state})>"


def lazy_module(name: str) -> Any:
    """A stand-in for ``import name`` that imports it on first attribute access."""
    return _LazyModule(name)


if TYPE_CHECKING:
    from scipy import stats as scipy_stats
else:
    scipy_stats = lazy_module("scipy.stats")
