"""Simulator speed: batched (vectorised over runs) vs a per-run Python loop of the same model,
and the wall time of simulating + storing the full paper preset (goal < 10 s).

Workload: paper-main-track, 24 runs per arm x 3 arms, T = 100 steps, hidden 4096, readout of
every probe at the paper's saved steps reduced to the plug-in alignment (as the analysis does).
The loop calls the same `sims.model.step` with one run at a time and reads each run out alone.
`python -m benchmarks.bench_simulator [--quick]`. ratio = peer_s / ours_s.
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np


def _workload(quick: bool):
    from revstats.sims.model import build_model
    from revstats.sims.simulate import config_for, draw_noise, experiment_seeds, run_layout

    cfg = config_for("paper-main-track", runs=4 if quick else 24, steps=20 if quick else 100)
    ids, _, sign = run_layout(cfg)
    ms, rs = experiment_seeds(0, len(ids))
    model = build_model(cfg, ms)
    xi, _ = draw_noise(cfg, rs, 1)
    return cfg, model, sign, xi


def _alignment(model, acts, mu0, v):
    drift = acts.mean(-2) - mu0
    return drift @ v / np.linalg.norm(drift, axis=-1)


def vectorised(cfg, model, sign, xi):
    from revstats.sims.simulate import trajectories

    saved = cfg.saved_steps()
    th = trajectories(model, sign, xi, saved)
    mu0 = model.hidden_acts(model.aligned).mean(0)
    v = model.embed @ model.v_latent
    return np.stack([_alignment(model, model.hidden_acts(th[:, j]), mu0, v)
                     for j in range(1, len(saved))], axis=1)


def per_run_loop(cfg, model, sign, xi):
    from revstats.sims.model import init, step

    saved = cfg.saved_steps()
    mu0 = model.hidden_acts(model.aligned).mean(0)
    v = model.embed @ model.v_latent
    out = np.empty((len(sign), len(saved) - 1))
    for r in range(len(sign)):
        state = init(model, sign[r:r + 1])
        for t in range(cfg.steps):
            state = step(model, state, xi[r:r + 1, t])
            if state.step in saved[1:]:
                j = saved.index(state.step) - 1
                out[r, j] = _alignment(model, model.hidden_acts(state.theta), mu0, v)[0]
    return out


def _time(fn, *args, repeat: int = 1):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, res


def run(quick: bool) -> list[dict]:
    from revstats.sims.simulate import simulate_to_store

    cfg, model, sign, xi = _workload(quick)
    t_vec, a_vec = _time(vectorised, cfg, model, sign, xi, repeat=1 if quick else 2)
    t_loop, a_loop = _time(per_run_loop, cfg, model, sign, xi)
    # same model, same numbers (float32 readout: agreement to rounding)
    np.testing.assert_allclose(a_vec, a_loop, atol=1e-4)
    size = f"{cfg.runs}x{len(cfg.arms)} runs x {cfg.steps} steps x hidden {cfg.hidden}"
    rows = [{
        "name": f"simulate vectorised ({size})",
        "peer": "per-run Python loop, same model",
        "ours_s": t_vec, "peer_s": t_loop, "ratio": t_loop / t_vec,
    }]
    with tempfile.TemporaryDirectory() as tmp:
        kw = dict(runs=4, steps=20) if quick else {}
        t0 = time.perf_counter()
        simulate_to_store("paper-main-track", f"{tmp}/paper.zarr", seed=0, **kw)
        t_store = time.perf_counter() - t0
    rows.append({
        "name": "simulate + store paper-main-track" + (" (quick: 4 runs/arm, T=20)" if quick else
                                                       " (24 runs/arm x 3 arms, T=100, hidden 4096)"),
        "peer": "goal 10 s", "ours_s": t_store, "peer_s": 10.0, "ratio": 10.0 / t_store,
    })
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(f"{row['name']:<75} ours {row['ours_s']:7.2f}s  peer {row['peer_s']:7.2f}s  "
              f"ratio {row['ratio']:6.2f}  ({row['peer']})")
