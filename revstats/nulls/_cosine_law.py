"""The exact law of cos(u, v) for u uniform on the sphere S^(d-1): accurate tails in any d.

With a = (d - 1)/2 the cosine C satisfies (C + 1)/2 ~ Beta(a, a), so

    P(C >= c) = I_x(a, a),  x = (1 - c)/2,        density  f(c) = k_d (1 - c^2)^(a - 1),
    k_d = Gamma(a + 1/2) / (sqrt(pi) Gamma(a)).

`scipy.special.betainc` is accurate in the bulk but underflows to 0 below ~1e-308 (at d = 10^5 that
happens already at c = 0.12), and its inverse loses relative accuracy there. So the upper tail is
computed in log space from the continued fraction of I_x (DLMF 8.17.22, evaluated by modified
Lentz), whose prefactor for equal parameters is x^a (1-x)^a / (a B(a, a)) = k_d (1 - c^2)^a / (2a);
quantiles come from safeguarded Newton steps on log P(C >= c), where the log of the survival
function is concave for d >= 3, so Newton converges monotonically from the right.
Lower tails follow from symmetry, P(C <= c) = P(C >= -c), never from 1 - P(C > c).
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["log_norm_const", "log_pdf", "log_sf", "isf"]

_TINY = 1e-300
_EPS = 1e-16
# |c| * sqrt(d) beyond which the continued fraction replaces betainc (it converges in a few dozen
# terms there, and betainc is accurate to ~1e-15 inside it).
_CF_Z = 2.0


def log_norm_const(a: float) -> float:
    """log k_d = log Gamma(a + 1/2) - log Gamma(a) - log(pi)/2 without cancellation for large a."""
    if a < 20.0:
        return float(special.gammaln(a + 0.5) - special.gammaln(a) - 0.5 * np.log(np.pi))
    # Stirling for each log-gamma; the leading terms combine exactly as
    # a*log1p(1/(2a)) + log(a)/2 - 1/2, the Bernoulli series are differenced term by term.
    def series(z: float) -> float:
        z2 = z * z
        return (1.0 / 12.0 - (1.0 / 360.0 - (1.0 / 1260.0 - 1.0 / (1680.0 * z2)) / z2) / z2) / z

    lead = a * np.log1p(0.5 / a) + 0.5 * np.log(a) - 0.5
    return float(lead + (series(a + 0.5) - series(a)) - 0.5 * np.log(np.pi))


def log_pdf(c: np.ndarray, a: float, log_k: float) -> np.ndarray:
    """log f(c), -inf outside [-1, 1]; the d = 3 (a = 1) law is uniform, including the endpoints."""
    c = np.asarray(c, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log1mc2 = np.log1p(-c) + np.log1p(c)
        out = log_k + (a - 1.0) * log1mc2 if a != 1.0 else np.full_like(c, log_k)
    out = np.where(np.abs(c) > 1.0, -np.inf, out)
    return np.where(np.isnan(c), np.nan, out)


def _log_cf_upper(c: np.ndarray, a: float, log_k: float) -> np.ndarray:
    """log P(C >= c) for 0 < c < 1 from the continued fraction of I_x(a, a), x = (1 - c)/2."""
    x = 0.5 * (1.0 - c)
    b = a
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    cc = np.ones_like(x)
    dd = 1.0 - qab * x / qap
    dd = np.where(np.abs(dd) < _TINY, _TINY, dd)
    dd = 1.0 / dd
    h = dd.copy()
    active = np.ones(x.shape, dtype=bool)
    for m in range(1, 100_000):
        m2 = 2.0 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            dd = 1.0 + aa * dd
            dd = np.where(np.abs(dd) < _TINY, _TINY, dd)
            cc = 1.0 + aa / cc
            cc = np.where(np.abs(cc) < _TINY, _TINY, cc)
            dd = 1.0 / dd
            delta = dd * cc
            h = np.where(active, h * delta, h)
        active &= np.abs(delta - 1.0) > _EPS
        if not active.any():
            break
    log_pre = log_k + a * (np.log1p(-c) + np.log1p(c)) - np.log(2.0 * a)
    return log_pre + np.log(h)


def log_sf(c: np.ndarray, a: float, log_k: float) -> np.ndarray:
    """log P(C >= c), accurate to ~1e-15 relative in P, never underflowing."""
    c = np.asarray(c, dtype=float)
    out = np.full(c.shape, np.nan)
    d = 2.0 * a + 1.0
    cut = min(_CF_Z / np.sqrt(d), 0.5)
    finite = ~np.isnan(c)
    hi = finite & (c >= cut) & (c < 1.0)
    lo = finite & (c <= -cut) & (c > -1.0)
    mid = finite & (np.abs(c) < cut)
    if hi.any():
        out[hi] = _log_cf_upper(c[hi], a, log_k)
    if lo.any():
        out[lo] = np.log1p(-np.exp(_log_cf_upper(-c[lo], a, log_k)))
    if mid.any():
        out[mid] = np.log(special.betainc(a, a, 0.5 * (1.0 - c[mid])))
    out[finite & (c >= 1.0)] = -np.inf
    out[finite & (c <= -1.0)] = 0.0
    return out


def isf(p: np.ndarray, a: float, log_k: float) -> np.ndarray:
    """The c with P(C >= c) = p, for p in [0, 1]; upper-tail accurate down to p ~ 1e-308."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = (p >= 0.0) & (p <= 1.0)
    upper = ok & (p <= 0.5)
    lower = ok & (p > 0.5)
    if upper.any():
        out[upper] = _isf_upper(p[upper], a, log_k)
    if lower.any():
        # For p > 1/2, 1 - p is exact (Sterbenz), and isf(p) = -isf(1 - p) by symmetry.
        out[lower] = -_isf_upper(1.0 - p[lower], a, log_k)
    return out


def _isf_upper(p: np.ndarray, a: float, log_k: float) -> np.ndarray:
    """isf for 0 <= p <= 1/2 (answers in [0, 1])."""
    d = 2.0 * a + 1.0
    out = np.empty(p.shape)
    zero = p == 0.0
    half = p == 0.5
    out[zero] = 1.0
    out[half] = 0.0
    rest = ~(zero | half)
    if not rest.any():
        return out
    pr = p[rest]
    if d == 2.0:  # arcsine law: P(C >= c) = arccos(c)/pi
        out[rest] = np.cos(np.pi * pr)
        return out
    if d == 3.0:  # uniform law: P(C >= c) = (1 - c)/2
        out[rest] = 1.0 - 2.0 * pr
        return out
    with np.errstate(all="ignore"):
        c = 1.0 - 2.0 * special.betaincinv(a, a, pr)
    # betaincinv underflows in the deep tail; start there from the log-space tail bound instead.
    bad = ~np.isfinite(c) | (c >= 1.0) | (c <= 0.0)
    if bad.any():
        c[bad] = np.minimum(np.sqrt(-2.0 * np.log(pr[bad]) / d), 1.0 - 1e-3)
    target = np.log(pr)
    active = np.ones(c.shape, dtype=bool)
    last = np.full(c.shape, np.inf)
    for _ in range(60):
        ca = c[active]
        ls = log_sf(ca, a, log_k)
        lp = log_pdf(ca, a, log_k)
        step = (ls - target[active]) * np.exp(ls - lp)  # Newton on log sf: (log S - log p)/(f/S)
        new = ca + step
        new = np.where(new >= 1.0, 0.5 * (ca + 1.0), new)
        new = np.where(new <= 0.0, 0.5 * ca, new)
        size = np.abs(new - ca)
        # converged: the step is at rounding level (relative, with a floor at 1e-16 of the spread
        # 1/sqrt(d) for c near 0), or it stopped shrinking, i.e. it is the noise of log sf itself
        # (~1e-13 relative for betainc at d ~ 1e6)
        converged = (size <= 2e-15 * np.abs(ca) + 1e-16 / np.sqrt(d)) | (
            (size > 0.5 * last[active]) & (size <= 1e-11 * np.abs(ca))
        )
        c[active] = new
        idx = np.flatnonzero(active)
        last[idx] = size
        active[idx[converged]] = False
        if not active.any():
            break
    out[rest] = c
    return out
