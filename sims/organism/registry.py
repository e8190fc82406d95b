"""Every profile `revstats organism --profile NAME` knows, with how to run it.

A profile is a config plus the function that runs it; settings other than the default
(pretrain -> align -> benign fine-tune with arms) register their profiles here with one
:func:`register` call per profile (their own module holds config, runner and summary):

    register(Profile("mysetting", "what it does, how long", MY_CONFIG, run_mysetting,
                     total_units=my_units))

``run(out, config, *, overwrite, progress, command, checkpoint_dir, workers)`` returns an
object with ``phases`` (dict, written by ``--summary``) and ``runs`` (list); the config must
be a dataclass with a ``seeds`` field (``--seeds`` replaces it). Importing this module must
not import torch (the CLI lists the profiles without it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PROFILE_REGISTRY", "Profile", "get_profile", "register"]


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    config: Any
    run: Callable[..., Any]
    total_units: Callable[[Any], int]

    def with_seeds(self, seeds: tuple[int, ...]) -> Any:
        return dataclasses.replace(self.config, seeds=seeds)

    def n_jobs(self, config: Any) -> int:
        return len(config.seeds)


PROFILE_REGISTRY: dict[str, Profile] = {}


def register(profile: Profile) -> Profile:
    """Add ``profile`` (its name must be new)."""
    if profile.name in PROFILE_REGISTRY:
        raise ValueError(f"profile {profile.name!r} is already registered")
    PROFILE_REGISTRY[profile.name] = profile
    return profile


def get_profile(name: str) -> Profile:
    if name not in PROFILE_REGISTRY:
        raise ValueError(f"unknown profile {name!r}: choose one of {sorted(PROFILE_REGISTRY)}")
    return PROFILE_REGISTRY[name]


def _register_builtin() -> None:
    from sims.organism import history, pipeline

    text = {
        "tiny": "seconds (tests): 1 seed x 3 arms, 4 steps",
        "quick": "~1 min: 2 seeds x 6 arms, 50 fine-tuning steps",
        "paper": "8 seeds x 6 arms, 100 fine-tuning steps",
        "placebo": "8 seeds: control, blocked and three placebos (random, lambda-matched, "
                   "drift-matched), 100 steps",
        "sweep": "3 seeds x 16 blocking variants/layer sets/strengths, 100 steps",
    }
    for name, cfg in pipeline.PROFILES.items():
        register(Profile(name, text.get(name, name), cfg, pipeline.run_organism,
                         pipeline.total_units))
    register(Profile("history", "dose-response grid: 3 pretraining x 3 alignment depths x 8 "
                     "seeds (a directory of cell stores + history.json)",
                     history.HISTORY_PROFILES["history"], history.run_history,
                     history.total_history_units))
    register(Profile("history-tiny", "the history grid in seconds (tests): 2 x 2 cells, 2 seeds",
                     history.HISTORY_PROFILES["history-tiny"], history.run_history,
                     history.total_history_units))


_register_builtin()
