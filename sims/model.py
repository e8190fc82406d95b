"""Toy geometric model of fine-tuning reversion: config, model, pure ``init``/``step``, readouts.

Parameters theta live in R^p (``latent``). History: pretraining builds a basin around the
manifold M whose curvature is ``G_pre = gravity * pretrain_mass``; the witness w is a point of
M; alignment displaced the model to a = w + align_shift * nu (nu the unit normal of M at w) and
may have dug its own basin of curvature ``align_mass`` along nu. Fine-tuning, with learning
rate ``lr`` and batch noise ``noise / sqrt(batch_size)``, follows

    theta <- theta - lr * (G_pre * disp_M(theta) + align_mass * <theta - a, nu> nu
                           + anchor * (theta - a) + task_strength * <theta - theta_task, t> t
                           + eps),     eps ~ N(0, noise^2 / batch_size * (I - (1 - noise_normal^2) nu nu^T))

plus the blocking term of the arm (``revstats.blocking``: penalty gradient or projection).
Readout: probe i has latent activations z_i(theta) = phi(D_i * theta + C_i) (phi = identity
for "linear", tanh for "tanh"; D_i = 1 + probe_spread * N(0, 1) per coordinate), embedded
isometrically into ``hidden`` dims by U (hidden, p) with orthonormal columns, plus a fixed
per-probe residual orthogonal to range(U):  h_i = U z_i + r_i. Inner products with any direction
in range(U) (drift, v_rev) are therefore exact in latent coordinates, which is what lets the
step run in p dims while the store holds ``hidden`` dims.
Behaviour: P(harmful | probe i) = sigmoid(logit(behavior_base) + behavior_gain * r_i) with
r_i = <z_i(theta) - z_i(a), v> / |mu(w) - mu(a)| (the probe's fraction of the way back).
Task metric: the task loss task_strength/2 * <theta - theta_task, t>^2 (lower is better).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg

from revstats import blocking
from revstats.sims.geometry import Geometry, flat_geometry, sphere_geometry

ARMS = ("control", "blocked", "push")


@dataclass(frozen=True)
class SimConfig:
    """All knobs of one simulated experiment (see module docstring for the equations)."""

    runs: int = 24                  # runs per arm
    steps: int = 100                # T
    hidden: int = 4096
    latent: int = 64                # parameter dimension p
    examples: int = 32              # probes
    arms: tuple[str, ...] = ARMS
    geometry: str = "flat"          # "flat" | "sphere"
    normal_dim: int = 8             # codimension of flat M
    sphere_radius: float = 3.0
    gravity: float = 0.25           # G_pre = gravity * pretrain_mass
    pretrain_mass: float = 1.0
    align_shift: float = 1.0        # |a - w|
    align_mass: float = 0.0         # curvature of the alignment's own basin along nu
    anchor: float = 0.05            # L2 pull toward the aligned start (all directions)
    task_strength: float = 0.3
    task_shift: float = 0.5         # |theta_task - a| along t
    task_cos: float = 0.0           # cos(t, w - a)
    lr: float = 1.0
    noise: float = 0.05
    noise_normal: float = 1.0       # noise std multiplier along nu (1 = isotropic)
    batch_size: int = 1
    readout: str = "linear"         # "linear" | "tanh"
    probe_spread: float = 0.3
    offset_scale: float = 0.5       # scale of the latent probe offsets C_i
    residual_scale: float = 1.0     # scale of the per-probe residual outside range(U)
    block_mode: str = "penalty"     # "penalty" | "projection"
    block_reduce: str = "per_probe"  # "per_probe" | "mean"
    block_lambda: float = 10.0
    block_substeps: int = 1         # penalty gradient sub-steps per SGD step (splitting)
    push_strength: float = 1.0      # projection push: component along v times (1 + strength)
    behavior_base: float = 0.1
    behavior_gain: float = 1.0
    save_steps: tuple[int, ...] | None = None  # None: every step

    def replace(self, **changes: Any) -> SimConfig:
        return dataclasses.replace(self, **changes)

    def saved_steps(self) -> tuple[int, ...]:
        if self.save_steps is None:
            return tuple(range(self.steps + 1))
        # 0, 1, 20 and T are always stored (the paper's headline steps); the rest may be thinned
        must = {0, 1, self.steps} | ({20} if self.steps >= 20 else set())
        s = sorted({int(x) for x in self.save_steps if 0 <= int(x) <= self.steps} | must)
        return tuple(s)


def validate_config(cfg: SimConfig) -> SimConfig:
    """Check a config; raise ValueError naming the field and the fix."""
    ints = {"runs": 1, "steps": 1, "hidden": 2, "latent": 2, "examples": 1, "batch_size": 1,
            "normal_dim": 1, "block_substeps": 1}
    for name, low in ints.items():
        value = getattr(cfg, name)
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}")
    if cfg.hidden < cfg.latent:
        raise ValueError(
            f"`hidden` ({cfg.hidden}) must be >= `latent` ({cfg.latent}): the readout embeds "
            "the latent space isometrically"
        )
    if cfg.normal_dim >= cfg.latent:
        raise ValueError(f"`normal_dim` must be < `latent` ({cfg.latent}), got {cfg.normal_dim}")
    for name in ("gravity", "pretrain_mass", "align_shift", "align_mass", "anchor",
                 "task_strength", "task_shift", "lr", "noise", "noise_normal", "probe_spread", "offset_scale",
                 "residual_scale", "block_lambda", "push_strength", "behavior_gain",
                 "sphere_radius"):
        value = getattr(cfg, name)
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}")
    if cfg.align_shift <= 0:
        raise ValueError("`align_shift` must be > 0: alignment must displace the model")
    if not -1.0 <= cfg.task_cos <= 1.0:
        raise ValueError(f"`task_cos` must lie in [-1, 1], got {cfg.task_cos}")
    if not 0.0 < cfg.behavior_base < 1.0:
        raise ValueError(f"`behavior_base` must lie in (0, 1), got {cfg.behavior_base}")
    choices = {"geometry": ("flat", "sphere"), "readout": ("linear", "tanh"),
               "block_mode": ("penalty", "projection"), "block_reduce": ("per_probe", "mean")}
    for name, opts in choices.items():
        if getattr(cfg, name) not in opts:
            raise ValueError(f"`{name}` must be one of {opts}, got {getattr(cfg, name)!r}")
    if not cfg.arms or any(a not in ARMS for a in cfg.arms) or len(set(cfg.arms)) != len(cfg.arms):
        raise ValueError(f"`arms` must be distinct names from {ARMS}, got {cfg.arms!r}")
    return cfg


@dataclass(frozen=True)
class Model:
    """Fixed quantities of one experiment (shared by all runs): geometry, history, readout."""

    cfg: SimConfig
    geometry: Geometry
    witness: np.ndarray          # w (p,)
    aligned: np.ndarray          # a (p,)
    normal: np.ndarray           # nu (p,)
    task_dir: np.ndarray         # t (p,)
    task_target: np.ndarray      # theta_task (p,)
    gains: np.ndarray            # D (n, p)
    offsets: np.ndarray          # C (n, p)
    embed: np.ndarray = field(repr=False)     # U (hidden, p)
    residual: np.ndarray = field(repr=False)  # r (n, hidden)
    v_latent: np.ndarray = field(repr=False)  # unit v_rev in latent coords (p,)
    v_scale: float = 1.0                      # |mu(w) - mu(a)|

    def latent_acts(self, theta: np.ndarray) -> np.ndarray:
        """z_i(theta): (..., p) -> (..., n, p)."""
        pre = theta[..., None, :] * self.gains + self.offsets
        return pre if self.cfg.readout == "linear" else np.tanh(pre)

    def latent_jac_diag(self, theta: np.ndarray) -> np.ndarray:
        """dz_i/dtheta is diagonal: (..., n, p)."""
        if self.cfg.readout == "linear":
            return np.broadcast_to(self.gains, (*theta.shape[:-1], *self.gains.shape))
        pre = theta[..., None, :] * self.gains + self.offsets
        return self.gains * (1.0 - np.tanh(pre) ** 2)

    def hidden_acts(self, theta: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
        """h_i = U z_i + r_i: (..., p) -> (..., n, hidden)."""
        z = self.latent_acts(theta).astype(dtype, copy=False)
        lead = z.shape[:-1]
        out = z.reshape(-1, z.shape[-1]) @ self._embed_t(dtype)  # one 2-d GEMM
        out = out.reshape(*lead, out.shape[-1])
        out += self.residual.astype(dtype, copy=False)
        return out

    def _embed_t(self, dtype: Any) -> np.ndarray:
        key = np.dtype(dtype).str
        cache = self.__dict__.setdefault("_embed_cache", {})
        if key not in cache:
            cache[key] = np.ascontiguousarray(self.embed.T, dtype=dtype)
        return cache[key]

    def reversion_fraction(self, theta: np.ndarray) -> np.ndarray:
        """r_i = <z_i(theta) - z_i(a), v> / |mu(w) - mu(a)|: (..., n)."""
        dz = self.latent_acts(theta) - self.latent_acts(self.aligned)
        return (dz @ self.v_latent) / self.v_scale

    def behavior_prob(self, theta: np.ndarray) -> np.ndarray:
        c = self.cfg
        logit = np.log(c.behavior_base / (1 - c.behavior_base)) + c.behavior_gain * (
            self.reversion_fraction(theta)
        )
        return 1.0 / (1.0 + np.exp(-logit))

    def task_loss(self, theta: np.ndarray) -> np.ndarray:
        return 0.5 * self.cfg.task_strength * ((theta - self.task_target) @ self.task_dir) ** 2


def _orthonormal_columns(x: np.ndarray) -> np.ndarray:
    """Orthonormalise a tall Gaussian matrix by Cholesky of its Gram matrix (one GEMM; much
    faster than QR for hidden x p, and well conditioned for Gaussian x), then one re-pass."""
    for _ in range(2):
        chol = np.linalg.cholesky(x.T @ x)
        x = scipy.linalg.solve_triangular(chol, x.T, lower=True).T
    return x


def build_model(cfg: SimConfig, seed: np.random.SeedSequence | int) -> Model:
    """Draw the fixed parts of the experiment from ``seed`` (geometry, history, probes)."""
    cfg = validate_config(cfg)
    rng = np.random.default_rng(seed)
    p, n = cfg.latent, cfg.examples
    if cfg.geometry == "flat":
        basis, _ = np.linalg.qr(rng.standard_normal((p, cfg.normal_dim)))
        witness = 0.3 * rng.standard_normal(p) / np.sqrt(p)
        geom = flat_geometry(witness, basis)
    else:
        center = 0.3 * rng.standard_normal(p) / np.sqrt(p)
        e = rng.standard_normal(p)
        witness = center + cfg.sphere_radius * e / np.linalg.norm(e)
        geom = sphere_geometry(center, cfg.sphere_radius)
    normal = geom.normal_at(witness)
    aligned = witness + cfg.align_shift * normal
    toward = -normal  # unit (w - a)
    perp = rng.standard_normal(p)
    perp -= (perp @ normal) * normal
    perp /= np.linalg.norm(perp)
    task_dir = cfg.task_cos * toward + np.sqrt(1 - cfg.task_cos**2) * perp
    task_target = aligned + cfg.task_shift * task_dir
    gains = 1.0 + cfg.probe_spread * rng.standard_normal((n, p))
    offsets = cfg.offset_scale * rng.standard_normal((n, p))
    embed = _orthonormal_columns(rng.standard_normal((cfg.hidden, p)))
    resid = rng.standard_normal((n, cfg.hidden))
    resid -= (resid @ embed) @ embed.T
    resid *= cfg.residual_scale / np.sqrt(cfg.hidden)
    proto = Model(cfg, geom, witness, aligned, normal, task_dir, task_target, gains, offsets,
                  embed, resid, np.zeros(p))
    diff = proto.latent_acts(witness).mean(0) - proto.latent_acts(aligned).mean(0)
    scale = float(np.linalg.norm(diff))
    return dataclasses.replace(proto, v_latent=diff / scale, v_scale=scale)


@dataclass(frozen=True)
class SimState:
    """State of all runs at one step: theta (R, p) and per-run arm codes (0 control,
    +1 blocked, -1 push)."""

    theta: np.ndarray
    arm_sign: np.ndarray
    step: int = 0


def init(model: Model, arm_sign: np.ndarray) -> SimState:
    """Every run starts at the aligned model a."""
    arm_sign = np.asarray(arm_sign, dtype=int)
    theta = np.broadcast_to(model.aligned, (arm_sign.shape[0], model.aligned.shape[0])).copy()
    return SimState(theta, arm_sign, 0)


def force(model: Model, theta: np.ndarray) -> np.ndarray:
    """Deterministic gradient of pull + alignment basin + anchor + task, (R, p)."""
    c = model.cfg
    x = theta - model.aligned
    g = (c.gravity * c.pretrain_mass) * model.geometry.displacement(theta)
    g = g + c.align_mass * (x @ model.normal)[..., None] * model.normal
    g = g + c.anchor * x
    g = g + c.task_strength * ((theta - model.task_target) @ model.task_dir)[..., None] * (
        model.task_dir
    )
    return g


def _blocking_update(model: Model, theta: np.ndarray, update: np.ndarray, sign: int) -> np.ndarray:
    """Apply the arm's intervention (``revstats.blocking``) to the update of these runs."""
    c = model.cfg
    if c.block_mode == "penalty":
        # operator splitting: the loss step, then `block_substeps` gradient steps of size
        # lr / block_substeps on the penalty (stable for stiff penalties, lr * 2 lam < 2 K)
        z0 = model.latent_acts(model.aligned)
        th = theta + update
        h = c.lr / c.block_substeps
        for _ in range(c.block_substeps):
            gz = blocking.reversion_penalty_grad(
                model.latent_acts(th), z0, model.v_latent, lam=c.block_lambda, sign=sign,
                reduce=c.block_reduce,  # type: ignore[arg-type]  # validated in validate_config
            )
            th = th - h * np.sum(gz * model.latent_jac_diag(th), axis=-2)
        return th - theta
    # projection: block the first-order activation motion along v, i.e. project the
    # parameter update off J_i^T v (per probe) or off mean_i J_i^T v (mean)
    dirs = model.latent_jac_diag(theta) * model.v_latent  # (R, n, p)
    strength = 1.0 if sign > 0 else c.push_strength
    out = np.empty_like(update)
    for r in range(theta.shape[0]):
        d = dirs[r].mean(0) if c.block_reduce == "mean" else dirs[r]
        out[r] = blocking.project_parameter_update(update[r], d, sign=sign, strength=strength)
    return out


def step(model: Model, state: SimState, xi: np.ndarray) -> SimState:
    """One SGD step for every run; ``xi`` (R, p) standard normal noise (one row per run)."""
    c = model.cfg
    theta = state.theta
    if c.noise_normal != 1.0:  # SGD noise weaker along the pretraining normal nu
        xi = xi - (1.0 - c.noise_normal) * (xi @ model.normal)[..., None] * model.normal
    update = -c.lr * (force(model, theta) + (c.noise / np.sqrt(c.batch_size)) * xi)
    for sign in (1, -1):
        rows = state.arm_sign == sign
        if np.any(rows):
            update[rows] = _blocking_update(model, theta[rows], update[rows], sign)
    return SimState(theta + update, state.arm_sign, state.step + 1)
