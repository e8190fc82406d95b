"""bootstrap_ci of the mean (BCa, percentile, basic; 9,999 resamples) against scipy.stats.bootstrap.

Run: ``python -m benchmarks.bench_bootstrap [--quick] [--sizes 1000,20000,100000]``.

For each n and method it alternates peer and ours rounds (so both see the same machine load),
reports the ratio of medians of wall time (peer / ours; > 1 means revstats is faster) and of
process CPU time (less sensitive to other users of a shared machine; ours uses all cores,
so its CPU time is the sum over threads), and checks that the intervals agree within Monte
Carlo error (`_agree`). scipy needs ``batch=`` at large n or its BCa jackknife allocates
n x (n - 1) floats at once. A scipy round that takes longer than `PEER_SLOW_S` (30 s; scipy's
BCa at n = 100,000 takes minutes) is not repeated: the row then prints 1 scipy round against
our 5 (rounds are printed for every row).

The rows are steady state: the benchmark first runs one bootstrap of 5e7 draws, which makes
revstats load its compiled (numba) kernels, as any process does once its bootstrap work adds
up to that (`revstats.intervals._draws.kernels_for`; before that it uses the NumPy path, which
gives the same draws). `fresh_process` times the first call in a new interpreter instead
(import included, for both libraries).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
from scipy import stats

from revstats.intervals import bootstrap_ci

N_RESAMPLES = 9999
METHODS = ("bca", "percentile", "basic")
PEER_SLOW_S = 30.0


def _agree(ours, theirs, x: np.ndarray) -> bool:
    """Interval ends agree within Monte Carlo error: the quantile of B replicates has SE of
    roughly se_mean * sqrt(p(1-p)) / (phi(z_p) sqrt(B)) ~ 2.1 se_mean / sqrt(B) at p=0.025;
    two independent runs differ by sqrt(2) times that; allow 4 such SEs."""
    se_mean = x.std(ddof=1) / np.sqrt(x.size)
    tol = 4 * np.sqrt(2) * 2.1 * se_mean / np.sqrt(N_RESAMPLES)
    return bool(abs(ours.low - theirs.low) < tol and abs(ours.high - theirs.high) < tol)


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def run(quick: bool = False, sizes: tuple[int, ...] = (1_000, 20_000, 100_000)) -> list[dict]:
    return list(iter_rows(quick, sizes))


def iter_rows(
    quick: bool = False,
    sizes: tuple[int, ...] = (1_000, 20_000, 100_000),
    methods: tuple[str, ...] = METHODS,
):
    bootstrap_ci(np.random.default_rng(0).normal(size=5000), "mean", n_resamples=10_000, rng=0)  # loads the kernels
    for n in sizes:
        peer_batch = None if n <= 10_000 else 100
        x = np.random.default_rng(n).lognormal(size=n)  # skewed, so BCa differs from percentile
        for method in methods:
            def ours_fn(x=x, method=method):
                return bootstrap_ci(x, "mean", method=method, n_resamples=N_RESAMPLES, rng=1)

            def peer_fn(x=x, method=method, peer_batch=peer_batch):
                return stats.bootstrap(
                    (x,), np.mean, method="BCa" if method == "bca" else method,
                    n_resamples=N_RESAMPLES, rng=2, batch=peer_batch,
                ).confidence_interval

            ours_fn()  # warm up
            rounds = 3 if quick else 5
            ow, oc, pw, pc = [], [], [], []
            ours = peer = None
            for _ in range(rounds):  # alternate: peer, ours, peer, ours, ...
                if not pw or pw[0] <= PEER_SLOW_S:
                    w, c, peer = _timed(peer_fn)
                    pw.append(w)
                    pc.append(c)
                w, c, ours = _timed(ours_fn)
                ow.append(w)
                oc.append(c)
            yield (
                {
                    "name": f"bootstrap_ci {method} mean n={n} B={N_RESAMPLES}",
                    "peer": "scipy.stats.bootstrap",
                    "ours_s": float(np.median(ow)),
                    "peer_s": float(np.median(pw)),
                    "ratio": float(np.median(pw) / np.median(ow)),
                    "cpu_ratio": float(np.median(pc) / np.median(oc)),
                    "rounds": (len(ow), len(pw)),
                    "agree": _agree(ours, peer, x),
                    "ours_interval": (float(ours.low), float(ours.high)),
                    "peer_interval": (float(peer.low), float(peer.high)),
                }
            )


_FRESH = {
    "ours": "from revstats.intervals import bootstrap_ci as f\n"
            "call = lambda: f(x, 'mean', method='bca', n_resamples=9999, rng=1)",
    "scipy": "from scipy import stats\n"
             "call = lambda: stats.bootstrap((x,), np.mean, method='BCa', n_resamples=9999, rng=2)",
}


def fresh_process(n: int = 1000, rounds: int = 5) -> dict:
    """Median wall time of import + the first BCa bootstrap of the mean in a new interpreter."""
    times: dict[str, list[float]] = {"ours": [], "scipy": []}
    for _ in range(rounds):
        for who, body in _FRESH.items():
            code = (f"import time; t0 = time.perf_counter()\nimport numpy as np\n{body}\n"
                    f"x = np.random.default_rng({n}).lognormal(size={n}); call()\n"
                    "print(time.perf_counter() - t0)")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            times[who].append(float(out.stdout.strip().splitlines()[-1]))
    ours, peer = float(np.median(times["ours"])), float(np.median(times["scipy"]))
    return {"name": f"first BCa call in a fresh process (import included) n={n}", "ours_s": ours,
            "peer_s": peer, "ratio": peer / ours, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--sizes", default="1000,20000,100000", help="comma-separated n")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated subset of bca,percentile,basic"
    )
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    methods = tuple(m.strip() for m in args.methods.split(","))
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {','.join(METHODS)}")
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average), {os.cpu_count()} CPUs")
    for r in iter_rows(args.quick, sizes, methods):
        print(
            f"{r['name']}: ours {r['ours_s']:.4f} s, scipy {r['peer_s']:.4f} s, "
            f"wall ratio {r['ratio']:.1f}x, CPU ratio {r['cpu_ratio']:.1f}x "
            f"(rounds ours/scipy {r['rounds'][0]}/{r['rounds'][1]}), agree={r['agree']}, "
            f"ours [{r['ours_interval'][0]:.5f}, {r['ours_interval'][1]:.5f}] "
            f"scipy [{r['peer_interval'][0]:.5f}, {r['peer_interval'][1]:.5f}], "
            f"load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    if 1000 in sizes:
        r = fresh_process(1000, 3 if args.quick else 5)
        print(f"{r['name']}: ours {r['ours_s']:.3f} s, scipy {r['peer_s']:.3f} s, "
              f"ratio {r['ratio']:.2f}x (medians of {r['rounds']}), load {os.getloadavg()[0]:.2f}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
