"""One runner for every benchmark: `python -m benchmarks [--quick] [--only NAME ...]`.

Each `benchmarks/bench_*.py` exposes `run(quick: bool) -> list[dict]` with rows
{name, peer, ours_s, peer_s, ratio}; ratio = peer time / our time (higher is better for speed
ratios; benchmarks that measure overhead say so in their name). Results are printed as one table
and written as JSON (with the commit and machine) for comparison across commits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import pathlib
import platform
import subprocess
import sys
import traceback

HERE = pathlib.Path(__file__).resolve().parent


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--only", nargs="*", default=None, help="benchmark module names (e.g. store)")
    p.add_argument("--out", default=None, help="JSON output path (default benchmarks/results/)")
    args = p.parse_args(argv)
    names = sorted(f.stem[len("bench_"):] for f in HERE.glob("bench_*.py"))
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            p.error(f"unknown benchmark(s) {sorted(unknown)}; available: {names}")
        names = [n for n in names if n in args.only]
    rows: list[dict] = []
    failures: dict[str, str] = {}
    for name in names:
        print(f"running {name} …", file=sys.stderr, flush=True)
        try:
            mod = importlib.import_module(f"benchmarks.bench_{name}")
            for row in mod.run(quick=args.quick):
                rows.append({"benchmark": name, **row})
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            failures[name] = traceback.format_exc(limit=3)
            print(f"  {name} failed:\n{failures[name]}", file=sys.stderr)
    width = max([len(r["name"]) for r in rows] + [10])
    print(f"{'benchmark':<{width}}  {'peer':<24} {'ours (s)':>10} {'peer (s)':>10} {'ratio':>8}")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['peer']:<24} {r['ours_s']:>10.4f} {r['peer_s']:>10.4f} "
              f"{r['ratio']:>7.2f}x")
    out = pathlib.Path(args.out) if args.out else HERE / "results" / (
        dt.datetime.now().strftime("%Y%m%dT%H%M%S") + ("-quick" if args.quick else "") + ".json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "commit": _commit(), "quick": args.quick, "python": sys.version.split()[0],
        "machine": platform.machine(), "cpus": os.cpu_count(), "rows": rows, "failures": failures,
    }
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(out)
    print(f"results written to {out}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
