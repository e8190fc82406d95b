"""A rate's confidence interval when outcomes come in clusters (probes within runs/seeds).

Korn & Graubard's (1998) interval, as in R's ``survey::svyciprop(method = "beta")``: the pooled
rate p = sum k_c / sum n_c; its variance from the clusters (ratio-estimator linearisation,
Var = C / (C - 1) * sum_c (k_c - p n_c)^2 / n^2, the between-cluster variation, so correlated
probes of one run count once); the effective sample size n_eff = p (1 - p) / Var, shrunk for
the few clusters by (z / t_{C-1})^2; then the Clopper-Pearson interval at n_eff trials with
p n_eff successes. The interval lies in [0, 1] by construction, is never zero-width, and at
p = 0 or 1 (or no between-cluster variation) it falls back to n_eff = n (the binomial limit:
with no observed over-dispersion there is nothing to inflate by).

References
----------
Korn EL, Graubard BI (1998). Confidence intervals for proportions with small expected number
of positive counts estimated from survey data. Survey Methodology 24:193-201.
Lumley T (2010). Complex Surveys, sec. 2.3.1 (svyciprop, method "beta").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from revstats._lazy import scipy_stats as stats
from revstats._validation import as_real_array, check_confidence
from revstats.intervals._results import Effect, Interval

__all__ = ["cluster_proportion_ci", "cluster_rate_comparison"]


def _validate(k: Any, n: Any, confidence: float) -> tuple[np.ndarray, np.ndarray, float]:
    conf = check_confidence(confidence)
    kk = as_real_array("k", k).ravel()
    nn = as_real_array("n", n)
    if nn.ndim == 0:
        nn = np.full(kk.shape, float(nn))
    nn = nn.ravel()
    if kk.shape != nn.shape:
        raise ValueError(f"`k` and `n` must have one entry per cluster, got {kk.size} and {nn.size}")
    if kk.size < 2:
        raise ValueError(f"`k` needs at least 2 clusters (runs/seeds) to estimate the between-"
                         f"cluster variance, got {kk.size}; with one cluster use proportion_ci "
                         f"and say that probes are treated as independent")
    if not (np.all(np.isfinite(kk)) and np.all(np.isfinite(nn))):
        raise ValueError("`k` and `n` must be finite")
    if np.any(nn <= 0) or np.any(kk < 0) or np.any(kk > nn) or np.any(kk != np.round(kk)):
        raise ValueError("`k` must hold whole counts with 0 <= k_c <= n_c, and `n` positive sizes")
    return kk, nn, conf


def cluster_proportion_ci(k: Any, n: Any, *, confidence: float = 0.95) -> Interval:
    """Korn-Graubard interval of a pooled rate with clusters as the independent units.

    Parameters
    ----------
    k : array-like (C,)
        Successes (e.g. harmful answers) per cluster (run or seed).
    n : int or array-like (C,)
        Trials (probes) per cluster.

    Returns
    -------
    Interval with ``estimate`` = pooled rate, bounds in [0, 1], ``method="korn_graubard"``,
    ``n`` = (clusters, trials) and ``extra`` = ``n_eff`` (after the df shrinkage),
    ``design_effect`` (n / n_eff before it, NaN when the variance is 0), ``df`` = C - 1.
    """
    kk, nn, conf = _validate(k, n, confidence)
    c = kk.size
    total = nn.sum()
    p = kk.sum() / total
    var = c / (c - 1) * np.sum((kk - p * nn) ** 2) / total**2
    alpha = 1.0 - conf
    if var > 0 and 0 < p < 1:
        n_eff = min(total, p * (1 - p) / var)
        deff = total * var / (p * (1 - p))
    else:
        n_eff, deff = total, float("nan")
    df = c - 1
    n_eff *= (stats.norm.ppf(1 - alpha / 2) / stats.t.ppf(1 - alpha / 2, df)) ** 2
    x = p * n_eff
    low = 0.0 if x <= 0 else float(stats.beta.ppf(alpha / 2, x, n_eff - x + 1))
    high = 1.0 if x >= n_eff else float(stats.beta.ppf(1 - alpha / 2, x + 1, n_eff - x))
    return Interval(estimate=float(p), low=low, high=high, confidence=conf,
                    method="korn_graubard", n=(int(c), int(total)),
                    extra={"n_eff": float(n_eff), "design_effect": float(deff), "df": int(df)})


def _cluster_var(kk: np.ndarray, nn: np.ndarray) -> tuple[float, float, float]:
    """Pooled rate, its between-cluster (linearised) variance and the binomial variance."""
    c, total = kk.size, nn.sum()
    p = kk.sum() / total
    return p, c / (c - 1) * np.sum((kk - p * nn) ** 2) / total**2, p * (1 - p) / total


def cluster_rate_comparison(k1: Any, n1: Any, k2: Any, n2: Any, *,
                            measure: str = "difference", confidence: float = 0.95) -> Effect:
    """Risk difference (p1 - p2) or risk ratio (p1 / p2) of two pooled rates, runs as clusters.

    Each arm's pooled rate has the between-cluster variance of `cluster_proportion_ci`
    (ratio-estimator linearisation), so correlated probes of one run count once. The interval
    is Welch-type: estimate +- t_df * SE with SE^2 = V1 + V2 (difference) or
    V1 / p1^2 + V2 / p2^2 on the log scale (ratio), and Satterthwaite's df from the two arms'
    C - 1. An arm without between-cluster variation uses its binomial variance (the limit with
    no observed over-dispersion). The difference interval is clipped to [-1, 1].

    Parameters
    ----------
    k1, n1, k2, n2 : array-like (C1,), (C2,)
        Events and trials per cluster (run) in the treatment (1) and control (2) arm.
    measure : {"difference", "ratio"}

    Returns
    -------
    Effect with ``statistic`` (t), a two-sided ``pvalue`` (H0: difference 0 / ratio 1),
    ``standard_error`` (log scale for the ratio), ``method`` naming the measure,
    ``n`` = ((C1, N1), (C2, N2)) and ``extra["df"]``.
    """
    if measure not in ("difference", "ratio"):
        raise ValueError(f"`measure` must be 'difference' or 'ratio', got {measure!r}")
    a_k, a_n, conf = _validate(k1, n1, confidence)
    b_k, b_n, _ = _validate(k2, n2, confidence)
    p1, v1, b1 = _cluster_var(a_k, a_n)
    p2, v2, b2 = _cluster_var(b_k, b_n)
    v1 = v1 if v1 > 0 else b1
    v2 = v2 if v2 > 0 else b2
    if measure == "ratio":
        if p1 <= 0 or p2 <= 0:
            raise ValueError("the risk ratio needs at least one event in each arm (`k1`, `k2`)")
        est, u1, u2 = float(np.log(p1 / p2)), v1 / p1**2, v2 / p2**2
    else:
        est, u1, u2 = float(p1 - p2), v1, v2
    var = u1 + u2
    if not var > 0:
        raise ValueError("both arms have rate 0 or 1 in every run: the comparison has no "
                         "variance; report the rates themselves")
    df = var**2 / (u1**2 / (a_k.size - 1) + u2**2 / (b_k.size - 1))
    se = float(np.sqrt(var))
    tq = float(stats.t.ppf(0.5 + conf / 2, df))
    lo, hi = est - tq * se, est + tq * se
    tstat = est / se
    pvalue = float(2 * stats.t.sf(abs(tstat), df))
    if measure == "ratio":
        est, lo, hi = float(np.exp(est)), float(np.exp(lo)), float(np.exp(hi))
        method = "cluster risk ratio (runs as clusters, log scale, Welch t)"
    else:
        lo, hi = max(lo, -1.0), min(hi, 1.0)
        method = "cluster risk difference (runs as clusters, Welch t)"
    return Effect(estimate=est, low=float(lo), high=float(hi), confidence=conf, method=method,
                  statistic=float(tstat), pvalue=pvalue, standard_error=se,
                  n=((int(a_k.size), int(a_n.sum())), (int(b_k.size), int(b_n.sum()))),
                  extra={"df": float(df)})
