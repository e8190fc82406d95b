"""Shared machinery of the organism's extra settings (:mod:`revstats.sims.organism.unlearning`,
:mod:`revstats.sims.organism.traits`): the store, the per-arm fine-tuning loop with capture and judges,
the anchor direction and the interventions.

Both settings reuse the refusal organism's network, training loop, judges' conventions, arm
specification and intervention adapters (:mod:`revstats.sims.organism.train`,
:class:`revstats.sims.organism.pipeline.ArmSpec`), so blocking always goes through the torch wrappers
of the one definition in :mod:`revstats.blocking`. What differs per setting is the data, the
witness and the judge; the store has the same schema as ``revstats organism --profile quick``
(``source="organism"``, ``behavior`` = 0/1 per probe, ``task`` per step, one witness per run),
so ``revstats analyze`` and ``revstats report`` read it without special cases.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SettingSummary", "anchor_direction", "capture_steps", "finetune_arm", "frozen_copy",
           "open_setting_store", "validate_setting"]


@dataclass
class SettingSummary:
    """What a setting run produced: store path, run ids, per-seed phase metrics, wall times."""

    path: str
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)


def capture_steps(ft_steps: int, every: int) -> list[int]:
    """Captured fine-tuning steps: every ``every`` steps, always including the last."""
    steps = list(range(every, ft_steps + 1, every))
    if not steps or steps[-1] != ft_steps:
        steps.append(ft_steps)
    return steps


def validate_setting(cfg: Any, cls: Any, valid_kinds: Sequence[str]) -> None:
    """Errors naming the field and the fix (shared by both settings)."""
    if not isinstance(cfg, cls):
        raise TypeError(f"`config` must be a {cls.__name__} (see the setting's PROFILES), got "
                        f"{type(cfg).__name__}")
    names = [a.name for a in cfg.arms]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"`config.arms` must have unique, non-empty names, got {names}")
    for a in cfg.arms:
        if a.kind not in valid_kinds:
            raise ValueError(f"arm {a.name!r}: `kind` must be one of {list(valid_kinds)}, got "
                             f"{a.kind!r}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValueError(f"`config.seeds` must be distinct and non-empty, got {cfg.seeds}")
    if cfg.ft_steps < 1 or cfg.capture_every < 1:
        raise ValueError("`config.ft_steps` and `config.capture_every` must be >= 1")


def open_setting_store(out: str, *, cfg: Any, runs: list[str], arms: list[str],
                       seeds: list[int], probe_ids: list[str], task_metric: str,
                       provenance: dict[str, Any], overwrite: bool):
    """Create the store (refusal-organism schema, one witness per run) and return its writer."""
    import torch

    from revstats._version import __version__
    from revstats.capture import residual_layer_names
    from revstats.store import create_store

    prov = {"revstats_version": __version__, "torch_version": torch.__version__,
            "config": cfg.to_json(), "seeds": list(cfg.seeds),
            "model": "GPT2LMHeadModel from config, random init (no hub)",
            "position": "last", "layer_numbering": "output_hidden_states", **provenance}
    return create_store(
        out, runs=runs, layers=residual_layer_names(cfg.layers), examples=probe_ids,
        hidden=cfg.hidden, steps=[0, *cfg.capture_steps], arms=arms, seeds=seeds,
        witness_per_run=True, behavior=True,
        task={"metric": task_metric, "higher_is_better": True}, source="organism",
        overwrite=overwrite, provenance=prov)


def frozen_copy(model):
    """A frozen eval-mode copy (reference network of the activation projection)."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def anchor_direction(before: list, after: list, layers: Sequence[int]) -> np.ndarray:
    """v = normalize(mean(before) - mean(after)) per layer on anchor activations ((layer,
    example, hidden) lists of tensors): :func:`revstats.geometry.reversion_direction`."""
    import torch

    from revstats.capture import residual_layer_names
    from revstats.sims.organism.pipeline import _directions

    return _directions(torch.stack(before).numpy(), torch.stack(after).numpy(),
                       residual_layer_names(list(layers)))


def finetune_arm(model, data, *, cfg: Any, seed: int, intervention, capture: Callable,
                 judge: Callable, task: Callable, tick: Callable[[str, int], None],
                 label: str) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Fine-tune ``model`` in place for ``cfg.ft_steps`` steps, capturing activations, the 0/1
    judge per probe and the task score at step 0 and at every ``cfg.capture_steps``.

    Returns (acts (step, layer, example, hidden), behavior (step, example), task list)."""
    from revstats.sims.organism import train

    acts, beh, tsk = [capture(model)], [judge(model)], [task(model)]
    wanted = set(cfg.capture_steps)

    def on_step(step: int) -> None:
        tick(label, 1)
        if step in wanted:
            acts.append(capture(model))
            beh.append(judge(model))
            tsk.append(task(model))

    train.train_steps(model, data, steps=cfg.ft_steps, batch_size=cfg.ft_batch, lr=cfg.ft_lr,
                      seed=seed * 1000 + 3, intervention=intervention, on_step=on_step)
    return np.stack(acts), np.stack(beh), tsk


def capture_fn(cfg: Any, prompts: np.ndarray) -> Callable:
    """Residual stream at the last prompt token of ``prompts`` (revstats.capture)."""
    from revstats.capture import capture_residual, make_batches

    batches = make_batches([list(p) for p in prompts], batch_size=len(prompts))
    return lambda model: capture_residual(model, batches, layers=cfg.layers, position="last")


def anchor_acts_fn(cfg: Any, anchors) -> Callable:
    """Anchor activations (no grad) as a list over ``cfg.layers``."""
    import torch

    from revstats.sims.organism import train

    def read(model) -> list:
        with torch.no_grad():
            return [h.detach() for h in train.hidden_at_last_prompt(model, anchors, cfg.layers)]

    return read
