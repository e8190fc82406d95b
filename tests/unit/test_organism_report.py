"""revstats.sims.organism.report on a synthetic organism store: honest intervals (issue 13.3, 13.11).

No torch needed: the store is written with revstats.store directly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import revstats as rs
from revstats.store import create_store

SEEDS = (0, 1, 2, 3)
ARMS = ("control", "blocked", "placebo")
STEPS = [0, 5, 10]
N_EX, HID = 16, 8
LAYERS = ["hidden_states.0", "hidden_states.1", "hidden_states.2"]
# harmful probes at the final step per (arm, seed): blocked - control is -4 on every seed (a
# degenerate paired difference); blocked is rare (a t interval on its rates leaves [0, 1])
FINAL_K = {"control": [4, 6, 8, 10], "blocked": [0, 2, 4, 6], "placebo": [3, 7, 8, 9]}
RARE_K = [0, 0, 3, 0]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("rep") / "org.zarr")
    runs = [f"{a}-s{s}" for s in SEEDS for a in ARMS]
    arms = [a for _ in SEEDS for a in ARMS]
    seeds = [s for s in SEEDS for _ in ARMS]
    w = create_store(path, runs=runs, layers=LAYERS, examples=[f"p{i}" for i in range(N_EX)],
                     hidden=HID, steps=STEPS, arms=arms, seeds=seeds, witness_per_run=True,
                     behavior=True, task={"metric": "acc", "higher_is_better": True},
                     source="organism", provenance={"command": "test"})
    rng = np.random.default_rng(0)
    for run, arm, seed in zip(runs, arms, seeds, strict=True):
        aligned = rng.normal(size=(len(LAYERS), N_EX, HID))
        witness = aligned + rng.normal(size=(1, 1, HID)) + 0.1 * rng.normal(size=aligned.shape)
        witness[0] = aligned[0]  # layer 0: witness == aligned, v_rev undefined (core warns)
        acts = np.stack([aligned + 0.3 * t * rng.normal(size=aligned.shape) / 10 + t / 10
                         for t in STEPS])
        beh = np.zeros((len(STEPS), N_EX))
        k = FINAL_K[arm][SEEDS.index(seed)]
        beh[-1, :k] = 1
        if arm == "placebo":
            beh[1, : RARE_K[SEEDS.index(seed)]] = 1
        w.write_witness(witness, run=run)
        w.write_slabs(run, STEPS, acts, behavior=beh, task=[0.5, 0.6, 0.7 + 0.01 * seed])
    w.close()
    import zarr

    g = zarr.open_group(path, mode="r+")
    g.attrs["organism_penalty_activity"] = json.dumps({
        f"seed{s}": {"blocked": {"penalty_mean": 1.0, "grad_norm_mean": 10.0},
                     "placebo": {"penalty_mean": 0.01 * (s + 1), "grad_norm_mean": 0.5}}
        for s in SEEDS})
    zarr.consolidate_metadata(path)
    return path


@pytest.fixture(scope="module")
def summary(store):
    from revstats.sims.organism.report import summarize

    with pytest.warns(rs.DegenerateDataWarning):  # nobody silences the core's warnings
        return summarize(store, n_permutations=19)


def test_degenerate_paired_difference_is_na_not_zero_width(summary):
    from revstats.sims.organism.report import to_markdown

    e = summary["arms"]["blocked"]["vs_control"]["harm_diff_paired"]
    assert e["estimate"] == pytest.approx(-4 / N_EX)
    assert e["low"] is None and e["high"] is None and "equal" in e["na"]
    md = to_markdown(summary)
    assert "-25.0% (CI n/a: all 4 per-seed differences equal" in md
    assert "[-25.0, -25.0]" not in md


def test_rate_intervals_are_cluster_aware_and_inside_unit_interval(summary):
    for arm, r in summary["arms"].items():
        for key in ("harm_aligned", "harm_final"):
            d = r[key]
            assert d["method"] == "korn_graubard", (arm, key)
            assert 0.0 <= d["low"] <= d["estimate"] <= d["high"] <= 1.0, (arm, key, d)
    blocked = summary["arms"]["blocked"]["harm_final"]
    assert blocked["estimate"] == pytest.approx(12 / 64)
    # cosine intervals stay in [-1, 1]
    for r in summary["arms"].values():
        for lay in r["layers"].values():
            for s in lay["alignment"].values():
                if s.get("low") is not None:
                    assert -1.0 <= s["low"] <= s["high"] <= 1.0


def test_rare_rate_interval_does_not_leave_zero():
    from revstats.sims.organism.report import _rate_ci

    d = _rate_ci(np.array(RARE_K), N_EX)
    assert d["low"] >= 0 and d["high"] <= 1 and d["high"] > d["estimate"]
    assert _rate_ci(np.array([3]), N_EX)["low"] is None  # one run: n/a, not a probe interval


def test_blocked_vs_placebo_and_binding_ratio(summary):
    from revstats.sims.organism.report import to_markdown

    bp = summary["blocked_vs_placebo"]["blocked - placebo"]
    assert bp["n_pairs"] == 4
    assert bp["harm_diff_paired"]["estimate"] == pytest.approx(
        np.mean(np.subtract(FINAL_K["blocked"], FINAL_K["placebo"])) / N_EX)
    b = summary["binding_vs_blocked"]["placebo"]
    assert b["loss_ratio_median"] == pytest.approx(0.025)
    assert b["grad_ratio_range"] == [0.05, 0.05]
    md = to_markdown(summary)
    assert "Blocked vs placebo directly" in md and "| placebo | 4 | 0.025" in md


def test_report_module_never_silences_core_warnings():
    import inspect

    import revstats.sims.organism.report as rep

    src = inspect.getsource(rep)
    assert "simplefilter" not in src and "catch_warnings" not in src
