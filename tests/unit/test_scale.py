"""Scale: analyses over a store are lazy, chunk-aligned and scheduler-independent.

- The alignment trajectory (geometry over `open_store`) computes nothing while it is built,
  reads every chunk of `acts` exactly once in one compute, and no task holds more than about
  one slab (bounded memory, whatever the store size).
- The same analysis on the threaded scheduler and on a two-worker dask.distributed
  LocalCluster over loopback gives bit-identical numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from dask.callbacks import Callback

from revstats.geometry import alignment, debiased_alignment, drift, reversion_direction
from revstats.scheduler import use_scheduler
from revstats.store import create_store, open_store

R, S, L, E, H = 4, 5, 2, 24, 48


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("scale") / "s.zarr"
    rng = np.random.default_rng(11)
    v = rng.normal(size=(L, H))
    witness = rng.normal(size=(L, E, H)) + 2 * v[:, None, :]
    with create_store(
        path, runs=[f"r{i}" for i in range(R)], steps=[0, 1, 2, 5, 10],
        layers=[f"l{i}" for i in range(L)], examples=[f"p{i}" for i in range(E)], hidden=H,
        arms=["control", "control", "blocked", "blocked"], source="simulator", provenance={},
        behavior=False,
    ) as w:
        w.write_witness(witness)
        for i in range(R):
            base = rng.normal(size=(L, E, H))
            for j, s in enumerate([0, 1, 2, 5, 10]):
                pull = (0.1 * j if i < 2 else -0.05 * j) * v[:, None, :]
                w.write_slab(f"r{i}", s, base + pull + 0.3 * rng.normal(size=(L, E, H)))
    return path


def trajectory(ds: xr.Dataset) -> xr.Dataset:
    """The alignment trajectory of DESIGN §4, lazily: plug-in and cross-fitted."""
    acts = ds["acts"]
    aligned = acts.sel(step=0, drop=True)
    v = reversion_direction(ds["witness"], aligned)
    plug = alignment(drift(acts), v)
    deb = debiased_alignment(acts, ds["witness"])
    return xr.Dataset({"plugin": plug, "debiased": deb["debiased"], "by_arm": plug.groupby("arm").mean()})


class _Recorder(Callback):
    """Counts computes, reads of `acts` chunks, and the largest task result."""

    def __init__(self) -> None:
        super().__init__()
        self.computes = 0
        self.reads: list[tuple] = []
        self.largest = 0

    def _start(self, dsk) -> None:
        self.computes += 1

    def _posttask(self, key, result, dsk, state, id) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if str(name).startswith("revstats-acts-"):
            self.reads.append(key)
        self.largest = max(self.largest, getattr(result, "nbytes", 0))


def test_trajectory_is_lazy_one_compute_each_chunk_read_once_bounded(store):
    ds = open_store(store)
    with _Recorder() as rec:
        out = trajectory(ds)
        assert rec.computes == 0  # building the analysis computes nothing
        assert all(v.chunks is not None for v in out.data_vars.values())
        with use_scheduler("synchronous"):
            res = out.compute()
    assert rec.computes == 1
    n_chunks = int(np.prod([len(c) for c in ds["acts"].chunks]))
    # one compute; each acts chunk is read once (the graph shares the reads between outputs)
    assert len(rec.reads) == len(set(rec.reads)) == n_chunks
    slab64 = L * E * H * 8  # one (run, step) slab in float64
    assert rec.largest <= 2 * slab64  # no task materialises more than about one slab
    assert np.isfinite(res["plugin"].sel(step=10)).all()
    assert (res["by_arm"].sel(arm="control", step=10) > 0).all()
    assert (res["by_arm"].sel(arm="blocked", step=10) < 0).all()


def test_threads_and_two_worker_local_cluster_give_identical_numbers(store):
    ds = open_store(store)
    with use_scheduler("threads"):
        threaded = trajectory(ds).compute()
    with use_scheduler("local:2") as desc:
        assert "LocalCluster, 2 workers (tcp://127.0.0.1:" in desc
        distributed = trajectory(open_store(store)).compute()
    xr.testing.assert_identical(threaded, distributed)
    # and both equal the eager NumPy computation of the same analysis
    eager = trajectory(ds.load())
    xr.testing.assert_allclose(threaded, eager, rtol=1e-12, atol=1e-12)


def test_full_analysis_is_identical_on_threads_and_a_local_cluster(store):
    import json

    from revstats.analysis.pipeline import AnalysisSettings, analyze

    settings = AnalysisSettings(n_resamples=200, n_null_draws=200, seed=3)

    def run() -> str:
        res = analyze(open_store(store), settings=settings)
        res.pop("timing", None)
        res.get("provenance", {}).pop("created", None)
        return json.dumps(res, sort_keys=True, default=str)

    with use_scheduler("threads"):
        threaded = run()
    with use_scheduler("local:2"):
        distributed = run()
    assert threaded == distributed
    assert '"alignment"' in threaded
