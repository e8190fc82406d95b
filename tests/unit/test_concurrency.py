"""Concurrency: a second writer process gets a clear error; a reader running beside a real
writer process only ever sees whole slabs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

from revstats.store import create_store, open_store, verify_store

_HOLDER = textwrap.dedent(
    """
    import sys
    from revstats.store import open_writer
    w = open_writer(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.readline()  # hold the lock until the test says so
    w.close()
    """
)

_SECOND = textwrap.dedent(
    """
    import sys
    from revstats.errors import RevstatsError
    from revstats.store import open_writer
    try:
        open_writer(sys.argv[1])
    except RevstatsError as e:
        print("REFUSED", e)
    else:
        print("OPENED")
    """
)

_APPENDER = textwrap.dedent(
    """
    import sys
    import time
    import numpy as np
    from revstats.store import open_writer
    with open_writer(sys.argv[1]) as w:
        print("started", flush=True)
        for step in range(1, int(sys.argv[2]) + 1):
            for run in ("a", "b"):  # new steps grow the store; each slab holds its step number
                w.write_slab(run, step, np.full((2, 8, 64), float(step)), task=float(step))
                time.sleep(0.05)  # pace the writer so that reads interleave with many writes
    """
)


def _env():
    return {**os.environ, "PYTHONPATH": os.getcwd()}


def _store(path):
    with create_store(path, runs=["a", "b"], layers=["l0", "l1"], examples=[f"x{i}" for i in range(8)],
                      hidden=64, steps=[0], task={"metric": "loss"}, source="simulator",
                      provenance={}) as w:
        w.write_slab("a", 0, np.zeros((2, 8, 64)), task=0.0)
        w.write_slab("b", 0, np.zeros((2, 8, 64)), task=0.0)
    return str(path)


def test_two_writer_processes_second_gets_a_clear_error(tmp_path):
    path = _store(tmp_path / "s.zarr")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, path], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = subprocess.run([sys.executable, "-c", _SECOND, path], capture_output=True,
                                text=True, env=_env(), timeout=300)
        assert second.stdout.startswith("REFUSED"), second.stdout + second.stderr
        assert "is open by another writer" in second.stdout
        # and through the CLI: a usage error that says what to do, not a traceback
        cli = subprocess.run(
            [sys.executable, "-m", "revstats", "simulate", "--preset", "theory-flat", "--runs", "1",
             "--steps", "2", "--hidden", "64", "--out", path],
            capture_output=True, text=True, env=_env(), timeout=300)
        assert cli.returncode == 2 and "is open by another writer" in cli.stderr, cli.stderr
        assert "Traceback" not in cli.stderr
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=60)
    second = subprocess.run([sys.executable, "-c", _SECOND, path], capture_output=True, text=True,
                            env=_env(), timeout=300)
    assert second.stdout.startswith("OPENED")  # the lock went with the first writer


def test_reader_beside_a_writer_process_sees_only_whole_slabs(tmp_path):
    path = _store(tmp_path / "s.zarr")
    n_steps = 30
    proc = subprocess.Popen([sys.executable, "-c", _APPENDER, path, str(n_steps)],
                            stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout.readline().strip() == "started"
    reads, mid_write, visible = 0, 0, set()
    while True:
        running = proc.poll() is None
        ds = open_store(path)
        acts = ds["acts"].values
        task = ds["task"].values
        for ri, run in enumerate(ds["run"].values):
            for si, step in enumerate(ds["step"].values):
                if ds["complete"].values[ri, si]:
                    assert (acts[ri, si] == float(step)).all(), f"partial slab {run}@{step}"
                    assert task[ri, si] == float(step)
                    visible.add((str(run), int(step)))
                else:
                    assert np.isnan(acts[ri, si]).all() and np.isnan(task[ri, si])
        reads += 1
        n_done = int(ds["complete"].values.sum())
        mid_write += running and n_done < 2 * (n_steps + 1)
        if not running:
            break
    assert proc.wait() == 0
    assert reads >= 2 and mid_write >= 1
    print(f"{reads} reads, {mid_write} while the writer was half way")
    assert len(visible) == 2 * (n_steps + 1)  # the last read, after the writer, sees everything
    assert verify_store(path) == []


def test_reader_waits_out_a_growth_in_progress(tmp_path):
    """Between a writer's resizes of `complete` and `digest` and its new consolidated view the
    arrays' own metadata disagree for a moment; a reader of an unfinished store reads again
    instead of calling that corruption (seen as a flaky SchemaError under load)."""
    import threading

    import zarr

    path = str(tmp_path / "s.zarr")
    w = create_store(path, runs=["a", "b"], layers=["l0"], examples=[f"x{i}" for i in range(4)],
                     hidden=8, steps=[0], source="simulator", provenance={})
    w.write_slab("a", 0, np.zeros((1, 4, 8)))
    try:
        complete = zarr.open_array(os.path.join(path, "complete"), mode="r+")
        shape = complete.shape
        complete.resize((shape[0], shape[1] + 1))  # a growth caught half way

        def finish_growth():
            complete.resize(shape)

        timer = threading.Timer(0.3, finish_growth)
        timer.start()
        ds = open_store(path)
        timer.join()
        assert ds.sizes["run"] == 2
    finally:
        w.close()
