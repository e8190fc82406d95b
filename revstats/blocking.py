"""The one definition of each blocking intervention (DESIGN.md section 4).

Every function here is written once against the Python array API
(`array_api_compat.array_namespace`), so the same code runs on NumPy arrays (the simulator,
a user's analysis) and on torch tensors (the torch wrappers and the model organism call these
functions; autograd differentiates through them). This module never imports torch.

Conventions
-----------
``h_t``, ``h_0``
    activations with shape ``(..., example, hidden)``: the current model and the reference
    (aligned, step-0) model on the same probes. Leading dims (runs, batch) broadcast.
``v``
    a direction ``(hidden,)`` or several directions ``(k, hidden)`` (e.g. one per layer head
    or several reversion directions). Directions are normalised here; several directions are
    treated one at a time for the penalty (a sum over directions) and as a subspace for the
    projections (orthonormalised by QR).
``sign``
    ``+1`` = **block** (suppress motion toward the witness along ``v``); ``-1`` = **push**.

Precisely, with s_i = sign * <h_t,i - h_0,i, v>:

* penalty, ``reduce="per_probe"``:  P = lam * mean_i ReLU(s_i)^2
* penalty, ``reduce="mean"``:       P = lam * ReLU(sign * <mean_i (h_t,i - h_0,i), v>)^2

so block (sign=+1) penalises positive motion along v (toward the pre-alignment witness) and
leaves motion away from it free; push (sign=-1) is the mirror image: it penalises motion
*against* v, so along v the model may only move toward the witness.

* projection of an update u (activation update h_new - h_old, or a parameter update):
  u' = u - sign * strength * P_V u, with P_V the orthogonal projector onto span(v).
  Block (sign=+1, strength=1) removes the component along v exactly; push (sign=-1) doubles
  it (reinforces motion along v); components orthogonal to v are never changed.

Several layers: apply the function per layer and add the penalties
(:func:`penalty_over_layers`). References: the "gravitational" reversion paper (arXiv
2606.28525), section on blocking; projection of gradient updates as in orthogonal gradient
descent (Farajtabar et al., 2020, AISTATS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from array_api_compat import array_namespace

Reduce = Literal["per_probe", "mean"]

__all__ = [
    "penalty_over_layers",
    "project_activation_update",
    "project_off",
    "project_parameter_update",
    "reversion_penalty",
    "reversion_penalty_grad",
]


def _validate_sign(sign: Any) -> int:
    if sign not in (1, -1):
        raise ValueError(f"`sign` must be +1 (block) or -1 (push), got {sign!r}")
    return int(sign)


def _validate_reduce(reduce: Any) -> str:
    if reduce not in ("per_probe", "mean"):
        raise ValueError(f"`reduce` must be 'per_probe' or 'mean', got {reduce!r}")
    return str(reduce)


def _validate_lam(lam: Any) -> float:
    try:
        value = float(lam)
    except (TypeError, ValueError):
        raise TypeError(f"`lam` must be a non-negative number, got {lam!r}") from None
    if not value >= 0.0:
        raise ValueError(f"`lam` must be a non-negative number (penalty weight), got {lam!r}")
    return value


def _unit_directions(xp: Any, v: Any, hidden: int) -> Any:
    """Return directions as a (k, hidden) array of unit rows."""
    if v.ndim not in (1, 2):
        raise ValueError(
            f"`v` must have shape (hidden,) or (k, hidden), got {tuple(v.shape)}: pass one "
            "direction or a stack of directions"
        )
    if v.shape[-1] != hidden:
        raise ValueError(
            f"`v` has {v.shape[-1]} hidden units but the activations have {hidden}: use the "
            "direction computed at the same layer"
        )
    v2 = v if v.ndim == 2 else v[None, :]
    norms = xp.linalg.vector_norm(v2, axis=-1, keepdims=True)
    if bool(xp.any(norms == 0)):
        raise ValueError("`v` contains a zero vector: a direction must have non-zero norm")
    return v2 / norms


def _validate_penalty(h_t: Any, h_0: Any, v: Any, lam: Any, sign: Any, reduce: Any):
    xp = array_namespace(h_t, h_0, v)
    if h_t.ndim < 2:
        raise ValueError(
            f"`h_t` must have shape (..., example, hidden), got {tuple(h_t.shape)}: add an "
            "example axis (h[None, :]) for a single probe"
        )
    return xp, _unit_directions(xp, v, h_t.shape[-1]), _validate_lam(lam), _validate_sign(
        sign
    ), _validate_reduce(reduce)


def _signed_components(xp: Any, h_t: Any, h_0: Any, vs: Any, sign: int, reduce: str) -> Any:
    """s = sign * <drift, v_k>: shape (..., example, k) per probe or (..., k) for the mean."""
    drift = h_t - h_0
    if reduce == "mean":
        drift = xp.mean(drift, axis=-2)
    return sign * (drift @ xp.permute_dims(vs, (1, 0)))


def reversion_penalty(
    h_t: Any, h_0: Any, v: Any, *, lam: float = 1.0, sign: int = 1, reduce: Reduce = "per_probe"
) -> Any:
    """Auxiliary blocking penalty on probe activations.

    .. math::

        P = \\lambda \\sum_k \\operatorname{mean}_i \\operatorname{ReLU}(s\\,\\langle h_{t,i}-h_{0,i}, v_k\\rangle)^2

    (``reduce="per_probe"``) or with the mean over probes taken inside the ReLU
    (``reduce="mean"``). ``sign=+1`` blocks motion toward the witness, ``sign=-1`` pushes.

    Parameters
    ----------
    h_t, h_0 : array (..., example, hidden)
        Current and reference activations (any array-API array: NumPy, torch, ...).
    v : array (hidden,) or (k, hidden)
        Direction(s); normalised here.
    lam : float
        Penalty weight lambda >= 0.
    sign : {1, -1}
        +1 block, -1 push.
    reduce : {"per_probe", "mean"}
        Penalise each probe's component, or the component of the probe-mean drift.

    Returns
    -------
    array (...)
        The penalty per leading index (a scalar for 2-d input). Differentiable in torch.

    References
    ----------
    arXiv 2606.28525 (blocking experiment); DESIGN.md section 4 (a).
    """
    xp, vs, lam_f, s, red = _validate_penalty(h_t, h_0, v, lam, sign, reduce)
    comp = _signed_components(xp, h_t, h_0, vs, s, red)
    relu = xp.where(comp > 0, comp, xp.zeros_like(comp))
    sq = relu * relu
    if red == "per_probe":
        sq = xp.mean(sq, axis=-2)
    return lam_f * xp.sum(sq, axis=-1)


def reversion_penalty_grad(
    h_t: Any, h_0: Any, v: Any, *, lam: float = 1.0, sign: int = 1, reduce: Reduce = "per_probe"
) -> Any:
    """Analytic gradient of :func:`reversion_penalty` with respect to ``h_t``.

    Per probe: dP/dh_{t,i} = (2 lam / n) sum_k ReLU(s_ik) sign v_k; for ``reduce="mean"``
    every probe gets (2 lam / n) sum_k ReLU(s_k) sign v_k, n = number of probes. For NumPy
    users (the simulator); torch users can rely on autograd and get the same values.

    Returns
    -------
    array with the shape of ``h_t``.
    """
    xp, vs, lam_f, s, red = _validate_penalty(h_t, h_0, v, lam, sign, reduce)
    n = h_t.shape[-2]
    comp = _signed_components(xp, h_t, h_0, vs, s, red)
    relu = xp.where(comp > 0, comp, xp.zeros_like(comp))
    grad = (2.0 * lam_f * s / n) * (relu @ vs)  # (..., example, hidden) or (..., hidden)
    if red == "mean":
        grad = xp.broadcast_to(grad[..., None, :], h_t.shape)
    return grad


def penalty_over_layers(
    layers: Mapping[str, tuple[Any, Any, Any]],
    *,
    lam: float = 1.0,
    sign: int = 1,
    reduce: Reduce = "per_probe",
) -> Any:
    """Sum of :func:`reversion_penalty` over layers: ``{name: (h_t, h_0, v)}``."""
    if not layers:
        raise ValueError("`layers` is empty: pass {layer_name: (h_t, h_0, v)} for at least one layer")
    total = None
    for h_t, h_0, v in layers.values():
        p = reversion_penalty(h_t, h_0, v, lam=lam, sign=sign, reduce=reduce)
        total = p if total is None else total + p
    return total


def project_off(u: Any, v: Any, *, sign: int = 1, strength: float = 1.0) -> Any:
    """Remove (block) or amplify (push) the component of ``u`` in span(v).

    .. math:: u' = u - \\mathrm{sign}\\cdot\\mathrm{strength}\\cdot Q Q^\\top u

    with Q an orthonormal basis of the directions (QR). Block (sign=+1, strength=1) leaves
    u' orthogonal to every v_k; push (sign=-1) doubles the component in span(v). The part of
    u orthogonal to span(v) is unchanged. ``u`` has shape (..., dim); ``v`` (dim,) or (k, dim).
    """
    xp = array_namespace(u, v)
    s = _validate_sign(sign)
    try:
        g = float(strength)
    except (TypeError, ValueError):
        raise TypeError(f"`strength` must be a number, got {strength!r}") from None
    if not g >= 0.0:
        raise ValueError(f"`strength` must be >= 0 (1 = remove the component), got {strength!r}")
    vs = _unit_directions(xp, v, u.shape[-1])
    if vs.shape[0] > 1:
        q, _ = xp.linalg.qr(xp.permute_dims(vs, (1, 0)))  # (dim, k)
        basis = xp.permute_dims(q, (1, 0))
    else:
        basis = vs
    coef = u @ xp.permute_dims(basis, (1, 0))  # (..., k)
    return u - (s * g) * (coef @ basis)


def project_activation_update(
    h_new: Any, h_old: Any, v: Any, *, sign: int = 1, strength: float = 1.0
) -> Any:
    """(b) Projection of an activation update off v: h_old + project_off(h_new - h_old, v).

    Used inside a forward hook (torch wrappers) or on simulated activations: the returned
    activations differ from ``h_old`` only orthogonally to v when blocking.
    """
    return h_old + project_off(h_new - h_old, v, sign=sign, strength=strength)


def project_parameter_update(
    update: Any, direction: Any, *, sign: int = 1, strength: float = 1.0
) -> Any:
    """(c) Projection of a parameter update off a parameter-space direction (or several).

    For a linear readout h = J theta, blocking activation motion along v to first order means
    projecting the parameter update off J^T v; the caller supplies that direction.
    """
    return project_off(update, direction, sign=sign, strength=strength)
