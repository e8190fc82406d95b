"""Monte Carlo calibration of the nulls.

- isotropic_cosine vs >= 10^6 normalised Gaussian vectors (the literal definition: u = g/‖g‖,
  cos(u, v) with a fixed random v), by a KS test and binomial bands at fixed quantiles;
- covariance-matched MC vs the exact law when Σ ∝ I;
- the permutation null's type-I error under exchangeability (slow).
Seeds are fixed, so each check is deterministic; the thresholds (p > 1e-4 after counting every
comparison) make a false failure of a correct implementation a 1-in-10^4 event per seed.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from revstats.nulls import (
    covariance_matched_cosine,
    effective_dimension,
    effective_isotropic_cosine,
    isotropic_cosine,
    permutation_cosine,
)

QUANTILES = [1e-3, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999]


def sphere_cosines(d: int, n: int, seed: int, batch: int = 50_000) -> np.ndarray:
    """cos(g/‖g‖, v) for n Gaussian g in R^d and a fixed random unit v, made in batches."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(d)
    v /= np.linalg.norm(v)
    out = np.empty(n)
    for start in range(0, n, batch):
        g = rng.standard_normal((min(batch, n - start), d))
        out[start : start + g.shape[0]] = (g @ v) / np.linalg.norm(g, axis=1)
    return out


def check_against(null, draws: np.ndarray, n_checks: int) -> None:
    ks = stats.kstest(draws, null.cdf)
    assert ks.pvalue > 1e-4 / n_checks, ks
    n = draws.size
    for q in QUANTILES:
        k = int(np.sum(draws <= null.ppf(q)))
        p = stats.binomtest(k, n, q).pvalue
        assert p > 1e-4 / (n_checks * len(QUANTILES)), (q, k / n)


@pytest.mark.parametrize("d", [2, 3, 5, 10, 64])
def test_isotropic_matches_a_million_gaussian_directions(d):
    draws = sphere_cosines(d, 1_000_000, seed=100 + d)
    check_against(isotropic_cosine(d), draws, n_checks=5)


def test_isotropic_matches_mc_d768_default_size():
    draws = sphere_cosines(768, 100_000, seed=7)
    check_against(isotropic_cosine(768), draws, n_checks=1)


@pytest.mark.slow
@pytest.mark.parametrize(("d", "n"), [(768, 1_000_000), (4096, 300_000)])
def test_isotropic_matches_mc_high_d(d, n):
    draws = sphere_cosines(d, n, seed=200 + d, batch=5_000)
    check_against(isotropic_cosine(d), draws, n_checks=2)


def test_the_test_detects_a_wrong_dimension():
    """The calibration check has power: d=64 draws against the d=60 law fail it."""
    draws = sphere_cosines(64, 1_000_000, seed=3)
    with pytest.raises(AssertionError):
        check_against(isotropic_cosine(60), draws, n_checks=1)


def test_effective_dimension_null_reduces_to_isotropic_for_identity():
    d = 37
    assert effective_dimension(np.eye(d), kind="cov") == pytest.approx(d, rel=1e-14)
    assert effective_isotropic_cosine(4.2 * np.eye(d), kind="cov").d == pytest.approx(d, rel=1e-14)
    # samples whose sample covariance is exactly ∝ I (orthonormal centred columns)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, d))
    q, _ = np.linalg.qr(x - x.mean(axis=0))
    null = effective_isotropic_cosine(3.0 * q)
    assert null.d == pytest.approx(d, rel=1e-12)
    c = np.linspace(-0.5, 0.5, 11)
    np.testing.assert_allclose(null.cdf(c), isotropic_cosine(d).cdf(c), rtol=1e-10)


@pytest.mark.parametrize("kind", ["cov", "samples"])
def test_covariance_matched_equals_isotropic_when_cov_is_scaled_identity(kind):
    d = 50
    rng = np.random.default_rng(11)
    if kind == "cov":
        x = 2.5 * np.eye(d)
    else:
        z = rng.standard_normal((400, d))
        x, _ = np.linalg.qr(z - z.mean(axis=0))  # centred orthonormal columns: Σ̂ ∝ I exactly
    direction = rng.standard_normal(d)
    null = covariance_matched_cosine(x, direction, kind=kind, n_draws=300_000, rng=12)
    check_against(isotropic_cosine(d), null.samples, n_checks=2)


def test_covariance_matched_gram_path_matches_brute_force():
    """n < d: the Gram-matrix path has the law of cos(Aᵀz, v), with Aᵀz formed explicitly."""
    rng = np.random.default_rng(5)
    n, d = 30, 500
    a = rng.standard_normal((n, d)) * np.linspace(0.1, 3.0, d)
    v = rng.standard_normal(d) + 2.0 * a[0]
    fast = covariance_matched_cosine(a, v, n_draws=100_000, rng=6)
    ac = a - a.mean(axis=0)
    g = rng.standard_normal((100_000, n)) @ ac
    brute = (g @ v) / (np.linalg.norm(g, axis=1) * np.linalg.norm(v))
    assert stats.ks_2samp(fast.samples, brute).pvalue > 1e-4
    # and it is not the isotropic law here (the test can tell)
    assert stats.kstest(fast.samples, isotropic_cosine(d).cdf).pvalue < 1e-6


def _exchangeable_dataset(rng, n_probes: int, d: int, *, paired: bool = True):
    """Witness and aligned activations with no reversion direction.

    Paired: the same probes in both sets (a shared per-probe base), so only swaps within a probe
    are exchangeable. Unpaired: independent rows, so any re-split of the pooled rows is.
    """
    if paired:
        base = rng.standard_normal((n_probes, d)) * 3.0
        witness = base + rng.standard_normal((n_probes, d))
        aligned = base + rng.standard_normal((n_probes, d))
    else:
        witness = rng.standard_normal((n_probes, d)) * 3.0
        aligned = rng.standard_normal((n_probes + 3, d)) * 3.0
    drift = rng.standard_normal(d)
    return witness, aligned, drift


def _rejection_rates(
    rng, paired: bool, n_sim: int, n_perm: int, alphas, *, data_paired: bool | None = None
) -> np.ndarray:
    data_paired = paired if data_paired is None else data_paired
    pvalues = np.empty(n_sim)
    for i in range(n_sim):
        w, h, drift = _exchangeable_dataset(rng, n_probes=12, d=20, paired=data_paired)
        v = w.mean(axis=0) - h.mean(axis=0)
        observed = drift @ v / (np.linalg.norm(drift) * np.linalg.norm(v))
        null = permutation_cosine(w, h, drift, paired=paired, n_permutations=n_perm, rng=rng)
        pvalues[i] = float(null.pvalue(observed))
    return np.array([np.sum(pvalues <= a) for a in alphas])


@pytest.mark.slow
@pytest.mark.parametrize("paired", [True, False])
def test_permutation_null_type_one_error(paired):
    rng = np.random.default_rng(2024 if paired else 2025)
    n_sim, n_perm, alphas = 10_000, 199, (0.01, 0.05, 0.10)
    rejections = _rejection_rates(rng, paired, n_sim, n_perm, alphas)
    # (1 + #)/(1 + B) with alpha (B + 1) an integer: the test is exact, size = alpha
    for k, alpha in zip(rejections, alphas, strict=True):
        assert stats.binomtest(int(k), n_sim, alpha).pvalue > 1e-3 / len(alphas), (alpha, k / n_sim)


@pytest.mark.slow
def test_unpaired_permutation_is_invalid_for_paired_probes():
    """Why `paired=True` exists: pooling rows that share a probe inflates the size."""
    rng = np.random.default_rng(7)
    (k,) = _rejection_rates(rng, False, 10_000, 199, (0.01,), data_paired=True)
    assert stats.binomtest(int(k), 10_000, 0.01, alternative="greater").pvalue < 1e-6


def test_permutation_null_type_one_error_small():
    """Default-suite version: 300 data sets; size within a wide binomial band around 0.05."""
    rng = np.random.default_rng(99)
    n_sim, rejections = 300, 0
    for _ in range(n_sim):
        w, h, drift = _exchangeable_dataset(rng, n_probes=10, d=8, paired=True)
        v = w.mean(axis=0) - h.mean(axis=0)
        observed = drift @ v / (np.linalg.norm(drift) * np.linalg.norm(v))
        null = permutation_cosine(w, h, drift, n_permutations=99, rng=rng)
        rejections += float(null.pvalue(observed)) <= 0.05
    assert stats.binomtest(rejections, n_sim, 0.05).pvalue > 1e-3, rejections / n_sim
