"""NumPy bootstrap engine: replicates in bounded-memory batches, jackknife, interval rules.

Everything works on a 2-D array ``x`` of shape (m, n): m independent series (the flattened
extra axes) of n observations. Replicates are drawn in chunks of about ``batch`` elements;
each chunk has its own child generator spawned from the caller's generator, so results depend
only on the seed and ``batch``, never on the number of threads.

Moment statistics (mean, var, std) never materialise resamples: each replicate is a sum of the
centred data gathered at random indices, and their jackknife has a closed form.

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

import numpy as np
from scipy import special

from revstats.errors import DegenerateDataWarning

METHODS = ("percentile", "basic", "bca")
MOMENT_STATISTICS = ("mean", "var", "std")
# codes stored per series for the method actually used
CODE_AS_REQUESTED, CODE_SYMMETRIC, CODE_DEGENERATE = 0, 1, 2
DEFAULT_BATCH = 1 << 18  # elements gathered per chunk: ~2 MB of float64, cache friendly


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
    return None, statistic


def _chunks(total: int, per_chunk: int) -> list[tuple[int, int]]:
    per_chunk = max(1, min(per_chunk, total))
    return [(s, min(s + per_chunk, total)) for s in range(0, total, per_chunk)]


def child_generators(rng: np.random.Generator, count: int) -> list[np.random.Generator]:
    """Independent child generators for `count` chunks, derived from (and advancing) `rng`.

    The children use SFC64, which draws bounded integers about twice as fast as PCG64.
    """
    root = np.random.SeedSequence(rng.integers(0, 2**63, size=4, dtype=np.uint64).tolist())
    return [np.random.Generator(np.random.SFC64(s)) for s in root.spawn(count)]


def _index_dtype(n: int) -> type:
    # uint16 draws are buffered two per 32-bit word; int32 keeps gathered index arrays small
    return np.uint16 if n <= np.iinfo(np.uint16).max else np.int32


def _run_chunks(work: Callable[[int, int, np.random.Generator], None], chunks, gens, workers):
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
    """Bootstrap replicates, shape (m, n_resamples), for data `x` of shape (m, n)."""
    m, n = x.shape
    workers = default_workers() if workers is None else workers
    out = np.empty((m, n_resamples), dtype=float)
    rows = max(1, batch // max(1, n * m))
    chunks = _chunks(n_resamples, rows)
    gens = child_generators(rng, len(chunks))
    dtype = _index_dtype(n)

    if fast is not None:
        centre = x.mean(axis=-1, keepdims=True)
        xc = x - centre  # centring keeps sums of squares accurate
        xc2 = xc * xc  # only used by var/std

        def work(s: int, e: int, g: np.random.Generator) -> None:
            idx = g.integers(0, n, size=(e - s, n), dtype=dtype)
            s1 = _gather(xc, idx).sum(axis=-1) / n
            if fast == "mean":
                out[:, s:e] = s1 + centre
                return
            s2 = _gather(xc2, idx).sum(axis=-1) / n
            var = np.maximum(s2 - s1 * s1, 0.0)
            out[:, s:e] = var if fast == "var" else np.sqrt(var)
    else:

        def work(s: int, e: int, g: np.random.Generator) -> None:
            idx = g.integers(0, n, size=(e - s, n), dtype=dtype)
            out[:, s:e] = np.asarray(func(_gather(x, idx), axis=-1), dtype=float)

    _run_chunks(work, chunks, gens, workers)
    return out


def _gather(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """x[:, idx] for x of shape (m, n). Fancy indexing takes small integer dtypes directly,
    whereas np.take first casts them to intp (an order of magnitude slower here)."""
    if x.shape[0] == 1:
        return x[0][idx][None]
    return x[:, idx]


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
    """BCa acceleration a = sum(d^3) / (6 (sum d^2)^1.5), d = mean(jack) - jack (E&T eq. 14.15)."""
    d = jack.mean(axis=-1, keepdims=True) - jack
    num = (d**3).sum(axis=-1)
    den = 6.0 * (d**2).sum(axis=-1) ** 1.5
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _row_quantile(reps: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-row quantiles: reps (m, B), probs (m,) -> (m,), linear interpolation."""
    srt = np.sort(reps, axis=-1)
    b = srt.shape[-1]
    pos = np.clip(probs, 0.0, 1.0) * (b - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, b - 1)
    frac = pos - lo
    rows = np.arange(srt.shape[0])
    return srt[rows, lo] * (1 - frac) + srt[rows, hi] * frac


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
    below = (reps < theta[:, None]).mean(axis=-1)
    ties = (reps == theta[:, None]).mean(axis=-1)
    p0 = below + 0.5 * ties  # mid-rank handles discrete statistics (e.g. medians)
    one_sided = (below == 0) & (ties == 0) | (below == 1)

    if method == "percentile":
        lo = _row_quantile(reps, np.full(m, alpha / 2))
        hi = _row_quantile(reps, np.full(m, 1 - alpha / 2))
    elif method == "basic":
        lo = 2 * theta - _row_quantile(reps, np.full(m, 1 - alpha / 2))
        hi = 2 * theta - _row_quantile(reps, np.full(m, alpha / 2))
    else:
        a = np.zeros(m) if accel is None else accel
        with np.errstate(divide="ignore", invalid="ignore"):
            z0 = special.ndtri(p0)
            zl, zh = special.ndtri(alpha / 2), special.ndtri(1 - alpha / 2)
            a1 = special.ndtr(z0 + (z0 + zl) / (1 - a * (z0 + zl)))
            a2 = special.ndtr(z0 + (z0 + zh) / (1 - a * (z0 + zh)))
        ok = np.isfinite(a1) & np.isfinite(a2)
        lo = np.where(ok, _row_quantile(reps, np.where(ok, a1, 0.5)), np.nan)
        hi = np.where(ok, _row_quantile(reps, np.where(ok, a2, 0.5)), np.nan)

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
