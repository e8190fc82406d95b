"""Interim stand-ins for core functions that have not landed on main yet.

Deleted as `revstats.geometry`, `revstats.nulls`, `revstats.intervals` and `revstats.effects`
land; `analysis._core.interim_used()` lists which were used, and results.json records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class _Result:
    estimate: Any
    low: Any
    high: Any
    confidence: float
    method: str
    pvalue: Any = None
    statistic: Any = None
    extra: dict | None = None


def mean_ci(x, *, confidence: float):
    x = np.asarray(x, float)
    m, n = x.mean(), x.size
    if n < 2:
        return _Result(m, np.nan, np.nan, confidence, "t")
    h = stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / np.sqrt(n)
    return _Result(m, m - h, m + h, confidence, "t")


def proportion_ci(k, n, *, method: str, confidence: float):
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return _Result(p, c - h, c + h, confidence, "wilson")


def proportion_diff_ci(k1, n1, k2, n2, *, method: str, confidence: float):
    a = proportion_ci(k1, n1, method="wilson", confidence=confidence)
    b = proportion_ci(k2, n2, method="wilson", confidence=confidence)
    d = a.estimate - b.estimate
    lo = d - np.sqrt((a.estimate - a.low) ** 2 + (b.high - b.estimate) ** 2)
    hi = d + np.sqrt((a.high - a.estimate) ** 2 + (b.estimate - b.low) ** 2)
    return _Result(d, lo, hi, confidence, "newcombe")


def bootstrap_ci(data, statistic, *, method: str, n_resamples: int, confidence: float, rng: int):
    res = stats.bootstrap(data, statistic, method="percentile", n_resamples=n_resamples,
                          confidence_level=confidence, rng=rng, paired=True, vectorized=False)
    return _Result(statistic(*data), res.confidence_interval.low,
                   res.confidence_interval.high, confidence, "percentile")


def hedges_g(a, b, *, confidence: float):
    a, b = np.asarray(a, float), np.asarray(b, float)
    n1, n2 = a.size, b.size
    sp = np.sqrt(((n1 - 1) * a.var(ddof=1) + (n2 - 1) * b.var(ddof=1)) / (n1 + n2 - 2))
    j = 1 - 3 / (4 * (n1 + n2) - 9)
    g = j * (a.mean() - b.mean()) / sp
    se = np.sqrt((n1 + n2) / (n1 * n2) + g * g / (2 * (n1 + n2)))
    z = stats.norm.ppf(0.5 + confidence / 2)
    return _Result(g, g - z * se, g + z * se, confidence, "hedges_g_normal")


def mean_difference(a, b, *, confidence: float):
    r = stats.ttest_ind(a, b, equal_var=False)
    ci = r.confidence_interval(confidence)
    return _Result(float(np.mean(a) - np.mean(b)), ci.low, ci.high, confidence, "welch_t",
                   pvalue=r.pvalue)


def risk_ratio(k1, n1, k2, n2, *, confidence: float):
    rr = (k1 / n1) / (k2 / n2)
    se = np.sqrt(1 / k1 - 1 / n1 + 1 / k2 - 1 / n2)
    z = stats.norm.ppf(0.5 + confidence / 2)
    return _Result(rr, rr * np.exp(-z * se), rr * np.exp(z * se), confidence, "katz_log")


def noninferiority_test(treatment, control, *, margin: float, higher_is_better: bool,
                        confidence: float):
    sign = 1.0 if higher_is_better else -1.0
    t, c = np.asarray(treatment, float), np.asarray(control, float)
    r = stats.ttest_ind(sign * t + margin, sign * c, equal_var=False, alternative="greater")
    diff = mean_difference(sign * t, sign * c, confidence=confidence)
    return _Result(diff.estimate, diff.low, diff.high, confidence, "welch_t_noninferiority",
                   pvalue=r.pvalue, extra={"noninferior": bool(r.pvalue < (1 - confidence) / 2)})


def jonckheere_terpstra(*groups, alternative="increasing"):
    groups = [np.asarray(g, float) for g in groups]
    s = 0.0
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            d = groups[j][None, :] - groups[i][:, None]
            s += np.sum(d > 0) + 0.5 * np.sum(d == 0)
    ns = np.array([g.size for g in groups])
    n = ns.sum()
    mean = (n * n - np.sum(ns**2)) / 4
    var = (n * n * (2 * n + 3) - np.sum(ns**2 * (2 * ns + 3))) / 72
    zs = (s - mean) / np.sqrt(var)
    m = (n * n - np.sum(ns**2)) / 2
    return _Result((2 * s - m) / m, np.nan, np.nan, 0.95, "jonckheere_terpstra_normal",
                   pvalue=stats.norm.sf(zs), statistic=s)


def spearman_ci(x, y, *, confidence: float, method: str, n_resamples: int, rng: int):
    del method

    def rho(a, b):
        return stats.spearmanr(a, b).statistic

    r = bootstrap_ci((np.asarray(x), np.asarray(y)), rho, method="percentile",
                     n_resamples=n_resamples, confidence=confidence, rng=rng)
    return _Result(rho(x, y), r.low, r.high, confidence, "spearman_bootstrap_percentile",
                   pvalue=stats.spearmanr(x, y).pvalue)
