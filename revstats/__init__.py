"""revstats: statistics for fine-tuning reversion.

``import revstats`` is light: it loads only this file and `errors`. Every other
name -- the submodules (`revstats.geometry`, `revstats.nulls`, `revstats.intervals`,
`revstats.effects`, `revstats.store`, ...) and the functions re-exported here -- is imported on
first use (PEP 562 module ``__getattr__``), and the heavy dependencies (scipy.stats,
statsmodels, zarr, dask, matplotlib, torch, click) load only when a function that needs them
runs. `import revstats` never imports torch, click, matplotlib, `revstats.sims` or
`revstats.analysis` (tested in tests/unit/test_imports.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from revstats import _moved
from revstats.errors import DegenerateDataWarning, RevstatsError, SchemaError

_moved.install()

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and IDEs
    from revstats import effects, geometry, intervals, nulls, scheduler, store
    from revstats._version import __version__
    from revstats.geometry import (
        alignment,
        debiased_alignment,
        direction_stability,
        drift,
        per_probe_alignment,
        project_out,
        reversion_direction,
    )
    from revstats.scheduler import use_scheduler
    from revstats.store import create_store, open_store, open_writer, read_acts

# name -> module that defines it (a module maps to itself)
_LAZY: dict[str, str] = {
    "__version__": "revstats._version",
    "effects": "revstats.effects",
    "geometry": "revstats.geometry",
    "intervals": "revstats.intervals",
    "nulls": "revstats.nulls",
    "scheduler": "revstats.scheduler",
    "store": "revstats.store",
    "alignment": "revstats.geometry",
    "debiased_alignment": "revstats.geometry",
    "direction_stability": "revstats.geometry",
    "drift": "revstats.geometry",
    "per_probe_alignment": "revstats.geometry",
    "project_out": "revstats.geometry",
    "reversion_direction": "revstats.geometry",
    "use_scheduler": "revstats.scheduler",
    "create_store": "revstats.store",
    "open_store": "revstats.store",
    "open_writer": "revstats.store",
    "read_acts": "revstats.store",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'revstats' has no attribute {name!r}")
    module = importlib.import_module(target)
    value = module if target == f"revstats.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *_LAZY})


__all__ = [
    "DegenerateDataWarning",
    "RevstatsError",
    "SchemaError",
    "__version__",
    "alignment",
    "create_store",
    "debiased_alignment",
    "direction_stability",
    "drift",
    "effects",
    "geometry",
    "intervals",
    "nulls",
    "open_store",
    "open_writer",
    "per_probe_alignment",
    "project_out",
    "read_acts",
    "reversion_direction",
    "scheduler",
    "store",
    "use_scheduler",
]
