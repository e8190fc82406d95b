"""Properties of the null distributions that must hold for every dimension and input."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from revstats.nulls import CosineNull, EmpiricalNull, adjust_pvalues, isotropic_cosine

dims = st.integers(min_value=2, max_value=2_000_000)
real_dims = st.floats(min_value=1.05, max_value=1e6)
cosines = st.floats(min_value=-1.0, max_value=1.0)
probs = st.floats(min_value=1e-300, max_value=0.5)


@settings(max_examples=60, deadline=None)
@given(d=real_dims, c=cosines)
def test_symmetry_and_complement(d, c):
    null = CosineNull(d)
    assert null.cdf(c) == null.sf(-c)
    assert abs(null.cdf(c) + null.sf(c) - 1.0) < 1e-13
    assert 0.0 <= null.sf(c) <= 1.0


@settings(max_examples=60, deadline=None)
@given(d=dims, c1=cosines, c2=cosines)
def test_monotone(d, c1, c2):
    null = isotropic_cosine(d)
    lo, hi = min(c1, c2), max(c1, c2)
    assert null.cdf(lo) <= null.cdf(hi)
    assert null.logsf(lo) >= null.logsf(hi)


@settings(max_examples=60, deadline=None)
@given(d=dims, p=probs)
def test_isf_inverts_sf_where_resolvable(d, p):
    null = isotropic_cosine(d)
    c = float(null.isf(p))
    assert 0.0 <= c <= 1.0
    assert float(null.ppf(p)) == -c
    if c < 1.0 - 1e-6:  # away from c = 1, where a double cannot resolve the tail
        assert abs(float(null.logsf(c)) - np.log(p)) <= 1e-9 * max(1.0, abs(np.log(p)))


@settings(max_examples=40, deadline=None)
@given(
    p=st.lists(st.one_of(st.floats(0.0, 1.0), st.just(float("nan"))), min_size=1, max_size=30),
    method=st.sampled_from(["holm", "bonferroni", "bh", "by"]),
)
def test_adjusted_pvalues_dominate_raw_and_keep_nans(p, method):
    arr = np.array(p)
    adj = adjust_pvalues(arr, method=method)
    assert np.array_equal(np.isnan(adj), np.isnan(arr))
    ok = ~np.isnan(arr)
    assert np.all(adj[ok] >= arr[ok] - 1e-15) and np.all(adj[ok] <= 1.0)


@settings(max_examples=40, deadline=None)
@given(
    draws=st.lists(st.floats(-1, 1), min_size=1, max_size=50),
    x=st.floats(-1.5, 1.5),
)
def test_empirical_pvalue_never_zero_and_cdf_sf_complement(draws, x):
    null = EmpiricalNull(np.array(draws), method="test")
    b = len(draws)
    assert 1 / (b + 1) <= null.pvalue(x) <= 1.0
    assert abs(null.cdf(x) + null.sf(x) - 1.0) < 1e-15
