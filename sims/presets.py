"""Named, documented simulator scenarios (`revstats simulate --list`).

Calibration of `paper-main-track` is described in docs/simulator.md (measured, not fitted by
formula); the table there is reproduced by tests/unit/test_sims_presets.py at reduced size.
"""

from __future__ import annotations

from dataclasses import dataclass

from revstats.sims.model import SimConfig

PAPER_STEPS = (0, 1, 2, 5, 10, 20, 50, 100)


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str          # one line for --list
    config: SimConfig


_PAPER = SimConfig(
    runs=24, steps=100, hidden=4096, latent=48, examples=32, arms=("control", "blocked", "push"),
    geometry="flat", normal_dim=4, gravity=0.16, pretrain_mass=1.0, align_shift=1.0,
    align_mass=0.0, anchor=0.1, task_strength=0.3, task_shift=0.3, task_cos=0.0, lr=1.0,
    noise=0.042, noise_normal=0.2, batch_size=1, readout="linear", probe_spread=2.0,
    block_mode="penalty", block_reduce="per_probe", block_lambda=5.0, block_substeps=10,
    behavior_base=0.10, behavior_gain=1.1, save_steps=PAPER_STEPS,
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "paper-main-track",
            "paper regime: alignment ~0.43 at step 1, ~0.65 by step 20; per-probe penalty "
            "blocking turns it negative; harmful rate ~19% -> ~8.5%",
            _PAPER,
        ),
        Preset(
            "light-pretraining",
            "no reversion: pretraining mass 50x smaller, the basin barely pulls; alignment "
            "stays near the null",
            _PAPER.replace(pretrain_mass=0.02),
        ),
        Preset(
            "deep-alignment",
            "weak reversion: alignment dug its own basin (align_mass 1.2), the pull "
            "returns only ~11% of the displacement",
            _PAPER.replace(align_mass=1.2),
        ),
        Preset(
            "curved-sphere",
            "paper dynamics on a curved manifold (sphere of radius 3) with a tanh readout",
            _PAPER.replace(geometry="sphere", sphere_radius=3.0, readout="tanh",
                           offset_scale=0.3),
        ),
        Preset(
            "theory-flat",
            "flat, linear, mean-projection blocking: the case sims.theory predicts exactly",
            _PAPER.replace(block_mode="projection", block_reduce="mean", noise_normal=1.0,
                           probe_spread=0.3, hidden=256),
        ),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(
            f"unknown preset {name!r}; available: {', '.join(PRESETS)} (see `revstats simulate "
            "--list`)"
        )
    return PRESETS[name]
