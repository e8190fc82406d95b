"""Published worked examples for revstats.intervals, matched to the printed precision.

Sources
- Newcombe RG (1998a) Stat Med 17:857-872, Table I: 95% intervals for 81/263, 15/148, 0/20,
  1/29 (method 3 Wilson score, method 4 score with continuity correction, method 5
  Clopper-Pearson), printed to 4 decimals.
- Newcombe RG (1998b) Stat Med 17:873-890, Table II: 95% intervals for p1 - p2
  (method 1 Wald, method 6 Miettinen-Nurminen, method 10 hybrid score, method 11 with
  continuity correction) for the examples (a) 56/70 - 48/80, (b) 9/10 - 3/10,
  (d) 5/56 - 0/29, (e) 0/10 - 0/20, (f) 0/10 - 0/10, (g) 10/10 - 0/20, (h) 10/10 - 0/10.
- Efron B, Tibshirani RJ (1993) An Introduction to the Bootstrap, Table 14.2: spatial test
  data A (n = 26), plug-in variance 171.5; 90% percentile (100.8, 233.9) and BCa
  (115.8, 259.6) from B = 2000 (so compared within Monte Carlo error), and ch. 2 mouse data
  (treatment group mean 86.86, standard error 25.24).
- scipy.stats.binomtest(...).proportion_ci (wilson, wilsoncc, exact) and
  statsmodels.stats.proportion.proportion_confint (agresti_coull, jeffreys) as independent
  implementations of the same single-proportion methods. statsmodels' two-proportion score
  interval is deliberately not used (it is wrong on some inputs).
"""

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from revstats.intervals import bootstrap_ci, mean_ci, proportion_ci, proportion_diff_ci

NEWCOMBE_1998A = {
    # (k, n): {method: (low, high)}
    (81, 263): {"wilson": (0.2553, 0.3662), "wilson_cc": (0.2535, 0.3682), "clopper_pearson": (0.2527, 0.3676)},
    (15, 148): {"wilson": (0.0624, 0.1605), "wilson_cc": (0.0598, 0.1644), "clopper_pearson": (0.0578, 0.1617)},
    (0, 20): {"wilson": (0.0000, 0.1611), "wilson_cc": (0.0000, 0.2005), "clopper_pearson": (0.0000, 0.1684)},
    (1, 29): {"wilson": (0.0061, 0.1718), "wilson_cc": (0.0018, 0.1963), "clopper_pearson": (0.0009, 0.1776)},
}


@pytest.mark.parametrize(
    ("k", "n", "method", "expected"),
    [(k, n, m, v) for (k, n), d in NEWCOMBE_1998A.items() for m, v in d.items()],
)
def test_single_proportion_newcombe_table_1(k, n, method, expected):
    res = proportion_ci(k, n, method=method)
    assert round(res.low, 4) == pytest.approx(expected[0], abs=1e-12)
    assert round(res.high, 4) == pytest.approx(expected[1], abs=1e-12)


NEWCOMBE_1998B = {
    # (k1, n1, k2, n2): {method: (low, high)}
    (56, 70, 48, 80): {"wald": (0.0575, 0.3425), "miettinen_nurminen": (0.0528, 0.3382),
                       "newcombe": (0.0524, 0.3339), "newcombe_cc": (0.0428, 0.3422)},
    (9, 10, 3, 10): {"wald": (0.2605, 0.9395), "miettinen_nurminen": (0.1700, 0.8406),
                     "newcombe": (0.1705, 0.8090), "newcombe_cc": (0.1013, 0.8387)},
    (5, 56, 0, 29): {"newcombe": (-0.0381, 0.1926), "newcombe_cc": (-0.0667, 0.2037)},
    (0, 10, 0, 20): {"newcombe": (-0.1611, 0.2775), "newcombe_cc": (-0.2005, 0.3445)},
    (0, 10, 0, 10): {"newcombe": (-0.2775, 0.2775), "newcombe_cc": (-0.3445, 0.3445)},
    (10, 10, 0, 20): {"newcombe": (0.6791, 1.0000), "newcombe_cc": (0.6014, 1.0000)},
    (10, 10, 0, 10): {"newcombe": (0.6075, 1.0000), "newcombe_cc": (0.5128, 1.0000)},
}


@pytest.mark.parametrize(
    ("counts", "method", "expected"),
    [(c, m, v) for c, d in NEWCOMBE_1998B.items() for m, v in d.items()],
)
def test_difference_newcombe_table_2(counts, method, expected):
    res = proportion_diff_ci(*counts, method=method)
    assert round(float(res.low), 4) == pytest.approx(expected[0], abs=1e-12)
    assert round(float(res.high), 4) == pytest.approx(expected[1], abs=1e-12)


def test_difference_vectorised_matches_scalar():
    counts = np.array(list(NEWCOMBE_1998B))
    res = proportion_diff_ci(*counts.T)
    for i, c in enumerate(counts):
        one = proportion_diff_ci(*c)
        assert res.low[i] == pytest.approx(one.low) and res.high[i] == pytest.approx(one.high)


@pytest.mark.parametrize(("ours", "scipy_name"), [("wilson", "wilson"), ("wilson_cc", "wilsoncc"),
                                                  ("clopper_pearson", "exact")])
@pytest.mark.parametrize(("k", "n"), [(0, 7), (3, 7), (7, 7), (17, 40), (250, 1000)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_single_proportion_matches_scipy(ours, scipy_name, k, n, confidence):
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method=scipy_name)
    res = proportion_ci(k, n, method=ours, confidence=confidence)
    assert res.low == pytest.approx(ref.low, abs=1e-9)
    assert res.high == pytest.approx(ref.high, abs=1e-9)


@pytest.mark.parametrize(("ours", "sm_name"), [("agresti_coull", "agresti_coull"), ("jeffreys", "jeffreys"),
                                               ("wilson", "wilson"), ("clopper_pearson", "beta")])
@pytest.mark.parametrize(("k", "n"), [(1, 9), (3, 7), (17, 40), (250, 1000)])
def test_single_proportion_matches_statsmodels(ours, sm_name, k, n):
    lo, hi = proportion_confint(k, n, alpha=0.05, method=sm_name)
    res = proportion_ci(k, n, method=ours)
    assert res.low == pytest.approx(lo, abs=1e-9)
    assert res.high == pytest.approx(hi, abs=1e-9)


def test_jeffreys_boundary_convention():
    # Brown, Cai & DasGupta (2001): L = 0 when k = 0 and U = 1 when k = n
    assert proportion_ci(0, 12, method="jeffreys").low == 0.0
    assert proportion_ci(12, 12, method="jeffreys").high == 1.0


SPATIAL_A = np.array([48, 36, 20, 29, 42, 42, 20, 42, 22, 41, 45, 14, 6, 0, 33, 28, 34, 4, 32,
                      24, 47, 41, 24, 26, 30, 41], dtype=float)
MOUSE_TREATMENT = np.array([94, 197, 16, 38, 99, 141, 23], dtype=float)


def test_efron_tibshirani_spatial_variance_bca():
    # E&T Table 14.2 (B = 2000): percentile (100.8, 233.9), BCa (115.8, 259.6); our B = 20000.
    # Monte Carlo SE of E&T's ends is about 3-5 units, so allow 8.
    assert SPATIAL_A.var() == pytest.approx(171.5, abs=0.05)
    bca = bootstrap_ci(SPATIAL_A, "var", method="bca", confidence=0.90, n_resamples=20000, rng=7)
    pct = bootstrap_ci(SPATIAL_A, "var", method="percentile", confidence=0.90, n_resamples=20000, rng=7)
    assert bca.low == pytest.approx(115.8, abs=8) and bca.high == pytest.approx(259.6, abs=8)
    assert pct.low == pytest.approx(100.8, abs=8) and pct.high == pytest.approx(233.9, abs=8)
    assert bca.method == "bca"


def test_efron_tibshirani_mouse_standard_error():
    # E&T Table 2.1: treatment mean 86.86, estimated standard error 25.24
    res = mean_ci(MOUSE_TREATMENT)
    assert round(res.estimate, 2) == 86.86
    assert round(res.extra["standard_error"], 2) == 25.24


@pytest.mark.parametrize("method", ["percentile", "basic", "bca"])
def test_bootstrap_matches_scipy_within_monte_carlo_error(method):
    # generic statistic (median) and fast path (mean) both compared to scipy's implementation
    x = np.random.default_rng(3).lognormal(size=60)
    for stat, sp in (("mean", np.mean), ("median", np.median)):
        ours = bootstrap_ci(x, stat, method=method, n_resamples=20000, rng=1)
        ref = stats.bootstrap((x,), sp, method="BCa" if method == "bca" else method,
                              n_resamples=20000, rng=2).confidence_interval
        width = ref.high - ref.low
        assert ours.low == pytest.approx(ref.low, abs=0.06 * width)
        assert ours.high == pytest.approx(ref.high, abs=0.06 * width)


def test_bca_jackknife_closed_form_equals_generic():
    # the fast path (closed-form jackknife, no materialised resamples) and the generic path
    # use the same indices, so they must agree to rounding
    fast = bootstrap_ci(SPATIAL_A, "var", method="bca", rng=5)
    slow = bootstrap_ci(SPATIAL_A, lambda x, axis: np.var(x, axis=axis), method="bca", rng=5)
    assert fast.low == pytest.approx(slow.low, rel=1e-10)
    assert fast.high == pytest.approx(slow.high, rel=1e-10)


def test_t_interval_matches_scipy():
    x = np.random.default_rng(0).normal(size=15)
    lo, hi = stats.t.interval(0.9, 14, loc=x.mean(), scale=stats.sem(x))
    res = mean_ci(x, confidence=0.9)
    assert res.low == pytest.approx(lo, rel=1e-12) and res.high == pytest.approx(hi, rel=1e-12)
