"""`revstats demo` end to end: simulate the paper preset, analyse, report; the promised numbers.

Tolerances are the simulator's documented ones (tests/unit/test_sims_presets.py, issue 4):
alignment after the first update within ±0.052 of 0.429, by step 20 within ±0.021 of 0.647,
every control run-step pair above the isotropic p99, blocked final alignment in (-0.3, -0.1),
behaviour 19% ± 4 points (control) and 8.5% ± 3 points (blocked). The hidden size is reduced
(256): the simulator's readout is an isometric embedding, so the cosines do not depend on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from revstats.cli import main

pytest.importorskip("revstats.sims", reason="the simulator package `sims` is not installed")

SCHEMA = json.loads((Path(__file__).parents[2] / "analysis" / "results.schema.json").read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("empty")
    assert list(cwd.iterdir()) == []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)  # the default --out is relative: ./revstats-demo
        r = CliRunner().invoke(main, ["demo", "--hidden", "256", "--n-resamples", "500"])
    out = cwd / "revstats-demo"
    return r, out, json.loads((out / "results.json").read_text()) if out.exists() else None


def _at(rows, step):
    return next(x for x in rows if x["step"] == step)


def test_demo_writes_the_report_and_says_where(demo):
    r, out, _ = demo
    assert r.exit_code == 0, r.output
    assert "report:" in r.output and "report.html" in r.output
    names = {p.name for p in out.iterdir()}
    assert {"store.zarr", "report.md", "report.html", "results.json", "trajectory_layer0.png",
            "per_run_layer0.png", "ablation_layer0.png", "scatter_layer0.png"} <= names
    assert not [n for n in names if n.startswith(".")]  # no staging left behind


def test_demo_results_are_the_promised_numbers(demo):
    _, _, res = demo
    jsonschema.validate(res, SCHEMA)
    assert res["store"]["preset"] == "paper-main-track"
    assert res["store"]["arms"] == {"blocked": 24, "control": 24, "push": 24}
    layer = res["settings"]["layers"][0]
    arms = res["headline"]["layers"][layer]["arms"]
    c, b = arms["control"], arms["blocked"]
    assert abs(_at(c["alignment"], 1)["mean"] - 0.429) < 0.052
    assert abs(_at(c["alignment"], 20)["mean"] - 0.647) < 0.021
    iso = c["null_p99"]["isotropic"]
    assert iso["n_pairs"] > 0 and iso["n_above"] == iso["n_pairs"]
    assert iso["n_above_first_step"] == iso["n_runs_first_step"] == 24
    assert -0.3 < b["final_alignment"]["mean"] < -0.1
    assert b["final_alignment"]["high"] < 0
    assert abs(c["behavior_rate"]["mean"] - 0.19) < 0.04
    assert abs(b["behavior_rate"]["mean"] - 0.085) < 0.03
    eff = res["headline"]["layers"][layer]["effects"]["blocked_vs_control"]
    assert eff["behavior_risk_difference"]["high"] < 0
    assert eff["final_alignment_difference"]["high"] < 0
    assert eff["task_noninferiority"]["noninferior"]


def test_demo_paper_table_side_by_side(demo):
    _, out, res = demo
    assert res["paper_table"]["paper_preset"] is True
    rows = {r["key"]: r for r in res["paper_table"]["rows"]}
    assert rows["isotropic_p99_exceedance"]["paper"] == "24 of 24"
    assert rows["alignment_step_20"]["revstats"].startswith("0.6")
    md = (out / "report.md").read_text()
    assert "0.648 ± 0.009 → −0.211 ± 0.021" in md
