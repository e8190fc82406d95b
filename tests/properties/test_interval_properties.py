import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from revstats.intervals import bootstrap_ci, proportion_ci, proportion_diff_ci

SINGLE = ["wilson", "wilson_cc", "clopper_pearson", "agresti_coull", "jeffreys"]
DIFF = ["newcombe", "newcombe_cc", "miettinen_nurminen"]


@st.composite
def counts(draw):
    n = draw(st.integers(1, 500))
    return draw(st.integers(0, n)), n


@given(counts(), st.sampled_from(SINGLE), st.floats(0.5, 0.98))
@settings(max_examples=200, deadline=None)
def test_proportion_bounds_nested_and_contain_estimate(kn, method, conf):
    k, n = kn
    narrow = proportion_ci(k, n, method=method, confidence=conf)
    wide = proportion_ci(k, n, method=method, confidence=conf + 0.01)
    assert 0.0 <= narrow.low <= narrow.estimate <= narrow.high <= 1.0
    assert wide.low <= narrow.low + 1e-12 and narrow.high <= wide.high + 1e-12


@given(counts(), counts(), st.sampled_from(DIFF), st.floats(0.5, 0.98))
@settings(max_examples=150, deadline=None)
def test_difference_bounds_nested_and_contain_estimate(a, b, method, conf):
    narrow = proportion_diff_ci(*a, *b, method=method, confidence=conf)
    wide = proportion_diff_ci(*a, *b, method=method, confidence=conf + 0.01)
    tol = 1e-9
    assert -1.0 - tol <= narrow.low <= narrow.estimate + tol
    assert narrow.estimate - tol <= narrow.high <= 1.0 + tol
    assert wide.low <= narrow.low + tol and narrow.high <= wide.high + tol


@given(st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=40),
       st.sampled_from(["percentile", "basic", "bca"]), st.sampled_from(["mean", "median"]))
@settings(max_examples=40, deadline=None)
def test_bootstrap_interval_always_contains_estimate(values, method, statistic):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bootstrap_ci(np.array(values), statistic, method=method, n_resamples=200, rng=0)
    assert res.low <= res.estimate <= res.high
