"""Out-of-core scan (issue 9): the alignment trajectory over a store larger than memory.

    python -m benchmarks.bench_outofcore            # store >= 1.5x RAM (36 GiB here), run once
    python -m benchmarks.bench_outofcore --quick    # 128 MiB store
    REVSTATS_BENCH_DIR=/big/disk python -m benchmarks.bench_outofcore

Generates a store (24 runs x N steps x 4 layers x 256 probes x 4096 hidden, float32: 16 MiB
per slab) under a temporary directory, then times in fresh subprocesses, with the store's
pages dropped from the OS cache before each pass:

- ``raw``: read every chunk of `acts` and check its crc32c, then discard it (the disk + checksum
  floor: what any reader of this store must pay), with as many reader threads as the scan;
- ``trajectory``: ``open_store`` -> reversion direction, drift, plug-in alignment for every
  (run, step, layer), and its per-arm mean, one ``compute()`` on ``--scheduler threads``
  (``revstats.scheduler.default_threads()`` threads).

Reports throughput as raw_time / trajectory_time (goal >= 0.7) and the trajectory process's
peak RSS (goal <= 2 GiB). The store is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

LAYERS, EXAMPLES, HIDDEN = 4, 256, 4096


def _ram_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def generate(
    path: str, *, runs: int, steps: int, layers: int = LAYERS, examples: int = EXAMPLES,
    hidden: int = HIDDEN, seed: int = 0, log: Any = None,
) -> int:
    """Write a synthetic store whose drift moves along a known direction; return its bytes.

    Slabs are drawn from a pool of 4 noise slabs plus a run-specific pull along ``v`` (cheap to
    generate, realistic to read: float noise does not compress).
    """
    from revstats.store import create_store

    rng = np.random.default_rng(seed)
    v = rng.standard_normal((layers, 1, hidden), dtype=np.float32)
    pool = [rng.standard_normal((layers, examples, hidden), dtype=np.float32) for _ in range(4)]
    witness = pool[0] + 2.0 * v
    arms = ["control" if i % 2 == 0 else "blocked" for i in range(runs)]
    batch = max(1, (256 * 2**20) // (layers * examples * hidden * 4))
    t0 = time.perf_counter()
    with create_store(
        path, runs=[f"run{i:03d}" for i in range(runs)], steps=list(range(steps)),
        layers=[f"layer.{i}" for i in range(layers)], examples=[f"p{i}" for i in range(examples)],
        hidden=hidden, arms=arms, source="simulator", provenance={"benchmark": "outofcore"},
        behavior=False, overwrite=True,
    ) as w:
        w.write_witness(witness)
        for r in range(runs):
            pull = 0.05 if arms[r] == "control" else -0.05
            for s0 in range(0, steps, batch):
                ss = list(range(s0, min(steps, s0 + batch)))
                block = np.empty((len(ss), layers, examples, hidden), np.float32)
                for k, s in enumerate(ss):
                    np.multiply(v, np.float32(pull * s), out=block[k])
                    block[k] += pool[(r + s) % 4]
                w.write_slabs(f"run{r:03d}", ss, block)
            if log:
                done = (r + 1) * steps * layers * examples * hidden * 4
                log(f"  generated {done / 2**30:.1f} GiB ({time.perf_counter() - t0:.0f} s)")
    return runs * steps * layers * examples * hidden * 4


def _drop_cache(path: str) -> None:
    """Evict the store's pages from the OS cache, so each pass reads from the disk."""
    os.sync()
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def trajectory(ds: Any) -> Any:
    """Alignment trajectory: per (run, step, layer) plug-in alignment and its per-arm mean."""
    import xarray as xr

    from revstats.geometry import alignment, drift, reversion_direction

    acts = ds["acts"]
    v = reversion_direction(ds["witness"], acts.sel(step=acts["step"][0].item(), drop=True))
    a = alignment(drift(acts), v)
    return xr.Dataset({"alignment": a, "by_arm": a.groupby("arm").mean()})


def _peak_rss() -> int:
    # VmHWM belongs to this process image; getrusage's ru_maxrss survives exec on Linux and
    # would report the parent's peak.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _child(mode: str, path: str, scheduler: str) -> dict[str, Any]:
    import itertools
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import zarr

    from revstats.scheduler import default_threads, use_scheduler
    from revstats.store import open_store
    from revstats.store._chunkio import chunk_reader

    t0 = time.perf_counter()  # imports excluded: both passes pay only for their reads
    if mode == "raw":
        arr = zarr.open_array(os.path.join(path, "acts"), mode="r")
        reader = chunk_reader(path, "acts", arr)
        assert reader is not None
        grid = [range(math.ceil(n / c)) for n, c in zip(reader.shape, reader.chunks, strict=True)]
        local = threading.local()

        def one(idx: tuple[int, ...]) -> None:
            buf = getattr(local, "buf", None)
            if buf is None:
                buf = local.buf = np.empty(reader.chunks, reader.dtype)
            reader.read_chunk_into(idx, buf)  # read + crc32c check, then discard

        with ThreadPoolExecutor(int(os.environ.get("REVSTATS_RAW_THREADS", 0)) or default_threads()) as pool:
            for _ in pool.map(one, itertools.product(*grid)):
                pass
        result: dict[str, Any] = {}
    else:
        with use_scheduler(scheduler):
            res = trajectory(open_store(path)).compute()
        final = res["by_arm"].isel(step=-1).mean("layer")
        result = {"final_alignment_by_arm": {str(k): float(final.sel(arm=k)) for k in final["arm"].values}}
    seconds = time.perf_counter() - t0
    peak = _peak_rss()
    return {"mode": mode, "seconds": seconds, "peak_rss": peak, **result}


def _measure(mode: str, path: str, scheduler: str = "threads") -> dict[str, Any]:
    _drop_cache(path)
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_outofcore", "--child", mode, path,
         "--scheduler", scheduler],
        capture_output=True, text=True, check=True, cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _base_dir(need: int) -> str:
    base = os.environ.get("REVSTATS_BENCH_DIR") or tempfile.gettempdir()
    free = shutil.disk_usage(base).free
    if free < need + 4 * 2**30:
        raise RuntimeError(
            f"{base} has {free / 2**30:.1f} GiB free; the store needs {need / 2**30:.1f} GiB "
            "(+4 GiB margin): set REVSTATS_BENCH_DIR to a bigger disk"
        )
    return tempfile.mkdtemp(prefix="revstats-outofcore-", dir=base)


def run(quick: bool = False, *, log: Any = None) -> list[dict]:
    runs = 4 if quick else 24
    layers, examples, hidden = (4, 256, 1024) if quick else (LAYERS, EXAMPLES, HIDDEN)
    slab = layers * examples * hidden * 4
    target = int(os.environ.get("REVSTATS_OUTOFCORE_BYTES", 0)) or 128 * 2**20 if quick else max(int(1.5 * _ram_bytes()), 36 * 2**30)
    steps = max(2, math.ceil(target / (runs * slab)))
    base = _base_dir(runs * steps * slab)
    path = os.path.join(base, "store.zarr")
    try:
        t0 = time.perf_counter()
        nbytes = generate(path, runs=runs, steps=steps, layers=layers, examples=examples,
                          hidden=hidden, log=log)
        gen_s = time.perf_counter() - t0
        raw = _measure("raw", path)
        traj = _measure("trajectory", path)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    gib = nbytes / 2**30
    ram = _ram_bytes() / 2**30
    if log:
        log(f"  store {gib:.1f} GiB ({gib / ram:.2f}x RAM of {ram:.1f} GiB), generated in {gen_s:.0f} s;"
            f" raw {raw['seconds']:.1f} s ({gib / raw['seconds']:.2f} GiB/s), trajectory "
            f"{traj['seconds']:.1f} s, peak RSS {traj['peak_rss'] / 2**30:.2f} GiB "
            f"(raw reader {raw['peak_rss'] / 2**30:.2f} GiB); {traj.get('final_alignment_by_arm')}")
    return [
        {"name": f"out-of-core trajectory {gib:.1f} GiB ({gib / ram:.2f}x RAM)",
         "peer": "raw chunk read+crc", "ours_s": traj["seconds"], "peer_s": raw["seconds"],
         "ratio": raw["seconds"] / traj["seconds"],
         "peak_rss_gib": traj["peak_rss"] / 2**30, "store_gib": gib, "ram_gib": ram},
    ]


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--child", nargs=2, metavar=("MODE", "PATH"))
    p.add_argument("--scheduler", default="threads")
    args = p.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], args.scheduler)))
    else:
        for row in run(args.quick, log=lambda m: print(m, file=sys.stderr, flush=True)):
            print(json.dumps(row))
