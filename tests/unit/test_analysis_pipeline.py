"""analysis.pipeline: composition checked against independent NumPy/SciPy/statsmodels values."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import jsonschema
import numpy as np
import pytest
from dask.callbacks import Callback
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from revstats.analysis.pipeline import AnalysisSettings, MissingDataError, analyze
from revstats.analysis.testing import make_synthetic_store

SCHEMA = json.loads((Path(__file__).parents[2] / "analysis" / "results.schema.json").read_text())
FAST = AnalysisSettings(n_resamples=200, n_null_draws=400, seed=3)
L1 = "hidden_states.1"


@pytest.fixture(scope="module")
def ds():
    return make_synthetic_store(seed=11)


@pytest.fixture(scope="module")
def results(ds):
    return analyze(ds, settings=FAST)


def _plug_in(ds, layer):
    """Independent plug-in alignment from the raw arrays, (run, step)."""
    acts = ds["acts"].sel(layer=layer).values.astype(float)  # run, step, example, hidden
    wit = ds["witness"].sel(layer=layer).values.astype(float)
    mu = acts.mean(2)
    drift = mu - mu[:, :1]
    v = wit.mean(0)[None] - acts[:, 0].mean(1)  # run, hidden
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.einsum("rsh,rh->rs", drift, v) / np.linalg.norm(drift, axis=2)


def test_plug_in_alignment_matches_independent_numpy(ds, results):
    expect = _plug_in(ds, L1)
    got = np.array(results["details"]["layers"][L1]["per_run"]["alignment"], dtype=float)
    np.testing.assert_allclose(got[:, 1:], expect[:, 1:], rtol=1e-4, atol=1e-5)
    assert np.all(np.isnan(got[:, 0]))  # step 0: drift is zero, cosine undefined


def test_known_truth_signs(results):
    arms = results["headline"]["layers"][L1]["arms"]
    assert arms["control"]["final_alignment"]["mean"] > 0.9
    assert arms["push"]["final_alignment"]["mean"] > 0.9
    assert arms["blocked"]["final_alignment"]["mean"] < -0.5
    db = arms["control"]["final_alignment_debiased"]["mean"]
    assert 0.8 < db <= 1.05


def test_trajectory_summary_is_mean_sd_and_t_interval(ds, results):
    a = _plug_in(ds, L1)
    idx = np.array([str(x) == "control" for x in ds["arm"].values])
    row = results["headline"]["layers"][L1]["arms"]["control"]["alignment"][3]
    vals = a[idx, 3]
    assert row["step"] == int(ds["step"].values[3])
    assert row["mean"] == pytest.approx(vals.mean(), rel=1e-4)
    assert row["sd"] == pytest.approx(vals.std(ddof=1), rel=1e-3)
    lo, hi = stats.t.interval(0.95, vals.size - 1, loc=vals.mean(), scale=stats.sem(vals))
    assert (row["low"], row["high"]) == pytest.approx((lo, hi), rel=1e-3)
    assert row["n_runs"] == idx.sum()


def test_behavior_rate_and_wilson_interval(ds, results):
    b = ds["behavior"].values
    idx = np.array([str(x) == "blocked" for x in ds["arm"].values])
    k, n = int(b[idx, -1].sum()), int(b[idx, -1].size)
    e = results["headline"]["layers"][L1]["arms"]["blocked"]["behavior_rate"]
    assert (e["k"], e["n"]) == (k, n)
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    # the pooled (probes independent) Wilson interval is kept, labelled, beside the lead
    assert (e["pooled_ci"]["low"], e["pooled_ci"]["high"]) == pytest.approx((lo, hi), rel=1e-6)
    assert "probes independent" in e["pooled_ci"]["method"]
    # the lead interval treats runs as clusters: Korn-Graubard, by hand
    kc, nc = b[idx, -1].sum(axis=1), np.full(idx.sum(), b.shape[-1])
    c, p = kc.size, kc.sum() / nc.sum()
    var = c / (c - 1) * np.sum((kc - p * nc) ** 2) / nc.sum() ** 2
    n_eff = min(nc.sum(), p * (1 - p) / var) * (stats.norm.ppf(0.975) / stats.t.ppf(0.975, c - 1)) ** 2
    x = p * n_eff
    kg = (stats.beta.ppf(0.025, x, n_eff - x + 1), stats.beta.ppf(0.975, x + 1, n_eff - x))
    assert (e["low"], e["high"]) == pytest.approx(kg, rel=1e-6)
    assert "runs as clusters" in e["method"] and 0 <= e["low"] < e["high"] <= 1
    assert e["mean"] == pytest.approx(b[idx, -1].mean(axis=1).mean())


def test_isotropic_exceedance_recounted(ds, results):
    d = ds.sizes["hidden"]
    p99 = 2 * stats.beta((d - 1) / 2, (d - 1) / 2).ppf(0.99) - 1
    a = _plug_in(ds, L1)
    idx = np.array([str(x) == "control" for x in ds["arm"].values])
    iso = results["headline"]["layers"][L1]["arms"]["control"]["null_p99"]["isotropic"]
    assert iso["p99"] == pytest.approx(p99, rel=1e-6)
    assert iso["n_pairs"] == idx.sum() * (ds.sizes["step"] - 1)
    assert iso["n_above"] == int(np.sum(a[idx, 1:] > p99))
    assert set(results["headline"]["layers"][L1]["arms"]["control"]["null_p99"]) == {
        "isotropic", "effective_dimension", "covariance_matched", "permutation"}


def test_effects_blocked_vs_control(ds, results):
    a = _plug_in(ds, L1)
    arm = np.array([str(x) for x in ds["arm"].values])
    blk, ctl = a[arm == "blocked", -1], a[arm == "control", -1]
    eff = results["headline"]["layers"][L1]["effects"]["blocked_vs_control"]
    diff = eff["final_alignment_difference"]
    ci = stats.ttest_ind(blk, ctl, equal_var=False).confidence_interval(0.95)
    assert diff["estimate"] == pytest.approx(blk.mean() - ctl.mean(), rel=1e-4)
    assert (diff["low"], diff["high"]) == pytest.approx((ci.low, ci.high), rel=1e-3)
    for key in ("final_alignment_hedges_g", "behavior_risk_difference", "behavior_risk_ratio",
                "task_noninferiority"):
        e = eff[key]
        assert e["method"] and e["low"] <= e["estimate"] <= e["high"], key
    assert eff["behavior_risk_difference"]["estimate"] < 0


def test_trend_spearman_stability_present(results):
    d = results["details"]["layers"][L1]
    assert d["trend"]["order"] == ["blocked", "control", "push"]
    assert d["trend"]["final_alignment"]["pvalue"] < 0.01
    assert d["spearman"]["estimate"] > 0 and d["spearman"]["n"] == 18
    assert d["spearman"]["seed"] == results["settings"]["seeds"]["spearman"]
    assert d["direction_stability"]["bootstrap_cosine"]["estimate"] > 0.9


def test_results_validate_against_schema_and_are_strict_json(results):
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    text = json.dumps(results, allow_nan=False)
    jsonschema.validate(json.loads(text), SCHEMA)
    assert results["results_schema"] == 1


def test_schema_rejects_a_broken_headline(results):
    bad = json.loads(json.dumps(results))
    del bad["headline"]["layers"][L1]["arms"]["control"]["alignment"][1]["sd"]
    with pytest.raises(jsonschema.ValidationError, match="'sd' is a required property"):
        jsonschema.validate(bad, SCHEMA)


def test_missing_pieces_are_skipped_with_reasons():
    ds = make_synthetic_store(arms=("control", "blocked"), behavior=False, task=False,
                              layers=("only",), runs_per_arm=4)
    r = analyze(ds, settings=FAST)
    pieces = {s["piece"]: s["reason"] for s in r["skipped"]}
    assert "no `behavior`" in pieces["behavior"]
    assert "no `task`" in pieces["task"]
    assert "push" in pieces["effects:push_vs_control"]
    assert "spearman" in pieces
    h = r["headline"]["layers"]["only"]
    assert h["arms"]["control"]["behavior_rate"] is None and h["arms"]["control"]["task"] is None
    assert set(h["effects"]["blocked_vs_control"]) == {"final_alignment_difference",
                                                       "final_alignment_hedges_g"}
    assert r["details"]["layers"]["only"]["trend"]["order"] == ["blocked", "control"]
    jsonschema.validate(json.loads(json.dumps(r, allow_nan=False)), SCHEMA)


def test_incomplete_slab_is_left_out_not_zero():
    ds = make_synthetic_store(seed=2, layers=("a",)).compute()
    ds["acts"][0, 2] = np.nan  # an unfinished (run, step) slab reads as NaN
    r = analyze(ds, settings=FAST)
    row = r["headline"]["layers"]["a"]["arms"]["control"]["alignment"][2]
    assert row["n_runs"] == 5 and row["mean"] is not None


def test_store_is_computed_once():
    ds = make_synthetic_store(seed=4, layers=("a",))
    starts = []

    class Count(Callback):
        def _start(self, dsk):
            starts.append(len(dsk))

    with Count():
        analyze(ds, settings=FAST)
    assert len(starts) == 1


def test_same_seed_same_numbers_other_seed_other_null_draws(ds):
    a = analyze(ds, layers=[L1], settings=FAST)
    b = analyze(ds, layers=[L1], settings=FAST)
    c = analyze(ds, layers=[L1], settings=AnalysisSettings(n_resamples=200, n_null_draws=400,
                                                           seed=4))
    assert json.dumps(a) == json.dumps(b)
    assert a["settings"]["seeds"] != c["settings"]["seeds"]


def test_paper_values_only_for_the_paper_preset():
    plain = analyze(make_synthetic_store(layers=("a",)), settings=FAST)
    paper = analyze(make_synthetic_store(layers=("a",), preset="paper-main-track"),
                    settings=FAST)
    assert not plain["paper_table"]["paper_preset"]
    assert all(r["paper"] is None for r in plain["paper_table"]["rows"])
    assert paper["paper_table"]["paper_preset"]
    rows = {r["key"]: r for r in paper["paper_table"]["rows"]}
    assert rows["alignment_first_update"]["paper"] == "0.429 ± 0.052"
    assert rows["alignment_step_20"]["revstats"] is not None


def test_validation_messages():
    ds = make_synthetic_store(layers=("a",))
    with pytest.raises(MissingDataError, match="no `witness` variable"):
        analyze(ds.drop_vars("witness"))
    with pytest.raises(ValueError, match="`layers` names"):
        analyze(ds, layers=["nope"])
    with pytest.raises(MissingDataError, match="no step 0"):
        analyze(ds.isel(step=slice(1, None)))
    with pytest.raises(TypeError, match="`ds` must be an xarray.Dataset"):
        analyze(ds["acts"])
    with pytest.raises(ValueError, match="`p_adjust` must be one of"):
        AnalysisSettings(p_adjust="fdr")
    with pytest.raises(ValueError, match="`n_resamples` must be at least 100"):
        AnalysisSettings(n_resamples=10)
    with pytest.raises(ValueError, match="`confidence` must lie strictly between"):
        AnalysisSettings(confidence=1.5)
    with pytest.raises(ValueError, match="`null_quantile` must lie in"):
        AnalysisSettings(null_quantile=0.2)
    with pytest.raises(ValueError, match="`seed` must be a non-negative integer"):
        AnalysisSettings(seed=-1)
    with pytest.raises(ValueError, match="`ni_margin_fraction` must be positive"):
        AnalysisSettings(ni_margin_fraction=0)
    with pytest.raises(ValueError, match="`ni_margin` must be a positive number"):
        AnalysisSettings(ni_margin=-1.0)


def test_noninferiority_margin_rules():
    ds = make_synthetic_store(layers=("a",))
    r = analyze(ds, settings=FAST)
    ni = r["headline"]["layers"]["a"]["effects"]["blocked_vs_control"]["task_noninferiority"]
    task = ds["task"].values
    ctl = np.array([str(x) == "control" for x in ds["arm"].values])
    gain = abs(task[ctl, -1].mean() - task[ctl, 0].mean())
    assert ni["margin"] == pytest.approx(0.2 * gain)
    assert "task change from step 0" in ni["margin_rule"]
    r2 = analyze(ds, settings=AnalysisSettings(n_resamples=200, n_null_draws=400, ni_margin=1e-6))
    ni2 = r2["headline"]["layers"]["a"]["effects"]["blocked_vs_control"]["task_noninferiority"]
    assert ni2["margin"] == 1e-6 and ni2["margin_rule"].startswith("stated")
    assert not ni2["noninferior"]  # a margin far below the noise cannot be shown


def test_dask_and_numpy_inputs_agree():
    lazy = make_synthetic_store(seed=5, layers=("a",), chunks={"run": 1, "step": 1})
    eager = lazy.compute()
    with dask.config.set(scheduler="synchronous"):
        a = analyze(lazy, settings=FAST)
    b = analyze(eager, settings=FAST)
    _assert_close(a["headline"], b["headline"])


def _assert_close(x, y, path="headline"):
    if isinstance(x, dict):
        assert x.keys() == y.keys(), path
        for k in x:
            _assert_close(x[k], y[k], f"{path}.{k}")
    elif isinstance(x, list):
        assert len(x) == len(y), path
        for i, (a, b) in enumerate(zip(x, y, strict=True)):
            _assert_close(a, b, f"{path}[{i}]")
    elif isinstance(x, float):
        assert y == pytest.approx(x, rel=1e-5, abs=1e-9), path
    else:
        assert x == y, path


def test_pipeline_import_is_light():
    import subprocess
    import sys

    code = ("import sys, analysis.pipeline, analysis.report; "
            "print([m for m in ('matplotlib', 'click', 'torch', 'sims') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2]).stdout.strip()
    assert out == "[]"


def test_per_run_witness():
    ds = make_synthetic_store(layers=("a",), runs_per_arm=4).compute()
    ds["witness"] = ds["witness"].expand_dims(run=ds["run"].values).copy()
    r = analyze(ds, settings=FAST)
    assert r["headline"]["layers"]["a"]["arms"]["control"]["final_alignment"]["mean"] > 0.9
    jsonschema.validate(json.loads(json.dumps(r, allow_nan=False)), SCHEMA)


def test_null_draws_in_run_blocks_give_the_same_results(ds, monkeypatch):
    # the Monte Carlo nulls are built a block of pairs at a time (bounded memory); with one pair
    # per block the seeded draws are the same, so every reported number must be too (up to
    # the rounding of a BLAS product over fewer columns: ~1e-18 in the q50 bands here)
    from revstats.analysis import pipeline

    whole = analyze(ds, layers=[L1], settings=FAST)
    monkeypatch.setattr(pipeline, "NULL_BLOCK_BYTES", 1)
    blocked = analyze(ds, layers=[L1], settings=FAST)
    arms = whole["headline"]["layers"][L1]["arms"]
    assert all({"covariance_matched", "permutation"} <= set(a["null_p99"]) for a in arms.values())
    _assert_close(whole["headline"], blocked["headline"])
    _assert_close(whole["details"], blocked["details"], "details")
