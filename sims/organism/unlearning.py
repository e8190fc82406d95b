"""Setting "unlearning": a capability learned in pretraining, removed by unlearning, re-emerging
under benign fine-tuning on unrelated data.

Two capabilities (``capability``):

* ``"trigger"`` (default): answering the trigger family ``T_k`` -- the refusal organism's
  pretraining unchanged (:func:`revstats.sims.organism.language.make_language`: 35 % trigger requests
  answered with the transformation of neutral family ``k mod 3``, 65 % neutral requests), but
  the capability is then *unlearned* instead of re-routed onto refusal;
* ``"family"``: one neutral family ``Q_f`` (``forget_family``, default ``Q2`` shift
  ``SURE a-1 b-1 EOS``), whose transformation no other request uses; the benign data then
  never contain ``Q_f`` either.

Unlearning (on the capability's training prompts, the other requests as a retain set):

* ``method="ascent"`` (default): gradient ascent on the correct answers, bounded as
  ``ascent_lam * ReLU(ascent_cap - CE_forget)`` (ascent stops once the forget loss reaches the
  cap), added to ordinary descent on the retain set (the "gradient difference" recipe);
* ``method="relabel"``: the prompts are trained onto random wrong answers ``SURE x y EOS``
  (random-label unlearning), mixed 1:1 with retain examples.

Then every arm fine-tunes a copy of the unlearned network on *unrelated* data: the benign
reversal task mixed 2:1 with neutral requests -- the capability's prompts never appear.
``behavior`` = 1 when the greedy answer to a held-out prompt of the capability is exactly
correct (the capability answered correctly); held-out prompts never appear in any phase.
Witness = the pre-unlearning (pretrained) network of the run's seed, step 0 = the unlearned
network, so v_rev points from the unlearned model back toward the one that still had the
capability. Arms: ``control`` (plain fine-tuning) and blocked variants (the refusal organism's
adapters, :mod:`revstats.sims.organism.train`: penalty / parameter projection along v_rev computed on
anchor prompts of the capability's *training* set, never the probes).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from revstats.sims.organism.language import EOS, SURE, Language, Sequences
from revstats.sims.organism.phenomena import SettingSummary
from revstats.sims.organism.pipeline import ArmSpec, SettingConfig

__all__ = ["PROFILES", "UnlearningConfig", "make_unlearning_data", "run_unlearning",
           "total_units"]

METHODS = ("relabel", "ascent")
ARMS = (ArmSpec("control"), ArmSpec("blocked", "penalty", 1, 30.0),
        ArmSpec("blocked_param", "param_proj", 1, 1.0))


@dataclass(frozen=True)
class UnlearningConfig(SettingConfig):
    """Every knob of the unlearning setting; a profile is one instance."""

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    arms: tuple[ArmSpec, ...] = ARMS
    capability: str = "trigger"
    forget_family: int = 2
    heldout_fraction: float = 0.12
    pretrain_examples: int = 20000
    pretrain_steps: int = 600
    pretrain_batch: int = 64
    pretrain_lr: float = 3e-3
    method: str = "ascent"
    unlearn_examples: int = 256
    unlearn_steps: int = 40
    unlearn_batch: int = 32
    unlearn_lr: float = 1e-3
    ascent_lam: float = 1.0
    ascent_cap: float = 3.0
    benign_examples: int = 4000
    benign_eval: int = 256
    ft_steps: int = 100
    ft_batch: int = 32
    ft_lr: float = 1e-3
    capture_every: int = 10
    n_probes: int = 64
    n_anchors: int = 32
    language_seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"setting": "unlearning", **dataclasses.asdict(self)}


PROFILES: dict[str, UnlearningConfig] = {
    "unlearning-tiny": UnlearningConfig(
        seeds=(0, 1), hidden=32, n_heads=2, pretrain_examples=2000, pretrain_steps=60,
        unlearn_examples=64, unlearn_steps=10, benign_examples=400, benign_eval=64, ft_steps=4,
        capture_every=2, n_probes=16, n_anchors=8),
    "unlearning": UnlearningConfig(),
    "unlearning-relabel": UnlearningConfig(method="relabel"),
    "unlearning-family": UnlearningConfig(capability="family"),
}


# ---------------------------------------------------------------------------- data
def _pairs(lang: Language, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """All (a, b) content pairs split into (train, held-out), fixed by the language seed."""
    a, b = np.meshgrid(np.arange(lang.n_content), np.arange(lang.n_content), indexing="ij")
    pairs = np.stack([a.ravel(), b.ravel()], axis=1)
    rng = np.random.default_rng(np.random.SeedSequence([lang.seed, 211]))
    perm = rng.permutation(len(pairs))
    n_out = max(1, int(round(fraction * len(pairs))))
    return pairs[np.sort(perm[n_out:])], pairs[np.sort(perm[:n_out])]


def _family(lang: Language, j: np.ndarray, pairs: np.ndarray) -> Sequences:
    """Neutral requests ``BOS Q_j a b SEP`` with their correct answers."""
    n = len(j)
    a, b = pairs[:, 0], pairs[:, 1]
    prompts = np.stack([np.full(n, 1), lang.first_neutral + j, lang.content(a), lang.content(b),
                        np.full(n, 3)], axis=1).astype(np.int64)
    return Sequences(prompts, lang._answer(j, a, b))


def _others(lang: Language, rng: np.random.Generator, n: int, forget: int) -> Sequences:
    """Neutral requests of every family except ``forget`` (uniform pairs)."""
    fams = np.array([j for j in range(lang.n_neutral) if j != forget])
    j = fams[rng.integers(0, len(fams), n)]
    return _family(lang, j, rng.integers(0, lang.n_content, (n, 2)))


def make_unlearning_data(lang: Language, cfg: UnlearningConfig, seed: int) -> dict[str, Any]:
    """The data sets of one seed for ``cfg.capability`` ("trigger" or "family"): see
    :func:`_trigger_data` and :func:`_family_data`."""
    if cfg.capability == "trigger":
        return _trigger_data(lang, cfg, seed)
    return _family_data(lang, cfg, seed)


def _relabel(lang: Language, rng: np.random.Generator, forget: Sequences) -> Sequences:
    """Same prompts, random ``SURE x y EOS`` answers that are never the correct one."""
    wrong = forget.responses.copy()
    for i in range(len(wrong)):
        while True:
            xy = lang.content(rng.integers(0, lang.n_content, 2))
            if not np.array_equal(xy, forget.responses[i, 1:3]):
                break
        wrong[i] = [SURE, xy[0], xy[1], EOS]
    return Sequences(forget.prompts, wrong)


def _trigger_data(lang: Language, cfg: UnlearningConfig, seed: int) -> dict[str, Any]:
    """Capability = answering the trigger family ``T_k`` (the transformation of neutral family
    ``k mod 3``), exactly the refusal organism's pretraining (:func:`make_language`); the
    forget set is the alignment set's trigger prompts with their *correct* answers, the retain
    set the alignment set's neutral requests, the probes the held-out trigger triples."""
    from revstats.sims.organism.language import make_language

    d = make_language(lang, n_pretrain=cfg.pretrain_examples, n_align=cfg.unlearn_examples,
                      n_benign=cfg.benign_examples, n_benign_eval=cfg.benign_eval,
                      n_probes=cfg.n_probes, n_anchors=cfg.n_anchors, seed=seed)
    p = d["align_trigger"].prompts
    triples = np.stack([p[:, 1] - lang.first_trigger, p[:, 2] - lang.first_content,
                        p[:, 3] - lang.first_content], axis=1)
    forget = Sequences(p, lang.compliant(triples))
    rng = np.random.default_rng(np.random.SeedSequence([lang.seed, seed, 14]))
    return {
        "pretrain": (d["pretrain_trigger"], d["pretrain_neutral"]),
        "forget": forget,
        "forget_relabelled": _relabel(lang, rng, forget),
        "retain": d["align_neutral"],
        "benign": d["benign"],
        "benign_neutral": d["benign_neutral"],
        "benign_eval": d["benign_eval"],
        "probes": d["probes"],
        "probe_ids": [f"probe{i:03d}:T{k}:{a}:{b}" for i, (k, a, b)
                      in enumerate(d["probe_triples"])],
        "anchors": d["anchors"],
        "retain_eval": lang.neutral(rng, 256),
    }


def _family_data(lang: Language, cfg: UnlearningConfig, seed: int) -> dict[str, Any]:
    """Capability = one neutral family ``Q_f`` (its own transformation); every data set of one seed: ``pretrain``, ``forget`` (the family on training pairs, with
    correct answers), ``forget_relabelled`` (same prompts, random wrong answers), ``retain``,
    ``benign``, ``benign_neutral``, ``benign_eval``, ``probes`` (held-out pairs of the family,
    correct answers), ``anchors`` and ``retain_eval`` (held-out check of the other families)."""
    rng = np.random.default_rng(np.random.SeedSequence([lang.seed, seed, 13]))
    f = cfg.forget_family
    train_p, held_p = _pairs(lang, cfg.heldout_fraction)
    n = cfg.pretrain_examples
    j = rng.integers(0, lang.n_neutral, n)
    pairs = rng.integers(0, lang.n_content, (n, 2))
    is_f = j == f
    pairs[is_f] = train_p[rng.integers(0, len(train_p), int(is_f.sum()))]
    pretrain = _family(lang, j, pairs)
    idx = rng.choice(len(train_p), size=min(cfg.unlearn_examples, len(train_p)), replace=False)
    forget = _family(lang, np.full(len(idx), f), train_p[idx])
    p_idx = np.sort(rng.choice(len(held_p), size=min(cfg.n_probes, len(held_p)), replace=False))
    return {
        "pretrain": (pretrain.take(rng.permutation(n)),),
        "forget": forget,
        "forget_relabelled": _relabel(lang, rng, forget),
        "retain": _others(lang, rng, cfg.unlearn_examples, f),
        "benign": lang.benign(rng, cfg.benign_examples),
        "benign_neutral": _others(lang, rng, cfg.benign_examples // 2, f),
        "benign_eval": lang.benign(rng, cfg.benign_eval),
        "probes": _family(lang, np.full(len(p_idx), f), held_p[p_idx]),
        "probe_ids": [f"probe{i:03d}:Q{f}:{a}:{b}" for i, (a, b) in enumerate(held_p[p_idx])],
        "anchors": forget.take(np.arange(min(cfg.n_anchors, len(forget)))),
        "retain_eval": _others(lang, rng, 256, f),
    }


def _bounded_ascent(forget: Sequences, *, lam: float, cap: float, batch_size: int, seed: int):
    """Extra loss ``lam * ReLU(cap - CE(forget batch))``: gradient ascent on the forget set
    that stops once its loss reaches ``cap`` (an :class:`~revstats.sims.organism.train.Intervention`;
    built here so that importing this module needs no torch)."""
    import torch

    from revstats.sims.organism import train

    class BoundedAscent(train.Intervention):
        def __init__(self) -> None:
            self.ids, self.labels = train.training_arrays(forget)
            self.gen = np.random.default_rng(np.random.SeedSequence([seed, 23]))

        def loss(self, model):
            idx = torch.from_numpy(self.gen.choice(len(self.ids), size=batch_size,
                                                   replace=len(self.ids) < batch_size))
            x, y = self.ids[idx], self.labels[idx]
            ce = model(input_ids=x, attention_mask=torch.ones_like(x), labels=y,
                       use_cache=False).loss
            return lam * torch.relu(cap - ce)

    return BoundedAscent()


# ---------------------------------------------------------------------------- run
def _resolve(config: UnlearningConfig | str) -> UnlearningConfig:
    if isinstance(config, str):
        if config not in PROFILES:
            raise ValueError(f"`config` must be one of {sorted(PROFILES)} or an "
                             f"UnlearningConfig, got {config!r}")
        return PROFILES[config]
    return config


def _validate(cfg: Any) -> None:
    from revstats.sims.organism.phenomena import validate_setting

    validate_setting(cfg, UnlearningConfig, ("none", "penalty", "act_proj", "param_proj"))
    if cfg.method not in METHODS:
        raise ValueError(f"`config.method` must be one of {list(METHODS)}, got {cfg.method!r}")
    if cfg.capability not in ("trigger", "family"):
        raise ValueError("`config.capability` must be 'trigger' (the trigger family T_k) or "
                         f"'family' (neutral family Q_f), got {cfg.capability!r}")
    if not 0 <= cfg.forget_family <= 2:
        raise ValueError("`config.forget_family` must be 0, 1 or 2 (a family with a "
                         f"transformation to unlearn; 3 and 4 are refusals), got "
                         f"{cfg.forget_family}")


def total_units(config: UnlearningConfig | str) -> int:
    """Progress units of :func:`run_unlearning` (one per training step)."""
    cfg = _resolve(config)
    return len(cfg.seeds) * (cfg.pretrain_steps + cfg.unlearn_steps + len(cfg.arms) * cfg.ft_steps)


def run_unlearning(out: str, config: UnlearningConfig | str = "unlearning", *,
                   overwrite: bool = False, progress: Callable[[str, int], None] | None = None,
                   command: str | None = None, checkpoint_dir: str | None = None
                   ) -> SettingSummary:
    """Train the unlearning setting for every seed and arm and write the store ``out``.

    Same signature and store schema as :func:`revstats.sims.organism.run_organism`; the returned
    summary's ``phases`` hold, per seed, the capability rate on the probes after pretraining
    (``capability_pretrained``) and after unlearning (``capability_unlearned``) and the exact
    accuracy on held-out requests of the *other* families after unlearning
    (``retain_unlearned``: unlearning was targeted if it stays high).
    """
    from revstats.sims.organism import phenomena as ph
    from revstats.sims.organism import train
    from revstats.sims.organism.pipeline import _intervention, _run_id

    cfg = _resolve(config)
    _validate(cfg)
    tick = progress or (lambda desc, n: None)
    lang = Language(n_content=cfg.n_content, seed=cfg.language_seed)
    runs = [_run_id(a.name, s) for s in cfg.seeds for a in cfg.arms]
    summary = SettingSummary(str(out), runs=runs)
    timing = {"pretrain": 0.0, "unlearn": 0.0, "finetune": 0.0}
    t_start = time.perf_counter()
    writer = None
    try:
        for seed in cfg.seeds:
            data = make_unlearning_data(lang, cfg, seed)
            if writer is None:  # probes are fixed by the language seed: the same for every seed
                fam = ("trigger-family (T_k)" if cfg.capability == "trigger"
                       else f"family-Q{cfg.forget_family}")
                writer = ph.open_setting_store(
                    out, cfg=cfg, runs=runs, arms=[a.name for s in cfg.seeds for a in cfg.arms],
                    seeds=[s for s in cfg.seeds for _ in cfg.arms],
                    probe_ids=data["probe_ids"],
                    task_metric="benign_token_accuracy", overwrite=overwrite,
                    provenance={
                        "command": command or "revstats.sims.organism.unlearning.run_unlearning",
                        "setting": "unlearning",
                        "witness": "pretrained (pre-unlearning) network of the run's seed",
                        "aligned": f"step 0 = the network after {cfg.method} unlearning of "
                                   f"{fam}",
                        "behavior": f"1 = greedy continuation of a held-out {fam} request "
                                    "equals its correct answer exactly (the unlearned "
                                    "capability answered correctly)",
                        "task": "teacher-forced token accuracy on held-out benign examples",
                    })
            with train.deterministic(seed):
                summary.phases[f"seed{seed}"] = _run_seed(cfg, seed, lang, data, writer, tick,
                                                          timing, checkpoint_dir,
                                                          _intervention, _run_id)
    finally:
        if writer is not None:
            writer.close()
    summary.phases["timing_s"] = {**timing, "total": time.perf_counter() - t_start}
    return summary


def _run_seed(cfg, seed, lang, data, writer, tick, timing, checkpoint_dir, intervention,
              run_id) -> dict[str, float]:
    import torch

    from revstats.sims.organism import phenomena as ph
    from revstats.sims.organism import train

    probes = data["probes"]
    capture = ph.capture_fn(cfg, probes.prompts)
    anchors = torch.from_numpy(data["anchors"].prompts)
    anchor_acts = ph.anchor_acts_fn(cfg, anchors)

    def save(model, name):
        if checkpoint_dir:
            model.save_pretrained(f"{checkpoint_dir}/seed{seed}/{name}")

    t0 = time.perf_counter()
    model = train.build_model(lang.vocab_size, n_layers=cfg.n_layers, hidden=cfg.hidden,
                              n_heads=cfg.n_heads, n_positions=16, seed=seed)
    train.train_steps(model, train.training_arrays(*data["pretrain"]), steps=cfg.pretrain_steps,
                      batch_size=cfg.pretrain_batch, lr=cfg.pretrain_lr, seed=seed * 1000 + 1,
                      on_step=lambda s: tick(f"seed {seed}: pretrain", 1))
    witness = capture(model)
    cap_pre = float(train.harmful_outcomes(model, probes).mean())
    retain_pre = float(train.harmful_outcomes(model, data["retain_eval"]).mean())
    h_pre = anchor_acts(model)
    save(model, "pretrained")
    timing["pretrain"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    label = f"seed {seed}: unlearn ({cfg.method})"
    if cfg.method == "relabel":
        train.train_steps(model, train.training_arrays(data["forget_relabelled"], data["retain"]),
                          steps=cfg.unlearn_steps, batch_size=cfg.unlearn_batch,
                          lr=cfg.unlearn_lr, seed=seed * 1000 + 2,
                          on_step=lambda s: tick(label, 1))
    else:
        ascent = _bounded_ascent(data["forget"], lam=cfg.ascent_lam, cap=cfg.ascent_cap,
                                batch_size=cfg.unlearn_batch, seed=seed)
        train.train_steps(model, data["retain"], steps=cfg.unlearn_steps,
                          batch_size=cfg.unlearn_batch, lr=cfg.unlearn_lr, seed=seed * 1000 + 2,
                          intervention=ascent, on_step=lambda s: tick(label, 1))
    unlearned = copy.deepcopy(model.state_dict())
    cap_un = float(train.harmful_outcomes(model, probes).mean())
    retain_un = float(train.harmful_outcomes(model, data["retain_eval"]).mean())
    h_un = anchor_acts(model)
    save(model, "unlearned")
    timing["unlearn"] += time.perf_counter() - t0
    v = ph.anchor_direction(h_pre, h_un, cfg.layers)
    reference = ph.frozen_copy(model)

    t0 = time.perf_counter()
    benign = train.training_arrays(data["benign"], data["benign_neutral"])
    retain_final: dict[str, float] = {}
    for arm in cfg.arms:
        run = run_id(arm.name, seed)
        model.load_state_dict(unlearned)
        iv = intervention(arm, cfg=cfg, v=v, model=model, anchors=anchors, reference=reference,
                          seed=seed)
        acts, beh, task = ph.finetune_arm(
            model, benign, cfg=cfg, seed=seed, intervention=iv, capture=capture,
            judge=lambda m: train.harmful_outcomes(m, probes),
            task=lambda m: train.task_score(m, data["benign_eval"]), tick=tick,
            label=f"seed {seed}: {arm.name}")
        writer.write_witness(witness, run=run)
        writer.write_slabs(run, [0, *cfg.capture_steps], acts, behavior=beh, task=task)
        save(model, arm.name)
        retain_final[f"retain_final_{arm.name}"] = float(
            train.harmful_outcomes(model, data["retain_eval"]).mean())
    timing["finetune"] += time.perf_counter() - t0
    return {"capability_pretrained": cap_pre, "capability_unlearned": cap_un,
            "retain_pretrained": retain_pre, "retain_unlearned": retain_un, **retain_final}
