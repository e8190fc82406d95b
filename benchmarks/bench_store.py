"""Store write/read vs np.save/np.load of the same float32 array (issues 2 and 20).

    python -m benchmarks.bench_store                  # 2 GiB, 5 rounds, cold cache, fsync on
    python -m benchmarks.bench_store --fsync off      # both writers timed without fsync
    python -m benchmarks.bench_store --quick          # 256 MiB, 2 rounds: a smoke run, NOT a figure

What is timed, per round (ours and NumPy alternate inside every round, so both see the same
machine):

* **write**: `np.save` of the array vs `create_store` + one `write_slabs` per run. With
  ``--fsync on`` (default) both include making the bytes durable: `np.save` to an open file
  then ``fsync`` of it and of its directory, vs the store write then ``fsync`` of every file
  and directory of the store (the store itself does not fsync; a slab is atomic through
  temp + rename). With ``--fsync off`` neither is synced inside the timing (``os.sync()`` runs
  before every timed step, outside it, so no step pays for the previous one's writeback).
* **cold read**: `np.load` vs `read_acts(path)` and vs ``open_store(path)["acts"].to_numpy()``,
  each with a cold page cache: before every timed read, ``sync; echo 3 >
  /proc/sys/vm/drop_caches`` (needs root; ``--evict fadvise`` instead evicts only the files
  read, with ``posix_fadvise(POSIX_FADV_DONTNEED)``, for machines where that is not allowed).
  Every read is checked bit-exact against the written array.

Ratios are peer_time / our_time (higher is better; 1.0 = as fast as NumPy), medians over the
rounds; the 1-minute load average is recorded at every round. ``--quick`` (256 MiB) fits in
the page cache many times over and its fixed costs dominate: it once reported the store 2.4x
*faster* than NumPy. Quote only full runs (>= 2 GiB, cold cache).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np

_DROP = "/proc/sys/vm/drop_caches"


def _make(nbytes: int, rng: np.random.Generator) -> np.ndarray:
    layers, examples, hidden = 4, 256, 1024
    slab = layers * examples * hidden * 4
    n_slabs = max(1, nbytes // slab)
    runs = 16 if n_slabs >= 16 else 1
    steps = max(1, n_slabs // runs)
    return rng.standard_normal(
        (runs, steps, layers, examples, hidden), dtype=np.float32
    )


def _files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    return [os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs]


def _evictor(mode: str) -> Callable[[str], None]:
    if mode == "drop_caches":
        if not os.access(_DROP, os.W_OK):
            raise SystemExit(f"--evict drop_caches needs root (write access to {_DROP}); "
                             "use --evict fadvise")

        def drop(path: str) -> None:
            os.sync()
            with open(_DROP, "w") as f:
                f.write("3\n")
        return drop

    def fadvise(path: str) -> None:
        os.sync()
        for name in _files(path):
            fd = os.open(name, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    return fadvise


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: str) -> None:
    """fsync every file and directory under `path` (what a durable store write costs)."""
    for root, _, files in os.walk(path):
        for f in files:
            _fsync_path(os.path.join(root, f))
        _fsync_path(root)


def run(quick: bool = False, repeats: int | None = None, nbytes: int | None = None,
        fsync: bool = True, evict: str | None = None) -> list[dict]:
    from revstats.store import create_store, open_store, read_acts

    rng = np.random.default_rng(0)
    data = _make(nbytes or (256 * 2**20 if quick else 2 * 2**30), rng)
    repeats = repeats or (2 if quick else 5)
    if evict is None:
        evict = "drop_caches" if os.access(_DROP, os.W_OK) else "fadvise"
    cold = _evictor(evict)
    R, S, L, E, H = data.shape
    times: dict[str, list[float]] = {
        "save": [], "zarr_write": [], "load": [], "zarr_read": [], "lazy_read": []
    }
    loads: list[float] = []
    base = tempfile.mkdtemp(prefix="revstats-bench-", dir=os.environ.get("REVSTATS_BENCH_DIR"))

    def timed(key: str, fn: Callable[[], object]) -> object:
        t = time.perf_counter()
        out = fn()
        times[key].append(time.perf_counter() - t)
        return out

    def save(npy: str) -> None:
        with open(npy, "wb") as f:
            np.save(f, data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if fsync:
            _fsync_path(base)

    def write(path: str) -> None:
        with create_store(
            path, runs=[f"r{i}" for i in range(R)], steps=list(range(S)),
            layers=[f"l{i}" for i in range(L)], examples=[f"e{i}" for i in range(E)],
            hidden=H, source="simulator", provenance={"bench": True}, behavior=False,
            overwrite=True,
        ) as w:
            for i in range(R):
                w.write_slabs(f"r{i}", list(range(S)), data[i])
        if fsync:
            _fsync_tree(path)

    try:
        for _ in range(repeats):
            loads.append(os.getloadavg()[0])
            npy = os.path.join(base, "a.npy")
            os.sync()  # each timed step starts with no dirty pages left by the previous one
            timed("save", lambda: save(npy))
            cold(npy)
            back = timed("load", lambda: np.load(npy))
            assert np.array_equal(back, data)
            del back
            os.remove(npy)

            path = os.path.join(base, "s.zarr")
            os.sync()
            timed("zarr_write", lambda: write(path))
            cold(path)
            back = timed("zarr_read", lambda: read_acts(path).values)
            assert np.array_equal(back, data)
            del back
            cold(path)
            back = timed("lazy_read", lambda: open_store(path)["acts"].to_numpy())
            assert np.array_equal(back, data)
            del back
            shutil.rmtree(path)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    gb = data.nbytes / 2**30
    note = (f"cold cache ({evict}), fsync {'on' if fsync else 'off'}, median of {repeats}, "
            f"load {min(loads):.1f}-{max(loads):.1f}") + (
        "; --quick: smoke run, not a figure" if quick else "")
    rounds = {k: [round(x, 3) for x in v] for k, v in times.items()}
    return [
        {"name": f"store write {gb:.2f} GiB", "peer": "np.save", "ours_s": med["zarr_write"],
         "peer_s": med["save"], "ratio": med["save"] / med["zarr_write"], "note": note,
         "rounds": {"ours": rounds["zarr_write"], "peer": rounds["save"]}},
        {"name": f"store read {gb:.2f} GiB (read_acts)", "peer": "np.load",
         "ours_s": med["zarr_read"], "peer_s": med["load"], "ratio": med["load"] / med["zarr_read"],
         "note": note, "rounds": {"ours": rounds["zarr_read"], "peer": rounds["load"]}},
        {"name": f"store read {gb:.2f} GiB (open_store().to_numpy())", "peer": "np.load",
         "ours_s": med["lazy_read"], "peer_s": med["load"], "ratio": med["load"] / med["lazy_read"],
         "note": note, "rounds": {"ours": rounds["lazy_read"], "peer": rounds["load"]}},
    ]


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_store", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="256 MiB, 2 rounds (smoke run)")
    p.add_argument("--gib", type=float, default=None, help="array size in GiB (default 2)")
    p.add_argument("--repeats", type=int, default=None, help="rounds (default 5)")
    p.add_argument("--fsync", choices=("on", "off"), default="on",
                   help="time both writers with (default) or without fsync")
    p.add_argument("--evict", choices=("drop_caches", "fadvise"), default=None,
                   help="how the page cache is emptied before reads (default drop_caches as root)")
    args = p.parse_args()
    nbytes = int(args.gib * 2**30) if args.gib else None
    for row in run(args.quick, args.repeats, nbytes, args.fsync == "on", args.evict):
        print(f"{row['name']:<42} ours {row['ours_s']:.3f}s  {row['peer']} {row['peer_s']:.3f}s  "
              f"ratio {row['ratio']:.2f}x  ({row['note']})")
        print(f"    rounds ours {row['rounds']['ours']}  {row['peer']} {row['rounds']['peer']}")
