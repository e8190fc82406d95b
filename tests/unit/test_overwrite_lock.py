"""Issue 14.1: `--overwrite` takes the single-writer lock first. While another writer holds a
store, every writer command refuses cleanly (exit 2, "open by another writer") and the
holder's data are untouched."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from revstats.cli import main
from revstats.errors import RevstatsError
from revstats.store import create_store, open_store, open_writer, verify_store


def _store(path):
    with create_store(path, runs=["a"], layers=["l0"], examples=["e0", "e1"], hidden=4,
                      steps=[0, 1], source="ingest", provenance={}) as w:
        w.write_witness(np.ones((1, 2, 4)))
        w.write_slab("a", 0, np.full((1, 2, 4), 3.0))
    return str(path)


def test_create_with_overwrite_refuses_while_another_writer_holds_the_store(tmp_path):
    path = _store(tmp_path / "s.zarr")
    with open_writer(path) as holder:
        with pytest.raises(RevstatsError, match="open by another writer"):
            create_store(path, runs=["x"], layers=["l"], examples=["e"], hidden=2,
                         source="ingest", provenance={}, overwrite=True)
        holder.write_slab("a", 1, np.full((1, 2, 4), 4.0))  # the holder keeps working
    assert verify_store(path) == []
    ds = open_store(path)
    assert ds["acts"].sel(run="a", step=1).values.max() == 4.0


def test_overwrite_never_deletes_a_directory_that_is_not_a_store(tmp_path):
    d = tmp_path / "home"
    d.mkdir()
    (d / "thesis.tex").write_text("years of work")
    with pytest.raises(RevstatsError, match="not a store"):
        create_store(d, runs=["x"], layers=["l"], examples=["e"], hidden=2, source="ingest",
                     provenance={}, overwrite=True)
    assert (d / "thesis.tex").read_text() == "years of work"


def _ingest_args(tmp_path, out):
    rng = np.random.default_rng(0)
    src = tmp_path / "log.npz"
    np.savez(src, acts=rng.normal(size=(1, 2, 1, 2, 4)).astype(np.float32),
             base=rng.normal(size=(1, 2, 4)).astype(np.float32))
    return ["ingest", str(src), "--out", out, "--acts-key", "acts", "--acts-dims",
            "run,step,layer,example,hidden", "--witness-key", "base", "--witness-dims",
            "layer,example,hidden", "--overwrite"]


def _commands(tmp_path, out):
    (tmp_path / "p.txt").write_text("hello\n")
    return {
        "simulate": ["simulate", "--runs", "2", "--steps", "20", "--hidden", "64", "--out", out,
                     "--overwrite"],
        "ingest": _ingest_args(tmp_path, out),
        "organism": ["organism", "--profile", "quick", "--out", out, "--overwrite",
                     "--no-progress"],
        "capture": ["capture", "--witness", str(tmp_path / "m"), "--aligned", str(tmp_path / "m"),
                    "--runs", str(tmp_path / "runs" / "*"), "--probes", str(tmp_path / "p.txt"),
                    "--layers", "0", "--out", out, "--overwrite", "--quiet"],
    }


@pytest.mark.parametrize("command", ["simulate", "ingest", "organism", "capture"])
def test_every_writer_command_refuses_overwrite_of_a_held_store(tmp_path, command):
    path = _store(tmp_path / "s.zarr")
    args = _commands(tmp_path, path)[command]
    if command in ("capture", "organism"):
        pytest.importorskip("torch")
        pytest.importorskip("transformers")
    if command == "capture":
        from revstats.capture._tiny import build_tiny_model

        build_tiny_model("gpt2", tmp_path / "m", seed=0)
        build_tiny_model("gpt2", tmp_path / "runs" / "r0" / "checkpoint-1", seed=1,
                         with_tokenizer=False)
    with open_writer(path):
        res = CliRunner().invoke(main, args)
    out = " ".join(res.output.split())
    assert res.exit_code == 2, out
    assert "Traceback" not in res.output
    assert "open by another writer" in out, out
    assert verify_store(path) == []
    assert open_store(path)["acts"].sel(run="a", step=0).values.max() == 3.0


def test_demo_overwrite_refuses_a_held_store(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    path = _store(out / "store.zarr")
    with open_writer(path):
        res = CliRunner().invoke(main, ["demo", "--out", str(out), "--runs", "2", "--steps", "20",
                                        "--hidden", "64", "--n-resamples", "100", "--overwrite"])
    assert res.exit_code == 2, res.output
    assert "open by another writer" in " ".join(res.output.split())
    assert open_store(path)["acts"].sel(run="a", step=0).values.max() == 3.0
