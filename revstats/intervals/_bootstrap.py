"""NumPy bootstrap engine: replicates in bounded-memory batches, jackknife, interval rules.

Everything works on a 2-D array ``x`` of shape (m, n): m independent series (the flattened
extra axes) of n observations. Replicates are drawn in at most 32 chunks, each with its own
pair of SFC64 streams derived from the caller's generator (`_draws.streams`), and evaluated in
blocks of about ``batch`` elements, so results depend only on the seed, ``batch`` and the
number of resamples, never on the number of threads.

Resample indices are the exact uniform draws of `_draws` (compiled with numba, NumPy
otherwise; the same indices either way). Moment statistics (mean, var, std) never materialise
resamples: each replicate is a sum of the centred data over its drawn indices (one compiled
pass per series), and their jackknife has a closed form.

References
----------
Efron B, Tibshirani RJ (1993). An Introduction to the Bootstrap. Chapman & Hall. (ch. 13-14:
percentile and BCa intervals; eq. 14.15 acceleration from the jackknife)
Davison AC, Hinkley DV (1997). Bootstrap Methods and their Application. CUP. (sec. 5.2 basic
interval; sec. 3.8 resampling clustered data)
Hall P (1988). On symmetric bootstrap confidence intervals. JRSS B 50:35-45.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy import special

from revstats.errors import DegenerateDataWarning
from revstats.intervals import _draws

METHODS = ("percentile", "basic", "bca")
MOMENT_STATISTICS = ("mean", "var", "std")
# codes stored per series for the method actually used
CODE_AS_REQUESTED, CODE_SYMMETRIC, CODE_DEGENERATE = 0, 1, 2
DEFAULT_BATCH = 1 << 18  # elements evaluated per block: ~2 MB of float64, cache friendly


def _named_statistics() -> dict[str, Callable]:
    return {
        "mean": np.mean,
        "median": np.median,
        "var": np.var,
        "std": np.std,
        "sum": np.sum,
        "min": np.min,
        "max": np.max,
    }


def resolve_statistic(statistic: str | Callable) -> tuple[str | None, Callable]:
    """Map a name or a callable to (fast-path name or None, vectorised callable f(x, axis))."""
    named = _named_statistics()
    if isinstance(statistic, str):
        if statistic not in named:
            opts = ", ".join(repr(s) for s in named)
            raise ValueError(
                f"`statistic` name must be one of {opts}, or a callable f(x, axis=-1); got {statistic!r}"
            )
        func = named[statistic]
        return (statistic if statistic in MOMENT_STATISTICS else None), func
    if not callable(statistic):
        raise TypeError(
            f"`statistic` must be a name such as 'mean' or a callable f(x, axis=-1), got {type(statistic).__name__}"
        )
    for name in MOMENT_STATISTICS:
        if statistic is named[name]:
            return name, statistic
    if any(statistic is f for f in named.values()):
        return None, statistic
    return None, _checked_statistic(statistic)


def _checked_statistic(statistic: Callable) -> Callable:
    """Wrap a user statistic so that what it returns is checked on every call.

    A statistic that ignores ``axis`` (returns one number for a whole batch of resamples),
    returns complex or text values, or the wrong shape would otherwise give a zero-width or
    silently wrong interval; each gets an error that says what the function must do.
    """
    label = getattr(statistic, "__name__", type(statistic).__name__)

    def checked(x: np.ndarray, axis: int = -1) -> np.ndarray:
        try:
            res = statistic(x, axis=axis)
        except TypeError as err:
            if "axis" in str(err):
                raise TypeError(
                    f"`statistic` {label!r} must accept an `axis` keyword and reduce along it, "
                    f"as f(x, axis=-1) (scipy.stats.bootstrap's vectorised form); it raised: {err}"
                ) from err
            raise
        out = np.asarray(res)
        want = x.shape[:-1] if axis in (-1, x.ndim - 1) else np.delete(np.array(x.shape), axis)
        if out.dtype.kind not in "biuf":
            raise TypeError(
                f"`statistic` {label!r} returned values of dtype {out.dtype}; it must return "
                "real numbers (take `.real` or `abs()` inside it if that is what you mean)"
            )
        if out.shape != tuple(want):
            raise ValueError(
                f"`statistic` {label!r} must be vectorised: f(x, axis=-1) on an array of shape "
                f"{x.shape} must return one value per row, shape {tuple(want)}, but returned "
                f"shape {out.shape}. A function that ignores `axis` (e.g. `float(np.mean(x))`) "
                "reduces the whole batch of resamples to one number"
            )
        return out

    checked.__wrapped__ = statistic  # type: ignore[attr-defined]
    return checked


def check_finite(
    theta: np.ndarray, reps: np.ndarray | None = None, jack: np.ndarray | None = None
) -> None:
    """Refuse NaN/Inf in the estimate, the replicates or the jackknife values.

    Such an interval is undefined (a statistic undefined on some resamples, e.g. a correlation
    of a constant resample, or a value that overflows): say where, instead of returning NaN
    ends or a fallback interval that hides it.
    """
    bad_t = ~np.isfinite(theta)
    if bad_t.any():
        where = np.flatnonzero(bad_t)
        raise ValueError(
            f"`statistic` is NaN or infinite on the data itself in {where.size} of {theta.size} "
            f"series (first: series {int(where[0])}): the interval is undefined there; check "
            "the data (overflow of very large values?) or the statistic"
        )
    bad_r = ~np.isfinite(reps) if reps is not None else np.zeros((1, 1), bool)
    if bad_r.any():
        k = int(bad_r.any(axis=0).sum())
        raise ValueError(
            f"`statistic` returned NaN or infinite values on {k} of {reps.shape[-1]} resamples "
            f"(in {int(bad_r.any(axis=-1).sum())} of {reps.shape[0]} series): the bootstrap "
            "distribution, and so the interval, is undefined; use a statistic defined on every "
            "resample (e.g. one that handles resamples with repeated or constant values)"
        )
    if jack is not None and not np.all(np.isfinite(jack)):
        raise ValueError(
            "`statistic` returned NaN or infinite values on a leave-one-out (jackknife) sample, "
            "which BCa needs for its acceleration: use method='percentile' or a statistic "
            "defined on every subsample"
        )


def _chunks(total: int, per_chunk: int) -> list[tuple[int, int]]:
    per_chunk = max(1, min(per_chunk, total))
    return [(s, min(s + per_chunk, total)) for s in range(0, total, per_chunk)]


def child_generators(rng: np.random.Generator, count: int) -> list[np.random.Generator]:
    """Independent child generators for `count` chunks, derived from (and advancing) `rng`.

    The children use SFC64, the fastest of NumPy's bit generators for raw bits (which is all
    the resampler draws, see `_Sampler`).
    """
    root = np.random.SeedSequence(rng.integers(0, 2**63, size=4, dtype=np.uint64).tolist())
    return [np.random.Generator(np.random.SFC64(s)) for s in root.spawn(count)]


def _run_chunks(work: Callable[[int, int, Any], None], chunks, gens, workers):
    if workers <= 1 or len(chunks) == 1:
        for (s, e), g in zip(chunks, gens, strict=True):
            work(s, e, g)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(work, s, e, g) for (s, e), g in zip(chunks, gens, strict=True)]
        for f in futures:
            f.result()


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def replicates(
    x: np.ndarray,
    fast: str | None,
    func: Callable,
    n_resamples: int,
    rng: np.random.Generator,
    *,
    batch: int = DEFAULT_BATCH,
    workers: int | None = None,
) -> np.ndarray:
    """Bootstrap replicates, shape (m, n_resamples), for data `x` of shape (m, n).

    Resample indices come from `_draws` (exact uniform, the same with or without numba); the
    m series share them, as in scipy. The fast (moment) path and the generic path use the same
    draws, so for the same seed and batch they see the same resamples.
    """
    m, n = x.shape
    _draws.check_size(n)
    workers = default_workers() if workers is None else workers
    out = np.empty((m, n_resamples), dtype=float)
    rows = max(1, batch // max(1, n * m))  # resamples evaluated at once (memory bound)
    chunks = _chunks(n_resamples, max(rows, -(-n_resamples // _STREAMS)))
    both = _draws.streams(rng, 2 * len(chunks))
    gens = list(zip(both[0::2], both[1::2], strict=True))
    kernels = _draws.kernels_for(n_resamples * n * (m if fast is not None and m <= _FEW_SERIES else 1))

    if fast is not None:
        centre = x.mean(axis=-1, keepdims=True)
        xc = np.ascontiguousarray(x - centre)  # centring keeps sums of squares accurate
        squares = fast != "mean"

        def finish(s: int, e: int, s1: np.ndarray, s2: np.ndarray | None) -> None:
            s1 = s1 / n
            if fast == "mean":
                out[:, s:e] = s1 + centre
                return
            var = np.maximum(s2 / n - s1 * s1, 0.0)
            out[:, s:e] = var if fast == "var" else np.sqrt(var)

        if m <= _FEW_SERIES:

            def work(s: int, e: int, gh) -> None:
                g, h = gh
                res = [_draws.moment_sums(g, h, xc[i], e - s, squares, kernels=kernels) for i in range(m)]
                s1 = np.stack([a for a, _ in res])
                s2 = np.stack([b for _, b in res if b is not None]) if squares else None
                finish(s, e, s1, s2)

        else:
            # many series: counts of each observation per resample, then one product
            cols = np.concatenate([xc, xc * xc], axis=0).T if squares else xc.T  # (n, k)

            def work(s: int, e: int, gh) -> None:
                r = e - s
                res = np.empty((cols.shape[1], r))
                for a, b, idx in _draws.index_blocks(gh[0], gh[1], n, r, rows=rows, kernels=kernels):
                    flat = idx + (np.arange(b - a, dtype=np.intp) * n)[:, None]
                    counts = np.bincount(flat.reshape(-1), minlength=(b - a) * n).reshape(b - a, n)
                    res[:, a:b] = (counts.astype(float) @ cols).T
                finish(s, e, res[:m], res[m:] if squares else None)
    else:

        def work(s: int, e: int, gh) -> None:
            for a, b, idx in _draws.index_blocks(gh[0], gh[1], n, e - s, rows=rows, kernels=kernels):
                if m == 1:
                    res = func(np.take(x[0], idx)[None], axis=-1)
                else:
                    res = func(np.take(x, idx, axis=1), axis=-1)
                out[:, s + a : s + b] = np.asarray(res, dtype=float)

    _run_chunks(work, chunks, gens, workers)
    return out


_FEW_SERIES = 4  # up to this many series, one compiled pass per series over shared draws
# Replicates are drawn in at most this many streams (chunks with their own generators), each
# evaluated in blocks of `rows`: enough chunks to keep the threads busy, few enough that making
# their generators stays cheap. Depends on n_resamples, n, m and batch only, never on workers.
_STREAMS = 32


def jackknife(x: np.ndarray, fast: str | None, func: Callable, *, batch: int = DEFAULT_BATCH):
    """Leave-one-out values, shape (m, n). Closed form for the moment statistics."""
    m, n = x.shape
    if fast is not None:
        d = x - x.mean(axis=-1, keepdims=True)
        if fast == "mean":
            return x.mean(axis=-1, keepdims=True) - d / (n - 1)
        s2 = (d * d).sum(axis=-1, keepdims=True)
        # sum of squares about the leave-one-out mean: S2 - d_i^2 * n / (n - 1)
        var = np.maximum(s2 - d * d * n / (n - 1), 0.0) / (n - 1)
        return var if fast == "var" else np.sqrt(var)
    out = np.empty((m, n), dtype=float)
    base = np.arange(n - 1)
    rows = max(1, batch // max(1, (n - 1) * m))
    for s, e in _chunks(n, rows):
        drop = np.arange(s, e)[:, None]
        idx = base[None, :] + (base[None, :] >= drop)
        out[:, s:e] = np.asarray(func(np.take(x, idx, axis=1), axis=-1), dtype=float)
    return out


def acceleration(jack: np.ndarray) -> np.ndarray:
    """BCa acceleration a = sum(d^3) / (6 (sum d^2)^1.5), d = mean(jack) - jack (E&T eq. 14.15).

    a is scale-free, so d is divided by max|d| first: the cubes neither overflow for values
    beyond ~1e100 nor underflow to 0 below ~1e-100.
    """
    d = jack.mean(axis=-1, keepdims=True) - jack
    scale = np.abs(d).max(axis=-1, keepdims=True)
    d = d / np.where(scale > 0, scale, 1.0)
    num = (d**3).sum(axis=-1)
    den = 6.0 * (d**2).sum(axis=-1) ** 1.5
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _row_quantile(reps: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-row quantiles: reps (m, B), probs (m,) -> (m,), linear interpolation."""
    return _row_quantiles(reps, [probs])[0]


def _row_quantiles(reps: np.ndarray, probs_list: list[np.ndarray]) -> list[np.ndarray]:
    """Several per-row quantiles (linear interpolation) from one partial sort of `reps`.

    np.partition puts the needed order statistics in place in O(B) when every row needs the
    same positions (one series, or percentile/basic); otherwise the rows are sorted.
    """
    b = reps.shape[-1]
    rows = np.arange(reps.shape[0])
    parts = []
    for probs in probs_list:
        pos = np.clip(probs, 0.0, 1.0) * (b - 1)
        lo = np.floor(pos).astype(int)
        parts.append((lo, np.minimum(lo + 1, b - 1), pos - lo))
    needed = np.concatenate([np.concatenate([lo, hi]) for lo, hi, _ in parts])
    if reps.shape[0] == 1 or all((lo == lo[0]).all() for lo, _, _ in parts):
        srt = np.partition(reps, np.unique(needed), axis=-1)
    else:
        srt = np.sort(reps, axis=-1)
    return [srt[rows, lo] * (1 - frac) + srt[rows, hi] * frac for lo, hi, frac in parts]


def interval_from_replicates(
    theta: np.ndarray,
    reps: np.ndarray,
    method: str,
    confidence: float,
    accel: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile, basic or BCa limits with degeneracy detection and fallback.

    Returns (low, high, code) with code 0 = method as requested, 1 = symmetric fallback,
    2 = degenerate (all replicates equal: zero-width interval at the estimate).

    Rules, per series:
    * all replicates equal (to 1e-12 relative) -> code 2, ``low = high = estimate``;
    * the estimate lies below or above *every* replicate ("one-sided"; BCa's z0 is infinite),
      or the requested interval does not contain the estimate, or it is not finite -> code 1:
      Hall's (1988) symmetric interval estimate -+ q, q the `confidence` quantile of
      |replicate - estimate|, which always contains the estimate and is first-order valid.
    A `DegenerateDataWarning` says how many series fell back.
    """
    alpha = 1.0 - confidence
    m, b = reps.shape
    scale = np.maximum(np.abs(reps).max(axis=-1), np.abs(theta))
    spread = reps.max(axis=-1) - reps.min(axis=-1)
    constant = spread <= 1e-12 * np.where(scale > 0, scale, 1.0)
    # replicates within rounding (1e-12 relative) of the estimate count as ties, so the same
    # resample gives the same z0 whether its statistic was summed or computed directly
    tol = (1e-12 * np.where(scale > 0, scale, 1.0))[:, None]
    below = (reps < theta[:, None] - tol).mean(axis=-1)
    ties = (np.abs(reps - theta[:, None]) <= tol).mean(axis=-1)
    p0 = below + 0.5 * ties  # mid-rank handles discrete statistics (e.g. medians)
    one_sided = (below == 0) & (ties == 0) | (below == 1)

    if method == "percentile":
        lo, hi = _row_quantiles(reps, [np.full(m, alpha / 2), np.full(m, 1 - alpha / 2)])
    elif method == "basic":
        q_lo, q_hi = _row_quantiles(reps, [np.full(m, alpha / 2), np.full(m, 1 - alpha / 2)])
        lo, hi = 2 * theta - q_hi, 2 * theta - q_lo
    else:
        a = np.zeros(m) if accel is None else accel
        with np.errstate(divide="ignore", invalid="ignore"):
            z0 = special.ndtri(p0)
            zl, zh = special.ndtri(alpha / 2), special.ndtri(1 - alpha / 2)
            a1 = special.ndtr(z0 + (z0 + zl) / (1 - a * (z0 + zl)))
            a2 = special.ndtr(z0 + (z0 + zh) / (1 - a * (z0 + zh)))
        ok = np.isfinite(a1) & np.isfinite(a2)
        q1, q2 = _row_quantiles(reps, [np.where(ok, a1, 0.5), np.where(ok, a2, 0.5)])
        lo = np.where(ok, q1, np.nan)
        hi = np.where(ok, q2, np.nan)

    bad = one_sided | ~np.isfinite(lo) | ~np.isfinite(hi) | (lo > theta) | (hi < theta)
    bad &= ~constant
    code = np.where(constant, CODE_DEGENERATE, np.where(bad, CODE_SYMMETRIC, CODE_AS_REQUESTED))
    if bad.any():
        q = _row_quantile(np.abs(reps - theta[:, None]), np.full(m, confidence))
        lo = np.where(bad, theta - q, lo)
        hi = np.where(bad, theta + q, hi)
        warnings.warn(
            f"{int(bad.sum())} of {m} bootstrap distribution(s) are one-sided or do not contain "
            f"the estimate (BCa's bias correction z0 is infinite or the '{method}' interval "
            "excludes the estimate); used Hall's symmetric bootstrap interval there "
            "(method 'symmetric'). The plug-in estimate is likely biased: consider a "
            "debiased (cross-fitted) statistic.",
            DegenerateDataWarning,
            stacklevel=3,
        )
    if constant.any():
        lo = np.where(constant, theta, lo)
        hi = np.where(constant, theta, hi)
        warnings.warn(
            f"{int(constant.sum())} of {m} bootstrap distribution(s) have all replicates equal "
            "(e.g. all-equal data): returned a zero-width interval at the estimate "
            "(method 'degenerate'); it carries no sampling uncertainty.",
            DegenerateDataWarning,
            stacklevel=3,
        )
    return lo, hi, code


def method_names(code: np.ndarray, method: str) -> str | np.ndarray:
    """Per-series method names from codes; a single string when they all agree."""
    names = np.array([method, "symmetric", "degenerate"])[code]
    flat = np.unique(names)
    if flat.size == 1:
        return str(flat[0])
    return names


def cluster_replicates(
    x: np.ndarray,
    func: Callable,
    n_resamples: int,
    rng: np.random.Generator,
    *,
    two_stage: bool = True,
    batch: int = DEFAULT_BATCH,
    workers: int | None = None,
) -> np.ndarray:
    """Two-stage bootstrap replicates for clustered data `x` of shape (m, C, W) -> (m, B)."""
    m, c, w = x.shape
    workers = default_workers() if workers is None else workers
    out = np.empty((m, n_resamples), dtype=float)
    rows = max(1, batch // max(1, m * c * w))
    chunks = _chunks(n_resamples, rows)
    gens = child_generators(rng, len(chunks))
    flat = x.reshape(m, c * w)

    def work(s: int, e: int, g: np.random.Generator) -> None:
        r = e - s
        clusters = g.integers(0, c, size=(r, c, 1), dtype=np.int64)
        if two_stage:
            units = g.integers(0, w, size=(r, c, w), dtype=np.int64)
        else:
            units = np.broadcast_to(np.arange(w), (r, c, w))
        idx = (clusters * w + units).reshape(r, c * w)
        out[:, s:e] = np.asarray(func(np.take(flat, idx, axis=1), axis=-1), dtype=float)

    _run_chunks(work, chunks, gens, workers)
    return out


def cluster_jackknife(x: np.ndarray, func: Callable) -> np.ndarray:
    """Leave-one-cluster-out values, shape (m, C), for `x` of shape (m, C, W)."""
    m, c, w = x.shape
    keep = ~np.eye(c, dtype=bool)
    out = np.empty((m, c))
    for j in range(c):
        out[:, j] = np.asarray(func(x[:, keep[j], :].reshape(m, -1), axis=-1), dtype=float)
    return out
