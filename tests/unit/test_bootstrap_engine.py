"""The resampling engine behind bootstrap_ci: exact uniform draws, same resamples on every
path, and intervals equal to scipy.stats.bootstrap's within Monte Carlo error."""

import numpy as np
import pytest
from scipy import stats

from revstats.intervals import _bootstrap as bs
from revstats.intervals import bootstrap_ci


@pytest.mark.parametrize("n", [3, 1000, 40_000, 100_000])
def test_resample_indices_are_uniform(n):
    # n = 40,000 would be visibly biased by u mod n without the rejection step
    # (2**16 mod 40,000 values would be twice as likely); chi-square at a fixed seed
    sampler = bs._Sampler(n)
    g = np.random.Generator(np.random.SFC64(7))
    idx = np.concatenate([blk.reshape(-1) for _, _, blk in sampler.index_blocks(g, max(1, 2_000_000 // n))])
    assert idx.min() >= 0 and idx.max() < n
    counts = np.bincount(idx, minlength=n)
    assert stats.chisquare(counts).pvalue > 1e-4
    # the first and the last sixteenth of the range are equally likely (no mod bias)
    lo, hi = counts[: max(1, n // 16)].mean(), counts[-max(1, n // 16):].mean()
    assert abs(lo - hi) < 6 * np.sqrt(idx.size / n / max(1, n // 16)) + 1e-9


def test_fast_and_generic_paths_see_the_same_resamples():
    x = np.random.default_rng(0).lognormal(size=(1, 2500))
    for fast, func in (("mean", np.mean), ("var", np.var), ("std", np.std)):
        a = bs.replicates(x, fast, func, 700, np.random.default_rng(3), workers=2)
        b = bs.replicates(x, None, lambda v, axis, f=func: f(v, axis=axis), 700, np.random.default_rng(3), workers=1)
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
    many = np.random.default_rng(1).normal(size=(9, 300))  # the many-series (counts) path
    a = bs.replicates(many, "var", np.var, 300, np.random.default_rng(4))
    b = bs.replicates(many, None, lambda v, axis: np.var(v, axis=axis), 300, np.random.default_rng(4))
    np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


def test_replicates_have_the_bootstrap_distribution_of_the_mean():
    # mean and sd of B bootstrap means: E = xbar, SD = s_plugin / sqrt(n) (exact moments)
    x = np.random.default_rng(2).exponential(size=20_000)
    reps = bs.replicates(x[None], "mean", np.mean, 4000, np.random.default_rng(5))[0]
    se = x.std() / np.sqrt(x.size)
    assert abs(reps.mean() - x.mean()) < 4 * se / np.sqrt(reps.size)
    assert abs(reps.std(ddof=1) / se - 1) < 4 * np.sqrt(1 / (2 * reps.size)) + 0.01


@pytest.mark.parametrize("method", ["bca", "percentile", "basic"])
def test_mean_interval_matches_scipy_within_monte_carlo_error(method):
    # B = 9,999, n = 1,000 lognormal (skewed); the end of an interval from B replicates has
    # Monte Carlo SE ~ 2.1 se_mean / sqrt(B) at the 2.5% quantile; two runs differ by sqrt(2) x
    x = np.random.default_rng(1000).lognormal(size=1000)
    ours = bootstrap_ci(x, "mean", method=method, n_resamples=9999, rng=1)
    ref = stats.bootstrap((x,), np.mean, method="BCa" if method == "bca" else method,
                          n_resamples=9999, rng=2).confidence_interval
    tol = 4 * np.sqrt(2) * 2.1 * (x.std(ddof=1) / np.sqrt(x.size)) / np.sqrt(9999)
    assert abs(ours.low - ref.low) < tol and abs(ours.high - ref.high) < tol
    assert ours.method == method


@pytest.mark.slow
@pytest.mark.parametrize("method", ["bca", "percentile", "basic"])
def test_mean_interval_matches_scipy_at_20k(method):
    x = np.random.default_rng(20_000).lognormal(size=20_000)
    ours = bootstrap_ci(x, "mean", method=method, n_resamples=9999, rng=1)
    ref = stats.bootstrap((x,), np.mean, method="BCa" if method == "bca" else method,
                          n_resamples=9999, rng=2, batch=100).confidence_interval
    tol = 4 * np.sqrt(2) * 2.1 * (x.std(ddof=1) / np.sqrt(x.size)) / np.sqrt(9999)
    assert abs(ours.low - ref.low) < tol and abs(ours.high - ref.high) < tol
