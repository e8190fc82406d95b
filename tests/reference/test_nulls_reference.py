"""isotropic_cosine against an independent 50-digit computation (mpmath).

Reference for P(C >= c), C = cos on S^(d-1), a = (d-1)/2, x = (1-c)/2 <= 1/2 (DLMF 8.17.8):

    I_x(a, a) = x^a (1-x)^a / (a B(a, a)) * 2F1(2a, 1; a+1; x)

evaluated with mpmath at 50 digits (its own hypergeometric series; no scipy, no continued
fraction), checked against mpmath.betainc(regularized=True) where that converges (d <= 4096)
and against the closed forms d=2 (arccos(c)/pi) and d=3 ((1-c)/2). Quantiles are mpmath
`findroot` solutions of the same reference.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

from revstats.nulls import isotropic_cosine

mp.mp.dps = 50

DIMS = [2, 3, 4, 5, 10, 64, 768, 4096, 10**5]
COSINES = [-0.97, -0.5, -0.05, -0.003, 0.0, 0.001, 0.004, 0.02, 0.07, 0.3, 0.6, 0.95, 0.9999]
TAIL_PROBS = [1e-300, 1e-100, 1e-12, 1e-6, 0.01, 0.3, 0.5, 0.7, 0.99, 1 - 1e-6, 1 - 1e-12]


def ref_upper(d: int, x: mp.mpf) -> mp.mpf:
    """I_x(a, a) = P(C >= 1 - 2x) for 0 <= x <= 1/2 (DLMF 8.17.8)."""
    a = (mp.mpf(d) - 1) / 2
    if x == 0:
        return mp.mpf(0)
    logpre = a * mp.log(x) + a * mp.log1p(-x) - mp.log(a) - (2 * mp.loggamma(a) - mp.loggamma(2 * a))
    return mp.exp(logpre) * mp.hyp2f1(2 * a, 1, a + 1, x, maxterms=10**7)


def ref_sf(d: int, c: float) -> mp.mpf:
    c_ = mp.mpf(c)
    if c_ < 0:
        return 1 - ref_sf(d, -c)
    return ref_upper(d, (1 - c_) / 2)


def ref_logpdf(d: int, c: float) -> mp.mpf:
    d_, c_ = mp.mpf(d), mp.mpf(c)
    logk = mp.loggamma(d_ / 2) - mp.loggamma((d_ - 1) / 2) - mp.log(mp.pi) / 2
    return logk + (d_ - 3) / 2 * mp.log(1 - c_ * c_)


def ref_isf(d: int, p: float) -> mp.mpf:
    """c with P(C >= c) = p <= 1/2, solved for t = log((1 - c)/2) so tails near c = 1 resolve."""
    p_ = mp.mpf(p)
    a = (mp.mpf(d) - 1) / 2
    c0 = float(isotropic_cosine(d).isf(p))
    if c0 < 1 - 1e-8:
        t0 = mp.log((1 - mp.mpf(c0)) / 2)
    else:  # deep tail: I_x(a, a) ~ x^a / (a B(a, a)), so x0 = (p a B(a, a))^(1/a)
        t0 = (mp.log(p_) + mp.log(a) + 2 * mp.loggamma(a) - mp.loggamma(2 * a)) / a
    target = mp.log(p_)
    t = mp.findroot(lambda t: mp.log(ref_upper(d, mp.exp(t))) - target, t0, tol=1e-40)
    return 1 - 2 * mp.exp(t)


def test_reference_is_independent_and_right():
    # the hypergeometric reference agrees with mpmath.betainc and with closed forms
    for d in (2, 10, 768, 4096):
        a = mp.mpf(d - 1) / 2
        for c in (0.01, 0.3, 0.9):
            r = ref_sf(d, c)
            b = mp.betainc(a, a, 0, (1 - mp.mpf(c)) / 2, regularized=True)
            assert abs(r - b) <= mp.mpf(10) ** -40 * b
    for c in (0.2, 0.7, 0.99):
        assert abs(ref_sf(2, c) - mp.acos(mp.mpf(c)) / mp.pi) < mp.mpf(10) ** -40
        assert abs(ref_sf(3, c) - (1 - mp.mpf(c)) / 2) < mp.mpf(10) ** -40


@pytest.mark.parametrize("d", DIMS)
def test_sf_cdf_logsf_match_reference(d):
    null = isotropic_cosine(d)
    cs = np.array(COSINES)
    sf, cdf, logsf = null.sf(cs), null.cdf(cs), null.logsf(cs)
    for c, s, f, ls in zip(cs, sf, cdf, logsf, strict=True):
        r_sf = ref_sf(d, c)
        r_cdf = ref_sf(d, -c)
        # log sf: relative 1e-13 of |log P| (this is what fixes P's relative error in any tail)
        if r_sf > 0:
            assert abs(ls - float(mp.log(r_sf))) <= 1e-12 * max(1.0, abs(float(mp.log(r_sf)))), c
        for got, ref in ((s, r_sf), (f, r_cdf)):
            if ref < mp.mpf("1e-300"):  # below doubles: the value must underflow to 0 only there
                assert got == 0.0 or abs(got - float(ref)) <= 1e-10 * float(ref)
                continue
            assert abs(mp.mpf(got) - ref) <= mp.mpf("1e-10") * ref, (d, c, got, ref)


@pytest.mark.parametrize("d", DIMS)
def test_deep_tail_relative_accuracy(d):
    """sf keeps relative accuracy 1e-10 down to ~1e-290 (where betainc underflows for big d)."""
    null = isotropic_cosine(d)
    for p in (1e-20, 1e-80, 1e-290):
        c = float(null.isf(p))
        if c >= 1.0:
            continue  # d=2, 3: these tails sit closer to 1 than a double can resolve
        ref = ref_sf(d, c)
        assert abs(mp.mpf(float(null.sf(c))) - ref) <= mp.mpf("1e-10") * ref, (d, p)
        assert abs(mp.mpf(float(null.cdf(-c))) - ref) <= mp.mpf("1e-10") * ref, (d, p)


@pytest.mark.parametrize("d", DIMS)
def test_quantiles_match_reference(d):
    null = isotropic_cosine(d)
    ps = np.array(TAIL_PROBS)
    isf = null.isf(ps)
    ppf = null.ppf(ps)
    for p, c_isf, c_ppf in zip(ps, isf, ppf, strict=True):
        ref = ref_isf(d, p) if p <= 0.5 else -ref_isf(d, 1.0 - p)  # 1 - p exact for p > 1/2
        tol = mp.mpf("1e-10") * max(abs(ref), mp.mpf("1e-300")) + mp.mpf("1e-16")
        assert abs(mp.mpf(c_isf) - ref) <= tol, (d, p, c_isf, ref)
        assert abs(mp.mpf(c_ppf) + ref) <= tol, (d, p, c_ppf, ref)  # ppf(q) = -isf(q)


@pytest.mark.parametrize("d", DIMS)
def test_round_trip_in_tails(d):
    """isf then sf returns p to 1e-10 relative wherever the quantile is resolvable (< 1)."""
    null = isotropic_cosine(d)
    for p in (1e-12, 1e-6, 0.01, 0.3):
        c = float(null.isf(p))
        if c < 1.0 - 1e-6:
            assert float(null.sf(c)) == pytest.approx(p, rel=1e-10)
        q = float(null.ppf(p))
        if q > -1.0 + 1e-6:
            assert float(null.cdf(q)) == pytest.approx(p, rel=1e-10)


@pytest.mark.parametrize("d", [2, 4, 10, 768, 10**5])
def test_pdf_matches_reference(d):
    null = isotropic_cosine(d)
    for c in (-0.6, 0.0, 0.01, 0.2, 0.8):
        ref = ref_logpdf(d, c)
        assert float(null.logpdf(c)) == pytest.approx(float(ref), rel=1e-12, abs=1e-12)
        if ref > -700:
            assert float(null.pdf(c)) == pytest.approx(float(mp.exp(ref)), rel=1e-10)


def test_closed_forms_d2_d3():
    c = np.linspace(-0.999, 0.999, 41)
    np.testing.assert_allclose(isotropic_cosine(2).cdf(c), 1 - np.arccos(c) / np.pi, rtol=1e-13)
    np.testing.assert_allclose(isotropic_cosine(3).sf(c), (1 - c) / 2, rtol=1e-13)
    np.testing.assert_allclose(isotropic_cosine(3).pdf(c), 0.5, rtol=1e-14)
    np.testing.assert_allclose(
        isotropic_cosine(2).pdf(c), 1 / (np.pi * np.sqrt(1 - c * c)), rtol=1e-12
    )


def test_huge_dimension_works():
    null = isotropic_cosine(10**6)
    p99 = float(null.quantile(0.99))
    # Gaussian limit: sqrt(d) C -> N(0, 1); at d = 1e6 the p99 is 2.3263.../1000 to ~1e-6
    assert p99 == pytest.approx(2.3263478740408408 / 1000, rel=1e-5)
    assert float(null.var()) == 1e-6
    assert float(null.logsf(0.9)) < -1e5 and math.isfinite(float(null.logsf(0.9)))
    assert float(null.sf(p99)) == pytest.approx(0.01, rel=1e-10)
