"""The read fast path: direct chunk-file reads (`revstats.store._chunkio`) and `read_acts`.

Every check compares against zarr's own reader, which stays the reference for values, fill
semantics and checksum errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from revstats.store import create_store, open_store, read_acts
from revstats.store._chunkio import ChunkReader, chunk_reader

LAYERS = ["l0", "l1", "l2"]
EXAMPLES = [f"p{i}" for i in range(5)]
H = 8


def _store(path, *, compressor=None, skip=()):
    rng = np.random.default_rng(3)
    slabs = {}
    with create_store(
        path, runs=["a", "b", "c"], layers=LAYERS, examples=EXAMPLES, hidden=H,
        steps=[0, 5, 10, 20], source="simulator", provenance={}, behavior=False,
        compressor=compressor,
    ) as w:
        w.write_witness(rng.normal(size=(3, 5, H)))
        for r in ("a", "b", "c"):
            for s in (0, 5, 10, 20):
                if (r, s) in skip:
                    continue
                slabs[r, s] = rng.normal(size=(3, 5, H)).astype(np.float32)
                w.write_slab(r, s, slabs[r, s])
    return slabs


def test_open_store_reads_through_the_direct_reader_with_zarr_values(tmp_path):
    path = tmp_path / "s.zarr"
    _store(path)
    ds = open_store(path)
    assert ds["acts"].data.name.startswith("revstats-acts-")
    assert ds["acts"].data.chunksize == (1, 1, 3, 5, H)  # one slab per chunk, as before
    ref = zarr.open_array(str(path / "acts"), mode="r")[...]
    np.testing.assert_array_equal(ds["acts"].values, ref)
    np.testing.assert_array_equal(ds["witness"].values, zarr.open_array(str(path / "witness"))[...])


def test_read_acts_matches_lazy_path_with_selection_and_incomplete_slabs(tmp_path):
    path = tmp_path / "s.zarr"
    slabs = _store(path, skip={("b", 5)})
    lazy = open_store(path)["acts"]
    for workers in (1, 3):
        full = read_acts(path, workers=workers)
        np.testing.assert_array_equal(full.values, lazy.values)  # NaN where incomplete
        assert full.dims == lazy.dims and list(full["run"].values) == ["a", "b", "c"]
    assert np.isnan(read_acts(path, runs=["b"], steps=[5]).values).all()
    sub = read_acts(path, runs=["c", "a"], steps=[20, 0])
    assert list(sub["run"].values) == ["c", "a"] and list(sub["step"].values) == [20, 0]
    np.testing.assert_array_equal(sub.sel(run="c", step=20).values, slabs["c", 20])
    np.testing.assert_array_equal(sub.sel(run="a", step=0).values, slabs["a", 0])


def test_zstd_store_falls_back_to_zarr(tmp_path):
    path = tmp_path / "s.zarr"
    slabs = _store(path, compressor="zstd")
    ds = open_store(path)
    assert not ds["acts"].data.name.startswith("revstats-acts-")
    np.testing.assert_array_equal(read_acts(path, runs=["b"], steps=[10]).values[0, 0], slabs["b", 10])


def test_corrupt_chunk_raises_on_both_paths(tmp_path):
    path = tmp_path / "s.zarr"
    _store(path)
    chunk = path / "acts" / "c" / "1" / "2" / "0" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[7] ^= 0x01
    chunk.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum do not match"):
        _ = open_store(path)["acts"].isel(run=1, step=2).values
    with pytest.raises(ValueError, match="checksum do not match"):
        read_acts(path, runs=["b"], steps=[10])
    np.testing.assert_array_equal(  # the other slabs still read
        read_acts(path, runs=["a"]).values, open_store(path)["acts"].sel(run=["a"]).values
    )
    chunk.write_bytes(bytes(raw[:-9]))  # truncated
    with pytest.raises(ValueError, match="damaged"):
        read_acts(path, runs=["b"], steps=[10])


def test_edge_chunks_missing_chunks_and_arbitrary_slices_match_zarr(tmp_path):
    root = tmp_path / "g.zarr"
    g = zarr.open_group(str(root), mode="w", zarr_format=3)
    arr = g.create_array("x", shape=(5, 7, 4), chunks=(2, 3, 4), dtype="float32",
                         fill_value=np.nan, compressors=[Crc32cCodec()])
    values = np.arange(5 * 7 * 4, dtype=np.float32).reshape(5, 7, 4)
    arr[:4] = values[:4]  # row 4 never written: its chunks are missing files
    reader = chunk_reader(str(root), "x", arr)
    assert isinstance(reader, ChunkReader)
    ref = arr[...]
    for key in [(), (slice(0, 5),), (slice(1, 4), slice(2, 7)), (slice(3, 5), slice(0, 1), slice(1, 3)),
                (slice(4, 5),), (slice(2, 2),)]:
        np.testing.assert_array_equal(reader[key], ref[key])
    out = np.empty((5, 7, 4), np.float32)
    np.testing.assert_array_equal(reader.read_into((), out, workers=2), ref)
    with pytest.raises(TypeError, match="unit-step"):
        reader[::2]
    other = g.create_array("z", shape=(4,), chunks=(2,), dtype="float32",
                           compressors=[ZstdCodec(), Crc32cCodec()])
    assert chunk_reader(str(root), "z", other) is None


def test_read_acts_validation_messages(tmp_path):
    path = tmp_path / "s.zarr"
    _store(path)
    with pytest.raises(TypeError, match="`runs` must be a sequence"):
        read_acts(path, runs="a")
    with pytest.raises(ValueError, match=r"`steps` has label\(s\) \[7\] not in the store"):
        read_acts(path, steps=[0, 7])
    with pytest.raises(ValueError, match="`workers` must be a positive integer"):
        read_acts(path, workers=0)


def test_whole_array_compute_is_one_direct_read_with_the_same_values_and_errors(tmp_path, monkeypatch):
    import dask

    import revstats.store._lazy as lazy

    path = tmp_path / "s.zarr"
    _store(path)
    ref = zarr.open_array(str(path / "acts"), mode="r")[...]
    calls = []
    real = lazy._read_whole
    monkeypatch.setattr(lazy, "_read_whole", lambda r, w: (calls.append(w), real(r, w))[1])
    ds = open_store(path)
    assert type(ds["acts"].data) is dask.array.Array  # xarray refuses mixed dask subclasses
    for get in (lambda a: a.values, lambda a: a.to_numpy(), lambda a: a.load().values,
                lambda a: np.asarray(a.data), lambda a: a.data.compute()):
        got = get(open_store(path)["acts"])
        assert got.dtype == ref.dtype and got.flags.c_contiguous
        np.testing.assert_array_equal(got, ref)
    assert len(calls) == 5  # every whole compute was one direct read, no per-chunk tasks
    # lazy slicing and reductions stay chunk-wise (and exact)
    np.testing.assert_array_equal(ds["acts"].isel(run=1, step=slice(1, 3)).values, ref[1, 1:3])
    np.testing.assert_array_equal(ds["acts"].sum("hidden").values, ref.sum(-1))
    both = dask.compute(ds["acts"].data, ds["acts"].data.mean())
    np.testing.assert_array_equal(both[0], ref)
    assert len(calls) == 6
    loaded = open_store(path).load()  # mixed with the plain dask arrays of the Dataset
    np.testing.assert_array_equal(loaded["acts"].values, ref)
    # a damaged chunk raises the same error as the chunk-by-chunk path
    chunk = path / "acts" / "c" / "2" / "1" / "0" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[3] ^= 0x10
    chunk.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum do not match") as whole:
        _ = open_store(path)["acts"].values
    with pytest.raises(ValueError, match="checksum do not match") as part:
        _ = open_store(path)["acts"].isel(run=2, step=1).values
    assert type(whole.value) is type(part.value) and str(whole.value) == str(part.value)
    # an intact chunk copied to another place is refused by the whole read too
    chunk.write_bytes(bytes(raw[:3] + bytes([raw[3] ^ 0x10]) + raw[4:]))
    (path / "acts" / "c" / "0" / "0" / "0" / "0" / "0").write_bytes(chunk.read_bytes())
    with pytest.raises(ValueError, match="not the chunk written at this place"):
        _ = open_store(path)["acts"].values
