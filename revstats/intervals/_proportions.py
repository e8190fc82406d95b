"""NumPy kernels for binomial proportions and their differences (elementwise, broadcasting).

References
----------
Newcombe RG (1998a). Two-sided confidence intervals for the single proportion: comparison of
seven methods. Stat Med 17:857-872.
Newcombe RG (1998b). Interval estimation for the difference between independent proportions:
comparison of eleven methods. Stat Med 17:873-890.
Brown LD, Cai TT, DasGupta A (2001). Interval estimation for a binomial proportion.
Stat Sci 16:101-133.
Miettinen O, Nurminen M (1985). Comparative analysis of two rates. Stat Med 4:213-226.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from revstats._lazy import scipy_stats as stats

PROPORTION_METHODS = ("wilson", "wilson_cc", "clopper_pearson", "agresti_coull", "jeffreys", "wald")
DIFF_METHODS = ("newcombe", "newcombe_cc", "wald", "miettinen_nurminen")


def validate_counts(k: object, n: object, *, k_name: str = "k", n_name: str = "n"):
    """Return float arrays (k, n) after checking 0 <= k <= n, n >= 1, integer-valued, finite."""
    from revstats._validation import as_real_array

    k_arr = as_real_array(k_name, k)
    n_arr = as_real_array(n_name, n)
    for name, arr in ((k_name, k_arr), (n_name, n_arr)):
        if arr.size == 0:
            raise ValueError(f"`{name}` is empty: pass at least one count")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` contains NaN or infinite values: pass whole-number counts")
        if np.any(arr < 0):
            raise ValueError(f"`{name}` has negative counts: counts must be >= 0")
        if np.any(arr != np.round(arr)):
            raise ValueError(f"`{name}` must hold whole numbers (counts), got fractional values")
    if np.any(n_arr < 1):
        raise ValueError(f"`{n_name}` must be >= 1 (the number of trials)")
    if np.any(k_arr > n_arr):
        raise ValueError(f"`{k_name}` exceeds `{n_name}`: successes cannot outnumber trials")
    return np.broadcast_arrays(k_arr, n_arr)


def _z(confidence: float) -> float:
    return float(special.ndtri(0.5 + confidence / 2.0))


def wilson(k, n, confidence):
    """Wilson (1927) score interval, Newcombe (1998a) method 3."""
    z = _z(confidence)
    p = k / n
    denom = 2.0 * (n + z * z)
    centre = 2.0 * n * p + z * z
    half = z * np.sqrt(z * z + 4.0 * n * p * (1.0 - p))
    # exact limits at the boundary (rounding would otherwise leave 1 - 2e-16 at k = n)
    lo = np.where(k == 0, 0.0, (centre - half) / denom)
    hi = np.where(k == n, 1.0, (centre + half) / denom)
    return lo, hi


def wilson_cc(k, n, confidence):
    """Wilson score interval with continuity correction, Newcombe (1998a) method 4.

    L = (2np + z^2 - 1 - z sqrt(z^2 - 2 - 1/n + 4p(nq + 1))) / (2(n + z^2)), L = 0 if p = 0;
    U = (2np + z^2 + 1 + z sqrt(z^2 + 2 - 1/n + 4p(nq - 1))) / (2(n + z^2)), U = 1 if p = 1.
    """
    z = _z(confidence)
    p = k / n
    q = 1.0 - p
    denom = 2.0 * (n + z * z)
    with np.errstate(invalid="ignore"):
        lo = (2 * n * p + z * z - 1 - z * np.sqrt(np.maximum(z * z - 2 - 1 / n + 4 * p * (n * q + 1), 0))) / denom
        hi = (2 * n * p + z * z + 1 + z * np.sqrt(np.maximum(z * z + 2 - 1 / n + 4 * p * (n * q - 1), 0))) / denom
    lo = np.where(k == 0, 0.0, np.clip(lo, 0.0, 1.0))
    hi = np.where(k == n, 1.0, np.clip(hi, 0.0, 1.0))
    return lo, hi


def clopper_pearson(k, n, confidence):
    """Clopper-Pearson 'exact' interval from beta quantiles (Newcombe 1998a method 5)."""
    a = (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore"):
        lo = np.where(k == 0, 0.0, stats.beta.ppf(a, np.maximum(k, 1e-300), n - k + 1))
        hi = np.where(k == n, 1.0, stats.beta.ppf(1 - a, k + 1, np.maximum(n - k, 1e-300)))
    return lo, hi


def agresti_coull(k, n, confidence):
    """Agresti-Coull (1998): Wald interval around p~ = (k + z^2/2)/(n + z^2), clipped to [0, 1]."""
    z = _z(confidence)
    nt = n + z * z
    pt = (k + z * z / 2.0) / nt
    half = z * np.sqrt(pt * (1.0 - pt) / nt)
    return np.clip(pt - half, 0.0, 1.0), np.clip(pt + half, 0.0, 1.0)


def jeffreys(k, n, confidence):
    """Jeffreys interval: Beta(k + 1/2, n - k + 1/2) quantiles; L = 0 if k = 0, U = 1 if k = n
    (Brown, Cai & DasGupta 2001)."""
    a = (1.0 - confidence) / 2.0
    lo = np.where(k == 0, 0.0, stats.beta.ppf(a, k + 0.5, n - k + 0.5))
    hi = np.where(k == n, 1.0, stats.beta.ppf(1 - a, k + 0.5, n - k + 0.5))
    return lo, hi


def wald(k, n, confidence):
    """Wald interval p +- z sqrt(p(1-p)/n), truncated to [0, 1] (shown for comparison only:
    it under-covers badly at small n; Newcombe 1998a method 1)."""
    z = _z(confidence)
    p = k / n
    half = z * np.sqrt(p * (1.0 - p) / n)
    return np.clip(p - half, 0.0, 1.0), np.clip(p + half, 0.0, 1.0)


SINGLE = {
    "wilson": wilson,
    "wilson_cc": wilson_cc,
    "clopper_pearson": clopper_pearson,
    "agresti_coull": agresti_coull,
    "jeffreys": jeffreys,
    "wald": wald,
}


def newcombe(k1, n1, k2, n2, confidence, *, cc: bool = False):
    """Newcombe (1998b) hybrid score interval for p1 - p2 (method 10; method 11 with cc).

    With (l_i, u_i) the Wilson limits for p_i and d = p1 - p2:
    L = d - sqrt((p1 - l1)^2 + (u2 - p2)^2), U = d + sqrt((u1 - p1)^2 + (p2 - l2)^2).
    """
    single = wilson_cc if cc else wilson
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = single(k1, n1, confidence)
    l2, u2 = single(k2, n2, confidence)
    d = p1 - p2
    lo = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return lo, hi


def wald_diff(k1, n1, k2, n2, confidence):
    """Wald interval for p1 - p2, truncated to [-1, 1] (Newcombe 1998b method 1)."""
    z = _z(confidence)
    p1, p2 = k1 / n1, k2 / n2
    half = z * np.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return np.clip(p1 - p2 - half, -1.0, 1.0), np.clip(p1 - p2 + half, -1.0, 1.0)


def _mn_restricted(p1, p2, n1, n2, delta):
    """Restricted MLE (p1~, p2~) under p1 - p2 = delta (Miettinen & Nurminen 1985, closed form)."""
    theta = n2 / n1
    a = 1.0 + theta
    b = -(1.0 + theta + p1 + theta * p2 + delta * (theta + 2.0))
    c = delta * delta + delta * (2.0 * p1 + theta + 1.0) + p1 + theta * p2
    d = -p1 * delta * (1.0 + delta)
    v = b**3 / (3 * a) ** 3 - b * c / (6 * a * a) + d / (2 * a)
    u = np.sign(v) * np.sqrt(np.maximum(b * b / (3 * a) ** 2 - c / (3 * a), 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(u == 0, 0.0, v / np.where(u == 0, 1.0, u**3))
    w = (np.pi + np.arccos(np.clip(ratio, -1.0, 1.0))) / 3.0
    pt1 = np.clip(2 * u * np.cos(w) - b / (3 * a), 0.0, 1.0)
    pt2 = np.clip(pt1 - delta, 0.0, 1.0)
    return pt1, pt2


def _mn_score(k1, n1, k2, n2, delta):
    p1, p2 = k1 / n1, k2 / n2
    pt1, pt2 = _mn_restricted(p1, p2, n1, n2, delta)
    nn = n1 + n2
    var = (pt1 * (1 - pt1) / n1 + pt2 * (1 - pt2) / n2) * nn / (nn - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (p1 - p2 - delta) ** 2 / var


def miettinen_nurminen(k1, n1, k2, n2, confidence, *, iterations: int = 80):
    """Miettinen-Nurminen (1985) score interval for p1 - p2, by bisection on the score
    statistic chi2(delta) = (p1 - p2 - delta)^2 / V~(delta) (V~ with the N/(N-1) factor)."""
    crit = stats.chi2.ppf(confidence, 1)
    d = k1 / n1 - k2 / n2

    def bisect(inside_end, outside_end):
        # the score statistic is 0 at delta = d and grows toward +-1; find its crit crossing
        for _ in range(iterations):
            mid = 0.5 * (inside_end + outside_end)
            inside = ~(_mn_score(k1, n1, k2, n2, mid) > crit)
            inside_end = np.where(inside, mid, inside_end)
            outside_end = np.where(inside, outside_end, mid)
        return 0.5 * (inside_end + outside_end)

    lower = bisect(d.copy(), np.full_like(d, -1.0))
    upper = bisect(d.copy(), np.full_like(d, 1.0))
    return lower, upper


def diff_interval(method: str, k1, n1, k2, n2, confidence):
    if method == "newcombe":
        return newcombe(k1, n1, k2, n2, confidence)
    if method == "newcombe_cc":
        return newcombe(k1, n1, k2, n2, confidence, cc=True)
    if method == "wald":
        return wald_diff(k1, n1, k2, n2, confidence)
    return miettinen_nurminen(k1, n1, k2, n2, confidence)
