"""Unit tests of revstats.geometry: values, conventions, zero handling, laziness, validation."""

from __future__ import annotations

import itertools
import warnings

import dask
import numpy as np
import pytest
import xarray as xr

import revstats.geometry as geo
from revstats.errors import DegenerateDataWarning
from tests._geometry_sim import simulate_reversion

# --------------------------------------------------------------------------- fixtures


def make_store_like(seed: int = 0, *, n_runs=3, n_steps=4, n_layers=2, n_probes=12, d=16):
    """Small (run, step, layer, example, hidden) activations and a (layer, example, hidden)
    witness in which fine-tuning drifts toward the witness."""
    rng = np.random.default_rng(seed)
    content = rng.normal(size=(n_layers, n_probes, d))
    toward = rng.normal(size=(n_layers, 1, d)) * 2
    steps = np.arange(n_steps) * 5
    acts = np.empty((n_runs, n_steps, n_layers, n_probes, d), np.float32)
    for t, s in enumerate(steps):
        acts[:, t] = (
            content
            + 0.05 * s * toward
            + (t > 0) * rng.normal(size=(n_runs, n_layers, n_probes, d)) * 0.3
        )
    acts_da = xr.DataArray(
        acts,
        dims=("run", "step", "layer", "example", "hidden"),
        coords={
            "run": [f"r{i}" for i in range(n_runs)],
            "arm": ("run", ["control"] * n_runs),
            "step": steps,
            "layer": [f"L{i}" for i in range(n_layers)],
            "example": [f"p{i}" for i in range(n_probes)],
        },
    )
    wit = xr.DataArray(
        (content + toward + 0.3 * rng.normal(size=content.shape)).astype(np.float32),
        dims=("layer", "example", "hidden"),
        coords={"layer": acts_da.layer.values, "example": acts_da.example.values},
    )
    return acts_da, wit


@pytest.fixture
def data():
    return make_store_like()


class CountingScheduler:
    """A dask scheduler that counts computes and raises past `max_computes` (as xarray's
    `raise_if_dask_computes`)."""

    def __init__(self, max_computes: int = 0):
        self.total = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):
        self.total += 1
        if self.total > self.max_computes:
            raise RuntimeError(f"Too many computes: {self.total} > {self.max_computes}")
        return dask.get(dsk, keys, **kwargs)


def raise_if_dask_computes(max_computes: int = 0):
    return dask.config.set(scheduler=CountingScheduler(max_computes))


def chunked(*objs):
    out = []
    for o in objs:
        chunks = {d: 1 for d in ("run", "step") if d in o.dims}
        out.append(o.chunk(chunks))
    return out


# --------------------------------------------------------------------------- values


def test_reversion_direction_is_unit_and_points_to_witness(data):
    acts, wit = data
    aligned = acts.sel(step=0)
    v = geo.reversion_direction(wit, aligned)
    assert set(v.dims) == {"layer", "run", "hidden"}
    np.testing.assert_allclose((v**2).sum("hidden"), 1.0, rtol=1e-12)
    expected = wit.astype(float).mean("example") - aligned.astype(float).mean("example")
    expected = expected / np.sqrt((expected**2).sum("hidden"))
    xr.testing.assert_allclose(v, expected.transpose(*v.dims))


def test_drift_is_zero_at_reference_and_matches_means(data):
    acts, _ = data
    dr = geo.drift(acts)
    assert dr.dims == ("run", "step", "layer", "hidden")
    assert float(abs(dr.sel(step=0)).max()) == 0.0
    manual = acts.sel(step=10).astype(float).mean("example") - acts.sel(step=0).astype(float).mean(
        "example"
    )
    xr.testing.assert_allclose(dr.sel(step=10).drop_vars("step"), manual)
    # explicit aligned gives the same
    xr.testing.assert_allclose(geo.drift(acts, acts.sel(step=0, drop=True)), dr)


def test_alignment_known_values():
    drift = xr.DataArray([[1.0, 0.0], [1.0, 1.0], [-2.0, 0.0], [0.0, 3.0]], dims=("step", "hidden"))
    direction = xr.DataArray([2.0, 0.0], dims="hidden")
    a = geo.alignment(drift, direction)
    np.testing.assert_allclose(a.values, [1.0, 1 / np.sqrt(2), -1.0, 0.0], atol=1e-15)


def test_sign_convention_positive_toward_witness(data):
    acts, wit = data
    v = geo.reversion_direction(wit, acts.sel(step=0))
    a = geo.alignment(geo.drift(acts).sel(step=[5, 10, 15]), v)
    assert float(a.min()) > 0.3  # the fixture drifts toward the witness
    # swapping the roles of witness and aligned flips the direction and the sign
    v_swapped = geo.reversion_direction(acts.sel(step=0), wit)
    xr.testing.assert_allclose(v_swapped, -v.transpose(*v_swapped.dims))
    a_swapped = geo.alignment(geo.drift(acts).sel(step=[5, 10, 15]), v_swapped)
    xr.testing.assert_allclose(a_swapped.transpose(*a.dims), -a)


def test_per_probe_alignment_matches_manual(data):
    acts, wit = data
    v = geo.reversion_direction(wit, acts.sel(step=0))
    pp = geo.per_probe_alignment(acts.sel(step=[5, 10]), v, acts.sel(step=0, drop=True))
    assert set(pp.dims) == {"run", "step", "layer", "example"}
    sel = {"run": "r1", "layer": "L0", "example": "p3"}
    moved = acts.sel(step=10, **sel).values.astype(float) - acts.sel(step=0, **sel).values.astype(
        float
    )
    vec = v.sel(run="r1", layer="L0").values
    manual = moved @ vec / np.linalg.norm(moved) / np.linalg.norm(vec)
    assert float(pp.sel(step=10, run="r1", layer="L0", example="p3")) == pytest.approx(
        manual, rel=1e-12
    )


def test_project_out_removes_component(data):
    acts, wit = data
    v = geo.reversion_direction(wit, acts.sel(step=0))
    dr = geo.drift(acts).sel(step=[5, 10])
    po = geo.project_out(dr, v)
    dot = (po * v).sum("hidden")
    np.testing.assert_allclose(dot.values, 0.0, atol=1e-12)
    # what was removed is parallel to v
    removed = dr - po
    np.testing.assert_allclose(abs(geo.alignment(removed, v)).values, 1.0, rtol=1e-10)


def test_stacked_dims_equal_flattened():
    rng = np.random.default_rng(3)
    x = xr.DataArray(rng.normal(size=(5, 3, 4)), dims=("step", "h1", "h2"))
    v = xr.DataArray(rng.normal(size=(3, 4)), dims=("h1", "h2"))
    a = geo.alignment(x, v, dim=("h1", "h2"))
    flat = geo.alignment(
        x.stack(hidden=("h1", "h2")).drop_vars(["hidden", "h1", "h2"]),
        v.stack(hidden=("h1", "h2")).drop_vars(["hidden", "h1", "h2"]),
    )
    np.testing.assert_allclose(a.values, flat.values, rtol=1e-12)
    po = geo.project_out(x, v, dim=("h1", "h2"))
    assert po.dims == x.dims
    np.testing.assert_allclose((po * v).sum(("h1", "h2")).values, 0.0, atol=1e-12)


def test_stacked_probe_dims_in_direction_and_debiased(data):
    acts, wit = data
    acts2 = (
        acts.coarsen(example=3)
        .construct(example=("group", "item"))
        .drop_vars("example", errors="ignore")
    )
    wit2 = (
        wit.coarsen(example=3)
        .construct(example=("group", "item"))
        .drop_vars("example", errors="ignore")
    )
    ds1 = geo.debiased_alignment(acts.sel(step=[0, 10]), wit).sel(step=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        ds2 = geo.debiased_alignment(acts2.sel(step=[0, 10]), wit2, dim=("group", "item")).sel(
            step=10
        )
    np.testing.assert_allclose(ds1.debiased.values, ds2.debiased.values, rtol=1e-10)
    v1 = geo.reversion_direction(wit, acts.sel(step=0))
    v2 = geo.reversion_direction(wit2, acts2.sel(step=0), dim=("group", "item"))
    xr.testing.assert_allclose(v1, v2)


# --------------------------------------------------------------------------- zero handling


def test_zero_vector_normalises_to_nan_with_warning():
    wit = xr.DataArray(np.ones((4, 3)), dims=("example", "hidden"))
    with pytest.warns(DegenerateDataWarning, match="zero length"):
        v = geo.reversion_direction(wit, wit.copy())
    assert np.isnan(v.values).all()


def test_zero_drift_alignment_is_nan_with_warning(data):
    acts, wit = data
    v = geo.reversion_direction(wit, acts.sel(step=0))
    with warnings.catch_warnings():  # step 0 (the reference) is zero by definition: no warning
        warnings.simplefilter("error", DegenerateDataWarning)
        a = geo.alignment(geo.drift(acts), v)
    assert np.isnan(a.sel(step=0)).all()
    assert np.isfinite(a.sel(step=[5, 10])).all()
    # a run that did not move at a later step: one warning for the whole (chunked) computation
    frozen = acts.where(acts["step"] != 10, acts.sel(step=0)).chunk({"run": 1})
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        a = geo.alignment(geo.drift(frozen), v).compute()
    msgs = [str(r.message) for r in rec if issubclass(r.category, DegenerateDataWarning)]
    n_layers = frozen.sizes.get("layer", 1)
    assert len(msgs) == n_layers and all("have zero length and no direction" in m for m in msgs), msgs
    if "layer" in frozen.dims:
        assert {m.split("'")[1] for m in msgs} == {str(x) for x in frozen["layer"].values}
    assert np.isnan(a.sel(step=10)).all()


def test_project_out_zero_direction_is_nan():
    x = xr.DataArray([1.0, 2.0], dims="hidden")
    with pytest.warns(DegenerateDataWarning):
        out = geo.project_out(x, xr.DataArray([0.0, 0.0], dims="hidden"))
    assert np.isnan(out.values).all()


def test_debiased_nan_at_reference_step_and_for_pure_noise():
    rng = np.random.default_rng(1)
    acts = xr.DataArray(
        rng.normal(size=(2, 8, 50)), dims=("step", "example", "hidden"), coords={"step": [0, 1]}
    )
    wit = acts.isel(step=0) + 1.0
    with pytest.warns(DegenerateDataWarning, match="<= 0"):
        ds = geo.debiased_alignment(acts, wit)
    assert np.isnan(float(ds.debiased.sel(step=0)))
    assert float(ds.drift_sq.sel(step=0)) == 0.0
    # pure-noise drift: its cross-fitted squared norm has mean 0, so negative values occur
    # and must come back as NaN, never a made-up number
    noise = xr.DataArray(
        rng.normal(size=(40, 2, 8, 50)),
        dims=("run", "step", "example", "hidden"),
        coords={"step": [0, 1]},
    )
    with pytest.warns(DegenerateDataWarning):
        dn = geo.debiased_alignment(noise, noise.isel(run=0, step=0) + 1.0)
    neg = dn.drift_sq.sel(step=1) <= 0
    assert bool(neg.any())
    assert bool(np.isnan(dn.debiased.sel(step=1).where(neg, np.nan)).all())
    assert bool(np.isfinite(dn.debiased.sel(step=1).where(~neg, drop=True)).all())


# --------------------------------------------------------------------------- debiased estimator


def test_u_statistic_equals_average_over_all_balanced_splits():
    """Independent check: brute-force enumeration of every balanced half split."""
    rng = np.random.default_rng(7)
    n, p = 6, 5
    d = rng.normal(size=(n, p)) + 2.0
    w = rng.normal(size=(n, p)) - 1.5
    acc = np.zeros(3)
    splits = list(itertools.combinations(range(n), n // 2))
    for a in splits:
        b = [i for i in range(n) if i not in a]
        da, db, wa, wb = d[list(a)].mean(0), d[b].mean(0), w[list(a)].mean(0), w[b].mean(0)
        acc += [0.5 * (da @ wb + db @ wa), da @ db, wa @ wb]
    acc /= len(splits)
    aligned = xr.DataArray(np.zeros((n, p)), dims=("example", "hidden"))
    acts = xr.DataArray(d[None], dims=("step", "example", "hidden"), coords={"step": [1]})
    wit = xr.DataArray(w, dims=("example", "hidden"))
    ds = geo.debiased_alignment(acts, wit, aligned).isel(step=0)
    got = [float(ds.drift_dot_direction), float(ds.drift_sq), float(ds.direction_sq)]
    np.testing.assert_allclose(got, acc, rtol=1e-12)
    assert float(ds.debiased) == pytest.approx(acc[0] / np.sqrt(acc[1] * acc[2]), rel=1e-12)


def test_random_splits_converge_to_all_splits(data):
    acts, wit = data
    exact = geo.debiased_alignment(acts.sel(step=[0, 15]), wit).sel(step=15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        approx = geo.debiased_alignment(acts.sel(step=[0, 15]), wit, splits=400, rng=5).sel(step=15)
        again = geo.debiased_alignment(acts.sel(step=[0, 15]), wit, splits=400, rng=5).sel(step=15)
    xr.testing.assert_identical(approx, again)  # seeded
    np.testing.assert_allclose(approx.debiased, exact.debiased, atol=0.03)
    np.testing.assert_allclose(approx.drift_sq, exact.drift_sq, rtol=0.05)
    assert approx.attrs["seed"] == 5 and approx.attrs["splits"] == 400


def test_plugin_in_debiased_matches_alignment(data):
    acts, wit = data
    ds = geo.debiased_alignment(acts.sel(step=[0, 10]), wit).sel(step=10)
    plug = geo.alignment(
        geo.drift(acts).sel(step=10), geo.reversion_direction(wit, acts.sel(step=0))
    )
    xr.testing.assert_allclose(ds.plugin.drop_vars("step"), plug.transpose(*ds.plugin.dims))


def test_pooled_is_ratio_of_mean_cross_products(data):
    acts, wit = data
    per_run = geo.debiased_alignment(acts.sel(step=[0, 10]), wit).sel(step=10)
    pooled = geo.debiased_alignment(acts.sel(step=[0, 10]), wit, pool_dim="run").sel(step=10)
    assert "run" not in pooled.dims
    m = per_run.mean("run")
    expected = m.drift_dot_direction / np.sqrt(m.drift_sq * m.direction_sq)
    np.testing.assert_allclose(pooled.debiased, expected, rtol=1e-12)
    np.testing.assert_allclose(pooled.plugin, per_run.plugin.mean("run"), rtol=1e-12)


@pytest.mark.parametrize(
    ("true_cos", "aligned_noise", "plugin_expected"),
    [(1.0, 0.0, 0.43), (0.0, 1.0, 0.36)],
)
def test_bias_study_debiased_is_unbiased_where_plugin_is_not(
    true_cos, aligned_noise, plugin_expected
):
    """d=4096, 24 runs: plug-in visibly biased; pooled cross-fitted estimate on target.

    (1.0, 0.0): independent probe noise, plug-in ~0.43 (DESIGN §4). (0.0, 1.0): the aligned
    model's probe noise enters drift and direction alike, so an orthogonal drift shows a
    spurious plug-in alignment of ~0.36 (the bias can point away from 0 too).
    Reduced replicate count; the full study is tests/calibration/test_debiased_alignment.py.
    """
    rng = np.random.default_rng(20261123)
    reps = 6
    plug, deb = np.empty(reps), np.empty(reps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)  # step 0 has no drift
        for r in range(reps):
            acts, wit = simulate_reversion(rng, true_cos=true_cos, aligned_noise=aligned_noise)
            ds = geo.debiased_alignment(acts, wit, pool_dim="run").sel(step=1)
            plug[r], deb[r] = float(ds.plugin), float(ds.debiased)
    se = deb.std(ddof=1) / np.sqrt(reps)
    assert abs(plug.mean() - plugin_expected) < 0.03
    assert (abs(plug - true_cos) > 0.2).all()  # every replicate's plug-in far from the truth
    assert abs(deb.mean() - true_cos) < 4 * se + 1e-3
    assert se < 0.03  # the test has power: 4 * se is far smaller than the plug-in's bias


# --------------------------------------------------------------------------- stability


def test_direction_stability_noise_free_is_one_and_noise_lowers_it():
    rng = np.random.default_rng(2)
    aligned = xr.DataArray(rng.normal(size=(20, 30)), dims=("example", "hidden"))
    shift = rng.normal(size=30)
    exact = geo.direction_stability(aligned + shift, aligned, n_resamples=200, rng=0)
    for var in ("bootstrap_mean", "low", "high", "split_half"):
        assert float(exact[var]) == pytest.approx(1.0, abs=1e-12)
    noisy_wit = aligned + shift + xr.DataArray(rng.normal(size=(20, 30)) * 2, dims=aligned.dims)
    noisy = geo.direction_stability(noisy_wit, aligned, n_resamples=200, rng=0)
    assert float(noisy.low) < float(noisy.bootstrap_mean) < float(noisy.high) < 1.0
    assert 0 < float(noisy.split_half) < float(noisy.bootstrap_mean)
    again = geo.direction_stability(noisy_wit, aligned, n_resamples=200, rng=0)
    xr.testing.assert_identical(noisy, again)
    assert noisy.attrs["seed"] == 0 and noisy.attrs["n_resamples"] == 200


def test_direction_stability_zero_direction_warns():
    aligned = xr.DataArray(np.ones((5, 3)), dims=("example", "hidden"))
    with pytest.warns(DegenerateDataWarning):
        st = geo.direction_stability(aligned.copy(), aligned, n_resamples=10, rng=0)
    assert np.isnan(float(st.bootstrap_mean))


# --------------------------------------------------------------------------- dask: same results, lazy


def test_numpy_and_dask_identical_and_lazy(data):
    acts, wit = data
    aligned = acts.sel(step=0)
    acts_c, wit_c, aligned_c = chunked(acts, wit, aligned)
    dr_np = geo.drift(acts).sel(step=[5, 10])
    results = {}
    with raise_if_dask_computes():
        v = geo.reversion_direction(wit_c, aligned_c)
        dr = geo.drift(acts_c).sel(step=[5, 10])
        results["direction"] = v
        results["drift"] = dr
        results["alignment"] = geo.alignment(dr, v)
        results["per_probe"] = geo.per_probe_alignment(
            acts_c.sel(step=[5, 10]), v, aligned_c.drop_vars("step")
        )
        results["project_out"] = geo.project_out(dr, v)
        results["stability"] = geo.direction_stability(wit_c, aligned_c, n_resamples=50, rng=3)
        results["debiased"] = geo.debiased_alignment(
            acts_c.sel(step=[0, 10]), wit_c, aligned_c.drop_vars("step")
        )
        results["pooled"] = geo.debiased_alignment(
            acts_c.sel(step=[0, 10]),
            wit_c,
            aligned_c.drop_vars("step"),
            pool_dim="run",
            splits=8,
            rng=1,
        )
    for name, obj in results.items():
        arrays = obj.data_vars.values() if isinstance(obj, xr.Dataset) else [obj]
        assert all(isinstance(a.data, dask.array.Array) for a in arrays), name
    v_np = geo.reversion_direction(wit, aligned)
    expected = {
        "direction": v_np,
        "drift": dr_np,
        "alignment": geo.alignment(dr_np, v_np),
        "per_probe": geo.per_probe_alignment(
            acts.sel(step=[5, 10]), v_np, aligned.drop_vars("step")
        ),
        "project_out": geo.project_out(dr_np, v_np),
        "stability": geo.direction_stability(wit, aligned, n_resamples=50, rng=3),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        expected["debiased"] = geo.debiased_alignment(
            acts.sel(step=[0, 10]), wit, aligned.drop_vars("step")
        )
        expected["pooled"] = geo.debiased_alignment(
            acts.sel(step=[0, 10]), wit, aligned.drop_vars("step"), pool_dim="run", splits=8, rng=1
        )
        for name, lazy in results.items():
            got = lazy.compute(scheduler="synchronous")
            exp = expected[name]
            xr.testing.assert_allclose(got.transpose(*exp.dims), exp, rtol=1e-12, atol=1e-13)


def test_counting_scheduler_does_detect_computes(data):
    """The laziness check above can fail: an eager op trips it."""
    acts, _ = data
    (acts_c,) = chunked(acts)
    with raise_if_dask_computes(), pytest.raises(RuntimeError, match="Too many computes"):
        geo.drift(acts_c).values  # noqa: B018


# --------------------------------------------------------------------------- validation


def test_missing_dim_names_existing_dims(data):
    acts, wit = data
    with pytest.raises(
        ValueError, match=r"`witness` has no dimension 'probe'.*'layer', 'example', 'hidden'"
    ):
        geo.reversion_direction(wit, acts.sel(step=0), dim="probe")
    with pytest.raises(ValueError, match=r"`drift` has no dimension 'units'"):
        geo.alignment(geo.drift(acts), wit.isel(example=0), dim="units")
    with pytest.raises(ValueError, match=r"`acts` has no dimension 'time'"):
        geo.drift(acts, step_dim="time")


def test_type_and_argument_errors(data):
    acts, wit = data
    with pytest.raises(TypeError, match="`witness` must be an xarray.DataArray"):
        geo.reversion_direction(wit.values, acts.sel(step=0))
    with pytest.raises(TypeError, match="`drift` must be an xarray.DataArray"):
        geo.alignment(np.ones(3), wit)
    with pytest.raises(ValueError, match="`hidden_dim` and `dim` both name dimension 'hidden'"):
        geo.reversion_direction(wit, acts.sel(step=0), dim="hidden")
    with pytest.raises(ValueError, match="`dim` must name at least one dimension"):
        geo.alignment(wit, wit, dim=())
    with pytest.raises(ValueError, match="`dim` lists a dimension twice"):
        geo.alignment(wit, wit, dim=("hidden", "hidden"))
    with pytest.raises(
        ValueError,
        match=r"`reference_step` 3 is not a 'step' coordinate of `acts` \(it has 0, 5, 10, 15\)",
    ):
        geo.drift(acts, reference_step=3)
    nocoord = acts.drop_vars("step")
    with pytest.raises(ValueError, match=r"`reference_step` must be a position in 0..3"):
        geo.drift(nocoord, reference_step=7)
    with pytest.raises(TypeError, match="`n_resamples` must be an integer >= 1"):
        geo.direction_stability(wit, acts.sel(step=0), n_resamples=1.5)
    with pytest.raises(ValueError, match="`n_splits` must be at least 1"):
        geo.direction_stability(wit, acts.sel(step=0), n_splits=0)
    with pytest.raises(ValueError, match="`confidence` must lie strictly between 0 and 1"):
        geo.direction_stability(wit, acts.sel(step=0), confidence=95)
    with pytest.raises(ValueError, match="`splits` must be 'all' or a positive integer"):
        geo.debiased_alignment(acts, wit, splits="some")
    with pytest.raises(ValueError, match="`splits` must be at least 1"):
        geo.debiased_alignment(acts, wit, splits=0)
    with pytest.raises(ValueError, match="`pool_dim` and `dim` both name dimension 'example'"):
        geo.debiased_alignment(acts, wit, pool_dim="example")
    with pytest.raises(TypeError, match="`rng` must be a numpy Generator"):
        geo.debiased_alignment(acts, wit, splits=3, rng="seed")


def test_unpaired_probes_are_refused(data):
    acts, wit = data
    with pytest.raises(
        ValueError,
        match=r"`acts` and `witness` must hold the same 'example' entries, but their sizes are 12 and 11",
    ):
        geo.debiased_alignment(acts, wit.isel(example=slice(1, None)))
    shuffled = wit.isel(example=np.roll(np.arange(12), 1))
    with pytest.raises(ValueError, match=r"same 'example' coordinates in the same order"):
        geo.debiased_alignment(acts, shuffled)
    with pytest.raises(ValueError, match=r"`witness` and `aligned` must hold the same 'example'"):
        geo.direction_stability(shuffled, acts.sel(step=0))
    with pytest.raises(ValueError, match="`witness` needs at least 2 probes"):
        geo.direction_stability(wit.isel(example=[0]), acts.sel(step=0).isel(example=[0]))
    with pytest.raises(
        ValueError, match="`drift` and `direction` must hold the same 'hidden' entries"
    ):
        geo.alignment(geo.drift(acts), wit.isel(example=0, hidden=slice(3)))


def test_mismatched_shared_coordinates_are_refused_not_inner_joined(data):
    acts, wit = data
    other_layers = wit.assign_coords(layer=["L0", "L9"])
    with pytest.raises(ValueError, match="`witness` and `aligned` must have identical coordinates"):
        geo.reversion_direction(other_layers, acts.sel(step=0))
    with pytest.raises(ValueError, match="`witness` and `aligned` must have identical coordinates"):
        geo.debiased_alignment(acts, other_layers)
    with pytest.raises(ValueError, match="`acts` and `aligned` must have identical coordinates"):
        geo.drift(acts, acts.sel(step=0, drop=True).assign_coords(run=["x", "y", "z"]))
