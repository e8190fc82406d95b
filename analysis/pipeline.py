"""The analysis pipeline: one conforming store in, one `results.json`-shaped dict out.

The store is reduced lazily (dask) to small per-(run, step, layer) quantities, computed once,
and every statistic is then taken from the revstats core (through `analysis._core`). Each piece
runs only where the store has the data for it; what was skipped is listed with the reason.
The key layout is documented in docs/results-json.md and fixed by analysis/results.schema.json.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import dask
import dask.array
import numpy as np
import xarray as xr

from analysis import _core
from revstats._validation import check_choice, check_confidence
from revstats._version import __version__
from revstats.errors import RevstatsError

__all__ = [
    "NULL_TYPES",
    "RESULTS_SCHEMA",
    "AnalysisSettings",
    "MissingDataError",
    "analyze",
]

RESULTS_SCHEMA = 1
NULL_TYPES = ("isotropic", "effective_dimension", "covariance_matched", "permutation")
_ARM_ORDER = ("blocked", "control", "push")
_COMPARISONS = (("blocked", "control"), ("push", "control"))
PAPER_PRESET = "paper-main-track"


class MissingDataError(RevstatsError, ValueError):
    """The store lacks what an analysis needs; the message says what to add or pass."""


@dataclass(frozen=True)
class AnalysisSettings:
    """Everything that changes a number in results.json; recorded in its `settings`."""

    confidence: float = 0.95
    seed: int = 0
    n_resamples: int = 2000
    n_null_draws: int = 2000
    null_quantile: float = 0.99
    p_adjust: str = "holm"
    ni_margin_fraction: float = 0.2
    ni_margin: float | None = None

    def __post_init__(self) -> None:
        check_confidence(self.confidence)
        check_choice("p_adjust", self.p_adjust, ("holm", "bonferroni", "bh", "by"))
        if self.ni_margin is not None and not (np.isfinite(self.ni_margin)
                                               and self.ni_margin > 0):
            raise ValueError(f"`ni_margin` must be a positive number in task-metric units, or "
                             f"None for the default rule; got {self.ni_margin!r}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, got {self.seed!r}")
        for name in ("n_resamples", "n_null_draws"):
            if int(getattr(self, name)) < 100:
                raise ValueError(f"`{name}` must be at least 100, got {getattr(self, name)!r}")
        if not 0.5 < self.null_quantile < 1:
            raise ValueError(
                f"`null_quantile` must lie in (0.5, 1), e.g. 0.99; got {self.null_quantile!r}"
            )
        if not self.ni_margin_fraction > 0:
            raise ValueError(
                f"`ni_margin_fraction` must be positive (e.g. 0.2 = 20% of the control arm's "
                f"task change over fine-tuning); "
                f"got {self.ni_margin_fraction!r}"
            )


# ----------------------------------------------------------------------------- helpers
def _num(x: Any) -> float | None:
    """A JSON-safe float: NaN and infinities become null."""
    if x is None:
        return None
    v = float(np.asarray(x).reshape(-1)[0]) if np.ndim(x) else float(x)
    return v if math.isfinite(v) else None


def _nanmean(x: np.ndarray) -> float | None:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return _num(x.mean()) if x.size else None


def _interval(res: Any, *, n: Any, seed: int | None = None, **extra: Any) -> dict:
    out = {
        "estimate": _num(res.estimate),
        "low": _num(res.low),
        "high": _num(res.high),
        "confidence": _num(getattr(res, "confidence", None)),
        "method": str(res.method),
        "n": n,
    }
    p = getattr(res, "pvalue", None)
    if p is not None:
        out["pvalue"] = _num(p)
    if seed is not None:
        out["seed"] = int(seed)
    out.update(extra)
    return out


def _summary(values: np.ndarray, settings: AnalysisSettings) -> dict:
    """mean ± sd across runs (the paper's form) and a Student-t CI of the mean."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return {"mean": None, "sd": None, "low": None, "high": None, "n_runs": 0,
                "method": "t", "confidence": settings.confidence}
    ci = _core.mean_ci(v, confidence=settings.confidence) if n >= 2 else None
    return {
        "mean": _num(v.mean()),
        "sd": _num(v.std(ddof=1)) if n >= 2 else None,
        "low": _num(ci.low) if ci is not None else None,
        "high": _num(ci.high) if ci is not None else None,
        "n_runs": n,
        "method": str(ci.method) if ci is not None else "t",
        "confidence": settings.confidence,
    }


def _seeds(seed: int, names: Sequence[str]) -> dict[str, int]:
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1)[0]) for n, c in zip(names, children, strict=True)}


def _provenance(ds: xr.Dataset) -> dict:
    raw = ds.attrs.get("provenance", {})
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return {"raw": raw}
    return raw if isinstance(raw, dict) else {"raw": str(raw)}


def store_preset(ds: xr.Dataset) -> str | None:
    """The simulator preset named in the store's provenance, if any."""
    prov = _provenance(ds)
    for key in ("preset",):
        if isinstance(prov.get(key), str):
            return prov[key]
    cfg = prov.get("config")
    if isinstance(cfg, dict) and isinstance(cfg.get("preset"), str):
        return cfg["preset"]
    return None


_TARGET_CHUNK_BYTES = 64 * 2**20


def _coarsen_chunks(ds: xr.Dataset) -> xr.Dataset:
    """Merge the store's one-slab chunks into ~64 MB blocks (several runs, or steps of one run).

    A store keeps one (run, step) slab per chunk so appends are atomic; reducing it slab by
    slab costs ~20 dask tasks per slab, which dominates on small and medium stores. The merge
    is lazy (one read task per zarr chunk stays); memory stays bounded by the block size.
    """
    if not isinstance(ds["acts"].data, dask.array.Array):
        return ds
    slab = ds["acts"].dtype.itemsize * int(np.prod(
        [ds.sizes[d] for d in ("layer", "example", "hidden") if d in ds.sizes]))
    per_run = max(slab * ds.sizes["step"], 1)
    runs = int(max(1, min(ds.sizes["run"], _TARGET_CHUNK_BYTES // per_run)))
    # a run larger than the target is split along step, so no block outgrows ~64 MB (+ a slab)
    steps = int(max(1, min(ds.sizes["step"], _TARGET_CHUNK_BYTES // max(slab, 1))))
    out = ds.copy()
    out["acts"] = ds["acts"].chunk({"run": runs, "step": steps, "example": -1, "hidden": -1})
    for name in ("behavior", "task"):
        if name in ds and isinstance(ds[name].data, dask.array.Array):
            out[name] = ds[name].chunk(dict.fromkeys(ds[name].dims, -1))
    return out


# ----------------------------------------------------------------------------- validation
def _validate_analyze(ds: Any, layers: Sequence[str] | None) -> list[str]:
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"`ds` must be an xarray.Dataset (open it with revstats.open_store), "
                        f"got {type(ds).__name__}")
    if "acts" not in ds:
        raise MissingDataError("the store has no `acts` variable: it is not a revstats store")
    if "witness" not in ds:
        raise MissingDataError(
            "the store has no `witness` variable, so the reversion direction is undefined: "
            "write the pre-alignment model's activations with StoreWriter.write_witness"
        )
    steps = [int(s) for s in ds["step"].values]
    if 0 not in steps:
        raise MissingDataError("the store has no step 0 (the aligned model): drift is undefined")
    if len(steps) < 2:
        raise MissingDataError("the store holds only step 0: there is no drift to analyse")
    all_layers = [str(x) for x in ds["layer"].values]
    if layers is None:
        return all_layers
    layers = [layers] if isinstance(layers, str) else list(layers)
    unknown = [x for x in layers if x not in all_layers]
    if unknown:
        raise ValueError(f"`layers` names {unknown!r}, which the store lacks; "
                         f"its layers are {all_layers!r}")
    return layers


# ----------------------------------------------------------------------------- pipeline
def analyze(
    ds: xr.Dataset,
    *,
    layers: Sequence[str] | None = None,
    settings: AnalysisSettings | None = None,
    store_path: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Analyse a conforming store; return the results.json dict (see docs/results-json.md).

    Parameters
    ----------
    ds : xarray.Dataset
        A store opened with ``revstats.open_store`` (lazy is fine: it is reduced once).
    layers : sequence of str, optional
        Layers to analyse; all by default.
    settings : AnalysisSettings, optional
        Confidence, seed, resample counts, p-value adjustment, non-inferiority margin.
    store_path : str, optional
        Recorded in the results' `store` section.
    progress : callable, optional
        Called with a short description as each stage starts.
    """
    layers = _validate_analyze(ds, layers)
    settings = settings or AnalysisSettings()
    say = progress or (lambda _msg: None)
    skipped: list[dict] = []
    seeds = _seeds(settings.seed, ["stability", "covariance_matched",
                                   "permutation", "spearman"])

    # ---- one lazy graph, computed once ------------------------------------------------
    say("reducing the store (one pass)")
    # one sub-graph per layer, selected by scalar label: a list `.sel` becomes a dask `take`,
    # which (dask 2026.8) can lose keys when fused with the transposes below
    steps_all = [int(s) for s in ds["step"].values]
    step0 = steps_all.index(0)
    moving_sel = (slice(1, None) if step0 == 0 else
                  [j for j in range(len(steps_all)) if j != step0])
    ds = _coarsen_chunks(ds)
    lazy: dict = {"layers": {}}
    for layer in layers:
        acts = ds["acts"].sel(layer=layer, drop=True)
        witness = ds["witness"].sel(layer=layer, drop=True)
        aligned = acts.isel(step=step0, drop=True)
        # float64 accumulation without a float64 copy; a NaN (masked, incomplete) slab stays NaN
        mu = acts.mean("example", dtype=np.float64, skipna=False)
        drift = mu - mu.isel(step=step0, drop=True)
        direction = _core.reversion_direction(witness, aligned, dim="example")
        # step 0 has zero drift by definition: its cosine is undefined, not computed
        plug_in = _core.alignment(drift.isel(step=moving_sel), direction, dim="hidden")
        debiased = _core.debiased_alignment(acts.isel(step=moving_sel), witness, aligned)
        lazy["layers"][layer] = {
            "plug_in": plug_in, "debiased": debiased, "drift": drift,
            "aligned_pp": aligned.mean("run") if "run" in aligned.dims else aligned,
            "witness_pp": witness.mean("run") if "run" in witness.dims else witness,
        }
    has_behavior = "behavior" in ds
    if has_behavior:
        b = ds["behavior"]
        lazy["k"] = b.sum("example", skipna=True)
        lazy["n"] = b.notnull().sum("example")
        lazy["beh_final"] = b.isel(step=int(np.argmax(ds["step"].values)))  # (run, example)
    else:
        skipped.append({"piece": "behavior", "layer": None,
                        "reason": "the store has no `behavior` variable"})
    has_task = "task" in ds
    if not has_task:
        skipped.append({"piece": "task", "layer": None,
                        "reason": "the store has no `task` variable"})
    else:
        lazy["task"] = ds["task"]
    if "arm" in ds.coords:
        lazy["arm"] = ds["arm"].reset_coords(drop=True).variable  # may be lazy too
    # compute the plain (dask) arrays in canonical dim order, not the xarray objects: with
    # dask 2026.8 / xarray 2026.9, computing several unnamed DataArrays that share subgraphs
    # in one call can mix up their finalizers (or lose keys when the graph is optimised)
    order = ("run", "step", "example", "hidden")

    def _raw(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: _raw(x) for k, x in v.items()}
        if isinstance(v, xr.Variable):
            return v.data
        return v.transpose(*[d for d in order if d in v.dims]).data

    (computed,) = dask.compute(_raw(lazy))
    arm_values = computed.pop("arm", None)
    to_np = partial(np.asarray, dtype=float)
    moving_idx = [j for j in range(len(steps_all)) if j != step0]

    def _with_step0(a: Any) -> np.ndarray:
        out = np.full((a.shape[0], len(steps_all)), np.nan)
        out[:, moving_idx] = a
        return out

    c: dict[str, Any] = {k: to_np(v) for k, v in computed.items() if k != "layers"}
    c["layers"] = {
        layer: {k: (_with_step0(to_np(v)) if k in ("plug_in", "debiased") else to_np(v))
                for k, v in parts.items()}
        for layer, parts in computed["layers"].items()
    }

    runs = [str(r) for r in ds["run"].values]
    arms = ([str(a) for a in np.asarray(arm_values)] if arm_values is not None
            else ["all"] * len(runs))
    steps = [int(s) for s in ds["step"].values]
    hidden = int(ds.sizes["hidden"])
    final_step = max(steps)
    arm_names = sorted(set(arms), key=lambda a: (_ARM_ORDER.index(a) if a in _ARM_ORDER
                                                  else len(_ARM_ORDER), a))
    arm_idx = {a: np.array([i for i, x in enumerate(arms) if x == a]) for a in arm_names}

    # behavior and task are per (run, step): shared by every layer
    beh = task = None
    task_attrs: dict = {}
    if has_behavior:
        k_arr, n_arr = c["k"], c["n"]
        if np.all(n_arr == 0):
            has_behavior = False
            skipped.append({"piece": "behavior", "layer": None,
                            "reason": "`behavior` holds no observed outcome (all NaN)"})
        else:
            beh = (k_arr, n_arr, c["beh_final"])
    if has_task:
        task = c["task"]
        task_attrs = {k: (bool(v) if isinstance(v, (bool, np.bool_)) else str(v))
                      for k, v in ds["task"].attrs.items()
                      if k in ("metric", "higher_is_better")}

    # statsmodels' Holm adjustment calls gc.collect(), whose cost grows with every live object
    # (~10^6 after importing xarray/dask): freezing them first makes each collection cheap
    gc.freeze()
    try:
        headline, details = _per_layer(layers, c, runs, arms, arm_names, arm_idx, steps, hidden,
                                       final_step, beh, task, task_attrs, settings, seeds,
                                       skipped, say)
    finally:
        gc.unfreeze()

    prov = _provenance(ds)
    results = {
        "results_schema": RESULTS_SCHEMA,
        "revstats_version": __version__,
        "store": {
            "path": store_path,
            "source": str(ds.attrs.get("source", "unknown")),
            "revstats_schema": _num(ds.attrs.get("revstats_schema")),
            "preset": store_preset(ds),
            "provenance": prov,
            "sizes": {d: int(ds.sizes[d]) for d in ("run", "step", "layer", "example", "hidden")
                      if d in ds.sizes},
            "arms": {a: int(len(i)) for a, i in arm_idx.items()},
            "steps": steps,
        },
        "settings": {**asdict(settings), "layers": layers, "null_types": list(NULL_TYPES),
                     "seeds": seeds},
        "headline": headline,
        "details": details,
        "skipped": skipped,
    }
    from analysis.paper import paper_table

    results["paper_table"] = paper_table(results)
    return results


def _per_layer(layers, c, runs, arms, arm_names, arm_idx, steps, hidden, final_step, beh, task,
               task_attrs, settings, seeds, skipped, say):
    headline: dict = {"layers": {}}
    details: dict = {"layers": {}}
    for layer in layers:
        say(f"layer {layer}: alignment and nulls")
        cl = c["layers"][layer]
        a_pi, a_db = cl["plug_in"], cl["debiased"]  # (run, step)
        dr = cl["drift"]  # (run, step, hidden)
        h_layer, d_layer = _layer_arms(
            layer, a_pi, a_db, dr, cl, arm_names, arm_idx, steps, hidden, final_step,
            beh, task, task_attrs, settings, seeds, skipped)
        say(f"layer {layer}: effects, trend, correlation, stability")
        effects, eff_details = _effects(a_pi, steps, final_step, arm_idx, beh, task, task_attrs,
                                        settings, skipped, layer)
        h_layer["effects"] = effects
        d_layer.update(eff_details)
        d_layer["trend"] = _trend(a_pi, steps, final_step, arm_idx, beh, skipped, layer)
        d_layer["spearman"] = _spearman(a_pi, steps, final_step, beh, settings, seeds,
                                        skipped, layer)
        d_layer["direction_stability"] = _stability(
            cl["witness_pp"], cl["aligned_pp"],
            settings, seeds)
        d_layer["per_run"] = {
            "run": runs, "arm": arms, "steps": steps,
            "alignment": [[_num(x) for x in row] for row in a_pi],
            "alignment_debiased": [[_num(x) for x in row] for row in a_db],
            "behavior_rate": ([[_num(x) for x in row] for row in _rates(beh)]
                              if beh is not None else None),
        }
        headline["layers"][layer] = h_layer
        details["layers"][layer] = d_layer

    return headline, details


def _rates(beh: tuple) -> np.ndarray:
    k, n = beh[0], beh[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, k / np.where(n > 0, n, 1), np.nan)


def _layer_arms(layer, a_pi, a_db, dr, c, arm_names, arm_idx, steps, hidden, final_step,
                beh, task, task_attrs, settings, seeds, skipped):
    s_final = steps.index(final_step)
    shared = _shared_nulls(layer, dr, steps, arm_idx, hidden, skipped)
    arms_h: dict = {}
    arms_d: dict = {}
    for arm in arm_names:
        idx = arm_idx[arm]
        traj = []
        traj_db = []
        for j, s in enumerate(steps):
            traj.append({"step": s, **_summary(a_pi[idx, j], settings)})
            traj_db.append({"step": s, **_summary(a_db[idx, j], settings)})
        null_h, null_d = _arm_nulls(layer, a_pi, dr, c, idx, steps, shared, settings, seeds,
                                    skipped)
        entry = {
            "n_runs": int(len(idx)),
            "alignment": traj,
            "alignment_debiased": traj_db,
            "null_p99": null_h,
            "final_alignment": {"step": final_step, **_summary(a_pi[idx, s_final], settings)},
            "final_alignment_debiased": {"step": final_step,
                                         **_summary(a_db[idx, s_final], settings)},
            "behavior_rate": None,
            "task": None,
        }
        if beh is not None:
            entry["behavior_rate"] = _behavior_summary(beh, idx, s_final, final_step, settings)
        if task is not None:
            entry["task"] = {"step": final_step, **_summary(task[idx, s_final], settings),
                             **task_attrs}
        arms_h[arm] = entry
        arms_d[arm] = {"nulls": null_d}
    return {"arms": arms_h}, {"arms": arms_d}


_NULL_METHODS = {
    "isotropic": "isotropic exact: (cos+1)/2 ~ Beta((d-1)/2, (d-1)/2)",
    "effective_dimension": "isotropic with d_eff = (tr S)^2 / tr(S^2) of the drift covariance "
                           "(run-to-run residuals around each arm-step mean)",
    "covariance_matched": "Monte Carlo: directions ~ N(0, covariance of the aligned model's "
                          "probe activations)",
    "permutation": "Monte Carlo: v_rev rebuilt with random witness/aligned swaps per probe "
                   "(paired sign flips)",
}


def _shared_nulls(layer, dr, steps, arm_idx, hidden, skipped) -> dict:
    """Nulls that do not depend on the run-step pair: one object per layer."""
    out: dict = {"isotropic": _core.isotropic_cosine(hidden)}
    moving = [j for j, s in enumerate(steps) if s != 0]
    parts = []
    for idx in arm_idx.values():
        block = dr[np.ix_(idx, moving)]
        if block.shape[0] >= 2:
            parts.append((block - np.nanmean(block, axis=0, keepdims=True)).reshape(-1, dr.shape[-1]))
    resid = np.concatenate(parts) if parts else np.empty((0, dr.shape[-1]))
    resid = resid[np.all(np.isfinite(resid), axis=1)]
    if resid.shape[0] < 3 or not np.any(resid):
        skipped.append({"piece": "null:effective_dimension", "layer": layer,
                        "reason": "fewer than 2 runs per arm: no run-to-run drift covariance"})
    else:
        try:
            out["effective_dimension"] = _core.effective_isotropic_cosine(resid)
        except ValueError as err:
            skipped.append({"piece": "null:effective_dimension", "layer": layer,
                            "reason": str(err)})
    return out


def _arm_nulls(layer, a_pi, dr, cl, idx, steps, shared, settings, seeds, skipped):
    """Exceedance of every null for the arm's (run, step > 0) pairs; headline + bands."""
    moving = np.array([j for j, s in enumerate(steps) if s != 0])
    obs = a_pi[np.ix_(idx, moving)].copy()
    drift = dr[np.ix_(idx, moving)].copy()
    bad = ~np.isfinite(obs) | ~np.all(np.isfinite(drift), axis=-1)
    bad |= np.linalg.norm(np.nan_to_num(drift), axis=-1) == 0
    obs[bad] = np.nan
    drift[bad] = 0.0
    drift[bad, 0] = 1.0  # placeholder direction for pairs that are not counted
    nulls = dict(shared)
    aligned_pp, witness_pp = cl["aligned_pp"], cl["witness_pp"]
    if aligned_pp.shape[0] >= 3 and np.isfinite(aligned_pp).all():
        # a null that is undefined for this layer (e.g. probes that all share one activation,
        # as an embedding layer read at one token) is skipped with the core's reason
        try:
            nulls["covariance_matched"] = _core.covariance_matched_cosine(
                aligned_pp, drift, n_draws=settings.n_null_draws, rng=seeds["covariance_matched"])
        except ValueError as err:
            skipped.append({"piece": "null:covariance_matched", "layer": layer, "reason": str(err)})
        try:
            nulls["permutation"] = _core.permutation_cosine(
                witness_pp, aligned_pp, drift, n_permutations=settings.n_null_draws,
                rng=seeds["permutation"])
        except ValueError as err:
            skipped.append({"piece": "null:permutation", "layer": layer, "reason": str(err)})
    else:
        skipped.append({"piece": "null:covariance_matched,permutation", "layer": layer,
                        "reason": "fewer than 3 probes or a non-finite aligned slab"})
    head: dict = {}
    det: dict = {}
    step_arr = np.asarray(steps)[moving]
    for name, null in nulls.items():
        ex = _core.exceedance(obs, null, q=settings.null_quantile, adjust=settings.p_adjust,
                              alpha=1 - settings.confidence)
        thr = np.broadcast_to(np.asarray(ex.threshold, float), obs.shape)
        above = np.asarray(ex.above, bool)
        p_adj = np.asarray(ex.pvalue_adjusted, float)
        valid = np.isfinite(obs)
        entry = {
            "quantile": settings.null_quantile,
            "p99": _nanmean(thr[valid]),
            "p99_min": _num(thr[valid].min()) if valid.any() else None,
            "p99_max": _num(thr[valid].max()) if valid.any() else None,
            "n_above": int(ex.n_above),
            "n_pairs": int(ex.n_pairs),
            "first_step": int(step_arr[0]) if step_arr.size else None,
            "n_above_first_step": int(above[:, 0].sum()) if step_arr.size else 0,
            "n_runs_first_step": int(valid[:, 0].sum()) if step_arr.size else 0,
            "max_adjusted_pvalue": _num(np.nanmax(p_adj)) if valid.any() else None,
            "n_significant_adjusted": int(np.sum(np.asarray(ex.reject, bool))),
            "p_adjust": settings.p_adjust,
            "method": f"{_NULL_METHODS[name]} [{null.method}]",
        }
        if name == "isotropic":
            entry["d"] = _num(null.d)
        elif name == "effective_dimension":
            entry["d"] = _num(null.attrs.get("d_eff", null.d))
        else:
            entry["n_draws"] = settings.n_null_draws
            entry["seed"] = seeds[name]
        head[name] = entry
        bands = []
        for j, s in enumerate(steps):
            row: dict[str, Any] = {"step": int(s)}
            col = np.nonzero(moving == j)[0]
            for qq in (0.5, 0.95, 0.99):
                key = f"q{int(round(qq * 100))}"
                if col.size == 0:
                    row[key] = None
                    continue
                qv = np.broadcast_to(np.asarray(null.quantile(qq), float), obs.shape)[:, col[0]]
                row[key] = _nanmean(qv[valid[:, col[0]]])
            bands.append(row)
        det[name] = {"bands": bands}
    return head, det


def _behavior_summary(beh, idx, s_final, final_step, settings) -> dict:
    k, n = beh[0], beh[1]
    rates = _rates(beh)[idx, s_final]
    base = _summary(rates, settings)
    kk, nn = float(np.nansum(k[idx, s_final])), float(np.nansum(n[idx, s_final]))
    pooled = _core.proportion_ci(kk, nn, method="wilson", confidence=settings.confidence)
    return {
        "step": final_step,
        "mean": base["mean"], "sd": base["sd"],
        "low": _num(pooled.low), "high": _num(pooled.high),
        "n_runs": base["n_runs"], "k": int(kk), "n": int(nn),
        "method": f"{pooled.method} (pooled over runs x probes)",
        "confidence": settings.confidence,
        "run_mean_ci": {"low": base["low"], "high": base["high"], "method": base["method"]},
    }


def _effects(a_pi, steps, final_step, arm_idx, beh, task, task_attrs, settings, skipped, layer):
    s_final = steps.index(final_step)
    out: dict = {}
    det: dict = {}
    conf = settings.confidence
    for treat, ctrl in _COMPARISONS:
        key = f"{treat}_vs_{ctrl}"
        if treat not in arm_idx or ctrl not in arm_idx:
            skipped.append({"piece": f"effects:{key}", "layer": layer,
                            "reason": f"the store has no `{treat}` or `{ctrl}` arm"})
            continue
        it, ic = arm_idx[treat], arm_idx[ctrl]
        at, ac = a_pi[it, s_final], a_pi[ic, s_final]
        at, ac = at[np.isfinite(at)], ac[np.isfinite(ac)]
        eff: dict = {}
        if at.size >= 2 and ac.size >= 2:
            eff["final_alignment_difference"] = _interval(
                _core.mean_difference(at, ac, confidence=conf), n=[int(at.size), int(ac.size)])
            eff["final_alignment_hedges_g"] = _interval(
                _core.hedges_g(at, ac, confidence=conf), n=[int(at.size), int(ac.size)])
        else:
            skipped.append({"piece": f"effects:{key}:alignment", "layer": layer,
                            "reason": "fewer than 2 runs in an arm"})
        if beh is not None:
            k, n = beh[0], beh[1]
            k1, n1 = float(np.nansum(k[it, s_final])), float(np.nansum(n[it, s_final]))
            k2, n2 = float(np.nansum(k[ic, s_final])), float(np.nansum(n[ic, s_final]))
            eff["behavior_risk_difference"] = _interval(
                _core.proportion_diff_ci(k1, n1, k2, n2, method="newcombe", confidence=conf),
                n=[int(n1), int(n2)])
            gee = _gee(beh[2], it, ic, treat, ctrl, conf, skipped, layer, key)
            if gee is not None:
                eff["behavior_gee_odds_ratio"] = gee
            if k1 > 0 and k2 > 0:
                eff["behavior_risk_ratio"] = _interval(
                    _core.risk_ratio(k1, n1, k2, n2, confidence=conf), n=[int(n1), int(n2)])
            else:
                skipped.append({"piece": f"effects:{key}:risk_ratio", "layer": layer,
                                "reason": "zero events in an arm: the log risk ratio is "
                                          "undefined"})
        if task is not None:
            tt, tc = task[it, s_final], task[ic, s_final]
            tt, tc = tt[np.isfinite(tt)], tc[np.isfinite(tc)]
            if tt.size >= 2 and tc.size >= 2:
                hib = bool(task_attrs.get("higher_is_better", False))
                margin, rule = _ni_margin(task, ic, s_final, steps, settings)
                ni = _core.noninferiority_test(tt, tc, margin=margin, higher_is_better=hib,
                                               confidence=conf)
                eff["task_noninferiority"] = _interval(
                    ni, n=[int(tt.size), int(tc.size)], margin=_num(margin),
                    margin_rule=rule,
                    higher_is_better=hib,
                    scale="treatment minus control, oriented so that larger is better",
                    noninferior=bool((getattr(ni, "extra", None) or {}).get("noninferior")))
        out[key] = eff
        det[key] = {"treatment": treat, "control": ctrl}
    return out, {"effects": det}


def _ni_margin(task, ic, s_final, steps, settings) -> tuple[float, str]:
    """The non-inferiority margin: stated, or a fraction of what fine-tuning gained."""
    if settings.ni_margin is not None:
        return float(settings.ni_margin), "stated (--ni-margin)"
    f = settings.ni_margin_fraction
    start, end = task[ic, steps.index(0)], task[ic, s_final]
    gain = abs(float(np.nanmean(end) - np.nanmean(start))) if np.isfinite(start).any() else 0.0
    if gain > 0:
        return f * gain, f"{f:g} x |control task change from step 0 to {steps[s_final]}|"
    return f * abs(float(np.nanmean(end))), f"{f:g} x |control mean| (the task did not change)"


def _gee(per_probe, it, ic, treat, ctrl, conf, skipped, layer, key):
    """Cluster-robust (runs as clusters) odds ratio of the final-step behavior rate."""
    if per_probe.shape[1] < 2:
        return None
    rows = np.concatenate([it, ic])
    y = per_probe[rows]
    group = np.repeat(np.array([treat] * len(it) + [ctrl] * len(ic)), y.shape[1])
    cluster = np.repeat(rows, y.shape[1])
    y = y.ravel()
    ok = np.isfinite(y)
    try:
        r = _core.gee_rate_comparison(y[ok], group[ok], cluster[ok], reference=ctrl,
                                      confidence=conf)
    except (ValueError, np.linalg.LinAlgError) as err:
        skipped.append({"piece": f"effects:{key}:gee", "layer": layer, "reason": str(err)})
        return None
    return _interval(r, n=[int(len(it)), int(len(ic))], unit="runs (clusters)")


def _trend(a_pi, steps, final_step, arm_idx, beh, skipped, layer):
    present = [a for a in _ARM_ORDER if a in arm_idx]
    if len(present) < 2:
        skipped.append({"piece": "trend", "layer": layer,
                        "reason": "fewer than two of the arms blocked, control, push"})
        return None
    s_final = steps.index(final_step)
    out: dict[str, Any] = {"order": present}
    for name, mat in (("final_alignment", a_pi),
                      ("behavior_rate", _rates(beh) if beh is not None else None)):
        if mat is None:
            continue
        groups = [mat[arm_idx[a], s_final] for a in present]
        groups = [g[np.isfinite(g)] for g in groups]
        r = _core.jonckheere_terpstra(groups)
        out[name] = {"statistic": _num(r.statistic), "tau": _num(r.estimate),
                     "pvalue": _num(r.pvalue),
                     "method": str(r.method), "alternative": "increasing in the order",
                     "n": [int(g.size) for g in groups]}
    return out


def _spearman(a_pi, steps, final_step, beh, settings, seeds, skipped, layer):
    if beh is None:
        skipped.append({"piece": "spearman", "layer": layer,
                        "reason": "the store has no behavior data"})
        return None
    s_final = steps.index(final_step)
    x, y = a_pi[:, s_final], _rates(beh)[:, s_final]
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 4 or np.ptp(y[ok]) == 0 or np.ptp(x[ok]) == 0:
        skipped.append({"piece": "spearman", "layer": layer,
                        "reason": "fewer than 4 runs or a constant variable"})
        return None
    r = _core.spearman_ci(x[ok], y[ok], n_resamples=settings.n_resamples,
                          confidence=settings.confidence, rng=seeds["spearman"])
    return _interval(r, n=int(ok.sum()), seed=seeds["spearman"],
                     x="final alignment", y="final behavior rate", unit="run")


def _stability(witness_pp, aligned_pp, settings, seeds):
    r = _core.direction_stability(np.asarray(witness_pp, float), np.asarray(aligned_pp, float),
                                  n_resamples=settings.n_resamples,
                                  confidence=settings.confidence, rng=seeds["stability"])
    return {**r, "seed": seeds["stability"]}
