"""`revstats analyze`, `report`, `demo` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from revstats.analysis.testing import write_synthetic_store
from revstats.cli import main
from revstats.scheduler import parse_scheduler

SCHEMA = json.loads((Path(__file__).parents[2] / "analysis" / "results.schema.json").read_text())
FAST = ["--n-resamples", "200"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    return {
        "full": write_synthetic_store(str(root / "full.zarr"), layers=("[bold red]L1 & co",),
                                      runs_per_arm=4),
        "nobeh": write_synthetic_store(str(root / "nobeh.zarr"), layers=("a",),
                                       behavior=False, runs_per_arm=4),
        "nowit": write_synthetic_store(str(root / "nowit.zarr"), layers=("a",),
                                       witness=False, runs_per_arm=4),
    }


@pytest.mark.parametrize("cmd", ["analyze", "report", "demo"])
def test_help_has_an_example(cmd):
    r = CliRunner().invoke(main, [cmd, "--help"])
    assert r.exit_code == 0, r.output
    assert "Example:" in r.output and f"revstats {cmd}" in r.output
    assert "--scheduler" in r.output


def test_analyze_prints_table_and_writes_valid_json(stores, tmp_path):
    out = tmp_path / "res.json"
    r = CliRunner().invoke(main, ["analyze", stores["full"], "--json", str(out), *FAST])
    assert r.exit_code == 0, r.output
    assert "blocked" in r.output and "control" in r.output and "cov-matched" in r.output
    assert "[bold red]L1 & co" in r.output  # rich markup in a layer name printed literally (the store refuses <, > and / in ids)
    data = json.loads(out.read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["store"]["path"] == stores["full"]
    assert data["settings"]["n_resamples"] == 200


def test_analyze_layer_option(stores):
    r = CliRunner().invoke(main, ["analyze", stores["full"], "--layer", "nope", *FAST])
    assert r.exit_code == 2
    assert "`layers` names ['nope']" in r.output and "[bold red]L1 & co" in r.output


def test_bad_store_path(tmp_path):
    r = CliRunner().invoke(main, ["analyze", str(tmp_path / "missing.zarr")])
    assert r.exit_code == 2
    assert "no store at" in r.output and "revstats simulate" in r.output


def test_not_a_store(tmp_path):
    (tmp_path / "junk").mkdir()
    r = CliRunner().invoke(main, ["report", str(tmp_path / "junk"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "revstats store" in r.output


def test_store_without_witness(stores):
    r = CliRunner().invoke(main, ["analyze", stores["nowit"]])
    assert r.exit_code == 2
    assert "no `witness`" in r.output and "write_witness" in r.output


def test_store_without_behaviour_is_analysed_and_says_what_was_skipped(stores, tmp_path):
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["analyze", stores["nobeh"], "--json", str(out), *FAST])
    assert r.exit_code == 0, r.output
    msg = " ".join(r.output.split())
    assert "no `behavior` variable" in msg and "behavior=..." in msg
    assert json.loads(out.read_text())["headline"]["layers"]["a"]["arms"]["control"][
        "behavior_rate"] is None


def test_report_writes_everything(stores, tmp_path):
    out = tmp_path / "rep"
    r = CliRunner().invoke(main, ["report", stores["full"], "--out", str(out), *FAST,
                                  "--scheduler", "synchronous"])
    assert r.exit_code == 0, r.output
    assert "report written to" in r.output
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "report.html", "results.json", "trajectory_layer0.png",
            "ablation_layer0.png", "scatter_layer0.png", "per_run_layer0.png"} <= names


def test_bad_scheduler(stores):
    r = CliRunner().invoke(main, ["analyze", stores["full"], "--scheduler", "gpu"])
    assert r.exit_code == 2 and "local:N" in r.output


@pytest.mark.parametrize(("spec", "parsed"), [
    ("threads", ("threads", None)), ("processes", ("processes", None)),
    ("local:3", ("local", 3)), ("tcp://10.0.0.1:8786", ("address", "tcp://10.0.0.1:8786")),
])
def test_parse_scheduler(spec, parsed):
    assert parse_scheduler(spec) == parsed


def test_parse_scheduler_errors():
    with pytest.raises(ValueError, match="local:N with N >= 1"):
        parse_scheduler("local:0")
    with pytest.raises(ValueError, match="`scheduler` must be"):
        parse_scheduler("cluster")
    with pytest.raises(TypeError, match="`scheduler` must be a string"):
        parse_scheduler(3)


def test_unreachable_tcp_scheduler(stores):
    r = CliRunner().invoke(main, ["analyze", stores["full"], "--scheduler",
                                  "tcp://127.0.0.1:9", *FAST])
    assert r.exit_code != 0
    assert "cannot reach the dask scheduler" in r.output


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["local:2", "processes"])
def test_other_schedulers(stores, tmp_path, scheduler):
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["analyze", stores["full"], "--scheduler", scheduler,
                                  "--json", str(out), *FAST])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["results_schema"] == 1
