"""Every profile `revstats organism --profile NAME` knows, with how to run it.

A profile is a name, a one-line description and a loader returning (config, run,
total_units); the loader imports lazily, so listing the profiles (``--help``) imports
nothing heavy. Other settings register through :mod:`revstats.sims.organism.settings`
(``SETTING_PROFILES``), which this registry includes; or call :func:`register` directly:

    register("mysetting", "what it does, how long", lambda: (CONFIG, run_mysetting, units))

``run(out, config, *, overwrite, progress, command, checkpoint_dir[, workers])`` returns an
object with ``phases`` (dict, written by ``--summary``) and ``runs`` (list); the config must be
a dataclass with a ``seeds`` field (``--seeds`` replaces it). ``workers`` is passed only to
runs that accept it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PROFILE_DESCRIPTIONS", "Profile", "get_profile", "profile_names", "register"]


@dataclass(frozen=True)
class Profile:
    name: str
    config: Any
    run: Callable[..., Any]
    total_units: Callable[[Any], int]

    def with_seeds(self, seeds: tuple[int, ...]) -> Any:
        return dataclasses.replace(self.config, seeds=seeds)

    def n_jobs(self, config: Any) -> int:
        return len(config.seeds)

    @property
    def accepts_workers(self) -> bool:
        return "workers" in inspect.signature(self.run).parameters


def _organism(name: str) -> Callable[[], tuple]:
    def load() -> tuple:
        from revstats.sims.organism import pipeline

        return pipeline.PROFILES[name], pipeline.run_organism, pipeline.total_units
    return load


def _history(name: str) -> Callable[[], tuple]:
    def load() -> tuple:
        from revstats.sims.organism import history

        return history.HISTORY_PROFILES[name], history.run_history, history.total_history_units
    return load


PROFILE_DESCRIPTIONS: dict[str, str] = {}
_LOADERS: dict[str, Callable[[], tuple]] = {}


def register(name: str, description: str, loader: Callable[[], tuple]) -> None:
    """Add a profile; ``loader()`` returns (config, run, total_units)."""
    if name in _LOADERS:
        raise ValueError(f"profile {name!r} is already registered")
    PROFILE_DESCRIPTIONS[name] = description
    _LOADERS[name] = loader


for _name, _text in (
    ("tiny", "seconds (tests): 1 seed x 3 arms, 4 steps"),
    ("quick", "2 seeds x 6 arms, 50 fine-tuning steps"),
    ("paper", "8 seeds x 6 arms, 100 fine-tuning steps"),
    ("placebo", "8 seeds: control, blocked and three placebos (random, lambda-matched, "
                "drift-matched), 100 steps"),
    ("sweep", "3 seeds x 16 blocking variants/layer sets/strengths, 100 steps"),
):
    register(_name, _text, _organism(_name))
register("history", "dose-response grid: 3 pretraining x 3 alignment depths x 8 seeds (a "
         "directory of cell stores + history.json)", _history("history"))
register("history-tiny", "the history grid in seconds (tests): 2 x 2 cells, 2 seeds",
         _history("history-tiny"))


def _settings() -> dict[str, Any]:
    from revstats.sims.organism.settings import SETTING_PROFILES

    return SETTING_PROFILES


def profile_names() -> list[str]:
    return [*PROFILE_DESCRIPTIONS, *(n for n in _settings() if n not in PROFILE_DESCRIPTIONS)]


def describe(name: str) -> str:
    if name in PROFILE_DESCRIPTIONS:
        return PROFILE_DESCRIPTIONS[name]
    return _settings()[name].help


def get_profile(name: str) -> Profile:
    if name in _LOADERS:
        cfg, run, units = _LOADERS[name]()
        return Profile(name, cfg, run, units)
    settings = _settings()
    if name in settings:
        s = settings[name]
        return Profile(name, s.config, s.run, s.total_units)
    raise ValueError(f"unknown profile {name!r}: choose one of {profile_names()}")
