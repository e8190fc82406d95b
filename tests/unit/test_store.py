"""The activation store: round trips, dtype policy, schema errors, atomic appends, locking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zarr

from revstats.errors import CorruptStoreError, RevstatsError, SchemaError
from revstats.store import (
    create_store,
    describe_store,
    open_store,
    open_writer,
    verify_store,
    write_dataset,
)

LAYERS = ["layer.0", "layer.1"]
EXAMPLES = [f"p{i}" for i in range(6)]
H = 16


def _new(path, **kw):
    args = dict(
        runs=["r0", "r1"], layers=LAYERS, examples=EXAMPLES, hidden=H, steps=[0, 1, 2],
        arms=["control", "blocked"], seeds=[10, 11], behavior=True,
        task={"metric": "loss", "higher_is_better": False}, source="simulator",
        provenance={"command": "test"},
    )
    args.update(kw)
    return create_store(path, **args)


def _slab(rng, dtype=np.float32):
    return rng.normal(size=(len(LAYERS), len(EXAMPLES), H)).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_round_trip_is_exact(tmp_path, dtype):
    rng = np.random.default_rng(0)
    path = tmp_path / "s.zarr"
    slabs = {(r, s): _slab(rng, dtype) for r in ("r0", "r1") for s in (0, 1, 2)}
    witness = _slab(rng, dtype)
    with _new(path, dtype=dtype) as w:
        w.write_witness(witness)
        for (r, s), x in slabs.items():
            w.write_slab(r, s, x, behavior=(x[0, :, 0] > 0).astype(float), task=float(s))
    ds = open_store(path)
    assert ds["acts"].dtype == np.dtype(dtype)
    for (r, s), x in slabs.items():
        np.testing.assert_array_equal(ds["acts"].sel(run=r, step=s).values, x)
        np.testing.assert_array_equal(ds["behavior"].sel(run=r, step=s).values, (x[0, :, 0] > 0))
    np.testing.assert_array_equal(ds["witness"].values, witness)
    assert list(ds["arm"].values) == ["control", "blocked"]
    assert list(ds["seed"].values) == [10, 11]
    assert ds["task"].attrs["metric"] == "loss"
    prov = json.loads(ds.attrs["provenance"])
    assert prov["command"] == "test" and "revstats_version" in prov and "created" in prov
    assert ds.attrs["revstats_schema"] == 2 and ds.attrs["source"] == "simulator"


def test_open_is_lazy_and_chunked_per_slab(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "s.zarr"
    with _new(path) as w:
        w.write_witness(_slab(rng))
        for s in (0, 1, 2):
            w.write_slab("r0", s, _slab(rng))
            w.write_slab("r1", s, _slab(rng))
    ds = open_store(path)
    assert ds["acts"].chunks is not None
    assert ds["acts"].data.chunksize == (1, 1, len(LAYERS), len(EXAMPLES), H)


def test_float16_overflow_is_refused_not_clipped(tmp_path):
    with _new(tmp_path / "s.zarr", dtype="float16") as w:
        x = np.zeros((len(LAYERS), len(EXAMPLES), H))
        x[1, 2, 3] = 7e4
        with pytest.raises(ValueError, match="beyond the float16 range"):
            w.write_slab("r0", 0, x)
        assert not w.has_slab("r0", 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_slab_is_refused(tmp_path, bad):
    with _new(tmp_path / "s.zarr") as w:
        x = np.zeros((len(LAYERS), len(EXAMPLES), H))
        x[0, 0, 0] = bad
        with pytest.raises(SchemaError, match="`acts` contains NaN or Inf") as ei:
            w.write_slab("r0", 0, x)
        assert ei.value.variable == "acts"


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_finiteness_check_by_sum_is_exact(dtype):
    from revstats.store import _all_finite

    big = float(np.finfo(dtype).max)
    x = np.full((3, 5, 7), big, dtype=dtype)  # finite, but its sum overflows to inf
    assert _all_finite(x) and _all_finite(-x) and _all_finite(x[:, ::2]) and _all_finite(x[:0])
    for bad in ([np.nan], [np.inf], [-np.inf], [np.inf, -np.inf]):
        y = np.zeros((3, 5, 7), dtype=dtype)
        y.reshape(-1)[[4, 80][: len(bad)]] = bad
        assert not _all_finite(y) and not _all_finite(np.where(y == 0, big, y).astype(dtype))


def test_finite_slab_whose_sum_overflows_is_stored(tmp_path):
    with _new(tmp_path / "s.zarr") as w:
        x = np.full((len(LAYERS), len(EXAMPLES), H), 3e38, dtype=np.float32)
        w.write_slab("r0", 0, x)
        assert w.has_slab("r0", 0)


def test_wrong_slab_shape_names_expected_shape(tmp_path):
    with _new(tmp_path / "s.zarr") as w, pytest.raises(ValueError, match=r"the store expects \(1, 2, 6, 16\)"):
        w.write_slab("r0", 0, np.zeros((2, 6, 15)))


def test_unknown_run_lists_known_runs(tmp_path):
    with _new(tmp_path / "s.zarr") as w, pytest.raises(ValueError, match="its runs are: r0, r1"):
        w.write_slab("nope", 0, np.zeros((2, 6, 16)))


def test_steps_are_appended_and_incomplete_slabs_hidden(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "s.zarr"
    with _new(path, steps=[]) as w:
        w.write_witness(_slab(rng))
        w.write_slab("r0", 0, _slab(rng))
        w.write_slab("r0", 50, _slab(rng))
        w.write_slab("r1", 0, _slab(rng))
    ds = open_store(path)
    assert list(ds["step"].values) == [0, 50]
    assert ds["complete"].values.tolist() == [[True, True], [True, False]]
    assert np.isnan(ds["acts"].sel(run="r1", step=50).values).all()
    assert "incomplete" in ds.attrs["revstats_notes"]


def test_rewriting_a_complete_slab_needs_overwrite(tmp_path):
    rng = np.random.default_rng(3)
    with _new(tmp_path / "s.zarr") as w:
        w.write_slab("r0", 0, _slab(rng))
        with pytest.raises(RevstatsError, match="pass overwrite=True"):
            w.write_slab("r0", 0, _slab(rng))
        x = _slab(rng)
        w.write_slab("r0", 0, x, overwrite=True)
    np.testing.assert_array_equal(open_store(tmp_path / "s.zarr")["acts"].sel(run="r0", step=0), x)


def test_memory_url(tmp_path):
    rng = np.random.default_rng(4)
    url = "memory://revstats-test/store.zarr"
    x = _slab(rng)
    with _new(url, overwrite=True) as w:
        w.write_witness(x)
        w.write_slab("r1", 2, x)
    ds = open_store(url)
    np.testing.assert_array_equal(ds["acts"].sel(run="r1", step=2).values, x)
    np.testing.assert_array_equal(ds["witness"].values, x)


def test_missing_witness_is_dropped_with_note(tmp_path):
    with _new(tmp_path / "s.zarr") as w:
        w.write_slab("r0", 0, np.zeros((2, 6, 16)))
    ds = open_store(tmp_path / "s.zarr")
    assert "witness" not in ds
    assert "witness not written" in ds.attrs["revstats_notes"]


def test_second_writer_gets_a_clear_error(tmp_path):
    path = tmp_path / "s.zarr"
    w = _new(path)
    with pytest.raises(RevstatsError, match="open by another writer"):
        open_writer(path)
    w.close()
    open_writer(path).close()


def test_existing_store_is_not_clobbered(tmp_path):
    path = tmp_path / "s.zarr"
    _new(path).close()
    with pytest.raises(RevstatsError, match="pass overwrite=True"):
        _new(path)


# -- schema errors ------------------------------------------------------------------------------


def _good_store(path):
    rng = np.random.default_rng(5)
    with _new(path) as w:
        w.write_witness(_slab(rng))
        w.write_slab("r0", 0, _slab(rng))
    return path


def test_wrong_schema_version(tmp_path):
    path = _good_store(tmp_path / "s.zarr")
    g = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    g.attrs["revstats_schema"] = 99
    zarr.consolidate_metadata(str(path))
    with pytest.raises(SchemaError, match="schema version 99 is not supported") as ei:
        open_store(path)
    assert ei.value.variable == "revstats_schema"


def test_not_a_revstats_store(tmp_path):
    path = tmp_path / "plain.zarr"
    zarr.open_group(str(path), mode="w").create_array("x", shape=(2,), dtype="f4")
    with pytest.raises(SchemaError, match="not a revstats store"):
        open_store(path)


def test_missing_dim(tmp_path):
    path = tmp_path / "bad.zarr"
    _good_store(path)
    g = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    del g["acts"]
    g.create_array("acts", shape=(2, 3, 2, 6), dtype="f4", dimension_names=["run", "step", "layer", "example"])
    zarr.consolidate_metadata(str(path))
    with pytest.raises(SchemaError, match=r"`acts` has dims \(run, step, layer, example\); expected") as ei:
        open_store(path)
    assert ei.value.variable == "acts"


def test_mismatched_coordinates(tmp_path):
    path = tmp_path / "bad.zarr"
    _good_store(path)
    g = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    g["example"].resize((5,))
    zarr.consolidate_metadata(str(path))
    with pytest.raises(SchemaError, match="coordinate `example` has 5 entries .* mismatched") as ei:
        open_store(path)
    assert ei.value.variable == "example"


def test_nan_slab_written_behind_our_back_is_caught(tmp_path):
    path = _good_store(tmp_path / "s.zarr")
    g = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    g["acts"][0, 0, 1, 2, 3] = np.nan
    # the chunk now differs from the one the manifest records for its place
    with pytest.raises(CorruptStoreError, match=r"`acts` run=r0 step=0 .*not the chunk written"):
        open_store(path, check_values=True)
    assert any("run=r0 step=0" in p for p in verify_store(path))


def test_not_a_store_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no store at"):
        open_store(tmp_path / "missing.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SchemaError, match="not a zarr v3 store"):
        open_store(tmp_path / "empty")


def test_corrupted_chunk_is_detected_not_read(tmp_path):
    path = _good_store(tmp_path / "s.zarr")
    chunk = path / "acts" / "c" / "0" / "0" / "0" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[100] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    problems = verify_store(path)
    assert any("run=r0 step=0" in p and "corrupt" in p for p in problems), problems
    with pytest.raises(Exception, match="(?i)checksum|crc"):
        _ = open_store(path)["acts"].sel(run="r0", step=0).values


def test_describe_store(tmp_path):
    info = describe_store(_good_store(tmp_path / "s.zarr"))
    assert info["problems"] == []
    assert info["runs"] == ["r0", "r1"] and info["arms"] == {"blocked": 1, "control": 1}
    assert info["slabs_complete"] == 1 and info["slabs_total"] == 6
    assert describe_store(tmp_path / "nothing")["problems"]


def test_write_dataset_round_trip(tmp_path):
    src = open_store(_good_store(tmp_path / "a.zarr")).load()
    write_dataset(src, tmp_path / "b.zarr", source="ingest", provenance={"from": "a"})
    out = open_store(tmp_path / "b.zarr")
    np.testing.assert_array_equal(out["acts"].values, src["acts"].values)
    np.testing.assert_array_equal(out["complete"].values, src["complete"].values)


def test_string_coords_have_a_v3_spec_and_open_without_warnings(tmp_path):
    import warnings

    path = _good_store(tmp_path / "s.zarr")
    meta = json.loads((path / "run" / "zarr.json").read_text())
    assert meta["data_type"] == "string"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = zarr.open_group(str(path), mode="r", use_consolidated=False)
        assert [str(x) for x in g["run"][:]] == ["r0", "r1"]
        assert sorted(n for n, _ in g.arrays())


# -- crash safety -------------------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from revstats.store import create_store, open_writer
    path, mode = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    if mode == "create":
        w = create_store(path, runs=["r0"], layers=["l0"], examples=[f"e{i}" for i in range(64)],
                         hidden=4096, source="simulator", provenance={})
        w.write_witness(np.ones((1, 64, 4096)))
    else:
        w = open_writer(path)
    step = 0
    while True:
        if not w.has_slab("r0", step):
            w.write_slab("r0", step, np.full((1, 64, 4096), float(step)))
            print(step, flush=True)
        step += 1
    """
)


# What a writer killed inside `_ensure_steps` (growing `step` for a new slab) leaves on disk:
# the `step` coordinate resized (then written), then the data arrays resized one by one in
# this order, the consolidated view last. Readers must see the earlier slabs in every state.
_GROWTH_ORDER = ("acts", "behavior", "task", "complete", "digest")


@pytest.mark.parametrize("n_resized", range(len(_GROWTH_ORDER) + 2))
def test_store_left_mid_step_growth_reads_and_resumes(tmp_path, n_resized):
    path = str(tmp_path / "g.zarr")
    with create_store(path, runs=["r0"], layers=["l0"], examples=["e0", "e1"], hidden=4,
                      source="simulator", provenance={}, behavior=True, task={"metric": "loss"}) as w:
        w.write_witness(np.ones((1, 2, 4)))
        for step in (0, 1):
            w.write_slab("r0", step, np.full((1, 2, 4), float(step)), behavior=[0, 1], task=0.5)
    coord = zarr.open_array(os.path.join(path, "step"), mode="r+")
    coord.resize((3,))  # n_resized == 0: killed before the coordinate's value was written
    if n_resized >= 1:
        coord[2] = 2
        for name in _GROWTH_ORDER[: n_resized - 1]:
            arr = zarr.open_array(os.path.join(path, name), mode="r+")
            shape = list(arr.shape)
            shape[1] = 3
            arr.resize(tuple(shape))
    ds = open_store(path)
    assert ds["step"].values.tolist() == [0, 1] and ds["complete"].values.all()
    np.testing.assert_array_equal(ds["acts"].sel(step=1).values, 1.0)
    assert verify_store(path) == []
    with open_writer(path) as w:  # repairs the growth, then appends
        w.write_slab("r0", 2, np.full((1, 2, 4), 2.0), behavior=[1, 1], task=0.25)
    ds = open_store(path)
    assert ds["step"].values.tolist() == [0, 1, 2] and ds["complete"].values.all()
    assert verify_store(path) == []


def test_kill_mid_append_leaves_earlier_slabs_and_resumes(tmp_path):
    path = str(tmp_path / "k.zarr")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, path, "create"], stdout=subprocess.PIPE, text=True, env=env
    )
    written = []
    for line in proc.stdout:  # let a few slabs complete, then kill mid-stream
        written.append(int(line))
        if len(written) >= 5:
            break
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ds = open_store(path)
    steps = ds["step"].values
    assert set(written) <= set(steps.tolist())
    for s in steps:  # every visible slab is whole and holds what was written
        np.testing.assert_array_equal(ds["acts"].sel(run="r0", step=s).values, float(s))
    assert verify_store(path) == []
    # the lock died with the writer: the next append succeeds and skips what is done
    with open_writer(path) as w:
        nxt = int(steps.max()) + 1
        w.write_slab("r0", nxt, np.full((1, 64, 4096), float(nxt)))
    ds = open_store(path)
    assert int(ds["step"].max()) == nxt and ds["complete"].values.all()
