"""`revstats analyze` on a large store against `cat` of its chunk files (issue 20).

    python -m benchmarks.bench_analyze                 # 4 GiB store, 3 alternating rounds
    python -m benchmarks.bench_analyze --gib 10 --rounds 5
    REVSTATS_BENCH_DIR=/big/disk python -m benchmarks.bench_analyze

Generates a store (runs x steps x 4 layers x 256 probes x 4096 hidden, float32: 16 MiB per
slab; `bench_outofcore.generate`), then times in fresh processes, each with the store's pages
evicted from the OS cache first (``posix_fadvise(POSIX_FADV_DONTNEED)`` on every file after
``os.sync()``; not ``/proc/sys/vm/drop_caches``, which would also empty the cache of the
other jobs on this shared machine):

- ``cat``: ``cat`` of every chunk file to /dev/null (the disk floor);
- ``raw``: read + crc32c of every chunk (the floor for a reader that checks checksums);
- ``analyze``: ``revstats analyze STORE --json ...`` (the CLI, all stages), with the one-pass
  slab reducer (`analysis/_onepass.py`);
- ``analyze_graph``: the same with the dask-graph reduction it replaced
  (``pipeline.USE_ONEPASS = False``), for the before/after ratio.

Rounds alternate the modes so all see the same machine load; medians are reported, with the
load average, as ratios cat_time / analyze_time (goal >= 0.7) and the analyze process's peak
RSS (goal <= 1 GB). The store is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _chunk_files(path: str) -> list[str]:
    return sorted(os.path.join(r, f) for r, _, fs in os.walk(os.path.join(path, "acts", "c")) for f in fs)


def _child(mode: str, path: str, out_json: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    if mode == "raw":
        from benchmarks.bench_outofcore import _child as raw_child

        return raw_child("raw", path, "threads")
    from revstats.analysis import pipeline

    if mode in ("reduce", "reduce_graph"):  # the store reduction alone (reduce_store's part)
        from revstats.analysis import _onepass
        from revstats.store import open_store

        ds = open_store(path)
        layers = [str(x) for x in ds["layer"].values]
        steps = [int(s) for s in ds["step"].values]
        step0 = steps.index(0)
        moving = [j for j in range(len(steps)) if j != step0]
        if mode == "reduce":
            _onepass.reduce_layers(ds, layers, step0, moving)
        else:
            sel = slice(1, None) if step0 == 0 else moving
            coarse = pipeline._coarsen_chunks(ds)
            pipeline._compute({"layers": {la: pipeline._lazy_layer(coarse, la, step0, sel)
                                          for la in layers}})
        seconds = time.perf_counter() - t0
        with open("/proc/self/status") as f:
            peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
        return {"mode": mode, "seconds": seconds, "peak_rss": peak}

    pipeline.USE_ONEPASS = mode == "analyze"
    import runpy

    # the CLI through its entry point (python -m revstats), in this process
    sys.argv = ["revstats", "analyze", path, "--json", out_json]
    try:
        runpy.run_module("revstats", run_name="__main__")
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        seconds = time.perf_counter() - t0
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    return {"mode": mode, "seconds": seconds, "peak_rss": peak}


#: also empty the whole OS page cache before each pass (root only; --drop-caches)
DROP_ALL_CACHES = False


def _evict(path: str) -> None:
    from benchmarks.bench_outofcore import _drop_cache

    _drop_cache(path)
    if DROP_ALL_CACHES:  # a quiet machine: nothing else's cache to spare
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")


def _measure(mode: str, path: str, workdir: str) -> dict[str, Any]:
    _evict(path)
    if mode == "cat":
        files = _chunk_files(path)
        t0 = time.perf_counter()
        with open(os.devnull, "wb") as null:
            for i in range(0, len(files), 256):
                subprocess.run(["cat", *files[i : i + 256]], stdout=null, check=True)
        return {"mode": "cat", "seconds": time.perf_counter() - t0, "peak_rss": 0}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_analyze", "--child", mode, path,
         os.path.join(workdir, f"{mode}.json")],
        capture_output=True, text=True, cwd=ROOT,
    )
    if out.returncode:
        raise RuntimeError(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False, *, gib: float = 4.0, rounds: int = 3, log: Any = print,
        store: str | None = None, modes: tuple[str, ...] | None = None) -> list[dict]:
    from benchmarks.bench_outofcore import EXAMPLES, HIDDEN, LAYERS, generate

    slab = LAYERS * EXAMPLES * HIDDEN * 4
    runs = 8
    steps = max(2, int(round((0.25 if quick else gib) * 2**30 / slab / runs)))
    base = os.environ.get("REVSTATS_BENCH_DIR") or tempfile.gettempdir()
    work = tempfile.mkdtemp(prefix="revstats-analyze-", dir=base)
    path = store or os.path.join(work, "big.zarr")
    try:
        if store is None:
            nbytes = generate(path, runs=runs, steps=steps, log=None)
        else:  # an existing store (kept): e.g. one left by an earlier run; its own shape
            nbytes = sum(os.path.getsize(f) for f in _chunk_files(path))
            from revstats.store import open_store

            shape = open_store(path)["acts"].sizes
            runs, steps = int(shape["run"]), int(shape["step"])
        log(f"store {nbytes / 2**30:.2f} GiB ({runs} runs x {steps} steps x {LAYERS} x {EXAMPLES} "
            f"x {HIDDEN} float32) at {path}")
        modes = modes or ("cat", "reduce", "raw", "reduce_graph", "analyze", "analyze_graph")
        got: dict[str, list[dict]] = {m: [] for m in modes}
        loads = []
        for i in range(1 if quick else rounds):
            for m in (modes if i % 2 == 0 else modes[::-1]):
                loads.append(os.getloadavg()[0])
                r = _measure(m, path, work)
                got[m].append(r)
                log(f"  round {i + 1} {m}: {r['seconds']:.2f} s, peak RSS {r['peak_rss'] / 2**30:.2f} GiB "
                    f"(load {loads[-1]:.1f})")
        med = {m: statistics.median(x["seconds"] for x in v) for m, v in got.items()}
        rss = {m: max(x["peak_rss"] for x in v) for m, v in got.items()}
        for m in ("cat", "reduce", "raw", "reduce_graph", "analyze", "analyze_graph"):
            med.setdefault(m, float("nan"))
            rss.setdefault(m, 0)
        gb = nbytes / 2**30
        load = f"load {statistics.median(loads):.1f}"
        return [
            {"name": f"analyze {gb:.1f} GiB store (one-pass)", "peer": "cat of chunk files",
             "ours_s": med["analyze"], "peer_s": med["cat"], "ratio": med["cat"] / med["analyze"],
             "peak_rss_gib": rss["analyze"] / 2**30, "note": load},
            {"name": f"analyze {gb:.1f} GiB store (dask graph, before)", "peer": "cat of chunk files",
             "ours_s": med["analyze_graph"], "peer_s": med["cat"],
             "ratio": med["cat"] / med["analyze_graph"], "peak_rss_gib": rss["analyze_graph"] / 2**30,
             "note": load},
            {"name": f"store reduction {gb:.1f} GiB (one-pass)", "peer": "read + crc32c",
             "ours_s": med["reduce"], "peer_s": med["raw"], "ratio": med["raw"] / med["reduce"],
             "peak_rss_gib": rss["reduce"] / 2**30, "note": load},
            {"name": f"store reduction {gb:.1f} GiB (dask graph, before)", "peer": "read + crc32c",
             "ours_s": med["reduce_graph"], "peer_s": med["raw"],
             "ratio": med["raw"] / med["reduce_graph"], "peak_rss_gib": rss["reduce_graph"] / 2**30,
             "note": load},
            {"name": f"read + crc32c {gb:.1f} GiB", "peer": "cat of chunk files",
             "ours_s": med["raw"], "peer_s": med["cat"], "ratio": med["cat"] / med["raw"],
             "peak_rss_gib": rss["raw"] / 2**30, "note": load},
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="256 MiB store, one round")
    p.add_argument("--gib", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--store", default=None, help="time this existing store (kept) instead")
    p.add_argument("--modes", default=None, help="comma list of cat,reduce,raw,reduce_graph,"
                   "analyze,analyze_graph (default all)")
    p.add_argument("--drop-caches", action="store_true",
                   help="also write 3 to /proc/sys/vm/drop_caches before each pass (root)")
    p.add_argument("--child", nargs=3, metavar=("MODE", "STORE", "JSON"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child)))
        return
    modes = tuple(args.modes.split(",")) if args.modes else None
    global DROP_ALL_CACHES
    DROP_ALL_CACHES = args.drop_caches
    for r in run(args.quick, gib=args.gib, rounds=args.rounds, store=args.store, modes=modes):
        print(f"{r['name']:<44} {r['ours_s']:.2f} s vs {r['peer']} {r['peer_s']:.2f} s: "
              f"ratio {r['ratio']:.2f}x, peak RSS {r['peak_rss_gib']:.2f} GiB ({r['note']})")


if __name__ == "__main__":
    main()
