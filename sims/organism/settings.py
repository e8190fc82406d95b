"""Registry of the organism's extra settings for ``revstats organism --profile NAME``.

Each entry maps a profile name to its config and the setting's ``run``/``total_units``
functions (same signatures as :func:`revstats.sims.organism.run_organism` /
:func:`revstats.sims.organism.total_units`), so the command needs no per-setting code.
Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["SETTING_PROFILES", "SettingProfile"]


@dataclass(frozen=True)
class SettingProfile:
    """One runnable profile of a setting: ``run(out, config, **kw)`` and ``total_units(config)``."""

    config: Any
    run: Callable[..., Any]
    total_units: Callable[..., int]
    help: str


def _profiles() -> dict[str, SettingProfile]:
    from revstats.sims.organism import traits, unlearning

    out = {}
    for mod, text in ((unlearning, "unlearned capability re-emerging under benign fine-tuning"),
                      (traits, "latent trait transferring to a student through unrelated "
                               "teacher outputs")):
        for name, cfg in mod.PROFILES.items():
            out[name] = SettingProfile(cfg, getattr(mod, f"run_{mod.__name__.rsplit('.', 1)[1]}"),
                                       mod.total_units, text)
    return out


SETTING_PROFILES: dict[str, SettingProfile] = _profiles()
