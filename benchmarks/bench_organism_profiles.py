"""Wall time of whole organism profiles, as a user runs them (issue 16.4).

    python -m benchmarks.bench_organism_profiles --profile quick --rounds 5
    python -m benchmarks.bench_organism_profiles --profile paper --rounds 1 \
        --peer-root /path/to/checkout-before-workers

Each measurement is one fresh ``python -m revstats organism --profile P --out TMP`` process
(import time included), so it is the command a user times. Variants, run in alternating order
each round (load drift hits all alike):

* ``serial (peer)``: the serial pipeline of the checkout at ``--peer-root`` (the code before
  seeds ran in worker processes; torch keeps its default thread count), when given;
* ``workers=1``: this checkout, seeds one after the other in this process (the serial reference
  where the peer does not have the profile, e.g. ``history``);
* ``workers=2``: this checkout, seeds in 2 spawn worker processes, one torch thread each.

The one-minute load average is recorded before every run. With ``REVSTATS_BENCH_LOCK`` set to a
file path, each run holds an exclusive ``flock`` on it (a shared machine's timings never overlap).
Rows {name, peer, ours_s, peer_s, ratio}; ratio = peer time / our time (> 1: faster than serial).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def _bench_lock():
    path = os.environ.get("REVSTATS_BENCH_LOCK")
    if not path:
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _one(root: pathlib.Path, profile: str, workers: int | None, out: str,
         keep: bool = False) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "revstats", "organism", "--profile", profile, "--out", out,
           "--overwrite"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    with _bench_lock():
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=root, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        dt = time.perf_counter() - t0
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return dt, load


def measure(profile: str, rounds: int, peer_root: pathlib.Path | None,
            partial_json: str | None = None, keep: str | None = None,
            only: tuple[str, ...] = ()) -> dict:
    """With `keep`, the last workers=2 run writes its store (or directory) there and keeps it;
    `only` restricts the variants to those names (e.g. the peer and workers=2 for a long run)."""
    variants: list[tuple[str, pathlib.Path, int | None]] = []
    if peer_root is not None:
        variants.append(("serial (peer)", peer_root, None))
    variants += [("workers=1", HERE, 1), ("workers=2", HERE, 2)]
    if only:
        unknown = set(only) - {name for name, _, _ in variants}
        if unknown:
            raise SystemExit(f"--only: unknown variant(s) {sorted(unknown)}; choose from "
                             f"{[name for name, _, _ in variants]}")
        variants = [v for v in variants if v[0] in only]
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    loads: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        for r in range(rounds):
            for name, root, workers in (variants if r % 2 == 0 else variants[::-1]):
                last = keep is not None and workers == 2 and r == rounds - 1
                dt, load = _one(root, profile, workers, keep if last else f"{tmp}/o.zarr",
                                keep=last)
                times[name].append(dt)
                loads[name].append(load)
                print(f"round {r + 1}: {name}: {dt:.1f} s (load {load:.2f})", file=sys.stderr,
                      flush=True)
                if partial_json:
                    pathlib.Path(partial_json).write_text(json.dumps(
                        {"profile": profile, "times": times, "load_1min": loads}, indent=1))
    return {"profile": profile, "rounds": rounds, "times": times, "load_1min": loads,
            "median": {k: statistics.median(v) for k, v in times.items()},
            "cores": os.cpu_count(), "peer_root": None if peer_root is None else str(peer_root)}


def rows(res: dict) -> list[dict]:
    med = res["median"]
    peer = "serial (peer)" if "serial (peer)" in med else "workers=1"
    out = []
    for name, t in med.items():
        if name == peer:
            continue
        load = statistics.median(res["load_1min"][name])
        out.append({"name": f"organism --profile {res['profile']}, {name} "
                            f"({res['rounds']} round(s), load {load:.2f})",
                    "peer": peer, "ours_s": t, "peer_s": med[peer], "ratio": med[peer] / t})
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="quick")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--peer-root", type=pathlib.Path, default=None,
                   help="a checkout of the serial pipeline (before worker processes)")
    p.add_argument("--json", default=None)
    p.add_argument("--only", default="",
                   help="comma-separated variants to run, e.g. 'serial (peer),workers=2'")
    p.add_argument("--keep", default=None,
                   help="write the last workers=2 run's output here and keep it (for a report)")
    args = p.parse_args(argv)
    res = measure(args.profile, args.rounds, args.peer_root,
                  None if args.json is None else args.json + ".partial", keep=args.keep,
                  only=tuple(v.strip() for v in args.only.split(",") if v.strip()))
    res["rows"] = rows(res)
    print(json.dumps(res, indent=1))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
