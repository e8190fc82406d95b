import numpy as np
import pytest

from revstats.effects import (
    gee_rate_comparison,
    hedges_g,
    jonckheere_terpstra,
    mean_difference,
    noninferiority_test,
    odds_ratio,
    risk_difference,
    risk_ratio,
    spearman_ci,
)
from revstats.errors import DegenerateDataWarning


def test_risk_difference_direction_group1_minus_group2():
    res = risk_difference(2, 20, 8, 20)
    assert res.estimate == pytest.approx(-0.3) and res.high < 0


def test_two_by_two_bad_input():
    with pytest.raises(ValueError, match=r"`k1` exceeds `n1`"):
        risk_ratio(5, 3, 1, 3)
    with pytest.raises(ValueError, match=r"`k2` has negative counts"):
        odds_ratio(1, 3, -1, 3)
    with pytest.raises(ValueError, match=r"`confidence` must lie strictly"):
        risk_difference(1, 3, 1, 3, confidence=1.0)


def test_zero_cell_correction_documented_warning():
    with pytest.warns(DegenerateDataWarning, match=r"Haldane-Anscombe"):
        res = odds_ratio(0, 20, 5, 20)
    assert np.isfinite(res.estimate) and "0.5 zero-cell" in res.method
    with pytest.warns(DegenerateDataWarning, match=r"zero cell"):
        rr = risk_ratio(0, 20, 5, 20)
    assert rr.low < rr.estimate < rr.high


def test_hedges_g_errors():
    with pytest.raises(ValueError, match=r"`a` needs at least 2 observations"):
        hedges_g([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"zero standard deviation"):
        hedges_g([1.0, 1.0], [2.0, 2.0])
    with pytest.raises(ValueError, match=r"`b` contains NaN"):
        hedges_g([1.0, 2.0], [1.0, np.nan])


def test_hedges_g_exact_vs_approximate_j_close():
    a, b = np.arange(6.0), np.arange(6.0) + 2
    ex, ap = hedges_g(a, b), hedges_g(a, b, correction="approximate")
    assert ex.estimate == pytest.approx(ap.estimate, rel=2e-3) and ex.estimate < 0


def test_mean_difference_errors_and_degenerate():
    with pytest.raises(ValueError, match=r"`paired=True` needs `a` and `b` of equal length"):
        mean_difference([1.0, 2.0], [1.0, 2.0, 3.0], paired=True)
    with pytest.warns(DegenerateDataWarning, match=r"zero variance"):
        res = mean_difference([1.0, 1.0], [2.0, 2.0])
    assert res.low == res.high == -1.0


def test_noninferiority_decision_and_orientation():
    rng = np.random.default_rng(0)
    control = rng.normal(1.0, 0.05, 30)
    treatment = rng.normal(1.01, 0.05, 30)  # loss: slightly higher (worse) but within margin
    res = noninferiority_test(treatment, control, margin=0.1, higher_is_better=False)
    assert res.extra["noninferior"] and res.pvalue < 0.025 and res.low > -0.1
    bad = noninferiority_test(treatment + 0.2, control, margin=0.1, higher_is_better=False)
    assert not bad.extra["noninferior"]
    with pytest.raises(ValueError, match=r"`margin` must be a positive number"):
        noninferiority_test(treatment, control, margin=0)


def test_jonckheere_direction_and_errors():
    up = jonckheere_terpstra([1, 2, 3], [4, 5, 6], [7, 8, 9])
    assert up.pvalue < 0.01 and up.estimate == 1.0
    down = jonckheere_terpstra([1, 2, 3], [4, 5, 6], [7, 8, 9], alternative="decreasing")
    assert down.pvalue > 0.99
    with pytest.raises(ValueError, match=r"group 1 is empty"):
        jonckheere_terpstra([1, 2], [], [3])
    with pytest.raises(ValueError, match=r"`alternative` must be"):
        jonckheere_terpstra([1], [2], alternative="less")
    with pytest.raises(ValueError, match=r"needs data without ties"):
        jonckheere_terpstra([1, 2], [2, 3], method="exact")


def test_spearman_ci():
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    res = spearman_ci(x, x + 0.5 * rng.normal(size=50), rng=0, n_resamples=999)
    assert 0 < res.low < res.estimate < res.high <= 1
    with pytest.raises(ValueError, match=r"`x` or `y` is constant"):
        spearman_ci(np.ones(5), np.arange(5.0))
    with pytest.raises(ValueError, match=r"equal length"):
        spearman_ci(np.arange(5.0), np.arange(6.0))


def test_gee_rate_comparison_detects_difference_and_is_wider_than_naive():
    rng = np.random.default_rng(0)
    runs, per = 12, 40
    arm = np.repeat(np.where(np.arange(runs) < 6, "blocked", "control"), per)
    run_id = np.repeat(np.arange(runs), per)
    run_logit = np.repeat(rng.normal(0, 0.8, runs), per)
    p = 1 / (1 + np.exp(-(-1.5 + 1.2 * (arm == "control") + run_logit)))
    y = (rng.random(arm.size) < p).astype(float)
    res = gee_rate_comparison(y, arm, run_id, reference="blocked")
    assert res.estimate > 1 and res.extra["n_clusters"] == runs
    indep = odds_ratio(int(y[arm == "control"].sum()), runs // 2 * per,
                       int(y[arm == "blocked"].sum()), runs // 2 * per)
    assert np.log(res.high / res.low) > np.log(indep.high / indep.low)
    with pytest.raises(ValueError, match=r"`outcome` must hold 0/1"):
        gee_rate_comparison(y * 2, arm, run_id)
    with pytest.raises(ValueError, match=r"exactly two labels"):
        gee_rate_comparison(y, np.repeat(np.arange(runs) % 3, per), run_id)
