"""A plain PyTorch fine-tuning loop, monitored for reversion and (optionally) blocked.

    python -m examples.train_plain_monitored [--quick] [--block]

The two lines that add monitoring are marked `# (1)` and `# (2)`; blocking wraps the loop in
`with block_reversion(...)`.
"""

from __future__ import annotations

import contextlib
import warnings

import torch

from examples._toy_setup import LAYER, data, direction, report, run_cli, setup_run
from revstats.training.blocking import block_reversion
from revstats.training.monitor import TorchMonitor


def main(quick: bool = False, block: bool = False, workdir: str | None = None, steps: int | None = None) -> dict:
    model, cfg_dir, workdir, steps = setup_run(quick, workdir, steps)

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
    return report(mon.monitor.summary(), "blocked" if block else "control")


if __name__ == "__main__":
    run_cli(main)
