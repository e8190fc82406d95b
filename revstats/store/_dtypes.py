"""Conversion of captured or ingested values to the store's float dtype, never silently lossy."""

from __future__ import annotations

import numpy as np

from revstats.errors import RevstatsError

__all__ = ["STORE_DTYPES", "to_store_dtype"]

STORE_DTYPES = ("float32", "float16")


def to_store_dtype(values, dtype: str, *, name: str = "activations") -> np.ndarray:
    """Return `values` as `dtype`, refusing NaN/inf and values beyond the dtype's finite range
    (float16: |x| > 65504; float32: |x| > 3.4e38, e.g. from a float64 log)."""
    if dtype not in STORE_DTYPES:
        raise ValueError(f"`dtype` must be 'float32' or 'float16', got {dtype!r}")
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiub":
        raise RevstatsError(f"{name} have dtype {arr.dtype}, not numeric: store numbers only")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise RevstatsError(f"{name} contain NaN or inf: refusing to store them")
    limit = float(np.finfo(dtype).max)
    peak = float(np.abs(arr).max(initial=0))
    if peak > limit:
        hint = "store as float32 (`--store-dtype float32`)" if dtype == "float16" else \
            "rescale the values"
        raise RevstatsError(
            f"{name} reach |x| = {peak:.4g}, beyond {dtype}'s {limit:.4g}: {hint}"
        )
    return arr.astype(dtype, copy=False)
