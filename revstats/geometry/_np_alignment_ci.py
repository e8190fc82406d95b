"""NumPy kernels of the crossed-design alignment interval (:mod:`revstats.geometry.alignment_ci`).

Two stages, both on trailing axes:

1. :func:`probe_products` reduces one (run, step) slab of per-probe drift vectors ``d_i`` and
   direction vectors ``w_i`` (``(..., n, p)``) to seven inner products per probe
   (``(..., n, 7)``, see ``PRODUCTS``). Everything the plug-in and the cross-fitted alignment
   need -- on all probes, and with any one probe left out -- is a sum of these, so stage 2
   never touches a p-dimensional vector again.
2. :func:`crossed_interval` takes the products of every run (``(..., R, n, 7)``) and returns,
   for each estimator, the mean over runs and its crossed-design (runs x probes) interval.
"""

from __future__ import annotations

import warnings

import numpy as np

from revstats.errors import DegenerateDataWarning

__all__ = ["ESTIMATORS", "FIELDS", "PRODUCTS", "crossed_interval", "probe_products"]

# <d_k, S_w>, <S_d, w_k>, <d_k, w_k>, <d_k, S_d>, <d_k, d_k>, <w_k, S_w>, <w_k, w_k>
PRODUCTS = ("d_sw", "sd_w", "d_w", "d_sd", "d_d", "w_sw", "w_w")
ESTIMATORS = ("plugin", "debiased")
FIELDS = ("estimate", "low", "high", "se", "se_runs", "var_runs", "var_probes", "df", "n_runs")


def probe_products(d: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-probe inner products of drift rows `d` and direction rows `w`, ``(..., n, 7)``.

    `d` and `w` are ``(..., n, p)`` (broadcasting over the leading axes; `w` usually lacks the
    step axis and its own products are then computed once). With ``S_d = sum_i d_i`` and
    ``S_w = sum_i w_i`` the last axis holds, in the order of ``PRODUCTS``:
    ``<d_k, S_w>, <S_d, w_k>, <d_k, w_k>, <d_k, S_d>, <d_k, d_k>, <w_k, S_w>, <w_k, w_k>``.
    """
    d = np.asarray(d, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    sd, sw = d.sum(axis=-2), w.sum(axis=-2)
    lead = np.broadcast_shapes(d.shape[:-2], w.shape[:-2])
    n = d.shape[-2]
    out = np.empty((*lead, n, len(PRODUCTS)))
    # matrix-vector products run on BLAS; the row-wise dots are einsums
    out[..., 0] = (d @ sw[..., None])[..., 0]
    out[..., 1] = np.broadcast_to((w @ sd[..., None])[..., 0], (*lead, n))
    out[..., 2] = np.einsum("...ni,...ni->...n", d, w)
    out[..., 3] = (d @ sd[..., None])[..., 0]
    out[..., 4] = np.einsum("...ni,...ni->...n", d, d)
    out[..., 5] = np.broadcast_to((w @ sw[..., None])[..., 0], (*lead, n))
    out[..., 6] = np.broadcast_to(np.einsum("...ni,...ni->...n", w, w), (*lead, n))
    return out


def _values(prods: np.ndarray) -> tuple[np.ndarray, ...]:
    """Full-sample and leave-one-probe-out plug-in and cross-fitted cosines.

    Returns ``(plugin, plugin_loo, debiased, debiased_loo)`` with shapes ``(...)`` and
    ``(..., n)``. The U-statistic normalisations 1/(n(n-1)) cancel in the ratio.
    """
    d_sw, sd_w, d_w, d_sd, d_d, w_sw, w_w = np.moveaxis(prods, -1, 0)
    sdw, sdd, sww = d_sw.sum(-1), d_sd.sum(-1), w_sw.sum(-1)
    qdw, qdd, qww = d_w.sum(-1), d_d.sum(-1), w_w.sum(-1)
    # leave probe k out of every sum
    sdw_k = sdw[..., None] - d_sw - sd_w + d_w
    sdd_k = sdd[..., None] - 2.0 * d_sd + d_d
    sww_k = sww[..., None] - 2.0 * w_sw + w_w
    qdw_k, qdd_k, qww_k = qdw[..., None] - d_w, qdd[..., None] - d_d, qww[..., None] - w_w
    with np.errstate(invalid="ignore", divide="ignore"):
        plugin = np.clip(sdw / np.sqrt(sdd * sww), -1.0, 1.0)
        plugin_loo = np.clip(sdw_k / np.sqrt(sdd_k * sww_k), -1.0, 1.0)
        debiased = _ratio(sdw - qdw, sdd - qdd, sww - qww)
        debiased_loo = _ratio(sdw_k - qdw_k, sdd_k - qdd_k, sww_k - qww_k)
    return plugin, plugin_loo, debiased, debiased_loo


def _ratio(dw: np.ndarray, dd: np.ndarray, ww: np.ndarray) -> np.ndarray:
    ok = (dd > 0) & (ww > 0)
    return np.where(ok, dw / np.sqrt(np.where(ok, dd * ww, 1.0)), np.nan)


def _jackknife_var(x: np.ndarray) -> np.ndarray:
    """Delete-one jackknife variance along the last axis: (n-1)/n sum (x_k - mean)^2."""
    n = x.shape[-1]
    return (n - 1) / n * np.sum((x - x.mean(axis=-1, keepdims=True)) ** 2, axis=-1)


def _one_estimator(full: np.ndarray, loo: np.ndarray, confidence: float) -> np.ndarray:
    """Fields (``FIELDS``) for one estimator; `full` ``(..., R)``, `loo` ``(..., R, n)``."""
    n = loo.shape[-1]
    used = np.isfinite(full) & np.all(np.isfinite(loo), axis=-1)  # (..., R)
    r = used.sum(axis=-1)
    w = used.astype(np.float64)
    f = np.where(used, full, 0.0)
    g = np.where(used[..., None], loo, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rr = np.where(r > 0, r, np.nan)
        est = f.sum(-1) / rr
        var_runs = np.sum(w * (f - est[..., None]) ** 2, axis=-1) / (rr - 1)
        v1 = np.sum(w * _jackknife_var(g), axis=-1) / rr  # mean per-run probe variance
        v2 = _jackknife_var(g.sum(-2) / rr[..., None])  # probe variance of the run mean
        # E v1 = s2_probe + s2_int / n_probe-scale, E v2 = s2_probe + s2_int / R: solve for the
        # shared (probe) part; the run-specific part is already in var_runs / R
        shared = np.maximum(v2 - (v1 - v2) / (rr - 1), 0.0)
    return _finish(est, var_runs, shared, r, n, confidence)


def crossed_interval(prods: np.ndarray, confidence: float = 0.95) -> np.ndarray:
    """Crossed-design interval for the mean over runs of the plug-in and cross-fitted alignment.

    `prods` is ``(..., R, n, 7)`` from :func:`probe_products` (R runs, n shared probes).
    Returns ``(..., 2, 9)``: estimators ``ESTIMATORS`` by ``FIELDS``.

    With a_r the run's estimate, a_r(-k) the same with probe k removed from witness, aligned
    and run alike, R runs and n probes::

        var_runs   = sample variance of a_r over runs
        v1         = mean_r jack_k(a_r(-k))          (per-run probe variance)
        v2         = jack_k(mean_r a_r(-k))          (probe variance of the run mean)
        var_probes = max(v2 - (v1 - v2) / (R - 1), 0)
        var        = var_runs / R + var_probes

    ``jack_k(x_k) = (n-1)/n sum_k (x_k - mean x)^2``. var_runs / R is the Student-t term of
    independent runs; var_probes is the variance shared by every run because they see the
    same probes (witness and aligned-model probe noise): v2 contains it plus 1/R of the
    run x probe interaction, v1 contains it plus all of that interaction, so the moment
    combination removes the interaction, which var_runs already counts. The interval is
    ``estimate +- t_df * sqrt(var)`` with Welch-Satterthwaite df from (R - 1, n - 1),
    clipped to [-1, 1]. Runs whose estimate or a leave-one-out value is undefined (NaN) are
    left out; fewer than 2 usable runs gives NaN with a ``DegenerateDataWarning``.
    """
    prods = np.asarray(prods, dtype=np.float64)
    if prods.shape[-2] < 3:
        raise ValueError(f"need at least 3 probes for the leave-one-out terms, got {prods.shape[-2]}")
    plugin, plugin_loo, debiased, debiased_loo = _values(prods)
    out = np.stack(
        [_one_estimator(plugin, plugin_loo, confidence),
         _one_estimator(debiased, debiased_loo, confidence)],
        axis=-2,
    )
    short = out[..., -1] < 2
    if np.any(short):
        warnings.warn(
            f"{int(np.count_nonzero(short))} of {short.size} alignment intervals have fewer "
            "than 2 runs with a defined estimate (zero drift, e.g. the reference step, or a "
            "cross-fitted squared norm <= 0); the interval is NaN there",
            DegenerateDataWarning,
            stacklevel=2,
        )
    return out


# ----------------------------------------------------------------------------- Gram form
GRAMS = ("dd", "dw", "ww")


def probe_grams(d: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Probe x probe inner products ``(..., n, n, 3)``: ``<d_i, d_j>``, ``<d_i, w_j>``, ``<w_i, w_j>``."""
    d = np.asarray(d, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    lead = np.broadcast_shapes(d.shape[:-2], w.shape[:-2])
    n = d.shape[-2]
    out = np.empty((*lead, n, n, len(GRAMS)))
    # einsum, not BLAS: these are small products, and a multithreaded BLAS on a shared machine
    # (the one-pass reduction calls this from worker threads) oversubscribes the cores
    out[..., 0] = np.einsum("...ip,...jp->...ij", d, d)
    out[..., 1] = np.einsum("...ip,...jp->...ij", d, w)
    out[..., 2] = np.broadcast_to(np.einsum("...ip,...jp->...ij", w, w), (*lead, n, n))
    return out


def u_variance(h: np.ndarray) -> np.ndarray:
    """Unbiased variance of the U-statistic ``mean_{i != j} h_ij`` of n iid units.

    `h` is ``(..., n, n)`` symmetric (its diagonal is ignored). Hoeffding:
    ``Var U = 4 (n-2)/(n(n-1)) zeta_1 + 2/(n(n-1)) zeta_2`` with ``zeta_1 = E h_ij h_ik - theta^2``
    and ``zeta_2 = E h_ij^2 - theta^2``; each moment is estimated without bias by the mean over
    distinct index pairs, triples and quadruples (computed from row sums). Needs n >= 4.
    """
    n = h.shape[-1]
    h = h * (1.0 - np.eye(n))
    s = h.sum(axis=(-2, -1))
    rho = h.sum(axis=-1)
    q = np.sum(h * h, axis=(-2, -1))
    p = np.sum(rho * rho, axis=-1)
    c2 = n * (n - 1.0)
    c3 = c2 * (n - 2.0)
    c4 = c3 * (n - 3.0)
    theta2 = (s * s - 4.0 * p + 2.0 * q) / c4
    zeta1 = (p - q) / c3 - theta2
    zeta2 = q / c2 - theta2
    return 4.0 * (n - 2.0) / c2 * zeta1 + 2.0 / c2 * zeta2


def _linear_kernels(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-run estimates and delta-method U-kernels of the plug-in and cross-fitted cosines.

    `g` is ``(..., n, n, 3)``. Returns ``(plugin, k_plugin, debiased, k_debiased)``: estimates
    ``(...)`` and kernels ``(..., n, n)`` whose U-statistic is the estimator's linearisation
    (mean zero by the cosine's scale invariance).
    """
    n = g.shape[-2]
    a_, b_, c_ = g[..., 0], g[..., 1], g[..., 2]
    bs = 0.5 * (b_ + np.swapaxes(b_, -1, -2))
    eye = np.eye(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        # plug-in: a V-statistic ratio; V = mean_{i != j} of (n-1)/n M_ij + (M_ii + M_jj)/(2n)
        va, vb, vc = (x.mean(axis=(-2, -1)) for x in (a_, bs, c_))
        plugin = np.clip(vb / np.sqrt(va * vc), -1.0, 1.0)
        gb = 1.0 / np.sqrt(va * vc)
        m = (gb[..., None, None] * bs - (plugin / (2 * va))[..., None, None] * a_
             - (plugin / (2 * vc))[..., None, None] * c_)
        diag = np.diagonal(m, axis1=-2, axis2=-1)
        k_plugin = (n - 1.0) / n * m + (diag[..., :, None] + diag[..., None, :]) / (2.0 * n)
        # cross-fitted: a ratio of U-statistics (off-diagonal means)
        off = 1.0 - eye
        c2 = n * (n - 1.0)
        ua, ub, uc = (np.sum(x * off, axis=(-2, -1)) / c2 for x in (a_, bs, c_))
        debiased = _ratio(ub, ua, uc)
        gb = 1.0 / np.sqrt(ua * uc)
        k_debiased = (gb[..., None, None] * bs - (debiased / (2 * ua))[..., None, None] * a_
                      - (debiased / (2 * uc))[..., None, None] * c_)
    return plugin, k_plugin, debiased, k_debiased


def _gram_estimator(full: np.ndarray, kern: np.ndarray, confidence: float) -> np.ndarray:
    """Fields (``FIELDS``) for one estimator; `full` ``(..., R)``, `kern` ``(..., R, n, n)``."""
    n = kern.shape[-1]
    used = np.isfinite(full) & np.all(np.isfinite(kern), axis=(-2, -1))
    k = np.where(used[..., None, None], kern, 0.0)
    return gram_fields(full, u_variance(k), used, shared_u_variance(k.sum(axis=-3), used.sum(-1)),
                       n, confidence)


def gram_run_terms(grams: np.ndarray) -> tuple[np.ndarray, ...]:
    """One (run, step)'s part of :func:`crossed_interval_gram`, so that a slab's Gram can be
    dropped as soon as it is reduced (the one-pass reduction streams them).

    `grams` is ``(..., n, n, 3)``. Returns, each with a trailing estimator axis (``ESTIMATORS``):
    the estimate ``(..., 2)``, the U-variance of its linearised kernel ``(..., 2)``, whether it
    is usable ``(..., 2)``, and the kernel itself, zero where unusable, ``(..., 2, n, n)`` (to
    be summed over an arm's runs for :func:`shared_u_variance`).
    """
    plugin, kp, debiased, kd = _linear_kernels(np.asarray(grams, dtype=np.float64))
    full = np.stack([plugin, debiased], axis=-1)
    kern = np.stack([kp, kd], axis=-3)
    used = np.isfinite(full) & np.all(np.isfinite(kern), axis=(-2, -1))
    kern = np.where(used[..., None, None], kern, 0.0)
    return full, u_variance(kern), used, kern


def shared_u_variance(kernel_sum: np.ndarray, n_used: np.ndarray) -> np.ndarray:
    """U-variance of the runs' mean kernel: `kernel_sum` ``(..., n, n)`` over `n_used` runs."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rr = np.where(n_used > 0, n_used, np.nan)
        return u_variance(kernel_sum / np.asarray(rr, dtype=np.float64)[..., None, None])


def gram_fields(full: np.ndarray, uvar: np.ndarray, used: np.ndarray, v2: np.ndarray, n: int,
                confidence: float) -> np.ndarray:
    """Fields (``FIELDS``) of one estimator from its per-run terms (`full`, `uvar`, `used`:
    ``(..., R)``, see :func:`gram_run_terms`) and the U-variance of the runs' mean kernel `v2`
    ``(...)`` (:func:`shared_u_variance`)."""
    r = used.sum(axis=-1)
    wgt = used.astype(np.float64)
    f = np.where(used, full, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rr = np.where(r > 0, r, np.nan)
        est = f.sum(-1) / rr
        var_runs = np.sum(wgt * (f - est[..., None]) ** 2, axis=-1) / (rr - 1)
        v1 = np.sum(wgt * np.where(used, uvar, 0.0), axis=-1) / rr
        shared = np.maximum(v2 - (v1 - v2) / (rr - 1), 0.0)
    return _finish(est, var_runs, shared, r, n, confidence)


def crossed_interval_gram_terms(full: np.ndarray, uvar: np.ndarray, used: np.ndarray,
                                v2: np.ndarray, n: int, confidence: float = 0.95) -> np.ndarray:
    """:func:`crossed_interval_gram` from streamed terms: `full`, `uvar`, `used` ``(..., R, 2)``
    (:func:`gram_run_terms` of each run) and `v2` ``(..., 2)`` (:func:`shared_u_variance` of
    the same runs' kernel sum). Returns ``(..., 2, 9)``; equal to the batch form."""
    if n < 4:
        raise ValueError(f"need at least 4 probes, got {n}")
    out = np.stack([gram_fields(np.asarray(full)[..., e], np.asarray(uvar)[..., e],
                                np.asarray(used)[..., e], np.asarray(v2)[..., e], n, confidence)
                    for e in range(len(ESTIMATORS))], axis=-2)
    _warn_short(out)
    return out


def _finish(est, var_runs, shared, r, n, confidence):
    with np.errstate(invalid="ignore", divide="ignore"):
        rr = np.where(r > 0, r, np.nan)
        a = var_runs / rr
        var = a + shared
        se = np.sqrt(var)
        denom = a**2 / (rr - 1) + shared**2 / (n - 1)
        df = np.where(denom > 0, var**2 / np.where(denom > 0, denom, 1.0), rr - 1)
        from scipy import stats  # deferred: keeps `import revstats` light

        q = stats.t.ppf(0.5 + confidence / 2, np.where(r >= 2, df, np.nan))
        low = np.clip(est - q * se, -1.0, 1.0)
        high = np.clip(est + q * se, -1.0, 1.0)
    bad = r < 2
    fields = [np.where(bad, np.nan, x) for x in (est, low, high, se, np.sqrt(a), var_runs, shared, df)]
    fields[0] = np.where(r > 0, est, np.nan)
    return np.stack([*fields, r.astype(np.float64)], axis=-1)


def crossed_interval_gram(grams: np.ndarray, confidence: float = 0.95) -> np.ndarray:
    """As :func:`crossed_interval`, from probe Gram matrices ``(..., R, n, n, 3)``, with exactly
    unbiased (Hoeffding) probe variances of the delta-method linearisation instead of the
    delete-one jackknife (which double-counts the degenerate second-order part)."""
    grams = np.asarray(grams, dtype=np.float64)
    if grams.shape[-2] < 4:
        raise ValueError(f"need at least 4 probes, got {grams.shape[-2]}")
    plugin, kp, debiased, kd = _linear_kernels(grams)
    out = np.stack([_gram_estimator(plugin, kp, confidence),
                    _gram_estimator(debiased, kd, confidence)], axis=-2)
    _warn_short(out)
    return out


def _warn_short(out: np.ndarray) -> None:
    short = out[..., -1] < 2
    if np.any(short):
        warnings.warn(
            f"{int(np.count_nonzero(short))} of {short.size} alignment intervals have fewer "
            "than 2 runs with a defined estimate (zero drift, e.g. the reference step, or a "
            "cross-fitted squared norm <= 0); the interval is NaN there",
            DegenerateDataWarning,
            stacklevel=3,
        )
