"""The one-pass slab reducer equals the dask graph it replaces (`pipeline._lazy_layer`)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from revstats.analysis import _onepass
from revstats.analysis import pipeline as P
from revstats.analysis.testing import make_synthetic_store, write_synthetic_store
from revstats.store import create_store, open_store


def _reference(ds, layers):
    steps = [int(s) for s in ds["step"].values]
    step0 = steps.index(0)
    moving = [j for j in range(len(steps)) if j != step0]
    sel = slice(1, None) if step0 == 0 else moving
    coarse = P._coarsen_chunks(ds)
    ref = P._compute({"layers": {la: P._lazy_layer(coarse, la, step0, sel) for la in layers}})
    new = _onepass.reduce_layers(ds, layers, step0, moving)
    return ref["layers"], new["layers"]


def _assert_same(ref, new):
    assert ref.keys() == new.keys()
    for layer in ref:
        for key in ("plug_in", "debiased", "drift", "aligned", "witness"):
            a = np.asarray(ref[layer][key], float)
            b = np.asarray(new[layer][key], float)
            assert a.shape == b.shape, (layer, key)
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{layer} {key}")
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12, equal_nan=True,
                                       err_msg=f"{layer} {key}")


def test_store_with_a_layer_subset_out_of_store_order(tmp_path):
    path = str(tmp_path / "s.zarr")
    write_synthetic_store(path, layers=("a", "b", "c"), steps=(0, 1, 2, 5), runs_per_arm=2,
                          n_examples=12, hidden=24, seed=3)
    ds = open_store(path)
    assert _onepass.eligible(ds) and _onepass._direct_source(ds) is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, new = _reference(ds, ["c", "a"])  # out of store order: not contiguous
    _assert_same(ref, new)


def test_incomplete_slabs_and_per_run_witness(tmp_path):
    rng = np.random.default_rng(0)
    path = str(tmp_path / "w.zarr")
    runs, layers, ex, hid = ["r0", "r1", "r2"], ["l0", "l1"], [f"e{i}" for i in range(9)], 16
    with create_store(path, runs=runs, steps=[0, 1, 2], layers=layers, examples=ex, hidden=hid,
                      source="simulator", provenance={"t": 1}, behavior=False,
                      witness_per_run=True) as w:
        for r in runs:
            w.write_witness(rng.normal(size=(2, 9, hid)).astype(np.float32) + 1.0, run=r)
            for s in (0, 1, 2):
                if (r, s) in {("r1", 2), ("r2", 0)}:
                    continue  # never written: masked as NaN (r2 loses its aligned slab)
                w.write_slab(r, s, rng.normal(size=(2, 9, hid)).astype(np.float32) + 0.1 * s)
    ds = open_store(path)
    assert "witness" in ds and "run" in ds["witness"].dims
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, new = _reference(ds, layers)
    _assert_same(ref, new)
    assert np.isnan(new["l0"]["debiased"][2]).all() and np.isnan(new["l0"]["debiased"][1, 1])


def test_in_memory_dataset_and_lazy_fallback():
    ds = make_synthetic_store(seed=2, layers=("x", "y")).compute()
    assert _onepass.eligible(ds) and _onepass._direct_source(ds) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, new = _reference(ds, ["y"])
    _assert_same(ref, new)
    lazy = make_synthetic_store(seed=2, layers=("x",)).chunk({"run": 1})
    assert not _onepass.eligible(lazy)  # dask, not a local store: the graph reads it once
    with pytest.raises(ValueError, match="local store or an in-memory"):
        _onepass.reduce_layers(lazy, ["x"], 0, [1, 2, 3, 4, 5])


def _crossed_from_graph(ref_layer, arms, form):
    """The crossed-design interval per arm from the dask graph's per-(run, step) Grams."""
    from revstats.geometry import _np_alignment_ci as npc

    prods = np.asarray(ref_layer["align_products"], float)
    return {a: npc.crossed_interval_gram(np.moveaxis(prods[idx], 0, 1), 0.95)
            for a, idx in arms.items()}


def _crossed_from_terms(new_layer, arms):
    from revstats.geometry import _np_alignment_ci as npc

    t = new_layer["align_terms"]
    return {a: npc.crossed_interval_gram_terms(
        *(np.moveaxis(t[k][idx], 0, 1) for k in ("full", "uvar", "used")), t["v2"][a],
        t["n_probes"], 0.95) for a, idx in arms.items()}


@pytest.mark.parametrize("step_major", [True, False])
def test_streamed_gram_terms_give_the_graphs_crossed_interval(tmp_path, monkeypatch, step_major):
    # the one-pass reduction keeps no n x n Gram per (run, step): it reduces each to the
    # interval's terms as the slab streams by, in either slab order; the interval must equal
    # the batch form's on the graph's Grams (and a masked slab must drop out of both)
    path = str(tmp_path / "g.zarr")
    write_synthetic_store(path, layers=("a", "b"), steps=(0, 1, 3), runs_per_arm=3,
                          n_examples=10, hidden=20, seed=4)
    ds = open_store(path)
    monkeypatch.setattr(_onepass, "SLAB_ORDER", "step" if step_major else "run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, new = _reference(ds, ["a", "b"])
    monkeypatch.undo()
    arm_of = [str(a) for a in ds["arm"].values]
    arms = {a: np.array([i for i, x in enumerate(arm_of) if x == a]) for a in sorted(set(arm_of))}
    for layer in ("a", "b"):
        assert "align_products" not in new[layer] and new[layer]["align_form"] == "gram"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = _crossed_from_graph(ref[layer], arms, "gram")
            got = _crossed_from_terms(new[layer], arms)
        for a in arms:
            np.testing.assert_allclose(got[a], want[a], rtol=1e-9, atol=1e-12, equal_nan=True,
                                       err_msg=f"{layer} {a}")
            assert np.isfinite(got[a][..., 0]).all()


def test_gram_terms_equal_the_batch_form():
    from revstats.geometry import _np_alignment_ci as npc

    rng = np.random.default_rng(5)
    runs, steps, n, p = 5, 3, 8, 12
    w = rng.normal(size=(runs, n, p))
    d = rng.normal(size=(steps, runs, n, p)) + 0.3 * w.mean(axis=1)[None, :, None]
    d[1, 2] = 0.0  # a run with no drift at one step: unusable there (NaN estimate)
    grams = npc.probe_grams(d, w[None])  # (step, run, n, n, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = npc.crossed_interval_gram(grams)
        full, uvar, used, kern = npc.gram_run_terms(grams)
        v2 = npc.shared_u_variance(kern.sum(axis=1), used.sum(axis=1))
        got = npc.crossed_interval_gram_terms(full, uvar, used, v2, n)
    assert not used[1, 2].any() and used[0, :, 0].all()  # the plug-in is defined elsewhere
    np.testing.assert_array_equal(got, want)


def _kernel_choices():
    from revstats.analysis import _onepass_numba

    return [None, _onepass_numba]


@pytest.mark.parametrize("ratio", [1e-8, 1e-3, 1.0, 1e4])
@pytest.mark.parametrize("compiled", [False, True])
def test_gram_slab_equals_direct_products_at_any_drift_scale(ratio, compiled, monkeypatch):
    # the cross Gram's symmetric part comes from a second rank-k update; its cancellation
    # must stay at a direct product's rounding whether the drift is tiny or huge next to
    # the witness difference (early steps of a small learning rate: ||d|| << ||w||)
    from revstats.geometry import _np_alignment_ci as npc

    rng = np.random.default_rng(11)
    n, p = 12, 64
    al = rng.normal(size=(n, p)).astype(np.float32)
    wi = (al + rng.normal(size=(n, p))).astype(np.float32)
    a = (al + ratio * rng.normal(size=(n, p)) + 0.3 * ratio * (wi - al)).astype(np.float32)
    d = a.astype(np.float64) - al
    w = wi.astype(np.float64) - al
    ww = w @ w.T
    seen = []
    real = npc.gram_run_terms
    monkeypatch.setattr(npc, "gram_run_terms", lambda g: seen.append(g.copy()) or real(g))
    kernels = _kernel_choices()[int(compiled)]
    dw, dd, total, terms = _onepass._gram_slab(a, al, wi, None, None, ww, kernels)
    direct = d @ w.T
    bs = 0.5 * (direct + direct.T)
    scale = np.sqrt(np.outer(np.diag(d @ d.T), np.diag(ww)))
    assert np.max(np.abs(seen[0][..., 1] - bs) / scale) < 1e-13
    np.testing.assert_allclose(seen[0][..., 0], d @ d.T, rtol=1e-13)
    assert dw == pytest.approx(np.einsum("ij,ij->", d, w), rel=1e-11, abs=1e-12 * np.sqrt(
        np.sum(d * d) * np.sum(w * w)))
    assert dd == pytest.approx(np.sum(d * d), rel=1e-13)
    np.testing.assert_array_equal(total, a.sum(axis=0, dtype=np.float64))
    want = real(np.stack([d @ d.T, direct, ww], axis=-1))
    for g, x in zip(terms, want, strict=True):
        g, x = np.asarray(g, float), np.asarray(x, float)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(x))
        np.testing.assert_allclose(g, x, rtol=1e-7, atol=1e-12 * np.nanmax(np.abs(x)),
                                   equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_compiled_gram_passes_give_numpys_bits(dtype):
    # the compiled element passes are used for large stores only: they must not change a bit
    rng = np.random.default_rng(2)
    n, p = 9, 33
    al = rng.normal(size=(n, p)).astype(dtype)
    wi = (al + rng.normal(size=(n, p))).astype(dtype)
    a = (al + 0.1 * rng.normal(size=(n, p))).astype(dtype)
    w = wi.astype(np.float64) - al
    ww = w @ w.T
    ref = _onepass._gram_slab(a, al, wi, None, None, ww, None)
    cached = _onepass._gram_slab(a, al, wi, al.astype(np.float64), w, ww, None)
    kernels = _onepass._kernels(_onepass.COMPILED_ABOVE, dtype)
    assert (kernels is None) == (dtype == np.float16)  # numba has no float16: NumPy there
    got = _onepass._gram_slab(a, al, wi, None, None, ww, kernels)
    for other in (cached, got):
        assert other[:2] == ref[:2]
        np.testing.assert_array_equal(other[2], ref[2])
        for x, y in zip(other[3], ref[3], strict=True):
            np.testing.assert_array_equal(x, y)


def test_large_gram_reductions_use_the_compiled_passes(monkeypatch):
    assert _onepass._kernels(_onepass.COMPILED_ABOVE - 1) is None
    assert _onepass._kernels(_onepass.COMPILED_ABOVE) is not None
    monkeypatch.setenv("REVSTATS_NUMBA", "0")
    assert _onepass._kernels(10 * _onepass.COMPILED_ABOVE) is None
