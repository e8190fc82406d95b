"""The one door from `analysis` into the revstats core.

Every statistic the pipeline reports is computed by the core (`revstats.geometry`,
`revstats.nulls`, `revstats.intervals`, `revstats.effects`); this module only fixes the
options the pipeline uses and adapts call shapes, so the pipeline reads as a composition of
named steps and no statistic has a second copy in `analysis/`. Imports are deferred so that
`import analysis` stays cheap.
"""

from __future__ import annotations

from typing import Any


def open_store(path: str) -> Any:
    from revstats.store import open_store as _open

    return _open(path)


def reversion_direction(witness: Any, aligned: Any, *, dim: str = "example") -> Any:
    from revstats.geometry import reversion_direction as _f

    return _f(witness, aligned, dim=dim)


def alignment(drift: Any, direction: Any, *, dim: str = "hidden") -> Any:
    from revstats.geometry import alignment as _f

    return _f(drift, direction, dim=dim)


def debiased_alignment(acts: Any, witness: Any, aligned: Any) -> Any:
    """Cross-fitted alignment (exact average over all probe splits); see DESIGN §4."""
    from revstats.geometry import debiased_alignment as _f

    return _f(acts, witness, aligned, splits="all")["debiased"]


def direction_stability(witness: Any, aligned: Any, *, n_resamples: int, confidence: float,
                        rng: int) -> dict:
    """Bootstrap and split-half stability of v_rev, as JSON-able floats."""
    import xarray as xr

    from revstats.geometry import direction_stability as _f

    dims = ("example", "hidden")
    res = _f(xr.DataArray(witness, dims=dims), xr.DataArray(aligned, dims=dims),
             n_resamples=n_resamples, confidence=confidence, rng=rng)
    vals = {k: float(res[k].values) for k in ("bootstrap_mean", "low", "high", "split_half")}
    return {
        "bootstrap_cosine": {"estimate": vals["bootstrap_mean"], "low": vals["low"],
                             "high": vals["high"], "confidence": confidence,
                             "method": str(res.attrs.get("interval", "percentile")),
                             "n_resamples": n_resamples},
        "split_half_cosine": vals["split_half"],
        "n_splits": int(res.attrs.get("n_splits", 0)) or None,
    }


def isotropic_cosine(d: int) -> Any:
    from revstats.nulls import isotropic_cosine as _f

    return _f(d)


def effective_isotropic_cosine(samples: Any) -> Any:
    from revstats.nulls import effective_isotropic_cosine as _f

    return _f(samples, kind="samples")


def covariance_matched_cosine(samples: Any, drift: Any, *, n_draws: int, rng: int) -> Any:
    from revstats.nulls import covariance_matched_cosine as _f

    return _f(samples, drift, kind="samples", n_draws=n_draws, rng=rng)


def permutation_cosine(witness: Any, aligned: Any, drift: Any, *, n_permutations: int,
                       rng: int) -> Any:
    from revstats.nulls import permutation_cosine as _f

    return _f(witness, aligned, drift, paired=True, n_permutations=n_permutations, rng=rng)


def exceedance(observed: Any, null: Any, *, q: float, adjust: Any, alpha: float) -> Any:
    from revstats.nulls import exceedance as _f

    return _f(observed, null, q=q, adjust=adjust, alpha=alpha)


def mean_ci(x: Any, *, confidence: float) -> Any:
    from revstats.intervals import mean_ci as _f

    return _f(x, confidence=confidence)


def proportion_ci(k: Any, n: Any, *, method: Any, confidence: float) -> Any:
    from revstats.intervals import proportion_ci as _f

    return _f(
        k, n, method=method, confidence=confidence
    )


def proportion_diff_ci(k1: Any, n1: Any, k2: Any, n2: Any, *, method: Any,
                       confidence: float) -> Any:
    from revstats.intervals import proportion_diff_ci as _f

    return _f(
        k1, n1, k2, n2, method=method, confidence=confidence
    )


def hedges_g(a: Any, b: Any, *, confidence: float) -> Any:
    from revstats.effects import hedges_g as _f

    return _f(a, b, confidence=confidence)


def mean_difference(a: Any, b: Any, *, confidence: float) -> Any:
    from revstats.effects import mean_difference as _f

    return _f(a, b, confidence=confidence)


def risk_ratio(k1: Any, n1: Any, k2: Any, n2: Any, *, confidence: float) -> Any:
    from revstats.effects import risk_ratio as _f

    return _f(k1, n1, k2, n2, confidence=confidence)


def noninferiority_test(treatment: Any, control: Any, *, margin: float, higher_is_better: bool,
                        confidence: float) -> Any:
    from revstats.effects import noninferiority_test as _f

    return _f(
        treatment, control, margin=margin, higher_is_better=higher_is_better,
        confidence=confidence,
    )


def jonckheere_terpstra(groups: Any) -> Any:
    from revstats.effects import jonckheere_terpstra as _f

    return _f(*groups, alternative="increasing")


def spearman_ci(x: Any, y: Any, *, n_resamples: int, confidence: float, rng: int) -> Any:
    from revstats.effects import spearman_ci as _f

    return _f(
        x, y, confidence=confidence, method="bca", n_resamples=n_resamples, rng=rng
    )


def gee_rate_comparison(outcome: Any, group: Any, cluster: Any, *, reference: str,
                        confidence: float) -> Any:
    from revstats.effects import gee_rate_comparison as _f

    return _f(
        outcome, group, cluster, reference=reference, confidence=confidence
    )
