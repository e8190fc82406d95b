"""NumPy kernels of the reversion geometry, all working on the last axis (``axis=-1``).

The labelled, dask-aware wrappers live in :mod:`revstats.geometry`; these functions know
nothing about dims. Vectors run along the last axis; per-probe tables are ``(..., n, d)``
(probes on the second-to-last axis). Everything is computed in float64.

Zero-length vectors have no direction: normalising one gives NaN and emits a
:class:`~revstats.errors.DegenerateDataWarning` (once per kernel call, with the count).
"""

from __future__ import annotations

import warnings

import numpy as np

from revstats.errors import DegenerateDataWarning

__all__ = [
    "bootstrap_direction_cosines",
    "cosine",
    "cosine_parts",
    "cross_fit_products",
    "flatten_last",
    "normalize",
    "project_out",
    "ratio_of_products",
    "split_half_cosine",
    "unflatten_last",
]

# Batch size for bootstrap replicates so that memory stays at ~batch * d floats per slab.
_BOOT_BATCH = 256


def flatten_last(x: np.ndarray, k: int) -> np.ndarray:
    """Merge the last `k` axes into one (k == 1 is a no-op)."""
    if k == 1:
        return x
    return x.reshape(*x.shape[: x.ndim - k], -1)


def unflatten_last(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Split the last axis of `x` back into `shape`."""
    return x.reshape(*x.shape[:-1], *shape)


def _warn_zero(count: int, total: int, what: str) -> None:
    if count:
        warnings.warn(
            f"{count} of {total} {what} have zero length and no direction; the result is NaN "
            "there (a zero drift or a witness equal to the aligned model has no alignment)",
            DegenerateDataWarning,
            stacklevel=3,
        )


def _warn_nonfinite(count: int, total: int, what: str) -> None:
    if count:
        warnings.warn(
            f"{count} of {total} {what} contain NaN or Inf; the result is NaN there (check the "
            "activations: the store refuses non-finite values, in-memory inputs are not checked "
            "until computed)",
            DegenerateDataWarning,
            stacklevel=3,
        )


def _scale(x: np.ndarray) -> np.ndarray:
    """``max |x_i|`` along the last axis (NaN where x holds NaN; 0 for zero vectors)."""
    if x.shape[-1] == 0:
        return np.zeros(x.shape[:-1])
    with np.errstate(invalid="ignore"):
        return np.max(np.abs(x), axis=-1)


def _unit_scaled(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x / max|x|, max|x|): the scaled vectors have entries in [-1, 1], so their dot products
    neither overflow (norms ≳ 1e154 would square to inf) nor underflow (norms ≲ 1e-154 would
    square to 0 and look like zero length)."""
    m = _scale(x)
    safe = np.where((m > 0) & np.isfinite(m), m, 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        return x / safe[..., None], m


def _norm(x: np.ndarray) -> np.ndarray:
    xs, m = _unit_scaled(np.asarray(x, dtype=np.float64))
    with np.errstate(over="ignore", invalid="ignore"):
        n = m * np.sqrt(np.einsum("...i,...i->...", xs, xs))
    return np.where(m == 0, 0.0, n)


def normalize(x: np.ndarray) -> np.ndarray:
    """Unit vectors ``x / ||x||`` along the last axis; zero vectors give NaN (and a warning)."""
    x = np.asarray(x, dtype=np.float64)
    xs, m = _unit_scaled(x)  # normalise the scaled vectors: no overflow for huge norms
    zero = m == 0
    bad = ~np.isfinite(m)
    _warn_nonfinite(int(np.count_nonzero(bad)), int(bad.size), "vectors")
    _warn_zero(int(np.count_nonzero(zero)), int(zero.size), "vectors")
    n = np.sqrt(np.einsum("...i,...i->...", xs, xs))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = xs / np.where(zero | bad, np.nan, n)[..., None]
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``<a, b> / (||a|| ||b||)`` along the last axis, clipped to [-1, 1] against rounding.

    NaN (with a warning) where either vector has zero length.
    """
    c, zero, bad = cosine_parts(a, b)
    _warn_nonfinite(int(np.count_nonzero(bad)), int(bad.size), "vector pairs (one side or both)")
    _warn_zero(int(np.count_nonzero(zero & ~bad)), int(zero.size), "vector pairs (one side or both)")
    return c


def cosine_parts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cosine, zero-length mask, non-finite mask) without warning: callers that know which
    zeros are expected (the reference step) report the others themselves. Both sides are
    scaled by their largest entry first (a cosine does not depend on the lengths), so norms
    near 1e200 or 1e-200 neither overflow nor underflow."""
    a, ma = _unit_scaled(np.asarray(a, dtype=np.float64))
    b, mb = _unit_scaled(np.asarray(b, dtype=np.float64))
    zero = (ma == 0) | (mb == 0)
    bad = ~(np.isfinite(ma) & np.isfinite(mb))
    na = np.sqrt(np.einsum("...i,...i->...", a, a))
    nb = np.sqrt(np.einsum("...i,...i->...", b, b))
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.einsum("...i,...i->...", a, b) / np.where(zero | bad, np.nan, na * nb)
    return np.clip(c, -1.0, 1.0), zero & ~bad, bad


def project_out(x: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """``x - <x, u> u`` with ``u = direction / ||direction||`` (NaN if the direction is zero)."""
    x = np.asarray(x, dtype=np.float64)
    u = normalize(direction)
    return x - np.einsum("...i,...i->...", x, u)[..., None] * u


def cross_fit_products(
    d: np.ndarray, w: np.ndarray, masks: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cross-fitted estimates of ``<D, W>``, ``||D||^2`` and ``||W||^2`` from per-probe vectors.

    `d` and `w` are ``(..., n, p)``: row i is probe i's drift ``d_i`` and witness-minus-aligned
    difference ``w_i``, with ``D = E d_i`` and ``W = E w_i``. Only products of means over
    *disjoint* probe sets enter, so probe noise never multiplies itself.

    ``masks=None`` averages over *all* ways of splitting the probes into two halves, which is
    the U-statistic (with ``S_d = sum_i d_i``)::

        <D, W>^ = (<S_d, S_w> - sum_i <d_i, w_i>) / (n (n - 1))
        ||D||^2^ = (||S_d||^2 - sum_i ||d_i||^2) / (n (n - 1))

    Each is exactly unbiased when probes are independent. ``masks=(A, B)`` instead uses the
    given splits: `A` and `B` are ``(K, n)`` 0/1 membership matrices of disjoint halves, and the
    estimates are the split averages of ``(<d_A, w_B> + <d_B, w_A>) / 2``, ``<d_A, d_B>`` and
    ``<w_A, w_B>`` (bars are means over the half) -- each also unbiased.
    """
    d = np.asarray(d, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    lead = np.broadcast_shapes(d.shape[:-2], w.shape[:-2])
    dw, dd, ww = _cross_fit_products(d, w, masks)
    # w often lacks a dim d has (no step axis): computed once, broadcast afterwards
    return tuple(np.broadcast_to(x, lead).copy() for x in (dw, dd, ww))  # type: ignore[return-value]


def _cross_fit_products(
    d: np.ndarray, w: np.ndarray, masks: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = d.shape[-2]
    if masks is None:
        sd, sw = d.sum(axis=-2), w.sum(axis=-2)

        def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.einsum("...i,...i->...", a, b)

        def diag(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.einsum("...ni,...ni->...", a, b)

        pairs = n * (n - 1)
        dw = (dot(sd, sw) - diag(d, w)) / pairs
        dd = (dot(sd, sd) - diag(d, d)) / pairs
        ww = (dot(sw, sw) - diag(w, w)) / pairs
        return dw, dd, ww
    a_mask, b_mask = (np.asarray(m, dtype=np.float64) for m in masks)
    a_mask = a_mask / a_mask.sum(axis=-1, keepdims=True)
    b_mask = b_mask / b_mask.sum(axis=-1, keepdims=True)
    # (K, n) @ (..., n, p) -> (..., K, p): the half means of every split.
    da, db = a_mask @ d, b_mask @ d
    wa, wb = a_mask @ w, b_mask @ w

    def mdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.einsum("...ki,...ki->...", a, b) / a.shape[-2]

    dw = 0.5 * (mdot(da, wb) + mdot(db, wa))
    return dw, mdot(da, db), mdot(wa, wb)


def ratio_of_products(dw: np.ndarray, dd: np.ndarray, ww: np.ndarray) -> np.ndarray:
    """``dw / sqrt(dd * ww)``; NaN (with a warning) where ``dd <= 0`` or ``ww <= 0``.

    Not clipped to [-1, 1]: the ratio of unbiased pieces may land slightly outside, and
    clipping would pull the estimate back toward the interior (a bias of its own).
    """
    dw, dd, ww = (np.asarray(v, dtype=np.float64) for v in (dw, dd, ww))
    bad = ~((dd > 0) & (ww > 0))
    bad &= ~(np.isnan(dd) | np.isnan(ww))  # NaN inputs propagate silently as NaN
    if np.any(bad):
        warnings.warn(
            f"{int(np.count_nonzero(bad))} of {bad.size} cross-fitted squared norms are <= 0 "
            "(the drift or the direction is not distinguishable from probe noise, or is zero); "
            "the debiased alignment is NaN there",
            DegenerateDataWarning,
            stacklevel=2,
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = np.sqrt(np.where((dd > 0) & (ww > 0), dd * ww, np.nan))
        return dw / denom


def bootstrap_direction_cosines(w: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``cos(v*, v)`` for bootstrap re-estimates of the direction ``v = normalize(mean_i w_i)``.

    `w` is ``(..., n, p)``, `counts` is ``(B, n)`` multinomial resample counts; returns
    ``(..., B)``.
    """
    w = np.asarray(w, dtype=np.float64)
    n = w.shape[-2]
    v = normalize(w.mean(axis=-2))  # warns once if the direction is zero; replicates are NaN
    out = np.empty((*w.shape[:-2], counts.shape[0]), dtype=np.float64)
    for start in range(0, counts.shape[0], _BOOT_BATCH):
        c = counts[start : start + _BOOT_BATCH].astype(np.float64) / n
        means = c @ w  # (..., b, p)
        norms = _norm(means)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.einsum("...bi,...i->...b", means, v) / np.where(norms == 0, np.nan, norms)
        out[..., start : start + c.shape[0]] = np.clip(cos, -1.0, 1.0)
    return out


def split_half_cosine(w: np.ndarray, a_mask: np.ndarray, b_mask: np.ndarray) -> np.ndarray:
    """Mean over splits of ``cos(mean_{i in A} w_i, mean_{i in B} w_i)``; `w` is ``(..., n, p)``."""
    w = np.asarray(w, dtype=np.float64)
    wa = (a_mask / a_mask.sum(axis=-1, keepdims=True)) @ w
    wb = (b_mask / b_mask.sum(axis=-1, keepdims=True)) @ w
    na, nb = _norm(wa), _norm(wb)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.einsum("...ki,...ki->...k", wa, wb) / np.where(
            (na == 0) | (nb == 0), np.nan, na * nb
        )
    return np.clip(cos, -1.0, 1.0).mean(axis=-1)
