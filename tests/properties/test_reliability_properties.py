"""Invariances, bounds and monotonicity not covered by the geometry/intervals/nulls property
files: probe permutation, rotation equivariance and translation invariance of the reversion
direction and the alignment pipeline, per-probe equivariance; monotonicity of proportion
intervals in k, their mirror symmetry, t-interval equivariance, antisymmetry of differences and
effects, BH/Holm order preservation, null quantiles monotone in the dimension."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import revstats.geometry as geo
from revstats import effects, intervals, nulls
from revstats.errors import DegenerateDataWarning

finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=64)
SETTINGS = settings(max_examples=80, deadline=None)
SINGLE = ["wilson", "wilson_cc", "clopper_pearson", "agresti_coull", "jeffreys"]


def random_orthogonal(seed, p):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(p, p)))
    return q * np.sign(np.diag(r))


@st.composite
def experiment(draw):
    """acts (step=3, example=n, hidden=p) with step 0 = aligned, and a witness (example, hidden)."""
    n, p = draw(st.integers(2, 6)), draw(st.integers(2, 6))
    acts = draw(arrays(np.float64, (3, n, p), elements=finite))
    wit = draw(arrays(np.float64, (n, p), elements=finite))
    scale = max(1.0, np.abs(acts).max(), np.abs(wit).max())
    # directions and drifts well away from zero, so the cosines are well conditioned
    assume(np.linalg.norm(wit.mean(0) - acts[0].mean(0)) > 1e-3 * scale)
    assume(np.linalg.norm(acts[1:].mean(1) - acts[0].mean(0), axis=-1).min() > 1e-3 * scale)
    return acts, wit


def pipeline(acts, wit):
    """reversion direction and alignment by step, as an analysis computes them."""
    a = xr.DataArray(acts, dims=("step", "example", "hidden"), coords={"step": [0, 1, 2]})
    w = xr.DataArray(wit, dims=("example", "hidden"))
    v = geo.reversion_direction(w, a.sel(step=0))
    with warnings.catch_warnings():  # step 0 has no drift (NaN there, by design)
        warnings.simplefilter("ignore", DegenerateDataWarning)
        return v.values, geo.alignment(geo.drift(a), v).sel(step=[1, 2]).values


@SETTINGS
@given(experiment(), st.integers(0, 10**6), st.integers(0, 2**32 - 1), st.floats(0.01, 100))
def test_alignment_pipeline_invariances(ex, perm_seed, rot_seed, scale):
    acts, wit = ex
    v, a = pipeline(acts, wit)
    np.testing.assert_allclose(np.linalg.norm(v), 1.0, rtol=1e-12)  # a unit vector
    assert np.all(np.abs(a) <= 1.0)  # cosines
    p = acts.shape[-1]
    perm = np.random.default_rng(perm_seed).permutation(acts.shape[1])
    q = random_orthogonal(rot_seed, p)
    shift = np.random.default_rng(rot_seed).normal(size=p) * 10
    # probe order does not matter (the witness keeps its own order: means are separate)
    v2, a2 = pipeline(acts[:, perm], wit[np.random.default_rng(perm_seed + 1).permutation(len(wit))])
    np.testing.assert_allclose(v2, v, atol=1e-9)
    np.testing.assert_allclose(a2, a, atol=1e-9)
    # rotation: the direction rotates with the space, the alignment does not change
    v3, a3 = pipeline(acts @ q.T, wit @ q.T)
    np.testing.assert_allclose(v3, q @ v, atol=1e-9)
    np.testing.assert_allclose(a3, a, atol=1e-9)
    # common scale and translation of every activation change nothing
    v4, a4 = pipeline(scale * acts + shift, scale * wit + shift)
    np.testing.assert_allclose(v4, v, atol=1e-6)
    np.testing.assert_allclose(a4, a, atol=1e-6)


@SETTINGS
@given(experiment(), st.integers(0, 10**6))
def test_per_probe_alignment_is_permutation_equivariant_and_bounded(ex, perm_seed):
    acts, wit = ex
    n = acts.shape[1]
    ids = [f"e{i}" for i in range(n)]
    a = xr.DataArray(acts, dims=("step", "example", "hidden"),
                     coords={"step": [0, 1, 2], "example": ids})
    w = xr.DataArray(wit, dims=("example", "hidden"), coords={"example": ids})
    v = geo.reversion_direction(w, a.sel(step=0))
    perm = np.random.default_rng(perm_seed).permutation(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        pp = geo.per_probe_alignment(a, v).sel(step=[1, 2])
        pp_perm = geo.per_probe_alignment(a.isel(example=perm), v).sel(step=[1, 2])
    np.testing.assert_allclose(pp_perm.sel(example=pp.example).values, pp.values, atol=1e-9)
    vals = pp.values[np.isfinite(pp.values)]
    assert np.all((vals >= -1) & (vals <= 1))


@st.composite
def count_and_n(draw):
    n = draw(st.integers(1, 400))
    return draw(st.integers(0, n - 1)), n


@settings(max_examples=200, deadline=None)
@given(count_and_n(), st.sampled_from(SINGLE), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_proportion_interval_monotone_in_k(kn, method, conf):
    """One more success never lowers either bound."""
    k, n = kn
    lo = intervals.proportion_ci(k, n, method=method, confidence=conf)
    hi = intervals.proportion_ci(k + 1, n, method=method, confidence=conf)
    assert hi.low >= lo.low - 1e-12 and hi.high >= lo.high - 1e-12


@settings(max_examples=200, deadline=None)
@given(count_and_n(), st.sampled_from(SINGLE), st.floats(0.5, 0.995))
def test_proportion_interval_mirror_symmetry(kn, method, conf):
    """Counting failures instead of successes mirrors the interval around 1/2."""
    k, n = kn
    a = intervals.proportion_ci(k, n, method=method, confidence=conf)
    b = intervals.proportion_ci(n - k, n, method=method, confidence=conf)
    np.testing.assert_allclose([a.low, a.high], [1 - b.high, 1 - b.low], atol=1e-9)


@settings(max_examples=120, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=30), st.floats(-1e3, 1e3),
       st.floats(0.01, 100), st.floats(0.5, 0.99))
def test_mean_ci_equivariance_and_nesting(x, shift, scale, conf):
    x = np.asarray(x)
    assume(np.std(x) > 1e-6 * max(1.0, np.abs(x).max()))
    base = intervals.mean_ci(x, confidence=conf)
    moved = intervals.mean_ci(scale * x + shift, confidence=conf)
    tol = 1e-7 * (scale * max(1.0, np.abs(x).max()) + abs(shift))
    np.testing.assert_allclose([moved.low, moved.high], [scale * base.low + shift, scale * base.high + shift], atol=tol)
    wider = intervals.mean_ci(x, confidence=min(0.999, conf + 0.005))
    assert wider.low <= base.low + 1e-9 and base.high <= wider.high + 1e-9
    assert base.low <= np.mean(x) + 1e-9 <= base.high + 2e-9


@st.composite
def two_groups(draw):
    n1, n2 = draw(st.integers(1, 200)), draw(st.integers(1, 200))
    return draw(st.integers(0, n1)), n1, draw(st.integers(0, n2)), n2


@settings(max_examples=150, deadline=None)
@given(two_groups(), st.sampled_from(["newcombe", "newcombe_cc", "wald"]))
def test_difference_interval_antisymmetric(g, method):
    k1, n1, k2, n2 = g
    a = intervals.proportion_diff_ci(k1, n1, k2, n2, method=method)
    b = intervals.proportion_diff_ci(k2, n2, k1, n1, method=method)
    np.testing.assert_allclose([a.estimate, a.low, a.high], [-b.estimate, -b.high, -b.low], atol=1e-9)


@settings(max_examples=150, deadline=None)
@given(two_groups())
def test_risk_and_odds_ratio_reciprocal(g):
    k1, n1, k2, n2 = g
    assume(0 < k1 < n1 and 0 < k2 < n2)
    for f in (effects.risk_ratio, effects.odds_ratio):
        a, b = f(k1, n1, k2, n2), f(k2, n2, k1, n1)
        np.testing.assert_allclose([a.estimate, a.low, a.high], [1 / b.estimate, 1 / b.high, 1 / b.low], rtol=1e-9)
        assert a.low <= a.estimate <= a.high


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.sampled_from(["holm", "bonferroni", "bh", "by"]))
def test_adjusted_pvalues_preserve_order_and_bounds(p, method):
    p = np.asarray(p)
    adj = np.asarray(nulls.adjust_pvalues(p, method=method))
    assert np.all((adj >= p - 1e-12) & (adj <= 1.0))
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adj[order]) >= -1e-12)  # a smaller raw p never gets a larger adjusted p


@settings(max_examples=100, deadline=None)
@given(st.integers(3, 5000), st.floats(0.5, 0.999))
def test_isotropic_quantile_shrinks_with_dimension(d, q):
    """In more dimensions a random direction is closer to orthogonal: quantiles move to 0."""
    small, big = nulls.isotropic_cosine(d), nulls.isotropic_cosine(d + 1)
    assert 0 <= float(big.ppf(q)) <= float(small.ppf(q)) + 1e-12 <= 1.0 + 1e-12
