"""Coverage of nominal 95% intervals by simulation; writes docs/coverage.md.

Run: ``python -m benchmarks.coverage_table [--sets 2000]`` (or ``revstats calibrate --only intervals``). Every row has a fixed seed (shown
in the table); tests/calibration/test_interval_coverage.py runs the same rows (`ROWS`) and
checks each with a binomial test according to its `expect` kind:

* ``nominal`` - theory says coverage is 0.95 in this regime: two-sided binomial test,
  reject at p < 0.001;
* ``conservative`` - coverage at least 0.95: one-sided test of "below 0.95";
* ``undercover`` - the method is known to under-cover here (Wald at small n): one-sided test
  that coverage is below 0.95 must give p < 1e-6.

Regimes for the discrete proportion intervals draw p uniformly per data set, because at a
single fixed p their coverage oscillates around the nominal level (Brown, Cai & DasGupta
2001); the average over p is what theory puts at 0.95.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from revstats._lazy import scipy_stats as stats
from revstats.effects import hedges_g_from_stats
from revstats.intervals import bootstrap_ci, mean_ci, proportion_ci, proportion_diff_ci


def proportion_coverage(method: str, n: int, p_range: tuple[float, float], sets: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    p = rng.uniform(*p_range, size=sets)
    k = rng.binomial(n, p)
    res = proportion_ci(k, n, method=method)  # type: ignore[arg-type]  # rows name valid methods
    return int(((res.low <= p) & (p <= res.high)).sum())


def diff_coverage(method: str, n1: int, n2: int, p_range: tuple[float, float], sets: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    p1, p2 = rng.uniform(*p_range, size=sets), rng.uniform(*p_range, size=sets)
    k1, k2 = rng.binomial(n1, p1), rng.binomial(n2, p2)
    res = proportion_diff_ci(k1, n1, k2, n2, method=method)  # type: ignore[arg-type]  # rows name valid methods
    d = p1 - p2
    return int(((res.low <= d) & (d <= res.high)).sum())


def t_coverage(n: int, sets: int, seed: int) -> int:
    x = np.random.default_rng(seed).normal(size=(sets, n))
    res = mean_ci(x)
    return int(((res.low <= 0) & (0 <= res.high)).sum())


def hedges_coverage(n: int, delta: float, sets: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(delta, 1, (sets, n)), rng.normal(0, 1, (sets, n))
    hits = 0
    for i in range(sets):
        r = hedges_g_from_stats(a[i].mean(), a[i].std(ddof=1), n, b[i].mean(), b[i].std(ddof=1), n)
        hits += r.low <= delta <= r.high
    return int(hits)


def bootstrap_coverage(method: str, n: int, sets: int, seed: int, n_resamples: int = 999) -> int:
    # exponential data (skewed, mean 1), all data sets in one vectorised call
    x = np.random.default_rng(seed).exponential(size=(sets, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bootstrap_ci(x, "mean", method=method, n_resamples=n_resamples, rng=seed)  # type: ignore[arg-type]  # rows name valid methods
    return int(((res.low <= 1.0) & (1.0 <= res.high)).sum())


@dataclass(frozen=True)
class Row:
    name: str
    regime: str
    seed: int
    expect: str
    run: Callable[[int, int], int]


U = (0.1, 0.9)
ROWS = [
    Row("proportion wilson", "n=100, p~U(0.1,0.9)", 1, "nominal", lambda s, z: proportion_coverage("wilson", 100, U, s, z)),
    Row("proportion jeffreys", "n=100, p~U(0.1,0.9)", 1, "nominal", lambda s, z: proportion_coverage("jeffreys", 100, U, s, z)),
    Row("proportion agresti_coull", "n=100, p~U(0.1,0.9)", 1, "conservative", lambda s, z: proportion_coverage("agresti_coull", 100, U, s, z)),
    Row("proportion clopper_pearson", "n=30, p~U(0.1,0.9)", 2, "conservative", lambda s, z: proportion_coverage("clopper_pearson", 30, U, s, z)),
    Row("proportion wilson_cc", "n=30, p~U(0.1,0.9)", 2, "conservative", lambda s, z: proportion_coverage("wilson_cc", 30, U, s, z)),
    Row("proportion wald", "n=15, p~U(0.05,0.15)", 3, "undercover", lambda s, z: proportion_coverage("wald", 15, (0.05, 0.15), s, z)),
    Row("difference newcombe", "n1=n2=60, p~U(0.2,0.8)", 4, "nominal", lambda s, z: diff_coverage("newcombe", 60, 60, (0.2, 0.8), s, z)),
    Row("difference miettinen_nurminen", "n1=n2=60, p~U(0.2,0.8)", 4, "nominal", lambda s, z: diff_coverage("miettinen_nurminen", 60, 60, (0.2, 0.8), s, z)),
    Row("difference newcombe_cc", "n1=n2=30, p~U(0.1,0.9)", 7, "conservative", lambda s, z: diff_coverage("newcombe_cc", 30, 30, U, s, z)),
    Row("difference wald", "n1=n2=10, p~U(0.05,0.2)", 8, "undercover", lambda s, z: diff_coverage("wald", 10, 10, (0.05, 0.2), s, z)),
    Row("mean t", "normal, n=10", 5, "nominal", lambda s, z: t_coverage(10, s, z)),
    Row("hedges_g normal approx.", "normal, n=30 per group, delta=0.5", 9, "nominal", lambda s, z: hedges_coverage(30, 0.5, s, z)),
    Row("bootstrap percentile, mean", "exponential, n=200, B=999", 6, "nominal", lambda s, z: bootstrap_coverage("percentile", 200, s, z)),
    Row("bootstrap basic, mean", "exponential, n=200, B=999", 6, "nominal", lambda s, z: bootstrap_coverage("basic", 200, s, z)),
    Row("bootstrap bca, mean", "exponential, n=200, B=999", 6, "nominal", lambda s, z: bootstrap_coverage("bca", 200, s, z)),
]


def check(row: Row, hits: int, sets: int) -> tuple[bool, float]:
    """(passes, p-value) of the binomial test for the row's `expect` kind."""
    if row.expect == "nominal":
        p = stats.binomtest(hits, sets, 0.95).pvalue
        return p > 0.001, p
    p = stats.binomtest(hits, sets, 0.95, alternative="less").pvalue
    if row.expect == "conservative":
        return p > 0.001, p
    return p < 1e-6, p
