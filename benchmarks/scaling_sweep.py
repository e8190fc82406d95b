"""How the alignment trajectory's time and memory grow with each dimension of a store.

    python -m benchmarks.scaling_sweep [--out FILE.json]

Starting from a base store (4 runs x 8 steps x 4 layers x 256 probes x 1024 hidden, float32,
128 MiB), doubles and quadruples one dimension at a time and measures, in a fresh process with
the store dropped from the OS cache, the wall time of ``open_store`` + the trajectory of
`benchmarks.bench_outofcore` (one compute, default threads scheduler) and its peak RSS.
Not part of `python -m benchmarks` (it takes minutes); the numbers feed docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

from benchmarks.bench_outofcore import _measure, generate

BASE = {"runs": 4, "steps": 8, "layers": 4, "examples": 256, "hidden": 1024}


def configs() -> list[tuple[str, dict[str, int]]]:
    out = [("base", dict(BASE))]
    for dim in BASE:
        for factor in (2, 4):
            cfg = dict(BASE)
            cfg[dim] *= factor
            out.append((f"{dim} x{factor}", cfg))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    base = tempfile.mkdtemp(prefix="revstats-sweep-", dir=os.environ.get("REVSTATS_BENCH_DIR"))
    rows = []
    try:
        for label, cfg in configs():
            path = os.path.join(base, "s.zarr")
            nbytes = generate(path, **cfg)
            m = _measure("trajectory", path)
            shutil.rmtree(path)
            row = {"label": label, **cfg, "store_mib": nbytes / 2**20, "seconds": m["seconds"],
                   "peak_rss_mib": m["peak_rss"] / 2**20}
            rows.append(row)
            print(f"{label:<14} {row['store_mib']:>7.0f} MiB  {row['seconds']:>6.2f} s  "
                  f"peak RSS {row['peak_rss_mib']:>5.0f} MiB", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
