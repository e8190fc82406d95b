"""Crossed-design alignment interval (revstats.geometry.alignment_ci): estimates, reference checks of the
variance pieces, laziness, bad input, and a fast coverage check that the old t-interval fails.
The slow coverage study is tests/calibration/test_alignment_ci_coverage.py."""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pytest
import xarray as xr
from scipy import stats

import revstats.geometry as geo
from revstats import calibration as cal
from revstats.errors import DegenerateDataWarning
from revstats.geometry import _np_alignment_ci as npc
from revstats.geometry.alignment_ci import (
    alignment_ci,
    alignment_ci_from_products,
    alignment_products,
)
from tests._geometry_sim import simulate_reversion

SMALL = cal.CrossedDesign(true_cos=0.6, d=256, runs=12, probes=16, drift_norm=6.0,
                          witness_norm=6.0)


def _data(seed=0, **kw):
    kw = {"n_runs": 6, "n_probes": 10, "d": 64, "drift_norm": 4.0, "witness_norm": 4.0, **kw}
    acts, wit = simulate_reversion(np.random.default_rng(seed), true_cos=0.6, **kw)
    return acts.sel(step=[1]), wit, acts.sel(step=0, drop=True)


@pytest.mark.parametrize("form", ["gram", "jackknife"])
def test_estimates_are_the_run_means_of_the_geometry_estimates(form):
    acts, wit, aligned = _data()
    ds = alignment_ci(acts, wit, aligned, form=form).sel(step=1)
    db = geo.debiased_alignment(acts, wit, aligned).sel(step=1)
    np.testing.assert_allclose(float(ds.estimate.sel(estimator="debiased")),
                               float(db.debiased.mean()), rtol=1e-10)
    np.testing.assert_allclose(float(ds.estimate.sel(estimator="plugin")),
                               float(db.plugin.mean()), rtol=1e-10)
    assert (ds.low <= ds.estimate).all() and (ds.estimate <= ds.high).all()
    assert int(ds.n_runs.sel(estimator="debiased")) == 6
    assert ds.attrs["method"] == "alignment_ci" and "crossed" in ds.attrs["interval"]
    assert "cos(D, W)" in ds.attrs["conditional_debiased"]


def test_leave_one_probe_out_values_match_brute_force():
    """Reference: the closed-form leave-one-out cosines equal recomputing without probe k."""
    acts, wit, aligned = _data(seed=1)
    prods = alignment_products(acts, wit, aligned, form="jackknife").sel(step=1)
    plugin, plugin_loo, debiased, debiased_loo = npc._values(prods.values)
    for k in (0, 4, 9):
        keep = [i for i in range(acts.sizes["example"]) if i != k]
        ref = geo.debiased_alignment(acts.isel(example=keep), wit.isel(example=keep),
                                     aligned.isel(example=keep)).sel(step=1)
        np.testing.assert_allclose(debiased_loo[:, k], ref.debiased.values, rtol=1e-9)
        np.testing.assert_allclose(plugin_loo[:, k], ref.plugin.values, rtol=1e-9)


def test_u_variance_is_unbiased_against_the_hoeffding_formula():
    """Reference: h_ij = x_i x_j, x ~ N(mu, s^2): zeta_1 = mu^2 s^2, zeta_2 = (s^2+mu^2)^2 - mu^4."""
    rng = np.random.default_rng(3)
    n, mu, s = 8, 1.0, 1.5
    x = rng.normal(mu, s, size=(40_000, n))
    h = x[:, :, None] * x[:, None, :]
    est = npc.u_variance(h)
    z1, z2 = mu**2 * s**2, (s**2 + mu**2) ** 2 - mu**4
    exact = 4 * (n - 2) / (n * (n - 1)) * z1 + 2 / (n * (n - 1)) * z2
    assert abs(est.mean() - exact) < 4 * est.std(ddof=1) / np.sqrt(est.size)
    off = ~np.eye(n, dtype=bool)
    u = h[:, off].mean(axis=-1)
    assert abs(u.var() - exact) / exact < 0.03  # the formula itself, against simulation


def test_probe_grams_match_direct_products():
    rng = np.random.default_rng(4)
    d, w = rng.normal(size=(3, 5, 7)), rng.normal(size=(5, 7))
    g = npc.probe_grams(d, w)
    np.testing.assert_allclose(g[1, 2, 3], [d[1, 2] @ d[1, 3], d[1, 2] @ w[3], w[2] @ w[3]])
    p = npc.probe_products(d, w)
    np.testing.assert_allclose(p[1, 2], [d[1, 2] @ w.sum(0), d[1].sum(0) @ w[2], d[1, 2] @ w[2],
                                         d[1, 2] @ d[1].sum(0), d[1, 2] @ d[1, 2],
                                         w[2] @ w.sum(0), w[2] @ w[2]])


def test_dask_inputs_stay_lazy_and_match_numpy():
    acts, wit, aligned = _data(seed=2)
    eager = alignment_ci(acts, wit, aligned)

    def refuse(*args, **kwargs):
        raise AssertionError("computed before .compute()")

    with dask.config.set(scheduler=refuse):
        lazy = alignment_ci(acts.chunk({"run": 2}), wit.chunk(), aligned.chunk({"run": 3}))
    assert isinstance(lazy.low.data, dask.array.Array)
    xr.testing.assert_allclose(lazy.compute(), eager)


def test_witness_per_run_is_accepted():
    acts, wit, aligned = _data(seed=5)
    rng = np.random.default_rng(6)
    per_run = wit + xr.DataArray(rng.normal(size=(6, *wit.shape)), dims=("run", *wit.dims))
    ds = alignment_ci(acts, per_run, aligned)
    ref = geo.debiased_alignment(acts, per_run, aligned).sel(step=1)
    np.testing.assert_allclose(float(ds.estimate.sel(step=1, estimator="debiased")),
                               float(ref.debiased.mean()), rtol=1e-10)


def test_reference_step_gives_nan_with_a_warning():
    acts, wit = simulate_reversion(np.random.default_rng(7), n_runs=4, n_probes=6, d=16)
    with pytest.warns(DegenerateDataWarning):
        ds = alignment_ci(acts, wit)
    assert np.isnan(ds.low.sel(step=0)).all() and np.isfinite(ds.low.sel(step=1)).all()


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda a, w, al: (a.values, w, al), TypeError, "`acts` must be an xarray.DataArray"),
        (lambda a, w, al: (a.isel(run=0), w, al), ValueError, "has no dimension 'run'"),
        (lambda a, w, al: (a.isel(example=slice(0, 3)), w.isel(example=slice(0, 3)),
                           al.isel(example=slice(0, 3))), ValueError, "at least 4 probes"),
        (lambda a, w, al: (a, w.isel(example=slice(0, 8)), al), ValueError, "same 'example'"),
    ],
)
def test_bad_input_is_named(mutate, error, match):
    acts, wit, aligned = _data()
    a, w, al = mutate(acts, wit, aligned)
    with pytest.raises(error, match=match):
        alignment_ci(a, w, al)


def test_bad_options_are_named():
    acts, wit, aligned = _data()
    with pytest.raises(ValueError, match="`confidence`"):
        alignment_ci(acts, wit, aligned, confidence=1.5)
    with pytest.raises(ValueError, match="`form` must be one of"):
        alignment_ci(acts, wit, aligned, form="bootstrap")
    with pytest.raises(ValueError, match="at least 2 runs"):
        alignment_ci(acts.isel(run=[0]), wit, aligned.isel(run=[0]))
    prods = alignment_products(acts, wit, aligned)
    with pytest.raises(ValueError, match="must come from `alignment_products`"):
        alignment_ci_from_products(prods.isel(gram=[0, 1]))
    with pytest.raises(ValueError, match="`run_dim` and `dim` both name"):
        alignment_ci(acts, wit, aligned, dim="run")


@pytest.mark.parametrize("truth", [0.6, 0.0])
def test_crossed_interval_covers_where_the_t_interval_does_not(truth):
    """Fast coverage check (400 experiments, shared noisy witness): the crossed interval is
    within a binomial test of 95%; the Student-t interval over runs (the old default) is not."""
    design = cal.CrossedDesign(**{**SMALL.__dict__, "true_cos": truth})
    n = 400
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        crossed = cal.alignment_interval_hits(design, "crossed", n, seed=11)
        t_int = cal.alignment_interval_hits(design, "t", n, seed=11)
    assert stats.binomtest(crossed, n, 0.95).pvalue > 1e-3, crossed / n
    assert stats.binomtest(t_int, n, 0.95, alternative="less").pvalue < 1e-6, t_int / n


def test_plugin_interval_covers_the_expected_plugin_cosine():
    n = 400
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        hits = cal.alignment_interval_hits(SMALL, "crossed-plugin", n, seed=12)
    assert stats.binomtest(hits, n, 0.95).pvalue > 1e-3, hits / n


def test_reduced_simulation_has_the_distribution_of_the_direct_one():
    """The calibration's reduced draw (noise orthogonal to the shared span as a Wishart Gram
    matrix) against drawing every d-dimensional vector: same law of the estimates."""
    design = cal.CrossedDesign(true_cos=0.6, d=96, runs=4, probes=8, drift_norm=3.0,
                               witness_norm=3.0, aligned_noise=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        a = npc.crossed_interval_gram(cal.crossed_products(design, 500, np.random.default_rng(1),
                                                           reduced=True))
        b = npc.crossed_interval_gram(cal.crossed_products(design, 500, np.random.default_rng(2),
                                                           reduced=False))
    for est in (0, 1):
        for field in (0, 3):  # estimate, standard error
            x, y = a[:, est, field], b[:, est, field]
            assert stats.ks_2samp(x[np.isfinite(x)], y[np.isfinite(y)]).pvalue > 1e-3
    with pytest.raises(ValueError, match="reduced simulation"):
        cal.crossed_products(cal.CrossedDesign(per_run_witness=True, d=96, probes=8), 1,
                             np.random.default_rng(0), reduced=True)
