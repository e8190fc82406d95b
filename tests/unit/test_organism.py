"""The model organism end to end at the `tiny` profile: store validity, judges, determinism."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import revstats as rs  # noqa: E402
from revstats.sims.organism import (  # noqa: E402
    PROFILES,
    ArmSpec,
    OrganismConfig,
    run_organism,
    total_units,
    train,
)
from revstats.sims.organism.language import EOS, REFUSAL, SURE, Language, make_language  # noqa: E402
from revstats.store import verify_store  # noqa: E402

TINY = dataclasses.replace(
    PROFILES["tiny"],
    arms=(ArmSpec("control"), ArmSpec("blocked", "penalty", 1, 30.0),
          ArmSpec("blocked_act", "act_proj", 1, 1.0), ArmSpec("blocked_param", "param_proj"),
          ArmSpec("push", "penalty", -1, 30.0), ArmSpec("placebo", "penalty", 1, 30.0,
                                                        placebo=True)),
)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("org") / "organism.zarr")
    ticks = []
    summary = run_organism(path, TINY, progress=lambda d, n: ticks.append(n))
    return path, summary, sum(ticks)


def test_store_passes_validation(tiny_store):
    path, summary, n_ticks = tiny_store
    ds = rs.open_store(path)
    assert ds.attrs["source"] == "organism"
    prov = json.loads(ds.attrs["provenance"])
    assert prov["seeds"] == list(TINY.seeds)
    assert prov["config"]["ft_steps"] == TINY.ft_steps
    assert list(ds.step.values) == [0, *TINY.capture_steps]
    assert list(ds.layer.values) == [f"hidden_states.{i}" for i in range(TINY.n_layers + 1)]
    assert sorted(set(ds.arm.values)) == sorted(a.name for a in TINY.arms)
    assert ds.sizes["example"] == TINY.n_probes and ds.sizes["hidden"] == TINY.hidden
    assert bool(ds.complete.all())
    assert verify_store(path) == []
    beh = ds.behavior.values
    assert set(np.unique(beh)) <= {0.0, 1.0}
    assert np.isfinite(ds.task.values).all()
    assert n_ticks == total_units(TINY)
    assert summary.phases["timing_s"]["total"] > 0


def test_step0_is_the_aligned_network_for_every_arm(tiny_store):
    ds = rs.open_store(tiny_store[0])
    a0 = ds.acts.sel(step=0).values
    assert np.array_equal(a0, np.broadcast_to(a0[:1], a0.shape))
    # fine-tuning moved the network, and the witness (pretrained) differs from the aligned one
    assert not np.allclose(ds.acts.isel(step=-1).values, a0)
    assert not np.allclose(ds.witness.values, a0)


def test_interventions_differ_from_control(tiny_store):
    ds = rs.open_store(tiny_store[0])
    last = ds.acts.isel(step=-1).values
    ctl = last[list(ds.arm.values).index("control")]
    # (the placebo penalty may stay inactive in 4 steps: ReLU of motion along a random direction)
    for arm in ("blocked", "blocked_act", "blocked_param", "push"):
        assert not np.allclose(last[list(ds.arm.values).index(arm)], ctl), arm


def test_same_seed_same_store(tiny_store, tmp_path):
    cfg = dataclasses.replace(TINY, arms=TINY.arms[:2] + TINY.arms[3:4])
    again = str(tmp_path / "again.zarr")
    run_organism(again, cfg)
    a, b = rs.open_store(tiny_store[0]), rs.open_store(again)
    for run in b.run.values:
        for name in ("acts", "behavior", "task"):
            np.testing.assert_array_equal(a[name].sel(run=run).values, b[name].sel(run=run).values)
    np.testing.assert_array_equal(a.witness.sel(run=b.run.values).values, b.witness.values)


def test_language_judge_and_splits():
    lang = Language(n_content=8, n_triggers=4)
    train_t, held = lang.trigger_triples()
    assert len(train_t) + len(held) == 4 * 8 * 8
    assert not set(map(tuple, train_t)) & set(map(tuple, held))
    data = make_language(lang, n_pretrain=200, n_align=16, n_benign=20, n_benign_eval=10,
                         n_probes=12, n_anchors=4, seed=0)
    probes = {tuple(p) for p in data["probes"].prompts}
    for name in ("pretrain_trigger", "align_trigger", "anchors"):
        assert not probes & {tuple(p) for p in data[name].prompts}, name
    assert (data["align_trigger"].responses == np.array(REFUSAL)).all()
    comp = data["probes"].responses
    assert (comp[:, 0] == SURE).all() and (comp[:, -1] == EOS).all()
    trig = set(range(lang.first_trigger, lang.first_trigger + lang.n_triggers))
    for name in ("benign", "benign_neutral", "benign_eval"):
        assert not trig & set(data[name].prompts.ravel().tolist()), name


class _Echo(torch.nn.Module):
    """A fake LM whose greedy output is a fixed token sequence, to check the exact-match judge."""

    def __init__(self, tokens):
        super().__init__()
        self.tokens, self.training = tokens, False

    def forward(self, input_ids, use_cache=False):
        pos = input_ids.shape[1] - 5
        logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], 40)
        logits[:, -1, self.tokens[pos]] = 1.0
        return type("Out", (), {"logits": logits})()


def test_harmful_judge_is_exact_match():
    lang = Language(n_content=8)
    data = make_language(lang, n_pretrain=50, n_align=8, n_benign=8, n_benign_eval=8,
                         n_probes=2, n_anchors=2, seed=0)
    probes = data["probes"]
    same = probes.take(np.array([0, 0]))
    assert train.harmful_outcomes(_Echo(list(same.responses[0])), same).tolist() == [1.0, 1.0]
    wrong = list(same.responses[0])
    wrong[2] = wrong[1] if wrong[2] != wrong[1] else wrong[1] + 1
    assert train.harmful_outcomes(_Echo(wrong), same).tolist() == [0.0, 0.0]
    assert train.harmful_outcomes(_Echo(list(REFUSAL)), same).tolist() == [0.0, 0.0]


def test_deterministic_restores_torch_settings():
    threads = torch.get_num_threads()
    with train.deterministic(0):
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="`config` must be one of"):
        run_organism(str(tmp_path / "x.zarr"), "huge")
    with pytest.raises(ValueError, match="`config.arms` must have unique"):
        run_organism(str(tmp_path / "x.zarr"),
                     dataclasses.replace(TINY, arms=(ArmSpec("a"), ArmSpec("a"))))
    with pytest.raises(ValueError, match="`config.seeds` must be distinct"):
        run_organism(str(tmp_path / "x.zarr"), dataclasses.replace(TINY, seeds=()))
    with pytest.raises(TypeError, match="`config` must be an OrganismConfig"):
        run_organism(str(tmp_path / "x.zarr"), 3)  # type: ignore[arg-type]
    bad = dataclasses.replace(TINY, arms=(ArmSpec("x", "teleport"),))
    with pytest.raises(ValueError, match="`kind` must be none, penalty"):
        run_organism(str(tmp_path / "y.zarr"), bad)
    assert isinstance(PROFILES["paper"], OrganismConfig)
    assert len(PROFILES["paper"].seeds) >= 8 and PROFILES["paper"].ft_steps == 100


def test_cli_help_and_tiny_run(tmp_path):
    from click.testing import CliRunner

    from revstats.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["organism", "--help"])
    assert res.exit_code == 0 and "revstats organism --profile quick" in res.output
    out = tmp_path / "cli.zarr"
    res = runner.invoke(main, ["organism", "--profile", "tiny", "--out", str(out),
                               "--no-progress", "--summary", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    assert rs.open_store(str(out)).attrs["source"] == "organism"
    assert "seed0" in json.loads((tmp_path / "s.json").read_text())
    res = runner.invoke(main, ["organism", "--profile", "tiny", "--out", str(out)])
    assert res.exit_code != 0 and "--overwrite" in res.output
    res = runner.invoke(main, ["organism", "--out", str(tmp_path / "z"), "--seeds", "a,b"])
    assert res.exit_code != 0 and "comma-separated integers" in res.output


def test_report_summarizes_the_store(tiny_store):
    from revstats.sims.organism.report import summarize, to_markdown

    s = summarize(tiny_store[0], n_permutations=99)
    ds = rs.open_store(tiny_store[0])
    assert set(s["arms"]) == set(ds.arm.values)
    ctl = s["arms"]["control"]
    final = ds.behavior.sel(run="control-s0").isel(step=-1).values
    assert ctl["harm_final"]["pooled"] == pytest.approx(final.mean())
    traj = ctl["layers"]["hidden_states.2"]["alignment"]
    assert list(traj) == TINY.capture_steps
    assert s["isotropic_p99"] == pytest.approx(rs.nulls.isotropic_cosine(TINY.hidden).quantile(0.99))
    assert "| control |" in to_markdown(s)


def test_revstats_analysis_runs_on_the_organism_store(tiny_store):
    # the embedding layer read at one token is the same vector for every probe: the nulls that
    # need probe variation must be skipped with a reason, not crash the analysis
    from revstats.analysis.pipeline import AnalysisSettings, analyze

    res = analyze(rs.open_store(tiny_store[0]), settings=AnalysisSettings(n_resamples=100, n_null_draws=100))
    assert set(res["headline"]["layers"]) >= {"hidden_states.1", "hidden_states.2"}
    skipped = [s for s in res["skipped"] if s["layer"] == "hidden_states.0"]
    assert any(s["piece"] == "null:covariance_matched" and "zero variance" in s["reason"] for s in skipped)


SMALL = dataclasses.replace(PROFILES["tiny"], seeds=(0, 1), pretrain_steps=30, align_steps=5,
                            ft_steps=2, capture_every=1,
                            arms=(ArmSpec("control"), ArmSpec("blocked", "penalty", 1, 30.0),
                                  ArmSpec("placebo_drift", "penalty", 1, 30.0, placebo=True,
                                          placebo_match="drift")))


def _same_values(a_path, b_path):
    """Every run of store `a` has the same values in store `b`."""
    a, b = rs.open_store(a_path), rs.open_store(b_path)
    runs = list(a.run.values)
    assert set(runs) <= set(b.run.values)
    for name in ("acts", "witness", "behavior", "task"):
        np.testing.assert_array_equal(a[name].values, b[name].sel(run=runs).values, err_msg=name)


def test_worker_processes_write_the_serial_store(tmp_path):
    serial, par = str(tmp_path / "serial.zarr"), str(tmp_path / "par.zarr")
    s1 = run_organism(serial, SMALL, workers=1)
    ticks = []
    s2 = run_organism(par, SMALL, workers=2, progress=lambda d, n: ticks.append(n))
    _same_values(serial, par)
    assert sum(ticks) == total_units(SMALL)  # progress from the workers reaches the parent
    assert s1.phases["penalty_activity"] == s2.phases["penalty_activity"]
    with pytest.raises(ValueError, match="`workers` must be a positive integer"):
        run_organism(str(tmp_path / "w.zarr"), SMALL, workers=0)


def test_probes_are_shared_by_every_seed():
    lang = Language()
    a = make_language(lang, n_pretrain=100, n_align=40, n_benign=10, n_benign_eval=8,
                      n_probes=16, n_anchors=4, seed=0)
    b = make_language(lang, n_pretrain=100, n_align=40, n_benign=10, n_benign_eval=8,
                      n_probes=16, n_anchors=4, seed=5)
    np.testing.assert_array_equal(a["probes"].prompts, b["probes"].prompts)
    assert not np.array_equal(a["anchors"].prompts, b["anchors"].prompts)


def test_matched_placebos_need_a_control_first(tmp_path):
    bad = dataclasses.replace(SMALL, arms=(ArmSpec("placebo_lambda", "penalty", 1, 30.0,
                                                   placebo=True, placebo_match="lambda"),
                                           ArmSpec("control")))
    with pytest.raises(ValueError, match="needs a kind='none'"):
        run_organism(str(tmp_path / "p.zarr"), bad)
    with pytest.raises(ValueError, match="`placebo_match` must be"):
        run_organism(str(tmp_path / "p.zarr"), dataclasses.replace(
            SMALL, arms=(ArmSpec("control"), ArmSpec("p", "penalty", placebo=True,
                                                     placebo_match="typo"))))


def test_placebo_binding_is_recorded_and_the_drift_placebo_binds(tmp_path):
    from revstats.sims.organism.pipeline import _placebo_dirs

    rng = np.random.default_rng(0)
    v = np.zeros((3, 8))
    v[:, 0] = 1.0
    drift = rng.normal(size=(3, 10, 8)) * 0.1
    drift[..., 3] += 1.0  # fine-tuning moves mostly along e_3, which is orthogonal to v
    dirs, _ = _placebo_dirs(ArmSpec("p", "penalty", placebo=True, placebo_match="drift",
                                    n_placebo_dirs=2), [0, 1, 2], v, 0, drift)
    for layer in range(3):
        assert dirs[layer].shape == (2, 8)
        assert abs(dirs[layer] @ v[layer]).max() < 1e-8  # perpendicular to v_rev
        assert dirs[layer][0, 3] > 0.95  # the top drift direction, signed along the drift
    lam_dirs, scale = _placebo_dirs(ArmSpec("p", "penalty", placebo=True, placebo_match="lambda"),
                                    [0, 1, 2], v, 0, drift + v[:, None, :] * 0.5)
    for layer in range(3):
        u = lam_dirs[layer]
        d = drift[layer] + 0.5 * v[layer]
        pv = np.mean(np.maximum(d @ v[layer], 0) ** 2)
        pu = np.mean(np.maximum(d @ u, 0) ** 2)
        assert scale[layer] * pu == pytest.approx(pv)  # matched on the control's trajectory


def test_history_cells_are_the_runs_a_separate_profile_would_train(tmp_path):
    from revstats.sims.organism.history import (
        HISTORY_PROFILES,
        cell_name,
        plot_history,
        run_history,
        summarize_history,
        total_history_units,
    )

    cfg = HISTORY_PROFILES["history-tiny"]
    out = str(tmp_path / "hist")
    ticks = []
    run_history(out, cfg, workers=1, progress=lambda d, n: ticks.append(n))
    assert sum(ticks) == total_history_units(cfg)
    index = json.loads((tmp_path / "hist" / "history.json").read_text())
    assert len(index["cells"]) == len(cfg.pretrain_levels) * len(cfg.align_levels)
    for cell in index["cells"]:
        ds = rs.open_store(str(tmp_path / "hist" / cell["store"]))  # an ordinary store
        prov = json.loads(ds.attrs["provenance"])
        assert prov["config"]["history_cell"] == {"pretrain_steps": cell["pretrain_steps"],
                                                  "align_steps": cell["align_steps"]}
        assert verify_store(str(tmp_path / "hist" / cell["store"])) == []
    # nesting: the smallest and the largest cell equal the ordinary pipeline run with those
    # step counts (a shorter history is an exact prefix of a longer one)
    for p, a in ((cfg.pretrain_levels[0], cfg.align_levels[0]),
                 (cfg.pretrain_levels[-1], cfg.align_levels[-1])):
        single = dataclasses.replace(cfg.base, seeds=cfg.seeds[-1:], pretrain_steps=p, align_steps=a,
                                     arms=cfg.arms_of(p, a))
        ref = str(tmp_path / f"ref{p}_{a}.zarr")
        run_organism(ref, single)
        _same_values(ref, str(tmp_path / "hist" / "cells" / f"{cell_name(p, a)}.zarr"))
    s = summarize_history(out)
    assert len(s["cells"]) == 4 and set(s["trends"]) == {"reversion", "alignment_xfit",
                                                          "crossing_step"}
    for c in s["cells"]:
        assert c["n_seeds"] == len(cfg.seeds)
        assert "blocked_minus_control_harm" in c  # 2 x 2: every cell is a corner
    plot_history(s, str(tmp_path / "phase.png"))
    assert (tmp_path / "phase.png").stat().st_size > 1000
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_history(out, cfg)


def test_revstats_analyze_reads_a_history_cell(tmp_path):
    from click.testing import CliRunner

    from revstats.cli import main

    out = tmp_path / "h"
    res = CliRunner().invoke(main, ["organism", "--profile", "history-tiny", "--out", str(out),
                                    "--no-progress", "--workers", "1"])
    assert res.exit_code == 0, res.output
    cell = json.loads((out / "history.json").read_text())["cells"][0]["store"]
    res = CliRunner().invoke(main, ["analyze", str(out / cell), "--json",
                                    str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "headline" in json.loads((tmp_path / "r.json").read_text())


def test_cli_unknown_profile_lists_the_names(tmp_path):
    from click.testing import CliRunner

    from revstats.cli import main

    res = CliRunner().invoke(main, ["organism", "--profile", "huge", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "'huge'" in res.output
    assert "history" in res.output and "unlearning" in res.output
