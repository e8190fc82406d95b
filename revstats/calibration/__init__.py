"""Calibration dashboard: coverage of the intervals and type-I error of the nulls and the
monitor, by simulation, checked with binomial tests (what `revstats calibrate` runs).

Each study draws many data sets from a model where the truth is known and counts how often
the procedure is right (an interval covers the truth) or wrong (a test rejects a true null).
A count of k out of n is then tested against the nominal rate with an exact binomial test
(scipy.stats.binomtest); the expectation of each row says which test:

* ``nominal``      - the rate should be the nominal one: two-sided test, fail if p < 0.001;
* ``conservative`` - coverage at least nominal: one-sided test of "below", fail if p < 0.001;
* ``at most``      - an error rate at most alpha (union-bound procedures such as the monitor):
  one-sided test of "above", fail if p < 0.001;
* ``inflated``     - a known failure shown for contrast (an isotropic null applied to
  anisotropic drift): the excess must be significant, p < 1e-6;
* ``undercover``   - a known under-coverage shown for contrast (Wald at small n): the
  shortfall must be significant, p < 1e-6;
* ``report``       - an approximation with no exact guarantee: reported, not tested.

Interval rows are those of ``revstats.calibration._coverage`` (the intervals' own coverage study, also
asserted by tests/calibration/test_interval_coverage.py and written to docs/coverage.md by
``python -m benchmarks.coverage_table``). Monitor rows need
``revstats.monitor``. Every row has a fixed seed, so the table is reproducible.
"""

from __future__ import annotations

import functools
import importlib.util
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from revstats._lazy import scipy_stats as stats

EXPECTATIONS = ("nominal", "conservative", "at most", "inflated", "undercover", "report")


@dataclass(frozen=True)
class Study:
    group: str
    name: str
    regime: str
    seed: int
    expect: str
    target: float  # nominal coverage or alpha
    metric: str  # "coverage" or "type-I error"
    run: Callable[[int, int], int]  # (n_sets, seed) -> count of covers / rejections
    full: int
    quick: int


@dataclass(frozen=True)
class Result:
    study: Study
    n: int
    k: int
    pvalue: float
    ok: bool | None
    seconds: float

    @property
    def rate(self) -> float:
        return self.k / self.n


def binomial_check(expect: str, k: int, n: int, target: float) -> tuple[float, bool | None]:
    """(p-value, passed) of the binomial test the row's expectation calls for."""
    p, ok = _binomial_check(expect, k, n, target)
    return float(p), None if ok is None else bool(ok)


def _binomial_check(expect: str, k: int, n: int, target: float) -> tuple[float, bool | None]:
    if expect == "nominal":
        p = stats.binomtest(k, n, target).pvalue
        return p, p > 1e-3
    if expect == "conservative":
        p = stats.binomtest(k, n, target, alternative="less").pvalue
        return p, p > 1e-3
    if expect == "at most":
        p = stats.binomtest(k, n, target, alternative="greater").pvalue
        return p, p > 1e-3
    if expect == "inflated":
        p = stats.binomtest(k, n, target, alternative="greater").pvalue
        return p, p < 1e-6
    if expect == "undercover":
        p = stats.binomtest(k, n, target, alternative="less").pvalue
        return p, p < 1e-6
    return stats.binomtest(k, n, target).pvalue, None


# --------------------------------------------------------------------------- nulls
def _gaussian_cosines(cov_sqrt: np.ndarray, v: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    g = rng.standard_normal((n, cov_sqrt.shape[0])) @ cov_sqrt
    return (g @ v) / (np.linalg.norm(g, axis=1) * np.linalg.norm(v))


def _anisotropic(d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Σ with eigenvalues 1/i (i = 1..d) in a random basis; returns (Σ^{1/2}, Σ)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    lam = 1.0 / np.arange(1, d + 1)
    return (q * np.sqrt(lam)) @ q.T, (q * lam) @ q.T


def isotropic_null_rejections(d: int, alpha: float, n: int, seed: int) -> int:
    """Isotropic drift (the null holds exactly): reject when the exact one-sided p <= alpha."""
    from revstats.nulls import isotropic_cosine

    rng = np.random.default_rng(seed)
    v = rng.standard_normal(d)
    c = _gaussian_cosines(np.eye(d), v, n, rng)
    return int(np.sum(isotropic_cosine(d).sf(c) <= alpha))


def misapplied_isotropic_rejections(d: int, alpha: float, n: int, seed: int) -> int:
    """Anisotropic drift, v along its top axis, tested with the isotropic law in d."""
    from revstats.nulls import isotropic_cosine

    root, cov = _anisotropic(d, seed)
    v = np.linalg.eigh(cov)[1][:, -1]
    c = _gaussian_cosines(root, v, n, np.random.default_rng(seed + 1))
    return int(np.sum(isotropic_cosine(d).sf(c) <= alpha))


def _direction(cov: np.ndarray, which: str, seed: int) -> np.ndarray:
    if which == "top":
        return np.linalg.eigh(cov)[1][:, -1]
    out: np.ndarray = np.asarray(np.random.default_rng(seed + 3).standard_normal(cov.shape[0]))
    return out


def effective_null_rejections(d: int, alpha: float, n: int, seed: int, which: str = "random") -> int:
    """Anisotropic drift tested with the effective-dimension isotropic law (v random or top axis)."""
    from revstats.nulls import effective_isotropic_cosine

    root, cov = _anisotropic(d, seed)
    v = _direction(cov, which, seed)
    c = _gaussian_cosines(root, v, n, np.random.default_rng(seed + 1))
    return int(np.sum(effective_isotropic_cosine(cov, kind="cov").sf(c) <= alpha))


def covariance_matched_rejections(d: int, alpha: float, n: int, seed: int, which: str = "top") -> int:
    """Anisotropic drift tested with the covariance-matched Monte Carlo null."""
    from revstats.nulls import covariance_matched_cosine

    root, cov = _anisotropic(d, seed)
    v = _direction(cov, which, seed)
    null = covariance_matched_cosine(cov, v, kind="cov", n_draws=200_000, rng=seed + 2)
    c = _gaussian_cosines(root, v, n, np.random.default_rng(seed + 1))
    return int(np.sum(np.asarray(null.pvalue(c)) <= alpha))


def permutation_rejections(paired: bool, alpha: float, n: int, seed: int, n_perm: int = 99) -> int:
    """Witness and aligned probes exchangeable (no reversion direction): permutation p <= alpha."""
    from revstats.nulls import permutation_cosine

    rng = np.random.default_rng(seed)
    k = 0
    for _ in range(n):
        if paired:  # the same probes in both sets: only swaps within a probe are exchangeable
            base = rng.standard_normal((10, 8)) * 3.0
            w, h = base + rng.standard_normal((10, 8)), base + rng.standard_normal((10, 8))
        else:
            w, h = rng.standard_normal((10, 8)) * 3.0, rng.standard_normal((13, 8)) * 3.0
        drift = rng.standard_normal(8)
        v = w.mean(axis=0) - h.mean(axis=0)
        observed = drift @ v / (np.linalg.norm(drift) * np.linalg.norm(v))
        null = permutation_cosine(w, h, drift, paired=paired, n_permutations=n_perm, rng=rng)
        k += float(null.pvalue(observed)) <= alpha
    return int(k)


# --------------------------------------------------------------------------- alignment
@dataclass(frozen=True)
class CrossedDesign:
    """Runs x probes design with a known cos(D, W) (content cancels in the paired differences).

    Run r, probe i: d_ri = D + eps_ri - alpha_i (drift minus aligned), w_i = W + eta_i - alpha_i
    (witness minus aligned; eta_ri with ``per_run_witness``). eps ~ N(0, I) per run and probe;
    eta ~ N(0, witness_noise^2 I) is the witness's probe noise, shared by every run unless
    ``per_run_witness``; alpha ~ N(0, aligned_noise^2 I) is the shared aligned slab's.
    """

    true_cos: float = 0.6
    d: int = 4096
    runs: int = 24
    probes: int = 32
    drift_norm: float = 9.85
    witness_norm: float = 9.85
    witness_noise: float = 1.0
    aligned_noise: float = 0.0
    per_run_witness: bool = False

    def label(self) -> str:
        wit = ("noiseless witness" if self.witness_noise == 0 else
               f"witness noise sd {self.witness_noise:g}" + (" per run" if self.per_run_witness
                                                             else " shared"))
        extra = f", aligned noise sd {self.aligned_noise:g}" if self.aligned_noise else ""
        return (f"d={self.d}, {self.runs} runs x {self.probes} probes, true cos {self.true_cos:g}, "
                f"{wit}{extra}")


def _design_vectors(g: CrossedDesign) -> tuple[np.ndarray, np.ndarray]:
    u = np.zeros(g.d)
    u[0] = 1.0
    perp = np.zeros(g.d)
    perp[1] = 1.0
    drift = g.drift_norm * (g.true_cos * u + np.sqrt(max(1.0 - g.true_cos**2, 0.0)) * perp)
    return drift, g.witness_norm * u


def _wishart_identity(n: int, df: int, size: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Gram matrices of n iid N(0, I_df) vectors, ``size + (n, n)``, by Bartlett's decomposition."""
    lower = np.tril(rng.standard_normal((*size, n, n)), -1)
    diag = np.sqrt(rng.chisquare(df - np.arange(n), size=(*size, n)))
    lower = lower + diag[..., None] * np.eye(n)
    return lower @ np.swapaxes(lower, -1, -2)


def _crossed_grams_reduced(g: CrossedDesign, m: int, rng: np.random.Generator) -> np.ndarray:
    """The Gram matrices of `m` experiments without forming the runs' d-dimensional noise.

    Exact in distribution: with S the span of the signal and the shared noise vectors
    (witness eta_i, aligned alpha_i; dimension k), each run's noise is its N(0, I_k) coordinates
    in an orthonormal basis of S plus a part orthogonal to S, which enters only <eps_i, eps_j>
    and whose Gram matrix is Wishart(I_n, d - k) (Bartlett). Needs d - k >= n.
    """
    drift, wit = _design_vectors(g)
    n, r = g.probes, g.runs
    out = np.empty((m, r, n, n, 3))
    for e in range(m):
        alpha = g.aligned_noise * rng.standard_normal((n, g.d)) if g.aligned_noise else None
        eta = g.witness_noise * rng.standard_normal((n, g.d)) if g.witness_noise else None
        cols = [drift, wit] + [x for x in (eta, alpha) if x is not None for x in x]
        q, _ = np.linalg.qr(np.stack(cols, axis=1))  # (d, k)
        k = q.shape[1]
        c_drift, c_wit = q.T @ drift, q.T @ wit
        c_alpha = alpha @ q if alpha is not None else np.zeros((n, k))
        c_eta = eta @ q if eta is not None else np.zeros((n, k))
        w = c_wit + c_eta - c_alpha  # (n, k): the witness differences lie in S
        d = c_drift + rng.standard_normal((r, n, k)) - c_alpha  # (r, n, k) + orthogonal part
        out[e, :, :, :, 0] = d @ np.swapaxes(d, -1, -2) + _wishart_identity(n, g.d - k, (r,), rng)
        out[e, :, :, :, 1] = d @ w.T
        out[e, :, :, :, 2] = w @ w.T
    return out


def crossed_products(design: CrossedDesign, sets: int, rng: np.random.Generator,
                     batch: int = 4, form: str = "gram", reduced: bool | None = None) -> np.ndarray:
    """Probe Gram matrices ``(sets, runs, probes, probes, 3)`` (or, ``form="jackknife"``, the
    per-probe products ``(sets, runs, probes, 7)``) of `sets` simulated experiments.

    ``reduced`` (default: whenever it applies, i.e. Gram form, one shared witness and
    d >= 2 n + 2 + n) draws the same distribution without d-dimensional run noise
    (``_crossed_grams_reduced``); otherwise the activations' differences are drawn directly.
    """
    from revstats.geometry._np_alignment_ci import GRAMS, PRODUCTS, probe_grams, probe_products

    g = design
    can_reduce = form == "gram" and not g.per_run_witness and g.d >= 3 * g.probes + 2
    if reduced is None:
        reduced = can_reduce
    if reduced:
        if not can_reduce:
            raise ValueError("the reduced simulation needs the Gram form, a shared witness and "
                             "d >= 3 probes + 2")
        return _crossed_grams_reduced(g, sets, rng)
    drift, wit = _design_vectors(g)
    kernel = probe_grams if form == "gram" else probe_products
    tail = (g.probes, len(GRAMS)) if form == "gram" else (len(PRODUCTS),)
    out = np.empty((sets, g.runs, g.probes, *tail))
    for start in range(0, sets, batch):
        m = min(batch, sets - start)
        alpha = g.aligned_noise * rng.standard_normal((m, 1, g.probes, g.d)) if g.aligned_noise else 0.0
        d = drift + rng.standard_normal((m, g.runs, g.probes, g.d)) - alpha
        eta_shape = (m, g.runs if g.per_run_witness else 1, g.probes, g.d)
        w = wit + g.witness_noise * rng.standard_normal(eta_shape) - alpha if g.witness_noise \
            else np.broadcast_to(wit - alpha, eta_shape)
        out[start:start + m] = kernel(d, w)
    return out


def alignment_interval_hits(design: CrossedDesign, method: str, sets: int, seed: int,
                            confidence: float = 0.95, form: str = "gram") -> int:
    """How many of `sets` experiments' intervals cover the truth.

    ``method``: ``"crossed"`` (the crossed-design interval of the cross-fitted alignment, target
    cos(D, W)), ``"t"`` (the Student-t interval over runs of the same estimates, which treats
    v_rev as fixed), ``"crossed-plugin"`` (the plug-in's crossed interval; its target, the
    expected plug-in cosine, is the mean of as many independent experiments from seed + 1).
    """
    from revstats.geometry._np_alignment_ci import crossed_interval, crossed_interval_gram

    interval = crossed_interval_gram if form == "gram" else crossed_interval
    rng = np.random.default_rng(seed)
    res = interval(crossed_products(design, sets, rng, form=form), confidence)  # (sets, 2, fields)
    if method == "crossed":
        est, low, high = res[:, 1, 0], res[:, 1, 1], res[:, 1, 2]
        truth = design.true_cos
    elif method == "t":
        est, se, r = res[:, 1, 0], res[:, 1, 4], res[:, 1, 8]
        q = stats.t.ppf(0.5 + confidence / 2, r - 1)
        low, high = est - q * se, est + q * se
        truth = design.true_cos
    elif method == "crossed-plugin":
        low, high = res[:, 0, 1], res[:, 0, 2]
        ref = interval(crossed_products(design, sets, np.random.default_rng(seed + 1), form=form))
        truth = float(np.nanmean(ref[:, 0, 0]))
    else:
        raise ValueError(f"`method` must be 'crossed', 't' or 'crossed-plugin', got {method!r}")
    return int(np.sum((low <= truth) & (truth <= high)))


AUDIT = CrossedDesign()
ALIGNMENT_DESIGNS = (
    CrossedDesign(true_cos=0.6),
    CrossedDesign(true_cos=0.0),
    CrossedDesign(true_cos=0.6, aligned_noise=0.5),
    CrossedDesign(true_cos=0.6, witness_noise=0.0),
    CrossedDesign(true_cos=0.6, per_run_witness=True),
)
# near |cos| = 1 the cross-fitted ratio's fluctuation is mostly second order (a centred
# chi-square mixture), and the normal-theory interval under-covers: shown, not claimed
ALIGNMENT_HIGH = CrossedDesign(true_cos=0.9, aligned_noise=0.5)


def _alignment_studies() -> list[Study]:
    # per-run witnesses cannot use the reduced simulation (d-dimensional draws: fewer sets)
    # noiseless witness: no shared term, and its estimate is clipped at 0, so the interval can
    # only be conservative there
    s = [Study("intervals", "alignment, crossed (debiased)", g.label(), 40 + i,
               "conservative" if g.witness_noise == 0 else "nominal",
               0.95, "coverage", functools.partial(alignment_interval_hits, g, "crossed"),
               600 if g.per_run_witness else 2000, 100 if g.per_run_witness else 300)
         for i, g in enumerate(ALIGNMENT_DESIGNS)]
    s.append(Study("intervals", "alignment, crossed (debiased)", ALIGNMENT_HIGH.label(), 45,
                   "report", 0.95, "coverage",
                   functools.partial(alignment_interval_hits, ALIGNMENT_HIGH, "crossed"), 2000, 300))
    s.append(Study("intervals", "alignment, crossed (plug-in)", AUDIT.label() +
                   "; target E[plug-in] from as many independent sets", 46, "nominal", 0.95,
                   "coverage", functools.partial(alignment_interval_hits, AUDIT, "crossed-plugin"),
                   2000, 300))
    s.append(Study("intervals", "alignment, t over runs (old default)", AUDIT.label(), 40,
                   "undercover", 0.95, "coverage",
                   functools.partial(alignment_interval_hits, AUDIT, "t"), 2000, 300))
    return s


# --------------------------------------------------------------------------- monitor
def monitor_false_alarms(spending: str, n_looks: int, n: int, seed: int, hidden: int = 24) -> int:
    """Runs whose drift is an isotropic random walk plus probe noise: count runs with an alarm."""
    from revstats.monitor import ReversionMonitor, build_config

    rng = np.random.default_rng(seed)
    aligned = rng.normal(size=(6, hidden))
    witness = aligned + rng.normal(size=hidden)
    cfg = build_config({"L": witness}, {"L": aligned}, alpha=0.05, n_looks=n_looks,
                       spending=spending)  # type: ignore[arg-type]  # checked by build_config
    alarms = 0
    for _ in range(n):
        mon = ReversionMonitor(cfg, warn=False)
        walk = np.zeros(hidden)
        for k in range(1, n_looks + 1):
            walk += rng.normal(size=hidden)
            mon.check(k, {"L": aligned + walk + 0.3 * rng.normal(size=(6, hidden))})
        alarms += mon.alarmed
    return alarms


NOISE_REGIMES = ("never trained", "warm-up", "frozen layer")


def monitor_noise_false_alarms(regime: str, n: int, seed: int, *, hidden: int = 24, n_looks: int = 20,
                               noise_floor: str | float = "auto") -> int:
    """Runs of the monitor near zero drift, where float rounding dominates: count runs with an alarm.

    Every run's reads carry a deterministic numerical discrepancy b of norm rho = 1e-6 S along
    v_rev (the worst direction: today's plug-in test alarms at once), plus a fresh rounding
    jitter of norm 0.1 rho per read. The monitor estimates its noise floor from three start
    reads of the untrained model (:meth:`ReversionMonitor.estimate_noise_floor`), then looks
    `n_looks` times. Regimes (no true reversion in any):

    * ``"never trained"``: the model never moves (LoRA at init, a zero learning rate);
    * ``"warm-up"``: an isotropic random walk whose step grows linearly over the first 10
      looks from the size of the noise (the drift crosses the floor during warm-up);
    * ``"frozen layer"``: two layers, one frozen (noise only), one drifting isotropically.

    ``noise_floor=0`` runs the monitor without a floor (the previous behavior, for contrast).
    """
    from revstats.monitor import ReversionMonitor, build_config

    if regime not in NOISE_REGIMES:
        raise ValueError(f"`regime` must be one of {NOISE_REGIMES}, got {regime!r}")
    rng = np.random.default_rng(seed)
    layers = ("L0", "L1") if regime == "frozen layer" else ("L0",)
    aligned = {name: rng.normal(size=(6, hidden)).astype(np.float32) for name in layers}
    witness = {name: aligned[name] + rng.normal(size=hidden) for name in layers}
    cfg = build_config(witness, aligned, alpha=0.05, n_looks=n_looks)
    scale = {name: float(np.sqrt(np.mean(np.sum(aligned[name].astype(np.float64) ** 2, axis=1)))) for name in layers}
    rho = {name: 1e-6 * scale[name] for name in layers}
    frozen = {"never trained": set(layers), "warm-up": set(), "frozen layer": {"L0"}}[regime]

    def jitter(name: str) -> np.ndarray:
        u = rng.normal(size=hidden)
        return 0.1 * rho[name] * u / np.linalg.norm(u)

    bias = {name: rho[name] * cfg.directions[name] for name in layers}  # the worst direction

    def read(extra: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: aligned[name] + bias[name] + jitter(name) + extra[name] for name in layers}

    alarms = 0
    for _ in range(n):
        mon = ReversionMonitor(cfg, warn=False, noise_floor=noise_floor)

        zero = {name: np.zeros(hidden) for name in layers}
        if noise_floor == "auto":
            mon.estimate_noise_floor([read(zero), read(zero), read(zero)])
        walk = {name: np.zeros(hidden) for name in layers}
        for k in range(1, n_looks + 1):
            for name in layers:
                if name in frozen:
                    continue
                # step size grows from ~rho (the noise) to 10 rho over the first 10 looks
                sigma = rho[name] * min(k, 10) / np.sqrt(hidden)
                walk[name] = walk[name] + sigma * rng.normal(size=hidden)
            mon.check(k, read(walk))
        alarms += mon.alarmed
    return alarms


# --------------------------------------------------------------------------- the table
def _interval_studies() -> list[Study]:
    from revstats.calibration._coverage import (
        ROWS,  # lazy: imports the interval modules only when used
    )

    out = []
    for row in ROWS:
        out.append(Study("intervals", row.name, row.regime, row.seed, row.expect, 0.95, "coverage",
                         row.run, full=2000, quick=300))
    return out + _alignment_studies()


def _isotropic_row(alpha: float, n: int, seed: int) -> int:
    return isotropic_null_rejections(64, alpha, n, seed)


def _monitor_row(spending: str, n_looks: int, n: int, seed: int) -> int:
    return monitor_false_alarms(spending, n_looks, n, seed)


def _null_studies() -> list[Study]:
    s: list[Study] = []
    for alpha in (0.05, 0.01):
        s.append(Study("nulls", f"isotropic exact, alpha={alpha}", "isotropic Gaussian drift, d=64", 21,
                       "nominal", alpha, "type-I error", functools.partial(_isotropic_row, alpha),
                       20_000, 4000))
    s += [
        Study("nulls", "isotropic exact, misapplied", "anisotropic drift (eigenvalues 1/i), v = top axis, d=64",
              22, "inflated", 0.05, "type-I error",
              lambda n, z: misapplied_isotropic_rejections(64, 0.05, n, z), 20_000, 4000),
        Study("nulls", "effective-dimension isotropic (approximate)",
              "anisotropic drift (eigenvalues 1/i), random v, d=64",
              23, "report", 0.05, "type-I error",
              lambda n, z: effective_null_rejections(64, 0.05, n, z, "random"), 20_000, 4000),
        Study("nulls", "effective-dimension isotropic (approximate)",
              "anisotropic drift (eigenvalues 1/i), v = top axis, d=64",
              23, "inflated", 0.05, "type-I error",
              lambda n, z: effective_null_rejections(64, 0.05, n, z, "top"), 20_000, 4000),
        Study("nulls", "covariance-matched MC", "anisotropic drift (eigenvalues 1/i), random v, d=64",
              24, "nominal", 0.05, "type-I error",
              lambda n, z: covariance_matched_rejections(64, 0.05, n, z, "random"), 20_000, 4000),
        Study("nulls", "covariance-matched MC", "anisotropic drift (eigenvalues 1/i), v = top axis, d=64",
              24, "nominal", 0.05, "type-I error",
              lambda n, z: covariance_matched_rejections(64, 0.05, n, z, "top"), 20_000, 4000),
        Study("nulls", "permutation, paired", "exchangeable witness/aligned per probe, 10 probes, d=8, B=99",
              25, "nominal", 0.05, "type-I error",
              lambda n, z: permutation_rejections(True, 0.05, n, z), 2000, 300),
        Study("nulls", "permutation, unpaired", "exchangeable rows, 10 + 13 probes, d=8, B=99",
              26, "nominal", 0.05, "type-I error",
              lambda n, z: permutation_rejections(False, 0.05, n, z), 2000, 300),
    ]
    return s


def _monitor_studies() -> list[Study]:
    if importlib.util.find_spec("revstats.monitor") is None:
        return []
    s = [Study("monitor", f"false alarms, {sp} spending", "isotropic random-walk drift, 20 looks, hidden=24",
               30 + i, "at most", 0.05, "type-I error (any alarm per run)",
               functools.partial(_monitor_row, sp, 20), 1500, 150)
         for i, sp in enumerate(("bonferroni", "power", "harmonic"))]
    s.append(Study("monitor", "false alarms, one look", "isotropic random-walk drift, 1 look, hidden=24",
                   33, "nominal", 0.05, "type-I error (any alarm per run)",
                   lambda n, z: monitor_false_alarms("bonferroni", 1, n, z), 3000, 400))
    for i, regime in enumerate(NOISE_REGIMES):
        s.append(Study("monitor", f"false alarms near zero drift: {regime}",
                       "rounding noise (1e-6 S) along v_rev + isotropic drift, floor from 3 start reads, 20 looks",
                       34 + i, "at most", 0.05, "type-I error (any alarm per run)",
                       functools.partial(_noise_row, regime), 1500, 150))
    s.append(Study("monitor", "near zero drift without the floor (noise_floor=0)",
                   "warm-up regime, plug-in test (the behavior before the floor)", 37, "inflated", 0.05,
                   "type-I error (any alarm per run)",
                   functools.partial(_noise_row, "warm-up", noise_floor=0.0), 1500, 150))
    return s


def _noise_row(regime: str, n: int, seed: int, noise_floor: str | float = "auto") -> int:
    return monitor_noise_false_alarms(regime, n, seed, noise_floor=noise_floor)


def studies(groups: tuple[str, ...] = ("intervals", "nulls", "monitor")) -> list[Study]:
    """The dashboard's rows for `groups` (rows whose module is unavailable are left out)."""
    table = {"intervals": _interval_studies, "nulls": _null_studies, "monitor": _monitor_studies}
    return [s for g in groups for s in table[g]()]


def run_study(study: Study, *, quick: bool = False) -> Result:
    n = study.quick if quick else study.full
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k = int(study.run(n, study.seed))
    p, ok = binomial_check(study.expect, k, n, study.target)
    return Result(study, n, k, float(p), ok, time.perf_counter() - t0)


def render_markdown(results: list[Result], *, command: str, missing: list[str]) -> str:
    from revstats.intervals import proportion_ci

    lines = [
        "# Calibration dashboard",
        "",
        f"Generated by `{command}`. Every row simulates data sets where the truth is known, counts",
        "how often an interval covers it (coverage) or a test rejects a true null (type-I error), and",
        "tests the count against the target with an exact binomial test (see",
        "`revstats/calibration/__init__.py`): *nominal* = two-sided, fail if p < 0.001; *conservative* =",
        "coverage not below target, *at most* = error rate not above target (one-sided, fail if",
        "p < 0.001); *inflated* = a known failure shown for contrast, the excess must be significant",
        "(p < 1e-6); *report* = an approximation without an exact guarantee, reported only.",
        "Seeds are fixed per row (numpy `default_rng(seed)`).",
        "",
    ]
    if missing:
        lines += [f"Not run here: {', '.join(missing)}.", ""]
    for group in ("intervals", "nulls", "monitor"):
        rows = [r for r in results if r.study.group == group]
        if not rows:
            continue
        lines += [
            f"## {group}",
            "",
            "| procedure | regime | metric | target | data sets | observed | 95% CI (Wilson) | expect | binomial p | ok |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            ci = proportion_ci(r.k, r.n)
            ok = "—" if r.ok is None else ("**NO**" if not r.ok else (
                "yes (failure shown as expected)" if r.study.expect in ("inflated", "undercover") else "yes"))
            lines.append(
                f"| {r.study.name} | {r.study.regime} | {r.study.metric} | {r.study.target:g} | {r.n} | "
                f"{r.rate:.4f} | {ci.low:.4f}–{ci.high:.4f} | {r.study.expect} | {r.pvalue:.2g} | {ok} |"
            )
        lines.append("")
    failed = [r.study.name for r in results if r.ok is False]
    lines.append(f"{len(results)} rows, {sum(r.ok is True for r in results)} pass, "
                 f"{len(failed)} fail{': ' + ', '.join(failed) if failed else ''}, "
                 f"{sum(r.ok is None for r in results)} reported only.")
    return "\n".join(lines) + "\n"
