"""Reproduce the calibration tables of docs/simulator.md: `python -m revstats.sims.calibration`.

1. the paper table from a full-size stored run (seed 0), analysed from the store;
2. seed-to-seed spread of the headline numbers (seeds 0..4, latent statistics = the stored
   cosines exactly);
3. one-at-a-time sensitivity: each calibrated knob moved by -20% / +20%.
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np

from revstats.sims.simulate import config_for
from revstats.sims.sweep import point_stats

KNOBS = ("gravity", "anchor", "noise", "noise_normal", "probe_spread", "block_lambda",
         "behavior_gain")
COLUMNS = ("align_1_control", "align_20_control", "align_final_control", "align_final_blocked",
           "behavior_final_control", "behavior_final_blocked")


def _row(stats: dict) -> str:
    return " | ".join(f"{stats[c]:.3f}" for c in COLUMNS)


def seed_table(seeds=range(5)) -> str:
    lines = ["| seed | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    vals = []
    for s in seeds:
        st = point_stats(config_for("paper-main-track"), s)
        vals.append([st[c] for c in COLUMNS])
        lines.append(f"| {s} | {_row(st)} |")
    v = np.array(vals)
    lines.append("| mean ± sd | " + " | ".join(f"{m:.3f} ± {d:.3f}" for m, d in
                                             zip(v.mean(0), v.std(0, ddof=1), strict=True)) + " |")
    return "\n".join(lines)


def sensitivity_table(seed: int = 0) -> str:
    base = config_for("paper-main-track")
    lines = ["| knob | value | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    lines.append(f"| (calibrated) | | {_row(point_stats(base, seed))} |")
    for knob in KNOBS:
        for f in (0.8, 1.2):
            value = getattr(base, knob) * f
            if knob == "noise_normal":
                value = min(value, 1.0)
            st = point_stats(base.replace(**{knob: value}), seed)
            lines.append(f"| {knob} | {value:.4g} | {_row(st)} |")
    return "\n".join(lines)


def full_table(seed: int = 0) -> str:
    from revstats.sims.simulate import simulate_to_store
    from revstats.sims.summary import format_table, summarize
    from revstats.store import open_store

    with tempfile.TemporaryDirectory() as tmp:
        simulate_to_store("paper-main-track", f"{tmp}/paper.zarr", seed=seed)
        s = summarize(open_store(f"{tmp}/paper.zarr"))
    return f"isotropic p99 (d=4096): {s['isotropic_p99']:.4f}\n\n" + format_table(s)


if __name__ == "__main__":
    parts = sys.argv[1:] or ["full", "seeds", "sensitivity"]
    if "full" in parts:
        print("## full size, seed 0, from the store\n\n" + full_table() + "\n", flush=True)
    if "seeds" in parts:
        print("## seeds\n\n" + seed_table() + "\n", flush=True)
    if "sensitivity" in parts:
        print("## sensitivity\n\n" + sensitivity_table() + "\n", flush=True)
