"""Overhead of monitoring and blocking a training step vs a plain step (tiny GPT-2, CPU).

    python -m benchmarks.bench_training [--quick]

Rows {name, peer, ours_s, peer_s, ratio}: seconds per step (median of repeats) with the revstats
tool vs the plain step. Monitoring looks every step here (worst case; with `every=k` the
amortised overhead is ~1/k of it); activation blocking runs the frozen reference forward on
every batch (expected ratio ~1.3-1.6: one extra no-grad forward).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import torch

from examples._toy_setup import LAYER, data, direction, probes, tiny_gpt2, write_config
from revstats.training.blocking import ReversionPenalty, block_reversion
from revstats.training.monitor import TorchMonitor


def _time_steps(step_fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        step_fn()
    return (time.perf_counter() - t0) / n


def _paired(variant, plain, n: int, repeats: int) -> tuple[float, float]:
    """Median seconds per step of `variant` and of `plain`, measured in alternating rounds so
    that load drift and warm-up hit both alike (a single plain measurement taken first made
    every tool look faster than the plain step)."""
    variant()
    plain()  # warm-up both
    ours, peer = [], []
    for _ in range(repeats):
        peer.append(_time_steps(plain, n))
        ours.append(_time_steps(variant, n))
    return statistics.median(ours), statistics.median(peer)


def _paired_in_context(make_ctx, plain, n: int, repeats: int) -> tuple[float, float]:
    """Like `_paired` for interventions installed by a context manager: each round times the
    plain step, then the same step inside a freshly entered context (entry cost excluded)."""
    plain()
    ours, peer = [], []
    for _ in range(repeats):
        peer.append(_time_steps(plain, n))
        with make_ctx():
            plain()  # warm-up inside the context
            ours.append(_time_steps(plain, n))
    return statistics.median(ours), statistics.median(peer)


def run(quick: bool) -> list[dict]:
    n, repeats = (5, 3) if quick else (30, 5)
    torch.manual_seed(0)
    workdir = tempfile.mkdtemp(prefix="revstats-bench-")
    model = tiny_gpt2()
    cfg_dir = write_config(model, f"{workdir}/cfg", every=1, looks=10_000)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = data(64, seed=2)

    def plain() -> None:
        batch = x[:16]
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()

    rows = []
    mon = TorchMonitor.from_config(cfg_dir, model, warn=False)
    counter = [0]

    def monitored() -> None:
        plain()
        counter[0] += 1
        mon.step(counter[0])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows.append(("monitored step (look every step)", *_paired(monitored, plain, n, repeats)))
        rows.append(("activation-blocked step", *_paired_in_context(
            lambda: block_reversion(model, {LAYER: direction(cfg_dir)}), plain, n, repeats)))
        pen = ReversionPenalty(model, probes(), {LAYER: direction(cfg_dir)}, lam=1.0)

        def penalised() -> None:
            batch = x[:16]
            loss = model(input_ids=batch, labels=batch).loss + pen()
            opt.zero_grad()
            loss.backward()
            opt.step()

        rows.append(("penalty-blocked step", *_paired(penalised, plain, n, repeats)))
        rows.append(("parameter-projected step", *_paired_in_context(
            lambda: block_reversion(model, {LAYER: direction(cfg_dir)}, method="parameter",
                                    optimizer=opt, probes=probes()), plain, n, repeats)))
    return [{"name": f"{name} overhead (ours/peer)", "peer": "plain training step", "ours_s": t,
             "peer_s": peer, "ratio": t / peer} for name, t, peer in rows]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    for row in run(ap.parse_args().quick):
        print(f"{row['name']:36s} {row['ours_s'] * 1e3:8.2f} ms vs {row['peer_s'] * 1e3:8.2f} ms  ratio {row['ratio']:.2f}")
