"""The resampling engine behind bootstrap_ci: exact uniform draws, the same resamples on every
path (compiled or NumPy, moment or generic statistic), and intervals equal to
scipy.stats.bootstrap's within Monte Carlo error."""

import numpy as np
import pytest
from scipy import stats

from revstats.intervals import _bootstrap as bs
from revstats.intervals import _draws, bootstrap_ci


def _require_compiled():
    """The numba kernels: numba is a dependency, so their absence fails (unless the run asked
    for the NumPy path with REVSTATS_NUMBA=0)."""
    import os

    if os.environ.get("REVSTATS_NUMBA", "1").strip() == "0":
        pytest.skip("REVSTATS_NUMBA=0 selects the NumPy path")
    k = _draws.compiled()
    assert k is not None, "numba is a dependency of revstats, but its kernels cannot be imported"
    return k


@pytest.fixture(params=["compiled", "numpy"])
def engine(request, monkeypatch):
    """Run a test with the numba kernels and with the NumPy path (identical draws)."""
    if request.param == "numpy":
        monkeypatch.setattr(_draws, "_compiled_module", None)
        monkeypatch.setattr(_draws, "_compiled_tried", True)
    else:
        _require_compiled()
    return request.param


def _streams(seed, count=2):
    return _draws.streams(np.random.default_rng(seed), count)


@pytest.mark.parametrize("n", [3, 1000, 40_000, 100_000])
def test_resample_indices_are_uniform(n, engine):
    # chi-square at a fixed seed; the first and the last sixteenth of the range are equally
    # likely (a plain u mod n or a floor(u n / 2**32) without rejection would not be exact)
    g, h = _streams(n)
    idx = np.concatenate([blk.reshape(-1) for _, _, blk in _draws.index_blocks(g, h, n, max(1, 2_000_000 // n))])
    assert idx.min() >= 0 and idx.max() < n
    counts = np.bincount(idx, minlength=n)
    assert stats.chisquare(counts).pvalue > 1e-4
    lo, hi = counts[: max(1, n // 16)].mean(), counts[-max(1, n // 16):].mean()
    assert abs(lo - hi) < 6 * np.sqrt(idx.size / n / max(1, n // 16)) + 1e-9


@pytest.mark.parametrize(("n", "bits"), [(100, 8), (7, 8), (3, 2), (255, 8), (5, 4)])
def test_rejected_draws_are_replaced_exactly(n, bits, engine):
    # at a small bit width the rejection (probability (2**bits mod n) / 2**bits, 22 % for
    # n = 100 at 8 bits) and the spare stream are frequent: indices stay exactly uniform
    g, h = _streams(10 * n + bits)
    idx = np.concatenate([blk.reshape(-1) for _, _, blk in _draws.index_blocks(g, h, n, 200_000 // n, bits=bits)])
    assert idx.min() >= 0 and idx.max() < n
    assert stats.chisquare(np.bincount(idx, minlength=n)).pvalue > 1e-4
    # without the rejection step floor(u n / 2**bits) favours some values: the test sees it
    u = np.random.default_rng(0).integers(0, 1 << bits, size=idx.size)
    if (1 << bits) % n:
        assert stats.chisquare(np.bincount((u * n) >> bits, minlength=n)).pvalue < 1e-4


def test_compiled_kernels_equal_the_numpy_reference():
    k = _require_compiled()
    # the SFC64 port gives NumPy's raw stream; `streams` seeds as SFC64(SeedSequence) does
    st = _streams(3, 5)
    raw = _draws.generator(st[2]).bit_generator.random_raw(50)
    s = st[2].copy()
    assert np.array_equal(np.array([k._step(s) for _ in range(50)], dtype=np.uint64), raw)
    from numpy.random.bit_generator import ISeedSequence

    class Words(ISeedSequence):  # hands SFC64 fixed seed words
        def __init__(self, words):
            self.words = words

        def generate_state(self, n_words, dtype=np.uint32):
            return self.words[:n_words].astype(dtype)

    rng = np.random.default_rng(3)
    root = np.random.SeedSequence(rng.integers(0, 2**63, size=4, dtype=np.uint64).tolist())
    words = root.generate_state(4 * 5, np.uint64).reshape(5, 4)
    for i in range(5):
        assert np.array_equal(st[i], np.random.SFC64(Words(words[i])).state["state"]["state"])
    for n, bits, r in [(7, 8, 300), (100, 8, 500), (1000, 32, 50), (20_001, 32, 9), (1, 32, 5), (3, 2, 400)]:
        g, h = _streams(n + bits)
        ref = np.concatenate([i for _, _, i in _draws.numpy_index_blocks(g, h, n, r, bits)])
        assert np.array_equal(ref, np.concatenate([i for _, _, i in _draws.numpy_index_blocks(g, h, n, r, bits, rows=3)]))
        assert np.array_equal(ref, np.concatenate([i for _, _, i in _draws.index_blocks(g, h, n, r, bits, rows=7)]))
        x = np.random.default_rng(n).normal(size=n)
        s1, s2 = _draws.moment_sums(g, h, x, r, True, bits)
        np.testing.assert_allclose(s1, x[ref].sum(axis=1), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(s2, (x[ref] ** 2).sum(axis=1), rtol=1e-12)
        np.testing.assert_allclose(_draws.moment_sums(g, h, x, r, False, bits)[0], s1, rtol=1e-12, atol=1e-12)


def test_results_do_not_depend_on_numba(monkeypatch):
    _require_compiled()
    x = np.random.default_rng(4).lognormal(size=(2, 777))
    a = [bs.replicates(x, f, fn, 500, np.random.default_rng(9)) for f, fn in (("mean", np.mean), ("std", np.std))]
    monkeypatch.setattr(_draws, "_compiled_module", None)
    monkeypatch.setattr(_draws, "_compiled_tried", True)
    b = [bs.replicates(x, f, fn, 500, np.random.default_rng(9)) for f, fn in (("mean", np.mean), ("std", np.std))]
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12)


def test_too_many_observations_is_a_clear_error():
    with pytest.raises(ValueError, match="at most 2"):
        _draws.check_size(1 << 32)


def test_fast_and_generic_paths_see_the_same_resamples(engine):
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
