"""revstats: statistics for fine-tuning reversion.

The core stays light: importing it loads numpy, scipy, xarray, zarr and dask, never torch,
click, matplotlib, `sims` or `analysis` (tested in tests/unit/test_imports.py).
"""

from __future__ import annotations

from revstats import nulls
from revstats._version import __version__
from revstats.errors import DegenerateDataWarning, RevstatsError, SchemaError

__all__ = [
    "DegenerateDataWarning",
    "RevstatsError",
    "SchemaError",
    "__version__",
    "nulls",
]
