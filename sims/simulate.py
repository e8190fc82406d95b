"""Run a simulated experiment into an in-memory (dask-backed) `xr.Dataset` with the store schema,
and write it with `revstats.store.write_dataset`.

Seeds: ``SeedSequence(seed).spawn(1 + n_runs)``; child 0 draws the fixed model (geometry,
history, probes), child r+1 gives run r its own integer seed (stored in the ``seed`` coord);
run r's SGD noise and behaviour draws come only from ``default_rng(that seed)``, so runs are
independent and any run can be replayed alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from revstats.sims.model import Model, SimConfig, build_model, init, step, validate_config

ARM_SIGN = {"control": 0, "blocked": 1, "push": -1}


def experiment_seeds(seed: int, n_runs: int) -> tuple[np.random.SeedSequence, list[int]]:
    """Model seed sequence and one integer seed per run, spawned from ``seed``."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}")
    children = np.random.SeedSequence(int(seed)).spawn(n_runs + 1)
    run_seeds = [int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for c in children[1:]]
    return children[0], run_seeds


def run_layout(cfg: SimConfig) -> tuple[list[str], list[str], np.ndarray]:
    """Run ids, arm per run and arm sign per run (arms in blocks of ``cfg.runs``)."""
    ids, arms = [], []
    for arm in cfg.arms:
        for j in range(cfg.runs):
            ids.append(f"{arm}-{j:03d}")
            arms.append(arm)
    return ids, arms, np.array([ARM_SIGN[a] for a in arms], dtype=int)


def draw_noise(cfg: SimConfig, run_seeds: list[int], n_saved: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-run SGD noise (R, T, p) and behaviour uniforms (R, n_saved, n), each from its run's
    own generator (fixed draw order: noise first, then uniforms)."""
    xi = np.empty((len(run_seeds), cfg.steps, cfg.latent))
    u = np.empty((len(run_seeds), n_saved, cfg.examples))
    for r, s in enumerate(run_seeds):
        g = np.random.default_rng(s)
        xi[r] = g.standard_normal((cfg.steps, cfg.latent))
        u[r] = g.random((n_saved, cfg.examples))
    return xi, u


def trajectories(
    model: Model, arm_sign: np.ndarray, xi: np.ndarray, saved: tuple[int, ...],
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Parameters of every run at the saved steps: (R, S, p). Vectorised over runs."""
    state = init(model, arm_sign)
    keep = {s: i for i, s in enumerate(saved)}
    out = np.empty((arm_sign.shape[0], len(saved), model.aligned.shape[0]))
    if 0 in keep:
        out[:, keep[0]] = state.theta
    for t in range(model.cfg.steps):
        state = step(model, state, xi[:, t])
        if state.step in keep:
            out[:, keep[state.step]] = state.theta
        if progress is not None:
            progress(1)
    return out


def _run_acts(model: Model, theta_r: np.ndarray) -> np.ndarray:
    return model.hidden_acts(theta_r)[None, :, None, :, :]


def _lazy_acts(model: Model, theta: np.ndarray) -> da.Array:
    """acts (run, step, layer, example, hidden) as a dask array, one chunk (and one batched
    matmul) per run, so a run-by-run writer computes each slab exactly once."""
    import dask

    cfg = model.cfg
    shape = (1, theta.shape[1], 1, cfg.examples, cfg.hidden)
    blocks = [
        da.from_delayed(dask.delayed(_run_acts)(model, theta[r]), shape, dtype=np.float32)
        for r in range(theta.shape[0])
    ]
    return da.concatenate(blocks, axis=0)


def simulate(
    cfg: SimConfig,
    *,
    seed: int = 0,
    preset: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> xr.Dataset:
    """Simulate ``cfg`` and return a Dataset with the revstats store schema (acts lazy in dask,
    one (run, step) slab per chunk). ``progress(k)`` is called after each of ``cfg.steps`` steps.
    """
    cfg = validate_config(cfg)
    ids, arms, arm_sign = run_layout(cfg)
    model_ss, run_seeds = experiment_seeds(seed, len(ids))
    model = build_model(cfg, model_ss)
    saved = cfg.saved_steps()
    xi, unif = draw_noise(cfg, run_seeds, len(saved))
    theta = trajectories(model, arm_sign, xi, saved, progress)  # (R, S, p)

    behavior = (unif < model.behavior_prob(theta)).astype(np.float32)
    task = model.task_loss(theta)
    acts = _lazy_acts(model, theta)
    witness = model.hidden_acts(model.witness)[None]
    layer = ["sim.latent_readout"]
    ds = xr.Dataset(
        {
            "acts": (("run", "step", "layer", "example", "hidden"), acts),
            "witness": (("layer", "example", "hidden"), witness),
            "behavior": (("run", "step", "example"), behavior),
            "task": (("run", "step"), task, {"metric": "loss", "higher_is_better": False}),
        },
        coords={
            "run": ids,
            "arm": ("run", arms),
            "seed": ("run", np.array(run_seeds, dtype=np.int64)),
            "step": np.array(saved, dtype=np.int64),
            "layer": layer,
            "example": [f"probe-{i:03d}" for i in range(cfg.examples)],
        },
    )
    ds.attrs["source"] = "simulator"
    ds.attrs["provenance"] = json.dumps(provenance(cfg, seed=seed, preset=preset,
                                                  run_seeds=run_seeds))
    return ds


def provenance(cfg: SimConfig, *, seed: int, preset: str | None, run_seeds: list[int]) -> dict:
    from dataclasses import asdict

    conf = asdict(cfg)
    conf["arms"] = list(cfg.arms)
    conf["save_steps"] = list(cfg.saved_steps())
    return {
        "command": "simulate",
        "preset": preset,
        "config": conf,
        "seed": int(seed),
        "seeds": {"experiment": int(seed), "runs": run_seeds,
                  "scheme": "SeedSequence(seed).spawn(1 + runs): child 0 = model, child r+1 = run r"},
    }


def config_for(
    preset: str,
    *,
    runs: int | None = None,
    steps: int | None = None,
    hidden: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SimConfig:
    """The preset's config with the given size and field overrides applied."""
    from revstats.sims.presets import get_preset

    cfg = get_preset(preset).config
    changes: dict[str, Any] = dict(overrides or {})
    for name, value in (("runs", runs), ("steps", steps), ("hidden", hidden)):
        if value is not None:
            changes[name] = value
    if "save_steps" not in changes and cfg.save_steps is not None and steps is not None:
        changes["save_steps"] = tuple(s for s in cfg.save_steps if s <= steps)
    unknown = sorted(set(changes) - set(SimConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(
            f"unknown simulator setting(s) {', '.join(map(repr, unknown))}; valid keys: "
            f"{', '.join(sorted(SimConfig.__dataclass_fields__))}"
        )
    return validate_config(cfg.replace(**changes))


def simulate_to_store(
    preset: str,
    out: str,
    *,
    runs: int | None = None,
    steps: int | None = None,
    hidden: int | None = None,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    write_progress: Callable[[int, int], None] | None = None,
    overwrite: bool = True,
    command: str | None = None,
) -> xr.Dataset:
    """Simulate a preset and write it to the store ``out`` (source="simulator").

    Returns the in-memory Dataset that was written. ``runs`` is per arm. ``command`` (the
    command line) goes into the provenance, so `revstats info` can say how to resume.
    """
    from revstats.store import check_writable, write_dataset

    cfg = config_for(preset, runs=runs, steps=steps, hidden=hidden, overrides=overrides)
    # refuse a busy or mismatched store before the (long) simulation, not after it
    ids, _, _ = run_layout(validate_config(cfg))
    expected = provenance(cfg, seed=seed, preset=preset, run_seeds=experiment_seeds(seed, len(ids))[1])
    check_writable(out, overwrite=overwrite, provenance=expected)
    ds = simulate(cfg, seed=seed, preset=preset, progress=progress)
    prov = json.loads(ds.attrs["provenance"])
    if command:
        prov["command"] = command
    write_dataset(ds, out, source="simulator", provenance=prov, overwrite=overwrite,
                  progress=write_progress)
    return ds
