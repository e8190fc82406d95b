"""Training-time tools on torch (needs the `torch` extra; the HF callbacks need `hf`).

The framework-free definitions live in the core (:mod:`revstats.blocking`,
:mod:`revstats.monitor`, :mod:`revstats.placebo`); this package wraps them for a training loop:

* :mod:`revstats.training.blocking` -- `block_reversion` (context manager), `ReversionPenalty`
  (loss term), activation / parameter-update projection;
* :mod:`revstats.training.monitor` -- `TorchMonitor`, the live reversion monitor on a torch model;
* :mod:`revstats.training.hf_callbacks` -- `ReversionMonitorCallback`, `BlockingCallback`
  (Hugging Face ``TrainerCallback``);
* :mod:`revstats.training._probes` -- probe plumbing shared by the above.

`import revstats` never imports this package, and importing it does not import torch: the names
below load their module on first use.

>>> from revstats.training import TorchMonitor, block_reversion   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ParameterDirections": "blocking",
    "ReversionPenalty": "blocking",
    "block_reversion": "blocking",
    "parameter_directions": "blocking",
    "project_activations": "blocking",
    "project_parameter_updates": "blocking",
    "TorchMonitor": "monitor",
    "tensorboard_writer": "monitor",
    "BlockingCallback": "hf_callbacks",
    "ReversionMonitorCallback": "hf_callbacks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'revstats.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"revstats.training.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
