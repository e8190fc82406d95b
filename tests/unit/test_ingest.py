"""`revstats ingest`: every format round-trips; layouts are mapped or refused by name; pickles
never run."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from revstats.errors import RevstatsError
from revstats.store.ingest import ingest, list_arrays, read_array

RUNS, STEPS, LAYERS, EX, HID = 2, 3, 2, 5, 4


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(RUNS, STEPS, LAYERS, EX, HID)).astype(np.float32)
    witness = rng.normal(size=(LAYERS, EX, HID)).astype(np.float32)
    behavior = (rng.random((RUNS, STEPS, EX)) < 0.5).astype(np.float32)
    task = rng.normal(size=(RUNS, STEPS))
    return acts, witness, behavior, task


def _open(path):
    from revstats.store import open_store

    return open_store(str(path))


def _check(ds, acts, witness):
    np.testing.assert_allclose(ds["acts"].transpose("run", "step", "layer", "example",
                                                   "hidden").values, acts, rtol=0, atol=0)
    np.testing.assert_allclose(ds["witness"].values, witness, rtol=0, atol=0)
    assert ds.attrs["source"] == "ingest"


def _save(fmt, path, named):
    if fmt == "npz":
        np.savez(path, **named)
    elif fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in named.items()}, str(path))
    elif fmt == "pt":
        torch = pytest.importorskip("torch")
        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in named.items()}, path)
    elif fmt == "hdf5":
        h5py = pytest.importorskip("h5py")
        with h5py.File(path, "w") as f:
            for k, v in named.items():
                f.create_dataset(f"logs/{k}", data=v)


@pytest.mark.parametrize("fmt,suffix", [("npz", ".npz"), ("safetensors", ".safetensors"),
                                        ("pt", ".pt"), ("hdf5", ".h5")])
def test_round_trip_each_format(tmp_path, arrays, fmt, suffix):
    acts, witness, behavior, task = arrays
    src = tmp_path / f"log{suffix}"
    _save(fmt, src, {"acts": acts, "witness": witness, "harm": behavior, "loss": task})
    prefix = "logs/" if fmt == "hdf5" else ""
    assert list_arrays(src)[f"{prefix}acts"] == acts.shape
    mapping = {
        "acts": {"key": f"{prefix}acts"}, "witness": {"key": f"{prefix}witness"},
        "behavior": {"key": f"{prefix}harm"},
        "task": {"key": f"{prefix}loss", "metric": "loss", "higher_is_better": False},
        "coords": {"run": ["c0", "b1"], "step": [0, 10, 20], "arm": ["control", "blocked"],
                   "seed": [0, 1], "layer": ["hidden_states.4", "hidden_states.8"]},
    }
    ingest(src, tmp_path / "s.zarr", mapping=mapping)
    ds = _open(tmp_path / "s.zarr")
    _check(ds, acts, witness)
    assert list(ds["run"].values) == ["c0", "b1"] and list(ds["step"].values) == [0, 10, 20]
    assert list(ds["arm"].values) == ["control", "blocked"]
    assert list(ds["layer"].values) == ["hidden_states.4", "hidden_states.8"]
    np.testing.assert_array_equal(ds["behavior"].transpose("run", "step", "example").values,
                                  behavior)
    np.testing.assert_allclose(ds["task"].transpose("run", "step").values, task)
    assert ds["task"].attrs["metric"] == "loss"
    prov = json.loads(ds.attrs["provenance"])
    assert prov["files"][str(src)]["format"] == fmt


def test_npy_with_witness_file_and_permuted_layout_via_toml(tmp_path, arrays):
    acts, witness, _, _ = arrays
    one_run = acts[0]  # (step, layer, example, hidden) -> saved as (example, hidden, step, layer)
    np.save(tmp_path / "acts.npy", one_run.transpose(2, 3, 0, 1))
    np.save(tmp_path / "base.npy", witness.transpose(1, 0, 2))  # (example, layer, hidden)
    toml = tmp_path / "map.toml"
    toml.write_text(
        '[acts]\ndims = ["example", "hidden", "step", "layer"]\n'
        '[witness]\nfile = "base.npy"\ndims = ["example", "layer", "hidden"]\n'
        '[coords]\nrun = ["solo"]\nstep = [0, 5, 9]\n'
    )
    ingest(tmp_path / "acts.npy", tmp_path / "s.zarr", mapping=toml, dtype="float16")
    ds = _open(tmp_path / "s.zarr")
    assert ds["acts"].dtype == np.float16
    np.testing.assert_allclose(
        ds["acts"].transpose("run", "step", "layer", "example", "hidden").values[0],
        one_run, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(ds["witness"].values, witness, rtol=1e-3, atol=1e-3)
    assert list(ds["step"].values) == [0, 5, 9]


def test_wrong_layout_names_expected_dims(tmp_path, arrays):
    acts, witness, _, _ = arrays
    np.savez(tmp_path / "a.npz", acts=acts[0], witness=witness)
    with pytest.raises(RevstatsError, match=r"the store expects acts dims \(run, step, layer, "
                                            r"example, hidden\)"):
        ingest(tmp_path / "a.npz", tmp_path / "s.zarr")
    with pytest.raises(RevstatsError, match=r"dims \['run', 'time'.*expects acts dims"):
        ingest(tmp_path / "a.npz", tmp_path / "s.zarr",
               mapping={"acts": {"dims": ["run", "time", "example", "hidden"]}})
    np.savez(tmp_path / "b.npz", acts=acts, witness=witness[:, :3])
    with pytest.raises(RevstatsError, match="axis 'example' has size 3 in `witness`"):
        ingest(tmp_path / "b.npz", tmp_path / "s.zarr")
    np.savez(tmp_path / "c.npz", acts=acts, witness=witness)
    with pytest.raises(RevstatsError, match="`coords.run` has 3 entries but axis 'run' has size 2"):
        ingest(tmp_path / "c.npz", tmp_path / "s.zarr", mapping={"coords": {"run": ["a", "b", "c"]}})
    with pytest.raises(RevstatsError, match="which array is `acts`"):
        _ambiguous(tmp_path, acts, witness)
    with pytest.raises(RevstatsError, match="unknown section"):
        ingest(tmp_path / "c.npz", tmp_path / "s.zarr", mapping={"activations": {}})
    with pytest.raises(RevstatsError, match="unknown file type"):
        (tmp_path / "x.csv").write_text("1,2")
        ingest(tmp_path / "x.csv", tmp_path / "s.zarr")


def _ambiguous(tmp_path, acts, witness):
    np.savez(tmp_path / "d.npz", a1=acts, a2=acts, witness=witness)
    ingest(tmp_path / "d.npz", tmp_path / "s.zarr")


def test_overflow_refused(tmp_path, arrays):
    acts, witness, _, _ = arrays
    big = acts.copy()
    big[0, 0, 0, 0, 0] = 1e5
    np.savez(tmp_path / "a.npz", acts=big, witness=witness)
    with pytest.raises(RevstatsError, match="beyond float16"):
        ingest(tmp_path / "a.npz", tmp_path / "s.zarr", dtype="float16")


def test_object_arrays_refused(tmp_path, arrays):
    acts, witness, _, _ = arrays
    obj = np.empty(2, dtype=object)
    obj[:] = [{"a": 1}, None]
    np.savez(tmp_path / "o.npz", acts=obj, witness=witness)
    with pytest.raises(RevstatsError, match="object array.*pickled Python objects"):
        ingest(tmp_path / "o.npz", tmp_path / "s.zarr")
    np.save(tmp_path / "o.npy", obj, allow_pickle=True)
    with pytest.raises(RevstatsError, match="object array"):
        read_array(tmp_path / "o.npy")
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "o.h5", "w") as f:
        f.create_dataset("acts", data=np.array(["a", "bb"], dtype=h5py.string_dtype()))
        f.create_dataset("witness", data=witness)
    with pytest.raises(RevstatsError, match="object array"):
        ingest(tmp_path / "o.h5", tmp_path / "s.zarr")


class _Payload:
    """Unpickling this runs `exec`, which creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_malicious_pt_refused_and_runs_nothing(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"acts": torch.zeros(2), "payload": _Payload(marker)}, evil)
    with pytest.raises(RevstatsError, match=r"refused to load.*arbitrary code.*safetensors"):
        ingest(evil, tmp_path / "s.zarr")
    with pytest.raises(RevstatsError, match="refused to load"):
        read_array(evil, "acts")
    assert not marker.exists()
    # the payload is live: an unrestricted load would have run it (so the test above can fail)
    live = tmp_path / "live"
    torch.save(_Payload(live), tmp_path / "live.pt")
    with open(tmp_path / "live.pt", "rb"):
        torch.load(tmp_path / "live.pt", weights_only=False)
    assert live.exists()
    # plain pickle files named .pt are refused too
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(RevstatsError, match="refused to load"):
        read_array(raw)
    assert not marker.exists()


def test_pt_non_tensor_entries_refused(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"acts": torch.zeros(2), "note": "hello"}, tmp_path / "n.pt")
    with pytest.raises(RevstatsError, match="entry note is a str, not a tensor"):
        read_array(tmp_path / "n.pt", "acts")
    torch.save(torch.ones(2, 3, dtype=torch.bfloat16), tmp_path / "b.pt")
    np.testing.assert_array_equal(read_array(tmp_path / "b.pt"), np.ones((2, 3)))


def test_witness_per_run_and_safetensors_bf16(tmp_path, arrays):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    acts, witness, _, _ = arrays
    per_run = np.stack([witness, witness + 1.0])  # (run, layer, example, hidden)
    save_file({"acts": torch.from_numpy(acts).to(torch.bfloat16),
               "witness": torch.from_numpy(per_run)}, str(tmp_path / "w.safetensors"))
    ingest(tmp_path / "w.safetensors", tmp_path / "s.zarr")
    ds = _open(tmp_path / "s.zarr")
    assert ds["witness"].dims == ("run", "layer", "example", "hidden")
    np.testing.assert_array_equal(ds["witness"].values, per_run)
    bf16 = torch.from_numpy(acts).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(
        ds["acts"].transpose("run", "step", "layer", "example", "hidden").values, bf16)
