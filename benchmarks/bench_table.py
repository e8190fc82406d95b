"""Everything a user times, in one run, as ratios (issue 17.3). Feeds docs/scaling.md.

    python -m benchmarks.bench_table [--rounds 5] [--store-gib 2] [--skip store,capture]

Rows (ratio = peer / ours, > 1 means revstats is the faster; overhead rows say so):

1. ``revstats demo`` wall vs the sum of its parts run as separate commands
   (``revstats simulate`` + ``revstats analyze`` + ``revstats report`` on the same settings):
   ratio parts / demo (>= 1: the one command costs no more than its parts).
2. ``analyze`` of the demo store (in process, store opened) vs the bare NumPy reductions it
   needs: one pass over the store read with `read_acts` -- per (run, step, layer) probe means
   in float64, drift, plug-in cosine with the reversion direction and the cross-fitted sums
   (`_bare_reduction`). Ratio bare / analyze: the share of analyze that is the unavoidable pass.
3. store write / cold read of ``--store-gib`` GiB vs ``np.save`` / ``np.load``
   (`bench_store.run`, page cache evicted before each read).
4. capture vs a bare forward pass with ``output_hidden_states`` (`bench_capture.run`;
   an overhead ratio ours / peer, lower is better).

Rounds alternate ours and the peer; medians; the 1-minute load average is printed per row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = ["--runs", "8", "--steps", "40", "--seed", "1", "--n-resamples", "500"]


def _cli(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "revstats", *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _bare_reduction(path: str) -> None:
    """One NumPy pass: what `reduce_store` computes, on the array read into memory."""
    from revstats.store import open_store, read_acts

    a = read_acts(path).values  # (run, step, layer, example, hidden), float32
    ds = open_store(path)
    wit = np.asarray(ds["witness"].values)  # (layer, example, hidden)
    steps = [int(s) for s in ds["step"].values]
    s0 = steps.index(0)
    n = a.shape[3]
    mu = a.mean(axis=3, dtype=np.float64)  # (run, step, layer, hidden)
    drift = mu - mu[:, s0 : s0 + 1]
    v = wit.mean(axis=1, dtype=np.float64)[None] - mu[:, s0]
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        _ = np.einsum("rslh,rlh->rsl", drift, v) / np.linalg.norm(drift, axis=-1)
    al = a[:, s0].astype(np.float64)  # (run, layer, example, hidden)
    w = wit[None].astype(np.float64) - al
    for s in range(a.shape[1]):
        d = a[:, s].astype(np.float64) - al
        np.einsum("rlih,rlih->rl", d, w)
        np.einsum("rlih,rlih->rl", d, d)
    _ = n


def _analyze_in_process(path: str) -> None:
    from revstats.analysis.pipeline import AnalysisSettings, analyze
    from revstats.store import open_store

    analyze(open_store(path), settings=AnalysisSettings(seed=1, n_resamples=500,
                                                        n_null_draws=500), store_path=path)


def _timed(fn, *a) -> float:
    t0 = time.perf_counter()
    fn(*a)
    return time.perf_counter() - t0


def run(rounds: int = 5, store_gib: float = 2.0, skip: tuple[str, ...] = (), log=print) -> list[dict]:
    rows: list[dict] = []
    work = tempfile.mkdtemp(prefix="revstats-table-", dir=os.environ.get("REVSTATS_BENCH_DIR"))
    try:
        # 1. demo vs its parts
        demo, parts, loads = [], [], []
        for i in range(rounds):
            loads.append(os.getloadavg()[0])
            d = os.path.join(work, f"demo{i}")
            p = os.path.join(work, f"parts{i}")
            os.makedirs(p)
            order = ("demo", "parts") if i % 2 == 0 else ("parts", "demo")
            for which in order:
                if which == "demo":
                    demo.append(_cli("demo", "--out", d, *DEMO))
                else:
                    store = os.path.join(p, "store.zarr")
                    t = _cli("simulate", "--preset", "paper-main-track", "--runs", "8",
                             "--steps", "40", "--seed", "1", "--out", store)
                    t += _cli("analyze", store, "--seed", "1", "--n-resamples", "500",
                              "--json", os.path.join(p, "results.json"))
                    t += _cli("report", store, "--out", os.path.join(p, "report"))
                    parts.append(t)
            log(f"  demo round {i + 1}: demo {demo[-1]:.1f} s, parts {parts[-1]:.1f} s (load {loads[-1]:.1f})")
        rows.append({"name": "revstats demo (8 runs/arm x 40 steps)", "peer": "simulate + analyze + report",
                     "ours_s": statistics.median(demo), "peer_s": statistics.median(parts),
                     "ratio": statistics.median(parts) / statistics.median(demo),
                     "note": f"load {statistics.median(loads):.1f}"})
        # 2. analyze vs the bare NumPy pass, on the demo store
        store = os.path.join(work, "demo0", "store.zarr")
        an, bare, loads = [], [], []
        _analyze_in_process(store)  # warm imports and caches for both
        for i in range(rounds):
            loads.append(os.getloadavg()[0])
            if i % 2 == 0:
                bare.append(_timed(_bare_reduction, store))
                an.append(_timed(_analyze_in_process, store))
            else:
                an.append(_timed(_analyze_in_process, store))
                bare.append(_timed(_bare_reduction, store))
        rows.append({"name": "analyze (demo store, in process)", "peer": "bare NumPy reduction pass",
                     "ours_s": statistics.median(an), "peer_s": statistics.median(bare),
                     "ratio": statistics.median(bare) / statistics.median(an),
                     "note": f"load {statistics.median(loads):.1f}"})
        log(f"  analyze {statistics.median(an):.2f} s vs bare {statistics.median(bare):.2f} s")
        # 3. store I/O
        if "store" not in skip:
            from benchmarks import bench_store

            os.environ.setdefault("REVSTATS_BENCH_DIR", work)
            rows += bench_store.run(repeats=rounds, nbytes=int(store_gib * 2**30))
        # 4. capture
        if "capture" not in skip:
            try:
                from benchmarks import bench_capture

                rows += bench_capture.run(False)
            except ImportError as e:  # torch / transformers not installed
                log(f"  capture skipped: {e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--store-gib", type=float, default=2.0)
    p.add_argument("--skip", default="", help="comma list: store, capture")
    args = p.parse_args()
    print(f"load before: {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs", flush=True)
    rows = run(args.rounds, args.store_gib, tuple(s for s in args.skip.split(",") if s),
               log=lambda s: print(s, flush=True))
    print("| figure | ours | peer | ratio | note |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['ours_s']:.3f} s | {r['peer']} {r['peer_s']:.3f} s | "
              f"{r['ratio']:.2f}x | {r.get('note', '')} |")


if __name__ == "__main__":
    main()
