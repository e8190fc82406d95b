"""Synthetic settings for validating the reversion hypothesis (toy geometric simulator).

`sims` may import `revstats`; the core never imports `sims` (DESIGN.md section 2).
"""

from revstats.sims.model import ARMS, Model, SimConfig, SimState, build_model, init, step
from revstats.sims.presets import PRESETS, get_preset
from revstats.sims.simulate import config_for, simulate, simulate_to_store

__all__ = [
    "ARMS",
    "PRESETS",
    "Model",
    "SimConfig",
    "SimState",
    "build_model",
    "config_for",
    "get_preset",
    "init",
    "simulate",
    "simulate_to_store",
    "step",
]
