"""Stores written before schema 2 (no digest manifest) still open, say so, and analyse."""

from __future__ import annotations

import json
import shutil

import numpy as np
import zarr

from revstats.store import create_store, describe_store, open_store, open_writer, verify_store


def _schema1_store(path):
    """A store as revstats wrote it before schema 2: no `digest` array, version 1."""
    rng = np.random.default_rng(0)
    with create_store(path, runs=["a", "b"], layers=["l0"], examples=["e0", "e1", "e2"], hidden=8,
                      steps=[0, 1], source="ingest", provenance={},
                      task={"metric": "loss", "higher_is_better": False}) as w:
        w.write_witness(rng.normal(size=(1, 3, 8)))
        for r in ("a", "b"):
            for s in (0, 1):
                w.write_slab(r, s, rng.normal(size=(1, 3, 8)), behavior=[0, 1, 0], task=0.5)
    shutil.rmtree(path / "digest")
    g = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    attrs = dict(g.attrs)
    for k in ("finished", "witness_digests"):
        attrs.pop(k, None)
    attrs["revstats_schema"] = 1
    g.attrs.clear()
    g.attrs.update(attrs)
    zarr.consolidate_metadata(str(path))
    return path


def test_schema1_store_opens_reads_and_verifies(tmp_path):
    path = _schema1_store(tmp_path / "old.zarr")
    ds = open_store(path)
    assert ds.attrs["revstats_schema"] == 1
    assert "schema 1 store" in ds.attrs["revstats_notes"]
    assert np.isfinite(ds["acts"].values).all()
    assert verify_store(path) == []
    info = describe_store(path)
    assert info["problems"] == [] and info["place_binding"] is False and info["incomplete"] is None


def test_appending_to_a_schema1_store_keeps_its_format(tmp_path):
    path = _schema1_store(tmp_path / "old.zarr")
    with open_writer(path) as w:
        w.write_slab("a", 2, np.ones((1, 3, 8)), behavior=[1, 1, 1], task=0.1)
    meta = json.loads((path / "zarr.json").read_text())
    assert meta["attributes"]["revstats_schema"] == 1
    assert not (path / "digest").exists()
    ds = open_store(path)
    assert float(ds["acts"].sel(run="a", step=2).max()) == 1.0
    assert verify_store(path) == []
