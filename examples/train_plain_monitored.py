"""A plain PyTorch fine-tuning loop, monitored for reversion and (optionally) blocked.

    python -m examples.train_plain_monitored [--quick] [--block]

The two lines that add monitoring are marked `# (1)` and `# (2)`; blocking wraps the loop in
`with block_reversion(...)`.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import warnings

import torch

from examples._toy_setup import LAYER, data, direction, tiny_gpt2, write_config
from revstats.torch_blocking import block_reversion
from revstats.torch_monitor import TorchMonitor


def main(quick: bool = False, block: bool = False, workdir: str | None = None, steps: int | None = None) -> dict:
    n, every = (20, 2) if quick else (100, 5)
    steps = steps or n
    workdir = workdir or tempfile.mkdtemp(prefix="revstats-example-")
    model = tiny_gpt2()
    cfg_dir = write_config(model, f"{workdir}/monitor-cfg", every=every, looks=steps // every)

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = data(64, seed=2)
    mon = TorchMonitor.from_config(cfg_dir, model, store=f"{workdir}/run.zarr", warn=False)  # (1)
    blocker = block_reversion(model, {LAYER: direction(cfg_dir)}) if block else contextlib.nullcontext()
    with blocker, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(1, steps + 1):
            batch = x[torch.randint(0, len(x), (16,))]
            loss = model(input_ids=batch, labels=batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.step(step)  # (2)
    s = mon.monitor.summary()
    final = s["checks"][-1]["alignment"][LAYER]
    print(f"{'blocked' if block else 'control'}: final alignment {final:+.3f}, first alarm at step {s['alarm_step']}")
    return {"alarm_step": s["alarm_step"], "final_alignment": final, "looks": s["looks"]}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--block", action="store_true")
    a = ap.parse_args()
    main(a.quick, a.block)
