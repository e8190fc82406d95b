"""The worked examples of docs/training-tools.md run (quick mode): monitored runs alarm,
blocked runs keep the alignment at zero."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")


@pytest.mark.parametrize("module", ["train_plain_monitored", "train_hf_monitored"])
def test_example_runs_monitored_and_blocked(module, tmp_path):
    mod = pytest.importorskip(f"examples.{module}")
    control = mod.main(quick=True, workdir=str(tmp_path / "c"), steps=6)
    blocked = mod.main(quick=True, block=True, workdir=str(tmp_path / "b"), steps=6)
    assert control["looks"] == 3 and control["alarm_step"] is not None
    assert blocked["alarm_step"] is None and abs(blocked["final_alignment"]) < 1e-3
