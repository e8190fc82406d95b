"""A Hugging Face Trainer fine-tuning run, monitored for reversion and (optionally) blocked.

    python -m examples.train_hf_monitored [--quick] [--block]

Monitoring is one import and one callback: `callbacks=[ReversionMonitorCallback.from_config(...)]`.
"""

from __future__ import annotations

import warnings

import torch
from transformers import Trainer, TrainingArguments

from examples._toy_setup import LAYER, data, direction, report, run_cli, setup_run
from revstats.training.hf_callbacks import BlockingCallback, ReversionMonitorCallback


class _Dataset(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.x[i], "labels": self.x[i]}


def main(quick: bool = False, block: bool = False, workdir: str | None = None, steps: int | None = None) -> dict:
    model, cfg_dir, workdir, steps = setup_run(quick, workdir, steps)
    monitor = ReversionMonitorCallback.from_config(cfg_dir, warn=False)
    callbacks = [monitor]
    if block:
        callbacks.append(BlockingCallback({LAYER: direction(cfg_dir)}, method="activation"))
    args = TrainingArguments(output_dir=f"{workdir}/out", max_steps=steps, per_device_train_batch_size=16,
                             learning_rate=1e-3, report_to=[], save_strategy="no", logging_strategy="no",
                             use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=_Dataset(data(64, seed=2)), callbacks=callbacks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    return report(monitor.monitor.monitor.summary(), f"HF {'blocked' if block else 'control'}")


if __name__ == "__main__":
    run_cli(main)
