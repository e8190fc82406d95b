"""Small synthetic stores with the DESIGN §3 schema, for tests and examples.

Drift in run r at step t is `strength(arm) * f(t) * u + noise`, where `u` is the (known) mean
difference between witness and aligned probe activations, so the true alignment is known.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import xarray as xr


def make_synthetic_store(
    *,
    arms: Sequence[str] = ("control", "blocked", "push"),
    runs_per_arm: int = 6,
    steps: Sequence[int] = (0, 1, 2, 5, 10, 20),
    layers: Sequence[str] = ("hidden_states.1", "hidden_states.2"),
    n_examples: int = 16,
    hidden: int = 32,
    noise: float = 0.05,
    behavior: bool = True,
    task: bool = True,
    witness: bool = True,
    preset: str | None = None,
    seed: int = 0,
    chunks: dict | None = None,
) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    strength = {"control": 1.0, "blocked": -0.4, "push": 1.6}
    base_rate = {"control": 0.2, "blocked": 0.08, "push": 0.35}
    run_ids = [f"{a}-{i:02d}" for a in arms for i in range(runs_per_arm)]
    run_arms = [a for a in arms for _ in range(runs_per_arm)]
    n_run, n_step, n_layer = len(run_ids), len(steps), len(layers)
    aligned = rng.normal(size=(n_layer, n_examples, hidden))
    u = rng.normal(size=(n_layer, hidden))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    wit = aligned + 2.0 * u[:, None, :] + 0.3 * rng.normal(size=aligned.shape)
    t = np.asarray(steps, float)
    f = 1 - np.exp(-t / 5)
    s = np.array([strength.get(a, 0.5) for a in run_arms])
    acts = (aligned[None, None]
            + (s[:, None, None, None] * f[None, :, None, None] * u[None, None])[:, :, :, None, :]
            + noise * rng.normal(size=(n_run, n_step, n_layer, 1, hidden))
            + 0.05 * rng.normal(size=(n_run, n_step, n_layer, n_examples, hidden)))
    acts[:, 0] = aligned[None]
    data = {"acts": (("run", "step", "layer", "example", "hidden"), acts.astype("float32"))}
    if witness:
        data["witness"] = (("layer", "example", "hidden"), wit.astype("float32"))
    if behavior:
        p = np.array([base_rate.get(a, 0.2) for a in run_arms])[:, None] * (0.5 + f[None, :])
        p = np.clip(p + 0.03 * rng.normal(size=(n_run, 1)), 0.001, 0.999)
        b = rng.random((n_run, n_step, n_examples)) < p[:, :, None]
        data["behavior"] = (("run", "step", "example"), b.astype("float32"))
    ds = xr.Dataset(
        data,
        coords={
            "run": run_ids,
            "arm": ("run", run_arms),
            "seed": ("run", np.arange(n_run)),
            "step": np.asarray(steps, int),
            "layer": list(layers),
            "example": [f"probe-{i}" for i in range(n_examples)],
        },
    )
    if task:
        loss = 1.0 + 0.1 * np.abs(s)[:, None] * 0 - 0.3 * f[None, :]
        loss = loss + 0.01 * rng.normal(size=(n_run, n_step))
        ds["task"] = (("run", "step"), loss)
        ds["task"].attrs.update({"metric": "loss", "higher_is_better": False})
    prov = {"command": "synthetic", "seeds": [seed]}
    if preset is not None:
        prov["preset"] = preset
    ds.attrs.update({"revstats_schema": 1, "source": "simulator",
                     "provenance": json.dumps(prov)})
    return ds.chunk(chunks or {"run": runs_per_arm, "step": -1})


def write_synthetic_store(path: str, *, witness: bool = True, **kwargs) -> str:
    """Write `make_synthetic_store(**kwargs)` as a real revstats store (revstats.store).

    With `witness=False` the store is created without writing its witness, the way a capture
    that never ran the reference model would look.
    """
    from revstats.store import write_dataset

    ds = make_synthetic_store(witness=witness, **kwargs).compute()
    prov = json.loads(ds.attrs.pop("provenance"))
    if not witness:
        # write_dataset needs the variable to create it; write zeros then drop the flag
        ds["witness"] = xr.zeros_like(ds["acts"].isel(run=0, step=0, drop=True))
    write_dataset(ds, path, source="simulator", provenance=prov, overwrite=True)
    if not witness:
        import zarr

        g = zarr.open_group(path, mode="r+")
        g.attrs["witness_complete"] = False
        zarr.consolidate_metadata(path)
    return path
