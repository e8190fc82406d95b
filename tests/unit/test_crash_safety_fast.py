"""A few SIGKILLs of `revstats ingest` (the full campaign, >= 50 kills over every writer, is
`tests/calibration/test_crash_safety.py`, marked slow)."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from revstats.cli import main
from tests.calibration.crash_harness import CrashLog, crash_campaign, run, snapshot


def test_killed_ingest_leaves_whole_slabs_and_resumes(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    src = tmp_path / "log.npz"
    np.savez(src, acts=rng.normal(size=(2, 3, 2, 4, 8)).astype(np.float32),
             base=rng.normal(size=(2, 4, 8)).astype(np.float32))
    argv = ["ingest", str(src), "--acts-key", "acts", "--acts-dims", "run,step,layer,example,hidden",
            "--witness-key", "base", "--witness-dims", "layer,example,hidden", "--steps", "0,5,9"]

    import zarr.storage._local as local  # count the object writes of a reference run

    writes = []
    put = local._put
    monkeypatch.setattr(local, "_put", lambda *a, **k: (writes.append(1), put(*a, **k))[1])
    ref_out = str(tmp_path / "ref.zarr")
    res = CliRunner().invoke(main, [*argv, "--out", ref_out])
    assert res.exit_code == 0, res.output
    monkeypatch.undo()
    reference = snapshot(ref_out)
    assert len(reference) == 2 * 3 + 1 and len(writes) > 20

    out = str(tmp_path / "killed.zarr")
    log = CrashLog()
    crash_campaign([*argv, "--out", out], out, reference, len(writes), 1.0, n_kills=2,
                   rng=np.random.default_rng(0), log=log, finish=False)
    assert log.kills == 2 and log.checks == 2
    code, _, err = run([*argv, "--out", out])  # the rerun finishes the work, nothing duplicated
    assert code == 0, err
    assert snapshot(out) == reference
