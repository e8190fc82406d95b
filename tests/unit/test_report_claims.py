"""The report claims only what the data show (issue 13.2, 13.6-13.10; 19.5; 18.8 / 19.7).

Each test fails on the pre-stage code: pooled-only behaviour intervals, an isotropic-only paper
row, an ordering printed from the JT p alone, a pooled-only Spearman, no adjustment across
layers and the first layer as headline, no calibration disclosure, a report without its answer
first, a wrong skip reason, and a terminal table that leads with the isotropic null.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from rich.console import Console
from scipy import stats
from statsmodels.stats.multitest import multipletests

from revstats.analysis.pipeline import AnalysisSettings, analyze
from revstats.analysis.report import render_html, render_markdown
from revstats.analysis.testing import make_synthetic_store

SCHEMA = json.loads((Path(__file__).parents[2] / "analysis" / "results.schema.json").read_text())
FAST = AnalysisSettings(n_resamples=200, n_null_draws=400, seed=3)
LAYERS = ("hidden_states.0", "hidden_states.1", "hidden_states.2")


@pytest.fixture(scope="module")
def ds():
    return make_synthetic_store(layers=LAYERS, runs_per_arm=8, seed=4).compute()


@pytest.fixture(scope="module")
def res(ds):
    r = analyze(ds, settings=FAST)
    jsonschema.validate(json.loads(json.dumps(r, allow_nan=False)), SCHEMA)
    return r


@pytest.fixture(scope="module")
def flat_push():
    """push drawn like a weaker control: the order blocked < control < push does NOT hold."""
    ds = make_synthetic_store(arms=("control", "blocked", "other"), layers=("hidden_states.1",),
                              runs_per_arm=8, seed=5).compute()
    ds = ds.assign_coords(arm=("run", ["push" if a == "other" else str(a)
                                       for a in ds["arm"].values]))
    return analyze(ds, settings=FAST)


def _counts(ds, arm):
    b = ds["behavior"].isel(step=-1).values
    idx = np.array([str(a) == arm for a in ds["arm"].values])
    return b[idx].sum(axis=1), np.full(idx.sum(), b.shape[-1])


# ---- 13.2 behaviour comparisons: runs as clusters lead, pooled labelled
def test_behaviour_effects_lead_with_runs_as_clusters(ds, res):
    from revstats.intervals import cluster_rate_comparison

    eff = res["headline"]["layers"]["hidden_states.1"]["effects"]["blocked_vs_control"]
    (k1, n1), (k2, n2) = _counts(ds, "blocked"), _counts(ds, "control")
    want = cluster_rate_comparison(k1, n1, k2, n2)
    rd = eff["behavior_risk_difference"]
    assert "runs as clusters" in rd["method"]
    assert (rd["estimate"], rd["low"], rd["high"]) == pytest.approx(
        (want.estimate, want.low, want.high))
    assert rd["n_runs"] == [8, 8]
    assert "probes independent" in eff["behavior_risk_difference_pooled"]["method"]
    assert "runs as clusters" in eff["behavior_risk_ratio"]["method"]
    assert "probes independent" in eff["behavior_risk_ratio_pooled"]["method"]
    for arm in ("blocked", "control", "push"):
        b = res["headline"]["layers"]["hidden_states.1"]["arms"][arm]["behavior_rate"]
        assert "runs as clusters" in b["method"] and 0 <= b["low"] <= b["high"] <= 1
        assert 0 <= b["run_mean_ci"]["low"] <= b["run_mean_ci"]["high"] <= 1
        assert "probes independent" in b["pooled_ci"]["method"]


# ---- 13.6 the paper-table row with the isotropic null carries the matched nulls
def test_paper_row_carries_matched_nulls(res):
    row = next(r for r in res["paper_table"]["rows"] if r["key"] == "isotropic_p99_exceedance")
    assert "isotropic" in row["revstats"]
    assert "covariance-matched" in row["revstats"] and "permutation" in row["revstats"]


# ---- 13.7 ordering stated only when each step holds
def test_ordering_pairwise_and_stated_only_when_each_step_holds(res, flat_push, ds):
    tr = res["details"]["layers"]["hidden_states.1"]["trend"]["final_alignment"]
    assert [p["contrast"] for p in tr["pairwise"]] == ["control - blocked", "push - control"]
    for p in tr["pairwise"]:
        assert p["holds"] == (p["low"] > 0)
    assert tr["ordering_holds"] == all(p["holds"] for p in tr["pairwise"])
    bad = flat_push["details"]["layers"]["hidden_states.1"]["trend"]
    for key in ("final_alignment", "behavior_rate"):
        t = bad[key]
        assert not t["ordering_holds"] and "not established" in t["statement"]
        assert t["pairwise"][0]["holds"] and not t["pairwise"][1]["holds"]
        assert "one large gap" in t["what_it_measures"]
    row = next(r for r in flat_push["paper_table"]["rows"]
               if r["key"] == "spearman_alignment_behavior")
    assert "order not established" in row["revstats"]
    assert "order holds" not in row["revstats"]
    md = render_markdown(flat_push, [])
    assert "is not established" in md


# ---- 13.8 within-arm Spearman
def test_spearman_within_arm_and_pooled_labelled(ds, res):
    sp = res["details"]["layers"]["hidden_states.1"]["spearman"]
    assert "pooled over runs of every arm" in sp["what_it_measures"]
    per_run = res["details"]["layers"]["hidden_states.1"]["per_run"]
    arms = np.array(per_run["arm"])
    x = np.array([row[-1] for row in per_run["alignment"]], float)
    y = np.array([row[-1] for row in per_run["behavior_rate"]], float)
    for arm in ("blocked", "control", "push"):
        m = arms == arm
        assert sp["within_arm"][arm]["estimate"] == pytest.approx(
            stats.spearmanr(x[m], y[m]).statistic)
        assert sp["within_arm"][arm]["n"] == int(m.sum())


# ---- 13.9 multiplicity across layers, headline layer by a stated rule
def test_pvalues_adjusted_across_layers_and_tests(res):
    mult = res["multiplicity"]
    p = np.array([t["pvalue"] for t in mult["tests"]])
    assert mult["n_tests"] == len(p) > 3 * 3  # several tests in each of 3 layers
    assert {t["layer"] for t in mult["tests"]} >= set(LAYERS)
    want = multipletests(p, method="holm")[1]
    np.testing.assert_allclose([t["pvalue_adjusted"] for t in mult["tests"]], want)
    e = res["headline"]["layers"]["hidden_states.2"]["effects"]["blocked_vs_control"]
    d = e["final_alignment_difference"]
    t = next(t for t in mult["tests"]
             if t["layer"] == "hidden_states.2"
             and t["test"] == "effects:blocked_vs_control:final_alignment_difference")
    assert d["pvalue_adjusted_layers"] == pytest.approx(t["pvalue_adjusted"])
    # behaviour does not depend on the layer: one test, the same adjusted p in every layer
    rd = [res["headline"]["layers"][x]["effects"]["blocked_vs_control"]
          ["behavior_risk_difference"]["pvalue_adjusted_layers"] for x in LAYERS]
    assert rd[0] is not None and rd == [rd[0]] * 3
    assert sum(t["test"] == "effects:blocked_vs_control:behavior_risk_difference"
               for t in mult["tests"]) == 1


def test_headline_layer_is_never_the_embedding_output_by_default(ds, res):
    assert res["headline_layer"]["layer"] == "hidden_states.2"
    assert "embedding output" in res["headline_layer"]["rule"]
    assert res["paper_table"]["layer"] == "hidden_states.2"
    assert "hidden_states.2" in render_markdown(res, []).split("## Store")[0]
    chosen = analyze(ds, layers=list(LAYERS[:2]),
                     settings=AnalysisSettings(n_resamples=200, n_null_draws=200,
                                               headline_layer="hidden_states.0"))
    assert chosen["headline_layer"] == {"layer": "hidden_states.0",
                                        "rule": "chosen by the user (--headline-layer)"}
    with pytest.raises(ValueError, match="headline_layer"):
        analyze(ds, layers=["hidden_states.1"],
                settings=AnalysisSettings(n_resamples=200, n_null_draws=200,
                                          headline_layer="hidden_states.2"))


# ---- 13.10 calibration disclosure with k from the data
def test_calibration_note_beside_published_values():
    from revstats.analysis.paper import PAPER_SDS

    ds = make_synthetic_store(layers=("L",), runs_per_arm=6, steps=(0, 1, 2, 5, 10, 20),
                              preset="paper-main-track", seed=2).compute()
    r = analyze(ds, settings=FAST)
    pt = r["paper_table"]
    assert pt["paper_preset"]
    arms = r["headline"]["layers"]["L"]["arms"]
    want = {"alignment_step_20:control":
            next(x for x in arms["control"]["alignment"] if x["step"] == 20)["sd"] / 0.021,
            "final_alignment_control_to_blocked:blocked":
            arms["blocked"]["final_alignment"]["sd"] / 0.021}
    for key, v in want.items():
        assert pt["sd_ratio_to_paper"][key] == pytest.approx(v)
    ratios = pt["sd_ratio_to_paper"].values()
    assert len(pt["sd_ratio_to_paper"]) == len(PAPER_SDS)
    assert "tuned so that its means land on the paper's" in pt["calibration_note"]
    assert f"{min(ratios):.1f}-{max(ratios):.1f} times the paper's" in pt["calibration_note"]
    for text in (render_markdown(r, []), render_html(r, [])):
        assert "tuned so that its means land on the paper&#x27;s" in text or \
               "tuned so that its means land on the paper's" in text


def test_no_calibration_note_when_not_the_preset(res):
    assert res["paper_table"]["calibration_note"] is None
    assert "tuned so that" not in render_markdown(res, [])


# ---- 19.5 the report opens with its answer
def test_report_opens_with_a_conclusion(res):
    md = render_markdown(res, [])
    first = md.split("\n## ")[1]
    assert first.startswith("Conclusion")
    para = first.split("\n\n")[1]
    assert "Tested:" in para and "covariance-matched" in para and "Blocking changed" in para
    assert "[" in para and "Caveats:" in para
    assert md.index("## Conclusion") < md.index("|")  # before any table
    assert "'max holm-adjusted p' is the largest of those adjusted p-values" in md


def test_noninferiority_row_digits_and_sign_convention(res):
    md = render_markdown(res, [])
    row = next(line for line in md.splitlines() if "task noninferiority" in line)
    assert "treatment − control, sign set so that larger is better" in row
    e = res["headline"]["layers"]["hidden_states.1"]["effects"]["blocked_vs_control"][
        "task_noninferiority"]
    assert f"{e['estimate']:.3g}" in row and f"{e['margin']:.3g}" in row


def test_skip_reason_names_the_missing_arm():
    ds = make_synthetic_store(arms=("control", "blocked"), layers=("a",), runs_per_arm=4).compute()
    r = analyze(ds, settings=FAST)
    reason = next(s["reason"] for s in r["skipped"] if s["piece"] == "effects:push_vs_control")
    assert reason.startswith("the store has no `push` arm") and "`control`" not in reason


def test_terminal_says_why_effects_were_skipped(tmp_path):
    from click.testing import CliRunner

    from revstats.analysis.testing import write_synthetic_store
    from revstats.cli import main

    store = write_synthetic_store(str(tmp_path / "one.zarr"), layers=("a",), runs_per_arm=1)
    out = CliRunner().invoke(main, ["analyze", store, "--n-resamples", "200"])
    assert out.exit_code == 0, out.output
    assert "blocked vs control, alignment skipped: fewer than 2 runs in an arm" in out.output


# ---- 18.8 / 19.7 terminal: nulls side by side, 80 columns
def _terminal(results, width=80):
    from revstats.cli.analysis import _headline_tables

    buf = io.StringIO()
    con = Console(width=width, file=buf, highlight=False, color_system=None)
    for t in _headline_tables(results):
        con.print(t)
    return buf.getvalue()


def test_terminal_table_fits_80_columns_with_nulls_side_by_side(res):
    out = _terminal(res)
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80
    header = next(line for line in out.splitlines() if "isotropic" in line and "arm" in line)
    for name in ("cov-matched", "permutation", "eff-dim"):
        assert name in header
    # no numeric cell is folded onto a second line: every arm row is one line
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*(blocked|control|push)\s{2,}\S", line):
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            assert not re.match(r"^\s{8,}\S", nxt), (line, nxt)  # no cell continues below
    n_rows = sum(bool(re.match(r"^\s*(blocked|control|push)\s{2,}\S", x)) for x in lines)
    assert n_rows == 3 * 3 * len(LAYERS)  # alignment, rates, nulls: one line per arm


# ---- fields infer-core adds: p floor, approximate nulls, the alignment interval's method
def test_renders_p_floor_approximate_and_interval_method(res):
    r = json.loads(json.dumps(res))
    for e in (e for h in r["headline"]["layers"].values() for e in h["arms"].values()):
        cm = e["null_p99"]["covariance_matched"]
        cm["p_floor"] = 0.0021  # 40 pairs x 0.0021 = 0.084 after Holm
        cm["min_adjusted_pvalue"] = 0.084
        cm["n_significant_adjusted"] = 0
        e["null_p99"]["effective_dimension"].update(
            approximate=True, note="the effective-dimension null is approximate: "
                                   "anti-conservative when v_rev lies in high-variance directions")
        e["final_alignment"]["method"] = "crossed-design bootstrap (probes x runs)"
        e["final_alignment"]["conditional_on"] = "the probe set"
    md = render_markdown(r, [])
    assert "p floor 0.084 binds" in md
    assert "n/a (approximate null)" in md and "anti-conservative when v_rev" in md
    assert "crossed-design bootstrap (probes x runs), conditional on the probe set" in md
    out = _terminal(r)
    flat = " ".join(out.split())
    assert "approx" in out and "* p floor 0.084" in flat and "binds" in flat
    cell = next(line for line in out.splitlines()
                if line.strip().startswith("control") and "/" in line)
    assert "approx" in cell
    from revstats.analysis.paper import paper_table

    row = next(x["revstats"] for x in paper_table(r)["rows"]
               if x["key"] == "isotropic_p99_exceedance")
    assert "effective-dimension" in row and "(approximate null)" in row
