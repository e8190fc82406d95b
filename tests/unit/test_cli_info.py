from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from revstats.cli import main
from revstats.store import create_store


def _store(path):
    with create_store(path, runs=["a", "b"], layers=["l0"], examples=["x", "y"], hidden=3,
                      arms=["control", "blocked"], source="ingest", provenance={"k": 1}) as w:
        w.write_witness(np.ones((1, 2, 3)))
        w.write_slab("a", 0, np.zeros((1, 2, 3)))
        w.finish()  # run b's slab was never planned: the store is complete (issue 19.1)
    return path


def test_info_summarises_a_store(tmp_path):
    res = CliRunner().invoke(main, ["info", str(_store(tmp_path / "s.zarr")), "--check"])
    assert res.exit_code == 0, res.output
    assert "control: 1" in res.output and "blocked: 1" in res.output
    assert "every chunk verified" in res.output


def test_info_json_and_bad_path(tmp_path):
    res = CliRunner().invoke(main, ["info", str(_store(tmp_path / "s.zarr")), "--json"])
    assert res.exit_code == 0
    assert json.loads(res.output)["slabs_complete"] == 1
    res = CliRunner().invoke(main, ["info", str(tmp_path / "nope.zarr")])
    assert res.exit_code == 1 and "no store at" in res.output


def test_info_calls_an_unfinished_store_with_missing_slabs_incomplete(tmp_path):
    with create_store(tmp_path / "u.zarr", runs=["a", "b"], layers=["l0"], examples=["x"],
                      hidden=3, source="ingest", provenance={}, steps=[0]) as w:
        w.write_slab("a", 0, np.zeros((1, 1, 3)))
    res = CliRunner().invoke(main, ["info", str(tmp_path / "u.zarr")])
    assert res.exit_code == 1 and "incomplete" in res.output and "no problems" not in res.output


def test_every_command_help_has_an_example():
    runner = CliRunner()
    from revstats.cli import _COMMANDS

    for name in _COMMANDS:
        res = runner.invoke(main, [name, "--help"])
        assert res.exit_code == 0, (name, res.output)
        assert "Example" in res.output, f"`revstats {name} --help` has no example"


def test_info_clips_provenance_at_whole_words():
    from revstats.cli.info import _clip

    text = "revstats simulate --preset paper-main-track --runs 8 " * 10
    out = _clip(text, width=60)
    assert out.endswith(" …") and len(out) <= 62
    assert text.startswith(out[:-2].rstrip()) and out[:-2].rstrip().split()[-1] in text.split()
    assert _clip("short") == "short"
