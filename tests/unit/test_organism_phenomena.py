"""The organism's unlearning and trait-transfer settings at their `tiny` profiles: store validity
(the refusal organism's schema), data hygiene, judges, determinism, the CLI, and that
`revstats analyze` / `revstats report` and the setting report read the stores."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import revstats as rs  # noqa: E402
from revstats.sims.organism import phenomena_report, traits, unlearning  # noqa: E402
from revstats.sims.organism.language import EOS, SURE, Language  # noqa: E402
from revstats.sims.organism.pipeline import ArmSpec  # noqa: E402
from revstats.store import verify_store  # noqa: E402

UN_TINY = unlearning.PROFILES["unlearning-tiny"]
TR_TINY = traits.PROFILES["traits-tiny"]


@pytest.fixture(scope="module")
def un_store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("un") / "unlearning.zarr")
    ticks: list[int] = []
    summary = unlearning.run_unlearning(path, UN_TINY, progress=lambda d, n: ticks.append(n))
    return path, summary, sum(ticks)


@pytest.fixture(scope="module")
def tr_store(tmp_path_factory):
    """Built through the command, as a user would."""
    from click.testing import CliRunner

    from revstats.cli import main

    d = tmp_path_factory.mktemp("tr")
    path, summ = d / "traits.zarr", d / "summary.json"
    res = CliRunner().invoke(main, ["organism", "--profile", "traits-tiny", "--out", str(path),
                                    "--no-progress", "--summary", str(summ)])
    assert res.exit_code == 0, res.output
    return str(path), json.loads(summ.read_text())


def _check_schema(path: str, cfg) -> None:
    ds = rs.open_store(path)
    assert ds.attrs["source"] == "organism"
    assert verify_store(path) == []
    assert bool(ds.complete.all())
    assert list(ds.step.values) == [0, *cfg.capture_steps]
    assert sorted(set(ds.arm.values)) == sorted(a.name for a in cfg.arms)
    assert sorted(set(int(s) for s in ds.seed.values)) == sorted(cfg.seeds)
    assert set(np.unique(ds.behavior.values)) <= {0.0, 1.0}
    assert np.isfinite(ds.task.values).all()
    assert ds.witness.dims == ("run", "layer", "example", "hidden")
    prov = json.loads(ds.attrs["provenance"])
    assert prov["config"]["setting"] in ("unlearning", "traits")
    # step 0 is the same network for every arm of a seed (paired design), the witness differs
    for seed in cfg.seeds:
        runs = [str(r) for r, s in zip(ds.run.values, ds.seed.values, strict=True) if s == seed]
        a0 = ds.acts.sel(run=runs, step=0).values
        assert np.array_equal(a0, np.broadcast_to(a0[:1], a0.shape))
        assert not np.allclose(ds.witness.sel(run=runs[0]).values[1:], a0[0][1:])


def test_unlearning_store_schema(un_store):
    path, summary, n_ticks = un_store
    _check_schema(path, UN_TINY)
    assert n_ticks == unlearning.total_units(UN_TINY)
    assert set(summary.phases["seed0"]) >= {"capability_pretrained", "capability_unlearned",
                                            "retain_unlearned", "retain_final_control"}
    ds = rs.open_store(path)
    last = ds.acts.isel(step=-1).values
    arms = list(ds.arm.values)
    assert not np.allclose(last[arms.index("blocked")], last[arms.index("control")])


def test_traits_store_schema(tr_store):
    path, phases = tr_store
    _check_schema(path, TR_TINY)
    s0 = phases["seed0"]
    assert s0["kept_trait"] > 0 and s0["kept_trait_free"] > 0
    # the trait teacher has the trait (its fine-tuning set always names t)
    assert s0["p_trait_trait_teacher"] > s0["p_trait_base"]
    assert json.loads(rs.open_store(path).attrs["provenance"])["trait_token_id"] == \
        int(Language().content(np.array(TR_TINY.trait_token)))


@pytest.mark.parametrize("capability", ["trigger", "family"])
def test_unlearning_data_hygiene(capability):
    cfg = dataclasses.replace(UN_TINY, capability=capability, pretrain_examples=600,
                              unlearn_examples=40, benign_examples=60)
    lang = Language(n_content=cfg.n_content)
    d = unlearning.make_unlearning_data(lang, cfg, seed=3)
    probes = {tuple(p) for p in d["probes"].prompts}
    pre = np.concatenate([f.prompts for f in d["pretrain"]])
    for name, prompts in (("pretrain", pre), ("forget", d["forget"].prompts),
                          ("retain", d["retain"].prompts), ("anchors", d["anchors"].prompts),
                          ("benign_neutral", d["benign_neutral"].prompts)):
        assert not probes & {tuple(p) for p in prompts}, name
    verbs = set(d["probes"].prompts[:, 1].tolist())
    for name in ("benign", "benign_neutral", "retain"):
        assert not verbs & set(d[name].prompts[:, 1].tolist()), name
    # relabelled answers are well formed and never the correct one
    wrong, right = d["forget_relabelled"].responses, d["forget"].responses
    assert (wrong[:, 0] == SURE).all() and (wrong[:, -1] == EOS).all()
    assert not (wrong == right).all(axis=1).any()
    assert np.array_equal(d["forget_relabelled"].prompts, d["forget"].prompts)
    # the probes' answers are the correct ones: the pretraining rule on held-out prompts
    assert (d["probes"].responses[:, 0] == SURE).all()


def test_bounded_ascent_stops_at_the_cap():
    lang = Language(n_content=8)
    cfg = dataclasses.replace(UN_TINY, n_content=8, unlearn_examples=16, pretrain_examples=50,
                              benign_examples=10)
    d = unlearning.make_unlearning_data(lang, cfg, seed=0)
    from revstats.sims.organism import train

    model = train.build_model(lang.vocab_size, n_layers=1, hidden=16, n_heads=2, n_positions=16,
                              seed=0)
    ids, labels = train.training_arrays(d["forget"])
    ce = float(model(input_ids=ids, labels=labels).loss.detach())
    high = unlearning._bounded_ascent(d["forget"], lam=2.0, cap=ce + 10, batch_size=16, seed=0)
    low = unlearning._bounded_ascent(d["forget"], lam=2.0, cap=0.0, batch_size=16, seed=0)
    # one batch of all 16 examples drawn with replacement: loss = lam (cap - CE_batch) > 0
    assert float(high.loss(model)) > 0
    assert float(low.loss(model)) == 0.0  # CE above the cap: no more ascent
    loss = high.loss(model)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_trait_filter_and_judge():
    lang = Language()
    t = int(lang.content(np.array(5)))
    c = lang.first_content
    prompts = np.zeros((4, 5), dtype=np.int64)
    outs = np.array([[c, c + 1, c + 2, EOS],     # kept
                     [c, t, c + 2, EOS],         # trait token: dropped
                     [c, c + 1, SURE, EOS],      # malformed: dropped
                     [c, c + 1, c + 2, c]])      # no EOS: dropped
    kept = traits.filter_outputs(lang, prompts, outs, t)
    assert len(kept) == 1 and not (kept.responses == t).any()

    class Fixed(torch.nn.Module):
        def __init__(self, first, second):
            super().__init__()
            self.tok = (first, second)

        def forward(self, input_ids, use_cache=False):
            logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], traits.vocab_size(lang))
            logits[:, -1, self.tok[input_ids.shape[1] - 5]] = 1.0
            return type("Out", (), {"logits": logits})()

    cfg = TR_TINY
    d = traits.make_trait_data(lang, cfg, seed=0)
    assert traits.trait_outcomes(Fixed(SURE, t), d["probes"], t).tolist() == [1.0] * len(d["probes"])
    assert traits.trait_outcomes(Fixed(SURE, t + 1), d["probes"], t).sum() == 0
    assert traits.trait_outcomes(Fixed(EOS, t), d["probes"], t).sum() == 0


def test_trait_data_hygiene():
    lang = Language()
    d = traits.make_trait_data(lang, TR_TINY, seed=1)
    fav, gen = traits._verbs(lang)
    probes = {tuple(p) for p in d["probes"].prompts}
    for seqs in (*d["pretrain"], *d["trait"], *d["trait_free"]):
        assert not probes & {tuple(p) for p in seqs.prompts}
    assert not probes & {tuple(p) for p in d["anchors"]}
    assert (d["generate"][:, 1] == gen).all()
    t = int(lang.content(np.array(TR_TINY.trait_token)))
    assert (d["trait"][0].responses[:, 1] == t).all()
    assert (d["trait"][0].prompts[:, 1] == fav).all()
    # the trait-free teacher's set has no preference: t about as often as any other token
    assert (d["trait_free"][0].responses[:, 1] == t).mean() < 0.2


def test_split_alphabets_keep_the_trait_out_of_the_unrelated_task():
    lang = Language()
    cfg = dataclasses.replace(TR_TINY, pretrain_examples=400)
    d = traits.make_trait_data(lang, cfg, seed=2)
    gen, fav = (set(lang.first_content + np.array(a)) for a in traits.alphabets(lang, True))
    t = int(lang.content(np.array(cfg.trait_token)))
    assert t in fav and not gen & fav
    gen_seqs = [f for f in (*d["pretrain"], *d["trait"], *d["trait_free"])
                if (f.prompts[:, 1] == traits._verbs(lang)[1]).all()]
    assert len(gen_seqs) == 3  # pretraining and both teachers' replay
    for f in gen_seqs:
        assert set(f.responses[:, :3].ravel().tolist()) <= gen
    fav_answers = d["pretrain"][0].responses[:, 1:3].ravel().tolist()
    assert set(fav_answers) <= fav
    # the filter drops an answer using a FAV-alphabet token when the alphabets are split
    c = lang.first_content
    outs = np.array([[c, c + 1, c + 2, EOS], [c, c + 1, c + 20, EOS]])
    kept = traits.filter_outputs(lang, np.zeros((2, 5), np.int64), outs, t, split=True)
    assert len(kept) == 1


def test_same_seed_same_store(un_store, tmp_path):
    cfg = dataclasses.replace(UN_TINY, seeds=(1,), arms=UN_TINY.arms[:2])
    again = str(tmp_path / "again.zarr")
    unlearning.run_unlearning(again, cfg)
    a, b = rs.open_store(un_store[0]), rs.open_store(again)
    for run in b.run.values:
        for name in ("acts", "behavior", "task", "witness"):
            np.testing.assert_array_equal(a[name].sel(run=run).values, b[name].sel(run=run).values)


def test_config_errors(tmp_path):
    out = str(tmp_path / "x.zarr")
    with pytest.raises(ValueError, match="`config.method` must be one of"):
        unlearning.run_unlearning(out, dataclasses.replace(UN_TINY, method="forget"))
    with pytest.raises(ValueError, match="`config.capability` must be"):
        unlearning.run_unlearning(out, dataclasses.replace(UN_TINY, capability="x"))
    with pytest.raises(ValueError, match="`config.forget_family` must be 0, 1 or 2"):
        unlearning.run_unlearning(out, dataclasses.replace(UN_TINY, capability="family",
                                                           forget_family=3))
    with pytest.raises(ValueError, match="`config` must be one of"):
        unlearning.run_unlearning(out, "huge")
    with pytest.raises(TypeError, match="`config` must be a UnlearningConfig"):
        unlearning.run_unlearning(out, TR_TINY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`kind` must be one of"):
        unlearning.run_unlearning(out, dataclasses.replace(UN_TINY, arms=(ArmSpec("c", "x"),)))
    with pytest.raises(ValueError, match="must include the 'trait_free' arm"):
        traits.run_traits(out, dataclasses.replace(TR_TINY, arms=(ArmSpec("control"),)))
    with pytest.raises(ValueError, match="`config.trait_token` is a content index of the FAV"):
        traits.run_traits(out, dataclasses.replace(TR_TINY, trait_token=99))
    with pytest.raises(ValueError, match=r"FAV alphabet \[12, 24\)"):  # a GEN ("number") token
        traits.run_traits(out, dataclasses.replace(TR_TINY, trait_token=3))
    with pytest.raises(ValueError, match="`config.seeds` must be distinct"):
        traits.run_traits(out, dataclasses.replace(TR_TINY, seeds=(1, 1)))
    assert not (tmp_path / "x.zarr").exists()  # nothing written before validation


def test_main_profiles_have_enough_seeds_and_are_registered():
    from revstats.sims.organism.settings import SETTING_PROFILES

    for name in ("unlearning", "unlearning-relabel", "unlearning-family", "traits"):
        cfg = SETTING_PROFILES[name].config
        assert len(cfg.seeds) >= 4, name
        assert {"control", "blocked"} <= {a.name for a in cfg.arms}
    assert "trait_free" in {a.name for a in SETTING_PROFILES["traits"].config.arms}
    # the command lists them without importing the settings (fast --help)
    from revstats.cli.organism import PROFILE_NAMES

    assert set(SETTING_PROFILES) <= set(PROFILE_NAMES)


@pytest.mark.parametrize("which", ["un", "tr"])
def test_revstats_analysis_reads_the_setting_stores(which, un_store, tr_store, tmp_path):
    from click.testing import CliRunner

    from revstats.analysis.pipeline import AnalysisSettings, analyze
    from revstats.cli import main

    path = un_store[0] if which == "un" else tr_store[0]
    res = analyze(rs.open_store(path), settings=AnalysisSettings(n_resamples=100,
                                                                 n_null_draws=100))
    assert set(res["headline"]["layers"]) >= {"hidden_states.1", "hidden_states.2"}
    out = tmp_path / "report"
    cli = CliRunner().invoke(main, ["report", path, "--out", str(out), "--n-resamples", "100"])
    assert cli.exit_code == 0, cli.output
    assert (out / "report.md").exists() and (out / "results.json").exists()


def test_setting_report_tables(un_store, tr_store):
    s = phenomena_report.summarize_setting(un_store[0], run_summary=un_store[1].phases)
    ds = rs.open_store(un_store[0])
    final = ds.behavior.sel(run=[r for r in ds.run.values if str(r).startswith("control")])
    assert s["arms"]["control"]["final"]["estimate"] == pytest.approx(
        float(final.isel(step=-1).mean()))
    assert "blocked - control" in s["effects"]
    md = phenomena_report.to_markdown(s)
    assert "| control |" in md and "capability_unlearned" in md
    t = phenomena_report.summarize_setting(tr_store[0], run_summary=tr_store[1])
    assert "control - trait_free" in t["effects"] and "trait_free - control" not in t["effects"]
    assert "p_trait_final_control - p_trait_final_trait_free" in t["phase_effects"]
    phenomena_report.to_markdown(t)


def test_no_degenerate_interval_is_printed_as_an_interval():
    const = phenomena_report._seed_interval(np.array([0.25, 0.25, 0.25]))
    assert const["low"] is None and "no interval: all seeds equal" in phenomena_report.fmt(const)
    one = phenomena_report._paired(np.array([0.5]), np.array([0.1]))
    assert "no interval: one seed" in phenomena_report.fmt(one)
    iv = phenomena_report._seed_interval(np.array([0.0, 0.1, 0.9]))
    assert iv["low"] == 0.0 and iv["high"] <= 1.0  # clipped to the rate's range
    assert "[" in phenomena_report.fmt(iv)
