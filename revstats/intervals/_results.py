"""Typed results of interval and effect-size computations (`Interval`, `Effect`).

Fields follow scipy's result objects (`statistic`, `pvalue`, `low`, `high`); array inputs give
arrays, xarray inputs give `xarray.DataArray` fields whose attrs record the settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from revstats._version import __version__

__all__ = ["Effect", "Interval", "settings_attrs", "wrap_like"]


def _plain(value: Any) -> Any:
    """JSON-friendly version of a field value (scalars become Python numbers)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "to_dict") and hasattr(value, "dims"):  # xarray object
        return value.to_dict()
    arr = np.asarray(value)
    if arr.ndim == 0:
        return arr.item()
    return arr.tolist()


def _to_dict(result: Any) -> dict:
    """Every dataclass field of `result`, JSON-friendly, with the `extra` entries flattened in."""
    out = {f.name: _plain(getattr(result, f.name)) for f in fields(result) if f.name != "extra"}
    out.update({k: _plain(v) for k, v in result.extra.items()})
    return out


def _to_dataset(result: Any, names: tuple[str, ...]) -> Any:
    """xarray.Dataset of the array fields in `names` (None fields skipped), settings in attrs."""
    import xarray as xr

    data = {}
    for name in names:
        value = getattr(result, name)
        if value is None:
            continue
        data[name] = value if isinstance(value, xr.DataArray) else xr.DataArray(np.asarray(value))
    method = result.method if isinstance(result.method, str) else "mixed"
    attrs = settings_attrs(method, result.confidence, n_resamples=result.n_resamples, seed=result.seed)
    return xr.Dataset(data, attrs=attrs)


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval.

    Attributes
    ----------
    estimate, low, high : float, ndarray or xarray.DataArray
        Point estimate and interval bounds (same shape).
    confidence : float
        Nominal two-sided coverage, e.g. 0.95.
    method : str or ndarray of str
        Method actually used. When a degenerate bootstrap distribution forced a fallback in
        some elements of a vectorised call, an array of per-element method names.
    n : int, ndarray or None
        Sample size(s) behind the estimate.
    n_resamples, seed : int or None
        Bootstrap settings (None for closed-form intervals).
    extra : dict
        Method-specific extras (e.g. `standard_error`, `df`, `sd`).
    """

    estimate: Any
    low: Any
    high: Any
    confidence: float
    method: Any
    n: Any = None
    n_resamples: int | None = None
    seed: int | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain-Python dictionary (JSON-serialisable) of every field."""
        return _to_dict(self)

    def to_dataset(self) -> Any:
        """`xarray.Dataset` with estimate, low, high; settings in attrs (for the store)."""
        return _to_dataset(self, ("estimate", "low", "high"))


@dataclass(frozen=True)
class Effect:
    """An effect size (or test) with a confidence interval.

    Attributes
    ----------
    estimate, low, high : float, ndarray or xarray.DataArray
        Effect estimate and its interval (on the natural scale, e.g. a ratio, not its log).
    confidence : float
        Nominal two-sided coverage of ``[low, high]``.
    method : str
        How the interval (and test, if any) was computed.
    statistic, pvalue : float, ndarray or None
        Test statistic and p-value where the effect comes with a test.
    standard_error : float, ndarray or None
        Standard error on the scale the interval was built on (the log scale for ratios).
    n : Any
        Sample sizes behind the estimate.
    n_resamples, seed : int or None
        Bootstrap settings where a bootstrap was used.
    extra : dict
        Method-specific extras.
    """

    estimate: Any
    low: Any
    high: Any
    confidence: float
    method: str
    statistic: Any = None
    pvalue: Any = None
    standard_error: Any = None
    n: Any = None
    n_resamples: int | None = None
    seed: int | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain-Python dictionary (JSON-serialisable) of every field."""
        return _to_dict(self)

    def to_dataset(self) -> Any:
        """`xarray.Dataset` with estimate, low, high (and statistic, pvalue if present)."""
        return _to_dataset(self, ("estimate", "low", "high", "statistic", "pvalue"))


def settings_attrs(
    method: Any, confidence: float, *, n_resamples: int | None = None, seed: int | None = None
) -> dict:
    """The attrs every labelled output carries (method, confidence, resampling, version)."""
    attrs: dict[str, Any] = {
        "method": method if isinstance(method, str) else "mixed",
        "confidence": confidence,
        "revstats_version": __version__,
    }
    if n_resamples is not None:
        attrs["n_resamples"] = n_resamples
    if seed is not None:
        attrs["seed"] = seed
    return attrs


def wrap_like(template: Any, value: Any, attrs: dict, name: str | None = None) -> Any:
    """Return `value` as a DataArray shaped like `template` if that is xarray, else as-is.

    0-d NumPy results become Python floats so scalar calls give scalar fields.
    """
    import xarray as xr

    if isinstance(template, xr.DataArray):
        out = template.copy(data=np.broadcast_to(value, template.shape).copy())
        out.attrs = dict(attrs)
        if name is not None:
            out.name = name
        return out
    arr = np.asarray(value)
    if arr.ndim == 0 and arr.dtype.kind in "fiub":
        return float(arr)
    return arr
