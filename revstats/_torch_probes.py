"""Minimal torch plumbing shared by the training tools: find layers, read and rewrite outputs.

Layers are named two ways:

* a module's dotted name from ``model.named_modules()`` (e.g. ``"0"``, ``"transformer.h.1"``):
  its output (the first tensor of a tuple output) is the activation;
* ``"hidden_states.L"``: the Hugging Face residual stream in the numbering of
  ``output_hidden_states`` (0 = embedding output, L = output of block L), read by one forward
  with ``output_hidden_states=True`` (read-only; blocking needs module names).

Probe inputs are a tensor (``model(x)``) or a mapping (``model(**inputs)``); sequence outputs
(example, seq, hidden) are pooled to (example, hidden) at the last attended token (``"last"``,
from ``attention_mask`` when the probes carry one) or by a masked mean (``"mean"``).
This is the small reader the monitor uses until `revstats.capture` lands on main.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

_HS = re.compile(r"^hidden_states\.(\d+)$")
POSITIONS = ("last", "mean")


def is_hidden_state_name(name: str) -> bool:
    return bool(_HS.match(name))


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


def as_tensor(x: Any, *, like: torch.Tensor | None = None, dtype: Any = None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if like is not None:
        t = t.to(device=like.device, dtype=like.dtype if dtype is None else dtype)
    elif dtype is not None:
        t = t.to(dtype=dtype)
    return t


def model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def to_inputs(probes: Any, device: torch.device) -> Any:
    """Probe inputs as tensors on `device`: a tensor, or a dict of tensors."""
    if isinstance(probes, Mapping):
        return {k: as_tensor(v).to(device) for k, v in probes.items()}
    return as_tensor(probes).to(device)


def call_model(model: torch.nn.Module, inputs: Any, **extra: Any) -> Any:
    if isinstance(inputs, Mapping):
        return model(**inputs, **extra)
    return model(inputs, **extra)


def pool(h: torch.Tensor, inputs: Any, position: str) -> torch.Tensor:
    """(example, hidden) from (example, hidden) or (example, seq, hidden)."""
    if h.ndim == 2:
        return h
    if h.ndim != 3:
        raise ValueError(
            f"a probe layer gave activations of shape {tuple(h.shape)}; expected (example, hidden) "
            "or (example, seq, hidden)"
        )
    mask = inputs.get("attention_mask") if isinstance(inputs, Mapping) else None
    if mask is None:
        mask = torch.ones(h.shape[:2], device=h.device, dtype=torch.long)
    mask = mask.to(h.device)
    if position == "last":
        idx = torch.arange(h.shape[1], device=h.device)
        last = (mask.long() * (idx + 1)).argmax(dim=1)  # last attended position, any padding side
        return h[torch.arange(h.shape[0], device=h.device), last]
    w = mask.to(h.dtype)[..., None]
    return (h * w).sum(1) / w.sum(1).clamp_min(1.0)


@contextmanager
def recording(model: torch.nn.Module, names: Sequence[str], *, detach: bool) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks that record the output of each named module; removed in ``finally``."""
    out: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name in names:
            module = resolve_module(model, name)

            def hook(_m: Any, _i: Any, o: Any, name: str = name) -> None:
                t = first_tensor(o)
                out[name] = t.detach() if detach else t

            handles.append(module.register_forward_hook(hook))
        yield out
    finally:
        for h in handles:
            h.remove()


def read_layers(
    model: torch.nn.Module,
    probes: Any,
    layers: Sequence[str],
    *,
    position: str = "last",
    grad: bool = False,
) -> dict[str, torch.Tensor]:
    """Activations (example, hidden) of `probes` at each layer; one forward pass.

    With ``grad=False`` (monitoring) the forward runs under ``torch.no_grad`` and the outputs
    are detached; with ``grad=True`` (the penalty) they stay in the autograd graph.
    """
    if position not in POSITIONS:
        raise ValueError(f"`position` must be one of {POSITIONS}, got {position!r}")
    inputs = to_inputs(probes, model_device(model))
    hs_layers = {n: int(_HS.match(n).group(1)) for n in layers if _HS.match(n)}  # type: ignore[union-attr]
    mod_layers = [n for n in layers if n not in hs_layers]
    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx, recording(model, mod_layers, detach=not grad) as rec:
        extra = {"output_hidden_states": True} if hs_layers else {}
        out = call_model(model, inputs, **extra)
    result: dict[str, torch.Tensor] = {}
    for name in layers:
        if name in hs_layers:
            hidden_states = getattr(out, "hidden_states", None)
            if hidden_states is None:
                raise ValueError(
                    f"layer {name!r} needs a Hugging Face model returning `hidden_states`; name a "
                    "module instead (model.named_modules())"
                )
            L = hs_layers[name]
            if L >= len(hidden_states):
                raise ValueError(
                    f"layer {name!r}: the model has hidden_states.0 .. hidden_states."
                    f"{len(hidden_states) - 1}"
                )
            h = hidden_states[L]
            h = h if grad else h.detach()
        else:
            h = rec[name]
        result[name] = pool(h, inputs, position)
    return result
