"""Integrity: `revstats info --check` / `verify_store` find corrupt and missing pieces, name the
run/step/layer, and nothing corrupt is ever read as numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import revstats.store as store_mod
from revstats.cli import main
from revstats.errors import SchemaError
from revstats.store import create_store, open_store, open_writer, verify_store

LAYERS = ["L0", "L1"]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """2 runs x 2 steps, one chunk per layer (so a problem can be pinned to a layer)."""
    monkeypatch.setattr(store_mod, "MAX_CHUNK_BYTES", 6 * 16 * 4)
    path = tmp_path / "s.zarr"
    rng = np.random.default_rng(0)
    with create_store(path, runs=["r0", "r1"], layers=LAYERS, examples=[f"e{i}" for i in range(6)],
                      hidden=16, steps=[0, 1], source="ingest", provenance={},
                      task={"metric": "loss"}) as w:
        w.write_witness(rng.normal(size=(2, 6, 16)))
        for r in ("r0", "r1"):
            for s in (0, 1):
                w.write_slab(r, s, rng.normal(size=(2, 6, 16)), behavior=np.zeros(6), task=1.0)
    return path


def _flip(path: Path, offset: int = 10) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def _truncate(path: Path) -> None:
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2])


# (damage, text `info --check` must print)
CASES = {
    "flipped bit in acts chunk": (lambda p: _flip(p / "acts/c/0/1/1/0/0"),
                                  r"`acts` run=r0 step=1 layer\(s\) \['L1'\]: chunk unreadable or corrupt"),
    "truncated acts chunk": (lambda p: _truncate(p / "acts/c/1/0/0/0/0"),
                             r"`acts` run=r1 step=0 layer\(s\) \['L0'\]: chunk unreadable"),
    "missing acts chunk file": (lambda p: (p / "acts/c/1/0/1/0/0").unlink(),
                                r"`acts` run=r1 step=0 layer\(s\) \['L1'\]: chunk unreadable .*missing although its slab is complete"),
    "flipped bit in behavior chunk": (lambda p: _flip(p / "behavior/c/0/1/0", 3),
                                      r"`behavior` run=r0 step=1: chunk unreadable or corrupt"),
    "flipped bit in task chunk": (lambda p: _flip(p / "task/c/1/1", 3),
                                  r"`task` run=r1 step=1: chunk unreadable or corrupt"),
    "flipped bit in witness chunk": (lambda p: _flip(p / "witness/c/0/0/0", 3),
                                     r"`witness`: chunk unreadable or corrupt"),
    "missing witness chunk": (lambda p: (p / "witness/c/1/0/0").unlink(),
                              r"`witness`: chunk unreadable .* chunk file .* is missing"),
    "garbage complete marker": (lambda p: (p / "complete/c/0/0").write_bytes(b"\x07garbage"),
                                r"`complete` markers unreadable or corrupt"),
    "truncated root zarr.json": (lambda p: _truncate(p / "zarr.json"),
                                 r"root metadata document .* is truncated or corrupt"),
    "truncated acts/zarr.json": (lambda p: _truncate(p / "acts/zarr.json"),
                                 r"`acts` metadata document .* is truncated or corrupt"),
    "deleted complete/zarr.json": (lambda p: (p / "complete/zarr.json").unlink(),
                                   r"`complete`: metadata missing"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_info_check_names_the_damage(store, case):
    damage, message = CASES[case]
    assert verify_store(store) == []
    damage(store)
    res = CliRunner().invoke(main, ["info", str(store), "--check", "--json"])
    assert res.exit_code == 1, res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit)
    import json
    import re

    problems = json.loads(res.stdout)["problems"]  # stderr (warnings) is not part of the JSON
    assert any(re.search(message, p) for p in problems), problems


def test_corrupt_chunk_is_never_read_as_numbers(store):
    _flip(store / "acts/c/0/1/1/0/0")
    ds = open_store(store)
    np.asarray(ds["acts"].sel(run="r0", step=1, layer="L0"))  # the intact layer still reads
    with pytest.raises(ValueError, match="checksum"):
        np.asarray(ds["acts"].sel(run="r0", step=1, layer="L1"))


def test_truncated_root_metadata_is_a_schema_error_for_readers_and_writers(store):
    _truncate(store / "zarr.json")
    with pytest.raises(SchemaError, match="root metadata document .* truncated or corrupt"):
        open_store(store)
    with pytest.raises(SchemaError, match="truncated or corrupt"):
        open_writer(store)


def test_leftover_partial_files_of_a_killed_write_are_harmless(store):
    # zarr writes through `<name>.<uuid>.partial` + rename; a kill can leave such a file behind
    (store / "acts/c/0/1/0/0/0.deadbeef.partial").write_bytes(b"half a chunk")
    (store / "zarr.json.deadbeef.partial").write_bytes(b'{"zarr_for')
    assert verify_store(store) == []
    assert open_store(store)["complete"].values.all()
    with open_writer(store) as w:
        w.write_slab("r0", 2, np.ones((2, 6, 16)))
    assert verify_store(store) == []


def test_killed_creation_is_recovered_and_other_dirs_are_not_touched(tmp_path):
    path = tmp_path / "s.zarr"
    path.mkdir()
    (path / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    (path / "acts").mkdir()  # what create_store leaves when killed before its attributes
    with create_store(path, runs=["a"], layers=["l"], examples=["x"], hidden=2, source="ingest",
                      provenance={}) as w:
        w.write_slab("a", 0, np.ones((1, 1, 2)))
    assert open_store(path)["complete"].values.all()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    (other / "notes.txt").write_text("user data")
    with pytest.raises(Exception, match="exists and is not empty"):
        create_store(other, runs=["a"], layers=["l"], examples=["x"], hidden=2, source="ingest",
                     provenance={})
    assert (other / "notes.txt").exists()


def test_resume_refuses_a_store_created_differently(tmp_path):
    kw = dict(runs=["a"], layers=["l"], examples=["x"], hidden=2, steps=[0, 1], source="ingest")
    create_store(tmp_path / "s.zarr", provenance={"seed": 1}, **kw).close()
    with pytest.raises(Exception, match="created with different provenance"):
        create_store(tmp_path / "s.zarr", provenance={"seed": 2}, resume=True, **kw)
    with pytest.raises(Exception, match="created with different hidden"):
        create_store(tmp_path / "s.zarr", provenance={"seed": 1}, resume=True, **{**kw, "hidden": 3})
    with create_store(tmp_path / "s.zarr", provenance={"seed": 1}, resume=True, **kw) as w:
        assert not w.completed().any()
