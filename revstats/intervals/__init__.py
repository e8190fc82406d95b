"""Confidence intervals: proportions, differences of proportions, Student t, bootstrap.

Every function accepts NumPy arrays (vectorised) and xarray objects (``dim=`` names the sample
dimension; several dims are stacked into one), and returns an `Interval` whose fields follow the
input type. Labelled outputs record method, confidence, n_resamples, seed and version in attrs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal

import numpy as np

from revstats._lazy import scipy_stats as stats
from revstats._validation import (
    RNGLike,
    as_real_array,
    check_choice,
    check_confidence,
    check_dims,
    normalize_rng,
    pow2_scale,
)
from revstats.errors import DegenerateDataWarning
from revstats.intervals import _bootstrap as _bs
from revstats.intervals import _proportions as _prop
from revstats.intervals._cluster_proportion import cluster_proportion_ci, cluster_rate_comparison
from revstats.intervals._results import Effect, Interval, settings_attrs, wrap_like
from revstats.intervals._summary import MeanSD, mean_sd

__all__ = [
    "Effect",
    "Interval",
    "MeanSD",
    "bootstrap_ci",
    "cluster_bootstrap_ci",
    "cluster_proportion_ci",
    "cluster_rate_comparison",
    "mean_ci",
    "mean_sd",
    "proportion_ci",
    "proportion_diff_ci",
]

ProportionMethod = Literal["wilson", "wilson_cc", "clopper_pearson", "agresti_coull", "jeffreys", "wald"]
DiffMethod = Literal["newcombe", "newcombe_cc", "wald", "miettinen_nurminen"]
BootstrapMethod = Literal["percentile", "basic", "bca"]


def _is_xarray(obj: Any) -> bool:
    return type(obj).__module__.startswith("xarray.")


def _first_xarray(*objs: Any) -> Any:
    for o in objs:
        if _is_xarray(o):
            return o
    return None


def _elementwise(kernel: Callable, args: Sequence[Any], n_out: int) -> tuple:
    """Run an elementwise NumPy kernel on arrays or (possibly dask-backed) xarray objects."""
    if _first_xarray(*args) is None:
        return kernel(*args)
    import xarray as xr

    return xr.apply_ufunc(
        kernel,
        *args,
        output_core_dims=[[]] * n_out,
        dask="parallelized",
        output_dtypes=[float] * n_out,
    )


def _seed_of(rng: RNGLike) -> int | None:
    return int(rng) if isinstance(rng, (int, np.integer)) else None


# ----------------------------------------------------------------------------- proportions


def _validate_proportion_ci(method: str, confidence: float) -> float:
    check_choice("method", method, _prop.PROPORTION_METHODS)
    return check_confidence(confidence)


def proportion_ci(
    k: Any, n: Any, *, method: ProportionMethod = "wilson", confidence: float = 0.95
) -> Interval:
    """Confidence interval for a binomial proportion p = k / n.

    Parameters
    ----------
    k, n : int, array-like or xarray.DataArray
        Successes and trials (broadcast together); 0 <= k <= n, n >= 1, whole numbers.
    method : {"wilson", "wilson_cc", "clopper_pearson", "agresti_coull", "jeffreys", "wald"}
        * ``wilson`` - score interval (Wilson 1927):
          (2np + z^2 -+ z sqrt(z^2 + 4npq)) / (2(n + z^2)); Newcombe (1998a) method 3.
        * ``wilson_cc`` - score interval with continuity correction, Newcombe (1998a) method 4.
        * ``clopper_pearson`` - inverts two one-sided binomial tests: Beta(k, n-k+1) and
          Beta(k+1, n-k) quantiles; conservative.
        * ``agresti_coull`` - Wald interval around (k + z^2/2) / (n + z^2), clipped to [0, 1].
        * ``jeffreys`` - equal-tailed Beta(k + 1/2, n - k + 1/2) interval, with L = 0 at k = 0
          and U = 1 at k = n (Brown, Cai & DasGupta 2001).
        * ``wald`` - p -+ z sqrt(pq/n), truncated to [0, 1]; for comparison only (under-covers
          at small n, see docs/coverage.md).
    confidence : float
        Two-sided level in (0, 1).

    Returns
    -------
    Interval
        ``estimate = k / n``; fields are floats, arrays or DataArrays like the input.

    Raises
    ------
    ValueError
        k > n, negative or fractional counts, n < 1, NaN, empty input, bad `confidence`.

    References
    ----------
    Newcombe RG (1998). Two-sided confidence intervals for the single proportion: comparison of
    seven methods. Stat Med 17:857-872.
    """
    conf = _validate_proportion_ci(method, confidence)
    func = _prop.SINGLE[method]

    def kernel(k_, n_):
        kk, nn = _prop.validate_counts(k_, n_)
        lo, hi = func(kk, nn, conf)
        return kk / nn, lo, hi

    template = _first_xarray(k, n)
    est, lo, hi = _elementwise(kernel, (k, n), 3)
    attrs = settings_attrs(method, conf)
    return Interval(
        estimate=_finish(est, attrs, "estimate"),
        low=_finish(lo, attrs, "low"),
        high=_finish(hi, attrs, "high"),
        confidence=conf,
        method=method,
        n=n if template is not None else _plain_int(n),
    )


def _finish(value: Any, attrs: dict, name: str) -> Any:
    """Attach attrs to labelled output; 0-d NumPy output becomes a float."""
    if _is_xarray(value):
        return _attrs(value, attrs, name)
    return wrap_like(None, value, attrs)


def _plain_int(n: Any) -> Any:
    arr = np.asarray(n)
    return int(arr) if arr.ndim == 0 else arr


def _validate_proportion_diff_ci(method: str, confidence: float) -> float:
    check_choice("method", method, _prop.DIFF_METHODS)
    return check_confidence(confidence)


def proportion_diff_ci(
    k1: Any,
    n1: Any,
    k2: Any,
    n2: Any,
    *,
    method: DiffMethod = "newcombe",
    confidence: float = 0.95,
) -> Interval:
    """Confidence interval for the difference of independent proportions p1 - p2.

    Parameters
    ----------
    k1, n1, k2, n2 : int, array-like or xarray.DataArray
        Successes and trials in group 1 and group 2.
    method : {"newcombe", "newcombe_cc", "wald", "miettinen_nurminen"}
        * ``newcombe`` - hybrid score interval, Newcombe (1998b) method 10: with Wilson limits
          (l_i, u_i) and d = p1 - p2, L = d - sqrt((p1-l1)^2 + (u2-p2)^2),
          U = d + sqrt((u1-p1)^2 + (p2-l2)^2).
        * ``newcombe_cc`` - the same from continuity-corrected Wilson limits (method 11).
        * ``wald`` - d -+ z sqrt(p1q1/n1 + p2q2/n2), truncated to [-1, 1] (method 1; for
          comparison only).
        * ``miettinen_nurminen`` - inverts the score test with the restricted MLE and the
          N/(N-1) variance factor (Miettinen & Nurminen 1985), solved by bisection.
    confidence : float
        Two-sided level in (0, 1).

    Returns
    -------
    Interval
        ``estimate = k1/n1 - k2/n2``.

    References
    ----------
    Newcombe RG (1998). Interval estimation for the difference between independent
    proportions: comparison of eleven methods. Stat Med 17:873-890.
    """
    conf = _validate_proportion_diff_ci(method, confidence)

    def kernel(k1_, n1_, k2_, n2_):
        a1, b1 = _prop.validate_counts(k1_, n1_, k_name="k1", n_name="n1")
        a2, b2 = _prop.validate_counts(k2_, n2_, k_name="k2", n_name="n2")
        a1, b1, a2, b2 = np.broadcast_arrays(a1, b1, a2, b2)
        lo, hi = _prop.diff_interval(method, a1, b1, a2, b2, conf)
        return a1 / b1 - a2 / b2, lo, hi

    template = _first_xarray(k1, n1, k2, n2)
    est, lo, hi = _elementwise(kernel, (k1, n1, k2, n2), 3)
    n_pair = (n1, n2) if template is not None else (_plain_int(n1), _plain_int(n2))
    attrs = settings_attrs(method, conf)
    return Interval(
        estimate=_finish(est, attrs, "estimate"),
        low=_finish(lo, attrs, "low"),
        high=_finish(hi, attrs, "high"),
        confidence=conf,
        method=method,
        n=n_pair,
    )


# ----------------------------------------------------------------------------- Student t


def _sample_axes(data: Any, dim: str | Sequence[Hashable] | None, name: str = "x"):
    """Return (template, core dims) for xarray input; refuse a missing `dim`."""
    if not _is_xarray(data):
        if dim is not None:
            raise TypeError(f"`dim` is for xarray input; `{name}` is a NumPy array: use `axis`")
        return None, None
    if dim is None:
        if data.ndim == 1:
            return data, (data.dims[0],)
        raise ValueError(
            f"`dim` is required for {data.ndim}-D xarray `{name}`; its dimensions are "
            f"{', '.join(map(repr, data.dims))}: pass the sample dimension(s) as `dim`"
        )
    return data, check_dims(name, data, dim)


def _stacked(arr: np.ndarray, n_core: int) -> np.ndarray:
    """Flatten the last `n_core` axes into one sample axis."""
    return arr.reshape(arr.shape[: arr.ndim - n_core] + (-1,))


def _validate_sample(x: np.ndarray, name: str, min_n: int) -> np.ndarray:
    x = as_real_array(name, x)
    if x.size == 0 or x.shape[-1] == 0:
        raise ValueError(f"`{name}` is empty: pass at least {min_n} observations")
    if x.shape[-1] < min_n:
        raise ValueError(
            f"`{name}` needs at least {min_n} observations along the sample axis, got {x.shape[-1]}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`{name}` contains NaN or infinite values: remove or impute them first")
    return x


def _validate_mean_ci(confidence: float) -> float:
    return check_confidence(confidence)


def mean_ci(
    x: Any,
    *,
    confidence: float = 0.95,
    axis: int = -1,
    dim: str | Sequence[Hashable] | None = None,
) -> Interval:
    """Student t interval for a mean: xbar -+ t_{n-1, 1-alpha/2} s / sqrt(n).

    Parameters
    ----------
    x : array-like or xarray.DataArray
        Observations along `axis` (NumPy) or `dim` (xarray; several dims are stacked).
    confidence : float
        Two-sided level in (0, 1).

    Returns
    -------
    Interval
        ``extra`` holds ``sd`` (ddof=1), ``standard_error`` and ``df``.

    Warns
    -----
    DegenerateDataWarning
        All observations equal: s = 0 and the interval has zero width.

    References
    ----------
    Student (1908). The probable error of a mean. Biometrika 6:1-25.
    """
    conf = _validate_mean_ci(confidence)
    template, core = _sample_axes(x, dim)

    def kernel(arr: np.ndarray, n_core: int = 1) -> np.ndarray:
        arr = _validate_sample(_stacked(arr, n_core), "x", 2)
        n = arr.shape[-1]
        # scale each series by a power of two (exact) so that squares neither overflow
        # (values beyond ~1e154) nor underflow to a false sd = 0 (below ~1e-154)
        scale = pow2_scale(arr)
        scaled = arr / scale
        mean = scaled.mean(axis=-1) * scale[..., 0]
        sd = scaled.std(axis=-1, ddof=1) * scale[..., 0]
        if np.any(sd == 0):
            warnings.warn(
                "`x` has all observations equal in some series: sd = 0, so the t interval has "
                "zero width there",
                DegenerateDataWarning,
                stacklevel=4,
            )
        se = sd / np.sqrt(n)
        half = stats.t.ppf(0.5 + conf / 2, n - 1) * se
        return np.stack([mean, mean - half, mean + half, sd, se, np.full_like(mean, n)], axis=-1)

    if template is None:
        arr = as_real_array("x", x)
        arr = np.moveaxis(arr, axis, -1) if arr.ndim else arr
        if arr.ndim == 0:
            raise ValueError("`x` is a scalar: pass at least 2 observations")
        res = kernel(arr)
        parts: list[Any] = [float(p) if np.ndim(p) == 0 else p for p in np.moveaxis(res, -1, 0)]
        parts[5] = int(arr.shape[-1])
    else:
        parts = _apply_core(kernel, template, core, 6)
    attrs = settings_attrs("t", conf)
    est, lo, hi, sd, se, n = (_attrs(p, attrs, nm) for p, nm in zip(parts, _NAMES6, strict=True))
    return Interval(
        estimate=est,
        low=lo,
        high=hi,
        confidence=conf,
        method="t",
        n=n,
        extra={"sd": sd, "standard_error": se, "df": n - 1},
    )


_NAMES6 = ("estimate", "low", "high", "sd", "standard_error", "n")


def _attrs(obj: Any, attrs: dict, name: str) -> Any:
    if _is_xarray(obj):
        obj.attrs = dict(attrs)
        obj.name = name
    return obj


def _apply_core(kernel: Callable, data: Any, core: tuple, n_out: int, **kwargs: Any) -> list:
    """apply_ufunc a kernel that maps (..., *core) to (..., n_out); split the last axis."""
    import xarray as xr

    res = xr.apply_ufunc(
        kernel,
        data,
        input_core_dims=[list(core)],
        output_core_dims=[["_part"]],
        dask="parallelized",
        output_dtypes=[float],
        dask_gufunc_kwargs={"output_sizes": {"_part": n_out}, "allow_rechunk": True},
        kwargs={"n_core": len(core), **kwargs},
    )
    return [res.isel(_part=i, drop=True) for i in range(n_out)]


# ----------------------------------------------------------------------------- bootstrap


def _validate_bootstrap_ci(
    statistic: Any, method: str, n_resamples: int, confidence: float, batch: int | None
) -> tuple[str | None, Callable, float, int]:
    fast, func = _bs.resolve_statistic(statistic)
    check_choice("method", method, _bs.METHODS)
    conf = check_confidence(confidence)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)):
        raise TypeError(f"`n_resamples` must be an int, got {type(n_resamples).__name__}")
    if n_resamples < 100:
        raise ValueError(f"`n_resamples` must be >= 100 (9999 recommended), got {n_resamples}")
    # Each end of the interval is a quantile of the replicates at tail probability
    # (1 - conf) / 2: with fewer than one replicate beyond it, the end is just the most extreme
    # replicate and the stated confidence is not what the interval has.
    tail = (1 - conf) / 2 * (n_resamples + 1)
    need = int(np.ceil(2 / (1 - conf))) - 1
    if tail < 1:
        raise ValueError(
            f"`confidence` {conf!r} needs at least {need} resamples (each end of the interval "
            f"must have a replicate beyond it), got `n_resamples`={n_resamples}: raise "
            f"`n_resamples` to >= {need} (10x that for stable ends) or lower `confidence`"
        )
    if tail < 2:
        warnings.warn(
            f"`confidence` {conf!r} with {n_resamples} resamples leaves about {tail:.1f} "
            f"replicate(s) beyond each end of the interval: its ends are unstable; use "
            f"`n_resamples` >= {10 * need}",
            DegenerateDataWarning,
            stacklevel=3,
        )
    batch = _bs.DEFAULT_BATCH if batch is None else int(batch)
    if batch < 1:
        raise ValueError(f"`batch` must be a positive number of elements per chunk, got {batch}")
    return fast, func, conf, batch


def bootstrap_ci(
    data: Any,
    statistic: str | Callable,
    *,
    method: BootstrapMethod = "bca",
    n_resamples: int = 9999,
    confidence: float = 0.95,
    rng: RNGLike = None,
    axis: int = -1,
    dim: str | Sequence[Hashable] | None = None,
    batch: int | None = None,
    workers: int | None = None,
) -> Interval:
    """Nonparametric bootstrap confidence interval of a statistic (one sample).

    Parameters
    ----------
    data : array-like or xarray.DataArray
        Observations along `axis` (NumPy) or `dim` (xarray; several dims are stacked into one).
        Other axes are independent series, all resampled with the same indices.
    statistic : str or callable
        A name ("mean", "median", "var", "std", "sum", "min", "max"; var/std are the plug-in
        ddof=0 versions, as ``np.var``) or a vectorised callable ``f(x, axis=-1)`` as in
        ``scipy.stats.bootstrap``. "mean", "var", "std" and the functions ``np.mean``,
        ``np.var``, ``np.std`` take a fast path that never materialises resamples.
    method : {"percentile", "basic", "bca"}
        * ``percentile`` - the alpha/2 and 1-alpha/2 quantiles of the replicates theta*.
        * ``basic`` - 2 theta - q_{1-alpha/2}, 2 theta - q_{alpha/2} (Davison & Hinkley 5.2).
        * ``bca`` - quantiles at Phi(z0 + (z0 + z_a) / (1 - a (z0 + z_a))) with bias
          z0 = Phi^-1(#{theta* < theta} / B, ties counted half) and acceleration a from the
          jackknife (Efron & Tibshirani 1993, eq. 14.14-14.15; closed form for the moments).
    n_resamples : int
        Number of bootstrap replicates B (>= 100).
    confidence : float
        Two-sided level in (0, 1).
    rng : Generator, int or None
        Seed or generator; each chunk gets a spawned child generator, so results depend on the
        seed and `batch` only (not on `workers`).
    batch : int, optional
        Elements gathered per chunk (memory bound; default 2**18).
    workers : int, optional
        Threads (NumPy releases the GIL); default min(8, cpu count).

    Returns
    -------
    Interval
        ``method`` is the method actually used: the requested one, ``"symmetric"`` where the
        fallback below applied, ``"degenerate"`` for constant replicates (an array of names
        when series differ; for xarray the per-series names are in ``extra["method"]``).

    Warns
    -----
    DegenerateDataWarning
        * All replicates equal (e.g. all-equal data): zero-width interval at the estimate.
        * One-sided distribution - the estimate lies below or above every replicate (BCa's z0
          is infinite), or the interval does not contain the estimate: Hall's (1988) symmetric
          interval theta -+ q_conf(|theta* - theta|) is returned instead. It always contains
          the estimate; it does not remove the bias of a biased plug-in statistic.

    References
    ----------
    Efron B, Tibshirani RJ (1993). An Introduction to the Bootstrap, ch. 13-14.
    Hall P (1988). On symmetric bootstrap confidence intervals. JRSS B 50:35-45.
    """
    fast, func, conf, batch = _validate_bootstrap_ci(statistic, method, n_resamples, confidence, batch)
    template, core = _sample_axes(data, dim, "data")
    generator = normalize_rng(rng)

    def kernel(arr: np.ndarray, n_core: int = 1) -> np.ndarray:
        arr = _validate_sample(_stacked(arr, n_core), "data", 2)
        lead = arr.shape[:-1]
        x2 = arr.reshape(-1, arr.shape[-1])
        theta = np.asarray(func(x2, axis=-1), dtype=float).reshape(-1)
        _bs.check_finite(theta)  # before resampling: an undefined estimate is refused at once
        reps = _bs.replicates(
            x2, fast, func, n_resamples, generator, batch=batch, workers=workers
        )
        jack = _bs.jackknife(x2, fast, func, batch=batch) if method == "bca" else None
        _bs.check_finite(theta, reps, jack)
        accel = _bs.acceleration(jack) if jack is not None else None
        return _interval_parts(theta, reps, method, conf, accel).reshape(lead + (4,))

    attrs = settings_attrs(method, conf, n_resamples=n_resamples, seed=_seed_of(rng))
    if template is None:
        arr = as_real_array("data", data)
        if arr.ndim == 0:
            raise ValueError("`data` is a scalar: pass at least 2 observations")
        res = kernel(np.moveaxis(arr, axis, -1))
        code = res[..., 3].astype(int)
        used = _bs.method_names(code, method)
        n = arr.shape[axis]
        est, lo, hi = (_scalar_or_array(res[..., i]) for i in range(3))
        extra: dict = {}
    else:
        est, lo, hi, code = _apply_core(kernel, template, core, 4)
        n = int(np.prod([template.sizes[d] for d in core]))
        names = np.array([method, "symmetric", "degenerate"], dtype=object)
        code_int = code.astype(int)
        extra = {"method": code_int.copy(data=names[code_int.data]) if not _is_lazy(code_int) else code_int}
        used = method
        for obj, nm in ((est, "estimate"), (lo, "low"), (hi, "high")):
            _attrs(obj, attrs, nm)
    return Interval(
        estimate=est,
        low=lo,
        high=hi,
        confidence=conf,
        method=used,
        n=n,
        n_resamples=int(n_resamples),
        seed=_seed_of(rng),
        extra=extra,
    )


def _interval_parts(
    theta: np.ndarray, reps: np.ndarray, method: str, conf: float, accel: np.ndarray | None
) -> np.ndarray:
    """Bootstrap kernels' output: (series, 4) = estimate, low, high, method code (as float)."""
    lo, hi, code = _bs.interval_from_replicates(theta, reps, method, conf, accel)
    return np.stack([theta, lo, hi, code.astype(float)], axis=-1)


def _scalar_or_array(v: np.ndarray) -> Any:
    return float(v) if v.ndim == 0 else v


def _is_lazy(obj: Any) -> bool:
    return type(getattr(obj, "data", None)).__module__.startswith("dask")


# ----------------------------------------------------------------------------- cluster bootstrap


def _validate_cluster_bootstrap_ci(statistic, method, n_resamples, confidence, batch):
    fast, func, conf, batch = _validate_bootstrap_ci(statistic, method, n_resamples, confidence, batch)
    return func, conf, batch


def cluster_bootstrap_ci(
    data: Any,
    statistic: str | Callable = "mean",
    *,
    method: BootstrapMethod = "percentile",
    n_resamples: int = 9999,
    confidence: float = 0.95,
    rng: RNGLike = None,
    cluster_dim: Hashable = "run",
    within_dim: str | Sequence[Hashable] | None = "example",
    two_stage: bool = True,
    batch: int | None = None,
    workers: int | None = None,
) -> Interval:
    """Hierarchical (cluster) bootstrap: resample clusters (runs), then units (probes) within.

    Each replicate draws C clusters with replacement and, if `two_stage`, W units with
    replacement within every drawn cluster; the statistic is applied to the pooled C*W values
    (``statistic(values, axis=-1)``). For BCa the acceleration comes from the
    leave-one-cluster-out jackknife.

    Parameters
    ----------
    data : array-like or xarray.DataArray
        NumPy: shape (..., C, W) - clusters on axis -2, units on axis -1 (W may be 1).
        xarray: `cluster_dim` and `within_dim` (one name, several names stacked, or None for
        one value per cluster) name the axes; other dims are independent series.
    two_stage : bool
        Resample units within clusters too. Two-stage resampling slightly overstates the
        variance when units vary little within clusters; resampling clusters only
        (``two_stage=False``) is the better choice with many clusters (Davison & Hinkley 1997,
        sec. 3.8). Default True (runs and probes both random).

    Other parameters, returns and warnings are as for `bootstrap_ci`.

    References
    ----------
    Davison AC, Hinkley DV (1997). Bootstrap Methods and their Application, sec. 3.8.
    Field CA, Welsh AH (2007). Bootstrapping clustered data. JRSS B 69:369-390.
    """
    func, conf, batch = _validate_cluster_bootstrap_ci(statistic, method, n_resamples, confidence, batch)
    generator = normalize_rng(rng)

    def kernel(arr: np.ndarray, n_core: int = 2, n_within: int = 1) -> np.ndarray:
        arr = as_real_array("data", arr)
        if n_within == 0:
            arr = arr[..., None]
        elif n_within > 1:
            arr = arr.reshape(arr.shape[: arr.ndim - n_within] + (-1,))
        if arr.size == 0:
            raise ValueError("`data` is empty: pass at least 2 clusters")
        if not np.all(np.isfinite(arr)):
            raise ValueError("`data` contains NaN or infinite values: remove or impute them first")
        c, w = arr.shape[-2:]
        if c < 2:
            raise ValueError(f"`data` needs at least 2 clusters along `{cluster_dim}`, got {c}")
        lead = arr.shape[:-2]
        x3 = arr.reshape((-1, c, w))
        theta = np.asarray(func(x3.reshape(x3.shape[0], -1), axis=-1), dtype=float).reshape(-1)
        _bs.check_finite(theta)
        reps = _bs.cluster_replicates(x3, func, n_resamples, generator, two_stage=two_stage,
                                      batch=batch, workers=workers)
        jack = _bs.cluster_jackknife(x3, func) if method == "bca" else None
        _bs.check_finite(theta, reps, jack)
        accel = _bs.acceleration(jack) if jack is not None else None
        return _interval_parts(theta, reps, method, conf, accel).reshape(lead + (4,))

    attrs = settings_attrs(method, conf, n_resamples=n_resamples, seed=_seed_of(rng))
    attrs["two_stage"] = int(two_stage)
    if not _is_xarray(data):
        arr = as_real_array("data", data)
        if arr.ndim < 2:
            raise ValueError("`data` must have shape (..., clusters, units): at least 2 axes")
        res = kernel(arr)
        used = _bs.method_names(res[..., 3].astype(int), method)
        est, lo, hi = (_scalar_or_array(res[..., i]) for i in range(3))
        n = arr.shape[-2:]
    else:
        check_dims("data", data, [cluster_dim])
        within = () if within_dim is None else check_dims("data", data, within_dim)
        core = (cluster_dim, *within)
        est, lo, hi, code = _apply_core(kernel, data, core, 4, n_within=len(within))
        for obj, nm in ((est, "estimate"), (lo, "low"), (hi, "high")):
            _attrs(obj, attrs, nm)
        used = method
        n = tuple(data.sizes[d] for d in core)
    return Interval(
        estimate=est,
        low=lo,
        high=hi,
        confidence=conf,
        method=used,
        n=n,
        n_resamples=int(n_resamples),
        seed=_seed_of(rng),
        extra={"two_stage": two_stage},
    )
