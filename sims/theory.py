"""Exact predictions for the flat, quadratic, linear-readout simulator (``sims.model``).

With a flat manifold, quadratic basins and a linear readout the update is affine in
x_t = theta_t - a plus Gaussian noise:

    x_{t+1} = A x_t + b + e_t,   A = I - lr P H,  b = -lr P c,  Cov(e_t) = Q = lr^2 s^2 P S_xi P^T

where force(theta) = H x + c (H = G_pre N N^T + align_mass nu nu^T + anchor I
+ task_strength t t^T, c = force(a)), s = noise / sqrt(batch_size), S_xi = I - (1 - noise_normal^2)
nu nu^T, and P is the arm's projection (I for control; I - sign * strength * q q^T for
mean-projection blocking/push with q = normalize(mean_i J_i^T v) = normalize(Dbar * v)). So
x_t is Gaussian with mean m_{t+1} = A m_t + b and covariance S_{t+1} = A S_t A^T + Q, exactly.
Readouts are linear in x: the probe-mean drift is Delta = Dbar * x, so

    E<Delta, v> = (Dbar v)^T m_t,   E|Delta|^2 = |Dbar m_t|^2 + tr(diag(Dbar) S_t diag(Dbar)),

the predicted alignment is E<Delta, v> / sqrt(E|Delta|^2) (first order in the spread of
|Delta|, accurate when the drift has many noisy directions), the plateau is the fixed point
(I - A) m = b, S = A S A^T + Q (discrete Lyapunov, Smith doubling), and the behaviour rate is
mean_i E sigmoid(alpha + beta r_i) with r_i Gaussian (Gauss-Hermite quadrature). For the
isotropic case the plateau along v has the closed form u* = G_pre delta / (G_pre + align_mass
+ anchor) (fraction rho = G_pre / (G_pre + align_mass + anchor) of the displacement returns).
Blocking by mean projection freezes <Delta, v> at exactly 0 for all t.
The per-probe ReLU penalty is not affine; it has no closed form here and is measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from revstats.sims.model import Model


@dataclass(frozen=True)
class Prediction:
    """Exact moments per step (index = step 0..T) for one arm."""

    steps: np.ndarray
    mean_proj: np.ndarray       # E<Delta_t, v>
    mean_sq_norm: np.ndarray    # E|Delta_t|^2
    var_proj: np.ndarray        # Var<Delta_t, v>
    alignment: np.ndarray       # E<Delta,v> / sqrt(E|Delta|^2)
    behavior_rate: np.ndarray   # mean over probes of P(harmful)
    task_loss: np.ndarray       # E task loss


def _validate_model(model: Model) -> None:
    c = model.cfg
    if c.geometry != "flat" or c.readout != "linear":
        raise ValueError(
            "`model` must use geometry='flat' and readout='linear' for exact theory "
            f"(got {c.geometry!r}, {c.readout!r}); simulate other cases instead"
        )


def affine_system(model: Model, sign: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, b, Q) of the arm with code ``sign`` (0 control, +1 blocked, -1 push; projection
    blocking with reduce='mean')."""
    from revstats.sims.model import force

    _validate_model(model)
    c = model.cfg
    p = model.aligned.shape[0]
    if sign != 0 and not (c.block_mode == "projection" and c.block_reduce == "mean"):
        raise ValueError(
            "exact theory covers blocking only for block_mode='projection', "
            "block_reduce='mean'; set those (preset 'theory-flat')"
        )
    cvec = force(model, model.aligned[None])[0]
    eye = np.eye(p)
    H = force(model, model.aligned[None] + eye) - cvec  # row j = H e_j (H symmetric)
    H = 0.5 * (H + H.T)
    P = eye
    if sign != 0:
        q = model.gains.mean(0) * model.v_latent
        q /= np.linalg.norm(q)
        strength = 1.0 if sign > 0 else c.push_strength
        P = eye - sign * strength * np.outer(q, q)
    nu = model.normal
    s_xi = eye - (1.0 - c.noise_normal**2) * np.outer(nu, nu)
    s2 = c.noise**2 / c.batch_size
    A = eye - c.lr * P @ H
    b = -c.lr * P @ cvec
    Q = c.lr**2 * s2 * P @ s_xi @ P.T
    return A, b, Q


def _behavior_rate(model: Model, m: np.ndarray, S: np.ndarray) -> float:
    c = model.cfg
    g = model.gains * model.v_latent / model.v_scale  # (n, p): r_i = g_i . x
    mu = g @ m
    sd = np.sqrt(np.maximum(np.einsum("ip,pq,iq->i", g, S, g), 0.0))
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    weights = weights / weights.sum()
    alpha = np.log(c.behavior_base / (1 - c.behavior_base))
    r = mu[:, None] + sd[:, None] * nodes[None, :]
    prob = 1.0 / (1.0 + np.exp(-(alpha + c.behavior_gain * r)))
    return float(np.mean(prob @ weights))


def predict(model: Model, sign: int = 0) -> Prediction:
    """Exact per-step moments for steps 0..T of the arm ``sign``."""
    A, b, Q = affine_system(model, sign)
    c = model.cfg
    p = A.shape[0]
    dbar = model.gains.mean(0)
    w = dbar * model.v_latent
    t_dir, tau = model.task_dir, float((model.task_target - model.aligned) @ model.task_dir)
    m, S = np.zeros(p), np.zeros((p, p))
    out = {k: [] for k in ("mp", "msq", "vp", "beh", "task")}
    for t in range(c.steps + 1):
        if t > 0:
            m = A @ m + b
            S = A @ S @ A.T + Q
        out["mp"].append(w @ m)
        out["msq"].append(np.sum((dbar * m) ** 2) + np.sum(dbar**2 * np.diag(S)))
        out["vp"].append(w @ S @ w)
        out["beh"].append(_behavior_rate(model, m, S))
        out["task"].append(0.5 * c.task_strength * ((t_dir @ m - tau) ** 2 + t_dir @ S @ t_dir))
    mp, msq = np.array(out["mp"]), np.array(out["msq"])
    with np.errstate(invalid="ignore", divide="ignore"):
        align = np.where(msq > 0, mp / np.sqrt(msq), np.nan)
    return Prediction(np.arange(c.steps + 1), mp, msq, np.array(out["vp"]), align,
                      np.array(out["beh"]), np.array(out["task"]))


def plateau(model: Model, sign: int = 0) -> dict[str, float]:
    """Stationary (t -> infinity) moments: fixed point and discrete Lyapunov covariance."""
    A, b, Q = affine_system(model, sign)
    p = A.shape[0]
    # (I - A) m = b; under blocking q^T A = q^T (q^T m_t = 0 forever), so add that row
    rows, rhs = [np.eye(p) - A], [b]
    if sign > 0:
        q = model.gains.mean(0) * model.v_latent
        rows.append((q / np.linalg.norm(q))[None])
        rhs.append(np.zeros(1))
    m = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)[0]
    # S = sum_k A^k Q A^kT by Smith's doubling (also fine when A has the frozen unit mode)
    S, Ak = Q.copy(), A.copy()
    for _ in range(40):
        S = S + Ak @ S @ Ak.T
        Ak = Ak @ Ak
    dbar = model.gains.mean(0)
    w = dbar * model.v_latent
    mp = float(w @ m)
    msq = float(np.sum((dbar * m) ** 2) + np.sum(dbar**2 * np.diag(S)))
    return {"mean_proj": mp, "mean_sq_norm": msq, "alignment": mp / np.sqrt(msq),
            "behavior_rate": _behavior_rate(model, m, S)}


def return_fraction(model: Model) -> float:
    """Closed form rho = G_pre / (G_pre + align_mass + anchor): the share of the alignment
    displacement that the pull undoes at the plateau (flat M, task orthogonal to nu)."""
    c = model.cfg
    g = c.gravity * c.pretrain_mass
    return g / (g + c.align_mass + c.anchor)
