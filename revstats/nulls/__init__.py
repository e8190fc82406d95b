r"""Null distributions for alignment cosines a_t = cos(Δ_t, v_rev), and exceedance over many pairs.

Four nulls (see docs/nulls.md for what each assumes and when to use which):

- :func:`isotropic_cosine` — exact law of the cosine between a fixed vector and a direction
  uniform on S^(d-1): (C + 1)/2 ~ Beta((d-1)/2, (d-1)/2).
- :func:`effective_isotropic_cosine` — the same law with d replaced by the effective dimension
  d_eff = (tr Σ)^2 / tr(Σ^2) of a covariance (:func:`effective_dimension`).
- :func:`covariance_matched_cosine` — Monte Carlo: directions x ~ N(0, Σ) with Σ the activations'
  covariance, cosine with a fixed direction.
- :func:`permutation_cosine` and :func:`history_pairs_cosine` — matched empirical nulls: v_rev
  rebuilt from probe-label permutations, or replaced by directions from other history pairs.

:func:`exceedance` counts run-step pairs above a null quantile and adjusts their p-values with
:func:`adjust_pvalues` (Holm, Bonferroni, Benjamini–Hochberg, Benjamini–Yekutieli).
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xarray as xr

from revstats._validation import (
    RNGLike,
    as_finite_array,
    as_real_array,
    check_choice,
    normalize_rng,
    pow2_scale,
)
from revstats.errors import DegenerateDataWarning
from revstats.nulls._types import _TIE_RTOL, Alternative, CosineNull, EmpiricalNull

__all__ = [
    "CosineNull",
    "EmpiricalNull",
    "Exceedance",
    "adjust_pvalues",
    "adjusted_p_floor",
    "covariance_matched_cosine",
    "effective_dimension",
    "effective_isotropic_cosine",
    "exceedance",
    "history_pairs_cosine",
    "isotropic_cosine",
    "monte_carlo_draws",
    "permutation_cosine",
]

EFFECTIVE_DIMENSION_NOTE = (
    "approximate: the Beta law with d_eff matches only the variance of the cosine; it is "
    "anti-conservative when v_rev lies in high-variance directions (type-I error 0.17 at "
    "nominal 0.05 in docs/calibration.md) and very conservative when it does not; use the "
    "covariance-matched null for tests"
)

Kind = Literal["samples", "cov"]
AdjustMethod = Literal["holm", "bonferroni", "bh", "by"]
_ADJUST = {"holm": "holm", "bonferroni": "bonferroni", "bh": "fdr_bh", "by": "fdr_by"}
_ALTERNATIVES = ("greater", "less", "two-sided")


# ----------------------------------------------------------------------------------------------
# isotropic and effective-dimension nulls
# ----------------------------------------------------------------------------------------------


def _validate_isotropic(d: Any) -> int:
    if isinstance(d, bool) or not isinstance(d, numbers.Integral):
        if not isinstance(d, bool) and isinstance(d, numbers.Real) and float(d).is_integer():
            d = int(float(d))
        else:
            raise TypeError(
                f"`d` must be an integer dimension >= 2, got {d!r}; for a non-integer effective "
                "dimension use `effective_isotropic_cosine`"
            )
    if int(d) < 2:
        raise ValueError(f"`d` must be >= 2 (the cosine is only random on S^(d-1), d >= 2), got {d}")
    return int(d)


def isotropic_cosine(d: int) -> CosineNull:
    r"""Exact null law of cos(u, v) for u uniform on the unit sphere S^(d-1), v fixed.

    .. math:: \frac{C + 1}{2} \sim \mathrm{Beta}\left(\tfrac{d-1}{2}, \tfrac{d-1}{2}\right),
              \qquad f(c) = \frac{\Gamma(d/2)}{\sqrt{\pi}\,\Gamma((d-1)/2)} (1 - c^2)^{(d-3)/2}.

    Parameters
    ----------
    d : int
        Ambient dimension, ``d >= 2`` (``d = 2``: arcsine law; ``d = 3``: uniform on [-1, 1]).

    Returns
    -------
    CosineNull
        Frozen distribution with ``.cdf .sf .ppf .isf .quantile .pdf .logsf .pvalue .mean .var
        .rvs``; tails keep full relative accuracy (``sf`` is never computed as ``1 - cdf``).

    References
    ----------
    Muirhead, R. J. (1982). *Aspects of Multivariate Statistical Theory*, Thm 1.5.7 (the
    marginal of a uniform point on the sphere). DLMF 8.17 for the incomplete beta function.

    Examples
    --------
    >>> null = isotropic_cosine(4096)
    >>> round(float(null.quantile(0.99)), 4)
    0.0363
    """
    return CosineNull(float(_validate_isotropic(d)), method="isotropic")


def _validate_cov_input(x: Any, kind: str, name: str) -> np.ndarray:
    check_choice("kind", kind, ("samples", "cov"))
    arr = as_finite_array(name, x)
    if arr.ndim != 2:
        what = "(n_samples, n_features)" if kind == "samples" else "(d, d)"
        raise ValueError(f"`{name}` must be 2-D {what}, got shape {arr.shape}")
    if kind == "samples" and arr.shape[0] < 2:
        raise ValueError(f"`{name}` needs at least 2 samples (rows) to estimate a covariance")
    if kind == "cov":
        if arr.shape[0] != arr.shape[1]:
            raise ValueError(f"`{name}` must be a square covariance matrix, got shape {arr.shape}")
        scale = max(float(np.max(np.abs(arr))), np.finfo(float).tiny)
        if not np.allclose(arr, arr.T, rtol=1e-8, atol=1e-12 * scale):
            raise ValueError(f"`{name}` must be symmetric; pass (cov + cov.T) / 2 if it is rounding")
    # every use is scale-free (d_eff, the spectrum's shape): divided by a power of two near
    # max|x| (exact), so products neither overflow nor underflow for values ~1e200 or ~1e-200
    return arr / pow2_scale(arr, axis=None) if arr.size else arr


def _spectrum(arr: np.ndarray, kind: str, center: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """Nonzero eigenvalues λ of Σ and a matrix R with R @ v = (sqrt(λ_i) e_iᵀ v)_i for any v.

    From samples A (n × d, centred): the nonzero eigenpairs of AᵀA come from the n × n Gram
    matrix AAᵀ = U Λ Uᵀ when n <= d (e_i = Aᵀ u_i / sqrt(λ_i), so sqrt(λ_i) e_iᵀ v = u_iᵀ A v),
    so Σ (d × d) is never formed. Overall scale is irrelevant to every use here.
    """
    if kind == "cov":
        lam, vec = np.linalg.eigh(arr)
        tol = 1e-10 * max(float(lam.max()), 0.0)
        if lam.min() < -max(tol, 1e-12 * abs(float(lam.max()))):
            raise ValueError(
                "`cov` is not positive semi-definite (negative eigenvalue "
                f"{lam.min():.3g}); pass a covariance matrix"
            )
        keep = lam > tol
        lam, vec = lam[keep], vec[:, keep]
        return lam, np.sqrt(lam)[:, None] * vec.T, "cov"
    a = arr - arr.mean(axis=0) if center else arr
    n, d = a.shape
    if n <= d:
        lam, u = np.linalg.eigh(a @ a.T)
        keep = lam > 1e-10 * max(float(lam.max()), 0.0)
        return lam[keep], u[:, keep].T @ a, "gram"
    lam, vec = np.linalg.eigh(a.T @ a)
    keep = lam > 1e-10 * max(float(lam.max()), 0.0)
    lam, vec = lam[keep], vec[:, keep]
    return lam, np.sqrt(lam)[:, None] * vec.T, "covariance"


def _validate_effective(x: Any, kind: str, name: str) -> np.ndarray:
    arr = _validate_cov_input(x, kind, name)
    if not np.any(arr != (arr.mean(axis=0) if kind == "samples" else 0.0)):
        raise ValueError(f"`{name}` has zero variance: the effective dimension is undefined")
    return arr


def effective_dimension(x: Any, *, kind: Kind = "samples", center: bool = True) -> float:
    r"""Effective dimension d_eff = (tr Σ)^2 / tr(Σ^2) (participation ratio of the spectrum).

    Equal to d for Σ ∝ I_d and to 1 for a rank-one Σ. From samples A (n × d) it is computed from
    whichever of AAᵀ (n × n) or AᵀA (d × d) is smaller, since tr Σ = ‖A‖_F^2 / (n-1) and
    tr Σ^2 = ‖AAᵀ‖_F^2 / (n-1)^2: Σ is never formed when n < d.

    Parameters
    ----------
    x : array_like
        ``(n_samples, n_features)`` samples (``kind="samples"``, e.g. drifts of many runs or
        probe activations) or a ``(d, d)`` covariance (``kind="cov"``).
    kind : {"samples", "cov"}
    center : bool
        Subtract the sample mean first (samples only).

    Returns
    -------
    float
        d_eff in [1, rank Σ]. From n samples it is a plug-in estimate, biased low when n is not
        much larger than d_eff (it cannot exceed n - 1).

    References
    ----------
    Bretherton, C. S. et al. (1999). The effective number of spatial degrees of freedom of a
    time-varying field. *J. Climate* 12, 1990–2009 (eq. 5).
    """
    arr = _validate_effective(x, kind, "x")
    if kind == "cov":
        return float(np.trace(arr) ** 2 / np.sum(arr * arr))
    a = arr - arr.mean(axis=0) if center else arr
    gram = a @ a.T if a.shape[0] <= a.shape[1] else a.T @ a
    del a
    tr = np.trace(gram)
    np.multiply(gram, gram, out=gram)  # squared in place: no second d x d (or n x n) array
    return float(tr**2 / np.sum(gram))


def effective_isotropic_cosine(
    x: Any, *, kind: Kind = "samples", center: bool = True
) -> CosineNull:
    r"""Isotropic cosine law with d replaced by d_eff = (tr Σ)^2 / tr(Σ^2).

    (C + 1)/2 ~ Beta((d_eff - 1)/2, (d_eff - 1)/2); d_eff need not be an integer. It is the
    moment-matched law of the cosine between two independent vectors x, y ~ N(0, Σ): by
    E[(xᵀy)^2] = tr Σ^2 and E[‖x‖^2 ‖y‖^2] ≈ (tr Σ)^2, E[C^2] ≈ 1/d_eff, the variance of the
    isotropic law in dimension d_eff. It is exact for Σ ∝ I and an approximation otherwise
    (heavier or lighter tails than the true law for a strongly anisotropic spectrum; use
    :func:`covariance_matched_cosine` when the tail matters).

    Parameters
    ----------
    x, kind, center
        As in :func:`effective_dimension`.

    Returns
    -------
    CosineNull
        With ``d = d_eff`` and ``attrs["d_eff"]``.
    """
    d_eff = effective_dimension(x, kind=kind, center=center)
    if d_eff <= 1.0 + 1e-9:
        raise ValueError(
            "`x` has a rank-one covariance (d_eff = 1): the cosine law is degenerate (±1); "
            "use `covariance_matched_cosine` instead"
        )
    return CosineNull(d_eff, method="effective_isotropic",
                      attrs={"d_eff": d_eff, "kind": kind, "approximate": True,
                             "note": EFFECTIVE_DIMENSION_NOTE})


# ----------------------------------------------------------------------------------------------
# Monte Carlo and matched empirical nulls
# ----------------------------------------------------------------------------------------------


def _check_count(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return int(value)


def _check_directions(name: str, v: Any, d: int) -> np.ndarray:
    arr = as_finite_array(name, v)
    if arr.ndim == 0 or arr.shape[-1] != d:
        raise ValueError(
            f"`{name}` must have its last axis of length {d} (the feature dimension), got shape "
            f"{arr.shape}"
        )
    if arr.shape[-1] == 0 or np.any(np.abs(arr).max(axis=-1) == 0):
        raise ValueError(f"`{name}` contains a zero vector: its cosine is undefined")
    # cosines do not depend on a vector's length: each divided by a power of two near its
    # largest entry (exact), so norms neither overflow (~1e154) nor underflow to 0 (~1e-154)
    return arr / pow2_scale(arr, axis=-1)


def _validate_covariance_matched(
    x: Any, direction: Any, kind: str, n_draws: Any, batch_size: Any
) -> tuple[np.ndarray, np.ndarray, int, int]:
    arr = _validate_effective(x, kind, "x")
    v = _check_directions("direction", direction, arr.shape[1])
    return arr, v, _check_count("n_draws", n_draws), _check_count("batch_size", batch_size)


def covariance_matched_cosine(
    x: Any,
    direction: Any,
    *,
    kind: Kind = "samples",
    n_draws: int = 100_000,
    batch_size: int = 8192,
    center: bool = True,
    rng: RNGLike = None,
) -> EmpiricalNull:
    r"""Monte Carlo null of cos(g, v) for g ~ N(0, Σ), Σ the activations' covariance, v fixed.

    Work happens in Σ's eigenbasis: with nonzero eigenpairs (λ_i, e_i) and z ~ N(0, I_r),
    g = Σ_i sqrt(λ_i) z_i e_i and

    .. math:: \cos(g, v) = \frac{\sum_i \sqrt{\lambda_i}\,(e_i^\top v)\, z_i}
                               {\|v\| \sqrt{\sum_i \lambda_i z_i^2}},

    so each draw costs O(r) with r = rank Σ <= min(n - 1, d). From samples A the eigenpairs come
    from the n × n Gram matrix when n < d (g = Aᵀ z / sqrt(n - 1) in distribution), so Σ is
    never formed. Draws are made ``batch_size`` at a time: memory is O(batch_size · r).

    Parameters
    ----------
    x : array_like
        ``(n_samples, d)`` activations (``kind="samples"``) or a ``(d, d)`` covariance.
    direction : array_like
        ``(d,)`` or ``(*batch, d)``: the fixed direction(s), e.g. v_rev, or one drift per
        run-step pair; the same z's are used for every direction (common random numbers).
    kind : {"samples", "cov"}
    n_draws : int
        Monte Carlo draws B; p-values are multiples of 1/(B + 1).
    batch_size : int
        Draws per batch (memory bound, not a statistical setting).
    center : bool
        Subtract the sample mean (samples only).
    rng : Generator, int or None
        Seed or generator; results are reproducible for a fixed seed whatever ``batch_size``.

    Returns
    -------
    EmpiricalNull
        ``samples`` shaped ``(*batch, n_draws)``; ``attrs`` record n_draws and rank.
    """
    arr, v, n_draws, batch_size = _validate_covariance_matched(
        x, direction, kind, n_draws, batch_size
    )
    gen = normalize_rng(rng)
    lam, proj, basis = _spectrum(arr, kind, center)
    batch_shape = v.shape[:-1]
    vf = v.reshape(-1, v.shape[-1])
    # b_{i,k} = sqrt(λ_i) e_iᵀ v_k / ‖v_k‖ ; overall scale of λ cancels in the ratio.
    scale = float(lam.max())
    b = (proj @ vf.T) / (np.linalg.norm(vf, axis=1) * np.sqrt(scale))
    lam_s = lam / scale
    out = np.empty((vf.shape[0], n_draws))
    for start in range(0, n_draws, batch_size):
        m = min(batch_size, n_draws - start)
        z = gen.standard_normal((m, lam.size))
        block = z @ b  # (m, k): the same BLAS call for any batch size, so the same bits
        block /= np.sqrt((z * z) @ lam_s)[:, None]  # in place: no second (m, k) temporary
        out[:, start : start + m] = block.T
    return EmpiricalNull._from_draws(
        out.reshape(*batch_shape, n_draws),
        method="covariance_matched",
        attrs={"n_draws": n_draws, "rank": int(lam.size), "kind": kind, "basis": basis},
    )


def _validate_permutation(
    witness: Any, aligned: Any, drift: Any, paired: bool, n_permutations: Any, batch_size: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    w = as_finite_array("witness", witness)
    h = as_finite_array("aligned", aligned)
    for name, arr in (("witness", w), ("aligned", h)):
        if arr.ndim != 2:
            raise ValueError(f"`{name}` must be 2-D (n_probes, d), got shape {arr.shape}")
    if w.shape[1] != h.shape[1]:
        raise ValueError(
            f"`witness` and `aligned` must share the feature dimension, got {w.shape[1]} and "
            f"{h.shape[1]}"
        )
    if paired and w.shape[0] != h.shape[0]:
        raise ValueError(
            "`paired=True` needs the same probes in `witness` and `aligned` (equal row counts), "
            f"got {w.shape[0]} and {h.shape[0]}; pass `paired=False` for unpaired sets"
        )
    if w.shape[0] < 2 or h.shape[0] < 1:
        raise ValueError("`witness` needs at least 2 probes for a permutation null")
    dr = _check_directions("drift", drift, w.shape[1])
    # the null depends on witness and aligned only through directions: one common power of two
    # (exact) keeps their products finite and nonzero at any scale
    scale = np.maximum(pow2_scale(w, axis=None), pow2_scale(h, axis=None))
    return (
        w / scale,
        h / scale,
        dr,
        _check_count("n_permutations", n_permutations),
        _check_count("batch_size", batch_size),
    )


def permutation_cosine(
    witness: Any,
    aligned: Any,
    drift: Any,
    *,
    paired: bool = True,
    n_permutations: int = 9999,
    batch_size: int = 4096,
    rng: RNGLike = None,
) -> EmpiricalNull:
    r"""Matched empirical null: v_rev rebuilt after swapping probes between witness and aligned.

    Observed statistic: cos(Δ, μ(witness) − μ(aligned)). Under the null that the witness and
    aligned activations are exchangeable, probe labels can be swapped:

    - ``paired=True`` (same probes in both sets): each probe's pair is swapped with probability
      1/2, i.e. v_s ∝ Σ_i s_i (w_i − h_i) with random signs s_i (valid when each difference is
      symmetric about 0 under the null);
    - ``paired=False``: the n_w + n_a rows are pooled and re-split into sets of the same sizes
      (valid only when all rows are exchangeable, i.e. different probes in the two sets; on
      paired probes it is anti-conservative, see docs/nulls.md).

    Each replicate is cos(Δ, v_s) = (Σ_i s_i D_iᵀΔ) / (‖Δ‖ sqrt(sᵀ K s)) with the Gram matrix
    K = D Dᵀ, so no d-dimensional vector is formed per permutation; memory is
    O(batch_size · n_probes). p-values use (1 + #{null >= observed}) / (1 + B).

    Parameters
    ----------
    witness, aligned : array_like
        ``(n_probes, d)`` activations of the history reference and of the aligned model.
    drift : array_like
        ``(d,)`` or ``(*batch, d)``; every drift sees the same permutations.
    paired : bool
    n_permutations : int
    batch_size : int
    rng : Generator, int or None

    Returns
    -------
    EmpiricalNull
        ``samples`` shaped ``(*batch, n_permutations)``.

    References
    ----------
    Good, P. (2005). *Permutation, Parametric and Bootstrap Tests of Hypotheses*, ch. 3;
    Phipson, B. & Smyth, G. K. (2010). Permutation p-values should never be zero.
    *Stat. Appl. Genet. Mol. Biol.* 9(1), 39.
    """
    w, h, dr, n_perm, batch_size = _validate_permutation(
        witness, aligned, drift, paired, n_permutations, batch_size
    )
    gen = normalize_rng(rng)
    rows = w - h if paired else np.vstack([w, h])
    n_w, n_a = w.shape[0], h.shape[0]
    gram = rows @ rows.T
    batch_shape = dr.shape[:-1]
    df = dr.reshape(-1, dr.shape[-1])
    proj = (rows @ df.T) / np.linalg.norm(df, axis=1)  # (m, k)
    out = np.empty((df.shape[0], n_perm))
    degenerate = False
    for start in range(0, n_perm, batch_size):
        m = min(batch_size, n_perm - start)
        if paired:
            e = gen.choice(np.array([-1.0, 1.0]), size=(m, rows.shape[0]))
        else:
            labels = gen.permuted(np.tile(np.arange(n_w + n_a) < n_w, (m, 1)), axis=1)
            e = np.where(labels, 1.0 / n_w, -1.0 / n_a)
        norm2 = ((e @ gram) * e).sum(axis=1)  # e G e^T by BLAS (a 3-operand einsum: 19x slower)
        zero = norm2 <= 1e-24 * max(float(np.trace(gram)), np.finfo(float).tiny)
        degenerate |= bool(zero.any())
        den = np.sqrt(np.where(zero, 1.0, norm2))
        cos = e @ proj  # (m, k): the same BLAS call for any batch size, so the same bits
        cos /= den[:, None]
        cos[zero] = 0.0
        out[:, start : start + m] = cos.T
    if degenerate:
        warnings.warn(
            "some permutations gave a zero-length direction; their cosine was set to 0",
            DegenerateDataWarning,
            stacklevel=2,
        )
    return EmpiricalNull._from_draws(
        out.reshape(*batch_shape, n_perm),
        method="permutation_paired" if paired else "permutation_unpaired",
        attrs={"n_permutations": n_perm, "paired": paired},
    )


def history_pairs_cosine(drift: Any, directions: Any) -> EmpiricalNull:
    r"""Matched empirical null: cos(Δ, v_j) over directions v_j from other history pairs.

    For a drift Δ, the null draws are cos(Δ, v_j), j = 1..m, where v_j are reversion directions
    computed from other (witness, aligned) pairs that should carry no relation to this run (other
    seeds' witnesses, unrelated reference models, other layers mapped to the same space).
    The p-value (1 + #{v_j : cos >= observed}) / (1 + m) is valid when the true v_rev is
    exchangeable with the v_j under the null.

    Parameters
    ----------
    drift : array_like
        ``(d,)`` or ``(*batch, d)``.
    directions : array_like
        ``(m, d)`` directions (normalised here).

    Returns
    -------
    EmpiricalNull
        ``samples`` shaped ``(*batch, m)``.
    """
    dirs = as_finite_array("directions", directions)
    if dirs.ndim != 2:
        raise ValueError(f"`directions` must be 2-D (m, d), got shape {dirs.shape}")
    dirs = _check_directions("directions", dirs, dirs.shape[1])
    dr = _check_directions("drift", drift, dirs.shape[1])
    un = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    ud = dr / np.linalg.norm(dr, axis=-1, keepdims=True)
    return EmpiricalNull(
        np.clip(ud @ un.T, -1.0, 1.0), method="history_pairs", attrs={"n_directions": dirs.shape[0]}
    )


# ----------------------------------------------------------------------------------------------
# multiplicity: adjusted p-values and exceedance
# ----------------------------------------------------------------------------------------------


def _validate_adjust(p: Any, method: str) -> np.ndarray:
    check_choice("method", method, tuple(_ADJUST))
    arr = as_real_array("p", p)
    finite = arr[~np.isnan(arr)]
    if np.any((finite < 0) | (finite > 1)):
        raise ValueError("`p` must contain p-values in [0, 1] (NaN allowed for missing ones)")
    return arr


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values of the 1-D `p` (no NaN): the running maximum of
    ``(m - i) p_(i)`` over the ascending order, capped at 1; ties get equal values whatever
    their order. As ``multipletests(method="holm")``, which also runs a full ``gc.collect()``
    per call (about 80 ms in a process holding a reduced store; tests compare the two)."""
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.minimum(np.maximum.accumulate(p[order] * np.arange(m, 0, -1, dtype=float)), 1.0)
    out = np.empty(m)
    out[order] = adj
    return out


def _adjust_kernel(arr: np.ndarray, method: str) -> np.ndarray:
    out = np.full(arr.shape, np.nan)
    mask = ~np.isnan(arr)
    if mask.any():
        if method == "holm":
            out[mask] = _holm(arr[mask])
        else:
            from statsmodels.stats.multitest import multipletests

            out[mask] = multipletests(arr[mask], method=_ADJUST[method])[1]
    return out


def adjust_pvalues(p: Any, *, method: AdjustMethod = "holm") -> Any:
    r"""Multiplicity-adjusted p-values over all entries of ``p`` (any shape).

    ``"holm"`` (step-down, FWER), ``"bonferroni"`` (min(1, m p), FWER), ``"bh"``
    (Benjamini–Hochberg step-up, FDR under independence/PRDS), ``"by"`` (Benjamini–Yekutieli, FDR
    under any dependence). NaNs stay NaN and do not count in m. Computed by
    ``statsmodels.stats.multitest.multipletests`` (Holm by the same formula here: statsmodels'
    Holm runs a full garbage collection per call). An xarray input gives an xarray output
    (``attrs["adjust"]`` set); a dask-backed one stays lazy (its chunks are merged into one, since
    the adjustment needs every p-value at once).

    References
    ----------
    Holm, S. (1979). *Scand. J. Statist.* 6, 65–70. Benjamini, Y. & Hochberg, Y. (1995).
    *JRSS B* 57, 289–300. Benjamini, Y. & Yekutieli, D. (2001). *Ann. Statist.* 29, 1165–1188.
    """
    if isinstance(p, xr.DataArray):
        check_choice("method", method, tuple(_ADJUST))
        src = p.chunk({dim: -1 for dim in p.dims}) if p.chunks is not None else p

        def kernel(values: np.ndarray) -> np.ndarray:
            return _adjust_kernel(_validate_adjust(values, method), method)

        out = xr.apply_ufunc(kernel, src, dask="parallelized", output_dtypes=[float])
        out.attrs = {**p.attrs, "adjust": method}
        return out
    arr = _validate_adjust(p, method)
    out = _adjust_kernel(arr, method)
    return out[()] if out.ndim == 0 else out


def _adjust_multiplier(m: int, method: str) -> float:
    """What the adjustment multiplies the smallest p-value by (when every p sits at the floor)."""
    if method in ("holm", "bonferroni"):
        return float(m)
    if method == "by":
        return float(np.sum(1.0 / np.arange(1, m + 1)))
    return 1.0  # bh


def _smallest_adjusted(p_min: float, m: int, method: str) -> float:
    return min(1.0, p_min * _adjust_multiplier(m, method))


def adjusted_p_floor(n_draws: int, n_tests: int, *, adjust: AdjustMethod = "holm") -> float:
    r"""Smallest adjusted p-value attainable with ``n_draws`` Monte Carlo draws and ``n_tests`` tests.

    Each Monte Carlo p-value is at least ``1 / (B + 1)``; Holm and Bonferroni multiply the
    smallest by m, Benjamini–Yekutieli by ``sum_{i<=m} 1/i``, Benjamini–Hochberg leaves it (when
    every p sits at the floor). If this exceeds alpha no pair can be significant, however strong
    the signal: with B = 2000 and Holm over m = 168 pairs it is 168/2001 = 0.084.
    """
    b = _check_count("n_draws", n_draws)
    m = _check_count("n_tests", n_tests)
    check_choice("adjust", adjust, tuple(_ADJUST))
    return _smallest_adjusted(1.0 / (b + 1), m, adjust)


def monte_carlo_draws(
    n_tests: int,
    *,
    alpha: float = 0.05,
    adjust: AdjustMethod = "holm",
    factor: float = 10.0,
    minimum: int = 2000,
    cap: int = 200_000,
) -> int:
    r"""Number of Monte Carlo null draws B so that ``n_tests`` adjusted tests can reject.

    The smallest adjusted p-value is :func:`adjusted_p_floor`; B is chosen so that it is
    ``alpha / factor`` (``factor = 10`` leaves room for p-values well inside the tail, not just
    beyond every draw), i.e. ``B + 1 >= factor * m / alpha`` for Holm/Bonferroni, at least
    ``minimum`` and at most ``cap``. At the cap the floor may still bind: report
    ``adjusted_p_floor(B, m)`` beside the results (the pipeline does, as ``p_floor_adjusted``).

    Examples
    --------
    >>> monte_carlo_draws(168)          # Holm over 168 run-step pairs at alpha 0.05
    33599
    >>> adjusted_p_floor(33599, 168)
    0.005
    """
    m = _check_count("n_tests", n_tests)
    a = float(alpha)
    if not 0.0 < a < 1.0:
        raise ValueError(f"`alpha` must lie strictly between 0 and 1 (e.g. 0.05), got {alpha!r}")
    check_choice("adjust", adjust, tuple(_ADJUST))
    if not (np.isfinite(factor) and factor >= 1.0):
        raise ValueError(f"`factor` must be a number >= 1, got {factor!r}")
    lo, hi = _check_count("minimum", minimum), _check_count("cap", cap)
    if lo > hi:
        raise ValueError(f"`minimum` ({lo}) must not exceed `cap` ({hi})")
    # smallest B with _smallest_adjusted(1/(B+1)) <= alpha/factor
    need = int(np.ceil(factor * _adjust_multiplier(m, adjust) / a)) - 1
    return int(min(max(need, lo), hi))


@dataclass(frozen=True, eq=False)
class Exceedance:
    """Run-step pairs measured against a null.

    Attributes
    ----------
    threshold : the null's ``q`` quantile (scalar, or per pair for batched nulls)
    above : observed > threshold (False where observed is NaN)
    n_above, n_pairs : counts (NaN observations are not pairs)
    pvalue, pvalue_adjusted : per pair; NaN where observed is NaN
    reject : pvalue_adjusted < alpha
    """

    threshold: Any
    above: Any
    n_above: int
    n_pairs: int
    pvalue: Any
    pvalue_adjusted: Any
    reject: Any
    q: float
    adjust: str
    alpha: float
    alternative: str
    null_method: str
    attrs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Scalars for a JSON report (arrays as lists)."""

        def plain(v: Any) -> Any:
            return np.asarray(v).tolist()

        return {
            "q": self.q,
            "threshold": plain(self.threshold),
            "n_above": self.n_above,
            "n_pairs": self.n_pairs,
            "n_reject": int(np.sum(np.asarray(self.reject))),
            "adjust": self.adjust,
            "alpha": self.alpha,
            "alternative": self.alternative,
            "null": self.null_method,
        }


def _validate_exceedance(
    observed: Any, null: Any, q: Any, adjust: str, alpha: Any, alternative: str
) -> tuple[np.ndarray, float, float]:
    if not isinstance(null, (CosineNull, EmpiricalNull)):
        raise TypeError(
            "`null` must be a CosineNull or EmpiricalNull (from revstats.nulls), got "
            f"{type(null).__name__}"
        )
    check_choice("adjust", adjust, tuple(_ADJUST))
    check_choice("alternative", alternative, _ALTERNATIVES)
    qf, af = float(q), float(alpha)
    if not 0.0 < qf < 1.0:
        raise ValueError(f"`q` must lie strictly between 0 and 1 (e.g. 0.99), got {q!r}")
    if not 0.0 < af < 1.0:
        raise ValueError(f"`alpha` must lie strictly between 0 and 1 (e.g. 0.05), got {alpha!r}")
    obs = as_real_array("observed", observed)
    if np.any(np.abs(obs[np.isfinite(obs)]) > 1.0 + 1e-9):
        raise ValueError(
            "`observed` must hold cosines in [-1, 1] (NaN allowed for missing ones); got values "
            "outside: pass alignments, not raw projections"
        )
    if isinstance(null, EmpiricalNull) and null.batch_shape:
        try:
            np.broadcast_shapes(obs.shape, null.batch_shape)
        except ValueError:
            raise ValueError(
                f"`observed` shape {obs.shape} does not broadcast with the null's batch shape "
                f"{null.batch_shape}; build the null with one drift per observed pair"
            ) from None
    return obs, qf, af


def exceedance(
    observed: Any,
    null: CosineNull | EmpiricalNull,
    *,
    q: float = 0.99,
    adjust: AdjustMethod = "holm",
    alpha: float = 0.05,
    alternative: Alternative = "greater",
) -> Exceedance:
    r"""How many run-step pairs exceed the null's ``q`` quantile, with adjusted p-values.

    The paper's "24 of 24 run-step pairs above the isotropic null's p99" is ``n_above`` of
    ``n_pairs`` with ``q=0.99``. Counting pairs above a quantile ignores multiplicity (by chance
    1 in 100 pairs exceeds p99), so each pair also gets a p-value under ``null`` and an adjusted
    p-value (:func:`adjust_pvalues`, across all pairs); ``reject`` is ``pvalue_adjusted < alpha``.

    Parameters
    ----------
    observed : array_like or DataArray
        Alignment cosines, any shape (e.g. (run, step)); NaN entries are skipped. Computed
        eagerly (this returns counts).
    null : CosineNull or EmpiricalNull
        One null for all pairs, or a batched EmpiricalNull whose batch shape broadcasts with
        ``observed``.
    q : float
        Quantile used as the exceedance threshold (upper tail; for ``alternative="less"`` the
        pairs below the ``1 - q`` quantile are counted).
    adjust : {"holm", "bonferroni", "bh", "by"}
    alpha : float
    alternative : {"greater", "less", "two-sided"}

    Returns
    -------
    Exceedance
        DataArray inputs give DataArray ``above``, ``pvalue``, ``pvalue_adjusted``, ``reject``.
    """
    obs, qf, af = _validate_exceedance(observed, null, q, adjust, alpha, alternative)
    valid = ~np.isnan(obs)
    # an observation within 1e-12 (relative) of the threshold ties with it and is not above:
    # rounding must not decide (the same tie rule as EmpiricalNull.pvalue)
    tol = _TIE_RTOL * np.abs(obs)
    if alternative == "less":
        threshold = np.asarray(null.quantile(1.0 - qf))
        with np.errstate(invalid="ignore"):
            above = valid & (obs < threshold - tol)
    else:
        threshold = np.asarray(null.quantile(qf))
        with np.errstate(invalid="ignore"):
            above = valid & (obs > threshold + tol)
    pval = np.asarray(null.pvalue(obs, alternative=alternative), dtype=float)
    pval = np.where(valid, pval, np.nan)
    padj = np.asarray(adjust_pvalues(pval, method=adjust), dtype=float)
    with np.errstate(invalid="ignore"):
        reject = valid & (padj < af)
    results: dict[str, Any] = {
        "above": above,
        "pvalue": pval,
        "pvalue_adjusted": padj,
        "reject": reject,
    }
    if isinstance(observed, xr.DataArray):
        results = {
            k: xr.DataArray(np.broadcast_to(v, obs.shape), coords=observed.coords, dims=observed.dims)
            for k, v in results.items()
        }
    return Exceedance(
        threshold=threshold[()] if threshold.ndim == 0 else threshold,
        above=results["above"],
        n_above=int(np.sum(above)),
        n_pairs=int(np.sum(valid)),
        pvalue=results["pvalue"],
        pvalue_adjusted=results["pvalue_adjusted"],
        reject=results["reject"],
        q=qf,
        adjust=adjust,
        alpha=af,
        alternative=alternative,
        null_method=null.method,
        attrs=dict(null.attrs),
    )
