"""Store write/read vs np.save/np.load of the same float32 array (issue 2's benchmark).

    python -m benchmarks.bench_store            # 2 GiB, 5 repeats, cold page cache for reads
    python -m benchmarks.bench_store --quick    # 256 MiB, 2 repeats: a smoke run, NOT a figure

Reads are timed with a cold page cache: before each timed read the file (np.load) or every
file of the store is evicted with ``posix_fadvise(POSIX_FADV_DONTNEED)`` after ``os.sync()``
(not ``/proc/sys/vm/drop_caches``, which would empty the cache of every other job on the
machine). Without it a read right after the write is served from memory and the store looked
2.4x *faster* than NumPy. ``--quick`` (256 MiB) still fits easily in the page cache and its
fixed costs (opening the store, metadata) weigh far more than at 2 GiB: quote only full runs.
The read is timed twice: `read_acts` (the eager fast path: chunk files read straight into the
result, checksums verified) and `open_store(...)["acts"].to_numpy()` (lazy dask path: one task
per slab, then a concatenation copy).
Ratios are peer_time / our_time (higher is better; 1.0 = as fast as numpy). Every timed step
starts after `os.sync()`: without it, a step pays for the disk writeback of the previous step's
dirty pages (seconds on this machine's ~120 MB/s disk), whichever library it times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import numpy as np


def _make(nbytes: int, rng: np.random.Generator) -> np.ndarray:
    layers, examples, hidden = 4, 256, 1024
    slab = layers * examples * hidden * 4
    n_slabs = max(1, nbytes // slab)
    runs = 16 if n_slabs >= 16 else 1
    steps = max(1, n_slabs // runs)
    return rng.standard_normal(
        (runs, steps, layers, examples, hidden), dtype=np.float32
    )


def _evict(path: str) -> None:
    """Drop `path` (a file, or every file under a directory) from the OS page cache."""
    os.sync()
    files = [path] if os.path.isfile(path) else [
        os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs]
    for name in files:
        fd = os.open(name, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run(quick: bool = False, repeats: int | None = None, nbytes: int | None = None) -> list[dict]:
    from revstats.store import create_store, open_store, read_acts

    rng = np.random.default_rng(0)
    data = _make(nbytes or (256 * 2**20 if quick else 2 * 2**30), rng)
    repeats = repeats or (2 if quick else 5)
    R, S, L, E, H = data.shape
    times: dict[str, list[float]] = {
        "save": [], "zarr_write": [], "load": [], "zarr_read": [], "lazy_read": []
    }
    base = tempfile.mkdtemp(prefix="revstats-bench-", dir=os.environ.get("REVSTATS_BENCH_DIR"))
    try:
        for _ in range(repeats):
            npy = os.path.join(base, "a.npy")
            os.sync()  # each timed step starts with no dirty pages left by the previous one
            t = time.perf_counter()
            np.save(npy, data)
            times["save"].append(time.perf_counter() - t)
            _evict(npy)
            t = time.perf_counter()
            back = np.load(npy)
            times["load"].append(time.perf_counter() - t)
            del back
            os.remove(npy)

            path = os.path.join(base, "s.zarr")
            os.sync()
            t = time.perf_counter()
            with create_store(
                path, runs=[f"r{i}" for i in range(R)], steps=list(range(S)),
                layers=[f"l{i}" for i in range(L)], examples=[f"e{i}" for i in range(E)],
                hidden=H, source="simulator", provenance={"bench": True}, behavior=False,
                overwrite=True,
            ) as w:
                for i in range(R):
                    w.write_slabs(f"r{i}", list(range(S)), data[i])
            times["zarr_write"].append(time.perf_counter() - t)
            _evict(path)
            t = time.perf_counter()
            back = read_acts(path).values
            times["zarr_read"].append(time.perf_counter() - t)
            assert np.array_equal(back, data)
            del back
            _evict(path)
            t = time.perf_counter()
            back = open_store(path)["acts"].to_numpy()
            times["lazy_read"].append(time.perf_counter() - t)
            assert np.array_equal(back, data)
            del back
            shutil.rmtree(path)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    gb = data.nbytes / 2**30
    note = f"cold cache, median of {repeats}, load {os.getloadavg()[0]:.1f}" + (
        "; --quick: smoke run, not a figure" if quick else "")
    return [
        {"name": f"store write {gb:.2f} GiB", "peer": "np.save", "ours_s": med["zarr_write"],
         "peer_s": med["save"], "ratio": med["save"] / med["zarr_write"], "note": note},
        {"name": f"store read {gb:.2f} GiB (read_acts)", "peer": "np.load",
         "ours_s": med["zarr_read"], "peer_s": med["load"], "ratio": med["load"] / med["zarr_read"],
         "note": note},
        {"name": f"store read {gb:.2f} GiB (open_store+dask)", "peer": "np.load",
         "ours_s": med["lazy_read"], "peer_s": med["load"], "ratio": med["load"] / med["lazy_read"],
         "note": note},
    ]


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    for row in run(args.quick):
        print(f"{row['name']:<28} ours {row['ours_s']:.3f}s  {row['peer']} {row['peer_s']:.3f}s  "
              f"ratio {row['ratio']:.2f}x  ({row['note']})")
