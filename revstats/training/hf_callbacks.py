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

import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

from transformers import TrainerCallback

from revstats.monitor import MonitorConfig
from revstats.training import blocking as tb
from revstats.training.monitor import TorchMonitor

__all__ = ["BlockingCallback", "ReversionMonitorCallback"]


class ReversionMonitorCallback(TrainerCallback):
    """Look every ``every`` optimizer steps (``state.global_step``); adds the alignment to the
    Trainer's logs; ``stop_on_alarm=True`` stops training at the first alarm.

    Keyword arguments other than `stop_on_alarm` go to :class:`revstats.training.monitor.TorchMonitor`.
    """

    def __init__(self, config: MonitorConfig, *, stop_on_alarm: bool = False, **monitor_kwargs: Any) -> None:
        if not isinstance(config, MonitorConfig):
            raise TypeError(f"`config` must be a MonitorConfig, got {type(config).__name__}")
        self.config, self.stop_on_alarm, self.kwargs = config, stop_on_alarm, monitor_kwargs
        self.monitor: TorchMonitor | None = None

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], **kwargs: Any) -> ReversionMonitorCallback:
        return cls(MonitorConfig.load(path), **kwargs)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        if model is None:
            raise RuntimeError("the Trainer passed no `model` to the callback")
        self.monitor = TorchMonitor(model, self.config, **self.kwargs)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        assert self.monitor is not None
        chk = self.monitor.step(int(state.global_step))
        if chk is not None:
            state.log_history.append(
                {"step": chk.step, **{f"revstats/alignment/{n}": a for n, a in chk.alignment.items()}, "revstats/alarm": chk.alarm}
            )
            if chk.alarm and self.stop_on_alarm:
                control.should_training_stop = True
        return control


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
