"""Korn-Graubard rate interval with runs/seeds as clusters (revstats.intervals.cluster_proportion_ci)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from revstats.intervals import cluster_proportion_ci, mean_ci


def _beta_binomial(rng, n_rep, c, m, p, rho):
    """Cluster rates ~ Beta with mean p and intra-cluster correlation rho; m probes each."""
    a = p * (1 - rho) / rho
    b = (1 - p) * (1 - rho) / rho
    return rng.binomial(m, rng.beta(a, b, size=(n_rep, c)))


def test_formula_by_hand():
    k, m = np.array([10, 20, 30, 12]), 64
    r = cluster_proportion_ci(k, m)
    p = k.sum() / (4 * m)
    var = np.var(k / m, ddof=1) / 4  # equal sizes: the variance of the mean of cluster rates
    n_eff = p * (1 - p) / var * (stats.norm.ppf(0.975) / stats.t.ppf(0.975, 3)) ** 2
    x = p * n_eff
    assert r.estimate == pytest.approx(p)
    assert r.low == pytest.approx(stats.beta.ppf(0.025, x, n_eff - x + 1))
    assert r.high == pytest.approx(stats.beta.ppf(0.975, x + 1, n_eff - x))
    assert r.extra["design_effect"] > 1 and r.method == "korn_graubard"


def test_bounds_stay_in_unit_interval_where_t_on_rates_does_not():
    k = np.array([0, 0, 6, 0])  # rare behaviour in one run of four
    t = mean_ci(k / 64)
    assert t.low < 0  # the t interval on rates leaves [0, 1]
    r = cluster_proportion_ci(k, 64)
    assert 0 <= r.low < r.estimate < r.high <= 1
    zero = cluster_proportion_ci([0, 0, 0, 0], 64)  # no event: a real upper bound, not [0, 0]
    assert zero.low == 0 and 0 < zero.high < 0.1
    # two seeds (t with 1 df) say little, and the interval says so
    assert cluster_proportion_ci([0, 0], 64).high > 0.5
    one = cluster_proportion_ci([64, 64, 64], 64)
    assert one.high == 1 and 0.8 < one.low < 1


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="at least 2 clusters"):
        cluster_proportion_ci([3], 10)
    with pytest.raises(ValueError, match="one entry per cluster"):
        cluster_proportion_ci([1, 2], [10, 10, 10])
    with pytest.raises(ValueError, match="0 <= k_c <= n_c"):
        cluster_proportion_ci([11, 2], 10)


@pytest.mark.parametrize("p, rho", [(0.3, 0.08), (0.06, 0.05), (0.6, 0.15)])
def test_coverage_in_the_organism_design(p, rho):
    # 8 seeds x 64 shared probes, over-dispersed runs (between-run sd 0.05-0.2 >> binomial):
    # the interval covers at >= 95% (binomial test); the pooled Wilson (probes independent)
    # interval does not
    rng = np.random.default_rng(2026)
    n_rep, c, m = 600, 8, 64
    k = _beta_binomial(rng, n_rep, c, m, p, rho)
    cover = np.array([(lambda r: r.low <= p <= r.high)(cluster_proportion_ci(row, m)) for row in k])
    res = stats.binomtest(int(cover.sum()), n_rep, 0.95, alternative="less")
    assert res.pvalue > 0.001, cover.mean()
    from revstats.intervals import proportion_ci

    wil = proportion_ci(k.sum(1), c * m)
    naive = np.mean((wil.low <= p) & (p <= wil.high))
    assert naive < cover.mean()
