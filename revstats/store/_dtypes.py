"""Conversion of captured or ingested values to the store's float dtype, never silently lossy."""

from __future__ import annotations

import numpy as np

from revstats.errors import RevstatsError, RevstatsWarning

__all__ = ["STORE_DTYPES", "to_store_dtype", "warn_underflow"]

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
    warn_underflow(arr, dtype, name)
    return arr.astype(dtype, copy=False)


def warn_underflow(arr: np.ndarray, dtype, name: str) -> None:
    """Warn when converting `arr` to `dtype` turns nonzero values into 0 (underflow: e.g. 1e-320
    from a float64 log is below float32's smallest subnormal, 1.4e-45), as overflow is refused."""
    target = np.dtype(dtype)
    if arr.dtype.kind != "f" or target.kind != "f" or np.dtype(arr.dtype).itemsize <= target.itemsize:
        return
    lost = (arr != 0) & (arr.astype(target) == 0)
    n = int(np.count_nonzero(lost))
    if n:
        import warnings

        example = float(np.abs(arr[lost]).max())
        warnings.warn(
            f"{name}: {n} nonzero value(s) (up to |x| = {example:.3g}) are below {target}'s "
            f"smallest subnormal ({float(np.finfo(target).smallest_subnormal):.3g}) and become 0 "
            "when stored; rescale the values if they matter",
            RevstatsWarning,
            stacklevel=3,
        )
