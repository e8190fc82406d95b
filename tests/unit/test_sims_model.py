"""Simulator invariants: geometry, pure init/step, blocking arms, seeds, validation."""

from __future__ import annotations

import numpy as np
import pytest

from revstats.sims.geometry import flat_geometry, sphere_geometry
from revstats.sims.model import SimConfig, build_model, force, init, step, validate_config
from revstats.sims.simulate import (
    config_for,
    draw_noise,
    experiment_seeds,
    run_layout,
    simulate,
    trajectories,
)

SMALL = dict(runs=4, steps=30, hidden=64, latent=24, examples=8, normal_dim=3)


@pytest.fixture(scope="module")
def geoms():
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.standard_normal((10, 3)))
    origin = rng.standard_normal(10)
    return [flat_geometry(origin, basis), sphere_geometry(rng.standard_normal(10), 2.5)], rng


def test_projection_idempotent_and_pull_vanishes_on_manifold(geoms):
    gs, rng = geoms
    theta = rng.standard_normal((7, 10)) * 3
    for g in gs:
        on = g.projection(theta)
        np.testing.assert_allclose(g.projection(on), on, atol=1e-12)
        np.testing.assert_allclose(g.displacement(on), 0.0, atol=1e-12)
        np.testing.assert_allclose(g.displacement(theta) + on, theta, atol=1e-12)
        # the projection is the nearest point: displacement is normal to M at `on`
        nrm = np.array([g.normal_at(p) for p in on]) if g.name == "sphere" else None
        if nrm is not None:
            d = g.displacement(theta)
            cross = d - (d * nrm).sum(-1, keepdims=True) * nrm
            np.testing.assert_allclose(cross, 0.0, atol=1e-10)


def test_pull_vanishes_at_witness_and_points_back_from_aligned():
    for geometry in ("flat", "sphere"):
        cfg = SimConfig(**SMALL, geometry=geometry, anchor=0.0, task_strength=0.0)
        m = build_model(cfg, 1)
        np.testing.assert_allclose(force(m, m.witness[None]), 0.0, atol=1e-12)
        g = force(m, m.aligned[None])[0]
        # the pull at the aligned model points from w to a (descent goes back toward w)
        cos = g @ (m.aligned - m.witness) / np.linalg.norm(g) / np.linalg.norm(m.aligned - m.witness)
        assert cos == pytest.approx(1.0, abs=1e-12)


def test_step_is_pure_and_state_frozen():
    cfg = SimConfig(**SMALL)
    m = build_model(cfg, 2)
    s0 = init(m, np.array([0, 1, -1]))
    before = s0.theta.copy()
    xi = np.random.default_rng(0).standard_normal((3, cfg.latent))
    s1 = step(m, s0, xi)
    s1b = step(m, s0, xi)
    np.testing.assert_array_equal(s0.theta, before)
    np.testing.assert_array_equal(s1.theta, s1b.theta)
    assert s1.step == 1
    with pytest.raises(AttributeError):
        s1.step = 5  # type: ignore[misc]


def _run(cfg, seed=0):
    ids, arms, sign = run_layout(cfg)
    ms, rs = experiment_seeds(seed, len(ids))
    m = build_model(cfg, ms)
    xi, _ = draw_noise(cfg, rs, 1)
    saved = tuple(range(cfg.steps + 1))
    return m, sign, trajectories(m, sign, xi, saved)


def test_projection_blocking_removes_the_blocked_component_exactly():
    cfg = SimConfig(**SMALL, block_mode="projection", block_reduce="mean")
    m, sign, th = _run(cfg)
    q = m.gains.mean(0) * m.v_latent
    proj = (th - m.aligned) @ q
    np.testing.assert_allclose(proj[sign == 1], 0.0, atol=1e-10)
    assert np.all(proj[sign == 0][:, -1] > 0)
    # push reinforces: faster motion along v at the first step than control (same fixed point)
    assert proj[sign == -1][:, 1].mean() > 1.5 * proj[sign == 0][:, 1].mean()
    # orthogonal motion is untouched: with noise off, blocked minus control lies along q
    cfg0 = cfg.replace(noise=0.0, anchor=0.0, task_strength=0.0)
    m0, sign0, th0 = _run(cfg0)
    d1 = th0[sign0 == 1][0, 1] - th0[sign0 == 0][0, 1]
    qh = q / np.linalg.norm(q)
    np.testing.assert_allclose(d1 - (d1 @ qh) * qh, 0.0, atol=1e-12)


def test_penalty_blocking_holds_each_probe_at_or_below_zero_and_push_opposite():
    cfg = SimConfig(**SMALL, block_mode="penalty", block_reduce="per_probe", block_lambda=5.0,
                    block_substeps=10)
    m, sign, th = _run(cfg)
    comp = m.latent_acts(th) - m.latent_acts(m.aligned)
    per_probe = comp @ m.v_latent  # (R, S, n)
    ctl, blk, push = (per_probe[sign == s, -1] for s in (0, 1, -1))
    assert blk.max() < 0.1 * ctl.mean()
    assert blk.mean() < 0 < ctl.mean()
    assert push.min() > blk.min()
    assert push.mean() >= ctl.mean() - 1e-9 or np.mean(push < 0) < np.mean(ctl < 0)


def test_validation_messages():
    with pytest.raises(ValueError, match="`runs` must be an integer >= 1"):
        validate_config(SimConfig(runs=0))
    with pytest.raises(ValueError, match="`hidden` .* must be >= `latent`"):
        validate_config(SimConfig(hidden=8, latent=16))
    with pytest.raises(ValueError, match="`geometry` must be one of"):
        validate_config(SimConfig(geometry="torus"))
    with pytest.raises(ValueError, match="`noise` must be a finite number >= 0"):
        validate_config(SimConfig(noise=-1.0))
    with pytest.raises(ValueError, match="`behavior_base` must lie in"):
        validate_config(SimConfig(behavior_base=1.0))
    with pytest.raises(ValueError, match="`arms` must be distinct"):
        validate_config(SimConfig(arms=("control", "control")))
    with pytest.raises(ValueError, match="`align_shift` must be > 0"):
        validate_config(SimConfig(align_shift=0.0))
    with pytest.raises(ValueError, match="`task_cos` must lie"):
        validate_config(SimConfig(task_cos=2.0))
    with pytest.raises(ValueError, match="`normal_dim` must be <"):
        validate_config(SimConfig(normal_dim=64, latent=64))
    with pytest.raises(ValueError, match="`seed` must be a non-negative"):
        experiment_seeds(-1, 3)
    with pytest.raises(ValueError, match="unknown preset"):
        config_for("nope")
    with pytest.raises(ValueError, match="unknown simulator setting"):
        config_for("paper-main-track", overrides={"bogus": 1})


def test_dataset_schema_and_seeds():
    cfg = config_for("paper-main-track", runs=2, hidden=64, steps=20)
    ds = simulate(cfg, seed=5)
    assert ds["acts"].dims == ("run", "step", "layer", "example", "hidden")
    assert set(ds["arm"].values) == {"control", "blocked", "push"}
    assert {0, 1, 20} <= set(ds["step"].values.tolist())
    assert ds.attrs["source"] == "simulator"
    assert len(set(ds["seed"].values.tolist())) == ds.sizes["run"]
    # step 0 is the aligned model for every run
    a0 = ds["acts"].sel(step=0).values
    np.testing.assert_array_equal(a0[0], a0[-1])
    # a run replays alone from its stored seed
    _, run_seeds = experiment_seeds(5, ds.sizes["run"])
    assert run_seeds == ds["seed"].values.tolist()
    xi_alone = np.random.default_rng(run_seeds[3]).standard_normal((cfg.steps, cfg.latent))
    xi_all, _ = draw_noise(cfg, run_seeds, 1)
    np.testing.assert_array_equal(xi_alone, xi_all[3])


def test_nonlinear_readout_and_sphere_run():
    cfg = config_for("curved-sphere", runs=3, hidden=64, steps=20)
    ds = simulate(cfg, seed=0)
    acts = ds["acts"].values
    assert np.all(np.isfinite(acts))
    assert ds["behavior"].isin([0.0, 1.0]).all()
