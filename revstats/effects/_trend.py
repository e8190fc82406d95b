"""Jonckheere-Terpstra test for an ordered alternative across groups (blocked < control < push).

J = sum over ordered group pairs i < j of #{(x, y): x in group i, y in group j, x < y}
(+ 1/2 per tie). Exact null distribution without ties for small samples: the generating
function of J is the q-multinomial coefficient [N; n_1, ..., n_k]_q, computed as a product of
Gaussian binomials. Otherwise the normal approximation with the tie-corrected variance of
Hollander & Wolfe (1999, eq. 6.19).

References
----------
Jonckheere AR (1954). A distribution-free k-sample test against ordered alternatives.
Biometrika 41:133-145.
Hollander M, Wolfe DA (1999). Nonparametric Statistical Methods, 2nd ed., sec. 6.2. Wiley.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from revstats._lazy import scipy_stats as stats
from revstats._validation import as_real_array
from revstats.intervals._results import Effect

EXACT_MAX_N = 100


def _statistic(groups: list[np.ndarray]) -> float:
    j = 0.0
    for i in range(len(groups)):
        for k in range(i + 1, len(groups)):
            diff = groups[k][None, :] - groups[i][:, None]
            j += (diff > 0).sum() + 0.5 * (diff == 0).sum()
    return float(j)


def _gaussian_binomial(n: int, k: int) -> np.ndarray:
    """Coefficients of [n choose k]_q = prod_{i=1..k} (1 - q^(n-k+i)) / (1 - q^i), as floats."""
    deg = k * (n - k)
    poly = np.zeros(deg + 1)
    poly[0] = 1.0
    for i in range(1, k + 1):
        m = n - k + i
        # multiply by (1 - q^m), then divide by (1 - q^i) (a running sum with lag i)
        shifted = np.zeros_like(poly)
        shifted[m:] = poly[: deg + 1 - m] if m <= deg else 0.0
        poly = poly - shifted
        for t in range(i, deg + 1):
            poly[t] += poly[t - i]
    return np.round(poly)


def null_distribution(sizes: list[int]) -> np.ndarray:
    """Exact P(J = j), j = 0..max, under H0 with no ties."""
    dist = np.array([1.0])
    remaining = int(sum(sizes))
    for size in sizes[:-1]:
        dist = np.convolve(dist, _gaussian_binomial(remaining, size))
        remaining -= size
    return dist / dist.sum()


def _validate_jt(groups: tuple, alternative: str, method: str) -> list[np.ndarray]:
    if alternative not in ("increasing", "decreasing", "two-sided"):
        raise ValueError(
            f"`alternative` must be 'increasing', 'decreasing' or 'two-sided', got {alternative!r}"
        )
    if method not in ("auto", "exact", "normal"):
        raise ValueError(f"`method` must be 'auto', 'exact' or 'normal', got {method!r}")
    if len(groups) < 2:
        raise ValueError("pass at least 2 groups, in the hypothesised order (e.g. blocked, control, push)")
    out = []
    for i, g in enumerate(groups):
        arr = as_real_array(f"groups[{i}]", g).ravel()
        if arr.size == 0:
            raise ValueError(f"group {i} is empty: every group needs at least one value")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"group {i} contains NaN or infinite values")
        out.append(arr)
    return out


def jonckheere_terpstra(
    *groups: Any,
    alternative: Literal["increasing", "decreasing", "two-sided"] = "increasing",
    method: Literal["auto", "exact", "normal"] = "auto",
) -> Effect:
    """Jonckheere-Terpstra trend test; groups are given in the hypothesised order.

    ``alternative="increasing"`` tests H1: group 1 <= group 2 <= ... (stochastically, at least
    one strict). ``method="auto"`` is exact when there are no ties and N <= 100, else normal.
    The `Effect` has ``statistic = J``, ``pvalue``, and as estimate Kendall-type trend
    tau = (2J - M) / M with M = sum_{i<j} n_i n_j (the share of concordant minus discordant
    cross-group pairs, in [-1, 1]); ``low``/``high`` are NaN (no interval).
    """
    data = _validate_jt(groups, alternative, method)
    sizes = [g.size for g in data]
    n_total = sum(sizes)
    j = _statistic(data)
    pairs = (n_total**2 - sum(s * s for s in sizes)) / 2.0
    mean = pairs / 2.0
    pooled = np.concatenate(data)
    _, tie_counts = np.unique(pooled, return_counts=True)
    has_ties = bool(np.any(tie_counts > 1))
    use_exact = method == "exact" or (method == "auto" and not has_ties and n_total <= EXACT_MAX_N)
    if use_exact and has_ties:
        raise ValueError("`method='exact'` needs data without ties; use 'normal'")
    if use_exact:
        dist = null_distribution(sizes)
        jj = int(round(j))
        upper = float(dist[jj:].sum())
        lower = float(dist[: jj + 1].sum())
        z = np.nan
        used = "exact"
    else:
        t = tie_counts.astype(float)
        nn = np.asarray(sizes, dtype=float)
        big_n = float(n_total)
        var = (
            (big_n**2 * (2 * big_n + 3) - (nn**2 * (2 * nn + 3)).sum() - (t**2 * (2 * t + 3)).sum()) / 72.0
            + (nn * (nn - 1) * (nn - 2)).sum() * (t * (t - 1) * (t - 2)).sum()
            / (36.0 * big_n * (big_n - 1) * (big_n - 2))
            + (nn * (nn - 1)).sum() * (t * (t - 1)).sum() / (8.0 * big_n * (big_n - 1))
        )
        z = (j - mean) / np.sqrt(var) if var > 0 else np.nan
        upper = float(stats.norm.sf(z))
        lower = float(stats.norm.cdf(z))
        used = "normal (tie-corrected)" if has_ties else "normal"
    if alternative == "increasing":
        p = upper
    elif alternative == "decreasing":
        p = lower
    else:
        p = min(1.0, 2 * min(upper, lower))
    tau = (2 * j - pairs) / pairs
    return Effect(
        estimate=float(tau), low=np.nan, high=np.nan, confidence=np.nan,
        method=f"jonckheere_terpstra, {used}, {alternative}", statistic=j, pvalue=p,
        n=tuple(sizes), extra={"z": float(z), "expected_j": mean},
    )
