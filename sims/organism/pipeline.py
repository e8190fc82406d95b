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

__all__ = ["PROFILES", "ArmSpec", "OrganismConfig", "OrganismSummary", "run_organism", "total_units"]


@dataclass(frozen=True)
class ArmSpec:
    """One arm: ``kind`` in {"none", "penalty", "act_proj", "param_proj"}; ``sign`` +1 block,
    -1 push; ``strength`` = lambda for the penalty, projection strength otherwise; ``layers``
    (None = every captured layer); ``placebo`` replaces v_rev by a random direction
    orthogonal to it (:func:`revstats.placebo.placebo_direction`, seeded)."""

    name: str
    kind: str = "none"
    sign: int = 1
    strength: float = 1.0
    layers: tuple[int, ...] | None = None
    placebo: bool = False


DEFAULT_ARMS = (
    ArmSpec("control"),
    ArmSpec("blocked", "penalty", 1, 30.0),
    ArmSpec("blocked_act", "act_proj", 1, 1.0),
    ArmSpec("blocked_param", "param_proj", 1, 1.0),
    ArmSpec("push", "penalty", -1, 30.0),
    ArmSpec("placebo", "penalty", 1, 30.0, placebo=True),
)


@dataclass(frozen=True)
class OrganismConfig:
    """Every knob of the organism; a profile is one instance."""

    seeds: tuple[int, ...] = (0, 1)
    arms: tuple[ArmSpec, ...] = DEFAULT_ARMS
    n_layers: int = 2
    hidden: int = 64
    n_heads: int = 4
    n_content: int = 24
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

    @property
    def layers(self) -> list[int]:
        return list(range(self.n_layers + 1))

    @property
    def capture_steps(self) -> list[int]:
        steps = list(range(self.capture_every, self.ft_steps + 1, self.capture_every))
        if not steps or steps[-1] != self.ft_steps:
            steps.append(self.ft_steps)
        return steps

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


def _directions(witness: np.ndarray, aligned: np.ndarray, layers: Sequence[str]):
    """v_rev per layer from revstats.geometry (witness/aligned: (layer, example, hidden))."""
    import xarray as xr

    from revstats.geometry import reversion_direction

    dims = ("layer", "example", "hidden")
    w = xr.DataArray(witness, dims=dims, coords={"layer": list(layers)})
    a = xr.DataArray(aligned, dims=dims, coords={"layer": list(layers)})
    return np.asarray(reversion_direction(w, a, dim="example").transpose("layer", "hidden"))


def _intervention(arm: ArmSpec, *, cfg: OrganismConfig, v: np.ndarray, model, anchors,
                  reference, seed: int):
    """The arm's :class:`~sims.organism.train.Intervention`, built on the aligned network."""
    import torch

    from revstats.placebo import placebo_direction
    from revstats.sims.organism import train

    if arm.kind == "none":
        return None
    layers = list(arm.layers) if arm.layers is not None else cfg.layers
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))
    dirs = {layer: torch.as_tensor(
        placebo_direction(v[layer], kind="random", orthogonal=True, rng=rng) if arm.placebo
        else v[layer], dtype=torch.float32) for layer in layers}
    if arm.kind == "penalty":
        return train.Penalty(model, anchors, dirs, lam=arm.strength, sign=arm.sign)
    if arm.kind == "act_proj":
        return train.ActivationProjection(reference, dirs, cfg.n_layers, sign=arm.sign,
                                          strength=arm.strength)
    if arm.kind == "param_proj":
        return train.ParameterProjection(model, anchors, dirs, sign=arm.sign,
                                         strength=arm.strength)
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


def _resolve(config: OrganismConfig | str) -> OrganismConfig:
    if isinstance(config, str):
        if config not in PROFILES:
            raise ValueError(f"`config` must be one of {sorted(PROFILES)} or an OrganismConfig, "
                             f"got {config!r}")
        return PROFILES[config]
    return config


def run_organism(
    out: str,
    config: OrganismConfig | str = "quick",
    *,
    overwrite: bool = False,
    progress: Callable[[str, int], None] | None = None,
    command: str | None = None,
    checkpoint_dir: str | None = None,
) -> OrganismSummary:
    """Train the organism for every seed and arm and write the store ``out``.

    Parameters
    ----------
    out : store path (local or fsspec URL).
    config : an :class:`OrganismConfig` or a profile name ("tiny", "quick", "paper").
    overwrite : replace an existing store.
    progress : ``progress(description, n_units_done)``; the total is :func:`total_units`.
    command : the command line, recorded in the provenance.
    checkpoint_dir : if given, the pretrained and aligned networks of each seed and the final
        fine-tuned network of each run are saved there (``save_pretrained``).

    Returns
    -------
    OrganismSummary with per-seed harmfulness after pretraining and after alignment and the
    wall time of each phase.
    """
    import time

    import torch

    from revstats._version import __version__
    from revstats.capture import residual_layer_names
    from revstats.sims.organism.language import Language, make_language
    from revstats.store import create_store

    cfg = _resolve(config)
    _validate_run(out, cfg)
    tick = progress or (lambda desc, n: None)
    lang = Language(n_content=cfg.n_content, n_triggers=cfg.n_triggers, seed=cfg.language_seed)
    layer_names = residual_layer_names(cfg.layers)
    runs = [_run_id(a.name, s) for s in cfg.seeds for a in cfg.arms]
    summary = OrganismSummary(str(out), runs=runs)
    timing = {"pretrain": 0.0, "align": 0.0, "finetune": 0.0}
    t_start = time.perf_counter()
    writer = None
    try:
        for seed in cfg.seeds:
            data = make_language(
                lang, n_pretrain=cfg.pretrain_examples, n_align=cfg.align_examples,
                n_benign=cfg.benign_examples, n_benign_eval=cfg.benign_eval,
                n_probes=cfg.n_probes, n_anchors=cfg.n_anchors, seed=seed)
            if writer is None:  # probes are fixed by the language seed: the same for every seed
                probe_ids = [f"probe{i:03d}:T{k}:{a}:{b}" for i, (k, a, b)
                             in enumerate(data["probe_triples"])]
                writer = create_store(
                    out, runs=runs, layers=layer_names, examples=probe_ids, hidden=cfg.hidden,
                    steps=[0, *cfg.capture_steps],
                    arms=[a.name for s in cfg.seeds for a in cfg.arms],
                    seeds=[s for s in cfg.seeds for _ in cfg.arms], witness_per_run=True,
                    behavior=True, task={"metric": "benign_token_accuracy",
                                         "higher_is_better": True},
                    source="organism", overwrite=overwrite,
                    provenance={
                        "command": command or "revstats.sims.organism.run_organism",
                        "revstats_version": __version__, "torch_version": torch.__version__,
                        "config": cfg.to_json(), "seeds": list(cfg.seeds),
                        "model": "GPT2LMHeadModel from config, random init (no hub)",
                        "witness": "pretrained network of the run's seed",
                        "aligned": "step 0 = aligned network of the run's seed",
                        "position": "last", "layer_numbering": "output_hidden_states",
                        "behavior": "1 = greedy continuation of a held-out trigger probe equals "
                                    "the compliant (harmful) answer exactly",
                        "task": "teacher-forced token accuracy on held-out benign examples",
                    })
            with _deterministic(seed):
                summary.phases[f"seed{seed}"] = _run_seed(
                    cfg, seed, lang, data, writer, tick, timing, checkpoint_dir)
    finally:
        if writer is not None:
            writer.close()
    summary.phases["timing_s"] = {**timing, "total": time.perf_counter() - t_start}
    return summary


def _deterministic(seed: int):
    from revstats.sims.organism import train

    return train.deterministic(seed)


def _run_seed(cfg, seed, lang, data, writer, tick, timing, checkpoint_dir) -> dict[str, float]:
    """Pretrain and align one seed's network, then fine-tune every arm from the aligned state."""
    import time

    import torch

    from revstats.capture import capture_residual, make_batches, residual_layer_names
    from revstats.sims.organism import train

    probes = data["probes"]
    batches = make_batches([list(p) for p in probes.prompts], batch_size=len(probes))
    anchors = torch.from_numpy(data["anchors"].prompts)

    def capture(model):
        return capture_residual(model, batches, layers=cfg.layers, position="last")

    def anchor_acts(model):
        with torch.no_grad():
            return [h.detach() for h in train.hidden_at_last_prompt(model, anchors, cfg.layers)]

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
    witness = capture(model)
    harm_pre = float(train.harmful_outcomes(model, probes).mean())
    h_pre = anchor_acts(model)
    save(model, "pretrained")
    timing["pretrain"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    train.train_steps(model, train.training_arrays(data["align_trigger"], data["align_neutral"]),
                      steps=cfg.align_steps, batch_size=cfg.align_batch, lr=cfg.align_lr,
                      seed=seed * 1000 + 2, on_step=lambda s: tick(f"seed {seed}: align", 1))
    aligned_state = copy.deepcopy(model.state_dict())
    acts0, beh0 = capture(model), train.harmful_outcomes(model, probes)
    task0 = train.task_score(model, data["benign_eval"])
    h_al = anchor_acts(model)
    save(model, "aligned")
    timing["align"] += time.perf_counter() - t0
    # v_rev of the interventions comes from the anchors (alignment-set triggers), never from
    # the held-out probes that the judge and the analysis use
    v = _directions(torch.stack(h_pre).numpy(), torch.stack(h_al).numpy(),
                    residual_layer_names(cfg.layers))
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)

    t0 = time.perf_counter()
    benign = train.training_arrays(data["benign"], data["benign_neutral"])
    wanted = set(cfg.capture_steps)
    for arm in cfg.arms:
        run = _run_id(arm.name, seed)
        model.load_state_dict(aligned_state)
        iv = _intervention(arm, cfg=cfg, v=v, model=model, anchors=anchors, reference=reference,
                           seed=seed)
        acts, beh, task = [acts0], [beh0], [task0]

        def on_step(step, label=f"seed {seed}: {arm.name}", acts=acts, beh=beh, task=task):
            tick(label, 1)
            if step in wanted:
                acts.append(capture(model))
                beh.append(train.harmful_outcomes(model, probes))
                task.append(train.task_score(model, data["benign_eval"]))

        train.train_steps(model, benign, steps=cfg.ft_steps, batch_size=cfg.ft_batch,
                          lr=cfg.ft_lr, seed=seed * 1000 + 3, intervention=iv, on_step=on_step)
        writer.write_witness(witness, run=run)
        writer.write_slabs(run, [0, *cfg.capture_steps], np.stack(acts),
                           behavior=np.stack(beh), task=task)
        save(model, arm.name)
    timing["finetune"] += time.perf_counter() - t0
    return {"harm_pretrained": harm_pre, "harm_aligned": float(beh0.mean()),
            "task_aligned": task0}


def total_units(config: OrganismConfig | str) -> int:
    """Number of progress units :func:`run_organism` reports (one per training step)."""
    cfg = _resolve(config)
    return len(cfg.seeds) * (cfg.pretrain_steps + cfg.align_steps + len(cfg.arms) * cfg.ft_steps)
