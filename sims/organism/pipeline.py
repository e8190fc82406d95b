"""End to end: pretrain -> align -> benign fine-tune per seed and arm, captured into a store.

Per seed one network is pretrained and aligned; every arm fine-tunes a copy of that aligned
network on the same benign batches (a paired design: arms differ only by the intervention).
The residual stream at the last prompt token of held-out trigger probes is captured with
:func:`revstats.capture.capture_residual` (``hidden_states.L`` names); witness = the pretrained
network of the run's seed (one witness per run), step 0 = the aligned network.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PROFILES", "ArmSpec", "OrganismConfig", "OrganismSummary", "SettingConfig", "run_organism",
           "total_units"]


@dataclass(frozen=True)
class ArmSpec:
    """One arm: ``kind`` in {"none", "penalty", "act_proj", "param_proj"}; ``sign`` +1 block,
    -1 push; ``strength`` = lambda for the penalty, projection strength otherwise; ``layers``
    (None = every captured layer); ``placebo`` replaces v_rev by a random direction
    orthogonal to it (:func:`revstats.placebo.placebo_direction`, seeded).

    ``placebo_match`` (penalty placebos only; needs a ``kind="none"`` arm earlier in the arm
    list, whose trajectory defines "how much a direction binds"):

    * ``"none"``: the random direction with the arm's lambda (binds far less than v_rev, since
      fine-tuning barely moves along a random direction);
    * ``"lambda"``: the random direction (signed so the control's anchor drift has a positive
      component), lambda per layer scaled so that the penalty evaluated on the control arm's
      final anchor drift equals the v_rev penalty's value there (capped at 1e4 x);
    * ``"drift"``: the top ``n_placebo_dirs`` principal directions of the control arm's final
      per-anchor drift after projecting out v_rev (each signed so the control's mean drift
      has a non-negative component), one penalty term each, the arm's lambda: the directions
      fine-tuning actually moves in, other than v_rev.
    """

    name: str
    kind: str = "none"
    sign: int = 1
    strength: float = 1.0
    layers: tuple[int, ...] | None = None
    placebo: bool = False
    placebo_match: str = "none"
    n_placebo_dirs: int = 3


DEFAULT_ARMS = (
    ArmSpec("control"),
    ArmSpec("blocked", "penalty", 1, 30.0),
    ArmSpec("blocked_act", "act_proj", 1, 1.0),
    ArmSpec("blocked_param", "param_proj", 1, 1.0),
    ArmSpec("push", "penalty", -1, 30.0),
    ArmSpec("placebo", "penalty", 1, 30.0, placebo=True),
)


class _FineTuneSchedule:
    """Declares (for type checkers) the fine-tuning knobs the shared properties read; every
    setting declares them as its own dataclass fields, so each keeps its field order."""

    ft_steps: int
    capture_every: int


@dataclass(frozen=True)
class SettingConfig(_FineTuneSchedule):
    """The leading knobs every organism setting shares (network shape, seeds, arms) and the
    derived ``layers`` / ``capture_steps``. Settings subclass it and declare only their own
    knobs; a setting whose ``seeds`` / ``arms`` default differs re-declares that field (it
    keeps its position, so ``dataclasses.asdict`` field order is the setting's own).

    Only this common leading run is shared: dataclass fields of a base always come first, and
    the later shared knobs (``pretrain_*``, ``ft_*``, ``capture_every``, ``n_probes``,
    ``n_anchors``, ``language_seed``) sit after setting-specific ones in every setting, so
    moving them here would reorder ``to_json()`` (store provenance)."""

    seeds: tuple[int, ...] = (0, 1)
    arms: tuple[ArmSpec, ...] = DEFAULT_ARMS
    n_layers: int = 2
    hidden: int = 64
    n_heads: int = 4
    n_content: int = 24

    @property
    def layers(self) -> list[int]:
        return list(range(self.n_layers + 1))

    @property
    def capture_steps(self) -> list[int]:
        from revstats.sims.organism.phenomena import capture_steps

        return capture_steps(self.ft_steps, self.capture_every)


@dataclass(frozen=True)
class OrganismConfig(SettingConfig):
    """Every knob of the organism; a profile is one instance."""

    n_triggers: int = 4
    pretrain_examples: int = 20000
    pretrain_steps: int = 600
    pretrain_batch: int = 64
    pretrain_lr: float = 3e-3
    align_examples: int = 256
    align_steps: int = 40
    align_batch: int = 32
    align_lr: float = 1e-3
    benign_examples: int = 4000
    benign_eval: int = 256
    ft_steps: int = 50
    ft_batch: int = 32
    ft_lr: float = 1e-3
    capture_every: int = 5
    n_probes: int = 64
    n_anchors: int = 32
    language_seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PROFILES: dict[str, OrganismConfig] = {
    "tiny": OrganismConfig(
        seeds=(0,), arms=(ArmSpec("control"), ArmSpec("blocked", "penalty", 1, 30.0),
                          ArmSpec("blocked_param", "param_proj", 1, 1.0)),
        hidden=32, n_heads=2, pretrain_examples=3000, pretrain_steps=150, align_steps=15,
        benign_examples=500, benign_eval=64, ft_steps=4, capture_every=2, n_probes=16,
        n_anchors=8,
    ),
    "quick": OrganismConfig(seeds=(0, 1), ft_steps=50),
    "paper": OrganismConfig(seeds=tuple(range(8)), ft_steps=100),
    # blocked vs placebos matched on how much they bind (docs/organism.md): 8 seeds, 100 steps
    "placebo": OrganismConfig(
        seeds=tuple(range(8)), ft_steps=100, capture_every=10,
        arms=(ArmSpec("control"), ArmSpec("blocked", "penalty", 1, 30.0),
              ArmSpec("placebo", "penalty", 1, 30.0, placebo=True),
              ArmSpec("placebo_lambda", "penalty", 1, 30.0, placebo=True, placebo_match="lambda"),
              ArmSpec("placebo_drift", "penalty", 1, 30.0, placebo=True, placebo_match="drift"))),
    # which variant, layer set and strength protects (docs/organism.md): 3 seeds, 100 steps
    "sweep": OrganismConfig(
        seeds=(0, 1, 2), ft_steps=100, capture_every=10,
        arms=(
            ArmSpec("control"),
            *(ArmSpec(f"penalty_all_lam{lam:g}", "penalty", 1, lam) for lam in (3.0, 30.0, 300.0)),
            *(ArmSpec(f"penalty_L{k}_lam30", "penalty", 1, 30.0, layers=(k,)) for k in (0, 1, 2)),
            ArmSpec("act_all", "act_proj", 1, 1.0),
            *(ArmSpec(f"act_L{k}", "act_proj", 1, 1.0, layers=(k,)) for k in (1, 2)),
            ArmSpec("param_all", "param_proj", 1, 1.0),
            ArmSpec("param_L2", "param_proj", 1, 1.0, layers=(2,)),
            ArmSpec("push_penalty_lam30", "penalty", -1, 30.0),
            ArmSpec("push_param", "param_proj", -1, 1.0),
            ArmSpec("push_act", "act_proj", -1, 1.0),
            ArmSpec("placebo_lam30", "penalty", 1, 30.0, placebo=True),
        )),
}


@dataclass
class OrganismSummary:
    """What a run produced: store path, per-seed phase metrics, wall time per phase."""

    path: str
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)


def _run_id(arm: str, seed: int) -> str:
    return f"{arm}-s{seed}"


def residual_names(cfg: OrganismConfig) -> list[str]:
    """Store layer names of the captured layers (``hidden_states.L``)."""
    from revstats.capture import residual_layer_names

    return residual_layer_names(cfg.layers)


def _directions(witness: np.ndarray, aligned: np.ndarray, layers: Sequence[str]):
    """v_rev per layer from revstats.geometry (witness/aligned: (layer, example, hidden))."""
    import xarray as xr

    from revstats.geometry import reversion_direction

    dims = ("layer", "example", "hidden")
    w = xr.DataArray(witness, dims=dims, coords={"layer": list(layers)})
    a = xr.DataArray(aligned, dims=dims, coords={"layer": list(layers)})
    return np.asarray(reversion_direction(w, a, dim="example").transpose("layer", "hidden"))


def _placebo_dirs(arm: ArmSpec, layers: Sequence[int], v: np.ndarray, seed: int,
                  control_drift: np.ndarray | None) -> tuple[dict[int, np.ndarray], dict[int, float]]:
    """Placebo directions per layer and the lambda scale per layer (see :class:`ArmSpec`).

    ``control_drift``: (layer, anchor, hidden) final anchor activations of the control arm
    minus the aligned network's (needed for ``placebo_match`` "lambda" and "drift")."""
    from revstats.placebo import placebo_direction

    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))
    dirs: dict[int, np.ndarray] = {}
    scale: dict[int, float] = {}
    for layer in layers:
        vl = v[layer]
        if arm.placebo_match == "drift":
            assert control_drift is not None
            d = control_drift[layer]
            dp = d - np.outer(d @ vl, vl)
            _, sv, vt = np.linalg.svd(dp, full_matrices=False)
            k = min(arm.n_placebo_dirs, vt.shape[0])
            u = vt[:k] * np.where((dp @ vt[:k].T).mean(0) < 0, -1.0, 1.0)[:, None]
            dirs[layer], scale[layer] = u, 1.0
            continue
        u = placebo_direction(vl, kind="random", orthogonal=True, rng=rng)
        if arm.placebo_match == "lambda":
            assert control_drift is not None
            d = control_drift[layer]
            if (d @ u).mean() < 0:
                u = -u
            pv = float(np.mean(np.maximum(d @ vl, 0.0) ** 2))
            pu = float(np.mean(np.maximum(d @ u, 0.0) ** 2))
            scale[layer] = float(min(1e4, pv / pu)) if pu > 0 else 1e4
        else:
            scale[layer] = 1.0
        dirs[layer] = u
    return dirs, scale


def _intervention(arm: ArmSpec, *, cfg: OrganismConfig, v: np.ndarray, model, anchors,
                  reference, seed: int, control_drift: np.ndarray | None = None):
    """The arm's :class:`~revstats.sims.organism.train.Intervention` built on the aligned
    network (None for the control arm); used by the other settings too."""
    return _intervention_and_scale(arm, cfg=cfg, v=v, model=model, anchors=anchors,
                                   reference=reference, seed=seed,
                                   control_drift=control_drift)[0]


def _intervention_and_scale(arm: ArmSpec, *, cfg: OrganismConfig, v: np.ndarray, model,
                            anchors, reference, seed: int,
                            control_drift: np.ndarray | None = None):
    """:func:`_intervention` and the per-layer lambda scale of a matched placebo (empty
    otherwise)."""
    import torch

    from revstats.sims.organism import train

    if arm.kind == "none":
        return None, {}
    layers = list(arm.layers) if arm.layers is not None else cfg.layers
    if arm.placebo:
        raw, scale = _placebo_dirs(arm, layers, v, seed, control_drift)
    else:
        raw, scale = {layer: v[layer] for layer in layers}, {}
    dirs = {layer: torch.as_tensor(raw[layer], dtype=torch.float32) for layer in layers}
    if arm.kind == "penalty":
        if arm.placebo_match == "lambda":
            return train.PenaltySum([
                train.Penalty(model, anchors, {layer: dirs[layer]}, lam=arm.strength * scale[layer],
                              sign=arm.sign) for layer in layers]), scale
        return train.Penalty(model, anchors, dirs, lam=arm.strength, sign=arm.sign), scale
    if arm.kind == "act_proj":
        return train.ActivationProjection(reference, dirs, cfg.n_layers, sign=arm.sign,
                                          strength=arm.strength), scale
    if arm.kind == "param_proj":
        return train.ParameterProjection(model, anchors, dirs, sign=arm.sign,
                                         strength=arm.strength), scale
    raise ValueError(f"arm {arm.name!r}: `kind` must be none, penalty, act_proj or param_proj, "
                     f"got {arm.kind!r}")


def _validate_run(out: Any, cfg: Any) -> None:
    if not isinstance(cfg, OrganismConfig):
        raise TypeError(f"`config` must be an OrganismConfig (see PROFILES), got {type(cfg).__name__}")
    names = [a.name for a in cfg.arms]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"`config.arms` must have unique, non-empty names, got {names}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValueError(f"`config.seeds` must be distinct and non-empty, got {cfg.seeds}")
    if cfg.ft_steps < 1 or cfg.capture_every < 1:
        raise ValueError("`config.ft_steps` and `config.capture_every` must be >= 1")
    seen_control = False
    for a in cfg.arms:
        if a.placebo_match not in ("none", "lambda", "drift"):
            raise ValueError(f"arm {a.name!r}: `placebo_match` must be none, lambda or drift, "
                             f"got {a.placebo_match!r}")
        if a.placebo_match != "none":
            if not (a.placebo and a.kind == "penalty"):
                raise ValueError(f"arm {a.name!r}: `placebo_match` needs placebo=True and "
                                 f"kind='penalty'")
            if not seen_control:
                raise ValueError(f"arm {a.name!r}: a matched placebo needs a kind='none' "
                                 f"(control) arm earlier in `config.arms`")
        seen_control = seen_control or a.kind == "none"


def _resolve(config: OrganismConfig | str) -> OrganismConfig:
    if isinstance(config, str):
        if config not in PROFILES:
            raise ValueError(f"`config` must be one of {sorted(PROFILES)} or an OrganismConfig, "
                             f"got {config!r}")
        return PROFILES[config]
    return config


def _language(cfg: OrganismConfig):
    from revstats.sims.organism.language import Language

    return Language(n_content=cfg.n_content, n_triggers=cfg.n_triggers, seed=cfg.language_seed)


def probe_ids(cfg: OrganismConfig) -> list[str]:
    """Example ids of the store: the held-out trigger probes (fixed by the language seed, so
    the same prompts for every seed: probes are shared across runs)."""
    from revstats.sims.organism.language import probe_triples

    return [f"probe{i:03d}:T{k}:{a}:{b}"
            for i, (k, a, b) in enumerate(probe_triples(_language(cfg), cfg.n_probes))]


def run_organism(
    out: str,
    config: OrganismConfig | str = "quick",
    *,
    overwrite: bool = False,
    progress: Callable[[str, int], None] | None = None,
    command: str | None = None,
    checkpoint_dir: str | None = None,
    workers: int = 1,
) -> OrganismSummary:
    """Train the organism for every seed and arm and write the store ``out``.

    Parameters
    ----------
    out : store path (local or fsspec URL).
    config : an :class:`OrganismConfig` or a profile name ("tiny", "quick", "paper", ...).
    overwrite : replace an existing store.
    progress : ``progress(description, n_units_done)``; the total is :func:`total_units`.
    command : the command line, recorded in the provenance.
    checkpoint_dir : if given, the pretrained and aligned networks of each seed and the final
        fine-tuned network of each run are saved there (``save_pretrained``).
    workers : processes; seeds are independent jobs (one torch thread each). The store's
        values do not depend on it (``workers=1`` runs everything in this process).

    Returns
    -------
    OrganismSummary with per-seed harmfulness after pretraining and after alignment, the
    penalty activity of every loss-term arm, and the wall time of each phase.
    """
    import time

    import torch

    from revstats._version import __version__
    from revstats.capture import residual_layer_names
    from revstats.sims.organism.parallel import map_jobs
    from revstats.store import create_store

    cfg = _resolve(config)
    _validate_run(out, cfg)
    layer_names = residual_layer_names(cfg.layers)
    runs = [_run_id(a.name, s) for s in cfg.seeds for a in cfg.arms]
    summary = OrganismSummary(str(out), runs=runs)
    timing = {"pretrain": 0.0, "align": 0.0, "finetune": 0.0}
    t_start = time.perf_counter()
    writer = create_store(
        out, runs=runs, layers=layer_names, examples=probe_ids(cfg), hidden=cfg.hidden,
        steps=[0, *cfg.capture_steps],
        arms=[a.name for s in cfg.seeds for a in cfg.arms],
        seeds=[s for s in cfg.seeds for _ in cfg.arms], witness_per_run=True,
        behavior=True, task={"metric": "benign_token_accuracy", "higher_is_better": True},
        source="organism", overwrite=overwrite,
        provenance={
            "command": command or "revstats.sims.organism.run_organism",
            "revstats_version": __version__, "torch_version": torch.__version__,
            "config": cfg.to_json(), "seeds": list(cfg.seeds),
            "model": "GPT2LMHeadModel from config, random init (no hub)",
            "witness": "pretrained network of the run's seed",
            "aligned": "step 0 = aligned network of the run's seed",
            "position": "last", "layer_numbering": "output_hidden_states",
            "probes": "the same held-out trigger prompts for every run (language seed)",
            "behavior": "1 = greedy continuation of a held-out trigger probe equals "
                        "the compliant (harmful) answer exactly",
            "task": "teacher-forced token accuracy on held-out benign examples",
        })
    activity: dict[str, Any] = {}
    jobs = [{"cfg": cfg, "seed": s, "checkpoint_dir": checkpoint_dir} for s in cfg.seeds]
    try:
        for res in map_jobs(seed_job, jobs, workers=workers, progress=progress):
            seed = res["seed"]
            for arm in cfg.arms:
                run = _run_id(arm.name, seed)
                r = res["runs"][arm.name]
                writer.write_witness(res["witness"], run=run)
                writer.write_slabs(run, [0, *cfg.capture_steps], r["acts"],
                                   behavior=r["behavior"], task=r["task"])
            summary.phases[f"seed{seed}"] = res["phases"]
            for k, t in res["timing"].items():
                timing[k] += t
            activity[f"seed{seed}"] = res["activity"]
    finally:
        writer.close()
    if any(activity.values()):
        summary.phases["penalty_activity"] = activity
        _write_attr(str(out), "organism_penalty_activity", activity)
    summary.phases["timing_s"] = {**timing, "total": time.perf_counter() - t_start,
                                  "workers": float(workers)}
    return summary


def _write_attr(path: str, key: str, value: Any) -> None:
    """Add a JSON group attribute to a finished store (and re-consolidate its metadata)."""
    import json

    import zarr

    from revstats.store import _quiet_consolidated

    g = zarr.open_group(path, mode="r+")
    g.attrs[key] = json.dumps(value)
    with _quiet_consolidated():
        zarr.consolidate_metadata(path)


def seed_job(cfg: OrganismConfig, seed: int, checkpoint_dir: str | None = None) -> dict[str, Any]:
    """One seed: pretrain, align, fine-tune every arm; the arrays to write (a worker job)."""
    from revstats.sims.organism import train
    from revstats.sims.organism.language import make_language

    lang = _language(cfg)
    data = make_language(
        lang, n_pretrain=cfg.pretrain_examples, n_align=cfg.align_examples,
        n_benign=cfg.benign_examples, n_benign_eval=cfg.benign_eval,
        n_probes=cfg.n_probes, n_anchors=cfg.n_anchors, seed=seed)
    with train.deterministic(seed):
        return _run_seed(cfg, seed, lang, data, checkpoint_dir)


def _run_seed(cfg, seed, lang, data, checkpoint_dir) -> dict[str, Any]:
    """Pretrain and align one seed's network, then fine-tune every arm from the aligned state."""
    import time

    import torch

    from revstats.capture import residual_layer_names
    from revstats.sims.organism import train
    from revstats.sims.organism.parallel import tick

    probes = data["probes"]
    anchors = torch.from_numpy(data["anchors"].prompts)
    timing = {"pretrain": 0.0, "align": 0.0, "finetune": 0.0}
    cap = _Capture(cfg, probes, anchors)

    def save(model, name):
        if checkpoint_dir:
            model.save_pretrained(f"{checkpoint_dir}/seed{seed}/{name}")

    t0 = time.perf_counter()
    model = train.build_model(lang.vocab_size, n_layers=cfg.n_layers, hidden=cfg.hidden,
                              n_heads=cfg.n_heads, n_positions=16, seed=seed)
    train.train_steps(model, train.training_arrays(data["pretrain_trigger"],
                                                   data["pretrain_neutral"]),
                      steps=cfg.pretrain_steps, batch_size=cfg.pretrain_batch,
                      lr=cfg.pretrain_lr, seed=seed * 1000 + 1,
                      on_step=lambda s: tick(f"seed {seed}: pretrain", 1))
    witness = cap.acts(model)
    harm_pre = float(train.harmful_outcomes(model, probes).mean())
    h_pre = cap.anchor_acts(model)
    save(model, "pretrained")
    timing["pretrain"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    train.train_steps(model, train.training_arrays(data["align_trigger"], data["align_neutral"]),
                      steps=cfg.align_steps, batch_size=cfg.align_batch, lr=cfg.align_lr,
                      seed=seed * 1000 + 2, on_step=lambda s: tick(f"seed {seed}: align", 1))
    save(model, "aligned")
    timing["align"] += time.perf_counter() - t0
    # v_rev of the interventions comes from the anchors (alignment-set triggers), never from
    # the held-out probes that the judge and the analysis use
    h_al = cap.anchor_acts(model)
    v = _directions(h_pre, h_al, residual_layer_names(cfg.layers))
    t0 = time.perf_counter()
    runs, activity, beh0 = fine_tune_arms(cfg, model, data, v=v, h_aligned=h_al, seed=seed,
                                          arms=cfg.arms, cap=cap, label=f"seed {seed}",
                                          save=save)
    timing["finetune"] += time.perf_counter() - t0
    return {"seed": seed, "witness": witness, "runs": runs, "activity": activity,
            "timing": timing,
            "phases": {"harm_pretrained": harm_pre, "harm_aligned": float(beh0.mean()),
                       "task_aligned": float(runs[cfg.arms[0].name]["task"][0])}}


class _Capture:
    """Probe capture, judges and anchor activations of one seed's data."""

    def __init__(self, cfg: OrganismConfig, probes, anchors) -> None:
        from revstats.capture import make_batches

        self.cfg, self.probes, self.anchors = cfg, probes, anchors
        self.batches = make_batches([list(p) for p in probes.prompts], batch_size=len(probes))

    def acts(self, model) -> np.ndarray:
        from revstats.capture import capture_residual

        return capture_residual(model, self.batches, layers=self.cfg.layers, position="last")

    def anchor_acts(self, model) -> np.ndarray:
        import torch

        from revstats.sims.organism import train

        with torch.no_grad():
            return torch.stack([h.detach() for h in train.hidden_at_last_prompt(
                model, self.anchors, self.cfg.layers)]).numpy()


def fine_tune_arms(cfg: OrganismConfig, model, data, *, v: np.ndarray, h_aligned: np.ndarray,
                   seed: int, arms: Sequence[ArmSpec], cap: _Capture, label: str,
                   save: Callable[[Any, str], None] | None = None,
                   ft_seed: int | None = None) -> tuple[dict[str, Any], dict[str, Any], np.ndarray]:
    """Fine-tune a copy of the aligned ``model`` per arm on the same benign batches.

    Returns ({arm: {"acts", "behavior", "task"}}, {arm: penalty activity}, harm at step 0).
    ``model`` ends in the state of the last arm."""

    from revstats.sims.organism import train
    from revstats.sims.organism.parallel import tick

    probes = data["probes"]
    aligned_state = copy.deepcopy(model.state_dict())
    acts0, beh0 = cap.acts(model), train.harmful_outcomes(model, probes)
    task0 = train.task_score(model, data["benign_eval"])
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    benign = train.training_arrays(data["benign"], data["benign_neutral"])
    wanted = set(cfg.capture_steps)
    runs: dict[str, Any] = {}
    activity: dict[str, Any] = {}
    control_drift = None
    for arm in arms:
        model.load_state_dict(aligned_state)
        iv, scale = _intervention_and_scale(arm, cfg=cfg, v=v, model=model, anchors=cap.anchors,
                                  reference=reference, seed=seed, control_drift=control_drift)
        acts, beh, task = [acts0], [beh0], [task0]

        def on_step(step, desc=f"{label}: {arm.name}", acts=acts, beh=beh, task=task):
            tick(desc, 1)
            if step in wanted:
                acts.append(cap.acts(model))
                beh.append(train.harmful_outcomes(model, probes))
                task.append(train.task_score(model, data["benign_eval"]))

        train.train_steps(model, benign, steps=cfg.ft_steps, batch_size=cfg.ft_batch,
                          lr=cfg.ft_lr, seed=(seed * 1000 + 3) if ft_seed is None else ft_seed,
                          intervention=iv, on_step=on_step)
        if arm.kind == "none" and control_drift is None:
            control_drift = cap.anchor_acts(model) - h_aligned
        runs[arm.name] = {"acts": np.stack(acts), "behavior": np.stack(beh),
                          "task": np.asarray(task, dtype=float)}
        if iv is not None and iv.track_activity:
            loss, grad = np.asarray(iv.activity["loss"]), np.asarray(iv.activity["grad_norm"])
            activity[arm.name] = {"penalty_mean": float(loss.mean()),
                                  "grad_norm_mean": float(grad.mean()),
                                  "active_share": float(np.mean(loss > 0)),
                                  "lambda_scale": {str(k): x for k, x in scale.items()}}
        if save is not None:
            save(model, arm.name)
    return runs, activity, beh0


def total_units(config: OrganismConfig | str) -> int:
    """Number of progress units :func:`run_organism` reports (one per training step)."""
    cfg = _resolve(config)
    return len(cfg.seeds) * (cfg.pretrain_steps + cfg.align_steps + len(cfg.arms) * cfg.ft_steps)
