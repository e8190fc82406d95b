"""Paper-style summaries across runs: mean +- sd with n (the form "0.648 +- 0.009")."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MeanSD", "mean_sd"]


@dataclass(frozen=True)
class MeanSD:
    """Mean, sample standard deviation (ddof as requested) and count along one axis."""

    mean: Any
    sd: Any
    n: int
    ddof: int = 1

    def format(self, digits: int = 3) -> str:
        """'mean +- sd' for scalars, e.g. ``0.648 ± 0.009``."""
        if np.ndim(self.mean) != 0:
            raise ValueError("`format` needs a scalar summary; select one element first")
        return f"{float(self.mean):.{digits}f} ± {float(self.sd):.{digits}f}"

    def __str__(self) -> str:
        return self.format() if np.ndim(self.mean) == 0 else repr(self)

    def to_dict(self) -> dict:
        def plain(v: Any) -> Any:
            if hasattr(v, "dims"):
                return v.to_dict()
            a = np.asarray(v)
            return a.item() if a.ndim == 0 else a.tolist()

        return {"mean": plain(self.mean), "sd": plain(self.sd), "n": self.n, "ddof": self.ddof}


def _validate_mean_sd(x: Any, ddof: int) -> None:
    if isinstance(ddof, bool) or not isinstance(ddof, (int, np.integer)) or ddof < 0:
        raise ValueError(f"`ddof` must be a non-negative int, got {ddof!r}")


def mean_sd(
    x: Any, *, axis: int = -1, dim: str | Sequence[Hashable] | None = None, ddof: int = 1
) -> MeanSD:
    """Mean and standard deviation along `axis` (NumPy) or `dim` (xarray), the paper's
    "mean ± sd" across runs. sd uses ``ddof`` (default 1: the sample sd).

    Raises
    ------
    ValueError
        Fewer than ``ddof + 1`` values, NaN, or a missing `dim`.
    """
    _validate_mean_sd(x, ddof)
    if type(x).__module__.startswith("xarray."):
        from revstats._validation import check_dims, check_numeric_dtype

        check_numeric_dtype("x", x)
        if dim is None:
            raise ValueError(
                f"`dim` is required for xarray `x`; its dimensions are {', '.join(map(repr, x.dims))}"
            )
        dims = check_dims("x", x, dim)
        n = int(np.prod([x.sizes[d] for d in dims]))
        if n <= ddof:
            raise ValueError(f"`x` needs more than {ddof} values along {dims}, got {n}")
        mean = x.mean(dim=dims, skipna=False)
        sd = x.std(dim=dims, ddof=ddof, skipna=False)
        return MeanSD(mean=mean, sd=sd, n=n, ddof=ddof)
    from revstats._validation import as_real_array, pow2_scale

    arr = as_real_array("x", x)
    if arr.ndim == 0 or arr.shape[axis] <= ddof:
        raise ValueError(f"`x` needs more than {ddof} values along the axis")
    if not np.all(np.isfinite(arr)):
        raise ValueError("`x` contains NaN or infinite values: remove or impute them first")
    scale = pow2_scale(arr, axis=axis)  # exact rescaling: no overflow/underflow of squares
    scaled = arr / scale
    scale = np.squeeze(scale, axis=axis)
    mean = scaled.mean(axis=axis) * scale
    sd = scaled.std(axis=axis, ddof=ddof) * scale
    to = (lambda v: float(v)) if mean.ndim == 0 else (lambda v: v)
    return MeanSD(mean=to(mean), sd=to(sd), n=int(arr.shape[axis]), ddof=ddof)
