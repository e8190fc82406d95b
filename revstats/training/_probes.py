"""Torch plumbing for *modifying* a module's output in place of the training tools' hooks.

Reading probe activations lives in :mod:`revstats.capture` (:func:`revstats.capture.probes.read_layers`
on top of ``capture_modules`` / ``residual_stream`` / ``pool_tokens``). What stays here is what
capture has no use for, because capture only ever records outputs:

* :func:`resolve_module`: the blocking hooks are installed on the trained model (and its frozen
  reference) *before* any forward, so a wrong name must fail up front with near-miss suggestions;
* :func:`first_tensor` / :func:`replace_first`: a forward hook that rewrites an output must return
  the same container it received (tensor, tuple or list) with only the activation swapped. The
  pair must agree on which element is the activation, so it is kept together rather than reusing
  capture's reader (which also unwraps ``last_hidden_state`` outputs it could not rebuild);
* :func:`as_tensor`: direction vectors given as arrays or tensors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def resolve_module(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """The submodule called `name` (dotted path), or a ValueError listing similar names."""
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    tail = name.rsplit(".", 1)[-1]
    near = [n for n in modules if n and n.endswith(tail)][:6] or [n for n in modules if n][:6]
    raise ValueError(
        f"`layers` names {name!r}, which is not a module of this model; use a dotted name from "
        f"model.named_modules(), e.g. {', '.join(map(repr, near))}"
    )


def first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"a hooked module returned {type(output).__name__}; revstats expects a tensor or a tuple "
        "whose first element is the activation tensor"
    )


def replace_first(output: Any, new: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, tuple):
        return (new, *output[1:])
    return [new, *output[1:]]


def as_tensor(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
