"""The HF monitor callback logs through the Trainer: `report_to=["tensorboard"]` shows the
revstats scalars (read back with TensorBoard's own event reader), state.log_history has them,
each run alarms (and warns) on its own, and `stop_on_alarm` stops training."""

from __future__ import annotations

import glob
import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tensorboard")

from transformers import Trainer, TrainingArguments  # noqa: E402

from examples._toy_setup import LAYER, data, setup_run  # noqa: E402
from revstats.monitor import ReversionAlarm  # noqa: E402
from revstats.training.hf_callbacks import ReversionMonitorCallback  # noqa: E402


class _Dataset(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.x[i]}


def _train(tmp_path, name, *, stop_on_alarm=False, steps=8):
    model, cfg_dir, workdir, steps = setup_run(True, str(tmp_path / name), steps)
    cb = ReversionMonitorCallback.from_config(cfg_dir, stop_on_alarm=stop_on_alarm)
    args = TrainingArguments(output_dir=f"{workdir}/out", max_steps=steps, per_device_train_batch_size=16,
                             learning_rate=1e-3, report_to=["tensorboard"],
                             save_strategy="no", logging_steps=1000, use_cpu=True, disable_tqdm=True,
                             dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=_Dataset(data(64, seed=2)), callbacks=[cb])
    trainer.train()
    return trainer, cb, f"{workdir}/out"  # HF default: output_dir/runs/<date_host>


def _scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for f in glob.glob(f"{logdir}/**/events.out.tfevents.*", recursive=True):
        acc = EventAccumulator(f)
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_monitor_metrics_reach_tensorboard_and_each_run_alarms(tmp_path):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("default")
        runs = [_train(tmp_path, f"run{i}") for i in range(2)]
    alarms = [r for r in rec if issubclass(r.category, ReversionAlarm)]
    assert len(alarms) == 2, [str(r.message) for r in alarms]  # once per run, not per process
    for trainer, cb, logdir in runs:
        tags = _scalars(logdir)
        assert f"train/revstats/alignment/{LAYER}" in tags, sorted(tags)
        assert f"train/revstats/neglog10_p/{LAYER}" in tags and "train/revstats/alarm" in tags
        steps = [s for s, _ in tags[f"train/revstats/alignment/{LAYER}"]]
        looks = [c.step for c in cb.monitor.monitor.history]
        assert steps == looks and looks == [2, 4, 6, 8]
        logged = [v for _, v in tags[f"train/revstats/alignment/{LAYER}"]]
        assert logged == pytest.approx([c.alignment[LAYER] for c in cb.monitor.monitor.history], abs=1e-6)
        hist = [h for h in trainer.state.log_history if f"revstats/alignment/{LAYER}" in h]
        assert [h["step"] for h in hist] == looks
        assert max(v for _, v in tags["train/revstats/alarm"]) == 1.0


def test_stop_on_alarm_stops_training(tmp_path):
    trainer, cb, _ = _train(tmp_path, "stop", stop_on_alarm=True, steps=20)
    first = cb.monitor.monitor.first_alarm
    assert first is not None and trainer.state.global_step == first.step < 20
