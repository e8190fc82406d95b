"""The reversion monitor for a plain PyTorch training loop (needs torch; not imported by
``import revstats``).

Two lines in a training script::

    mon = TorchMonitor.from_config("monitor-cfg", model)   # after building the model
    mon.step(step)                                          # after each optimizer step

Every ``config.every`` steps the probes stored in the config are run through the model (eval
mode, no grad; training mode restored), and :class:`revstats.monitor.ReversionMonitor` tests
the look (alpha spending over looks, see :mod:`revstats.monitor`), logs it, writes the slab to
the store and warns with :class:`~revstats.monitor.ReversionAlarm` on the first alarm.

At construction the monitor reads the probes of the still untrained model three times (one
batch twice, then in two halves) and sets its numerical noise floor from the discrepancies
(:meth:`revstats.monitor.ReversionMonitor.estimate_noise_floor`): a model that has not moved
cannot alarm, whatever its rounding noise (``noise_floor=`` overrides).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from revstats.capture.probes import read_layers
from revstats.monitor import Check, MonitorConfig, ReversionMonitor

__all__ = ["TorchMonitor", "tensorboard_writer"]


def tensorboard_writer(log_dir: str | os.PathLike[str] | None) -> Any:
    """A TensorBoard ``SummaryWriter`` if `log_dir` is given and tensorboard is installed, else None."""
    if log_dir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(os.fspath(log_dir))


def _probe_inputs(config: MonitorConfig, probes: Any) -> Any:
    if probes is not None:
        return probes
    if not config.probes:
        raise ValueError(
            "the config stores no probe inputs: pass `probes=` (a tensor for model(x) or a dict "
            "for model(**inputs)), or write them with `revstats monitor-config --probes`"
        )
    if set(config.probes) == {"input"}:
        return torch.as_tensor(config.probes["input"])
    return {k: torch.as_tensor(v) for k, v in config.probes.items()}


class TorchMonitor:
    """Run the probes every ``every`` steps and test the look (see module docstring).

    Parameters
    ----------
    model : torch.nn.Module
    config : MonitorConfig
    probes : tensor or dict, optional
        Probe inputs; default: the ones stored in the config.
    every : int, optional
        Steps between looks (default: ``config.every``).
    store, run, on_alarm, warn
        As in :class:`revstats.monitor.ReversionMonitor`.
    tensorboard_dir : path, optional
        Also log to TensorBoard there (if installed).
    noise_floor : "auto", float or mapping
        ``"auto"`` (default): estimated now from repeated reads of the model, which must be the
        untrained (aligned) model; a number or {layer: number} sets it (``0`` disables it).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: MonitorConfig,
        *,
        probes: Any = None,
        every: int | None = None,
        store: str | os.PathLike[str] | None = None,
        run: str = "run0",
        on_alarm: Callable[[Check], Any] | None = None,
        warn: bool = True,
        tensorboard_dir: str | os.PathLike[str] | None = None,
        writer: Any = None,
        noise_floor: Any = "auto",
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
        if every is not None and (not isinstance(every, int) or every < 1):
            raise ValueError(f"`every` must be a positive number of steps, got {every!r}")
        self.model = model
        self.probes = _probe_inputs(config, probes)
        self.every = config.every if every is None else every
        self.monitor = ReversionMonitor(
            config, store=store, run=run, writer=writer if writer is not None else tensorboard_writer(tensorboard_dir),
            on_alarm=on_alarm, warn=warn, noise_floor=noise_floor,
        )
        if isinstance(noise_floor, str) and noise_floor == "auto":
            self.estimate_noise_floor()

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], model: torch.nn.Module, **kwargs: Any) -> TorchMonitor:
        """Load ``path/monitor.{json,npz}`` (from ``revstats monitor-config``) and monitor `model`."""
        return cls(model, MonitorConfig.load(path), **kwargs)

    @property
    def config(self) -> MonitorConfig:
        return self.monitor.config

    @property
    def alarmed(self) -> bool:
        return self.monitor.alarmed

    def read(self) -> dict[str, np.ndarray]:
        """Probe activations (example, hidden) per monitored layer, from the current model."""
        was_training = self.model.training
        self.model.eval()
        try:
            acts = read_layers(self.model, self.probes, list(self.config.layers), position=self.config.position)
        finally:
            self.model.train(was_training)
        return {k: v.float().cpu().numpy() for k, v in acts.items()}

    def _read_split(self) -> dict[str, np.ndarray]:
        """Probe activations read in two halves (another batch shape, other kernels)."""
        n = len(self.config.examples) or (len(self.probes) if isinstance(self.probes, torch.Tensor) else 0)
        if n < 2:
            return self.read()
        half = n // 2

        def part(sl: slice) -> Any:
            if isinstance(self.probes, dict):
                return {k: v[sl] for k, v in self.probes.items()}
            return self.probes[sl]

        was_training = self.model.training
        self.model.eval()
        try:
            a = read_layers(self.model, part(slice(0, half)), list(self.config.layers), position=self.config.position)
            b = read_layers(self.model, part(slice(half, None)), list(self.config.layers), position=self.config.position)
        finally:
            self.model.train(was_training)
        return {k: torch.cat([a[k], b[k]]).float().cpu().numpy() for k in a}

    def estimate_noise_floor(self) -> dict[str, float]:
        """Re-estimate the noise floor from three reads of the model as it is now (untrained)."""
        params = [p for p in self.model.parameters() if p.is_floating_point()]
        dtype = str(params[0].dtype) if params else None
        reads = [self.read(), self.read(), self._read_split()]
        return self.monitor.estimate_noise_floor(reads, compute_dtype=dtype)

    def check(self, step: int) -> Check:
        """Look now, whatever the step."""
        return self.monitor.check(int(step), self.read())

    def step(self, step: int) -> Check | None:
        """Call after each optimizer step; looks when ``step`` is a positive multiple of ``every``."""
        if step > 0 and step % self.every == 0:
            return self.check(step)
        return None
