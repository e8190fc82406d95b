"""Where `revstats analyze` spends its time: wall seconds per pipeline stage (issue 20).

    python -m benchmarks.bench_analyze_stages                       # a demo store (8 runs/arm x 40 steps)
    python -m benchmarks.bench_analyze_stages --store S --rounds 5  # an existing store (kept)

Runs `pipeline.analyze` in a fresh process per round, with the store's pages evicted from the
OS cache first, and times each stage function (`reduce_store`, `null_stage`, ...) by wrapping
it; "other" is what the stages do not cover (result assembly, paper table). The peer is the
whole in-process analyze, so each stage is reported as its share of the total (medians over
rounds), with the load average. Numbers only: no result is checked here (the goldens in
tests/unit/test_results_golden.py fix the results).
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
STAGES = ("reduce_store", "alignment_stage", "null_stage", "behaviour_stage", "task_stage",
          "effects_stage", "trend_stage", "spearman_stage", "stability_stage", "per_run_stage",
          "multiplicity_stage")


def _child(path: str) -> dict[str, Any]:
    from revstats.analysis import pipeline
    from revstats.store import open_store

    spent = dict.fromkeys(STAGES, 0.0)

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t
        return wrapper

    for name in STAGES:
        setattr(pipeline, name, timed(name, getattr(pipeline, name)))
    t0 = time.perf_counter()
    pipeline.analyze(open_store(path), store_path=path)
    total = time.perf_counter() - t0
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    return {"total": total, "stages": spent, "peak_rss": peak}


def run(*, store: str | None = None, rounds: int = 3, log: Any = print) -> dict:
    from benchmarks.bench_outofcore import _drop_cache

    work = tempfile.mkdtemp(prefix="revstats-stages-")
    try:
        if store is None:
            from revstats import sims

            store = os.path.join(work, "demo.zarr")
            sims.simulate_to_store("paper-main-track", store, runs=8, steps=40, seed=0)
        got = []
        for i in range(rounds):
            _drop_cache(store)
            load = os.getloadavg()[0]
            out = subprocess.run([sys.executable, "-m", "benchmarks.bench_analyze_stages",
                                  "--child", store], capture_output=True, text=True, cwd=ROOT)
            if out.returncode:
                raise RuntimeError(out.stderr[-3000:])
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["load"] = load
            got.append(r)
            log(f"  round {i + 1}: {r['total']:.2f} s (load {load:.1f})")
        total = statistics.median(r["total"] for r in got)
        stages = {s: statistics.median(r["stages"][s] for r in got) for s in STAGES}
        stages["other"] = max(0.0, total - sum(stages.values()))
        return {"total": total, "stages": stages, "peak_rss": max(r["peak_rss"] for r in got),
                "load": statistics.median(r["load"] for r in got)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(_child(args.child)))
        return
    r = run(store=args.store, rounds=args.rounds)
    print(f"analyze (in process) {r['total']:.2f} s, peak RSS {r['peak_rss'] / 2**30:.2f} GiB, "
          f"load {r['load']:.1f} (median of {args.rounds})")
    for name, sec in sorted(r["stages"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<20} {sec:7.2f} s  {100 * sec / r['total']:5.1f}%")


if __name__ == "__main__":
    main()
