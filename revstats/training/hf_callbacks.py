"""Hugging Face ``TrainerCallback``s: monitor reversion and block (or push) it during ``Trainer.train``.

Needs torch and transformers; not imported by ``import revstats``. Two lines to monitor::

    from revstats.training.hf_callbacks import ReversionMonitorCallback
    trainer = Trainer(..., callbacks=[ReversionMonitorCallback.from_config("monitor-cfg")])

Blocking: ``BlockingCallback(directions, method="activation" | "parameter" | "penalty")``. The
activation and parameter methods install the hooks of :mod:`revstats.training.blocking` at
``on_train_begin`` and remove them at ``on_train_end``; if ``train`` raises, call
``callback.remove()`` (or use ``with callback.installed(trainer): trainer.train()``). The
penalty method adds the gradient of :class:`~revstats.training.blocking.ReversionPenalty` in
``on_pre_optimizer_step`` (gradients accumulate, so this equals adding the penalty to the loss
once per optimizer step; note the Trainer clips gradients *before* this event, so the penalty's
gradient is not clipped).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

from transformers import TrainerCallback

from revstats.errors import RevstatsWarning
from revstats.monitor import Check, MonitorConfig
from revstats.training import blocking as tb
from revstats.training.monitor import TorchMonitor

__all__ = ["BlockingCallback", "ReversionMonitorCallback"]


class ReversionMonitorCallback(TrainerCallback):
    """Look every ``every`` optimizer steps (``state.global_step``) and log the look through the
    Trainer's own logging path (``Trainer.log``), so every ``report_to`` integration
    (TensorBoard, W&B, ...) and ``state.log_history`` receive the ``revstats/*`` metrics.

    Parameters
    ----------
    config : MonitorConfig
    stop_on_alarm : bool
        Stop training (``control.should_training_stop``) at the first alarm.
    trainer : transformers.Trainer, optional
        The trainer to log through. Default: the Trainer whose ``train()`` calls
        ``on_train_begin`` (found on the call stack); without one the metrics only go to
        ``state.log_history``, with a warning.
    **monitor_kwargs
        Passed to :class:`revstats.training.monitor.TorchMonitor`: ``store=`` (zarr store that
        receives every look's slab), ``run=``, ``tensorboard_dir=`` (a SummaryWriter of the
        monitor's own, beside the Trainer's), ``warn=``, ``on_alarm=``, ``noise_floor=``,
        ``probes=``, ``every=``.

    Metrics per look: ``revstats/alignment/<layer>`` (plug-in cosine),
    ``revstats/neglog10_p/<layer>`` (-log10 of the noise-robust p-value),
    ``revstats/alarm`` (1 once an alarm fired in this run). HF's integrations prefix them
    (TensorBoard shows ``train/revstats/alignment/<layer>``).
    """

    def __init__(self, config: MonitorConfig, *, stop_on_alarm: bool = False, trainer: Any = None,
                 **monitor_kwargs: Any) -> None:
        if not isinstance(config, MonitorConfig):
            raise TypeError(f"`config` must be a MonitorConfig, got {type(config).__name__}")
        self.config, self.stop_on_alarm, self.kwargs = config, stop_on_alarm, monitor_kwargs
        self.monitor: TorchMonitor | None = None
        self.trainer = trainer
        self._warned_no_trainer = False

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], **kwargs: Any) -> ReversionMonitorCallback:
        return cls(MonitorConfig.load(path), **kwargs)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        if model is None:
            raise RuntimeError("the Trainer passed no `model` to the callback")
        if self.trainer is None:
            self.trainer = _calling_trainer()
        # a new run: a new monitor (its alarm, history and noise floor are this run's)
        self.monitor = TorchMonitor(model, self.config, **self.kwargs)

    @staticmethod
    def metrics(chk: Check, alarmed: bool) -> dict[str, float]:
        """The scalars logged for one look."""
        out: dict[str, float] = {}
        for n, a in chk.alignment.items():
            out[f"revstats/alignment/{n}"] = float(a)
            out[f"revstats/neglog10_p/{n}"] = -math.log10(max(chk.pvalue[n], 1e-300))
        out["revstats/alarm"] = float(alarmed)
        return out

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if self.monitor is None:
            raise RuntimeError("on_step_end before on_train_begin: the callback was not started by a Trainer")
        chk = self.monitor.step(int(state.global_step))
        if chk is not None:
            logs = self.metrics(chk, self.monitor.alarmed)
            if self.trainer is not None and callable(getattr(self.trainer, "log", None)):
                self.trainer.log(logs)
            else:
                if not self._warned_no_trainer:
                    self._warned_no_trainer = True
                    warnings.warn(
                        "ReversionMonitorCallback found no Trainer to log through: revstats metrics go to "
                        "state.log_history only (pass `trainer=` to reach TensorBoard/W&B)",
                        RevstatsWarning, stacklevel=2,
                    )
                state.log_history.append({**logs, "step": chk.step})
            if chk.alarm and self.stop_on_alarm:
                control.should_training_stop = True
        return control


def _calling_trainer() -> Any:
    """The ``transformers.Trainer`` up the call stack (``train`` -> ``on_train_begin``), or None."""
    import sys

    from transformers import Trainer

    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, Trainer):
            return owner
        frame = frame.f_back  # type: ignore[assignment]
    return None


class BlockingCallback(TrainerCallback):
    """Block (``sign=1``) or push (``sign=-1``) motion along v during ``Trainer.train``.

    Parameters
    ----------
    directions : mapping {layer: v}
        Module names for ``"activation"``; module names or ``"hidden_states.L"`` for ``"penalty"``
        and ``"parameter"``.
    method : {"activation", "parameter", "penalty"}
    probes : tensor or dict
        Probe inputs (needed by ``"parameter"`` and ``"penalty"``).
    lam, sign, strength, reduce, position
        As in :mod:`revstats.training.blocking`.
    """

    def __init__(
        self,
        directions: Mapping[str, Any],
        *,
        method: str = "activation",
        probes: Any = None,
        lam: float = 1.0,
        sign: int = 1,
        strength: float = 1.0,
        reduce: tb.Reduce = "per_probe",
        position: str = "last",
    ) -> None:
        if method not in ("activation", "parameter", "penalty"):
            raise ValueError(f"`method` must be 'activation', 'parameter' or 'penalty', got {method!r}")
        if method != "activation" and probes is None:
            raise ValueError(f"`method={method!r}` needs `probes=` (probe inputs)")
        self.directions, self.method, self.probes = directions, method, probes
        self.lam, self.sign, self.strength, self.reduce, self.position = lam, sign, strength, reduce, position
        self._stack: ExitStack | None = None
        self.penalty: tb.ReversionPenalty | None = None
        self._model: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None, **kw: Any) -> None:
        self.install(model, optimizer)

    def install(self, model: Any, optimizer: Any = None) -> None:
        self.remove()
        self._model = model
        if self.method == "penalty":
            self.penalty = tb.ReversionPenalty(
                model, self.probes, self.directions, lam=self.lam, sign=self.sign, reduce=self.reduce, position=self.position
            )
            return
        # accelerate wraps the optimizer; step hooks must sit on the torch optimizer inside
        optimizer = getattr(optimizer, "optimizer", optimizer)
        stack = ExitStack()
        try:
            stack.enter_context(
                tb.block_reversion(
                    model, self.directions, method=self.method, optimizer=optimizer,  # type: ignore[arg-type]
                    probes=self.probes, sign=self.sign, strength=self.strength, reduce=self.reduce,
                    position=self.position,
                )
            )
        except BaseException:
            stack.close()
            raise
        self._stack = stack

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.penalty is not None:
            self.penalty(self._model).backward()

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this callback installed (idempotent)."""
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        self.penalty = None

    @contextmanager
    def installed(self, trainer: Any) -> Iterator[BlockingCallback]:
        """``with cb.installed(trainer): trainer.train()`` -- hooks are removed even if train raises."""
        try:
            yield self
        finally:
            self.remove()
