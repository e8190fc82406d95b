r"""Torch wrappers around :mod:`revstats.blocking`: block (or push) motion along v_rev in training.

Every formula lives in :mod:`revstats.blocking` (one definition, DESIGN.md section 4); this module
only decides *which tensors* it is applied to and installs/removes hooks. Not imported by
``import revstats`` (needs torch). Three ways to use it:

1. **Context manager** around a plain training loop (:func:`block_reversion`, or the two parts
   :func:`project_activations` and :func:`project_parameter_updates`). Hooks exist only inside
   the ``with`` block and are removed in ``finally``, also when the loop raises.
2. **Loss term**: :class:`ReversionPenalty` -- ``loss = task_loss + penalty()``.
3. **Hugging Face** ``TrainerCallback``: :mod:`revstats.training.hf_callbacks`.

What "projection of activation updates" means in a forward pass
---------------------------------------------------------------
The *activation update* at layer l for an input x is how far fine-tuning has moved that layer's
output: h_l(x; theta_t) - h_l(x; theta_0), where theta_0 is the aligned model at the start of
fine-tuning. It depends on the input, so h_0 = h_l(x; theta_0) must be computed on the *same*
batch: :func:`project_activations` keeps a frozen copy of the aligned model (the *reference*),
runs it on every batch the trained model sees (a forward pre-hook on the trained model, under
``torch.no_grad`` and with the RNG state forked so dropout masks coincide), and replaces the
trained layer's output by

.. math:: h' = h_0 + (h - h_0) - s\,g\,P_V (h - h_0)

(:func:`revstats.blocking.project_activation_update`; s = +1 block, -1 push; g = strength).
When blocking, the layer's output can differ from the aligned model's only orthogonally to v:
the component along v is pinned to its aligned value and receives no gradient, so no parameter
upstream of l can learn to move it. Orthogonal motion passes through unchanged (and so does
everything at theta_t = theta_0: at the start the hooked model computes exactly the aligned
model's function). ``reduce="mean"`` removes only the component of the *batch-mean* update
(mean over every non-hidden axis), leaving per-example variation along v. Cost: one extra
forward pass of the reference per forward of the model, and a copy of the model in memory.

Projection of parameter updates (:func:`project_parameter_updates`) instead projects every
optimizer step Delta theta off parameter-space directions; :func:`parameter_directions` gives
the natural ones, u = J^T v = grad_theta <mean_i h_l(x_i; theta), v> on probe inputs: the
first-order parameter direction that moves the probe-mean activation along v.

References
----------
arXiv 2606.28525 (blocking and push arms); Farajtabar et al. (2020), "Orthogonal gradient
descent for continual learning", AISTATS (projection of updates).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.nn.utils import parameters_to_vector

from revstats import blocking
from revstats.capture.hooks import capture_modules
from revstats.capture.probes import PROBE_POSITIONS, read_layers
from revstats.training._probes import as_tensor, first_tensor, replace_first, resolve_module

__all__ = [
    "ParameterDirections",
    "ReversionPenalty",
    "block_reversion",
    "parameter_directions",
    "project_activations",
    "project_parameter_updates",
]

Reduce = Literal["per_probe", "mean"]


# --------------------------------------------------------------------------- validation
def _validate_directions(model: torch.nn.Module, directions: Any) -> dict[str, torch.Tensor]:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(directions, Mapping) or not directions:
        raise TypeError(
            "`directions` must be a non-empty mapping {layer_name: v} with v of shape (hidden,) "
            "or (k, hidden)"
        )
    out = {}
    for name, v in directions.items():
        if not isinstance(name, str):
            raise TypeError(f"`directions` keys must be layer names (str), got {name!r}")
        t = as_tensor(v).to(torch.float32)
        if t.ndim not in (1, 2) or not torch.isfinite(t).all() or (t.norm(dim=-1) == 0).any():
            raise ValueError(
                f"`directions[{name!r}]` must be a finite non-zero vector (hidden,) or stack "
                f"(k, hidden), got shape {tuple(t.shape)}"
            )
        out[name] = t
    return out


def _validate_common(sign: Any, strength: Any, reduce: Any) -> None:
    if sign not in (1, -1):
        raise ValueError(f"`sign` must be +1 (block) or -1 (push), got {sign!r}")
    if not isinstance(strength, (int, float)) or isinstance(strength, bool) or strength < 0:
        raise ValueError(f"`strength` must be a number >= 0 (1 = remove the component), got {strength!r}")
    if reduce not in ("per_probe", "mean"):
        raise ValueError(f"`reduce` must be 'per_probe' or 'mean', got {reduce!r}")


# --------------------------------------------------------------------------- activations
def _projected(h: torch.Tensor, h0: torch.Tensor, v: torch.Tensor, sign: int, strength: float, reduce: str) -> torch.Tensor:
    v = v.to(device=h.device, dtype=h.dtype)
    h0 = h0.to(dtype=h.dtype)
    if h0.shape != h.shape:
        raise RuntimeError(
            f"reference activation has shape {tuple(h0.shape)} but the model's is {tuple(h.shape)}; "
            "the reference must see the same inputs (pass the inputs to the model you hooked)"
        )
    if reduce == "per_probe":
        return blocking.project_activation_update(h, h0, v, sign=sign, strength=strength)
    d = (h - h0).reshape(-1, h.shape[-1]).mean(0)
    return h + (blocking.project_off(d, v, sign=sign, strength=strength) - d)


@contextmanager
def project_activations(
    model: torch.nn.Module,
    directions: Mapping[str, Any],
    *,
    reference: torch.nn.Module | None = None,
    sign: int = 1,
    strength: float = 1.0,
    reduce: Reduce = "per_probe",
) -> Iterator[torch.nn.Module]:
    """Project activation updates h - h_0 off v at the named layers while inside ``with``.

    Parameters
    ----------
    model : torch.nn.Module
        The model being fine-tuned; at entry it must be the aligned model theta_0 unless
        `reference` is given.
    directions : mapping {module name: v}
        Direction(s) per layer, shape (hidden,) or (k, hidden) (a subspace).
    reference : torch.nn.Module, optional
        The frozen aligned model. Default: a deep copy of `model` taken at entry.
    sign : {1, -1}
        +1 block (remove the component along v), -1 push (double it).
    strength : float
        Fraction of the component removed (block) or added (push); 1 by default.
    reduce : {"per_probe", "mean"}
        Project each example's (and token's) update, or only the batch-mean update.

    Yields
    ------
    torch.nn.Module
        The reference model (frozen), e.g. for the monitor's h_0.
    """
    dirs = _validate_directions(model, directions)
    _validate_common(sign, strength, reduce)
    mods = {name: resolve_module(model, name) for name in dirs}
    if reference is None:
        reference = copy.deepcopy(model)
    for name in dirs:
        resolve_module(reference, name)
    reference.requires_grad_(False)
    h0: dict[str, torch.Tensor] = {}
    handles: list[Any] = []

    def pre_hook(_m: Any, args: Any, kwargs: Any) -> None:
        reference.train(model.training)
        # fork_rng: the reference consumes random numbers, then the RNG is rewound, so the
        # trained model draws the same dropout masks and h - h_0 is pure fine-tuning motion.
        with torch.no_grad(), torch.random.fork_rng(), capture_modules(reference, list(dirs)) as rec:
            reference(*args, **kwargs)
        h0.clear()
        h0.update({name: calls[-1] for name, calls in rec.items() if calls})

    def make_hook(name: str):
        def hook(_m: Any, _i: Any, output: Any) -> Any:
            if name not in h0:
                raise RuntimeError(
                    f"no reference activation for layer {name!r}: call the hooked model itself "
                    "(not a submodule), so the reference sees the same inputs"
                )
            h = first_tensor(output)
            return replace_first(output, _projected(h, h0[name], dirs[name], sign, strength, reduce))

        return hook

    try:
        handles.append(model.register_forward_pre_hook(pre_hook, with_kwargs=True))
        for name, mod in mods.items():
            handles.append(mod.register_forward_hook(make_hook(name)))
        yield reference
    finally:
        for h in handles:
            h.remove()
        h0.clear()


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class ParameterDirections:
    """Directions in the space of `params` (concatenated in order): ``vectors`` (k, P)."""

    params: tuple[torch.nn.Parameter, ...]
    vectors: torch.Tensor


def parameter_directions(
    model: torch.nn.Module,
    probes: Any,
    directions: Mapping[str, Any],
    *,
    params: Sequence[torch.nn.Parameter] | None = None,
    position: str = "last",
) -> ParameterDirections:
    r"""Parameter-space directions u_l = J_l^T v_l = \nabla_\theta <mean_i h_l(x_i; theta), v_l>.

    One backward pass per layer (and per row of a (k, hidden) direction). Parameters that do
    not influence a layer get a zero block. Evaluated at the current parameters (call it on the
    aligned model) in eval mode; the directions stay fixed during training (first order).
    """
    dirs = _validate_directions(model, directions)
    if position not in PROBE_POSITIONS:
        raise ValueError(f"`position` must be one of {PROBE_POSITIONS}, got {position!r}")
    plist = tuple(p for p in (params if params is not None else model.parameters()) if p.requires_grad)
    if not plist:
        raise ValueError("`params` is empty: no trainable parameter to project")
    was_training = model.training
    model.eval()
    rows = []
    try:
        for name, v in dirs.items():
            for vk in v.reshape(-1, v.shape[-1]):
                h = read_layers(model, probes, [name], position=position, grad=True)[name]
                target = (h.mean(0) * (vk / vk.norm()).to(h)).sum()
                grads = torch.autograd.grad(target, plist, allow_unused=True)
                rows.append(
                    torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, plist, strict=True)])
                )
    finally:
        model.train(was_training)
    vectors = torch.stack(rows).detach()
    if (vectors.norm(dim=1) == 0).any():
        raise ValueError("a layer's direction does not depend on `params` (zero gradient): choose other params")
    return ParameterDirections(plist, vectors)


@contextmanager
def project_parameter_updates(
    optimizer: torch.optim.Optimizer,
    directions: ParameterDirections,
    *,
    sign: int = 1,
    strength: float = 1.0,
) -> Iterator[None]:
    """Project every ``optimizer.step()`` update of ``directions.params`` off the directions.

    Pre-step hook: remember theta; post-step hook: theta <- theta + project_off(step, u)
    (:func:`revstats.blocking.project_parameter_update` on the concatenated update, so a
    direction spanning several tensors is handled as one vector). Works for any optimizer
    (momentum and Adam states keep their own history; only the applied update is projected).
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"`optimizer` must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if not isinstance(directions, ParameterDirections):
        raise TypeError("`directions` must come from `parameter_directions(...)`")
    _validate_common(sign, strength, "per_probe")
    before: list[torch.Tensor] = []

    def pre(_opt: Any, _a: Any, _k: Any) -> None:
        before[:] = [parameters_to_vector(directions.params).detach().clone()]

    def post(_opt: Any, _a: Any, _k: Any) -> None:
        with torch.no_grad():
            old = before[0]
            update = parameters_to_vector(directions.params).detach() - old
            vecs = directions.vectors.to(update)
            new = old + blocking.project_parameter_update(update, vecs, sign=sign, strength=strength)
            offset = 0
            for p in directions.params:  # copy in place: params must not alias one new buffer
                n = p.numel()
                p.copy_(new[offset : offset + n].view_as(p))
                offset += n

    handles = []
    try:
        handles.append(optimizer.register_step_pre_hook(pre))
        handles.append(optimizer.register_step_post_hook(post))
        yield
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------- penalty
class ReversionPenalty:
    r"""Loss term lam * ReLU(s <h_t - h_0, v>)^2 on probe activations (several layers summed).

    h_0 are the probe activations of the model at construction (the aligned model), read once.
    Calling the object runs the probes through the current model (eval mode, so dropout does
    not create spurious motion; gradients flow) and returns
    :func:`revstats.blocking.penalty_over_layers`. Add it to the task loss.

    Parameters
    ----------
    model : torch.nn.Module
    probes : tensor or mapping of tensors
        Probe inputs (``model(probes)`` or ``model(**probes)``).
    directions : mapping {layer name: v}
        Module names or ``"hidden_states.L"``.
    lam, sign, reduce
        As in :func:`revstats.blocking.reversion_penalty` (+1 block, -1 push; per-probe or mean).
    position : {"last", "mean"}
        Token pooling for sequence outputs.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        probes: Any,
        directions: Mapping[str, Any],
        *,
        lam: float = 1.0,
        sign: int = 1,
        reduce: Reduce = "per_probe",
        position: str = "last",
    ) -> None:
        self.directions = _validate_directions(model, directions)
        _validate_common(sign, 1.0, reduce)
        if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not lam >= 0:
            raise ValueError(f"`lam` must be a non-negative number (penalty weight), got {lam!r}")
        self.model, self.probes = model, probes
        self.lam, self.sign, self.reduce, self.position = float(lam), int(sign), reduce, position
        self.h0 = self._read(model, grad=False)

    def _read(self, model: torch.nn.Module, *, grad: bool) -> dict[str, torch.Tensor]:
        was_training = model.training
        model.eval()
        try:
            return read_layers(model, self.probes, list(self.directions), position=self.position, grad=grad)
        finally:
            model.train(was_training)

    def __call__(self, model: torch.nn.Module | None = None) -> torch.Tensor:
        ht = self._read(self.model if model is None else model, grad=True)
        layers = {
            n: (ht[n], self.h0[n].to(ht[n]), self.directions[n].to(ht[n])) for n in self.directions
        }
        return blocking.penalty_over_layers(layers, lam=self.lam, sign=self.sign, reduce=self.reduce)


# --------------------------------------------------------------------------- one entry point
@contextmanager
def block_reversion(
    model: torch.nn.Module,
    directions: Mapping[str, Any],
    *,
    method: Literal["activation", "parameter"] = "activation",
    optimizer: torch.optim.Optimizer | None = None,
    probes: Any = None,
    sign: int = 1,
    strength: float = 1.0,
    reduce: Reduce = "per_probe",
    reference: torch.nn.Module | None = None,
    position: str = "last",
) -> Iterator[Any]:
    """Block (``sign=1``) or push (``sign=-1``) motion along v for the duration of ``with``.

    ``method="activation"``: :func:`project_activations` at the named layers.
    ``method="parameter"``: :func:`project_parameter_updates` with directions from
    :func:`parameter_directions` on `probes` (needs `optimizer` and `probes`).
    For the penalty use :class:`ReversionPenalty` as a loss term.

    Example
    -------
    >>> with block_reversion(model, {"transformer.h.1": v}):      # doctest: +SKIP
    ...     for batch in loader:
    ...         loss = model(**batch).loss; loss.backward(); opt.step(); opt.zero_grad()
    """
    if method not in ("activation", "parameter"):
        raise ValueError(f"`method` must be 'activation' or 'parameter', got {method!r}")
    with ExitStack() as stack:
        if method == "activation":
            yield stack.enter_context(
                project_activations(model, directions, reference=reference, sign=sign, strength=strength, reduce=reduce)
            )
        else:
            if optimizer is None or probes is None:
                raise ValueError("`method='parameter'` needs `optimizer=` and `probes=` (to compute J^T v)")
            pd = parameter_directions(model, probes, directions, position=position)
            stack.enter_context(project_parameter_updates(optimizer, pd, sign=sign, strength=strength))
            yield pd
