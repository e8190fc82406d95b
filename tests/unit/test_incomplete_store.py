"""Issue 19.1: an interrupted store is reported as incomplete with the command that resumes
it; analyze/report refuse it, or analyse its complete part with --allow-incomplete."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from revstats.cli import main
from revstats.store import describe_store, open_store

ARGS = ["--runs", "2", "--steps", "20", "--hidden", "64"]


@pytest.fixture
def interrupted(tmp_path, monkeypatch):
    import revstats.store as store

    out = str(tmp_path / "half.zarr")
    real = store.write_dataset

    def stop_after_two_runs(*a, **kw):
        inner = kw.get("progress")

        def progress(done, total):
            if inner is not None:
                inner(done, total)
            if done == 2:
                raise KeyboardInterrupt  # as Ctrl-C would, between two runs
        kw["progress"] = progress
        return real(*a, **kw)

    monkeypatch.setattr(store, "write_dataset", stop_after_two_runs)
    monkeypatch.setattr("sys.argv", ["revstats", "simulate", *ARGS, "--out", out])
    res = CliRunner().invoke(main, ["simulate", *ARGS, "--out", out])
    assert res.exit_code != 0
    monkeypatch.setattr(store, "write_dataset", real)
    return out


def test_info_says_incomplete_and_how_to_resume(interrupted):
    res = CliRunner().invoke(main, ["info", interrupted])
    text = " ".join(res.output.split())
    assert res.exit_code == 1, text
    assert "no problems found" not in text
    assert "incomplete" in text
    assert f"rerunning exactly: revstats simulate {' '.join(ARGS)} --out {interrupted}" in text
    gap = describe_store(interrupted)["incomplete"]
    assert gap["n_missing"] > 0 and gap["resume"].startswith("resume it by rerunning")


def test_analyze_refuses_then_allow_incomplete_analyses_the_complete_runs(interrupted, tmp_path):
    res = CliRunner().invoke(main, ["analyze", interrupted, "--n-resamples", "100"])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in text, text
    assert "incomplete" in text and "--allow-incomplete" in text
    out = tmp_path / "r.json"
    res = CliRunner().invoke(main, ["analyze", interrupted, "--n-resamples", "100",
                                    "--allow-incomplete", "--json", str(out)])
    text = " ".join(res.output.split())
    assert res.exit_code == 0, text
    assert "left out" in text and "slab(s) missing" in text
    results = json.loads(out.read_text())
    ds = open_store(interrupted)
    n_complete_runs = int(ds["complete"].values.all(axis=1).sum())
    assert 0 < n_complete_runs < ds.sizes["run"]
    assert results["store"]["sizes"]["run"] == n_complete_runs


def test_rerunning_the_command_finishes_the_store(interrupted):
    res = CliRunner().invoke(main, ["simulate", *ARGS, "--out", interrupted])
    assert res.exit_code == 0, res.output
    assert describe_store(interrupted)["incomplete"] is None
    assert CliRunner().invoke(main, ["info", interrupted]).exit_code == 0
