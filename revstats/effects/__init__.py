"""Effect sizes for causal ablations (blocked vs control, push vs control), with intervals.

Differences in means (Welch, paired), Hedges' g, risk difference / ratio / odds ratio, a
non-inferiority test for task cost, the Jonckheere-Terpstra trend test (`revstats.effects._trend`),
Spearman correlation with a bootstrap interval and a cluster-robust (GEE) rate comparison.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from scipy import special

from revstats._lazy import scipy_stats as stats
from revstats._validation import (
    RNGLike,
    as_real_array,
    check_choice,
    check_confidence,
    normalize_rng,
    pow2_scale,
)
from revstats.effects._trend import jonckheere_terpstra
from revstats.errors import DegenerateDataWarning
from revstats.intervals import _bootstrap as _bs
from revstats.intervals import _proportions as _prop
from revstats.intervals._results import Effect

__all__ = [
    "Effect",
    "gee_rate_comparison",
    "hedges_g",
    "hedges_g_from_stats",
    "jonckheere_terpstra",
    "mean_difference",
    "noninferiority_test",
    "odds_ratio",
    "risk_difference",
    "risk_ratio",
    "spearman_ci",
]


def _z(confidence: float) -> float:
    return float(special.ndtri(0.5 + confidence / 2.0))


def _scalar(v: Any) -> Any:
    a = np.asarray(v)
    return float(a) if a.ndim == 0 else a


def _count(v: Any) -> Any:
    a = np.asarray(v)
    return int(a) if a.ndim == 0 else a.astype(int)


def _sample(x: Any, name: str, min_n: int = 2) -> np.ndarray:
    arr = as_real_array(name, x)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D (one value per run or probe), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"`{name}` is empty: pass at least {min_n} observations")
    if arr.size < min_n:
        raise ValueError(f"`{name}` needs at least {min_n} observations, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains NaN or infinite values: remove or impute them first")
    return arr


# ----------------------------------------------------------------------------- means


def _validate_mean_difference(a, b, paired, confidence):
    conf = check_confidence(confidence)
    a, b = _sample(a, "a"), _sample(b, "b")
    if paired and a.shape != b.shape:
        raise ValueError(f"`paired=True` needs `a` and `b` of equal length, got {a.size} and {b.size}")
    return a, b, conf


def mean_difference(
    a: Any, b: Any, *, paired: bool = False, confidence: float = 0.95
) -> Effect:
    """Difference in means mean(a) - mean(b) with a t interval and two-sided t test.

    * independent (default): Welch's interval, SE = sqrt(s_a^2/n_a + s_b^2/n_b) with
      Welch-Satterthwaite df = SE^4 / ((s_a^2/n_a)^2/(n_a-1) + (s_b^2/n_b)^2/(n_b-1));
    * ``paired=True``: one-sample t on d = a - b, SE = s_d / sqrt(n), df = n - 1.

    Warns `DegenerateDataWarning` (and returns a zero-width interval) when SE = 0.

    References
    ----------
    Welch BL (1947). The generalization of 'Student's' problem when several different
    population variances are involved. Biometrika 34:28-35.
    """
    a, b, conf = _validate_mean_difference(a, b, paired, confidence)
    # both samples divided by one power of two near their largest |value| (exact): squares
    # neither overflow (values beyond ~1e154) nor underflow to a false zero variance (below
    # ~1e-154); location and scale results are multiplied back, t and p are scale-free
    scale = _pow2_scale(a, b)
    a, b = a / scale, b / scale
    if paired:
        d = a - b
        est, se, df = d.mean(), d.std(ddof=1) / np.sqrt(d.size), d.size - 1.0
        method = "paired t"
    else:
        va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
        est, se = a.mean() - b.mean(), np.sqrt(va + vb)
        with np.errstate(invalid="ignore", divide="ignore"):
            df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
        method = "welch t"
    if se == 0:
        warnings.warn(
            "`a` and `b` have zero variance: the interval has zero width and no p-value",
            DegenerateDataWarning,
            stacklevel=2,
        )
        est = est * scale
        return Effect(float(est), float(est), float(est), conf, method, np.nan, np.nan, 0.0,
                      n=(a.size, b.size))
    t = est / se
    half = stats.t.ppf(0.5 + conf / 2, df) * se
    p = 2 * stats.t.sf(abs(t), df)
    est, half, se = est * scale, half * scale, se * scale
    return Effect(
        estimate=float(est), low=float(est - half), high=float(est + half), confidence=conf,
        method=method, statistic=float(t), pvalue=float(p), standard_error=float(se),
        n=(a.size, b.size), extra={"df": float(df)},
    )


def _pow2_scale(*samples: np.ndarray) -> float:
    """One power of two near the largest |value| of all the samples (`pow2_scale`)."""
    return max(float(pow2_scale(x, axis=None).item()) for x in samples)


def _validate_hedges(n1, n2, sd1, sd2, confidence, correction):
    conf = check_confidence(confidence)
    check_choice("correction", correction, ("exact", "approximate"))
    for name, v in (("n1", n1), ("n2", n2)):
        if not float(v).is_integer() or v < 2:
            raise ValueError(f"`{name}` must be a whole number >= 2, got {v!r}")
    for name, v in (("sd1", sd1), ("sd2", sd2)):
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"`{name}` must be a finite non-negative standard deviation, got {v!r}")
    return conf


def hedges_correction(df: float, *, exact: bool = True) -> float:
    """Small-sample factor J: exact Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2)) (Hedges 1981)
    or the approximation 1 - 3 / (4 df - 1)."""
    if not exact:
        return 1.0 - 3.0 / (4.0 * df - 1.0)
    return float(np.exp(special.gammaln(df / 2) - special.gammaln((df - 1) / 2)) / np.sqrt(df / 2))


def hedges_g_from_stats(
    mean1: float, sd1: float, n1: int, mean2: float, sd2: float, n2: int, *,
    confidence: float = 0.95, correction: Literal["exact", "approximate"] = "exact",
) -> Effect:
    """Hedges' g from summary statistics (group 1 minus group 2).

    d = (m1 - m2) / s_w, s_w^2 = ((n1-1) s1^2 + (n2-1) s2^2) / (n1 + n2 - 2);
    V_d = (n1 + n2) / (n1 n2) + d^2 / (2 (n1 + n2)); g = J d, V_g = J^2 V_d, with J the exact
    correction (or 1 - 3/(4 df - 1)); interval g -+ z sqrt(V_g) (normal approximation,
    Borenstein et al. 2009 eq. 4.18-4.24). ``extra`` holds d, V_d, V_g and J.

    References
    ----------
    Hedges LV (1981). Distribution theory for Glass's estimator of effect size and related
    estimators. J Educ Stat 6:107-128.
    Borenstein M, Hedges LV, Higgins JPT, Rothstein HR (2009). Introduction to Meta-Analysis,
    ch. 4. Wiley.
    """
    conf = _validate_hedges(n1, n2, sd1, sd2, confidence, correction)
    df = n1 + n2 - 2.0
    sw = np.sqrt(((n1 - 1) * sd1**2 + (n2 - 1) * sd2**2) / df)
    if sw == 0:
        raise ValueError(
            "both groups have zero standard deviation: a standardised difference is undefined; "
            "report the raw difference (`mean_difference`) instead"
        )
    d = (mean1 - mean2) / sw
    vd = (n1 + n2) / (n1 * n2) + d * d / (2.0 * (n1 + n2))
    j = hedges_correction(df, exact=correction == "exact")
    g, vg = j * d, j * j * vd
    half = _z(conf) * np.sqrt(vg)
    return Effect(
        estimate=float(g), low=float(g - half), high=float(g + half), confidence=conf,
        method=f"hedges_g ({correction} J), normal approximation",
        standard_error=float(np.sqrt(vg)), n=(int(n1), int(n2)),
        extra={"d": float(d), "variance_d": float(vd), "variance_g": float(vg), "j": j,
               "sd_within": float(sw)},
    )


def hedges_g(
    a: Any, b: Any, *, confidence: float = 0.95,
    correction: Literal["exact", "approximate"] = "exact",
) -> Effect:
    """Hedges' g of a minus b with a normal-approximation interval; see `hedges_g_from_stats`.

    Raises ValueError for fewer than 2 values per group, NaN, or zero variance in both groups.
    """
    a, b = _sample(a, "a"), _sample(b, "b")
    scale = _pow2_scale(a, b)  # g is scale-free: computed on exactly rescaled samples
    a, b = a / scale, b / scale
    return hedges_g_from_stats(
        a.mean(), a.std(ddof=1), a.size, b.mean(), b.std(ddof=1), b.size,
        confidence=confidence, correction=correction,
    )


# ----------------------------------------------------------------------------- 2x2 tables


def _validate_two_by_two(k1, n1, k2, n2, confidence):
    conf = check_confidence(confidence)
    a1, b1 = _prop.validate_counts(k1, n1, k_name="k1", n_name="n1")
    a2, b2 = _prop.validate_counts(k2, n2, k_name="k2", n_name="n2")
    return (*np.broadcast_arrays(a1, b1, a2, b2), conf)


def risk_difference(k1: Any, n1: Any, k2: Any, n2: Any, *, confidence: float = 0.95) -> Effect:
    """Risk difference k1/n1 - k2/n2 (group 1 minus group 2) with Newcombe's hybrid score
    interval (1998, method 10). ``standard_error`` is the Wald SE
    sqrt(p1 q1 / n1 + p2 q2 / n2) (Borenstein et al. 2009 eq. 5.17), for meta-analysis only.
    """
    k1, n1, k2, n2, conf = _validate_two_by_two(k1, n1, k2, n2, confidence)
    p1, p2 = k1 / n1, k2 / n2
    lo, hi = _prop.newcombe(k1, n1, k2, n2, conf)
    se = np.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return Effect(
        estimate=_scalar(p1 - p2), low=_scalar(lo), high=_scalar(hi), confidence=conf,
        method="newcombe", standard_error=_scalar(se), n=(_count(n1), _count(n2)),
    )


def _zero_cell_correction(k1, n1, k2, n2, what: str):
    """Haldane-Anscombe: add 0.5 to every cell of a table with a zero cell."""
    zero = (k1 == 0) | (k2 == 0) | (k1 == n1) | (k2 == n2)
    if np.any(zero):
        warnings.warn(
            f"a 2x2 table has a zero cell: 0.5 was added to every cell of that table "
            f"(Haldane-Anscombe correction) before computing the {what}",
            DegenerateDataWarning,
            stacklevel=3,
        )
    add = np.where(zero, 0.5, 0.0)
    return k1 + add, n1 + 2 * add, k2 + add, n2 + 2 * add, zero


def _log_ratio_effect(log_est, se, conf, method, corrected, n1, n2) -> Effect:
    """A 2x2-table ratio from its log-scale Wald interval exp(log_est -+ z se)."""
    half = _z(conf) * se
    return Effect(
        estimate=_scalar(np.exp(log_est)), low=_scalar(np.exp(log_est - half)),
        high=_scalar(np.exp(log_est + half)), confidence=conf,
        method=method + (" (0.5 zero-cell correction)" if np.any(corrected) else ""),
        standard_error=_scalar(se), n=(_count(n1), _count(n2)),
        extra={"log_estimate": _scalar(log_est), "corrected": _scalar(corrected)},
    )


def risk_ratio(k1: Any, n1: Any, k2: Any, n2: Any, *, confidence: float = 0.95) -> Effect:
    """Risk ratio (k1/n1) / (k2/n2) with the Katz log interval.

    ln RR -+ z sqrt(1/k1 - 1/n1 + 1/k2 - 1/n2) (Katz et al. 1978; Borenstein et al. 2009
    eq. 5.1-5.4). Tables with a zero cell get 0.5 added to every cell (a warning says so);
    ``standard_error`` is on the log scale.
    """
    k1, n1, k2, n2, conf = _validate_two_by_two(k1, n1, k2, n2, confidence)
    a, m, c, q, corrected = _zero_cell_correction(k1, n1, k2, n2, "risk ratio")
    log_rr = np.log(a / m) - np.log(c / q)
    se = np.sqrt(1 / a - 1 / m + 1 / c - 1 / q)
    return _log_ratio_effect(log_rr, se, conf, "katz log", corrected, n1, n2)


def odds_ratio(k1: Any, n1: Any, k2: Any, n2: Any, *, confidence: float = 0.95) -> Effect:
    """Odds ratio (k1 (n2-k2)) / ((n1-k1) k2) with Woolf's log interval.

    ln OR -+ z sqrt(1/A + 1/B + 1/C + 1/D) (Woolf 1955; Borenstein et al. 2009 eq. 5.8-5.11).
    Tables with a zero cell get 0.5 added to every cell (Haldane-Anscombe; a warning says so).
    """
    k1, n1, k2, n2, conf = _validate_two_by_two(k1, n1, k2, n2, confidence)
    a, m, c, q, corrected = _zero_cell_correction(k1, n1, k2, n2, "odds ratio")
    b, d = m - a, q - c
    log_or = np.log(a) + np.log(d) - np.log(b) - np.log(c)
    se = np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    return _log_ratio_effect(log_or, se, conf, "woolf log", corrected, n1, n2)


# ----------------------------------------------------------------------------- non-inferiority


def _validate_noninferiority(margin, confidence):
    conf = check_confidence(confidence)
    if not np.isfinite(margin) or margin <= 0:
        raise ValueError(
            f"`margin` must be a positive number on the scale of the task metric, got {margin!r}"
        )
    return conf


def noninferiority_test(
    treatment: Any, control: Any, *, margin: float, higher_is_better: bool = True,
    paired: bool = False, confidence: float = 0.95,
) -> Effect:
    """Non-inferiority of `treatment` to `control` on a task metric, against `margin`.

    With diff = mean(treatment) - mean(control) oriented so that larger is better
    (sign flipped when ``higher_is_better=False``, e.g. for a loss):
    H0: diff <= -margin versus H1: diff > -margin, a one-sided Welch (or paired) t test at
    alpha = (1 - confidence) / 2. Equivalently, non-inferiority holds when the lower end of the
    two-sided `confidence` interval exceeds -margin (CONSORT; Piaggio et al. 2012, JAMA
    308:2594). ``extra["noninferior"]`` gives the decision; estimate and interval are on the
    oriented scale.
    """
    conf = _validate_noninferiority(margin, confidence)
    sign = 1.0 if higher_is_better else -1.0
    base = mean_difference(treatment, control, paired=paired, confidence=conf)
    est = sign * base.estimate
    lo, hi = sorted((sign * base.low, sign * base.high))
    se, df = base.standard_error, base.extra.get("df", np.nan)
    if se == 0:
        t, p = np.nan, np.nan
        decision = bool(est > -margin)
    else:
        t = (est + margin) / se
        p = float(stats.t.sf(t, df))
        decision = bool(p < (1 - conf) / 2)
    return Effect(
        estimate=float(est), low=float(lo), high=float(hi), confidence=conf,
        method=f"non-inferiority, one-sided {base.method} at alpha={(1 - conf) / 2:g}",
        statistic=float(t), pvalue=p, standard_error=se, n=base.n,
        extra={"margin": float(margin), "noninferior": decision, "df": df,
               "higher_is_better": higher_is_better},
    )


# ----------------------------------------------------------------------------- Spearman


def _spearman_rows(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman rho of the stacked pair x[..., 0, :] vs x[..., 1, :] (vectorised)."""
    r = stats.rankdata(x, axis=axis)
    r = r - r.mean(axis=axis, keepdims=True)
    a, b = r[..., 0, :], r[..., 1, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def spearman_ci(
    x: Any, y: Any, *, confidence: float = 0.95, method: Literal["percentile", "basic", "bca"] = "bca",
    n_resamples: int = 9999, rng: RNGLike = None,
) -> Effect:
    """Spearman rank correlation with a pairs-bootstrap interval and the exact/asymptotic
    p-value of ``scipy.stats.spearmanr``.

    Pairs (x_i, y_i) are resampled together; the interval rule and the degeneracy fallback are
    those of `revstats.intervals.bootstrap_ci` (a resample with constant ranks gives NaN and
    is dropped; a warning says how many).
    """
    conf = check_confidence(confidence)
    check_choice("method", method, _bs.METHODS)
    x, y = _sample(x, "x", 3), _sample(y, "y", 3)
    if x.size != y.size:
        raise ValueError(f"`x` and `y` must have equal length, got {x.size} and {y.size}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ValueError("`x` or `y` is constant: a rank correlation is undefined")
    gen = normalize_rng(rng)
    n = x.size
    pairs = np.stack([x, y])  # (2, n)
    theta = np.array([_spearman_rows(pairs)])
    gens = _bs.child_generators(gen, 1)
    idx = gens[0].integers(0, n, size=(n_resamples, n))
    reps = _spearman_rows(pairs[:, idx].transpose(1, 0, 2))[None, :]
    keep = np.isfinite(reps[0])
    if not keep.all():
        warnings.warn(
            f"{int((~keep).sum())} bootstrap resample(s) had constant ranks and were dropped",
            DegenerateDataWarning, stacklevel=2,
        )
        reps = reps[:, keep]
    accel = None
    if method == "bca":
        base = np.arange(n - 1)
        loo = base[None, :] + (base[None, :] >= np.arange(n)[:, None])
        accel = _bs.acceleration(_spearman_rows(pairs[:, loo].transpose(1, 0, 2))[None, :])
    lo, hi, code = _bs.interval_from_replicates(theta, reps, method, conf, accel)
    res = stats.spearmanr(x, y)
    return Effect(
        estimate=float(theta[0]), low=float(lo[0]), high=float(hi[0]), confidence=conf,
        method=f"spearman, bootstrap {_bs.method_names(code, method)}",
        statistic=float(res.statistic), pvalue=float(res.pvalue), n=n,
        n_resamples=int(n_resamples), seed=int(rng) if isinstance(rng, (int, np.integer)) else None,
    )


# ----------------------------------------------------------------------------- GEE


def gee_rate_comparison(
    outcome: Any, group: Any, cluster: Any, *, reference: Any = None, confidence: float = 0.95,
    correlation: Literal["exchangeable", "independence"] = "exchangeable",
) -> Effect:
    """Cluster-robust comparison of a 0/1 behaviour rate between two groups (runs as clusters).

    Fits a binomial GEE with logit link, ``outcome ~ 1 + [group != reference]``, clusters =
    runs, with the robust (sandwich) covariance (Liang & Zeger 1986; statsmodels GEE). The
    estimate is the odds ratio of the other group vs `reference` with its Wald interval on the
    log scale; ``extra`` holds both groups' raw rates and the GEE coefficient.

    Parameters
    ----------
    outcome : array-like of 0/1, shape (n_obs,)
    group : array-like, shape (n_obs,), exactly two distinct labels
    cluster : array-like, shape (n_obs,), run ids (several observations per run)
    reference : label of the reference group (default: the first label in sorted order)
    """
    conf = check_confidence(confidence)
    check_choice("correlation", correlation, ("exchangeable", "independence"))
    y = _sample(outcome, "outcome", 2)
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("`outcome` must hold 0/1 values (1 = the behaviour occurred)")
    g = np.asarray(group)
    cl = np.asarray(cluster)
    if g.shape != y.shape or cl.shape != y.shape:
        raise ValueError("`outcome`, `group` and `cluster` must have the same length")
    labels = np.unique(g)
    if labels.size != 2:
        raise ValueError(f"`group` must have exactly two labels, got {labels.tolist()}")
    ref = labels[0] if reference is None else reference
    if ref not in labels:
        raise ValueError(f"`reference` {ref!r} is not a label of `group` ({labels.tolist()})")
    other = labels[labels != ref][0]
    if np.unique(cl).size < 4:
        raise ValueError("`cluster` needs at least 4 distinct runs for a sandwich covariance")
    rates = {str(lab): float(y[g == lab].mean()) for lab in labels}
    if any(r in (0.0, 1.0) for r in rates.values()):
        warnings.warn(
            "a group has a rate of exactly 0 or 1: the GEE log odds ratio is not finite "
            "(separation); compare rates with `risk_difference` instead",
            DegenerateDataWarning, stacklevel=2,
        )
    import statsmodels.api as sm

    x = np.column_stack([np.ones_like(y), (g == other).astype(float)])
    cov = sm.cov_struct.Exchangeable() if correlation == "exchangeable" else sm.cov_struct.Independence()
    codes = np.unique(cl, return_inverse=True)[1]
    order = np.argsort(codes, kind="stable")
    model = sm.GEE(y[order], x[order], groups=codes[order], family=sm.families.Binomial(), cov_struct=cov)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit()
    beta, se = float(fit.params[1]), float(fit.bse[1])
    half = _z(conf) * se
    z = beta / se if se > 0 else np.nan
    p = float(2 * stats.norm.sf(abs(z))) if np.isfinite(z) else np.nan
    return Effect(
        estimate=float(np.exp(beta)), low=float(np.exp(beta - half)), high=float(np.exp(beta + half)),
        confidence=conf, method=f"gee binomial logit, {correlation}, robust se (odds ratio)",
        statistic=float(z), pvalue=p, standard_error=se, n=int(y.size),
        extra={"rates": rates, "log_estimate": beta, "reference": str(ref), "other": str(other),
               "n_clusters": int(np.unique(cl).size)},
    )
