"""Startup: `import revstats`, `revstats --help`, `revstats info` vs `import numpy, xarray` (issue 17.2).

    python -m benchmarks.bench_startup            # medians of 7 fresh interpreters
    python -m benchmarks.bench_startup --quick    # medians of 5

Each figure is the wall time of a fresh `python` process (so it includes the interpreter's own
start, as a user feels it), median of >= 5, plus the `python -X importtime` total (sum of the
cumulative times of the top-level imports; the interpreter start is not in it). The peer is
`python -c "import numpy, xarray"`: revstats needs both, so that is the floor a light
`import revstats` is measured against. Ratios are peer_time / our_time like every benchmark here
(higher is better): the goals are `import revstats` <= 1.3x the peer (ratio >= 0.77) and
`revstats --help` <= 1 s. Note the machine's load beside any figure you quote (`uptime`).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
PEER = "import numpy, xarray"
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def _env() -> dict[str, str]:
    # this checkout first, whatever revstats the interpreter has installed
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def _wall(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=_env(), cwd=ROOT)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def importtime_total(code: str) -> tuple[float, dict[str, float]]:
    """Seconds of `-X importtime` for `code`: total of the top-level imports, and per package."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", code], check=True,
                         capture_output=True, text=True, env=_env(), cwd=ROOT).stderr
    total, per = 0.0, {}
    for line in err.splitlines():
        m = _LINE.match(line)
        if m and len(m.group(3)) == 1:  # top level: one space before the name
            cum = int(m.group(2)) / 1e6
            total += cum
            per[m.group(4).split(".")[0]] = per.get(m.group(4).split(".")[0], 0.0) + cum
    return total, per


def _row(name: str, ours: float, peer: float, peer_name: str, **extra) -> dict:
    return {"name": name, "peer": peer_name, "ours_s": ours, "peer_s": peer,
            "ratio": peer / ours if ours > 0 else float("inf"), "ours_over_peer": ours / peer,
            **extra}


def run(quick: bool = False, repeats: int | None = None) -> list[dict]:
    repeats = repeats or (5 if quick else 7)
    py = sys.executable
    rows = []
    peer_wall = _wall([py, "-c", PEER], repeats)
    peer_it, _ = importtime_total(PEER)
    bare_wall = _wall([py, "-c", "pass"], repeats)

    rows.append(_row("import revstats (wall)", _wall([py, "-c", "import revstats"], repeats),
                     peer_wall, PEER, goal="ours_over_peer <= 1.3"))
    ours_it, per = importtime_total("import revstats")
    rows.append(_row("import revstats (-X importtime)", ours_it, peer_it, PEER,
                     top=sorted(per.items(), key=lambda kv: -kv[1])[:5]))
    light = ("import revstats as rs; rs.open_store; rs.alignment; rs.reversion_direction; "
             "rs.nulls.isotropic_cosine; rs.intervals.proportion_ci; rs.effects.hedges_g")
    rows.append(_row("import revstats + light API names (wall)", _wall([py, "-c", light], repeats),
                     peer_wall, PEER))
    rows.append(_row("revstats --help (wall)", _wall([py, "-m", "revstats", "--help"], repeats),
                     peer_wall, PEER, goal="ours_s <= 1.0", python_alone_s=bare_wall))
    rows.append(_row("revstats analyze --help (wall)",
                     _wall([py, "-m", "revstats", "analyze", "--help"], repeats), peer_wall, PEER))
    with tempfile.TemporaryDirectory(prefix="revstats-bench-startup-") as tmp:
        from revstats.analysis.testing import write_synthetic_store

        store = write_synthetic_store(str(pathlib.Path(tmp) / "tiny.zarr"), layers=("a",),
                                      runs_per_arm=2)
        rows.append(_row("revstats info (tiny store, wall)",
                         _wall([py, "-m", "revstats", "info", store], repeats), peer_wall, PEER,
                         goal="ours_over_peer <= 1.5"))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    print(f"load: {os.getloadavg()}")
    for r in run(quick=args.quick):
        print(f"{r['name']:<44} {r['ours_s']:8.3f} s   peer {r['peer_s']:8.3f} s   "
              f"ours/peer {r['ours_over_peer']:5.2f}")


if __name__ == "__main__":
    main()
