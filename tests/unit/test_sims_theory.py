"""Theory vs simulation for the flat, quadratic, linear case: exact moments within MC error."""

from __future__ import annotations

import numpy as np
import pytest

from revstats.sims import theory
from revstats.sims.model import build_model
from revstats.sims.simulate import (
    config_for,
    draw_noise,
    experiment_seeds,
    run_layout,
    trajectories,
)

N_RUNS = 300
STEPS = (1, 2, 5, 20, 60)


@pytest.fixture(scope="module")
def mc():
    cfg = config_for("theory-flat", runs=N_RUNS, hidden=64, steps=60)
    ids, _, sign = run_layout(cfg)
    ms, rs = experiment_seeds(11, len(ids))
    model = build_model(cfg, ms)
    xi, _ = draw_noise(cfg, rs, 1)
    th = trajectories(model, sign, xi, tuple(range(cfg.steps + 1)))
    return model, sign, th


@pytest.mark.parametrize("arm", [0, 1, -1])
def test_mean_trajectory_and_norm_match_exact_moments(mc, arm):
    model, sign, th = mc
    rows = sign == arm
    x = th[rows] - model.aligned
    dbar = model.gains.mean(0)
    delta = dbar * x
    proj = delta @ model.v_latent
    sq = (delta**2).sum(-1)
    pred = theory.predict(model, arm)
    for t in STEPS:
        se_p = proj[:, t].std(ddof=1) / np.sqrt(rows.sum())
        se_q = sq[:, t].std(ddof=1) / np.sqrt(rows.sum())
        assert abs(proj[:, t].mean() - pred.mean_proj[t]) <= 4 * se_p + 1e-12, t
        assert abs(sq[:, t].mean() - pred.mean_sq_norm[t]) <= 4 * se_q, t
        # variance of the projection: chi-square-scale tolerance
        if pred.var_proj[t] > 1e-12:
            ratio = proj[:, t].var(ddof=1) / pred.var_proj[t]
            assert abs(ratio - 1) < 5 * np.sqrt(2 / rows.sum()), t
        # behaviour rate (expected over noise; MC mean of the exact probability)
        beh = model.behavior_prob(th[rows, t]).mean(-1)
        assert abs(beh.mean() - pred.behavior_rate[t]) <= 4 * beh.std(ddof=1) / np.sqrt(rows.sum()) + 1e-12
        # alignment: ratio of moments is first-order; agreement to 0.02
        cos = proj[:, t] / np.sqrt(sq[:, t])
        if arm != 1:
            assert abs(np.mean(cos) - pred.alignment[t]) < 0.02, t


def test_plateau_and_closed_form(mc):
    model, sign, th = mc
    pl = theory.plateau(model, 0)
    pred = theory.predict(model, 0)
    assert pred.alignment[-1] == pytest.approx(pl["alignment"], abs=1e-6)
    # with the task orthogonal to nu the plateau along the normal is rho * delta
    x_inf = -np.linalg.solve(np.eye(len(model.aligned)) - theory.affine_system(model, 0)[0],
                             -theory.affine_system(model, 0)[1])
    u = -x_inf @ model.normal
    assert u == pytest.approx(theory.return_fraction(model) * model.cfg.align_shift, rel=1e-9)
    blocked = theory.plateau(model, 1)
    assert blocked["mean_proj"] == pytest.approx(0.0, abs=1e-10)
    assert blocked["behavior_rate"] < pl["behavior_rate"]


def test_theory_refuses_unsupported_cases():
    with pytest.raises(ValueError, match="geometry='flat' and readout='linear'"):
        theory.predict(build_model(config_for("curved-sphere", hidden=64, runs=1), 0))
    with pytest.raises(ValueError, match="block_mode='projection'"):
        theory.predict(build_model(config_for("paper-main-track", hidden=64, runs=1), 0), 1)
