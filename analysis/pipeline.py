"""The analysis pipeline: one conforming store in, one `results.json`-shaped dict out.

Two halves. `reduce_store` reduces the store lazily (dask) to small per-(run, step, layer)
arrays, computed once, and returns them as one frozen `Context`. Then named stages, each a
function of the context (and a layer), return their part of results.json:

    alignment_stage   trajectories and final alignment per arm (plug-in and cross-fitted)
    null_stage        exceedance of every null per arm, and the null bands
    behavior_stage   final-step behavior rate per arm        (layer-independent)
    task_stage        final-step task metric per arm           (layer-independent)
    effects_stage     blocked/push vs control contrasts
    trend_stage       ordered-alternative test over the arms
    spearman_stage    alignment vs behavior across runs
    stability_stage   bootstrap / split-half stability of v_rev
    per_run_stage     the per-run matrices the figures draw

`layer_stages` composes them for one layer; `analyze` runs it for every layer and adds the
store and settings sections. Every statistic is computed by the revstats core; a piece that
the store has no data for is skipped and listed (`skipped`) with the reason.
The key layout is documented in docs/results-json.md and fixed by analysis/results.schema.json.
"""

from __future__ import annotations

import copy
import gc
import itertools
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import dask
import dask.array
import numpy as np
import xarray as xr

from revstats import effects, geometry, intervals, nulls
from revstats._validation import check_choice, check_confidence
from revstats._version import __version__
from revstats.analysis import _onepass
from revstats.errors import RevstatsError
from revstats.geometry import alignment_ci
from revstats.nulls import AdjustMethod

if TYPE_CHECKING:
    from revstats.analysis.frames import Results

__all__ = [
    "NULL_TYPES",
    "RESULTS_SCHEMA",
    "AnalysisSettings",
    "Behaviour",
    "Context",
    "LayerArrays",
    "MissingDataError",
    "Task",
    "alignment_stage",
    "analyze",
    "behaviour_stage",
    "effects_stage",
    "layer_stages",
    "null_stage",
    "per_run_stage",
    "reduce_store",
    "spearman_stage",
    "stability_stage",
    "task_stage",
    "trend_stage",
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
    p_adjust: AdjustMethod = "holm"
    ni_margin_fraction: float = 0.2
    ni_margin: float | None = None
    headline_layer: str | None = None

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
    ci = intervals.mean_ci(v, confidence=settings.confidence) if n >= 2 else None
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
#: reduce the store with the one-pass slab reducer (analysis/_onepass.py) when it applies
USE_ONEPASS = True


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


# ----------------------------------------------------------------------------- the context
@dataclass(frozen=True)
class LayerArrays:
    """One layer of the reduced store (NumPy, computed once)."""

    plug_in: np.ndarray  # (run, step) cos(drift, v_rev); NaN at step 0 (zero drift)
    debiased: np.ndarray  # (run, step) cross-fitted cosine; NaN at step 0
    drift: np.ndarray  # (run, step, hidden) probe-mean drift from step 0
    aligned: np.ndarray  # (example, hidden) aligned model's probe activations (mean over runs)
    witness: np.ndarray  # (example, hidden) witness's probe activations (mean over runs)
    # (run, step > 0, example, example_2, gram) probe Gram matrices for the crossed-design
    # alignment interval (revstats.geometry.alignment_ci); None if the store has too few probes
    align_products: np.ndarray | None = None
    align_form: str = "gram"
    # the same interval's inputs reduced as the slabs stream by (analysis/_onepass.py, Gram
    # form): per (run, step > 0) "full", "uvar", "used" (run, moving, estimator) and per arm
    # "v2" (moving, estimator); replaces `align_products` (whose n x n Grams per (run, step)
    # grow with the store)
    align_terms: dict | None = None


@dataclass(frozen=True)
class Behaviour:
    """Per-(run, step) behavior counts and the final step's per-probe outcomes."""

    k: np.ndarray  # (run, step) events
    n: np.ndarray  # (run, step) observed outcomes
    final: np.ndarray  # (run, example) outcome per probe at the final step (NaN: missing)

    def rates(self) -> np.ndarray:
        """(run, step) event rate; NaN where nothing was observed."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, self.k / np.where(self.n > 0, self.n, 1), np.nan)


@dataclass(frozen=True)
class Task:
    values: np.ndarray  # (run, step) task metric
    attrs: Mapping[str, Any]  # `metric`, `higher_is_better` as recorded in the store


@dataclass(frozen=True)
class Context:
    """The reduced store and the settings: everything a stage reads."""

    layers: tuple[str, ...]
    runs: tuple[str, ...]
    arms: tuple[str, ...]  # the arm of each run ("all" when the store has no `arm`)
    steps: tuple[int, ...]
    hidden: int
    arrays: Mapping[str, LayerArrays]
    behaviour: Behaviour | None
    task: Task | None
    settings: AnalysisSettings
    seeds: Mapping[str, int]

    @property
    def final_step(self) -> int:
        return max(self.steps)

    @property
    def s_final(self) -> int:
        """Index of the final step."""
        return self.steps.index(self.final_step)

    @property
    def moving(self) -> np.ndarray:
        """Indices of the steps after step 0 (where drift, and so alignment, is defined)."""
        return np.array([j for j, s in enumerate(self.steps) if s != 0], dtype=int)

    @cached_property
    def arm_names(self) -> tuple[str, ...]:
        """Arms present, in the order blocked, control, push, then others by name."""
        return tuple(sorted(set(self.arms), key=lambda a: (
            _ARM_ORDER.index(a) if a in _ARM_ORDER else len(_ARM_ORDER), a)))

    @cached_property
    def arm_idx(self) -> dict[str, np.ndarray]:
        """Run indices of each arm."""
        return {a: np.array([i for i, x in enumerate(self.arms) if x == a])
                for a in self.arm_names}


class Skipped(list):
    """The `skipped` section: pieces that did not run, each with its reason (in run order)."""

    def add(self, piece: str, layer: str | None, reason: str) -> None:
        self.append({"piece": piece, "layer": layer, "reason": reason})


# ----------------------------------------------------------------------------- reduction
def _lazy_layer(ds: xr.Dataset, layer: str, step0: int, moving_sel: Any) -> dict:
    """One layer's lazy graph: plug-in and cross-fitted alignment, drift, probe slabs."""
    acts = ds["acts"].sel(layer=layer, drop=True)
    witness = ds["witness"].sel(layer=layer, drop=True)
    aligned = acts.isel(step=step0, drop=True)
    # float64 accumulation without a float64 copy; a NaN (masked, incomplete) slab stays NaN
    mu = acts.mean("example", dtype=np.float64, skipna=False)
    drift = mu - mu.isel(step=step0, drop=True)
    direction = geometry.reversion_direction(witness, aligned, dim="example")
    # step 0 has zero drift by definition: its cosine is undefined, not computed
    plug_in = geometry.alignment(drift.isel(step=moving_sel), direction, dim="hidden")
    debiased = geometry.debiased_alignment(acts.isel(step=moving_sel), witness, aligned,
                                           splits="all")["debiased"]
    out = {
        "plug_in": plug_in, "debiased": debiased, "drift": drift,
        "aligned": aligned.mean("run") if "run" in aligned.dims else aligned,
        "witness": witness.mean("run") if "run" in witness.dims else witness,
    }
    if acts.sizes["example"] >= 4 and acts.sizes["run"] >= 2:
        # probes shared by witness, aligned and every run: the crossed-design interval
        prods = alignment_ci.alignment_products(acts.isel(step=moving_sel), witness, aligned)
        out["align_products"] = prods
    return out


def _compute(lazy: dict) -> dict:
    """Compute the nested dict of lazy arrays in ONE dask call; NumPy out."""
    # compute the plain (dask) arrays in canonical dim order, not the xarray objects: with
    # dask 2026.8 / xarray 2026.9, computing several unnamed DataArrays that share subgraphs
    # in one call can mix up their finalizers (or lose keys when the graph is optimised)
    order = ("run", "step", "example", "hidden")

    def _raw(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: _raw(x) for k, x in v.items()}
        if isinstance(v, xr.Variable):
            return v.data
        return v.transpose(*[d for d in order if d in v.dims], ...).data

    (computed,) = dask.compute(_raw(lazy))
    return computed


def reduce_store(ds: xr.Dataset, layers: Sequence[str], settings: AnalysisSettings,
                 skipped: Skipped) -> Context:
    """Reduce the store to the `Context` every stage reads (one dask compute).

    The one place that touches the store's arrays: a faster reduction replaces this function
    and nothing else. Missing behavior/task data are recorded in `skipped`.
    """
    # one sub-graph per layer, selected by scalar label: a list `.sel` becomes a dask `take`,
    # which (dask 2026.8) can lose keys when fused with the transposes below
    steps = [int(s) for s in ds["step"].values]
    step0 = steps.index(0)
    moving_sel = (slice(1, None) if step0 == 0 else
                  [j for j in range(len(steps)) if j != step0])
    onepass = _onepass.eligible(ds) if USE_ONEPASS else False
    if onepass:  # one overlapped pass over the slabs (analysis/_onepass.py)
        reduced = _onepass.reduce_layers(ds, layers, step0,
                                         [j for j in range(len(steps)) if j != step0])
    ds = _coarsen_chunks(ds)
    lazy: dict = {"layers": {} if onepass else {
        layer: _lazy_layer(ds, layer, step0, moving_sel) for layer in layers}}
    if "behavior" in ds:
        b = ds["behavior"]
        lazy["k"] = b.sum("example", skipna=True)
        lazy["n"] = b.notnull().sum("example")
        lazy["beh_final"] = b.isel(step=int(np.argmax(ds["step"].values)))  # (run, example)
    else:
        skipped.add("behavior", None, "the store has no `behavior` variable")
    if "task" in ds:
        lazy["task"] = ds["task"]
    else:
        skipped.add("task", None, "the store has no `task` variable")
    if "arm" in ds.coords:
        lazy["arm"] = ds["arm"].reset_coords(drop=True).variable  # may be lazy too
    c = _compute(lazy)
    if onepass:
        c["layers"] = reduced["layers"]
    moving_idx = [j for j in range(len(steps)) if j != step0]

    def with_step0(a: Any) -> np.ndarray:
        out = np.full((a.shape[0], len(steps)), np.nan)
        out[:, moving_idx] = np.asarray(a, dtype=float)
        return out

    arrays = {
        layer: LayerArrays(
            plug_in=with_step0(p["plug_in"]), debiased=with_step0(p["debiased"]),
            drift=np.asarray(p["drift"], float), aligned=np.asarray(p["aligned"], float),
            witness=np.asarray(p["witness"], float),
            align_products=(np.asarray(p["align_products"], float) if "align_products" in p
                            else None),
            align_form=str(p.get("align_form") or lazy["layers"][layer]["align_products"]
                           .attrs["form"]) if "align_products" in p else "gram",
            align_terms=p.get("align_terms"))
        for layer, p in c["layers"].items()
    }
    behaviour = None
    if "k" in c:
        if np.all(np.asarray(c["n"], float) == 0):
            skipped.add("behavior", None, "`behavior` holds no observed outcome (all NaN)")
        else:
            behaviour = Behaviour(*(np.asarray(c[key], float) for key in ("k", "n", "beh_final")))
    task = None
    if "task" in c:
        task = Task(np.asarray(c["task"], float),
                    {k: (bool(v) if isinstance(v, (bool, np.bool_)) else str(v))
                     for k, v in ds["task"].attrs.items()
                     if k in ("metric", "higher_is_better")})
    runs = tuple(str(r) for r in ds["run"].values)
    arm_values = c.get("arm")
    arms = (tuple(str(a) for a in np.asarray(arm_values)) if arm_values is not None
            else ("all",) * len(runs))
    return Context(layers=tuple(layers), runs=runs, arms=arms, steps=tuple(steps),
                   hidden=int(ds.sizes["hidden"]), arrays=arrays, behaviour=behaviour,
                   task=task, settings=settings,
                   seeds=_seeds(settings.seed, ["stability", "covariance_matched",
                                                "permutation", "spearman"]))


# ----------------------------------------------------------------------------- pipeline
def analyze(
    ds: xr.Dataset,
    *,
    layers: Sequence[str] | None = None,
    settings: AnalysisSettings | None = None,
    store_path: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Results:
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
    head_layer, head_rule = headline_layer(layers, settings)
    say = progress or (lambda _msg: None)
    skipped = Skipped()
    say("reducing the store (one pass)")
    ctx = reduce_store(ds, layers, settings, skipped)
    headline: dict = {"layers": {}}
    details: dict = {"layers": {}}
    # statsmodels' Holm adjustment calls gc.collect(), whose cost grows with every live object
    # (~10^6 after importing xarray/dask): freezing them first makes each collection cheap
    gc.freeze()
    try:
        shared = {"behavior_rate": behaviour_stage(ctx), "task": task_stage(ctx)}
        for layer in ctx.layers:
            headline["layers"][layer], details["layers"][layer] = layer_stages(
                ctx, layer, copy.deepcopy(shared), skipped, say)
    finally:
        gc.unfreeze()
    results = {
        "results_schema": RESULTS_SCHEMA,
        "revstats_version": __version__,
        "store": _store_section(ds, ctx, store_path),
        "settings": {**asdict(settings), "layers": list(ctx.layers),
                     "null_types": list(NULL_TYPES), "seeds": dict(ctx.seeds)},
        "headline": headline,
        "details": details,
        "skipped": list(skipped),
        "headline_layer": {"layer": head_layer, "rule": head_rule},
        "multiplicity": multiplicity_stage(headline, details, settings),
    }
    from revstats.analysis.frames import Results
    from revstats.analysis.paper import paper_table

    results["paper_table"] = paper_table(results)
    return Results(results)  # the dict itself, with .to_dataframe() / .to_csv() / .plot()


EMBEDDING_LAYERS = ("hidden_states.0",)


def headline_layer(layers: Sequence[str], settings: AnalysisSettings) -> tuple[str, str]:
    """The layer the report leads with, and the rule that chose it (stated in the report)."""
    if settings.headline_layer is not None:
        if settings.headline_layer not in layers:
            raise ValueError(f"`headline_layer` {settings.headline_layer!r} is not among the "
                             f"analysed layers {list(layers)!r}; pass one of them "
                             "(--headline-layer) or add it to --layer")
        return settings.headline_layer, "chosen by the user (--headline-layer)"
    rule = ("the last analysed layer that is not the embedding output (hidden_states.0, which "
            "carries no fine-tuning signal at the probe token); override with --headline-layer")
    candidates = [x for x in layers if x not in EMBEDDING_LAYERS and "embed" not in x.lower()]
    if candidates:
        return candidates[-1], rule
    return layers[-1], ("the only analysed layer is the embedding output; analyse later layers "
                        "(--layer) for a meaningful headline")


def _store_section(ds: xr.Dataset, ctx: Context, store_path: str | None) -> dict:
    return {
        "path": store_path,
        "source": str(ds.attrs.get("source", "unknown")),
        "revstats_schema": _num(ds.attrs.get("revstats_schema")),
        "preset": store_preset(ds),
        "provenance": _provenance(ds),
        "sizes": {d: int(ds.sizes[d]) for d in ("run", "step", "layer", "example", "hidden")
                  if d in ds.sizes},
        "arms": {a: int(len(i)) for a, i in ctx.arm_idx.items()},
        "steps": list(ctx.steps),
    }


def layer_stages(ctx: Context, layer: str, shared: dict, skipped: Skipped,
                 say: Callable[[str], None]) -> tuple[dict, dict]:
    """One layer's headline and details: the stages composed in the published key order.

    `shared` holds the layer-independent per-arm parts (`behavior_rate`, `task`).
    """
    say(f"layer {layer}: alignment and nulls")
    align = alignment_stage(ctx, layer)
    null_head, null_det = null_stage(ctx, layer, skipped)
    arms_h = {
        arm: {
            "n_runs": align[arm]["n_runs"],
            "alignment": align[arm]["alignment"],
            "alignment_debiased": align[arm]["alignment_debiased"],
            "null_p99": null_head[arm],
            "final_alignment": align[arm]["final_alignment"],
            "final_alignment_debiased": align[arm]["final_alignment_debiased"],
            "behavior_rate": shared["behavior_rate"][arm],
            "task": shared["task"][arm],
        }
        for arm in ctx.arm_names
    }
    say(f"layer {layer}: effects, trend, correlation, stability")
    eff_head, eff_det = effects_stage(ctx, layer, skipped)
    head = {"arms": arms_h, "effects": eff_head}
    det = {
        "arms": {arm: {"nulls": null_det[arm]} for arm in ctx.arm_names},
        "effects": eff_det,
        "trend": trend_stage(ctx, layer, skipped),
        "spearman": spearman_stage(ctx, layer, skipped),
        "direction_stability": stability_stage(ctx, layer),
        "per_run": per_run_stage(ctx, layer),
    }
    return head, det


# ----------------------------------------------------------------------------- alignment
def alignment_stage(ctx: Context, layer: str) -> dict[str, dict]:
    """Per arm: alignment trajectory and final alignment (mean ± sd over runs).

    `low`/`high` are the crossed-design interval (runs x probes, revstats.geometry.alignment_ci): the
    witness and aligned slab share their probe noise with every run, which the Student-t
    interval over runs ignores; that one stays under `t_interval` (conditional on the probes).
    """
    arr = ctx.arrays[layer]
    out: dict[str, dict] = {}
    for arm, idx in ctx.arm_idx.items():
        crossed = _crossed_intervals(ctx, arr, idx)

        traj_pi, traj_db = (
            [{"step": s, **_crossed_summary(values[idx, j], ctx, crossed, est, j)}
             for j, s in enumerate(ctx.steps)]
            for values, est in ((arr.plug_in, "plugin"), (arr.debiased, "debiased")))
        out[arm] = {
            "n_runs": int(len(idx)),
            "alignment": traj_pi,
            "alignment_debiased": traj_db,
            "final_alignment": traj_pi[ctx.s_final],
            "final_alignment_debiased": traj_db[ctx.s_final],
        }
    return out


_T_CONDITIONAL = ("the observed probes and witness (v_rev treated as fixed): it ignores the "
                  "probe noise every run shares")


def _crossed_intervals(ctx: Context, arr: LayerArrays, idx: np.ndarray) -> dict | None:
    """The crossed-design interval of the arm's runs at every moving step (None if undefined)."""
    if (arr.align_products is None and arr.align_terms is None) or len(idx) < 2:
        return None
    import warnings

    from revstats.errors import DegenerateDataWarning
    from revstats.geometry import _np_alignment_ci as npc

    func = npc.crossed_interval_gram if arr.align_form == "gram" else npc.crossed_interval
    with warnings.catch_warnings():
        # a step whose runs have no defined estimate is NaN here and null in results.json,
        # where `_summary` already reports it as missing
        warnings.simplefilter("ignore", DegenerateDataWarning)
        if arr.align_terms is not None:  # streamed Gram terms: the same interval
            t = arr.align_terms
            arm = ctx.arms[int(idx[0])]
            res = npc.crossed_interval_gram_terms(
                *(np.moveaxis(t[key][idx], 0, 1) for key in ("full", "uvar", "used")),
                t["v2"][arm], t["n_probes"], ctx.settings.confidence)
        else:
            res = func(np.moveaxis(arr.align_products[idx], 0, 1), ctx.settings.confidence)
    moving = {int(j): k for k, j in enumerate(ctx.moving)}
    return {"values": res, "moving": moving, "method": alignment_ci.METHODS[arr.align_form]}


def _crossed_summary(values: np.ndarray, ctx: Context, crossed: dict | None, est: str,
                     j: int) -> dict:
    base = _summary(values, ctx.settings)
    t_int = {"low": base["low"], "high": base["high"], "method": base["method"],
             "conditional_on": _T_CONDITIONAL}
    k = None if crossed is None else crossed["moving"].get(j)
    if k is None:  # step 0 (no drift) or no crossed interval: the t-interval is all there is
        return {**base, "t_interval": t_int} if crossed is not None else base
    row = crossed["values"][k, alignment_ci.ESTIMATORS.index(est)]
    f = dict(zip(("estimate", "low", "high", "se", "se_runs", "var_runs", "var_probes", "df",
                  "n_runs"), row, strict=True))
    return {
        **base,
        "low": _num(f["low"]),
        "high": _num(f["high"]),
        "method": crossed["method"],
        "conditional_on": alignment_ci.CONDITIONAL[est],
        "se": _num(f["se"]),
        "se_runs": _num(f["se_runs"]),
        "interval_n_runs": int(f["n_runs"]),
        "t_interval": t_int,
    }


# ----------------------------------------------------------------------------- nulls
_NULL_METHODS = {
    "isotropic": "isotropic exact: (cos+1)/2 ~ Beta((d-1)/2, (d-1)/2)",
    "effective_dimension": "isotropic with d_eff = (tr S)^2 / tr(S^2) of the drift covariance "
                           "(run-to-run residuals around each arm-step mean)",
    "covariance_matched": "Monte Carlo: directions ~ N(0, covariance of the aligned model's "
                          "probe activations)",
    "permutation": "Monte Carlo: v_rev rebuilt with random witness/aligned swaps per probe "
                   "(paired sign flips)",
}


def null_stage(ctx: Context, layer: str, skipped: Skipped) -> tuple[dict, dict]:
    """Per arm: exceedance of every null over its (run, step > 0) pairs, and the null bands.

    Returns ({arm: {null: summary}} for `headline...null_p99`,
             {arm: {null: {"bands": [...]}}} for `details...nulls`).
    """
    shared = _shared_nulls(ctx, layer, skipped)
    head: dict[str, dict] = {}
    det: dict[str, dict] = {}
    for arm, idx in ctx.arm_idx.items():
        obs, drift = _arm_pairs(ctx.arrays[layer], idx, ctx.moving)
        head[arm], det[arm] = {}, {}
        fixed = ((name, _pair_answers(ctx, null, obs)) for name, null in shared.items())
        built = _monte_carlo_answers(ctx, layer, obs, drift, skipped)
        for name, ans in itertools.chain(fixed, built):
            det[arm][name] = {"bands": _null_bands(ctx, ans, obs)}
            head[arm][name] = _null_summary(ctx, name, ans, obs)
    return head, det


#: Monte Carlo null draws alive at once (float64, pairs x draws): a null is built for a block
#: of (run, step) pairs at a time, its per-pair answers kept and its draws dropped, so the null
#: stage's memory does not grow with runs x steps (335 pairs at 50,000 draws per block)
NULL_BLOCK_BYTES = 128 * 2**20
_BAND_PROBS = (0.5, 0.95, 0.99)


@dataclass
class _PairAnswers:
    """What the report needs of one null for one arm's (run, step > 0) pairs."""

    method: str
    attrs: dict
    n_draws: int | None  # Monte Carlo draws (None for a closed-form law)
    p_floor: float | None
    d: float | None  # the law's dimension (closed-form nulls)
    threshold: np.ndarray  # (run, step) null quantile at `null_quantile`
    above: np.ndarray  # (run, step) observed beyond it (ties not counted)
    pvalue: np.ndarray  # (run, step) unadjusted; NaN where the pair is not countable
    bands: np.ndarray  # (run, step, len(_BAND_PROBS)) null quantiles


def _pair_answers(ctx: Context, null: Any, obs: np.ndarray,
                  into: _PairAnswers | None = None, rows: slice = slice(None)) -> _PairAnswers:
    """One null's answers for obs[rows] (a batched null holds those rows' drifts only)."""
    st = ctx.settings
    o = obs[rows]
    # bands first: the three quantiles include the summary's, which then reuses the same
    # partial sort of the draws (revstats.nulls.EmpiricalNull)
    qs = np.broadcast_to(np.asarray(null.quantile(np.array(_BAND_PROBS)), float),
                         (*o.shape, len(_BAND_PROBS)))
    ex = nulls.exceedance(o, null, q=st.null_quantile, adjust=st.p_adjust, alpha=1 - st.confidence)
    if into is None:
        into = _PairAnswers(
            method=null.method, attrs=dict(null.attrs),
            n_draws=int(null.n_draws) if hasattr(null, "n_draws") else None,
            p_floor=float(null.p_floor) if hasattr(null, "p_floor") else None,
            d=float(null.d) if hasattr(null, "d") else None,
            threshold=np.full(obs.shape, np.nan), above=np.zeros(obs.shape, bool),
            pvalue=np.full(obs.shape, np.nan), bands=np.full((*obs.shape, len(_BAND_PROBS)), np.nan))
    into.threshold[rows] = np.broadcast_to(np.asarray(ex.threshold, float), o.shape)
    into.above[rows] = np.asarray(ex.above, bool)
    into.pvalue[rows] = np.asarray(ex.pvalue, float)
    into.bands[rows] = qs
    return into


def _shared_nulls(ctx: Context, layer: str, skipped: Skipped) -> dict:
    """Nulls that do not depend on the run-step pair: one object per layer."""
    dr = ctx.arrays[layer].drift
    out: dict = {"isotropic": nulls.isotropic_cosine(ctx.hidden)}
    # the residuals are written into one array (no per-arm parts and a concatenated copy:
    # on a 1,200-run store each is 236 MB)
    arms = [idx for idx in ctx.arm_idx.values() if idx.size >= 2]
    per_run = len(ctx.moving)
    resid = np.empty((sum(idx.size for idx in arms) * per_run, dr.shape[-1]))
    at = 0
    for idx in arms:
        block = resid[at:at + idx.size * per_run].reshape(idx.size, per_run, dr.shape[-1])
        np.take(dr[idx], ctx.moving, axis=1, out=block)
        block -= np.nanmean(block, axis=0, keepdims=True)
        at += idx.size * per_run
    finite = np.all(np.isfinite(resid), axis=1)
    if not finite.all():
        resid = resid[finite]
    if resid.shape[0] < 3 or not np.any(resid):
        skipped.add("null:effective_dimension", layer,
                    "fewer than 2 runs per arm: no run-to-run drift covariance")
    else:
        try:
            resid -= resid.mean(axis=0)  # centred here, in place (ours): no centred copy
            out["effective_dimension"] = nulls.effective_isotropic_cosine(resid, kind="samples",
                                                                          center=False)
        except ValueError as err:
            skipped.add("null:effective_dimension", layer, str(err))
    return out


def _arm_pairs(arr: LayerArrays, idx: np.ndarray, moving: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """The arm's (run, step > 0) cosines and drifts; unusable pairs are NaN (not counted)."""
    obs = arr.plug_in[np.ix_(idx, moving)].copy()
    drift = arr.drift[np.ix_(idx, moving)].copy()
    bad = ~np.isfinite(obs) | ~np.all(np.isfinite(drift), axis=-1)
    bad |= np.linalg.norm(np.nan_to_num(drift), axis=-1) == 0
    obs[bad] = np.nan
    drift[bad] = 0.0
    drift[bad, 0] = 1.0  # placeholder direction for pairs that are not counted
    return obs, drift


# Monte Carlo draws are chosen from the number of tests (nulls.monte_carlo_draws) so that the
# smallest attainable adjusted p-value is alpha/10; never fewer than `n_null_draws`, at most:
MAX_NULL_DRAWS = 50_000


def _null_draws(ctx: Context, n_pairs: int) -> int:
    st = ctx.settings
    return nulls.monte_carlo_draws(max(n_pairs, 1), alpha=1 - st.confidence, adjust=st.p_adjust,
                                   minimum=st.n_null_draws,
                                   cap=max(MAX_NULL_DRAWS, st.n_null_draws))


def _monte_carlo_answers(ctx: Context, layer: str, obs: np.ndarray, drift: np.ndarray,
                         skipped: Skipped) -> Iterator[tuple[str, _PairAnswers]]:
    """The covariance-matched and permutation nulls' answers for the arm's pairs, each null
    built for `NULL_BLOCK_BYTES` of draws at a time (same seed per block: the same draws)."""
    arr = ctx.arrays[layer]
    n_draws = _null_draws(ctx, int(np.isfinite(obs).sum()))
    if not (arr.aligned.shape[0] >= 3 and np.isfinite(arr.aligned).all()):
        skipped.add("null:covariance_matched,permutation", layer,
                    "fewer than 3 probes or a non-finite aligned slab")
        return
    builders = {
        "covariance_matched": lambda dr: nulls.covariance_matched_cosine(
            arr.aligned, dr, kind="samples", n_draws=n_draws, rng=ctx.seeds["covariance_matched"]),
        "permutation": lambda dr: nulls.permutation_cosine(
            arr.witness, arr.aligned, dr, paired=True, n_permutations=n_draws,
            rng=ctx.seeds["permutation"]),
    }
    # blocks of (run, step) pairs in row-major order: a block's null holds its pairs' draws only
    flat_obs, flat_drift = obs.reshape(-1), drift.reshape(-1, drift.shape[-1])
    n_pairs = flat_obs.size
    per_block = max(1, NULL_BLOCK_BYTES // (n_draws * 8))
    for name, build in builders.items():
        ans = None
        # a null that is undefined for this layer (e.g. probes that all share one
        # activation, as an embedding layer read at one token) is skipped with the core's reason
        try:
            for p0 in range(0, max(n_pairs, 1), per_block):
                rows = slice(p0, min(p0 + per_block, n_pairs))
                null = build(flat_drift[rows])
                ans = _pair_answers(ctx, null, flat_obs, ans, rows)
                del null
        except ValueError as err:
            skipped.add(f"null:{name}", layer, str(err))
            continue
        if ans is not None:
            for f in ("threshold", "above", "pvalue"):
                setattr(ans, f, getattr(ans, f).reshape(obs.shape))
            ans.bands = ans.bands.reshape((*obs.shape, len(_BAND_PROBS)))
            yield name, ans


def _null_summary(ctx: Context, name: str, ans: _PairAnswers, obs: np.ndarray) -> dict:
    """The headline entry of one null for one arm (`null_p99.<name>`)."""
    st = ctx.settings
    valid = np.isfinite(obs)
    thr, above = ans.threshold, ans.above
    # adjusted over all the arm's pairs at once (as `nulls.exceedance` does)
    p_raw = np.where(valid, ans.pvalue, np.nan)
    p_adj = np.asarray(nulls.adjust_pvalues(p_raw, method=st.p_adjust), float)
    with np.errstate(invalid="ignore"):
        reject = valid & (p_adj < 1 - st.confidence)
    n_pairs = int(valid.sum())
    step_arr = np.asarray(ctx.steps)[ctx.moving]
    entry = {
        "quantile": st.null_quantile,
        "p99": _nanmean(thr[valid]),
        "p99_min": _num(thr[valid].min()) if valid.any() else None,
        "p99_max": _num(thr[valid].max()) if valid.any() else None,
        "n_above": int(above.sum()),
        "n_pairs": n_pairs,
        "first_step": int(step_arr[0]) if step_arr.size else None,
        "n_above_first_step": int(above[:, 0].sum()) if step_arr.size else 0,
        "n_runs_first_step": int(valid[:, 0].sum()) if step_arr.size else 0,
        "max_adjusted_pvalue": _num(np.nanmax(p_adj)) if valid.any() else None,
        "min_adjusted_pvalue": _num(np.nanmin(p_adj)) if valid.any() else None,
        "n_significant_adjusted": int(np.sum(reject)),
        "p_adjust": st.p_adjust,
        "method": f"{_NULL_METHODS[name]} [{ans.method}]",
    }
    entry["approximate"] = bool(ans.attrs.get("approximate", False))
    if name == "isotropic":
        entry["d"] = _num(ans.d)
    elif name == "effective_dimension":
        entry["d"] = _num(ans.attrs.get("d_eff", ans.d))
    else:
        # Monte Carlo: p-values are at least 1/(B+1), so say where the floor lies and whether
        # it binds (no pair can reach alpha, or a pair lies beyond every draw)
        b = int(ans.n_draws)
        floor_adj = nulls.adjusted_p_floor(b, max(n_pairs, 1), adjust=st.p_adjust)
        at_floor = int(np.sum(np.isclose(p_raw[valid], ans.p_floor, rtol=1e-12, atol=0)))
        entry["n_draws"] = b
        entry["n_draws_rule"] = (f"max(n_null_draws, 10 x m / alpha for {st.p_adjust}), "
                                 f"at most {max(MAX_NULL_DRAWS, st.n_null_draws)}")
        entry["p_floor"] = ans.p_floor
        entry["p_floor_adjusted"] = floor_adj
        entry["n_pairs_at_floor"] = at_floor
        entry["p_floor_binds"] = bool(floor_adj >= 1 - st.confidence or at_floor > 0)
        entry["seed"] = ctx.seeds[name]
    if entry["approximate"]:
        # an approximate law (calibration: type-I 0.17 at nominal 0.05 when v_rev lies in
        # high-variance directions) gives no significance claims
        entry["note"] = str(ans.attrs.get("note", "approximate null"))
        entry["n_significant_adjusted"] = None
        entry["max_adjusted_pvalue"] = None
        entry["min_adjusted_pvalue"] = None
    return entry


def _null_bands(ctx: Context, ans: _PairAnswers, obs: np.ndarray) -> list[dict]:
    """Per step: the null's q50/q95/q99, averaged over the arm's countable pairs."""
    valid = np.isfinite(obs)
    probs = _BAND_PROBS
    qs = ans.bands
    bands = []
    for j, s in enumerate(ctx.steps):
        row: dict[str, Any] = {"step": int(s)}
        col = np.nonzero(ctx.moving == j)[0]
        for k, qq in enumerate(probs):
            key = f"q{int(round(qq * 100))}"
            if col.size == 0:
                row[key] = None
                continue
            qv = qs[:, col[0], k]
            row[key] = _nanmean(qv[valid[:, col[0]]])
        bands.append(row)
    return bands


# ----------------------------------------------------------------------------- behaviour, task
def behaviour_stage(ctx: Context) -> dict[str, dict | None]:
    """Per arm: the final-step behavior rate (None for every arm without behavior data)."""
    beh = ctx.behaviour
    if beh is None:
        return dict.fromkeys(ctx.arm_names)
    st = ctx.settings
    s = ctx.s_final
    out: dict[str, dict | None] = {}
    for arm, idx in ctx.arm_idx.items():
        base = _summary(beh.rates()[idx, s], st)
        k_run, n_run = beh.k[idx, s], beh.n[idx, s]
        seen = n_run > 0
        kk, nn = float(np.nansum(k_run)), float(np.nansum(n_run))
        pooled = intervals.proportion_ci(kk, nn, method="wilson", confidence=st.confidence)
        pooled_ci = {"low": _num(pooled.low), "high": _num(pooled.high),
                     "method": f"{pooled.method} (probes independent: pooled runs x probes)"}
        if seen.sum() >= 2:
            lead = intervals.cluster_proportion_ci(k_run[seen], n_run[seen],
                                                   confidence=st.confidence)
            ci = {"low": _num(lead.low), "high": _num(lead.high),
                  "method": f"{lead.method} (runs as clusters)",
                  "design_effect": _num(lead.extra.get("design_effect"))}
        else:
            ci = dict(pooled_ci)
        out[arm] = {
            "step": ctx.final_step,
            "mean": base["mean"], "sd": base["sd"],
            "low": ci["low"], "high": ci["high"],
            "n_runs": base["n_runs"], "k": int(kk), "n": int(nn),
            "method": ci["method"],
            "confidence": st.confidence,
            # a rate lies in [0, 1]: the t interval of the run mean is cut to it
            "run_mean_ci": {"low": _clip01(base["low"]), "high": _clip01(base["high"]),
                            "method": base["method"]},
            "pooled_ci": pooled_ci,
            "design_effect": ci.get("design_effect"),
        }
    return out


def _clip01(x: float | None) -> float | None:
    return None if x is None else min(max(x, 0.0), 1.0)


def task_stage(ctx: Context) -> dict[str, dict | None]:
    """Per arm: the final-step task metric (None for every arm without task data)."""
    if ctx.task is None:
        return dict.fromkeys(ctx.arm_names)
    return {arm: {"step": ctx.final_step,
                  **_summary(ctx.task.values[idx, ctx.s_final], ctx.settings),
                  **ctx.task.attrs}
            for arm, idx in ctx.arm_idx.items()}


# ----------------------------------------------------------------------------- effects
@dataclass(frozen=True)
class _Contrast:
    layer: str
    treat: str
    ctrl: str
    it: np.ndarray  # run indices of the treatment arm
    ic: np.ndarray  # run indices of the control arm

    @property
    def key(self) -> str:
        return f"{self.treat}_vs_{self.ctrl}"


def effects_stage(ctx: Context, layer: str, skipped: Skipped) -> tuple[dict, dict]:
    """blocked vs control and push vs control at the final step.

    Returns (`headline...effects`, `details...effects`).
    """
    out: dict = {}
    det: dict = {}
    for treat, ctrl in _COMPARISONS:
        key = f"{treat}_vs_{ctrl}"
        missing = [a for a in (treat, ctrl) if a not in ctx.arm_idx]
        if missing:
            skipped.add(f"effects:{key}", layer,
                        f"the store has no `{'` or `'.join(missing)}` arm (its arms: "
                        f"{', '.join(ctx.arm_names)})")
            continue
        cmp = _Contrast(layer, treat, ctrl, ctx.arm_idx[treat], ctx.arm_idx[ctrl])
        eff = _alignment_effects(ctx, cmp, skipped)
        if ctx.behaviour is not None:
            eff.update(_behaviour_effects(ctx, cmp, skipped))
        if ctx.task is not None:
            eff.update(_task_effect(ctx, cmp))
        out[key] = eff
        det[key] = {"treatment": treat, "control": ctrl}
    return out, det


def _alignment_effects(ctx: Context, cmp: _Contrast, skipped: Skipped) -> dict:
    a = ctx.arrays[cmp.layer].plug_in
    at, ac = a[cmp.it, ctx.s_final], a[cmp.ic, ctx.s_final]
    at, ac = at[np.isfinite(at)], ac[np.isfinite(ac)]
    if at.size < 2 or ac.size < 2:
        skipped.add(f"effects:{cmp.key}:alignment", cmp.layer, "fewer than 2 runs in an arm")
        return {}
    conf, n = ctx.settings.confidence, [int(at.size), int(ac.size)]
    return {
        "final_alignment_difference": _interval(
            effects.mean_difference(at, ac, confidence=conf), n=n),
        "final_alignment_hedges_g": _interval(effects.hedges_g(at, ac, confidence=conf), n=n),
    }


def _behaviour_effects(ctx: Context, cmp: _Contrast, skipped: Skipped) -> dict:
    beh, s, conf = ctx.behaviour, ctx.s_final, ctx.settings.confidence
    assert beh is not None
    k1, n1 = float(np.nansum(beh.k[cmp.it, s])), float(np.nansum(beh.n[cmp.it, s]))
    k2, n2 = float(np.nansum(beh.k[cmp.ic, s])), float(np.nansum(beh.n[cmp.ic, s]))
    n = [int(n1), int(n2)]
    pooled = "(probes independent: pooled runs x probes)"
    rd = _interval(intervals.proportion_diff_ci(k1, n1, k2, n2, method="newcombe",
                                                confidence=conf), n=n)
    rd["method"] = f"{rd['method']} {pooled}"
    rr = None
    if k1 > 0 and k2 > 0:
        rr = _interval(effects.risk_ratio(k1, n1, k2, n2, confidence=conf), n=n)
        rr["method"] = f"{rr['method']} {pooled}"
    else:
        skipped.add(f"effects:{cmp.key}:risk_ratio", cmp.layer,
                    "zero events in an arm: the log risk ratio is undefined")
    out: dict = {}
    clustered = _cluster_rate(ctx, cmp, "difference", skipped)
    out["behavior_risk_difference"] = clustered if clustered is not None else rd
    gee = _gee(ctx, cmp, skipped)
    if gee is not None:
        out["behavior_gee_odds_ratio"] = gee
    if rr is not None:
        clustered = _cluster_rate(ctx, cmp, "ratio", None)
        out["behavior_risk_ratio"] = clustered if clustered is not None else rr
    if "cluster" in out["behavior_risk_difference"]["method"]:
        out["behavior_risk_difference_pooled"] = rd
    if rr is not None and "cluster" in out["behavior_risk_ratio"]["method"]:
        out["behavior_risk_ratio_pooled"] = rr
    return out


def _cluster_rate(ctx: Context, cmp: _Contrast, measure: str,
                  skipped: Skipped | None) -> dict | None:
    """Risk difference or ratio with runs as clusters (None with < 2 runs in an arm)."""
    beh, s = ctx.behaviour, ctx.s_final
    assert beh is not None
    parts = []
    for idx in (cmp.it, cmp.ic):
        k, n = beh.k[idx, s], beh.n[idx, s]
        parts += [k[n > 0], n[n > 0]]
    if min(parts[1].size, parts[3].size) < 2:
        if skipped is not None:
            skipped.add(f"effects:{cmp.key}:behavior_clustered", cmp.layer,
                        "fewer than 2 runs with behavior data in an arm: the behavior "
                        "comparison treats probes as independent")
        return None
    try:
        r = intervals.cluster_rate_comparison(*parts, measure=measure,
                                              confidence=ctx.settings.confidence)
    except ValueError as err:
        if skipped is not None:
            skipped.add(f"effects:{cmp.key}:behavior_clustered", cmp.layer, str(err))
        return None
    return _interval(r, n=[int(parts[1].sum()), int(parts[3].sum())],
                     n_runs=[int(parts[1].size), int(parts[3].size)], unit="runs (clusters)",
                     df=_num(r.extra.get("df")))


def _task_effect(ctx: Context, cmp: _Contrast) -> dict:
    task, s = ctx.task, ctx.s_final
    assert task is not None
    tt, tc = task.values[cmp.it, s], task.values[cmp.ic, s]
    tt, tc = tt[np.isfinite(tt)], tc[np.isfinite(tc)]
    if tt.size < 2 or tc.size < 2:
        return {}
    hib = bool(task.attrs.get("higher_is_better", False))
    margin, rule = _ni_margin(ctx, cmp.ic)
    ni = effects.noninferiority_test(tt, tc, margin=margin, higher_is_better=hib,
                                     confidence=ctx.settings.confidence)
    return {"task_noninferiority": _interval(
        ni, n=[int(tt.size), int(tc.size)], margin=_num(margin),
        margin_rule=rule,
        higher_is_better=hib,
        scale="treatment minus control, oriented so that larger is better",
        noninferior=bool((getattr(ni, "extra", None) or {}).get("noninferior")))}


def _ni_margin(ctx: Context, ic: np.ndarray) -> tuple[float, str]:
    """The non-inferiority margin: stated, or a fraction of what fine-tuning gained."""
    st = ctx.settings
    if st.ni_margin is not None:
        return float(st.ni_margin), "stated (--ni-margin)"
    assert ctx.task is not None
    f = st.ni_margin_fraction
    task = ctx.task.values
    start, end = task[ic, ctx.steps.index(0)], task[ic, ctx.s_final]
    gain = abs(float(np.nanmean(end) - np.nanmean(start))) if np.isfinite(start).any() else 0.0
    if gain > 0:
        return f * gain, f"{f:g} x |control task change from step 0 to {ctx.final_step}|"
    return f * abs(float(np.nanmean(end))), f"{f:g} x |control mean| (the task did not change)"


def _gee(ctx: Context, cmp: _Contrast, skipped: Skipped) -> dict | None:
    """Cluster-robust (runs as clusters) odds ratio of the final-step behavior rate."""
    assert ctx.behaviour is not None
    per_probe = ctx.behaviour.final
    if per_probe.shape[1] < 2:
        return None
    it, ic = cmp.it, cmp.ic
    rows = np.concatenate([it, ic])
    y = per_probe[rows]
    group = np.repeat(np.array([cmp.treat] * len(it) + [cmp.ctrl] * len(ic)), y.shape[1])
    cluster = np.repeat(rows, y.shape[1])
    y = y.ravel()
    ok = np.isfinite(y)
    try:
        r = effects.gee_rate_comparison(y[ok], group[ok], cluster[ok], reference=cmp.ctrl,
                                        confidence=ctx.settings.confidence)
    except (ValueError, np.linalg.LinAlgError) as err:
        skipped.add(f"effects:{cmp.key}:gee", cmp.layer, str(err))
        return None
    return _interval(r, n=[int(len(it)), int(len(ic))], unit="runs (clusters)")


# ----------------------------------------------------------------------------- trend, correlation
def trend_stage(ctx: Context, layer: str, skipped: Skipped) -> dict | None:
    """Jonckheere-Terpstra test of an increase over blocked < control < push (those present)."""
    present = [a for a in _ARM_ORDER if a in ctx.arm_idx]
    if len(present) < 2:
        skipped.add("trend", layer, "fewer than two of the arms blocked, control, push")
        return None
    out: dict[str, Any] = {"order": present}
    mats = {"final_alignment": ctx.arrays[layer].plug_in,
            "behavior_rate": ctx.behaviour.rates() if ctx.behaviour is not None else None}
    for name, mat in mats.items():
        if mat is None:
            continue
        groups = [mat[ctx.arm_idx[a], ctx.s_final] for a in present]
        groups = [g[np.isfinite(g)] for g in groups]
        r = effects.jonckheere_terpstra(*groups, alternative="increasing")
        pairwise = _ordering_steps(ctx, name, present, groups)
        holds = bool(pairwise) and all(step["holds"] for step in pairwise)
        out[name] = {"statistic": _num(r.statistic), "tau": _num(r.estimate),
                     "pvalue": _num(r.pvalue),
                     "method": str(r.method), "alternative": "increasing in the order",
                     "n": [int(g.size) for g in groups],
                     "what_it_measures": _JT_MEANS,
                     "pairwise": pairwise,
                     "ordering_holds": holds,
                     "statement": _ordering_statement(present, pairwise, holds)}
    return out


_JT_MEANS = ("Jonckheere-Terpstra: evidence of some increase along the order (a one-sided "
             "rank test over all cross-arm pairs); one large gap can drive it, so it does not "
             "show that each step of the order holds - the pairwise contrasts do")


def _ordering_steps(ctx: Context, name: str, present: list[str],
                    groups: list[np.ndarray]) -> list[dict]:
    """Each adjacent step of the order (later arm minus earlier arm) with its interval."""
    conf = ctx.settings.confidence
    steps = []
    for j in range(len(present) - 1):
        lo_arm, hi_arm = present[j], present[j + 1]
        if name == "behavior_rate":
            beh, s = ctx.behaviour, ctx.s_final
            assert beh is not None
            parts = []
            for arm in (hi_arm, lo_arm):
                k, n = beh.k[ctx.arm_idx[arm], s], beh.n[ctx.arm_idx[arm], s]
                parts += [k[n > 0], n[n > 0]]
            if min(parts[1].size, parts[3].size) < 2:
                continue
            try:
                r = intervals.cluster_rate_comparison(*parts, confidence=conf)
            except ValueError:
                continue
        else:
            a, b = groups[j + 1], groups[j]
            if a.size < 2 or b.size < 2:
                continue
            r = effects.mean_difference(a, b, confidence=conf)
        e = _interval(r, n=[int(len(ctx.arm_idx[hi_arm])), int(len(ctx.arm_idx[lo_arm]))])
        e["contrast"] = f"{hi_arm} - {lo_arm}"
        e["holds"] = bool(e["low"] is not None and e["low"] > 0)
        steps.append(e)
    return steps


def _ordering_statement(present: list[str], pairwise: list[dict], holds: bool) -> str:
    order = " < ".join(present)
    if holds:
        return f"{order}: every step holds (each interval excludes 0 in the stated direction)"
    if not pairwise:
        return f"{order}: not assessed (fewer than 2 runs in an arm)"
    failed = [p["contrast"] for p in pairwise if not p["holds"]]
    return (f"the ordering {order} is not established: the interval of "
            f"{', '.join(failed)} does not exclude 0 in the stated direction")


def spearman_stage(ctx: Context, layer: str, skipped: Skipped) -> dict | None:
    """Spearman correlation of final alignment and final behavior rate across runs."""
    if ctx.behaviour is None:
        skipped.add("spearman", layer, "the store has no behavior data")
        return None
    x = ctx.arrays[layer].plug_in[:, ctx.s_final]
    y = ctx.behaviour.rates()[:, ctx.s_final]
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 4 or np.ptp(y[ok]) == 0 or np.ptp(x[ok]) == 0:
        skipped.add("spearman", layer, "fewer than 4 runs or a constant variable")
        return None
    st, seed = ctx.settings, ctx.seeds["spearman"]
    r = effects.spearman_ci(x[ok], y[ok], confidence=st.confidence, method="bca",
                            n_resamples=st.n_resamples, rng=seed)
    out = _interval(r, n=int(ok.sum()), seed=seed,
                    x="final alignment", y="final behavior rate", unit="run")
    out["what_it_measures"] = (
        "pooled over runs of every arm: mixes the between-arm difference (blocking moves "
        "alignment and behavior together) with the run-to-run association within an arm; "
        "see within_arm for the latter")
    within: dict[str, dict | None] = {}
    for arm, idx in ctx.arm_idx.items():
        xa, ya = x[idx], y[idx]
        oka = np.isfinite(xa) & np.isfinite(ya)
        if oka.sum() < 4 or np.ptp(ya[oka]) == 0 or np.ptp(xa[oka]) == 0:
            within[arm] = None
            continue
        ra = effects.spearman_ci(xa[oka], ya[oka], confidence=st.confidence, method="bca",
                                 n_resamples=st.n_resamples, rng=seed)
        within[arm] = _interval(ra, n=int(oka.sum()), seed=seed)
    out["within_arm"] = within
    return out


# ----------------------------------------------------------------------------- multiplicity
_LAYER_FREE_EFFECTS = ("behavior_", "task_")  # the same numbers in every layer: counted once


def multiplicity_stage(headline: dict, details: dict, settings: AnalysisSettings) -> dict:
    """Holm (settings.p_adjust) over layers x tests; writes `pvalue_adjusted_layers` beside
    each p-value it adjusts and returns the family.

    The family: per layer, each null's arm-level test that some run-step pair exceeds it
    (`min_adjusted_pvalue`, already adjusted over the arm's pairs), each alignment effect,
    the alignment trend and the Spearman correlation; the behavior and task effects and the
    behavior trend do not depend on the layer, so each enters once (and every layer shows
    the same adjusted value). Approximate nulls are left out.
    """
    groups: dict[tuple[str | None, str], list[tuple[dict, str]]] = {}

    def add(layer: str | None, test: str, obj: dict, key: str) -> None:
        if obj.get(key) is not None:
            groups.setdefault((layer, test), []).append((obj, key))

    for layer, h in headline["layers"].items():
        d = details["layers"][layer]
        for arm, e in h["arms"].items():
            for name, n in e["null_p99"].items():
                if not n.get("approximate"):
                    add(layer, f"null:{name}:{arm}", n, "min_adjusted_pvalue")
        for comp, effs in h["effects"].items():
            for name, e in effs.items():
                free = name.startswith(_LAYER_FREE_EFFECTS)
                add(None if free else layer, f"effects:{comp}:{name}", e, "pvalue")
        for name, t in (d.get("trend") or {}).items():
            if isinstance(t, dict):
                add(None if name == "behavior_rate" else layer, f"trend:{name}", t, "pvalue")
        if d.get("spearman"):
            add(layer, "spearman", d["spearman"], "pvalue")
    keys = list(groups)
    raw = np.array([groups[k][0][0][groups[k][0][1]] for k in keys], float)
    adjusted = nulls.adjust_pvalues(raw, method=settings.p_adjust) if keys else raw
    tests = []
    for (layer, test), p, q in zip(keys, raw, adjusted, strict=True):
        for obj, _ in groups[(layer, test)]:
            obj["pvalue_adjusted_layers"] = _num(q)
        tests.append({"layer": layer, "test": test, "pvalue": _num(p),
                      "pvalue_adjusted": _num(q)})
    return {
        "method": settings.p_adjust,
        "family": "layers x tests: per layer the null exceedance of each arm, the alignment "
                  "effects, trend and Spearman; the layer-independent behavior/task tests once",
        "n_tests": len(tests),
        "alpha": _num(1 - settings.confidence),
        "tests": tests,
    }


# ----------------------------------------------------------------------------- v_rev, per run
def stability_stage(ctx: Context, layer: str) -> dict:
    """Bootstrap and split-half stability of v_rev over probes."""
    arr, st, seed = ctx.arrays[layer], ctx.settings, ctx.seeds["stability"]
    dims = ("example", "hidden")
    res = geometry.direction_stability(
        xr.DataArray(arr.witness, dims=dims), xr.DataArray(arr.aligned, dims=dims),
        n_resamples=st.n_resamples, confidence=st.confidence, rng=seed)
    vals = {k: float(res[k].values) for k in ("bootstrap_mean", "low", "high", "split_half")}
    return {
        "bootstrap_cosine": {"estimate": vals["bootstrap_mean"], "low": vals["low"],
                             "high": vals["high"], "confidence": st.confidence,
                             "method": str(res.attrs.get("interval", "percentile")),
                             "n_resamples": st.n_resamples},
        "split_half_cosine": vals["split_half"],
        "n_splits": int(res.attrs.get("n_splits", 0)) or None,
        "seed": seed,
    }


def per_run_stage(ctx: Context, layer: str) -> dict:
    """The (run, step) matrices behind the figures."""
    arr = ctx.arrays[layer]

    def rows(m: np.ndarray) -> list[list[float | None]]:
        return [[_num(x) for x in row] for row in m]

    return {
        "run": list(ctx.runs), "arm": list(ctx.arms), "steps": list(ctx.steps),
        "alignment": rows(arr.plug_in),
        "alignment_debiased": rows(arr.debiased),
        "behavior_rate": rows(ctx.behaviour.rates()) if ctx.behaviour is not None else None,
    }
