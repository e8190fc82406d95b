"""Sweeps: dask grid into one Dataset; monotone in pretraining mass; phase-diagram plot."""

from __future__ import annotations

import numpy as np
import pytest

from revstats.sims.sweep import plot_phase_diagram, point_stats, sweep


@pytest.fixture(scope="module")
def small_sweep():
    grid = {"pretrain_mass": [0.02, 0.3, 1.0], "align_mass": [0.0, 1.2], "noise": [0.042]}
    return sweep(grid, runs=4, steps=30)


def test_sweep_shape_and_physics(small_sweep):
    ds = small_sweep
    assert ds["align_final_control"].dims == ("pretrain_mass", "align_mass", "noise")
    a = ds["align_final_control"].sel(noise=0.042)
    # more pretraining mass -> more reversion; deeper alignment -> less
    assert np.all(np.diff(a.sel(align_mass=0.0).values) > 0)
    assert np.all(a.sel(align_mass=1.2).values < a.sel(align_mass=0.0).values)
    assert abs(float(a.sel(pretrain_mass=0.02, align_mass=0.0))) < 0.15
    assert np.all(ds["align_final_blocked"].values < 0.05)


def test_sweep_matches_sequential_point(small_sweep):
    from revstats.sims.simulate import config_for

    cfg = config_for("paper-main-track", runs=4, steps=30,
                     overrides={"arms": ("control", "blocked"), "pretrain_mass": 0.3, "hidden": 48,
                                "align_mass": 1.2, "noise": 0.042})
    ref = point_stats(cfg, 0)
    got = small_sweep["align_final_control"].sel(pretrain_mass=0.3, align_mass=1.2, noise=0.042)
    assert float(got) == ref["align_final_control"]


def test_phase_diagram(small_sweep, tmp_path):
    fig = plot_phase_diagram(small_sweep, path=str(tmp_path / "phase.png"))
    assert (tmp_path / "phase.png").stat().st_size > 1000
    assert len([a for a in fig.axes if a.get_visible()]) >= 2  # panel + colorbar
    with pytest.raises(ValueError, match="`var`"):
        plot_phase_diagram(small_sweep, var="nope")
    with pytest.raises(ValueError, match="is not a sweep dim"):
        plot_phase_diagram(small_sweep, x="lr")
    with pytest.raises(ValueError, match="`grid` is empty"):
        sweep({})
