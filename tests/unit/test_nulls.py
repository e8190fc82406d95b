"""Unit tests of revstats.nulls: interfaces, conventions, validation messages, adjust_pvalues."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from statsmodels.stats.multitest import multipletests

from revstats import nulls
from revstats.nulls import (
    CosineNull,
    EmpiricalNull,
    adjust_pvalues,
    covariance_matched_cosine,
    effective_dimension,
    effective_isotropic_cosine,
    exceedance,
    history_pairs_cosine,
    isotropic_cosine,
    permutation_cosine,
)

# ---------------------------------------------------------------- isotropic_cosine


def test_isotropic_interface_and_symmetry():
    null = isotropic_cosine(64)
    c = np.linspace(-0.9, 0.9, 19)
    np.testing.assert_allclose(null.cdf(c), null.sf(-c), rtol=1e-15)
    np.testing.assert_allclose(null.cdf(c) + null.sf(c), 1.0, rtol=1e-14)
    lower, upper = c[c <= 0], c[c > 0]  # invert each half through its own (small) tail
    np.testing.assert_allclose(null.ppf(null.cdf(lower)), lower, atol=1e-13)
    np.testing.assert_allclose(null.isf(null.sf(upper)), upper, atol=1e-13)
    np.testing.assert_allclose(null.isf(0.01), null.ppf(0.99), rtol=1e-14)
    assert null.quantile(0.99) == null.ppf(0.99)
    assert null.mean() == 0.0 and null.var() == pytest.approx(1 / 64)
    assert isinstance(null.sf(0.1), float)
    assert null.pvalue(0.2) == null.sf(0.2)
    assert null.pvalue(-0.2, alternative="less") == null.cdf(-0.2)
    assert null.pvalue(-0.2, alternative="two-sided") == pytest.approx(2 * null.sf(0.2))


def test_isotropic_edges():
    null = isotropic_cosine(10)
    assert null.sf(1.0) == 0.0 and null.cdf(-1.0) == 0.0
    assert null.sf(-1.0) == 1.0 and null.cdf(1.0) == 1.0
    assert null.sf(2.0) == 0.0 and null.pdf(1.5) == 0.0
    assert np.isnan(null.sf(np.nan))
    assert null.ppf(0.0) == -1.0 and null.ppf(1.0) == 1.0 and null.ppf(0.5) == 0.0
    assert np.isinf(isotropic_cosine(2).pdf(1.0))


def test_isotropic_no_underflow_in_logsf_and_tails_exact():
    null = isotropic_cosine(100_000)
    assert null.sf(0.5) == 0.0  # below the smallest double ...
    assert -14400 < null.logsf(0.5) < -14380  # ... but its log is finite (sf = 3.37e-6250)
    assert null.cdf(-0.05) > 0 and null.cdf(-0.05) == null.sf(0.05)
    assert null.logcdf(-0.05) == null.logsf(0.05)


def test_isotropic_rvs_seeded():
    null = isotropic_cosine(768)
    a = null.rvs(1000, rng=3)
    b = null.rvs(1000, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (1000,) and np.all(np.abs(a) <= 1)


def test_isotropic_xarray_and_dask_stay_lazy():
    null = isotropic_cosine(100)
    x = xr.DataArray(np.linspace(-0.3, 0.3, 12).reshape(3, 4), dims=("run", "step"))
    out = null.sf(x)
    assert isinstance(out, xr.DataArray) and out.dims == ("run", "step")
    lazy = null.sf(x.chunk({"run": 1}))
    assert lazy.chunks is not None  # nothing computed yet
    np.testing.assert_allclose(lazy.compute(), out)


def test_isotropic_accepts_integral_float_and_numpy_int():
    assert isotropic_cosine(np.int64(5)).d == 5.0
    assert isotropic_cosine(5.0).d == 5.0


@pytest.mark.parametrize(
    ("d", "err", "match"),
    [
        (1, ValueError, r"`d` must be >= 2"),
        (0, ValueError, r"`d` must be >= 2"),
        (2.5, TypeError, r"`d` must be an integer.*effective_isotropic_cosine"),
        ("7", TypeError, r"`d` must be an integer"),
        (True, TypeError, r"`d` must be an integer"),
    ],
)
def test_isotropic_validation(d, err, match):
    with pytest.raises(err, match=match):
        isotropic_cosine(d)


def test_probability_validation():
    null = isotropic_cosine(5)
    with pytest.raises(ValueError, match=r"`q` must lie in \[0, 1\]"):
        null.ppf(1.5)
    with pytest.raises(ValueError, match=r"`p` must lie in \[0, 1\]"):
        null.isf(-0.1)
    with pytest.raises(ValueError, match=r"`alternative` must be one of"):
        null.pvalue(0.1, alternative="bigger")


# ---------------------------------------------------------------- effective dimension


def test_effective_dimension_samples_match_covariance_both_paths():
    rng = np.random.default_rng(0)
    scales = np.linspace(0.2, 4.0, 40)
    for n in (15, 400):  # Gram path (n < d) and covariance path (n > d)
        x = rng.standard_normal((n, 40)) * scales
        cov = np.cov(x, rowvar=False)
        direct = np.trace(cov) ** 2 / np.trace(cov @ cov)
        assert effective_dimension(x) == pytest.approx(direct, rel=1e-10)
        assert effective_dimension(cov, kind="cov") == pytest.approx(direct, rel=1e-10)


def test_effective_dimension_known_spectra():
    assert effective_dimension(np.diag([1.0, 0, 0, 0]), kind="cov") == pytest.approx(1.0)
    assert effective_dimension(np.diag([1.0, 1.0, 0, 0]), kind="cov") == pytest.approx(2.0)
    assert effective_dimension(np.eye(7), kind="cov") == pytest.approx(7.0)


def test_effective_isotropic_is_a_real_d_cosine_null():
    null = effective_isotropic_cosine(np.diag([3.0, 1.0, 1.0, 0.5]), kind="cov")
    assert isinstance(null, CosineNull) and null.method == "effective_isotropic"
    assert null.d == pytest.approx(5.5**2 / 11.25)
    assert null.attrs["d_eff"] == null.d
    assert 0 < null.sf(0.3) < 0.5


def test_effective_validation():
    with pytest.raises(ValueError, match=r"`kind` must be one of"):
        effective_dimension(np.eye(3), kind="covariance")
    with pytest.raises(ValueError, match=r"`x` must be 2-D"):
        effective_dimension(np.ones(5))
    with pytest.raises(ValueError, match=r"`x` has zero variance"):
        effective_dimension(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"`x` must be a square"):
        effective_dimension(np.ones((3, 4)), kind="cov")
    with pytest.raises(ValueError, match=r"`x` must be symmetric"):
        effective_dimension(np.array([[1.0, 0.5], [0.0, 1.0]]), kind="cov")
    with pytest.raises(ValueError, match=r"`x` contains NaN"):
        effective_dimension(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"`x` needs at least 2 samples"):
        effective_dimension(np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"rank-one covariance"):
        effective_isotropic_cosine(np.diag([1.0, 0.0]), kind="cov")


# ---------------------------------------------------------------- covariance-matched MC


def test_covariance_matched_seeded_batched_and_shaped():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20, 100))
    v = rng.standard_normal((3, 2, 100))
    a = covariance_matched_cosine(x, v, n_draws=5000, batch_size=700, rng=9)
    b = covariance_matched_cosine(x, v, n_draws=5000, batch_size=5000, rng=9)
    assert a.samples.shape == (3, 2, 5000) and a.batch_shape == (3, 2)
    np.testing.assert_allclose(a.samples, b.samples, rtol=1e-12)  # batch size is not a setting
    assert a.attrs["rank"] == 19 and a.attrs["basis"] == "gram"
    assert np.all(np.abs(a.samples) <= 1 + 1e-12)


def test_covariance_matched_rank_one_is_plus_minus_projection():
    # Σ = u uᵀ: every draw is ±u, so cos(x, v) = ±cos(u, v)
    u = np.array([1.0, 0.0, 0.0])
    v = np.array([1.0, 1.0, 0.0])
    null = covariance_matched_cosine(np.outer(u, u), v, kind="cov", n_draws=200, rng=0)
    np.testing.assert_allclose(np.abs(null.samples), 1 / np.sqrt(2), rtol=1e-12)


def test_covariance_matched_validation():
    x = np.random.default_rng(0).standard_normal((10, 5))
    with pytest.raises(ValueError, match=r"`direction` must have its last axis of length 5"):
        covariance_matched_cosine(x, np.ones(4))
    with pytest.raises(ValueError, match=r"`direction` contains a zero vector"):
        covariance_matched_cosine(x, np.zeros(5))
    with pytest.raises(ValueError, match=r"`n_draws` must be >= 1"):
        covariance_matched_cosine(x, np.ones(5), n_draws=0)
    with pytest.raises(TypeError, match=r"`batch_size` must be an integer"):
        covariance_matched_cosine(x, np.ones(5), batch_size=10.5)
    with pytest.raises(ValueError, match=r"`cov` is not positive semi-definite"):
        covariance_matched_cosine(np.diag([1.0, -1.0]), np.ones(2), kind="cov")
    with pytest.raises(TypeError, match=r"`rng` must be a numpy Generator"):
        covariance_matched_cosine(x, np.ones(5), rng="seed")


# ---------------------------------------------------------------- empirical nulls


def test_empirical_null_conventions():
    null = EmpiricalNull(np.array([0.3, 0.1, 0.2, 0.4]), method="test")
    np.testing.assert_array_equal(null.samples, [0.1, 0.2, 0.3, 0.4])
    assert null.cdf(0.2) == 0.5 and null.sf(0.2) == 0.5
    assert null.pvalue(0.2) == (1 + 3) / 5  # 0.2, 0.3, 0.4 are >= 0.2
    assert null.pvalue(0.5) == 1 / 5  # never zero
    assert null.pvalue(0.2, alternative="less") == (1 + 2) / 5
    assert null.ppf(0.5) == 0.2 and null.quantile(0.51) == 0.3
    assert null.isf(0.25) == 0.3
    np.testing.assert_array_equal(null.ppf([0.0, 1.0]), [0.1, 0.4])
    assert np.isnan(null.cdf(np.nan))
    assert null.rvs(10, rng=0).shape == (10,)
    with pytest.raises(ValueError, match=r"`select` needs a batched null"):
        null.select(0)


def test_empirical_null_batched():
    samples = np.array([[0.0, 1.0, 2.0, 3.0], [10.0, 11.0, 12.0, 13.0]])
    null = EmpiricalNull(samples, method="test")
    np.testing.assert_array_equal(null.cdf(np.array([1.0, 12.0])), [0.5, 0.75])
    np.testing.assert_array_equal(null.pvalue(np.array([3.0, 3.0])), [2 / 5, 1.0])
    np.testing.assert_array_equal(null.ppf(0.5), [1.0, 11.0])
    assert null.ppf(np.array([0.25, 1.0])).shape == (2, 2)
    assert null.select(1).cdf(12.0) == 0.75
    with pytest.raises(ValueError, match=r"`rvs` needs a single null"):
        null.rvs(3)


def test_permutation_cosine_shapes_and_observed_in_support():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((8, 30)) + 0.5
    h = rng.standard_normal((8, 30))
    drift = rng.standard_normal((2, 30))
    null = permutation_cosine(w, h, drift, n_permutations=500, rng=1)
    assert null.samples.shape == (2, 500) and null.method == "permutation_paired"
    # all-plus signs give the observed statistic: it must be one of the possible values
    v = w.mean(0) - h.mean(0)
    obs = drift @ v / (np.linalg.norm(drift, axis=1) * np.linalg.norm(v))
    assert np.all(np.abs(null.samples) <= 1 + 1e-12)
    big = permutation_cosine(w, h, drift[0], n_permutations=20_000, rng=2)
    assert np.min(np.abs(big.samples - obs[0])) < 1e-12 or np.min(np.abs(big.samples + obs[0])) < 1e-12
    unpaired = permutation_cosine(w, h[:5], drift[0], paired=False, n_permutations=300, rng=1)
    assert unpaired.samples.shape == (300,) and unpaired.attrs["paired"] is False


def test_permutation_detects_a_real_direction():
    rng = np.random.default_rng(8)
    d = 40
    shift = np.zeros(d)
    shift[0] = 2.0
    base = rng.standard_normal((16, d))
    w = base + shift + 0.3 * rng.standard_normal((16, d))
    h = base + 0.3 * rng.standard_normal((16, d))
    drift = shift + 0.5 * rng.standard_normal(d)
    v = w.mean(0) - h.mean(0)
    obs = drift @ v / (np.linalg.norm(drift) * np.linalg.norm(v))
    null = permutation_cosine(w, h, drift, n_permutations=999, rng=0)
    # sign flips that keep most signs positive rebuild nearly the same direction, so even a
    # strong effect gets p of a few percent rather than 1/(B+1) (see docs/nulls.md)
    assert null.pvalue(obs) < 0.05
    other = rng.standard_normal(d)
    obs_other = other @ v / (np.linalg.norm(other) * np.linalg.norm(v))
    assert permutation_cosine(w, h, other, n_permutations=999, rng=0).pvalue(obs_other) > 0.1


def test_permutation_validation():
    w = np.ones((4, 3)) + np.eye(4, 3)
    with pytest.raises(ValueError, match=r"`paired=True` needs the same probes"):
        permutation_cosine(w, w[:3], np.ones(3))
    with pytest.raises(ValueError, match=r"must share the feature dimension"):
        permutation_cosine(w, np.ones((4, 2)), np.ones(3))
    with pytest.raises(ValueError, match=r"`witness` must be 2-D"):
        permutation_cosine(np.ones(3), np.ones((4, 3)), np.ones(3))
    with pytest.raises(ValueError, match=r"`drift` must have its last axis of length 3"):
        permutation_cosine(w, w * 2, np.ones(2))
    with pytest.raises(ValueError, match=r"`n_permutations` must be >= 1"):
        permutation_cosine(w, w * 2, np.ones(3), n_permutations=0)


def test_history_pairs_cosine():
    drift = np.array([1.0, 0.0, 0.0])
    dirs = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 0.0], [-3.0, 0.0, 0.0]])
    null = history_pairs_cosine(drift, dirs)
    np.testing.assert_allclose(null.samples, [-1.0, 0.0, 1 / np.sqrt(2)])
    assert null.pvalue(0.9) == 1 / 4
    with pytest.raises(ValueError, match=r"`directions` must be 2-D"):
        history_pairs_cosine(drift, np.ones(3))
    with pytest.raises(ValueError, match=r"`directions` contains a zero vector"):
        history_pairs_cosine(drift, np.zeros((2, 3)))


# ---------------------------------------------------------------- adjust_pvalues

P_EXAMPLE = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
# Hand computation, m = 4 (the NaN does not count):
# Holm: sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
# BH:   0.005*4/1=0.02, 0.01*4/2=0.02, 0.03*4/3=0.04, 0.04*4/4=0.04 -> running min from the top
# BY:   BH * (1 + 1/2 + 1/3 + 1/4) = BH * 25/12
HAND = {
    "holm": [0.03, 0.06, 0.06, 0.02, np.nan],
    "bonferroni": [0.04, 0.16, 0.12, 0.02, np.nan],
    "bh": [0.02, 0.04, 0.04, 0.02, np.nan],
    "by": [0.02 * 25 / 12, 0.04 * 25 / 12, 0.04 * 25 / 12, 0.02 * 25 / 12, np.nan],
}


@pytest.mark.parametrize("method", ["holm", "bonferroni", "bh", "by"])
def test_adjust_pvalues_worked_example(method):
    np.testing.assert_allclose(adjust_pvalues(P_EXAMPLE, method=method), HAND[method], rtol=1e-12)


@pytest.mark.parametrize(
    ("method", "sm"), [("holm", "holm"), ("bonferroni", "bonferroni"), ("bh", "fdr_bh"), ("by", "fdr_by")]
)
def test_adjust_pvalues_matches_statsmodels_any_shape(method, sm):
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(4, 6)) ** 3
    p[1, 2] = np.nan
    got = adjust_pvalues(p, method=method)
    assert got.shape == (4, 6) and np.isnan(got[1, 2])
    mask = ~np.isnan(p)
    np.testing.assert_allclose(got[mask], multipletests(p[mask], method=sm)[1], rtol=1e-14)


def test_holm_matches_statsmodels_with_ties_and_many_tests():
    # revstats computes Holm itself (statsmodels' Holm runs gc.collect() per call); ties, exact
    # 0 and 1, values that cap at 1, and m large enough that the cap matters
    rng = np.random.default_rng(3)
    for m in (1, 2, 7, 500):
        p = np.round(rng.uniform(size=m) ** 2, 2)  # rounding makes ties
        p[: min(m, 2)] = [0.0, 1.0][: min(m, 2)]
        np.testing.assert_allclose(adjust_pvalues(p, method="holm"),
                                   multipletests(p, method="holm")[1], rtol=1e-15, atol=0)


def test_adjust_pvalues_xarray_and_dask():
    p = xr.DataArray(np.array([[0.01, 0.04], [0.03, 0.005]]), dims=("run", "step"))
    out = adjust_pvalues(p, method="holm")
    assert isinstance(out, xr.DataArray) and out.attrs["adjust"] == "holm"
    np.testing.assert_allclose(out, [[0.03, 0.06], [0.06, 0.02]])
    lazy = adjust_pvalues(p.chunk({"run": 1, "step": 1}), method="holm")
    assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.compute(), out)  # adjusted across chunks, not per chunk


def test_adjust_pvalues_all_nan_and_validation():
    assert np.all(np.isnan(adjust_pvalues([np.nan, np.nan])))
    with pytest.raises(ValueError, match=r"`method` must be one of"):
        adjust_pvalues([0.1], method="fdr_bh")
    with pytest.raises(ValueError, match=r"`p` must contain p-values in \[0, 1\]"):
        adjust_pvalues([0.1, 1.2])
    with pytest.raises(TypeError, match=r"`p` must hold real numbers"):
        adjust_pvalues(["a"])


# ---------------------------------------------------------------- exceedance


def test_exceedance_isotropic_counts_and_pvalues():
    null = isotropic_cosine(4096)
    p99 = null.quantile(0.99)
    obs = np.array([[0.43, 0.65, p99 * 0.5], [np.nan, 0.02, 0.5]])
    res = exceedance(obs, null)
    assert res.threshold == p99
    assert res.n_pairs == 5 and res.n_above == 3
    np.testing.assert_array_equal(res.above, [[True, True, False], [False, False, True]])
    assert np.isnan(res.pvalue[1, 0]) and np.isnan(res.pvalue_adjusted[1, 0])
    np.testing.assert_allclose(res.pvalue_adjusted, adjust_pvalues(null.sf(obs)), rtol=1e-14)
    assert res.reject.sum() == 3
    d = res.to_dict()
    assert d["n_above"] == 3 and d["null"] == "isotropic" and d["adjust"] == "holm"


def test_exceedance_with_batched_empirical_null_and_xarray():
    samples = np.stack([np.linspace(-1, 1, 99), np.linspace(-0.1, 0.1, 99)])
    null = EmpiricalNull(samples, method="permutation_paired")
    obs = xr.DataArray([0.5, 0.5], dims=("run",), coords={"run": ["a", "b"]})
    res = exceedance(obs, null, q=0.9, adjust="bh")
    assert isinstance(res.pvalue, xr.DataArray) and list(res.pvalue.run.values) == ["a", "b"]
    assert res.n_above == 1
    assert float(res.pvalue.sel(run="b")) == 1 / 100


def test_exceedance_validation():
    null = isotropic_cosine(10)
    with pytest.raises(TypeError, match=r"`null` must be a CosineNull or EmpiricalNull"):
        exceedance([0.1], "isotropic")
    with pytest.raises(ValueError, match=r"`q` must lie strictly between 0 and 1"):
        exceedance([0.1], null, q=99)
    with pytest.raises(ValueError, match=r"`alpha` must lie strictly between 0 and 1"):
        exceedance([0.1], null, alpha=0)
    with pytest.raises(ValueError, match=r"`adjust` must be one of"):
        exceedance([0.1], null, adjust="fdr")
    batched = EmpiricalNull(np.zeros((3, 10)), method="x")
    with pytest.raises(ValueError, match=r"does not broadcast with the null's batch shape"):
        exceedance([0.1, 0.2], batched)


def test_public_names():
    for name in nulls.__all__:
        assert hasattr(nulls, name)


def test_empirical_ties_are_decided_by_value_not_by_rounding():
    # a draw equal to the observation up to rounding (e.g. the identity sign flip of a paired
    # permutation null reproduces the observed cosine) counts as a tie, on both sides of x
    from revstats.nulls import EmpiricalNull, exceedance

    x = 0.3
    for d in (x * (1 - 4e-16), x, x * (1 + 4e-16)):
        null = EmpiricalNull(np.array([0.1, 0.2, d, -0.5]), method="test")
        assert null.pvalue(x) == pytest.approx(2 / 5)
        assert null.pvalue(x, alternative="less") == pytest.approx(5 / 5)
        # at the threshold (with 2 draws the q = 0.9 quantile is the larger) a tie is not "above"
        ex = exceedance(np.array([d]), EmpiricalNull(np.array([0.1, x]), method="test"), q=0.9)
        assert int(ex.n_above) == 0
    # a real difference still counts
    assert EmpiricalNull(np.array([0.1, 0.2, x * (1 - 1e-9)]), method="t").pvalue(x) == pytest.approx(1 / 4)


def test_null_builders_return_sorted_read_only_draws_and_never_touch_user_arrays():
    # the Monte Carlo builders hand their draw buffer over (sorted in place, no copy); a user's
    # array given to EmpiricalNull is copied, never sorted or frozen in place
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20, 6))
    drift = rng.standard_normal((3, 4, 6))
    for null in (covariance_matched_cosine(x, drift, n_draws=257, batch_size=100, rng=1),
                 permutation_cosine(x[:10], x[10:], drift, n_permutations=257, batch_size=100,
                                    rng=1)):
        s = null.samples
        assert s.shape == (3, 4, 257) and not s.flags.writeable
        assert np.all(np.diff(s, axis=-1) >= 0)
    mine = rng.standard_normal((2, 50))
    before = mine.copy()
    null = EmpiricalNull(mine, "user")
    assert np.array_equal(mine, before) and mine.flags.writeable
    assert np.all(np.diff(null.samples, axis=-1) >= 0)
    f32 = rng.standard_normal(50).astype(np.float32)
    assert EmpiricalNull._from_draws(f32, "user").samples.dtype == np.float64  # copied, not kept


@pytest.mark.parametrize("shape", [(7, 1000), (3, 4, 513), (2, 1), (1000,), (64, 40_000)])
def test_unsorted_draws_answer_as_sorted_ones(shape):
    # `_from_draws` keeps draws unsorted (counts and partial sorts answer); every answer must
    # equal, bit for bit, what the same draws sorted up front give
    rng = np.random.default_rng(sum(shape))
    d = rng.normal(size=shape)
    d[..., :3] = 0.25  # ties with an observation below
    ref = EmpiricalNull(d.copy(), "t")
    lazy = EmpiricalNull._from_draws(d.copy(), "t")
    obs = rng.normal(size=shape[:-1])
    if obs.ndim:
        obs.flat[0] = 0.25
        obs.flat[-1] = np.nan
    for q in (np.array([0.5, 0.95, 0.99]), 0.99, np.array([0.01, 0.5]), 0.99):
        assert np.array_equal(ref.quantile(q), lazy.quantile(q))
        for alt in ("greater", "less", "two-sided"):
            assert np.array_equal(ref.pvalue(obs, alternative=alt), lazy.pvalue(obs, alternative=alt),
                                  equal_nan=True)
    assert np.array_equal(ref.cdf(obs), lazy.cdf(obs), equal_nan=True)
    assert np.array_equal(ref.sf(0.1), lazy.sf(0.1))  # one x for every row: the sorted path
    assert np.array_equal(ref.samples, lazy.samples)
    assert np.all(np.diff(lazy.samples, axis=-1) >= 0) and not lazy.samples.flags.writeable
    assert np.array_equal(ref.mean(), lazy.mean())
    assert np.array_equal(ref.var(), lazy.var(), equal_nan=True)  # NaN for one draw
    with pytest.raises(AttributeError, match="immutable"):
        lazy.method = "other"


def test_empirical_null_pickles_and_copies():
    import copy
    import pickle

    d = np.random.default_rng(1).normal(size=(4, 300))
    lazy = EmpiricalNull._from_draws(d.copy(), "t", {"n_draws": 300})
    ref = EmpiricalNull(d, "t", {"n_draws": 300})
    for other in (pickle.loads(pickle.dumps(lazy)), copy.deepcopy(lazy), copy.copy(lazy)):
        assert np.array_equal(other.samples, ref.samples)
        assert other.method == "t" and other.attrs == {"n_draws": 300}
        obs = np.zeros(4)
        assert np.array_equal(other.pvalue(obs), ref.pvalue(obs))
