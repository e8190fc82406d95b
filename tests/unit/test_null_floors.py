"""Monte Carlo p-value floors (issue 13.4) and the approximate effective-dimension null (13.5).

With B null draws every Monte Carlo p-value is at least 1/(B+1); Holm over m pairs multiplies
the smallest by m. With B = 2,000 and m = 168 the floor is 0.084 > 0.05, so no pair could ever
be significant: the pipeline now takes B from m, and says where the floor lies.
"""

from __future__ import annotations

import numpy as np
import pytest

from revstats import nulls
from revstats.analysis.pipeline import AnalysisSettings, analyze
from revstats.analysis.testing import make_synthetic_store


def test_adjusted_floor_of_the_audit():
    assert nulls.adjusted_p_floor(2000, 168) == pytest.approx(168 / 2001)
    assert nulls.adjusted_p_floor(2000, 168, adjust="bh") == pytest.approx(1 / 2001)
    by = nulls.adjusted_p_floor(2000, 168, adjust="by")
    assert by == pytest.approx(np.sum(1 / np.arange(1, 169)) / 2001)


@pytest.mark.parametrize("adjust", ["holm", "bonferroni", "bh", "by"])
@pytest.mark.parametrize("m", [1, 24, 168, 5000])
def test_draws_from_the_number_of_tests_put_the_floor_at_alpha_over_ten(adjust, m):
    b = nulls.monte_carlo_draws(m, alpha=0.05, adjust=adjust, minimum=100, cap=10**9)
    assert nulls.adjusted_p_floor(b, m, adjust=adjust) <= 0.005 + 1e-15
    assert nulls.adjusted_p_floor(b - 1, m, adjust=adjust) > 0.005 or b == 100


def test_draws_respect_minimum_and_cap():
    assert nulls.monte_carlo_draws(1, minimum=2000) == 2000
    assert nulls.monte_carlo_draws(10**6, cap=50_000) == 50_000
    with pytest.raises(ValueError, match="`minimum`"):
        nulls.monte_carlo_draws(10, minimum=10, cap=5)
    with pytest.raises(ValueError, match="`alpha`"):
        nulls.monte_carlo_draws(10, alpha=0)
    with pytest.raises(TypeError, match="`n_tests`"):
        nulls.monte_carlo_draws(2.5)


def test_empirical_null_reports_its_floor():
    null = nulls.covariance_matched_cosine(np.random.default_rng(0).normal(size=(20, 8)),
                                           np.ones(8), n_draws=999, rng=1)
    assert null.p_floor == pytest.approx(1e-3)
    assert float(null.pvalue(1.0)) == pytest.approx(null.p_floor)  # beyond every draw


def test_effective_dimension_null_is_labelled_approximate():
    null = nulls.effective_isotropic_cosine(np.diag([3.0, 1.0, 1.0, 0.5]), kind="cov")
    assert null.attrs["approximate"] is True and "anti-conservative" in null.attrs["note"]
    assert "approximate" not in nulls.isotropic_cosine(10).attrs


@pytest.fixture(scope="module")
def strong():
    """24 runs x 7 moving steps = 168 pairs per arm, all far beyond the null."""
    ds = make_synthetic_store(runs_per_arm=24, steps=(0, 1, 2, 5, 10, 20, 50, 100),
                              arms=("control", "blocked"), layers=("hidden_states.1",), seed=5)
    return analyze(ds, settings=AnalysisSettings(n_resamples=200, n_null_draws=2000, seed=1))


def test_strong_signal_is_significant_after_holm(strong):
    """Fails on the old pipeline: 2,000 draws and Holm over 168 pairs gave 0 significant."""
    entry = strong["headline"]["layers"]["hidden_states.1"]["arms"]["control"]["null_p99"]
    for name in ("covariance_matched", "permutation"):
        e = entry[name]
        assert e["n_pairs"] == 168
        # 0 with the old 2,000 draws (adjusted floor 0.084) for both nulls
        assert e["n_significant_adjusted"] > (100 if name == "covariance_matched" else 0), e
        assert e["n_draws"] >= 33_599
        assert e["p_floor"] == pytest.approx(1 / (e["n_draws"] + 1))
        assert e["p_floor_adjusted"] == pytest.approx(168 * e["p_floor"])
        assert e["p_floor_adjusted"] < 0.05
        assert e["approximate"] is False
    cm = entry["covariance_matched"]
    assert cm["p_floor_binds"] is True and cm["n_pairs_at_floor"] > 0  # beyond every draw


def test_pipeline_gives_no_significance_count_for_the_approximate_null(strong):
    e = strong["headline"]["layers"]["hidden_states.1"]["arms"]["control"]["null_p99"]
    eff = e["effective_dimension"]
    assert eff["approximate"] is True and "covariance-matched" in eff["note"]
    assert eff["n_significant_adjusted"] is None and eff["max_adjusted_pvalue"] is None
    assert eff["min_adjusted_pvalue"] is None
    assert eff["n_above"] >= 0  # the exceedance count stays, labelled by `approximate`
    assert e["isotropic"]["approximate"] is False and "p_floor" not in e["isotropic"]


def test_pipeline_alignment_interval_is_the_crossed_one(strong):
    arm = strong["headline"]["layers"]["hidden_states.1"]["arms"]["control"]
    for key in ("alignment", "alignment_debiased"):
        row = arm[key][1]
        assert row["method"].startswith("crossed") and "cos(D, W)" in arm[
            "alignment_debiased"][1]["conditional_on"]
        assert row["t_interval"]["method"] == "t"
        assert row["low"] <= row["mean"] <= row["high"]
        assert row["se"] >= row["se_runs"] > 0
    assert arm["final_alignment"] == arm["alignment"][-1]
    assert arm["alignment"][0]["low"] is None  # step 0: no drift
