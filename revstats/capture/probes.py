"""Probe activations for the training-time tools: one forward of the model on its own inputs.

The monitor and the blocking penalty feed probes as the model takes them -- a tensor
(``model(x)``) or a mapping (``model(**inputs)``), any ``nn.Module`` -- and name layers two ways:

* a module's dotted name from ``model.named_modules()``: recorded by
  :func:`revstats.capture.hooks.capture_modules`;
* ``"hidden_states.L"``: the residual stream in the numbering of ``output_hidden_states``,
  recorded by :func:`revstats.capture.hooks.residual_stream`.

Sequence outputs (example, seq, hidden) are pooled with
:func:`revstats.capture.hooks.pool_tokens` over the attended tokens (``attention_mask`` when the
probes carry one, else every token): ``"last"`` is the last attended token (any padding side),
``"mean"`` the mean over attended tokens. (example, hidden) outputs pass through unchanged.
Unlike :func:`~revstats.capture.hooks.capture_residual`, the model is called as given (no
``position_ids`` are added), so the activations are exactly those training sees.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
import torch

from revstats.capture.hooks import (
    TokenBatch,
    _model_device,
    capture_modules,
    parse_position,
    pool_tokens,
    residual_stream,
)
from revstats.errors import RevstatsError

__all__ = ["PROBE_POSITIONS", "read_layers"]

PROBE_POSITIONS = ("last", "mean")
_HIDDEN_STATE = re.compile(r"^hidden_states\.(\d+)$")


def _to_inputs(probes: Any, device: torch.device) -> Any:
    """Probe inputs as tensors on `device`: a tensor, or a dict of tensors."""
    def as_tensor(x: Any) -> torch.Tensor:
        return (x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))).to(device)

    if isinstance(probes, Mapping):
        return {k: as_tensor(v) for k, v in probes.items()}
    return as_tensor(probes)


def _pooler(inputs: Any, position: str):
    """``reduce`` for the capture hooks: (example, seq, hidden) -> (example, hidden)."""
    policy = parse_position(position)  # "last" -> last prompt token, "mean" -> mean over prompt
    mask = inputs.get("attention_mask") if isinstance(inputs, Mapping) else None

    def reduce(h: torch.Tensor) -> torch.Tensor:
        if h.ndim == 2:
            return h
        if h.ndim != 3:
            raise ValueError(
                f"a probe layer gave activations of shape {tuple(h.shape)}; expected (example, "
                "hidden) or (example, seq, hidden)"
            )
        attended = (mask if mask is not None else torch.ones(h.shape[:2], dtype=torch.long)).to(h.device)
        # Probes have no response part: every attended token is a "prompt" token, so the capture
        # policies 'last' / 'mean_prompt' select the last attended token / all attended tokens.
        # pool_tokens reads only the masks; input_ids is a placeholder of the right shape.
        batch = TokenBatch(attended, attended, attended.bool(), torch.zeros_like(attended, dtype=torch.bool))
        return pool_tokens(h, batch, policy)

    return reduce


def read_layers(
    model: torch.nn.Module,
    probes: Any,
    layers: Sequence[str],
    *,
    position: str = "last",
    grad: bool = False,
) -> dict[str, torch.Tensor]:
    """Activations (example, hidden) of `probes` at each layer, from one forward pass.

    Parameters
    ----------
    model : torch.nn.Module
        Called as ``model(probes)`` (tensor) or ``model(**probes)`` (mapping), on its device.
    probes : tensor, array or mapping of them
    layers : sequence of str
        Module names (``model.named_modules()``) or ``"hidden_states.L"``.
    position : {"last", "mean"}
        Token pooling of sequence outputs (see the module docstring).
    grad : bool
        ``False`` (monitoring): the forward runs under ``torch.no_grad`` and the outputs are
        detached. ``True`` (the penalty): they stay in the autograd graph.

    Returns
    -------
    dict
        ``{layer: tensor (example, hidden)}``; pooled sequence outputs are float32.
    """
    if position not in PROBE_POSITIONS:
        raise ValueError(f"`position` must be one of {PROBE_POSITIONS}, got {position!r}")
    residual = {n: int(m.group(1)) for n in layers if (m := _HIDDEN_STATE.match(n))}
    modules = [n for n in layers if n not in residual]
    inputs = _to_inputs(probes, _model_device(model))
    reduce = _pooler(inputs, position)
    with ExitStack() as stack:
        stack.enter_context(torch.enable_grad() if grad else torch.no_grad())
        by_module = stack.enter_context(capture_modules(model, modules, reduce=reduce, detach=not grad))
        by_index: dict[int, list[torch.Tensor]] = (
            stack.enter_context(residual_stream(model, sorted(set(residual.values())), reduce=reduce, detach=not grad))
            if residual else {}
        )
        if isinstance(inputs, Mapping):
            model(**inputs)
        else:
            model(inputs)
    recorded = {n: by_module[n] for n in modules} | {n: by_index[i] for n, i in residual.items()}
    out = {}
    for name in layers:
        if len(recorded[name]) != 1:
            raise RevstatsError(
                f"layer {name!r} ran {len(recorded[name])} times in one forward pass; probe "
                "layers must run exactly once"
            )
        out[name] = recorded[name][0]
    return out
