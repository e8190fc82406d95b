"""revstats: statistics for fine-tuning reversion.

The core stays light: importing it loads numpy, scipy, xarray, zarr and dask, never torch,
click, matplotlib, `sims` or `analysis` (tested in tests/unit/test_imports.py).
"""

from __future__ import annotations

from revstats import _moved, effects, geometry, intervals, nulls, scheduler, store
from revstats._version import __version__
from revstats.errors import DegenerateDataWarning, RevstatsError, SchemaError
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

_moved.install()

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
