"""Monitor calibration: the whole-run false-alarm rate is <= alpha under the null (binomial
test), and the detection delay under the simulator's paper preset."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from revstats.calibration import monitor_false_alarms
from revstats.monitor import ReversionMonitor, build_config

pytestmark = pytest.mark.slow


def null_alarm_rate(n_runs: int, *, spending: str, n_looks: int, hidden: int = 24, seed: int = 0) -> tuple[int, int]:
    """Runs whose drift is an isotropic random walk plus fresh probe noise: no direction is
    preferred, so every look's p-value is exactly uniform; count runs with any alarm (the same
    study `revstats calibrate` runs)."""
    return monitor_false_alarms(spending, n_looks, n_runs, seed, hidden), n_runs


@pytest.mark.parametrize("spending", ["bonferroni", "power", "harmonic"])
def test_false_alarm_rate_at_most_alpha(spending):
    k, n = null_alarm_rate(1500, spending=spending, n_looks=20)
    # H0: rate <= 0.05; reject (fail) if the observed count is implausibly high
    assert stats.binomtest(k, n, 0.05, alternative="greater").pvalue > 0.001, (k, n)


def test_false_alarm_rate_is_not_vacuous():
    """With a single look the rule is exact: the alarm rate is alpha, not far below it."""
    k, n = null_alarm_rate(3000, spending="bonferroni", n_looks=1, seed=3)
    assert stats.binomtest(k, n, 0.05).pvalue > 0.001, (k, n)


@pytest.mark.parametrize("regime", ["never trained", "warm-up", "frozen layer"])
def test_false_alarm_rate_near_zero_drift(regime):
    """Drift at the float-rounding level (LoRA at init, warm-up, a frozen layer), with the
    rounding discrepancy pointing along v_rev: the noise floor keeps the rate <= alpha."""
    from revstats.calibration import monitor_noise_false_alarms

    n = 1500
    k = monitor_noise_false_alarms(regime, n, seed=34)
    assert stats.binomtest(k, n, 0.05, alternative="greater").pvalue > 0.001, (regime, k, n)


def test_near_zero_drift_without_floor_is_inflated():
    from revstats.calibration import monitor_noise_false_alarms

    n = 600
    k = monitor_noise_false_alarms("warm-up", n, seed=37, noise_floor=0.0)
    assert stats.binomtest(k, n, 0.05, alternative="greater").pvalue < 1e-6, k


def test_warm_up_keeps_power_after_the_floor():
    """The floor is not a mute: a warm-up run that then reverts is caught."""
    from revstats.monitor import ReversionMonitor, build_config

    rng = np.random.default_rng(38)
    caught = 0
    for _ in range(200):
        aligned = rng.normal(size=(6, 24)).astype(np.float32)
        shift = rng.normal(size=24)
        cfg = build_config({"L": aligned + shift}, {"L": aligned}, n_looks=20)
        mon = ReversionMonitor(cfg, warn=False)
        rho = 1e-6 * np.sqrt(np.mean(np.sum(aligned.astype(np.float64) ** 2, axis=1)))
        mon.estimate_noise_floor([{"L": aligned + rho * cfg.directions["L"]}] * 3)
        for k in range(1, 21):  # warm-up ramp toward the witness, from the noise level
            frac = rho * min(k, 10) * k / np.linalg.norm(shift)
            mon.check(k, {"L": aligned + frac * shift + 0.3 * rho * rng.normal(size=(6, 24))})
        caught += mon.alarmed
    assert caught >= 190, caught


def detection_delays(preset: str = "paper-main-track", runs: int = 8, hidden: int = 4096, every: int = 1, looks: int = 100):
    sims = pytest.importorskip("revstats.sims.simulate")
    cfg = sims.config_for(preset, runs=runs, hidden=hidden, overrides={"save_steps": tuple(range(0, looks * every + 1, every))})
    ds = sims.simulate(cfg, seed=11)
    layer = str(ds["layer"].values[0])
    out = {}
    for arm in ("control", "blocked"):
        delays = []
        for r in [str(x) for x in ds["run"].values if str(ds["arm"].sel(run=x).values) == arm]:
            acts = np.asarray(ds["acts"].sel(run=r, layer=layer))
            mcfg = build_config({layer: np.asarray(ds["witness"].sel(layer=layer))}, {layer: acts[0]}, n_looks=looks, every=every)
            mon = ReversionMonitor(mcfg, warn=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for i, step in enumerate(ds["step"].values[1:], start=1):
                    mon.check(int(step), {layer: acts[i]})
                    if mon.alarmed:
                        break
            delays.append(None if not mon.alarmed else mon.first_alarm.step)
        out[arm] = delays
    return out


def test_fires_on_paper_preset_and_not_on_blocked_arm():
    out = detection_delays(runs=4, hidden=1024, looks=30)
    assert all(d is not None and d <= 5 for d in out["control"]), out
    assert all(d is None for d in out["blocked"]), out


if __name__ == "__main__":  # python -m tests.calibration.test_monitor_false_alarm: the numbers in docs
    for sp in ("bonferroni", "power", "harmonic"):
        print(sp, null_alarm_rate(2000, spending=sp, n_looks=20))
    from revstats.calibration import monitor_noise_false_alarms

    for regime in ("never trained", "warm-up", "frozen layer"):
        print(regime, monitor_noise_false_alarms(regime, 1500, 34), "/ 1500 runs",
              "(no floor:", monitor_noise_false_alarms(regime, 300, 37, noise_floor=0.0), "/ 300)")
    print("paper preset delays (steps, every=1, 100 looks):", detection_delays())
