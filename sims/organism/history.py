"""Dose-response over training history: pretraining mass x alignment depth (issue 16.1).

The hypothesis: large early training builds a dominant manifold and alignment is a shallow
displacement from it, so reversion under benign fine-tuning should grow with the weight of
pretraining and shrink with the depth of alignment. The grid:

* pretraining mass = pretraining steps (``pretrain_levels``; the same data and batch stream,
  so a shorter history is a prefix of a longer one: one pretraining run per seed, checkpointed
  at every level);
* alignment depth = alignment steps (``align_levels``; nested the same way, from each
  pretrained checkpoint);
* every cell fine-tunes its aligned network on the same benign batches (the control arm, and
  the ``corner_arms`` -- the v_rev penalty by default -- at the four corners of the grid).

Seeds are the independent units (clusters): a seed fixes the data, the initialisation and
the batch order, and every cell of a seed shares them, so cells are compared *within* seeds.

Output (``out`` is a directory):

* ``out/cells/pretrain{P}_align{A}.zarr`` -- one ordinary organism store per cell (runs
  ``{arm}-s{seed}``, witness = that cell's pretrained network, step 0 = that cell's aligned
  network, provenance ``config.history_cell = {"pretrain_steps": P, "align_steps": A}``), so
  ``revstats analyze`` / ``report`` and :mod:`revstats.sims.organism.report` read each cell without
  special cases;
* ``out/history.json`` -- the index: grid levels, seeds, cell store paths (relative), config.

:func:`summarize_history` reduces the cells to per-cell statistics with intervals over seeds
and the trend tests; :func:`plot_history` draws the organism's phase diagram next to the
simulator's exact prediction (:mod:`revstats.sims.theory`) on the same axes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from revstats.sims.organism.pipeline import ArmSpec, OrganismConfig, OrganismSummary

__all__ = ["HISTORY_PROFILES", "HistoryConfig", "cell_name", "plot_history", "run_history",
           "summarize_history", "history_markdown", "total_history_units"]


@dataclass(frozen=True)
class HistoryConfig:
    """The grid and the organism knobs shared by every cell (``base``: network, language,
    fine-tuning; its ``pretrain_steps``/``align_steps``/``arms`` are ignored)."""

    base: OrganismConfig
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    pretrain_levels: tuple[int, ...] = (150, 300, 600)
    align_levels: tuple[int, ...] = (10, 20, 40)
    corner_arms: tuple[ArmSpec, ...] = (ArmSpec("blocked", "penalty", 1, 30.0),)
    harm_level: float = 0.25

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def corners(self) -> set[tuple[int, int]]:
        p, a = self.pretrain_levels, self.align_levels
        return {(p[0], a[0]), (p[0], a[-1]), (p[-1], a[0]), (p[-1], a[-1])}

    def arms_of(self, p: int, a: int) -> tuple[ArmSpec, ...]:
        extra = self.corner_arms if (p, a) in self.corners else ()
        return (ArmSpec("control"), *extra)


HISTORY_PROFILES: dict[str, HistoryConfig] = {
    # 3 x 3 cells x 8 seeds; control everywhere, the v_rev penalty at the corners
    "history": HistoryConfig(base=OrganismConfig(ft_steps=60, capture_every=5),
                             seeds=tuple(range(8))),
    # the test variant: 2 x 2 cells (all corners), 2 seeds, seconds
    "history-tiny": HistoryConfig(
        base=OrganismConfig(hidden=32, n_heads=2, pretrain_examples=3000, benign_examples=500,
                            benign_eval=64, ft_steps=2, capture_every=1, n_probes=16,
                            n_anchors=8),
        seeds=(0, 1), pretrain_levels=(20, 40), align_levels=(3, 6)),
}


def cell_name(p: int, a: int) -> str:
    return f"pretrain{p}_align{a}"


def _validate(cfg: Any) -> HistoryConfig:
    if not isinstance(cfg, HistoryConfig):
        raise TypeError(f"`config` must be a HistoryConfig (see HISTORY_PROFILES), got "
                        f"{type(cfg).__name__}")
    for name in ("pretrain_levels", "align_levels"):
        lv = getattr(cfg, name)
        if len(lv) < 2 or list(lv) != sorted(set(lv)) or lv[0] < 1:
            raise ValueError(f"`config.{name}` must be >= 2 distinct increasing positive step "
                             f"counts, got {lv}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValueError(f"`config.seeds` must be distinct and non-empty, got {cfg.seeds}")
    if not 0 < cfg.harm_level < 1:
        raise ValueError(f"`config.harm_level` must be in (0, 1), got {cfg.harm_level}")
    names = [a.name for a in cfg.corner_arms]
    if "control" in names or len(set(names)) != len(names):
        raise ValueError(f"`config.corner_arms` need unique names other than 'control', got {names}")
    return cfg


def _resolve(config: HistoryConfig | str) -> HistoryConfig:
    if isinstance(config, str):
        if config not in HISTORY_PROFILES:
            raise ValueError(f"`config` must be one of {sorted(HISTORY_PROFILES)} or a "
                             f"HistoryConfig, got {config!r}")
        return HISTORY_PROFILES[config]
    return _validate(config)


def total_history_units(config: HistoryConfig | str) -> int:
    """Progress units of :func:`run_history` (one per training step)."""
    cfg = _resolve(config)
    ft = sum(len(cfg.arms_of(p, a)) for p in cfg.pretrain_levels for a in cfg.align_levels)
    per_seed = (cfg.pretrain_levels[-1] + len(cfg.pretrain_levels) * cfg.align_levels[-1]
                + ft * cfg.base.ft_steps)
    return len(cfg.seeds) * per_seed


def history_seed_job(cfg: HistoryConfig, seed: int) -> dict[str, Any]:
    """One seed of the grid: every cell's witness, runs and phase metrics (a worker job)."""
    import copy

    from revstats.sims.organism import pipeline, train
    from revstats.sims.organism.language import make_language
    from revstats.sims.organism.parallel import tick

    base = cfg.base
    lang = pipeline._language(base)
    data = make_language(lang, n_pretrain=base.pretrain_examples, n_align=base.align_examples,
                         n_benign=base.benign_examples, n_benign_eval=base.benign_eval,
                         n_probes=base.n_probes, n_anchors=base.n_anchors, seed=seed)
    out: dict[str, Any] = {"seed": seed, "cells": {}}
    with train.deterministic(seed):
        probes = data["probes"]
        import torch

        cap = pipeline._Capture(base, probes, torch.from_numpy(data["anchors"].prompts))
        model = train.build_model(lang.vocab_size, n_layers=base.n_layers, hidden=base.hidden,
                                  n_heads=base.n_heads, n_positions=16, seed=seed)
        pre: dict[int, dict[str, Any]] = {}
        levels = set(cfg.pretrain_levels)

        def at_pretrain(step: int) -> None:
            tick(f"seed {seed}: pretrain", 1)
            if step in levels:
                pre[step] = {"state": copy.deepcopy(model.state_dict()),
                             "witness": cap.acts(model), "anchors": cap.anchor_acts(model),
                             "harm": float(train.harmful_outcomes(model, probes).mean())}
                model.train()

        # the judges put the model in eval mode; dropout is 0 so train/eval give the same
        # forward, and train_steps restores train mode at its next call only -- hence the
        # explicit model.train() above
        train.train_steps(model, train.training_arrays(data["pretrain_trigger"],
                                                       data["pretrain_neutral"]),
                          steps=cfg.pretrain_levels[-1], batch_size=base.pretrain_batch,
                          lr=base.pretrain_lr, seed=seed * 1000 + 1, on_step=at_pretrain)
        align_set = train.training_arrays(data["align_trigger"], data["align_neutral"])
        a_levels = set(cfg.align_levels)
        names = pipeline.residual_names(base)
        for p in cfg.pretrain_levels:
            model.load_state_dict(pre[p]["state"])
            aligned: dict[int, dict[str, Any]] = {}

            def at_align(step: int, aligned=aligned, p=p) -> None:
                tick(f"seed {seed}: align (pretrain {p})", 1)
                if step in a_levels:
                    aligned[step] = copy.deepcopy(model.state_dict())

            train.train_steps(model, align_set, steps=cfg.align_levels[-1],
                              batch_size=base.align_batch, lr=base.align_lr,
                              seed=seed * 1000 + 2, on_step=at_align)
            for a in cfg.align_levels:
                model.load_state_dict(aligned[a])
                model.eval()
                h_al = cap.anchor_acts(model)
                v = pipeline._directions(pre[p]["anchors"], h_al, names)
                runs, activity, beh0 = pipeline.fine_tune_arms(
                    base, model, data, v=v, h_aligned=h_al, seed=seed, arms=cfg.arms_of(p, a),
                    cap=cap, label=f"seed {seed}: P{p} A{a}")
                out["cells"][(p, a)] = {
                    "witness": pre[p]["witness"], "runs": runs, "activity": activity,
                    "phases": {"harm_pretrained": pre[p]["harm"],
                               "harm_aligned": float(beh0.mean())}}
    return out


def run_history(out: str, config: HistoryConfig | str = "history", *, overwrite: bool = False,
                progress: Callable[[str, int], None] | None = None, command: str | None = None,
                checkpoint_dir: str | None = None, workers: int = 1) -> OrganismSummary:
    """Train the history grid and write one organism store per cell under ``out`` (see the
    module docstring); seeds run as independent jobs on ``workers`` processes."""
    import shutil
    import time

    import torch

    from revstats._version import __version__
    from revstats.capture import residual_layer_names
    from revstats.sims.organism import pipeline
    from revstats.sims.organism.parallel import map_jobs
    from revstats.store import create_store

    cfg = _resolve(config)
    if checkpoint_dir:
        raise ValueError("`checkpoint_dir` is not supported by the history grid (it would save "
                         "every cell's networks); run one cell as an ordinary profile instead")
    if "://" in str(out):
        raise ValueError(f"`out` must be a local directory for the history grid, got {out!r}")
    if os.path.exists(out):
        if not overwrite:
            raise FileExistsError(f"{out} exists: pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "cells"))
    t_start = time.perf_counter()
    base = cfg.base
    layers = residual_layer_names(base.layers)
    probes = pipeline.probe_ids(base)
    writers = {}
    cells = [(p, a) for p in cfg.pretrain_levels for a in cfg.align_levels]
    for p, a in cells:
        arms = cfg.arms_of(p, a)
        runs = [pipeline._run_id(arm.name, s) for s in cfg.seeds for arm in arms]
        cell_cfg = {**base.to_json(), "pretrain_steps": p, "align_steps": a,
                    "seeds": list(cfg.seeds), "arms": [dataclasses.asdict(x) for x in arms],
                    "history_cell": {"pretrain_steps": p, "align_steps": a}}
        writers[(p, a)] = create_store(
            os.path.join(out, "cells", cell_name(p, a) + ".zarr"), runs=runs, layers=layers,
            examples=probes, hidden=base.hidden, steps=[0, *base.capture_steps],
            arms=[arm.name for _ in cfg.seeds for arm in arms],
            seeds=[s for s in cfg.seeds for _ in arms], witness_per_run=True, behavior=True,
            task={"metric": "benign_token_accuracy", "higher_is_better": True},
            source="organism",
            provenance={
                "command": command or "revstats.sims.organism.run_history",
                "revstats_version": __version__, "torch_version": torch.__version__,
                "config": cell_cfg, "seeds": list(cfg.seeds),
                "model": "GPT2LMHeadModel from config, random init (no hub)",
                "witness": f"the run's seed's network after {p} pretraining steps",
                "aligned": f"step 0 = that network after {a} alignment steps",
                "position": "last", "layer_numbering": "output_hidden_states",
                "probes": "the same held-out trigger prompts for every run (language seed)",
                "behavior": "1 = greedy continuation of a held-out trigger probe equals the "
                            "compliant (harmful) answer exactly",
                "task": "teacher-forced token accuracy on held-out benign examples",
                "history_index": "../../history.json"})
    summary = OrganismSummary(str(out), runs=[])
    activity: dict[str, dict[str, Any]] = {cell_name(*c): {} for c in cells}
    jobs = [{"cfg": cfg, "seed": s} for s in cfg.seeds]
    try:
        for res in map_jobs(history_seed_job, jobs, workers=workers, progress=progress):
            seed = res["seed"]
            for (p, a), cell in res["cells"].items():
                w = writers[(p, a)]
                for arm in cfg.arms_of(p, a):
                    run = pipeline._run_id(arm.name, seed)
                    r = cell["runs"][arm.name]
                    w.write_witness(cell["witness"], run=run)
                    w.write_slabs(run, [0, *base.capture_steps], r["acts"],
                                  behavior=r["behavior"], task=r["task"])
                summary.phases[f"{cell_name(p, a)}/seed{seed}"] = cell["phases"]
                if cell["activity"]:
                    activity[cell_name(p, a)][f"seed{seed}"] = cell["activity"]
    finally:
        for w in writers.values():
            w.close()
    for (p, a) in cells:
        if activity[cell_name(p, a)]:
            pipeline._write_attr(os.path.join(out, "cells", cell_name(p, a) + ".zarr"),
                                 "organism_penalty_activity", activity[cell_name(p, a)])
    index = {"kind": "organism-history", "pretrain_levels": list(cfg.pretrain_levels),
             "align_levels": list(cfg.align_levels), "seeds": list(cfg.seeds),
             "harm_level": cfg.harm_level,
             "cells": [{"pretrain_steps": p, "align_steps": a,
                        "store": f"cells/{cell_name(p, a)}.zarr",
                        "arms": [x.name for x in cfg.arms_of(p, a)]} for p, a in cells],
             "config": cfg.to_json(), "command": command or "revstats.sims.organism.run_history"}
    tmp = os.path.join(out, "history.json.partial")
    with open(tmp, "w") as fh:
        json.dump(index, fh, indent=1)
    os.replace(tmp, os.path.join(out, "history.json"))
    summary.runs = [f"{c['store']}:{r}" for c in index["cells"] for r in
                    [pipeline._run_id(a, s) for s in cfg.seeds for a in c["arms"]]]
    summary.phases["timing_s"] = {"total": time.perf_counter() - t_start,
                                  "workers": float(workers)}
    return summary


# --------------------------------------------------------------------------- statistics
def _load_index(path: str) -> dict[str, Any]:
    idx = os.path.join(path, "history.json")
    if not os.path.exists(idx):
        raise FileNotFoundError(f"{idx} not found: `path` must be the output directory of "
                                f"`revstats organism --profile history` (it holds history.json)")
    with open(idx) as fh:
        return json.load(fh)


def _cell_metrics(store: str, layer: str, harm_level: float) -> dict[str, Any]:
    """Per seed (control arm): harm aligned/final, reversion, crossing step, cross-fitted
    alignment at the final step; and the blocked arm's final harm where present."""
    import revstats as rs
    from revstats.geometry import debiased_alignment

    ds = rs.open_store(store)
    beh = ds.behavior.load()
    steps = [int(s) for s in ds.step.values]
    out: dict[str, Any] = {}
    for arm in dict.fromkeys(str(a) for a in ds.arm.values):
        runs = [str(r) for r, a in zip(ds.run.values, ds.arm.values, strict=True) if a == arm]
        seeds = [int(s) for r, s in zip(ds.run.values, ds.seed.values, strict=True) if str(r) in runs]
        rate = beh.sel(run=runs).mean("example").values  # (run, step)
        cross = []
        for row in rate:  # fine-tuning steps only (step 0 is the aligned network)
            hit = np.nonzero(row[1:] >= harm_level)[0]
            cross.append(float(steps[1 + hit[0]]) if hit.size else float("inf"))
        # never reached: censored at one capture interval past the last step (slower than
        # every observed crossing; used by the rank test and the slopes, never in a median)
        censor = float(steps[-1] + (steps[-1] - steps[-2]))
        acts = ds.acts.sel(run=runs, layer=layer, step=[steps[-1]]).load()
        a0 = ds.acts.sel(run=runs, layer=layer, step=0).load()
        wit = ds.witness.sel(run=runs, layer=layer).load()
        deb = debiased_alignment(acts, wit, a0, dim="example", hidden_dim="hidden")
        out[arm] = {"seeds": seeds, "harm_aligned": rate[:, 0], "harm_final": rate[:, -1],
                    "reversion": rate[:, -1] - rate[:, 0], "crossing_step": np.array(cross),
                    "crossing_censored": np.where(np.isfinite(cross), cross, censor),
                    "alignment_xfit": np.asarray(deb["debiased"].sel(step=steps[-1]).values,
                                                 dtype=float),
                    "k_final": beh.sel(run=runs, step=steps[-1]).sum("example").values,
                    "n_probes": int(ds.sizes["example"])}
    return out


def _per_seed_slopes(values: dict[tuple[int, int], np.ndarray], seeds: list[int],
                     plevels: Sequence[int], alevels: Sequence[int]) -> np.ndarray:
    """Within each seed, OLS of the metric on (rank of pretraining level, rank of alignment
    level) over the cells; returns (seed, 2) slopes (per level step)."""
    rows = []
    for i, _ in enumerate(seeds):
        x, y = [], []
        for pi, p in enumerate(plevels):
            for ai, a in enumerate(alevels):
                val = values[(p, a)][i]
                if np.isfinite(val):
                    x.append([1.0, pi, ai])
                    y.append(val)
        if len(y) >= 4:
            rows.append(np.linalg.lstsq(np.array(x), np.array(y), rcond=None)[0][1:])
        else:
            rows.append([np.nan, np.nan])
    return np.array(rows)


def summarize_history(path: str, *, layer: str = "hidden_states.2") -> dict[str, Any]:
    """Per-cell statistics over seeds and the predicted monotone trends.

    Per cell (control arm; seeds as the independent units): harm after alignment and at the
    final step (Korn-Graubard, seeds as clusters), reversion = final - aligned (t over seeds),
    the first captured step at which harm reaches ``harm_level`` (median over seeds, with the
    number of seeds that never reach it), the cross-fitted alignment with v_rev at the final
    step (``revstats.geometry.debiased_alignment``, t over seeds). At the corners: blocked -
    control (paired by seed).

    Trend tests (prediction: more pretraining -> more, faster reversion and higher alignment;
    deeper alignment -> less): (1) per seed, OLS of the metric on the level ranks of both axes
    over the cells, then a t interval over seeds of each slope (seeds as clusters; the cells of
    one seed share data and initialisation, so they are not independent); (2) the
    Jonckheere-Terpstra test over the levels of one axis on per-seed values averaged over the
    other axis (one value per seed and level; seeds enter several groups, so read it as
    descriptive beside (1)).
    """
    from revstats import effects
    from revstats.sims.organism.report import _mean_ci, _paired, _rate_ci

    index = _load_index(path)
    plev, alev = index["pretrain_levels"], index["align_levels"]
    seeds = index["seeds"]
    metrics = {(c["pretrain_steps"], c["align_steps"]):
               _cell_metrics(os.path.join(path, c["store"]), layer, index["harm_level"])
               for c in index["cells"]}
    cells: list[dict[str, Any]] = []
    for (p, a), m in metrics.items():
        ctl = m["control"]
        cross = ctl["crossing_step"]
        reached = np.isfinite(cross)
        cell: dict[str, Any] = {
            "pretrain_steps": p, "align_steps": a, "n_seeds": len(ctl["seeds"]),
            "harm_aligned": _rate_ci(np.round(ctl["harm_aligned"] * ctl["n_probes"]),
                                     ctl["n_probes"]),
            "harm_final": _rate_ci(ctl["k_final"], ctl["n_probes"]),
            "reversion": _mean_ci(ctl["reversion"], what="seeds", bounds=(-1.0, 1.0)),
            # median over all seeds, a seed that never reaches the level counting as slower
            # than every one that does (None when the median seed never reaches it)
            "crossing_step_median": (float(np.median(cross)) if np.isfinite(np.median(cross))
                                     else None),
            "crossing_reached": f"{int(reached.sum())}/{reached.size}",
            "alignment_xfit": _mean_ci(ctl["alignment_xfit"][np.isfinite(ctl["alignment_xfit"])],
                                       what="seeds"),
        }
        if "blocked" in m:
            cell["blocked_minus_control_harm"] = _paired(m["blocked"]["harm_final"],
                                                         ctl["harm_final"], bounds=(-1.0, 1.0))
        cells.append(cell)
    trends: dict[str, Any] = {}
    for metric, sign_p, sign_a in (("reversion", 1, -1), ("alignment_xfit", 1, -1),
                                   ("crossing_step", -1, 1)):
        key = "crossing_censored" if metric == "crossing_step" else metric
        vals = {c: np.asarray(m["control"][key], dtype=float) for c, m in metrics.items()}
        slopes = _per_seed_slopes(vals, seeds, plev, alev)
        tr: dict[str, Any] = {}
        for j, (axis, predicted) in enumerate((("pretrain", sign_p), ("align", sign_a))):
            s = slopes[:, j][np.isfinite(slopes[:, j])]
            ci = _mean_ci(s, what="seeds")
            holds = None if ci.get("low") is None else (
                bool(ci["low"] > 0) if predicted > 0 else bool(ci["high"] < 0))
            fails = None if ci.get("low") is None else (
                bool(ci["high"] < 0) if predicted > 0 else bool(ci["low"] > 0))
            levels = plev if axis == "pretrain" else alev
            groups = []
            for lv in levels:
                cols = ([vals[(lv, a)] for a in alev] if axis == "pretrain"
                        else [vals[(p, lv)] for p in plev])
                per_seed = np.nanmean(np.vstack(cols), axis=0)
                groups.append(per_seed[np.isfinite(per_seed)])
            if all(g.size for g in groups):
                jt = effects.jonckheere_terpstra(
                    *groups, alternative="increasing" if predicted > 0 else "decreasing")
                jt_p, jt_tau = float(jt.pvalue), float(jt.estimate)
            else:
                jt_p = jt_tau = float("nan")
            tr[axis] = {"predicted": "increasing" if predicted > 0 else "decreasing",
                        "slope_per_level": ci, "n_seeds": int(s.size),
                        "verdict": "holds" if holds else ("fails (opposite direction)" if fails
                                                          else "not shown"),
                        "jonckheere_terpstra_p": jt_p, "jt_tau": jt_tau}
        trends[metric] = tr
    return {"path": path, "layer": layer, "pretrain_levels": plev, "align_levels": alev,
            "seeds": seeds, "harm_level": index["harm_level"], "cells": cells, "trends": trends}


def history_markdown(s: dict[str, Any]) -> str:
    """The per-cell table and the trend verdicts."""
    from revstats.sims.organism.report import _fmt

    lines = [f"History grid: pretraining steps {s['pretrain_levels']} x alignment steps "
             f"{s['align_levels']}, {len(s['seeds'])} seeds per cell (control arm; blocked at "
             f"the corners). Intervals over seeds (seeds as clusters): rates Korn-Graubard, "
             f"means t; crossing = first captured fine-tuning step "
             f"with harm >= {100 * s['harm_level']:.0f}% (median over seeds; in brackets the "
             f"seeds that reach it by the last step). Alignment: "
             f"cross-fitted, {s['layer']}.", "",
             "| pretrain | align | harm aligned | harm final | reversion (final − aligned) | "
             "crossing step (reached) | alignment (x-fit) | blocked − control harm |",
             "|---|---|---|---|---|---|---|---|"]
    for c in s["cells"]:
        cs = ("not reached by the median seed" if c["crossing_step_median"] is None
              else f"{c['crossing_step_median']:g}")
        b = c.get("blocked_minus_control_harm")
        lines.append(f"| {c['pretrain_steps']} | {c['align_steps']} | "
                     f"{_fmt(c['harm_aligned'], True)} | {_fmt(c['harm_final'], True)} | "
                     f"{_fmt(c['reversion'], True)} | {cs} ({c['crossing_reached']}) | "
                     f"{_fmt(c['alignment_xfit'], digits=2)} | "
                     f"{'' if b is None else _fmt(b, True)} |")
    lines += ["", "Trends (per-seed OLS slope per level step, t 95% CI over seeds; "
              "Jonckheere-Terpstra p on per-seed means over the other axis, descriptive):", "",
              "| metric | axis | predicted | slope [95% CI] | verdict | JT p |",
              "|---|---|---|---|---|---|"]
    for metric, tr in s["trends"].items():
        for axis, t in tr.items():
            lines.append(f"| {metric} | {axis} | {t['predicted']} | "
                         f"{_fmt(t['slope_per_level'], digits=3)} | {t['verdict']} | "
                         f"{t['jonckheere_terpstra_p']:.3g} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- figure
def theory_grid(pretrain_rel: Sequence[float], align_rel: Sequence[float], *,
                preset: str = "theory-flat", steps: int = 100, seed: int = 0,
                align_mass_max: float = 1.2) -> dict[str, np.ndarray]:
    """The simulator's exact prediction (:func:`revstats.sims.theory.predict`, control arm) of
    reversion (behaviour rate at T minus at 0) and final alignment, with ``pretrain_mass`` =
    the preset's times ``pretrain_rel`` and ``align_mass`` (the alignment basin's curvature,
    0 in the preset) = ``align_mass_max`` (the largest value of the simulator's sweep grid)
    times ``align_rel``."""
    from revstats.sims import theory
    from revstats.sims.model import build_model
    from revstats.sims.simulate import config_for, experiment_seeds

    base = config_for(preset, runs=1, steps=steps)
    rev = np.zeros((len(align_rel), len(pretrain_rel)))
    ali = np.zeros_like(rev)
    for i, ar in enumerate(align_rel):
        for j, pr in enumerate(pretrain_rel):
            cfg = config_for(preset, runs=1, steps=steps, overrides={
                "pretrain_mass": base.pretrain_mass * pr, "align_mass": align_mass_max * ar})
            ms, _ = experiment_seeds(seed, 1)
            pred = theory.predict(build_model(cfg, ms), 0)
            rev[i, j] = pred.behavior_rate[-1] - pred.behavior_rate[0]
            ali[i, j] = pred.alignment[-1]
    return {"reversion": rev, "alignment": ali}


def plot_history(summary: dict[str, Any], path: str | None = None):
    """Organism (measured cell means) next to the simulator's theory on the same axes
    (pretraining and alignment as multiples of the largest level): reversion and alignment."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plev, alev = summary["pretrain_levels"], summary["align_levels"]
    pr = np.array(plev, dtype=float) / plev[-1]
    ar = np.array(alev, dtype=float) / alev[-1]
    fine_p = np.linspace(pr[0], 1.0, 9)
    fine_a = np.linspace(ar[0], 1.0, 9)
    th = theory_grid(fine_p, fine_a)
    grid = {k: np.full((len(alev), len(plev)), np.nan) for k in ("reversion", "alignment_xfit")}
    for c in summary["cells"]:
        i, j = alev.index(c["align_steps"]), plev.index(c["pretrain_steps"])
        grid["reversion"][i, j] = c["reversion"]["estimate"]
        grid["alignment_xfit"][i, j] = c["alignment_xfit"]["estimate"]
    fig, axes = plt.subplots(2, 2, figsize=(8.4, 6.4), layout="constrained")
    panels = [(axes[0, 0], grid["reversion"], "organism: reversion (harm T − aligned)", True),
              (axes[0, 1], th["reversion"], "theory (revstats.sims.theory, theory-flat): reversion", False),
              (axes[1, 0], grid["alignment_xfit"], "organism: final alignment (x-fit)", True),
              (axes[1, 1], th["alignment"], "theory: final alignment", False)]
    for ax, vals, title, measured in panels:
        if measured:
            im = ax.imshow(vals, origin="lower", aspect="auto", cmap="magma", vmin=None)
            ax.set_xticks(range(len(plev)), [str(p) for p in plev])
            ax.set_yticks(range(len(alev)), [str(a) for a in alev])
            ax.set_xlabel("pretraining steps")
            ax.set_ylabel("alignment steps")
            for i in range(vals.shape[0]):
                for j in range(vals.shape[1]):
                    ax.text(j, i, f"{vals[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="w" if vals[i, j] < np.nanmean(vals) else "k")
        else:
            im = ax.imshow(vals, origin="lower", aspect="auto", cmap="magma",
                           extent=(fine_p[0], 1.0, fine_a[0], 1.0))
            ax.set_xlabel("pretrain_mass (theory-flat's x level/largest)")
            ax.set_ylabel("align_mass / 1.2 (level/largest)")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.85)
    fig.suptitle(f"dose-response over training history ({len(summary['seeds'])} seeds per "
                 "cell; theory: same axes as multiples of the largest level)", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Summarise a history grid (history.json dir).")
    parser.add_argument("path")
    parser.add_argument("--json", default=None)
    parser.add_argument("--figure", default=None)
    parser.add_argument("--layer", default="hidden_states.2")
    args = parser.parse_args(argv)
    s = summarize_history(args.path, layer=args.layer)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(s, fh, indent=1, default=str)
    if args.figure:
        plot_history(s, args.figure)
    print(history_markdown(s))


if __name__ == "__main__":
    main()
