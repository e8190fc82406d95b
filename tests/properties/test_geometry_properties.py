"""Invariants of revstats.geometry checked with hypothesis."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import revstats.geometry as geo
from revstats.errors import DegenerateDataWarning

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)
dims_p = st.integers(2, 8)


def vectors(n_rows, p):
    return arrays(np.float64, (n_rows, p), elements=finite)


def da(x, dims=("step", "hidden")):
    return xr.DataArray(x, dims=dims)


def nonzero(x):
    return np.linalg.norm(x, axis=-1).min() > 1e-6 * max(1.0, np.abs(x).max())


def random_orthogonal(seed, p):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(p, p)))
    return q * np.sign(np.diag(r))


@st.composite
def drift_and_direction(draw):
    p = draw(dims_p)
    x = draw(vectors(draw(st.integers(1, 4)), p))
    v = draw(arrays(np.float64, (p,), elements=finite))
    assume(nonzero(x) and nonzero(v[None]))
    return x, v


SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(drift_and_direction())
def test_cosine_in_unit_interval(xv):
    x, v = xv
    a = geo.alignment(da(x), da(v, ("hidden",))).values
    assert np.all((a >= -1.0) & (a <= 1.0))


@SETTINGS
@given(drift_and_direction(), st.floats(1e-3, 1e3), st.floats(1e-3, 1e3), st.booleans())
def test_scale_invariance_and_sign(xv, s, t, flip):
    x, v = xv
    sign = -1.0 if flip else 1.0
    a = geo.alignment(da(x), da(v, ("hidden",))).values
    b = geo.alignment(da(sign * s * x), da(t * v, ("hidden",))).values
    np.testing.assert_allclose(b, sign * a, atol=1e-9)


@SETTINGS
@given(drift_and_direction(), st.integers(0, 2**32 - 1))
def test_rotation_invariance(xv, seed):
    x, v = xv
    q = random_orthogonal(seed, x.shape[-1])
    a = geo.alignment(da(x), da(v, ("hidden",))).values
    b = geo.alignment(da(x @ q.T), da(q @ v, ("hidden",))).values
    np.testing.assert_allclose(b, a, atol=1e-9)


@SETTINGS
@given(drift_and_direction())
def test_project_out_orthogonal_and_idempotent(xv):
    x, v = xv
    once = geo.project_out(da(x), da(v, ("hidden",)))
    twice = geo.project_out(once, da(v, ("hidden",)))
    u = v / np.linalg.norm(v)
    scale = max(1.0, np.abs(x).max())
    np.testing.assert_allclose(once.values @ u, 0.0, atol=1e-9 * scale)
    np.testing.assert_allclose(twice.values, once.values, atol=1e-9 * scale)


@st.composite
def paired_probes(draw):
    n, p = draw(st.integers(3, 7)), draw(dims_p)
    acts = draw(arrays(np.float64, (2, n, p), elements=finite))
    wit = draw(arrays(np.float64, (n, p), elements=finite))
    acts[0] = draw(arrays(np.float64, (n, p), elements=finite))
    return acts, wit


def debiased(acts, wit):
    a = xr.DataArray(acts, dims=("step", "example", "hidden"), coords={"step": [0, 1]})
    w = xr.DataArray(wit, dims=("example", "hidden"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        return geo.debiased_alignment(a, w).sel(step=1)


@SETTINGS
@given(paired_probes(), st.floats(0.01, 100.0), st.integers(0, 2**32 - 1), st.integers(0, 10**6))
def test_debiased_invariances(pw, scale, seed, perm_seed):
    """Scale, rotation, translation and probe-order invariance of the cross-fitted cosine."""
    acts, wit = pw
    base = debiased(acts, wit)
    assume(np.isfinite(float(base.debiased)))
    # skip numerically ill-conditioned cases (pieces tiny next to the inputs' magnitude)
    size = max(np.abs(acts).max(), np.abs(wit).max())
    assume(min(float(base.drift_sq), float(base.direction_sq)) > 1e-4 * size**2)
    ref = float(base.debiased)
    tol = 1e-6 * max(1.0, abs(ref))
    p = acts.shape[-1]
    q = random_orthogonal(seed, p)
    shift = np.random.default_rng(seed).normal(size=p) * size
    perm = np.random.default_rng(perm_seed).permutation(acts.shape[1])
    variants = [
        (scale * acts, scale * wit),
        (acts @ q.T, wit @ q.T),
        (acts + shift, wit + shift),
        (acts[:, perm], wit[perm]),
    ]
    for a2, w2 in variants:
        assert abs(float(debiased(a2, w2).debiased) - ref) < tol * 100


@SETTINGS
@given(paired_probes())
def test_swapping_witness_and_aligned_flips_direction(pw):
    acts, wit = pw
    aligned = xr.DataArray(acts[0], dims=("example", "hidden"))
    w = xr.DataArray(wit, dims=("example", "hidden"))
    assume(np.linalg.norm(wit.mean(0) - acts[0].mean(0)) > 1e-6 * max(1.0, np.abs(wit).max()))
    v1 = geo.reversion_direction(w, aligned)
    v2 = geo.reversion_direction(aligned, w)
    np.testing.assert_allclose(v1.values, -v2.values, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(v1.values), 1.0, rtol=1e-12)
