"""Published worked examples for revstats.effects.

Sources
- Borenstein M, Hedges LV, Higgins JPT, Rothstein HR (2009). Introduction to Meta-Analysis.
  Wiley. Ch. 4 worked example: means 103 vs 100, SDs 5.5 and 4.5, n = 50 each:
  S_within = 5.0249, d = 0.5970, V_d = 0.0418, SE_d = 0.2044, J = 0.9923, g = 0.5924,
  V_g = 0.0411, SE_g = 0.2028. Ch. 5 worked example: events 5/100 (treated) vs 10/100
  (control): RR = 0.5000, lnRR = -0.6931, V = 0.2800, SE = 0.5292; OR = 0.4737,
  lnOR = -0.7472, V = 0.3216, SE = 0.5671; RD = -0.0500, V = 0.0014, SE = 0.0371.
- Newcombe (1998b) Stat Med 17:873-890 Table II method 10 for the risk-difference interval.
- scipy.stats.ttest_ind(equal_var=False) / ttest_rel and scipy.stats.contingency.odds_ratio
  (kind="sample") for independent checks.
- Jonckheere-Terpstra: exact p-values checked against full enumeration of permutations.
"""

import itertools

import numpy as np
import pytest
from scipy import stats
from scipy.stats.contingency import odds_ratio as scipy_odds_ratio

from revstats.effects import (
    _trend,
    hedges_g_from_stats,
    jonckheere_terpstra,
    mean_difference,
    odds_ratio,
    risk_difference,
    risk_ratio,
)


def test_borenstein_chapter_4_hedges_g():
    for corr in ("exact", "approximate"):
        res = hedges_g_from_stats(103, 5.5, 50, 100, 4.5, 50, correction=corr)
        assert round(res.extra["sd_within"], 4) == 5.0249
        assert round(res.extra["d"], 4) == 0.5970
        assert round(res.extra["variance_d"], 4) == 0.0418
        assert round(np.sqrt(res.extra["variance_d"]), 4) == 0.2044
        assert round(res.extra["j"], 4) == 0.9923
        assert round(res.estimate, 4) == 0.5924
        assert round(res.extra["variance_g"], 4) == 0.0411
        assert round(res.standard_error, 4) == 0.2028
        assert res.low == pytest.approx(res.estimate - 1.959964 * res.standard_error, rel=1e-6)


def test_borenstein_chapter_5_risk_ratio():
    res = risk_ratio(5, 100, 10, 100)
    assert round(res.estimate, 4) == 0.5000
    assert round(res.extra["log_estimate"], 4) == -0.6931
    assert round(res.standard_error**2, 4) == 0.2800
    assert round(res.standard_error, 4) == 0.5292


def test_borenstein_chapter_5_odds_ratio():
    res = odds_ratio(5, 100, 10, 100)
    assert round(res.estimate, 4) == 0.4737
    assert round(res.extra["log_estimate"], 4) == -0.7472
    assert round(res.standard_error**2, 4) == 0.3216
    assert round(res.standard_error, 4) == 0.5671
    ref = scipy_odds_ratio([[5, 95], [10, 90]], kind="sample")
    assert res.estimate == pytest.approx(ref.statistic, rel=1e-12)


def test_borenstein_chapter_5_risk_difference_and_newcombe():
    res = risk_difference(5, 100, 10, 100)
    assert round(res.estimate, 4) == -0.0500
    assert round(res.standard_error**2, 4) == 0.0014
    assert round(res.standard_error, 4) == 0.0371
    res = risk_difference(56, 70, 48, 80)  # Newcombe 1998b Table II (a), method 10
    assert (round(res.low, 4), round(res.high, 4)) == (0.0524, 0.3339)


def test_welch_and_paired_match_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 2, 12), rng.normal(0, 1, 20)
    res = mean_difference(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-10)
    assert (res.low, res.high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    b2 = rng.normal(size=12)
    res = mean_difference(a, b2, paired=True, confidence=0.9)
    ref = stats.ttest_rel(a, b2)
    ci = ref.confidence_interval(0.9)
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-10)
    assert (res.low, res.high) == pytest.approx((ci.low, ci.high), rel=1e-10)


def _enumerated_pvalue(groups):
    pooled = np.concatenate(groups)
    sizes = np.cumsum([len(g) for g in groups])[:-1]
    observed = _trend._statistic([np.asarray(g, float) for g in groups])
    hits = total = 0
    for perm in itertools.permutations(range(pooled.size)):
        parts = np.split(pooled[list(perm)], sizes)
        hits += _trend._statistic(parts) >= observed - 1e-9
        total += 1
    return hits / total


@pytest.mark.parametrize("groups", [
    ([1.0, 3.0, 5.0], [2.0, 6.0], [4.0, 8.0]),
    ([0.3, 0.1], [0.2, 0.5, 0.4], [0.9, 0.6]),
])
def test_jonckheere_exact_matches_enumeration(groups):
    res = jonckheere_terpstra(*groups)
    assert "exact" in res.method
    assert res.pvalue == pytest.approx(_enumerated_pvalue(groups), rel=1e-10)


def test_jonckheere_normal_with_ties_close_to_enumeration():
    groups = ([1.0, 2.0, 2.0], [2.0, 3.0], [3.0, 4.0, 5.0])
    res = jonckheere_terpstra(*groups)
    assert "tie-corrected" in res.method
    assert res.pvalue == pytest.approx(_enumerated_pvalue(groups), abs=0.02)
