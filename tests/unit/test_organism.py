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
