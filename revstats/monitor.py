r"""Live reversion monitor: alignment of the drift with v_rev, tested at every look of a run.

At look k (training step t_k) and layer l the monitor reads the probe activations of the
current model, forms the mean drift Delta = mean_i h_i(theta_t) - mean_i h_i(theta_0)
(:func:`revstats.geometry.drift`), its alignment a = cos(Delta, v_rev)
(:func:`revstats.geometry.alignment`) and the one-sided p-value of a under the null of no
preferred direction, p = P(C >= a) with (C + 1)/2 ~ Beta((d-1)/2, (d-1)/2)
(:func:`revstats.nulls.isotropic_cosine`, or the effective-dimension law
:func:`revstats.nulls.effective_isotropic_cosine`).

False alarms over a whole run: alpha spending with a union bound
------------------------------------------------------------------
A run is checked many times, and the checks are strongly dependent (the drift accumulates).
The monitor spends the error budget alpha across looks, alpha_1 + alpha_2 + ... <= alpha, and
Bonferroni-splits each alpha_k across the L layers; it raises an alarm at the first look where
some layer has p <= alpha_k / L. By the union bound,

.. math:: P(\text{any false alarm}) \le \sum_k \sum_l P(p_{k,l} \le \alpha_k/L) \le \sum_k \alpha_k \le \alpha

whatever the dependence between looks and layers, as long as each p_{k,l} is valid (uniform
or conservative) under the null. That is why this rule rather than a Pocock or O'Brien-Fleming
*boundary*: those boundaries are cheaper in power but need the joint law of the test statistics
across looks, which for the drift of a real network is unknown. Spending rules (Lan & DeMets
1983 in form; any choice is valid under the union bound):

* ``"bonferroni"``: alpha_k = alpha / K over K planned looks (uniform spending); looks past K
  spend nothing (the monitor says so once);
* ``"power"``: alpha_k = alpha ((k/K)^rho - ((k-1)/K)^rho) (Kim & DeMets power family; rho > 1
  spends little early, when drift is still small, and more late);
* ``"harmonic"``: alpha_k = alpha / (k (k + 1)), summing to alpha over infinitely many looks:
  anytime-valid for runs of unknown length, at the price of small levels late.

The null p-value assumes the drift direction is isotropic when there is no reversion (exact for
isotropic Gaussian drift, checked in tests/calibration/test_monitor_false_alarm.py); for
anisotropic activations use ``null="effective"`` (d_eff from the probe activations).

Numerical noise: a drift-magnitude floor
----------------------------------------
A model that was never trained (the aligned model itself, a freshly wrapped LoRA model, a frozen
layer, the first steps of a warm-up) still reads probe activations that differ from the config's
aligned activations by float rounding (different batch sizes, kernels, storage dtype). That
difference is not isotropic -- its cosine with v_rev can be anything -- so the isotropic p-value
is wrong there. The monitor therefore bounds the numerical noise by a floor beta per layer and
tests a noise-robust cosine: if the observed drift is D = X + b with ||b|| <= beta (b any
vector, also adversarial) and X the drift the null describes, then

.. math:: \cos(X, v) \ge a_\beta = \frac{\langle D, v\rangle - \beta}{\lVert D\rVert + \beta}
   \quad\text{whenever } \langle D, v\rangle > \beta,

so p = P(C >= a_beta) is a valid p-value (p = 1 when <D, v> <= beta: a drift within the noise
floor never alarms). beta = max(4 eps S, 4 r) where eps is the machine epsilon of the coarsest
dtype involved (the config's aligned activations, the model's compute dtype), S the RMS norm of
a probe activation, and r the largest numerical discrepancy seen at start (repeated forwards of
the untrained model, in one batch and in two halves, against each other and against the
config's aligned activations); see :meth:`ReversionMonitor.estimate_noise_floor`. Calibrated
in tests/calibration/test_monitor_false_alarm.py (zero drift with rounding noise along v_rev,
warm-up, a frozen layer).

References: Lan & DeMets (1983), Biometrika 70:659; Kim & DeMets (1987), Biometrics 43:857;
arXiv 2606.28525 (the reversion alignment statistic).
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xarray as xr

from revstats import geometry, nulls
from revstats._validation import as_finite_array, check_choice
from revstats.errors import DegenerateDataWarning, RevstatsError, RevstatsWarning
from revstats.geometry import _np as _np_geometry
from revstats.nulls._types import CosineNull

__all__ = [
    "Check",
    "MonitorConfig",
    "ReversionAlarm",
    "ReversionMonitor",
    "build_config",
    "look_level",
    "noise_robust_cosine",
]

log = logging.getLogger("revstats.monitor")
Spending = Literal["bonferroni", "power", "harmonic"]
NullKind = Literal["isotropic", "effective"]
_SPENDING = ("bonferroni", "power", "harmonic")
CONFIG_VERSION = 1
#: multiples of the machine epsilon / of the start discrepancy that make the noise floor
FLOOR_EPS_FACTOR = 4.0
FLOOR_START_FACTOR = 4.0
#: a start discrepancy larger than this fraction of the RMS probe norm is not rounding noise
#: (the model at start is not the config's aligned model): it is reported, not used as floor
FLOOR_MAX_RELATIVE = 0.05


class ReversionAlarm(RevstatsWarning):
    """Warning raised when the monitor finds significant drift toward the witness."""


# --------------------------------------------------------------------------- alpha spending
def _validate_look(alpha: Any, k: Any, n_looks: Any, spending: Any, rho: Any) -> None:
    check_choice("spending", spending, _SPENDING)
    if not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"`alpha` must lie in (0, 1) (e.g. 0.05), got {alpha!r}")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`k` (the look number) must be an integer >= 1, got {k!r}")
    if spending != "harmonic" and (not isinstance(n_looks, (int, np.integer)) or n_looks < 1):
        raise ValueError(
            f"`n_looks` must be the planned number of looks (int >= 1) for spending={spending!r}; "
            "use spending='harmonic' when the run length is unknown"
        )
    if spending == "power" and not (isinstance(rho, (int, float)) and rho > 0):
        raise ValueError(f"`rho` must be > 0 for power spending, got {rho!r}")


def look_level(
    alpha: float, k: int, *, n_looks: int | None = None, spending: Spending = "bonferroni", rho: float = 2.0
) -> float:
    """Significance level alpha_k spent at look ``k`` (1-based); sum_k alpha_k <= alpha.

    See the module docstring for the three rules. Looks beyond `n_looks` get 0 for
    ``"bonferroni"`` and ``"power"``.
    """
    _validate_look(alpha, k, n_looks, spending, rho)
    if spending == "harmonic":
        return alpha / (k * (k + 1))
    assert n_looks is not None
    if k > n_looks:
        return 0.0
    if spending == "bonferroni":
        return alpha / n_looks
    return alpha * ((k / n_looks) ** rho - ((k - 1) / n_looks) ** rho)


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class MonitorConfig:
    """What a monitor needs: per layer the unit v_rev, the aligned and witness probe
    activations (example, hidden), the null's dimension; the spending plan; probe inputs.

    Saved as ``monitor.json`` (settings) + ``monitor.npz`` (arrays; loaded with
    ``allow_pickle=False``) by :meth:`save`; never pickle.
    """

    layers: tuple[str, ...]
    directions: Mapping[str, np.ndarray]
    aligned: Mapping[str, np.ndarray]
    witness: Mapping[str, np.ndarray]
    null_dim: Mapping[str, float]
    alpha: float = 0.05
    n_looks: int | None = 20
    every: int = 10
    spending: str = "bonferroni"
    rho: float = 2.0
    null: str = "isotropic"
    examples: tuple[str, ...] = ()
    position: str = "last"
    probes: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: dtype the aligned activations were computed/stored in (its epsilon sets the noise floor)
    aligned_dtype: str = "float32"

    def level(self, k: int) -> float:
        """Per-layer level at look k: alpha_k / L."""
        return look_level(self.alpha, k, n_looks=self.n_looks, spending=self.spending, rho=self.rho)  # type: ignore[arg-type]  # validated in build_config / len(self.layers)

    def null_law(self, layer: str) -> nulls.CosineNull:
        d = self.null_dim[layer]
        if self.null == "isotropic":
            return nulls.isotropic_cosine(int(d))
        # the law of nulls.effective_isotropic_cosine, from the d_eff stored in the config
        return CosineNull(float(d), method="effective_isotropic", attrs={"d_eff": float(d)})

    def threshold(self, k: int, layer: str) -> float:
        """Alignment above which look k alarms at `layer` (the null's upper alpha_k/L quantile)."""
        lev = self.level(k)
        return float(self.null_law(layer).isf(lev)) if lev > 0 else math.inf

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``path/monitor.json`` and ``path/monitor.npz`` (directory created)."""
        os.makedirs(path, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for i, name in enumerate(self.layers):
            arrays[f"direction/{i}"] = np.asarray(self.directions[name], np.float64)
            arrays[f"aligned/{i}"] = np.asarray(self.aligned[name], np.float32)
            arrays[f"witness/{i}"] = np.asarray(self.witness[name], np.float32)
        for k, v in self.probes.items():
            arrays[f"probe/{k}"] = np.asarray(v)
        meta = {
            "revstats_monitor_config": CONFIG_VERSION,
            "layers": list(self.layers),
            "null_dim": {k: float(v) for k, v in self.null_dim.items()},
            "alpha": self.alpha, "n_looks": self.n_looks, "every": self.every,
            "spending": self.spending, "rho": self.rho, "null": self.null,
            "examples": list(self.examples), "position": self.position,
            "probe_keys": list(self.probes), "aligned_dtype": self.aligned_dtype,
            "thresholds_first_looks": {
                name: [self.threshold(k, name) for k in range(1, 1 + min(5, self.n_looks or 5))] for name in self.layers
            },
        }
        tmp_npz = os.path.join(path, "monitor.tmp.npz")
        np.savez(tmp_npz, **arrays)  # type: ignore[arg-type]
        os.replace(tmp_npz, os.path.join(path, "monitor.npz"))
        tmp_json = os.path.join(path, "monitor.json.tmp")
        with open(tmp_json, "w") as f:
            json.dump(meta, f, indent=2)
        os.replace(tmp_json, os.path.join(path, "monitor.json"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MonitorConfig:
        """Read a configuration written by :meth:`save` or ``revstats monitor-config``."""
        jpath, npath = os.path.join(path, "monitor.json"), os.path.join(path, "monitor.npz")
        if not (os.path.exists(jpath) and os.path.exists(npath)):
            raise FileNotFoundError(
                f"`path` {os.fspath(path)!r} has no monitor.json + monitor.npz: write them with "
                "`revstats monitor-config`"
            )
        with open(jpath) as f:
            meta = json.load(f)
        if meta.get("revstats_monitor_config") != CONFIG_VERSION:
            raise RevstatsError(f"{jpath} is not a revstats monitor configuration (version {CONFIG_VERSION})")
        with np.load(npath, allow_pickle=False) as z:
            arr = {k: z[k] for k in z.files}
        layers = tuple(meta["layers"])
        return cls(
            layers=layers,
            directions={n: arr[f"direction/{i}"] for i, n in enumerate(layers)},
            aligned={n: arr[f"aligned/{i}"] for i, n in enumerate(layers)},
            witness={n: arr[f"witness/{i}"] for i, n in enumerate(layers)},
            null_dim=meta["null_dim"], alpha=meta["alpha"], n_looks=meta["n_looks"],
            every=meta["every"], spending=meta["spending"], rho=meta["rho"], null=meta["null"],
            examples=tuple(meta["examples"]), position=meta["position"],
            probes={k: arr[f"probe/{k}"] for k in meta["probe_keys"]},
            aligned_dtype=meta.get("aligned_dtype", "float32"),
        )


def _validate_build(witness: Any, aligned: Any, alpha: Any, n_looks: Any, every: Any, spending: Any, rho: Any, null: Any):
    if not isinstance(witness, Mapping) or not isinstance(aligned, Mapping) or not witness:
        raise TypeError("`witness` and `aligned` must be non-empty mappings {layer: (example, hidden) array}")
    if set(witness) != set(aligned):
        raise ValueError(
            f"`witness` and `aligned` must name the same layers; got {sorted(witness)} and {sorted(aligned)}"
        )
    check_choice("null", null, ("isotropic", "effective"))
    _validate_look(alpha, 1, n_looks, spending, rho)
    if not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"`every` must be a positive number of training steps, got {every!r}")
    out = {}
    for name in witness:
        w = as_finite_array(f"witness[{name!r}]", witness[name])
        a = as_finite_array(f"aligned[{name!r}]", aligned[name])
        if w.ndim != 2 or a.ndim != 2 or w.shape[1] != a.shape[1] or w.shape[1] < 2:
            raise ValueError(
                f"layer {name!r}: `witness` and `aligned` must be (example, hidden) with the same "
                f"hidden size >= 2, got {w.shape} and {a.shape}"
            )
        out[name] = (w, a)
    return out


def build_config(
    witness: Mapping[str, Any],
    aligned: Mapping[str, Any],
    *,
    alpha: float = 0.05,
    n_looks: int | None = 20,
    every: int = 10,
    spending: Spending = "bonferroni",
    rho: float = 2.0,
    null: NullKind = "isotropic",
    probes: Mapping[str, Any] | None = None,
    examples: Sequence[str] | None = None,
    position: str = "last",
    aligned_dtype: str | None = None,
) -> MonitorConfig:
    """Monitor configuration from witness and aligned probe activations per layer.

    v_rev = :func:`revstats.geometry.reversion_direction` (unit, from the aligned model toward
    the witness). ``null="isotropic"`` tests against the exact law in d = hidden;
    ``null="effective"`` uses d_eff = (tr S)^2 / tr(S^2) of the aligned probes' covariance S
    (:func:`revstats.nulls.effective_dimension`), for activations far from isotropic.
    `probes` are the probe *inputs* the torch monitor feeds the model (e.g. ``input_ids``,
    ``attention_mask``; or ``input`` for ``model(x)``), stored in the config.
    `aligned_dtype` is the dtype the aligned activations were computed or stored in (default:
    that of the `aligned` arrays, at least float32); its epsilon enters the noise floor.
    """
    if aligned_dtype is None:
        kinds = [np.asarray(x).dtype for x in aligned.values()] if isinstance(aligned, Mapping) else []
        floats = [d for d in kinds if np.issubdtype(d, np.floating)]
        aligned_dtype = "float16" if any(d.itemsize <= 2 for d in floats) else "float32"
    _dtype_eps(aligned_dtype, "aligned_dtype")
    pairs = _validate_build(witness, aligned, alpha, n_looks, every, spending, rho, null)
    layers = tuple(pairs)
    dirs, null_dim = {}, {}
    for name, (w, a) in pairs.items():
        v = geometry.reversion_direction(
            xr.DataArray(w, dims=("example", "hidden")), xr.DataArray(a, dims=("example", "hidden"))
        )
        dirs[name] = np.asarray(v.values, dtype=np.float64)
        if not np.all(np.isfinite(dirs[name])):
            raise ValueError(f"layer {name!r}: witness and aligned probe means coincide; v_rev is undefined")
        null_dim[name] = float(a.shape[1]) if null == "isotropic" else float(nulls.effective_dimension(a))
    n_ex = next(iter(pairs.values()))[1].shape[0]
    return MonitorConfig(
        layers=layers, directions=dirs, aligned={n: p[1] for n, p in pairs.items()},
        witness={n: p[0] for n, p in pairs.items()}, null_dim=null_dim, alpha=float(alpha),
        n_looks=None if n_looks is None else int(n_looks), every=int(every), spending=spending,
        rho=float(rho), null=null,
        examples=tuple(examples) if examples is not None else tuple(f"probe{i}" for i in range(n_ex)),
        position=position, probes={k: np.asarray(v) for k, v in (probes or {}).items()},
        aligned_dtype=str(aligned_dtype),
    )


_EPS = {"float64": float(np.finfo(np.float64).eps), "float32": float(np.finfo(np.float32).eps),
        "float16": float(np.finfo(np.float16).eps), "bfloat16": 2.0**-7}


def _dtype_eps(dtype: Any, name: str = "dtype") -> float:
    key = str(dtype).removeprefix("torch.")
    if key not in _EPS:
        raise ValueError(f"`{name}` must be one of {sorted(_EPS)}, got {dtype!r}")
    return _EPS[key]


def noise_robust_cosine(drift: np.ndarray, direction: np.ndarray, floor: float) -> float:
    r"""Lower bound on cos(X, v) for a drift D = X + b with an unknown noise ``||b|| <= floor``.

    Returns (<D, v> - floor) / (||D|| + floor) when <D, v> > floor (`direction` a unit
    vector), else -inf (the drift is within the noise floor: no evidence of any direction).
    With ``floor = 0`` this is the plug-in cosine (-inf for a zero drift).
    """
    d = np.asarray(drift, np.float64)
    proj = float(d @ np.asarray(direction, np.float64))
    if proj <= floor or not np.isfinite(proj):
        return -math.inf
    return (proj - floor) / (float(np.linalg.norm(d)) + floor)


# --------------------------------------------------------------------------- the monitor
def _warn_every_time(message: str, category: type[Warning], stacklevel: int) -> None:
    """`warnings.warn` honouring the user's filters, but without the per-location registry that
    shows a repeated message once per process: each run's first alarm is shown (the default
    filter) even if an earlier run in the process raised the same text."""
    import sys

    frame = sys._getframe(stacklevel)
    warnings.warn_explicit(
        message, category, frame.f_code.co_filename, frame.f_lineno,
        module=frame.f_globals.get("__name__", "revstats"), registry={},
        module_globals=frame.f_globals,
    )


@dataclass(frozen=True)
class Check:
    """One look: per layer alignment, p-value and threshold; whether it alarmed."""

    step: int
    look: int
    level: float
    alignment: Mapping[str, float]
    pvalue: Mapping[str, float]
    threshold: Mapping[str, float]
    alarm: bool
    layers_alarmed: tuple[str, ...]
    #: per layer: norm of the mean drift, and the noise floor it is tested against
    drift_norm: Mapping[str, float] = field(default_factory=dict)
    noise_floor: Mapping[str, float] = field(default_factory=dict)

    @property
    def below_floor(self) -> tuple[str, ...]:
        """Layers whose drift is within the noise floor at this look (they cannot alarm)."""
        return tuple(n for n in self.drift_norm if self.drift_norm[n] <= self.noise_floor.get(n, 0.0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "look": self.look, "level": self.level, "alarm": self.alarm,
            "alignment": dict(self.alignment), "pvalue": dict(self.pvalue),
            "threshold": dict(self.threshold), "layers_alarmed": list(self.layers_alarmed),
            "drift_norm": dict(self.drift_norm), "noise_floor": dict(self.noise_floor),
        }


class ReversionMonitor:
    """Tests each look of one run; logs, writes the store, warns on the first alarm.

    Parameters
    ----------
    config : MonitorConfig
    store : str, optional
        Zarr store path: every look's probe activations are appended as the (run, step) slab
        (created on the first look, with the config's aligned activations as step 0 and the
        witness), so the run can be analysed post hoc with the rest of revstats.
    run : str
        Run id in the store.
    writer : object with ``add_scalar(tag, value, step)``, optional
        E.g. a TensorBoard ``SummaryWriter`` (the torch monitor makes one when tensorboard is
        installed and a log dir is given).
    on_alarm : callable(Check), optional
        Called at the first alarm (after the :class:`ReversionAlarm` warning).
    warn : bool
        Emit :class:`ReversionAlarm` at the first alarm (once per monitor, i.e. per run, even
        when another run in the same process raised the same message before).
    noise_floor : "auto", float or mapping {layer: float}
        Bound beta on the norm of the numerical noise in the mean drift (see the module
        docstring). ``"auto"`` (default): 4 eps S from the config's aligned dtype until
        :meth:`estimate_noise_floor` sees start reads (the torch monitor does this at start);
        ``0`` restores the plain plug-in test (only valid if there is no numerical noise).
    """

    def __init__(
        self,
        config: MonitorConfig,
        *,
        store: str | os.PathLike[str] | None = None,
        run: str = "run0",
        writer: Any = None,
        on_alarm: Callable[[Check], Any] | None = None,
        warn: bool = True,
        noise_floor: str | float | Mapping[str, float] = "auto",
    ) -> None:
        if not isinstance(config, MonitorConfig):
            raise TypeError(f"`config` must be a MonitorConfig, got {type(config).__name__}")
        if writer is not None and not callable(getattr(writer, "add_scalar", None)):
            raise TypeError("`writer` must have an add_scalar(tag, value, step) method (e.g. SummaryWriter)")
        self.config, self.run, self.writer, self.on_alarm, self.warn = config, str(run), writer, on_alarm, warn
        self.store = None if store is None else os.fspath(store)
        self.history: list[Check] = []
        self.first_alarm: Check | None = None
        self._looks = 0
        self._warned_exhausted = False
        self._aligned_mean = {n: np.asarray(config.aligned[n], np.float64).mean(0) for n in config.layers}
        self._scale = {
            n: float(np.sqrt(np.mean(np.sum(np.asarray(config.aligned[n], np.float64) ** 2, axis=1))))
            for n in config.layers
        }
        self.noise_floor: dict[str, float] = self._initial_floor(noise_floor)
        self.noise_report: dict[str, dict[str, float]] = {}

    # ------------------------------------------------------------------ noise floor
    def _eps_floor(self, compute_dtype: Any = None) -> dict[str, float]:
        eps = _dtype_eps(self.config.aligned_dtype, "config.aligned_dtype")
        eps = max(eps, _EPS["float32"])  # probe activations are compared in float32 at best
        if compute_dtype is not None:
            eps = max(eps, _dtype_eps(compute_dtype, "compute_dtype"))
        return {n: FLOOR_EPS_FACTOR * eps * self._scale[n] for n in self.config.layers}

    def _initial_floor(self, floor: Any) -> dict[str, float]:
        layers = self.config.layers
        if isinstance(floor, str):
            if floor != "auto":
                raise ValueError(f"`noise_floor` must be 'auto', a number >= 0 or a mapping {{layer: number}}, got {floor!r}")
            return self._eps_floor()
        if isinstance(floor, Mapping):
            missing = [n for n in layers if n not in floor]
            if missing:
                raise ValueError(f"`noise_floor` has no value for layer(s) {missing}")
            values = {n: floor[n] for n in layers}
        else:
            values = {n: floor for n in layers}
        for n, v in values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not v >= 0 or not math.isfinite(v):
                raise ValueError(f"`noise_floor` for layer {n!r} must be a finite number >= 0, got {v!r}")
        return {n: float(v) for n, v in values.items()}

    def estimate_noise_floor(self, reads: Sequence[Mapping[str, Any]], *, compute_dtype: Any = None) -> dict[str, float]:
        """Set the noise floor from probe reads of the *untrained* model taken at start.

        `reads` are >= 1 reads {layer: (example, hidden)} of the same model (repeated forwards,
        different batchings). The numerical discrepancy r per layer is the largest distance
        between their probe means, and between each and the config's aligned mean -- unless
        that offset exceeds ``FLOOR_MAX_RELATIVE`` of the RMS probe norm, which is not rounding
        (the model is not the config's aligned model): then it is warned about and left out.
        Floor = max(4 eps S, 4 r); the numbers are kept in :attr:`noise_report`.
        """
        if not isinstance(reads, Sequence) or not reads:
            raise ValueError("`reads` must be a non-empty sequence of {layer: (example, hidden)} reads")
        floor = self._eps_floor(compute_dtype)
        means = [{n: v.astype(np.float64).mean(0) for n, v in self._validate_acts(0, r).items()} for r in reads]
        for n in self.config.layers:
            spread = max((float(np.linalg.norm(a[n] - b[n])) for a in means for b in means), default=0.0)
            offset = max(float(np.linalg.norm(m[n] - self._aligned_mean[n])) for m in means)
            rel = offset / self._scale[n] if self._scale[n] > 0 else math.inf
            used = spread
            if rel <= FLOOR_MAX_RELATIVE:
                used = max(used, offset)
            else:
                warnings.warn(
                    f"layer {n!r}: at start the model's probe activations differ from the config's "
                    f"aligned activations by {offset:.3g} ({rel:.1%} of a probe's norm) -- more than "
                    "rounding: the model being monitored is not the aligned model the config was "
                    "built from (or the probes/position differ). Drift is still measured from the "
                    "config's aligned activations; rebuild the config from this model if that is wrong.",
                    RevstatsWarning, stacklevel=2,
                )
            floor[n] = max(floor[n], FLOOR_START_FACTOR * used)
            self.noise_report[n] = {"spread": spread, "offset": offset, "scale": self._scale[n], "floor": floor[n]}
        self.noise_floor = floor
        log.info("noise floor per layer: %s", {n: f"{v:.3g}" for n, v in floor.items()})
        return dict(floor)

    @property
    def alarmed(self) -> bool:
        return self.first_alarm is not None

    def _validate_acts(self, step: Any, acts: Any) -> dict[str, np.ndarray]:
        if not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"`step` must be a non-negative integer training step, got {step!r}")
        if not isinstance(acts, Mapping) or not set(self.config.layers) <= set(acts):
            have = sorted(acts) if isinstance(acts, Mapping) else type(acts).__name__
            raise ValueError(f"`acts` must map every monitored layer {list(self.config.layers)} to (example, hidden); got {have}")
        out = {}
        for n in self.config.layers:
            a = as_finite_array(f"acts[{n!r}]", acts[n])
            if a.shape != np.shape(self.config.aligned[n]):
                raise ValueError(f"`acts[{n!r}]` has shape {a.shape}; the config's probes give {np.shape(self.config.aligned[n])}")
            out[n] = a
        return out

    def check(self, step: int, acts: Mapping[str, Any]) -> Check:
        """Test one look: `acts` maps each layer to the probe activations (example, hidden)."""
        values = self._validate_acts(step, acts)
        self._looks += 1
        k = self._looks
        level = self.config.level(k)
        if level == 0 and not self._warned_exhausted:
            self._warned_exhausted = True
            warnings.warn(
                f"look {k} is past the {self.config.n_looks} planned looks: the alpha budget is "
                "spent and no further alarm can fire (plan more looks, or use spending='harmonic')",
                RevstatsWarning, stacklevel=2,
            )
        al, pv, th, norms, hit = {}, {}, {}, {}, []
        for n in self.config.layers:
            drift = values[n].astype(np.float64).mean(0) - self._aligned_mean[n]
            with warnings.catch_warnings():  # zero drift (no training yet) is not an error here
                warnings.simplefilter("ignore", DegenerateDataWarning)
                # the kernel of revstats.geometry.alignment, without the labelled wrapper (per look)
                a = float(_np_geometry.cosine(drift, self.config.directions[n]))
            robust = noise_robust_cosine(drift, self.config.directions[n], self.noise_floor[n])
            p = float(self.config.null_law(n).sf(robust)) if np.isfinite(robust) else 1.0
            al[n], pv[n], th[n], norms[n] = a, p, self.config.threshold(k, n), float(np.linalg.norm(drift))
            if level > 0 and p <= level:
                hit.append(n)
        chk = Check(int(step), k, level, al, pv, th, bool(hit), tuple(hit), norms, dict(self.noise_floor))
        self.history.append(chk)
        self._log(chk)
        if self.store is not None:
            self._write(int(step), values)
        if chk.alarm and self.first_alarm is None:
            self.first_alarm = chk
            msg = (
                f"reversion detected at step {step} (look {k}): layer(s) {', '.join(hit)} drift toward "
                f"the pre-alignment witness, alignment {', '.join(f'{al[n]:.3f}' for n in hit)} with "
                f"p <= {level:.2e} (alpha={self.config.alpha} spent over looks, {self.config.spending}; "
                f"run {self.run!r})"
            )
            log.info(msg)
            if self.warn:
                _warn_every_time(msg, ReversionAlarm, stacklevel=2)
            if self.on_alarm is not None:
                self.on_alarm(chk)
        return chk

    def _log(self, chk: Check) -> None:
        if chk.look == 1 and chk.below_floor:
            log.info("step %d: drift within the noise floor at %s (no evidence yet)", chk.step, ", ".join(chk.below_floor))
        for n in self.config.layers:
            log.info("step %d look %d %s: alignment %.4f p %.3g (level %.2e)", chk.step, chk.look, n, chk.alignment[n], chk.pvalue[n], chk.level)
            if self.writer is not None:
                self.writer.add_scalar(f"revstats/alignment/{n}", chk.alignment[n], chk.step)
                self.writer.add_scalar(f"revstats/neglog10_p/{n}", -math.log10(max(chk.pvalue[n], 1e-300)), chk.step)
        if self.writer is not None:
            self.writer.add_scalar("revstats/alarm", float(self.alarmed or chk.alarm), chk.step)

    def _write(self, step: int, values: Mapping[str, np.ndarray]) -> None:
        from revstats.store import create_store, open_writer

        if self.store is None:
            return
        store = os.fspath(self.store)
        cfg = self.config
        slab = np.stack([values[n] for n in cfg.layers])
        if not os.path.exists(store):
            hidden = {np.shape(cfg.aligned[n])[1] for n in cfg.layers}
            if len(hidden) != 1:
                raise RevstatsError("the store needs one hidden size for all monitored layers; monitor them in separate stores")
            w = create_store(
                store, runs=[self.run], layers=list(cfg.layers), examples=list(cfg.examples),
                hidden=hidden.pop(), behavior=False, source="capture",
                provenance={"tool": "revstats.monitor", "alpha": cfg.alpha, "spending": cfg.spending, "every": cfg.every},
            )
            with w:
                w.write_witness(np.stack([cfg.witness[n] for n in cfg.layers]))
                w.write_slab(self.run, 0, np.stack([cfg.aligned[n] for n in cfg.layers]))
        with open_writer(store) as w:
            if not w.has_slab(self.run, step):
                w.write_slab(self.run, step, slab)

    def summary(self) -> dict[str, Any]:
        """Looks made, first alarm (step, look) or None, and each look's numbers."""
        return {
            "looks": self._looks,
            "alarm_step": None if self.first_alarm is None else self.first_alarm.step,
            "alarm_look": None if self.first_alarm is None else self.first_alarm.look,
            "checks": [c.as_dict() for c in self.history],
        }
