"""A few SIGKILLs of `revstats ingest` (the full campaign, >= 50 kills over every writer, is
`tests/calibration/test_crash_safety.py`, marked slow)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from revstats.cli import main
from tests.calibration.crash_harness import (
    CrashLog,
    check_after_kill,
    crash_campaign,
    overwrite_race,
    run,
    snapshot,
)


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


def _ingest_argv(tmp_path):
    rng = np.random.default_rng(4)
    src = tmp_path / "log.npz"
    np.savez(src, acts=rng.normal(size=(2, 3, 1, 4, 8)).astype(np.float32),
             base=rng.normal(size=(1, 4, 8)).astype(np.float32),
             harm=(rng.random((2, 3, 4)) < 0.5).astype(np.float32))
    return ["ingest", str(src), "--acts-key", "acts", "--acts-dims", "run,step,layer,example,hidden",
            "--witness-key", "base", "--witness-dims", "layer,example,hidden",
            "--behavior-key", "harm"]


def test_kill_between_a_slabs_data_and_its_publication(tmp_path):
    """Kills in the window the digest manifest adds: after a slab's data, before its digests
    (`digest:N`) or before its marker (`marker:N`). The slab stays invisible, verify is clean,
    the rerun completes the store exactly."""
    argv = _ingest_argv(tmp_path)
    ref = str(tmp_path / "ref.zarr")
    code, _, err = run([*argv, "--out", ref])
    assert code == 0, err
    reference = snapshot(ref)
    log = CrashLog()
    for spec in ("digest:2", "marker:3"):
        out = str(tmp_path / f"{spec.replace(':', '')}.zarr")
        code, _, err = run([*argv, "--out", out], spec)
        assert code == -9, (spec, err[-2000:])
        log.kills += 1
        check_after_kill(out, reference, log)
        code, _, err = run([*argv, "--out", out])
        assert code == 0, err
        assert snapshot(out) == reference
    assert log.kills == 2


def test_overwrite_race_refuses_cleanly_and_loses_nothing(tmp_path):
    argv = _ingest_argv(tmp_path)
    ref = str(tmp_path / "ref.zarr")
    code, writes, err = run([*argv, "--out", ref])
    assert code == 0, err
    out = str(tmp_path / "raced.zarr")
    outcome = overwrite_race([*argv, "--out", out], out, snapshot(ref), rng=np.random.default_rng(1),
                             rounds=2, log=CrashLog(), n_writes=writes)
    assert sum(outcome.values()) == 2


def test_killed_overwrite_is_finished_by_the_rerun(tmp_path):
    """`ingest --overwrite` SIGKILLed while it deletes the old store (before its 1st and its
    3rd `rmtree`): the directory is refused by readers with a message that says what happened,
    and both a rerun with `--overwrite` and a plain rerun finish the job (it used to be a
    directory "not a store", which `--overwrite` then refused to touch for good)."""
    from revstats.errors import SchemaError
    from revstats.store import open_store

    argv = _ingest_argv(tmp_path)
    ref = str(tmp_path / "ref.zarr")
    code, _, err = run([*argv, "--out", ref])
    assert code == 0, err
    reference = snapshot(ref)
    for n, extra in ((1, ["--overwrite"]), (3, [])):
        out = str(tmp_path / f"k{n}.zarr")
        code, _, err = run([*argv, "--out", out])
        assert code == 0, err
        code, _, err = run([*argv, "--out", out, "--overwrite"], f"rmtree:{n}")
        assert code == -9, err[-2000:]
        with pytest.raises(SchemaError, match="--overwrite was stopped"):
            open_store(out)
        code, _, err = run([*argv, "--out", out, *extra])
        assert code == 0, err[-2000:]
        assert snapshot(out) == reference
