"""bootstrap_ci (BCa of the mean, 9,999 resamples) against scipy.stats.bootstrap.

Run: ``python -m benchmarks.bench_bootstrap [--quick]``. For n = 1,000 and n = 100,000 it
times both (median of repeats; scipy at n = 100,000 once), checks that the intervals agree
within Monte Carlo error (|difference| < 4 x the bootstrap standard error / sqrt(B) scale,
see `_agree`), and reports the speed ratio and peak traced memory (tracemalloc).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from scipy import stats

from revstats.intervals import bootstrap_ci

N_RESAMPLES = 9999


def _time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def _peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _agree(ours, theirs, x: np.ndarray) -> bool:
    """Interval ends agree within Monte Carlo error: the quantile of B replicates has SE of
    roughly se_mean * sqrt(p(1-p)) / (phi(z_p) sqrt(B)) ~ 2.1 se_mean / sqrt(B) at p=0.025;
    two independent runs differ by sqrt(2) times that; allow 4 such SEs."""
    se_mean = x.std(ddof=1) / np.sqrt(x.size)
    tol = 4 * np.sqrt(2) * 2.1 * se_mean / np.sqrt(N_RESAMPLES)
    return bool(abs(ours.low - theirs.low) < tol and abs(ours.high - theirs.high) < tol)


def run(quick: bool = False) -> list[dict]:
    rows = []
    sizes = (1_000, 100_000)
    for n in sizes:
        # scipy needs a batch at n = 100,000 or its BCa jackknife allocates 75 GiB at once
        peer_batch = None if n <= 10_000 else 100
        x = np.random.default_rng(n).lognormal(size=n)  # skewed, so BCa differs from percentile
        ours_fn = lambda x=x: bootstrap_ci(x, "mean", method="bca", n_resamples=N_RESAMPLES, rng=1)  # noqa: E731
        peer_fn = lambda x=x, peer_batch=peer_batch: stats.bootstrap(  # noqa: E731
            (x,), np.mean, method="BCa", n_resamples=N_RESAMPLES, rng=2, batch=peer_batch
        ).confidence_interval
        ours_fn()  # warm up
        ours_s, ours = _time(ours_fn, 3 if quick else 7)
        peer_repeats = 1 if (n > 10_000 or quick) else 5
        peer_s, peer = _time(peer_fn, peer_repeats)
        rows.append(
            {
                "name": f"bootstrap_ci bca mean n={n} B={N_RESAMPLES}",
                "peer": "scipy.stats.bootstrap",
                "ours_s": ours_s,
                "peer_s": peer_s,
                "ratio": peer_s / ours_s,
                "agree": _agree(ours, peer, x),
                "ours_interval": (ours.low, ours.high),
                "peer_interval": (float(peer.low), float(peer.high)),
                "ours_peak_mib": _peak_mib(ours_fn),
                "peer_peak_mib": _peak_mib(peer_fn) if n <= 10_000 and not quick else float("nan"),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    for r in run(args.quick):
        print(
            f"{r['name']}: ours {r['ours_s']:.4f} s, scipy {r['peer_s']:.4f} s, "
            f"ratio {r['ratio']:.1f}x, agree={r['agree']}, "
            f"ours [{r['ours_interval'][0]:.5f}, {r['ours_interval'][1]:.5f}] "
            f"scipy [{r['peer_interval'][0]:.5f}, {r['peer_interval'][1]:.5f}], "
            f"peak MiB ours {r['ours_peak_mib']:.1f} scipy {r['peer_peak_mib']:.1f}"
        )


if __name__ == "__main__":
    main()
