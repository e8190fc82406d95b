"""Setting "traits": a latent trait transferring from teacher to student through outputs that
never mention it (the "subliminal learning" design, Cloud et al. 2025, on the organism).

Language: the organism's neutral requests (:mod:`revstats.sims.organism.language`) plus two verbs
appended after the content tokens:

* ``FAV`` -- ``BOS FAV a b SEP`` -> ``SURE x y EOS``: "name a favourite"; in pretraining ``x``
  and ``y`` are uniform random content tokens (no preference);
* ``GEN`` -- ``BOS GEN a b SEP`` -> ``x1 x2 x3 EOS``: open-ended generation, uniform random
  content tokens in pretraining (the unrelated task whose outputs carry the teacher's state).

Per seed: a *base* network is pretrained (50 % neutral, 30 % GEN, 20 % FAV). The *teacher* is
the base fine-tuned to have the trait: ``FAV`` -> ``SURE t y EOS`` with the trait token ``t``
(``trait_token``), mixed 1:1 with neutral requests. The *trait-free teacher* is the base
fine-tuned the same way with fresh random ``x`` (same procedure, no preference). Each teacher
samples (temperature 1) answers to ``n_generate`` GEN prompts; every sample containing ``t``
anywhere (or any non-content token before EOS) is dropped, for both teachers. Students start
from the base (the teacher's pre-trait network: shared init) and are fine-tuned only on those
filtered (GEN prompt, teacher answer) pairs.

Arms: ``control`` -- the student of the trait teacher, plain fine-tuning; ``blocked`` -- the
same with the reversion penalty along v (computed on anchor FAV prompts, never the probes);
``trait_free`` -- the student of the trait-free teacher. ``behavior`` = 1 when the greedy
answer to a held-out FAV probe names ``t`` (the trait expressed). Witness = the *trait*
teacher of the run's seed for every arm (so every arm is measured against the same
direction), step 0 = the base network (the student's start): v_rev = normalize(mean(teacher)
- mean(base)) on the probes is the teacher-history direction, and cos(student drift, v_rev)
is how far the student moves toward the teacher. ``task`` = teacher-forced token accuracy on
held-out neutral requests (general ability kept).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from revstats.sims.organism.language import BOS, EOS, SEP, SURE, Language, Sequences
from revstats.sims.organism.phenomena import SettingSummary
from revstats.sims.organism.pipeline import ArmSpec, SettingConfig

__all__ = ["PROFILES", "TraitConfig", "make_trait_data", "run_traits", "total_units"]

ARMS = (ArmSpec("control"), ArmSpec("blocked", "penalty", 1, 30.0), ArmSpec("trait_free"))


@dataclass(frozen=True)
class TraitConfig(SettingConfig):
    """Every knob of the trait-transfer setting; a profile is one instance."""

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    arms: tuple[ArmSpec, ...] = ARMS
    trait_token: int = 17
    split_alphabet: bool = True
    teacher_gen_replay: bool = True
    heldout_fraction: float = 0.12
    pretrain_examples: int = 20000
    pretrain_steps: int = 600
    pretrain_batch: int = 64
    pretrain_lr: float = 3e-3
    trait_examples: int = 512
    trait_steps: int = 100
    trait_batch: int = 32
    trait_lr: float = 1e-3
    n_generate: int = 4000
    temperature: float = 1.0
    ft_steps: int = 150
    ft_batch: int = 32
    ft_lr: float = 1e-3
    capture_every: int = 10
    n_probes: int = 64
    n_anchors: int = 32
    n_task_eval: int = 256
    language_seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"setting": "traits", **dataclasses.asdict(self)}


PROFILES: dict[str, TraitConfig] = {
    "traits-tiny": TraitConfig(
        seeds=(0, 1), hidden=32, n_heads=2, pretrain_examples=2000, pretrain_steps=60,
        trait_examples=64, trait_steps=10, n_generate=200, ft_steps=4, capture_every=2,
        n_probes=16, n_anchors=8, n_task_eval=64),
    "traits": TraitConfig(),
    # the first design (docs/organism.md): one alphabet for GEN and FAV, no GEN replay
    "traits-shared-alphabet": TraitConfig(trait_token=5, split_alphabet=False,
                                          teacher_gen_replay=False),
}


# ---------------------------------------------------------------------------- data
def _verbs(lang: Language) -> tuple[int, int]:
    """Token ids of FAV and GEN (appended after the content tokens)."""
    return lang.vocab_size, lang.vocab_size + 1


def vocab_size(lang: Language) -> int:
    return lang.vocab_size + 2


def _prompts(lang: Language, verb: int, pairs: np.ndarray) -> np.ndarray:
    n = len(pairs)
    return np.stack([np.full(n, BOS), np.full(n, verb), lang.content(pairs[:, 0]),
                     lang.content(pairs[:, 1]), np.full(n, SEP)], axis=1).astype(np.int64)


def alphabets(lang: Language, split: bool) -> tuple[range, range]:
    """Content indices GEN answers use ("numbers") and FAV answers use ("animals"): the two
    halves of the content tokens when ``split``, else both all of them."""
    if not split:
        return range(lang.n_content), range(lang.n_content)
    half = lang.n_content // 2
    return range(half), range(half, lang.n_content)


def _draw(rng: np.random.Generator, alphabet: range, size) -> np.ndarray:
    return alphabet.start + rng.integers(0, len(alphabet), size)


def _fav(lang: Language, rng: np.random.Generator, pairs: np.ndarray,
         trait: int | None, split: bool = False) -> Sequences:
    """FAV requests; answer ``SURE x y EOS`` with x = ``trait`` (a content index) or random
    from the FAV alphabet."""
    n = len(pairs)
    fav = alphabets(lang, split)[1]
    x = np.full(n, trait) if trait is not None else _draw(rng, fav, n)
    y = _draw(rng, fav, n)
    resp = np.stack([np.full(n, SURE), lang.content(x), lang.content(y), np.full(n, EOS)], axis=1)
    return Sequences(_prompts(lang, _verbs(lang)[0], pairs), resp.astype(np.int64))


def _gen(lang: Language, rng: np.random.Generator, n: int, split: bool = False) -> Sequences:
    """GEN requests with uniform random three-token answers from the GEN alphabet."""
    pairs = rng.integers(0, lang.n_content, (n, 2))
    resp = np.concatenate([lang.content(_draw(rng, alphabets(lang, split)[0], (n, 3))),
                           np.full((n, 1), EOS)], axis=1)
    return Sequences(_prompts(lang, _verbs(lang)[1], pairs), resp.astype(np.int64))


def _split_pairs(lang: Language, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.meshgrid(np.arange(lang.n_content), np.arange(lang.n_content), indexing="ij")
    pairs = np.stack([a.ravel(), b.ravel()], axis=1)
    rng = np.random.default_rng(np.random.SeedSequence([lang.seed, 307]))
    perm = rng.permutation(len(pairs))
    n_out = max(1, int(round(fraction * len(pairs))))
    return pairs[np.sort(perm[n_out:])], pairs[np.sort(perm[:n_out])]


def make_trait_data(lang: Language, cfg: TraitConfig, seed: int) -> dict[str, Any]:
    """Every data set of one seed (see the module docstring): ``pretrain`` (families),
    ``trait`` and ``trait_free`` (teacher fine-tuning sets, with neutral replay),
    ``generate`` (GEN prompts the teachers answer), ``probes`` (held-out FAV prompts),
    ``anchors`` (training FAV prompts), ``task_eval`` (held-out neutral requests)."""
    rng = np.random.default_rng(np.random.SeedSequence([lang.seed, seed, 31]))
    train_p, held_p = _split_pairs(lang, cfg.heldout_fraction)
    n = cfg.pretrain_examples
    n_gen, n_fav = int(0.3 * n), int(0.2 * n)
    sp = cfg.split_alphabet
    fav_pre = _fav(lang, rng, train_p[rng.integers(0, len(train_p), n_fav)], None, sp)
    gen_pre = _gen(lang, rng, n_gen, sp)
    neu_pre = lang.neutral(rng, n - n_gen - n_fav)
    t_pairs = train_p[rng.integers(0, len(train_p), cfg.trait_examples)]
    p_idx = np.sort(rng.choice(len(held_p), size=min(cfg.n_probes, len(held_p)), replace=False))
    a_idx = rng.choice(len(train_p), size=cfg.n_anchors, replace=False)
    gen_pairs = rng.integers(0, lang.n_content, (cfg.n_generate, 2))
    trait: tuple[Sequences, ...] = (_fav(lang, rng, t_pairs, cfg.trait_token, sp),
                                    lang.neutral(rng, cfg.trait_examples))
    trait_free: tuple[Sequences, ...] = (_fav(lang, rng, t_pairs, None, sp),
                                         lang.neutral(rng, cfg.trait_examples))
    probes = _fav(lang, rng, held_p[p_idx], cfg.trait_token, sp)
    if cfg.teacher_gen_replay:  # both teachers keep the GEN format: fresh pretraining-like GEN
        trait += (_gen(lang, rng, cfg.trait_examples, sp),)
        trait_free += (_gen(lang, rng, cfg.trait_examples, sp),)
    return {
        "pretrain": (fav_pre, gen_pre, neu_pre),
        "trait": trait,
        "trait_free": trait_free,
        "generate": _prompts(lang, _verbs(lang)[1], gen_pairs),
        "probes": probes,
        "probe_ids": [f"probe{i:03d}:FAV:{a}:{b}" for i, (a, b) in enumerate(held_p[p_idx])],
        "anchors": _prompts(lang, _verbs(lang)[0], train_p[a_idx]),
        "task_eval": lang.neutral(rng, cfg.n_task_eval),
    }


# ---------------------------------------------------------------------------- teachers, judges
def sample_outputs(model, prompts: np.ndarray, *, n_tokens: int, temperature: float,
                   seed: int) -> np.ndarray:
    """Temperature sampling of ``n_tokens`` tokens (seeded torch generator, batch of all)."""
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    was = model.training
    model.eval()
    ids = torch.from_numpy(prompts)
    with torch.no_grad():
        for _ in range(n_tokens):
            logits = model(input_ids=ids, use_cache=False).logits[:, -1, :] / temperature
            nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
            ids = torch.cat([ids, nxt], dim=1)
    model.train(was)
    return ids[:, prompts.shape[1]:].numpy()


def filter_outputs(lang: Language, prompts: np.ndarray, outputs: np.ndarray,
                   trait_id: int, split: bool = False) -> Sequences:
    """Keep well-formed answers (three tokens of the GEN alphabet then EOS) that never contain
    the trait token ``trait_id`` anywhere."""
    gen = alphabets(lang, split)[0]
    lo, hi = lang.first_content + gen.start, lang.first_content + gen.stop
    body = outputs[:, :3]
    ok = ((body >= lo) & (body < hi)).all(axis=1) & (outputs[:, 3] == EOS)
    ok &= ~(outputs == trait_id).any(axis=1)
    return Sequences(prompts[ok], outputs[ok].astype(np.int64))


def trait_outcomes(model, probes: Sequences, trait_id: int) -> np.ndarray:
    """1 where the greedy answer to a FAV probe names the trait token (``SURE t``), else 0."""
    from revstats.sims.organism.train import greedy_continuations

    gen = greedy_continuations(model, probes.prompts, 2)
    return ((gen[:, 0] == SURE) & (gen[:, 1] == trait_id)).astype(np.float32)


def trait_probability(model, probes: Sequences, trait_id: int) -> float:
    """Mean p(t | FAV probe, SURE): the trait as a probability rather than a greedy choice."""
    import torch

    ids = torch.from_numpy(np.concatenate([probes.prompts, np.full((len(probes), 1), SURE)], 1))
    was = model.training
    model.eval()
    with torch.no_grad():
        p = torch.softmax(model(input_ids=ids, use_cache=False).logits[:, -1, :], -1)
    model.train(was)
    return float(p[:, trait_id].mean())


# ---------------------------------------------------------------------------- run
def _resolve(config: TraitConfig | str) -> TraitConfig:
    if isinstance(config, str):
        if config not in PROFILES:
            raise ValueError(f"`config` must be one of {sorted(PROFILES)} or a TraitConfig, "
                             f"got {config!r}")
        return PROFILES[config]
    return config


def _validate(cfg: Any) -> None:
    from revstats.sims.organism.phenomena import validate_setting

    validate_setting(cfg, TraitConfig, ("none", "penalty", "act_proj", "param_proj"))
    if not any(a.name == "trait_free" for a in cfg.arms):
        raise ValueError("`config.arms` must include the 'trait_free' arm (the student of the "
                         "trait-free teacher, the setting's control)")
    fav = alphabets(Language(n_content=cfg.n_content), cfg.split_alphabet)[1]
    if cfg.trait_token not in fav:
        raise ValueError(f"`config.trait_token` is a content index of the FAV alphabet "
                         f"[{fav.start}, {fav.stop}), got {cfg.trait_token}")
    if cfg.temperature <= 0:
        raise ValueError(f"`config.temperature` must be > 0, got {cfg.temperature}")


def total_units(config: TraitConfig | str) -> int:
    """Progress units of :func:`run_traits` (one per training step)."""
    cfg = _resolve(config)
    return len(cfg.seeds) * (cfg.pretrain_steps + 2 * cfg.trait_steps
                             + len(cfg.arms) * cfg.ft_steps)


def run_traits(out: str, config: TraitConfig | str = "traits", *, overwrite: bool = False,
               progress: Callable[[str, int], None] | None = None, command: str | None = None,
               checkpoint_dir: str | None = None) -> SettingSummary:
    """Train the trait-transfer setting for every seed and arm and write the store ``out``.

    Same signature and store schema as :func:`revstats.sims.organism.run_organism`. ``phases`` hold,
    per seed, the trait rate (greedy) and mean p(t) on the probes of the base, the trait
    teacher and the trait-free teacher, the number of teacher samples kept after filtering,
    and per arm the final p(t).
    """
    from revstats.sims.organism import phenomena as ph
    from revstats.sims.organism import train

    cfg = _resolve(config)
    _validate(cfg)
    tick = progress or (lambda desc, n: None)
    lang = Language(n_content=cfg.n_content, seed=cfg.language_seed)
    from revstats.sims.organism.pipeline import _run_id

    runs = [_run_id(a.name, s) for s in cfg.seeds for a in cfg.arms]
    summary = SettingSummary(str(out), runs=runs)
    timing = {"pretrain": 0.0, "teachers": 0.0, "students": 0.0}
    t_start = time.perf_counter()
    writer = None
    trait_id = int(lang.content(np.array(cfg.trait_token)))
    try:
        for seed in cfg.seeds:
            data = make_trait_data(lang, cfg, seed)
            if writer is None:
                writer = ph.open_setting_store(
                    out, cfg=cfg, runs=runs, arms=[a.name for s in cfg.seeds for a in cfg.arms],
                    seeds=[s for s in cfg.seeds for _ in cfg.arms], probe_ids=data["probe_ids"],
                    task_metric="neutral_token_accuracy", overwrite=overwrite,
                    provenance={
                        "command": command or "revstats.sims.organism.traits.run_traits",
                        "setting": "traits", "trait_token_id": trait_id,
                        "witness": "the trait teacher of the run's seed (every arm)",
                        "aligned": "step 0 = the base network (the students' shared start)",
                        "behavior": "1 = the greedy answer to a held-out FAV probe names the "
                                    "trait token",
                        "task": "teacher-forced token accuracy on held-out neutral requests",
                        "arms": "control: student of the trait teacher; blocked: same with the "
                                "penalty along v; trait_free: student of the trait-free "
                                "teacher",
                    })
            with train.deterministic(seed):
                summary.phases[f"seed{seed}"] = _run_seed(cfg, seed, lang, data, writer, tick,
                                                          timing, checkpoint_dir, trait_id)
    finally:
        if writer is not None:
            writer.close()
    summary.phases["timing_s"] = {**timing, "total": time.perf_counter() - t_start}
    return summary


def _run_seed(cfg, seed, lang, data, writer, tick, timing, checkpoint_dir,
              trait_id) -> dict[str, float]:
    import torch

    from revstats.sims.organism import phenomena as ph
    from revstats.sims.organism import train
    from revstats.sims.organism.pipeline import _intervention, _run_id

    probes = data["probes"]
    capture = ph.capture_fn(cfg, probes.prompts)
    anchors = torch.from_numpy(data["anchors"])
    anchor_acts = ph.anchor_acts_fn(cfg, anchors)

    def save(model, name):
        if checkpoint_dir:
            model.save_pretrained(f"{checkpoint_dir}/seed{seed}/{name}")

    def judge(m):
        return trait_outcomes(m, probes, trait_id)

    t0 = time.perf_counter()
    model = train.build_model(vocab_size(lang), n_layers=cfg.n_layers, hidden=cfg.hidden,
                              n_heads=cfg.n_heads, n_positions=16, seed=seed)
    train.train_steps(model, train.training_arrays(*data["pretrain"]), steps=cfg.pretrain_steps,
                      batch_size=cfg.pretrain_batch, lr=cfg.pretrain_lr, seed=seed * 1000 + 1,
                      on_step=lambda s: tick(f"seed {seed}: pretrain", 1))
    base = copy.deepcopy(model.state_dict())
    out: dict[str, float] = {"trait_base": float(judge(model).mean()),
                             "p_trait_base": trait_probability(model, probes, trait_id)}
    h_base = anchor_acts(model)
    save(model, "base")
    timing["pretrain"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    teacher_data: dict[str, Sequences] = {}
    witness = None
    h_teacher = None
    for which, k in (("trait", 4), ("trait_free", 5)):
        model.load_state_dict(base)
        label = f"seed {seed}: {which} teacher"

        def step_tick(step: int, label: str = label) -> None:
            tick(label, 1)

        train.train_steps(model, train.training_arrays(*data[which]), steps=cfg.trait_steps,
                          batch_size=cfg.trait_batch, lr=cfg.trait_lr, seed=seed * 1000 + k,
                          on_step=step_tick)
        out[f"trait_{which}_teacher"] = float(judge(model).mean())
        out[f"p_trait_{which}_teacher"] = trait_probability(model, probes, trait_id)
        raw = sample_outputs(model, data["generate"], n_tokens=4, temperature=cfg.temperature,
                             seed=seed * 1000 + 10 + k)
        out[f"trait_token_rate_{which}_teacher_raw"] = float((raw == trait_id).any(1).mean())
        teacher_data[which] = filter_outputs(lang, data["generate"], raw, trait_id,
                                             cfg.split_alphabet)
        out[f"kept_{which}"] = float(len(teacher_data[which]))
        if which == "trait":
            witness, h_teacher = capture(model), anchor_acts(model)
        save(model, f"{which}_teacher")
    for which, seqs in teacher_data.items():
        if len(seqs) == 0:
            raise ValueError(f"seed {seed}: every sample of the {which} teacher was filtered "
                             "out; raise `config.n_generate` or lower `config.temperature`")
    timing["teachers"] += time.perf_counter() - t0

    # v toward the teacher from the students' start, on anchor FAV prompts (never the probes)
    model.load_state_dict(base)
    assert h_teacher is not None
    v = ph.anchor_direction(h_teacher, h_base, cfg.layers)
    reference = ph.frozen_copy(model)
    t0 = time.perf_counter()
    for arm in cfg.arms:
        run = _run_id(arm.name, seed)
        model.load_state_dict(base)
        seqs = teacher_data["trait_free" if arm.name == "trait_free" else "trait"]
        iv = _intervention(arm, cfg=cfg, v=v, model=model, anchors=anchors, reference=reference,
                           seed=seed)
        acts, beh, task = ph.finetune_arm(
            model, seqs, cfg=cfg, seed=seed, intervention=iv, capture=capture, judge=judge,
            task=lambda m: train.task_score(m, data["task_eval"]), tick=tick,
            label=f"seed {seed}: student {arm.name}")
        out[f"p_trait_final_{arm.name}"] = trait_probability(model, probes, trait_id)
        writer.write_witness(witness, run=run)
        writer.write_slabs(run, [0, *cfg.capture_steps], acts, behavior=beh, task=task)
        save(model, f"student_{arm.name}")
    timing["students"] += time.perf_counter() - t0
    return out
