"""The one door from `analysis` into the revstats core.

Every statistic the pipeline reports is computed by the core (`revstats.geometry`,
`revstats.nulls`, `revstats.intervals`, `revstats.effects`); this module only adapts call
shapes (xarray in, plain floats out) so the pipeline reads as a composition of named steps.
Where a core function has not landed yet, `analysis._interim` stands in and the result's
`method` string says so; those stand-ins are removed as the core lands.
"""

from __future__ import annotations

import importlib
from typing import Any

_INTERIM_USED: set[str] = set()


def _resolve(module: str, name: str) -> Any:
    try:
        mod = importlib.import_module(module)
        return getattr(mod, name)
    except (ImportError, AttributeError):
        from analysis import _interim

        _INTERIM_USED.add(f"{module}.{name}")
        return getattr(_interim, name)


def interim_used() -> list[str]:
    """Core functions that were replaced by interim stand-ins in this process."""
    return sorted(_INTERIM_USED)


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


def exceedance(observed: Any, null: Any, *, q: float, adjust: str, alpha: float) -> Any:
    from revstats.nulls import exceedance as _f

    return _f(observed, null, q=q, adjust=adjust, alpha=alpha)


def mean_ci(x: Any, *, confidence: float) -> Any:
    return _resolve("revstats.intervals", "mean_ci")(x, confidence=confidence)


def proportion_ci(k: Any, n: Any, *, method: str, confidence: float) -> Any:
    return _resolve("revstats.intervals", "proportion_ci")(
        k, n, method=method, confidence=confidence
    )


def proportion_diff_ci(k1: Any, n1: Any, k2: Any, n2: Any, *, method: str, confidence: float) -> Any:
    return _resolve("revstats.intervals", "proportion_diff_ci")(
        k1, n1, k2, n2, method=method, confidence=confidence
    )


def bootstrap_ci(data: Any, statistic: Any, *, method: str, n_resamples: int,
                 confidence: float, rng: int) -> Any:
    return _resolve("revstats.intervals", "bootstrap_ci")(
        data, statistic, method=method, n_resamples=n_resamples, confidence=confidence, rng=rng
    )


def hedges_g(a: Any, b: Any, *, confidence: float) -> Any:
    return _resolve("revstats.effects", "hedges_g")(a, b, confidence=confidence)


def mean_difference(a: Any, b: Any, *, confidence: float) -> Any:
    return _resolve("revstats.effects", "mean_difference")(a, b, confidence=confidence)


def risk_ratio(k1: Any, n1: Any, k2: Any, n2: Any, *, confidence: float) -> Any:
    return _resolve("revstats.effects", "risk_ratio")(k1, n1, k2, n2, confidence=confidence)


def noninferiority_test(treatment: Any, control: Any, *, margin: float, higher_is_better: bool,
                        confidence: float) -> Any:
    return _resolve("revstats.effects", "noninferiority_test")(
        treatment, control, margin=margin, higher_is_better=higher_is_better,
        confidence=confidence,
    )


def jonckheere_terpstra(groups: Any) -> Any:
    return _resolve("revstats.effects", "jonckheere_terpstra")(*groups, alternative="increasing")


def spearman_ci(x: Any, y: Any, *, n_resamples: int, confidence: float, rng: int) -> Any:
    return _resolve("revstats.effects", "spearman_ci")(
        x, y, confidence=confidence, method="bca", n_resamples=n_resamples, rng=rng
    )


def gee_rate_comparison(outcome: Any, group: Any, cluster: Any, *, reference: str,
                        confidence: float) -> Any:
    return _resolve("revstats.effects", "gee_rate_comparison")(
        outcome, group, cluster, reference=reference, confidence=confidence
    )
