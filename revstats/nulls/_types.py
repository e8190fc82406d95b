"""The two null-distribution types every null in `revstats.nulls` returns.

`CosineNull` is the exact isotropic law (closed form, any real d > 1); `EmpiricalNull` holds Monte
Carlo or permutation draws, possibly one set of draws per run-step pair (a batch). Both answer
.cdf .sf .ppf .isf .quantile .pvalue .mean .var .rvs, so `exceedance` and reports need not care
which one they hold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xarray as xr

from revstats._validation import RNGLike, check_choice, normalize_rng
from revstats.nulls import _cosine_law as law

__all__ = ["Alternative", "CosineNull", "EmpiricalNull"]

Alternative = Literal["greater", "less", "two-sided"]
_ALTERNATIVES = ("greater", "less", "two-sided")


def _elementwise(func: Callable[[np.ndarray], np.ndarray], x: Any) -> Any:
    """Apply a NumPy kernel; DataArrays (numpy- or dask-backed) stay DataArrays and stay lazy."""
    if isinstance(x, xr.DataArray):
        return xr.apply_ufunc(func, x, dask="parallelized", output_dtypes=[float])
    out = func(np.asarray(x, dtype=float))
    return out[()] if out.ndim == 0 else out


def _check_probability(name: str, q: Any) -> None:
    if isinstance(q, xr.DataArray):
        return  # checked lazily: out-of-range values give NaN, as in scipy.stats
    arr = np.asarray(q, dtype=float)
    if np.any((arr < 0) | (arr > 1)):
        raise ValueError(f"`{name}` must lie in [0, 1] (probabilities), got values outside it")


@dataclass(frozen=True)
class CosineNull:
    r"""Exact law of cos(u, v) for u uniform on the unit sphere S^(d-1) and any fixed v.

    (C + 1)/2 ~ Beta((d-1)/2, (d-1)/2); density k_d (1 - c^2)^((d-3)/2) on [-1, 1] with
    k_d = Gamma(d/2) / (sqrt(pi) Gamma((d-1)/2)); mean 0, variance 1/d. Tails are computed in
    log space (continued fraction, DLMF 8.17.22), so ``sf`` keeps full relative accuracy down to
    the smallest double and ``logsf`` never underflows. Real ``d > 1`` is allowed (effective
    dimension); ``d = 2`` is the arcsine law, ``d = 3`` the uniform law.

    Built by :func:`revstats.nulls.isotropic_cosine` (integer d) or
    :func:`revstats.nulls.effective_isotropic_cosine` (real d).
    """

    d: float
    method: str = "isotropic"
    attrs: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def _a(self) -> float:
        return 0.5 * (float(self.d) - 1.0)

    @property
    def _log_k(self) -> float:
        return law.log_norm_const(self._a)

    def logsf(self, x: Any) -> Any:
        """log P(C >= x); finite far below the smallest double."""
        a, lk = self._a, self._log_k
        return _elementwise(lambda c: law.log_sf(c, a, lk), x)

    def logcdf(self, x: Any) -> Any:
        """log P(C <= x) = log P(C >= -x) by symmetry."""
        a, lk = self._a, self._log_k
        return _elementwise(lambda c: law.log_sf(-c, a, lk), x)

    def sf(self, x: Any) -> Any:
        """P(C >= x), computed directly (never as 1 - cdf)."""
        a, lk = self._a, self._log_k
        return _elementwise(lambda c: np.exp(law.log_sf(c, a, lk)), x)

    def cdf(self, x: Any) -> Any:
        """P(C <= x)."""
        a, lk = self._a, self._log_k
        return _elementwise(lambda c: np.exp(law.log_sf(-c, a, lk)), x)

    def pdf(self, x: Any) -> Any:
        """Density k_d (1 - x^2)^((d-3)/2) on [-1, 1], 0 outside."""
        a, lk = self._a, self._log_k
        return _elementwise(lambda c: np.exp(law.log_pdf(c, a, lk)), x)

    def logpdf(self, x: Any) -> Any:
        """log density."""
        a, lk = self._a, self._log_k
        return _elementwise(lambda c: law.log_pdf(c, a, lk), x)

    def isf(self, p: Any) -> Any:
        """The upper quantile: the c with P(C >= c) = p (relative accuracy kept for tiny p)."""
        _check_probability("p", p)
        a, lk = self._a, self._log_k
        return _elementwise(lambda q: law.isf(q, a, lk), p)

    def ppf(self, q: Any) -> Any:
        """The quantile: the c with P(C <= c) = q, i.e. -isf(q) by symmetry."""
        _check_probability("q", q)
        a, lk = self._a, self._log_k
        return _elementwise(lambda qq: -law.isf(qq, a, lk), q)

    def quantile(self, q: Any) -> Any:
        """Same as :meth:`ppf` (named like ``numpy.quantile``)."""
        return self.ppf(q)

    def pvalue(self, x: Any, *, alternative: Alternative = "greater") -> Any:
        """p-value of an observed cosine: sf (greater), cdf (less) or 2 min(sf, cdf) (two-sided)."""
        check_choice("alternative", alternative, _ALTERNATIVES)
        if alternative == "greater":
            return self.sf(x)
        if alternative == "less":
            return self.cdf(x)
        a, lk = self._a, self._log_k
        return _elementwise(
            lambda c: np.minimum(1.0, 2.0 * np.exp(law.log_sf(np.abs(c), a, lk))), x
        )

    def mean(self) -> float:
        """E[C] = 0."""
        return 0.0

    def var(self) -> float:
        """Var[C] = 1/d."""
        return 1.0 / float(self.d)

    def std(self) -> float:
        """sqrt(1/d)."""
        return float(np.sqrt(self.var()))

    def rvs(self, size: int | tuple[int, ...] | None = None, *, rng: RNGLike = None) -> Any:
        """Draws 2 B - 1 with B ~ Beta((d-1)/2, (d-1)/2)."""
        gen = normalize_rng(rng)
        return 2.0 * gen.beta(self._a, self._a, size=size) - 1.0


_TIE_RTOL = 1e-12


def _row_spans(a: np.ndarray, work: Callable[[int, int], None]) -> None:
    """`work(start, stop)` over the rows of `a` (last axis = draws): two halves on two threads
    when the batch is large (NumPy's sort, partition and comparisons release the GIL)."""
    m = int(np.prod(a.shape[:-1])) if a.ndim else 1
    if a.ndim < 2 or a.size < 1 << 21 or m < 2:
        work(0, m)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda span: work(*span), ((0, m // 2), (m // 2, m))))


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, a.shape[-1]) if a.ndim and a.shape[-1] else a.reshape(1, -1)


def _sort_rows(a: np.ndarray) -> None:
    """Sort the last axis in place (two threads for large batches: 2.6 of the null stage's
    11 s on the 10.1 GiB store were one-thread sorts)."""
    rows = _rows(a)
    _row_spans(a, lambda s, e: rows[s:e].sort(axis=-1))


def _restore_empirical(samples: np.ndarray, method: str, attrs: dict) -> EmpiricalNull:
    """Unpickle an `EmpiricalNull` (its draws were pickled sorted)."""
    obj = EmpiricalNull.__new__(EmpiricalNull)
    draws = np.array(samples, dtype=float)  # a writeable copy of our own
    draws.setflags(write=False)
    obj._init(draws, True, method, attrs)
    return obj


class EmpiricalNull:
    """An empirical null from draws (Monte Carlo, permutations, other history pairs).

    ``samples`` has shape ``(*batch_shape, n_draws)``, sorted along the draws: one null per
    run-step pair when the null depends on the pair (its own drift), else ``batch_shape == ()``.
    Inputs to ``cdf``, ``sf`` and ``pvalue`` broadcast against ``batch_shape``. Conventions:

    - ``cdf(x) = #{draws <= x} / B``, ``sf(x) = #{draws > x} / B`` (the empirical law);
    - ``pvalue(x) = (1 + #{draws >= x}) / (1 + B)`` (``greater``; draws within 1e-12 relative
      of x count as ties, so rounding never splits a tie), which is a valid p-value when
      the observed statistic is exchangeable with the draws (Phipson & Smyth 2010, "Permutation
      p-values should never be zero");
    - ``ppf(q)`` and ``quantile(q)`` are the smallest draw with ``cdf >= q`` (``inverted_cdf``),
      shaped ``batch_shape + q.shape``.

    The nulls of `revstats.nulls` hand over their draws unsorted (`_from_draws`): a batched
    null answers one observation per pair by counting and its quantiles by partial sorts
    (both O(draws) per pair), and sorts all its rows only when ``samples`` is read or an answer
    needs the full order. Every answer is the same, bit for bit, as from sorted draws.
    """

    __slots__ = ("_draws", "_sorted", "_kth", "_lock", "method", "attrs")

    def __init__(self, samples: Any, method: str, attrs: dict | None = None) -> None:
        s = np.sort(np.asarray(samples, dtype=float), axis=-1)
        s.setflags(write=False)
        self._init(s, True, method, attrs)

    def _init(self, draws: np.ndarray, is_sorted: bool, method: str, attrs: dict | None) -> None:
        import threading

        object.__setattr__(self, "_draws", draws)
        object.__setattr__(self, "_sorted", is_sorted)
        object.__setattr__(self, "_kth", frozenset())  # positions the last partial sort fixed
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "attrs", dict(attrs or {}))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"EmpiricalNull is immutable: cannot set `{name}`")

    def __reduce__(self) -> tuple:
        # pickled/copied with its draws sorted (the lock is per object, not state)
        return (_restore_empirical, (self.samples, self.method, self.attrs))

    def __repr__(self) -> str:
        return (f"EmpiricalNull(method={self.method!r}, batch_shape={self.batch_shape}, "
                f"n_draws={self.n_draws}, attrs={self.attrs!r})")

    @classmethod
    def _from_draws(cls, draws: np.ndarray, method: str, attrs: dict | None = None) -> EmpiricalNull:
        """From a float64 array of draws the caller gives up: kept, not copied, and sorted in
        place only when needed (the nulls of `revstats.nulls` build batches of 10^7 draws; a
        sorted copy doubled their memory, and sorting every row cost 6 of the null stage's
        15 s on the 10.1 GiB store where the pipeline needs three quantiles and a count)."""
        draws = np.asarray(draws)
        if draws.dtype != np.float64 or not draws.flags.writeable or not draws.flags.c_contiguous:
            return cls(draws, method, attrs)
        draws.setflags(write=False)
        obj = cls.__new__(cls)
        obj._init(draws, draws.ndim == 0 or draws.shape[-1] <= 1, method, attrs)
        return obj

    @property
    def samples(self) -> np.ndarray:
        """The draws, sorted along the last axis (read-only)."""
        if not self._sorted:
            with self._lock:
                if not self._sorted:
                    self._draws.setflags(write=True)  # ours (`_from_draws`): sorted in place
                    _sort_rows(self._draws)
                    self._draws.setflags(write=False)
                    object.__setattr__(self, "_sorted", True)
        return self._draws

    @property
    def n_draws(self) -> int:
        return int(self._draws.shape[-1])

    @property
    def p_floor(self) -> float:
        """The smallest p-value these draws can give, 1 / (B + 1) (before any adjustment)."""
        return 1.0 / (self.n_draws + 1)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self._draws.shape[:-1])

    def _count(self, x: Any, side: Literal["le", "lt"]) -> np.ndarray:
        """#{draws <= x} (side="le") or #{draws < x} (side="lt"); NaN where x is NaN."""
        x = np.asarray(x, dtype=float)
        ss: Literal["left", "right"] = "right" if side == "le" else "left"
        if self.batch_shape == ():
            counts = np.searchsorted(self.samples, x, side=ss).astype(float)
        elif not self._sorted and np.broadcast_shapes(x.shape, self.batch_shape) == self.batch_shape:
            counts = self._count_unsorted(np.broadcast_to(x, self.batch_shape), side)
        else:
            shape = np.broadcast_shapes(x.shape, self.batch_shape)
            xb = np.broadcast_to(x, shape)
            sb = np.broadcast_to(self.samples, (*shape, self.n_draws))
            flat_x = xb.reshape(-1)
            flat_s = sb.reshape(-1, self.n_draws)
            counts = np.fromiter(
                (np.searchsorted(row, v, side=ss) for row, v in zip(flat_s, flat_x, strict=True)),
                dtype=float,
                count=flat_x.size,
            ).reshape(shape)
        return np.where(np.isnan(x), np.nan, counts)

    def _count_unsorted(self, x: np.ndarray, side: Literal["le", "lt"]) -> np.ndarray:
        """One observation per row of the unsorted draws: count by comparison, O(draws)."""
        rows = _rows(self._draws)
        xs = x.reshape(-1, 1)
        out = np.empty(rows.shape[0])
        cmp = np.less_equal if side == "le" else np.less
        step = max(1, (1 << 20) // max(1, self.n_draws))  # ~1 MB of booleans per block

        def work(start: int, stop: int) -> None:
            for a in range(start, stop, step):
                b = min(a + step, stop)
                out[a:b] = np.count_nonzero(cmp(rows[a:b], xs[a:b]), axis=1)

        with self._lock:  # no partial sort reorders the rows meanwhile
            _row_spans(self._draws, work)
        return out.reshape(x.shape)

    def _wrap(self, func: Callable[[np.ndarray], np.ndarray], x: Any) -> Any:
        if isinstance(x, xr.DataArray):
            return x.copy(data=func(np.asarray(x, dtype=float)))
        out = func(np.asarray(x, dtype=float))
        return out[()] if out.ndim == 0 else out

    def cdf(self, x: Any) -> Any:
        """Empirical P(X <= x)."""
        return self._wrap(lambda v: self._count(v, "le") / self.n_draws, x)

    def sf(self, x: Any) -> Any:
        """Empirical P(X > x) = 1 - cdf(x)."""
        return self._wrap(lambda v: 1.0 - self._count(v, "le") / self.n_draws, x)

    def pvalue(self, x: Any, *, alternative: Alternative = "greater") -> Any:
        """(1 + #{draws >= x}) / (1 + B) for ``greater``; mirrored for ``less``; two-sided doubles
        the smaller one (capped at 1)."""
        check_choice("alternative", alternative, _ALTERNATIVES)
        b = self.n_draws

        def kernel(v: np.ndarray) -> np.ndarray:
            # a draw within 1e-12 (relative) of the observation is a tie and counts as at least
            # as extreme: a degenerate null (e.g. sign flips of identical rows) can equal the
            # observation up to rounding, and summation order must not decide its p-value
            tol = _TIE_RTOL * np.abs(v)
            greater = (1.0 + b - self._count(v - tol, "lt")) / (1.0 + b)
            less = (1.0 + self._count(v + tol, "le")) / (1.0 + b)
            if alternative == "greater":
                return greater
            if alternative == "less":
                return less
            return np.minimum(1.0, 2.0 * np.minimum(greater, less))

        return self._wrap(kernel, x)

    def ppf(self, q: Any) -> Any:
        """Smallest draw x with cdf(x) >= q; shape ``batch_shape + q.shape``."""
        _check_probability("q", q)
        qa = np.asarray(q, dtype=float)
        # the draws are sorted (__post_init__): numpy's "inverted_cdf" quantile is the draw at
        # position ceil(B q) - 1, read directly (np.quantile would re-partition every row)
        b = self.n_draws
        k = np.clip(np.ceil(b * qa).astype(np.intp) - 1, 0, b - 1)
        if not self._sorted and self.batch_shape != () and 0 < k.size <= 16:
            # unsorted draws: put the needed order statistics in place (a partial sort of the
            # rows we own, O(draws) each); the values are those of the sorted rows exactly
            kth = np.unique(k)
            with self._lock:
                if not self._sorted:
                    if not set(kth.tolist()) <= self._kth:
                        self._draws.setflags(write=True)
                        rows = _rows(self._draws)
                        _row_spans(self._draws, lambda s, e: rows[s:e].partition(kth, axis=-1))
                        self._draws.setflags(write=False)
                        object.__setattr__(self, "_kth", frozenset(kth.tolist()))
                    out = np.take(self._draws, k, axis=-1)
                    return out[()] if np.ndim(out) == 0 else out
        out = np.take(self.samples, k, axis=-1)  # batch_shape + q.shape
        return out[()] if np.ndim(out) == 0 else out

    def quantile(self, q: Any) -> Any:
        """Same as :meth:`ppf`."""
        return self.ppf(q)

    def isf(self, p: Any) -> Any:
        """Upper quantile ``ppf(1 - p)``."""
        _check_probability("p", p)
        return self.ppf(1.0 - np.asarray(p, dtype=float))

    def mean(self) -> Any:
        m = self.samples.mean(axis=-1)
        return m[()] if m.ndim == 0 else m

    def var(self) -> Any:
        v = self.samples.var(axis=-1, ddof=1)
        return v[()] if v.ndim == 0 else v

    def rvs(self, size: int | tuple[int, ...] | None = None, *, rng: RNGLike = None) -> Any:
        """Resample draws with replacement (1-D nulls only)."""
        if self.batch_shape != ():
            raise ValueError(
                "`rvs` needs a single null (batch_shape == ()); index the batch first with "
                "`null.select(i)`"
            )
        gen = normalize_rng(rng)
        return gen.choice(self.samples, size=size, replace=True)

    def select(self, index: Any) -> EmpiricalNull:
        """The null(s) of the run-step pair(s) at ``index`` in ``batch_shape``."""
        if self.batch_shape == ():
            raise ValueError("`select` needs a batched null; this one has batch_shape == ()")
        return EmpiricalNull(self.samples[index], self.method, dict(self.attrs))
