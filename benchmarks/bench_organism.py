"""Wall time of the organism: worker processes vs today's serial run (issue 16.4).

    python -m benchmarks.bench_organism [--quick] [--repeats N]

Each measurement is a fresh Python process (as a user's ``revstats organism`` call is, import
time included) training the same small organism config (4 seeds x the 6 default arms):

* peer ``serial (main)``: the serial pipeline of the main checkout (``REVSTATS_PEER_ROOT``,
  default /work/main), i.e. the code before this change;
* ``serial (workers=1)``: this checkout, in-process;
* ``workers=2``: this checkout, seeds in 2 spawn worker processes.

The three are run in alternating rounds (so load drift hits all alike) and the median of the
rounds is reported; the one-minute load average before every round is recorded (the machine
is shared). Rows {name, peer, ours_s, peer_s, ratio}, ratio = peer time / our time (> 1 =
faster than today's serial run).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent.parent
PEER = pathlib.Path(os.environ.get("REVSTATS_PEER_ROOT", "/work/main"))

SCRIPT = """
import dataclasses, sys
from revstats.sims.organism import PROFILES, run_organism
def main():
    cfg = dataclasses.replace(PROFILES["quick"], seeds=tuple(range({seeds})),
                              pretrain_steps={pre}, align_steps=10, ft_steps={ft},
                              capture_every=5)
    kw = {{}} if {workers} == 0 else {{"workers": {workers}}}
    run_organism(sys.argv[1], cfg, overwrite=True, **kw)
if __name__ == "__main__":
    main()
"""


def _one(root: pathlib.Path, workers: int, size: dict, out: str) -> float:
    code = SCRIPT.format(workers=workers, **size)
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, out], cwd=root, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def measure(*, quick: bool = False, repeats: int = 5, skip_local_serial: bool = False,
            partial_json: str | None = None) -> dict:
    """Alternating rounds; with `partial_json` the rounds so far are written after each one
    (a long benchmark on a loaded machine keeps what it measured)."""
    size = ({"seeds": 2, "pre": 40, "ft": 5} if quick else {"seeds": 4, "pre": 60, "ft": 10})
    variants = [("serial (main)", PEER, 0), ("serial (workers=1)", HERE, 1),
                ("workers=2", HERE, 2)]
    if not (PEER / "sims" / "organism" / "pipeline.py").exists():
        variants = variants[1:]
    elif skip_local_serial:
        variants = [variants[0], variants[2]]
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for name, root, workers in (variants if r % 2 == 0 else variants[::-1]):
                loads.append(os.getloadavg()[0])
                times[name].append(_one(root, workers, size, f"{tmp}/o.zarr"))
            if partial_json:
                pathlib.Path(partial_json).write_text(json.dumps(
                    {"size": size, "times": times, "rounds": r + 1, "load_1min": loads}, indent=1))
    return {"size": size, "times": times, "median": {k: statistics.median(v) for k, v in times.items()},
            "load_1min": loads, "cores": os.cpu_count(), "rounds": repeats}


def run(quick: bool = False, repeats: int | None = None) -> list[dict]:
    res = measure(quick=quick, repeats=repeats or (3 if quick else 5))
    med = res["median"]
    peer_name = "serial (main)" if "serial (main)" in med else "serial (workers=1)"
    load = statistics.median(res["load_1min"])
    rows = []
    for name in med:
        if name == peer_name:
            continue
        rows.append({"name": f"organism {res['size']['seeds']} seeds, {name} (load {load:.1f})",
                     "peer": peer_name, "ours_s": med[name], "peer_s": med[peer_name],
                     "ratio": med[peer_name] / med[name]})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--skip-local-serial", action="store_true",
                   help="time only main's serial run and workers=2 (saves CPU on a shared machine)")
    args = p.parse_args(argv)
    res = measure(quick=args.quick, repeats=args.repeats or (3 if args.quick else 5),
                  skip_local_serial=args.skip_local_serial,
                  partial_json=None if args.json is None else args.json + ".partial")
    print(json.dumps(res, indent=1))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
