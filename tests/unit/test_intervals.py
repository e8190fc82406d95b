import json

import numpy as np
import pytest
import xarray as xr

from revstats.errors import DegenerateDataWarning
from revstats.intervals import (
    Interval,
    bootstrap_ci,
    cluster_bootstrap_ci,
    mean_ci,
    mean_sd,
    proportion_ci,
    proportion_diff_ci,
)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((5, 3), r"`k` exceeds `n`"),
        ((-1, 3), r"`k` has negative counts"),
        ((1, 0), r"`n` must be >= 1"),
        ((np.nan, 3), r"`k` contains NaN"),
        ((1.5, 3), r"`k` must hold whole numbers"),
        (([], []), r"`k` is empty"),
    ],
)
def test_proportion_ci_bad_counts(args, match):
    with pytest.raises(ValueError, match=match):
        proportion_ci(*args)


@pytest.mark.parametrize("confidence", [0, 1, 1.5, -0.1])
def test_bad_confidence(confidence):
    with pytest.raises(ValueError, match=r"`confidence` must lie strictly between 0 and 1"):
        proportion_ci(1, 3, confidence=confidence)
    with pytest.raises(ValueError, match=r"`confidence` must lie strictly between 0 and 1"):
        bootstrap_ci([1.0, 2.0, 3.0], "mean", confidence=confidence)


def test_bad_method_names():
    with pytest.raises(ValueError, match=r"`method` must be one of"):
        proportion_ci(1, 3, method="score")
    with pytest.raises(ValueError, match=r"`method` must be one of"):
        proportion_diff_ci(1, 3, 1, 3, method="wilson")
    with pytest.raises(ValueError, match=r"`method` must be one of"):
        bootstrap_ci([1.0, 2.0], "mean", method="bc")


def test_diff_bad_counts_name_the_argument():
    with pytest.raises(ValueError, match=r"`k2` exceeds `n2`"):
        proportion_diff_ci(1, 3, 4, 3)


def test_proportion_vectorised_and_scalar():
    res = proportion_ci(np.array([0, 3, 10]), 10)
    assert res.low.shape == (3,) and res.estimate[1] == 0.3
    one = proportion_ci(3, 10)
    assert isinstance(one.low, float) and one.low == pytest.approx(res.low[1])
    assert json.dumps(res.to_dict())


def test_proportion_xarray_and_dask_lazy():
    k = xr.DataArray([1, 5, 9], dims="arm", coords={"arm": ["blocked", "control", "push"]})
    res = proportion_ci(k, 10, method="jeffreys")
    assert isinstance(res.low, xr.DataArray) and res.low.attrs["method"] == "jeffreys"
    assert res.low.attrs["confidence"] == 0.95
    lazy = proportion_ci(k.chunk(), 10, method="jeffreys")
    assert lazy.low.chunks is not None  # not computed yet
    np.testing.assert_allclose(lazy.low.compute(), res.low)


def test_mean_ci_errors_and_warning():
    with pytest.raises(ValueError, match=r"`x` needs at least 2 observations"):
        mean_ci([1.0])
    with pytest.raises(ValueError, match=r"`x` is empty"):
        mean_ci(np.array([]))
    with pytest.raises(ValueError, match=r"`x` contains NaN"):
        mean_ci([1.0, np.nan, 2.0])
    with pytest.warns(DegenerateDataWarning, match=r"all observations equal"):
        res = mean_ci([2.0, 2.0, 2.0])
    assert res.low == res.high == 2.0


def test_mean_ci_xarray_dims():
    da = xr.DataArray(np.random.default_rng(0).normal(size=(3, 4, 5)), dims=("arm", "run", "step"))
    res = mean_ci(da, dim="run")
    assert res.low.dims == ("arm", "step") and res.low.attrs["method"] == "t"
    np.testing.assert_allclose(res.low.values, mean_ci(da.values, axis=1).low)
    with pytest.raises(ValueError, match=r"has no dimension 'probe'"):
        mean_ci(da, dim="probe")
    with pytest.raises(ValueError, match=r"`dim` is required"):
        mean_ci(da)


def test_mean_sd_format():
    s = mean_sd([0.64, 0.65, 0.655])
    assert s.format() == "0.648 ± 0.008"
    with pytest.raises(ValueError, match=r"`x` needs more than 1 values"):
        mean_sd([1.0])


def test_bootstrap_seeded_and_worker_independent():
    x = np.random.default_rng(0).exponential(size=300)
    a = bootstrap_ci(x, "mean", rng=3, workers=1)
    b = bootstrap_ci(x, np.mean, rng=3, workers=2)
    assert (a.low, a.high) == (b.low, b.high)
    c = bootstrap_ci(x, "mean", rng=4)
    assert c.low != a.low
    assert a.seed == 3 and a.n_resamples == 9999 and isinstance(a, Interval)


def test_bootstrap_small_batch_bounded_memory_same_result_type():
    x = np.random.default_rng(1).normal(size=(2, 200))
    res = bootstrap_ci(x, "median", batch=1000, n_resamples=500, rng=0)
    assert res.low.shape == (2,)
    assert np.all(res.low <= res.estimate) and np.all(res.estimate <= res.high)


def test_bootstrap_all_equal_data_warns_degenerate():
    with pytest.warns(DegenerateDataWarning, match=r"all replicates equal"):
        res = bootstrap_ci(np.full(20, 3.0), "mean", rng=0)
    assert res.method == "degenerate" and res.low == res.high == 3.0


def _n_distinct(v, axis=-1):
    srt = np.sort(v, axis=axis)
    return 1 + (np.diff(srt, axis=axis) > 0).sum(axis=axis)


def test_bootstrap_one_sided_falls_back_to_symmetric():
    # number of distinct values: every resample (short of a permutation) has fewer, so all
    # replicates lie below the estimate and BCa's z0 is -infinity (as for the plug-in cosine)
    x = np.arange(30, dtype=float)
    with pytest.warns(DegenerateDataWarning, match=r"one-sided"):
        res = bootstrap_ci(x, _n_distinct, method="bca", rng=0, n_resamples=999)
    assert res.method == "symmetric"
    assert res.low <= res.estimate <= res.high


def test_bootstrap_fallback_is_per_series():
    x = np.stack([np.arange(30, dtype=float), np.repeat([0.0, 1.0], 15)])
    with pytest.warns(DegenerateDataWarning):
        res = bootstrap_ci(x, _n_distinct, method="percentile", rng=0, n_resamples=999)
    assert isinstance(res.method, np.ndarray) and res.method[0] == "symmetric"
    assert np.all(res.low <= res.estimate) and np.all(res.estimate <= res.high)


def test_bootstrap_bad_inputs():
    with pytest.raises(ValueError, match=r"`data` contains NaN"):
        bootstrap_ci([1.0, np.nan, 3.0], "mean")
    with pytest.raises(ValueError, match=r"`data` is empty"):
        bootstrap_ci(np.array([]), "mean")
    with pytest.raises(ValueError, match=r"`data` needs at least 2 observations"):
        bootstrap_ci([1.0], "mean")
    with pytest.raises(ValueError, match=r"`statistic` name must be one of"):
        bootstrap_ci([1.0, 2.0], "mode")
    with pytest.raises(TypeError, match=r"`statistic` must be a name"):
        bootstrap_ci([1.0, 2.0], 3)
    with pytest.raises(ValueError, match=r"`n_resamples` must be >= 100"):
        bootstrap_ci([1.0, 2.0], "mean", n_resamples=10)
    with pytest.raises(TypeError, match=r"`dim` is for xarray input"):
        bootstrap_ci([1.0, 2.0], "mean", dim="x")


def test_bootstrap_xarray_dim_and_dask():
    rng = np.random.default_rng(2)
    da = xr.DataArray(rng.normal(size=(2, 40)), dims=("arm", "run"))
    res = bootstrap_ci(da, "mean", dim="run", rng=1, n_resamples=999)
    assert res.low.dims == ("arm",) and res.low.attrs["n_resamples"] == 999
    assert res.low.attrs["seed"] == 1
    lazy = bootstrap_ci(da.chunk({"arm": 1}), "mean", dim="run", rng=1, n_resamples=999)
    assert lazy.low.chunks is not None
    assert np.all(lazy.low.compute().values < res.estimate.values)


def test_cluster_bootstrap_numpy_and_xarray():
    rng = np.random.default_rng(0)
    run_effect = rng.normal(size=(8, 1))
    x = run_effect + 0.1 * rng.normal(size=(8, 30))  # between-run variation dominates
    res = cluster_bootstrap_ci(x, "mean", rng=0, n_resamples=999)
    naive = bootstrap_ci(x.ravel(), "mean", rng=0, n_resamples=999)
    assert (res.high - res.low) > 3 * (naive.high - naive.low)
    da = xr.DataArray(x, dims=("run", "example"))
    lab = cluster_bootstrap_ci(da, "mean", rng=0, n_resamples=999, method="bca")
    assert float(lab.low) < float(lab.estimate) < float(lab.high)
    with pytest.raises(ValueError, match=r"at least 2 clusters"):
        cluster_bootstrap_ci(x[:1], "mean")


def test_to_dataset_records_settings():
    ds = bootstrap_ci(np.random.default_rng(0).normal(size=(2, 30)), "mean", rng=5,
                      n_resamples=500).to_dataset()
    assert set(ds.data_vars) == {"estimate", "low", "high"}
    assert ds.attrs["seed"] == 5 and ds.attrs["n_resamples"] == 500 and ds.attrs["method"] == "bca"
