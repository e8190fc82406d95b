"""SIGKILL a revstats writer at chosen points and check what it leaves behind.

Used by `tests/calibration/test_crash_safety.py` (slow, >= 50 kills) and
`tests/unit/test_crash_safety_fast.py` (a few kills).

A command runs in a subprocess through `DRIVER`, which wraps zarr's local-store write function
(`zarr.storage._local._put`: metadata documents and zarr-written chunks) and revstats' direct
chunk writer (`revstats.store._chunkio.ChunkReader.write_chunk`), counting both as object writes, and
kills its own process with SIGKILL:

* ``before:N`` - just before the N-th object write (every write boundary can be hit);
* ``torn:N`` - in the middle of the N-th write: half of the bytes are in zarr's temporary file,
  the rename into place never happens (a torn write, as a power cut would leave);
* ``replace:N`` - just before the N-th `os.replace` (reports rename their files into place);
* ``marker:N`` / ``digest:N`` - just before the N-th write of a `complete` marker chunk / of a
  digest-manifest chunk: the slab's data (and, for ``marker``, its digests) are on disk but the
  slab is not published yet;
* ``rmtree:N`` - just before the N-th `shutil.rmtree` (an ``--overwrite`` emptying the old
  store);
* ``slow:SECONDS`` - no kill: every object write waits SECONDS (a slow disk), so that a
  second writer started meanwhile meets this one while it writes;
* ``time:SECONDS`` - the parent kills the process after a delay (imports, model loading, compute).

After each kill the harness checks: the store opens (or holds nothing yet), every slab it shows
as complete equals the reference run's slab bit for bit, nothing else is visible, and
`verify_store` finds no problem; then it reruns the command (possibly killing it again), and at
the end the store equals the reference exactly - no slab lost, none duplicated.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DRIVER = r'''
import os, signal, sys
spec, argv = sys.argv[1], sys.argv[2:]
kind, _, arg = spec.partition(":")
_note = os.environ.get("CRASH_NOTE")  # the harness learns what the kill interrupted
_trace = os.environ.get("CRASH_TRACE")  # one line per object write (reference runs)
def _die(path, n):
    if _note:
        with open(_note, "w") as f:
            f.write(f"{kind} {n} {path}\n")
    os.kill(os.getpid(), signal.SIGKILL)
def _log(path):
    if _trace:
        with open(_trace, "a") as f:
            f.write(f"{_count[0]} {path}\n")
import zarr.storage._local as _local
_orig_put = _local._put
_count = [0]
_marks = [0]
_acts = [0]
def _acts_write(path, torn):
    # `acts:N` / `tornacts:N`: before / in the middle of the N-th activation chunk write
    if "/acts/c/" not in str(path):
        return False
    _acts[0] += 1
    if kind == ("tornacts" if torn else "acts") and _acts[0] == int(arg):
        return True
    return False
def _put(path, value, exclusive=False):
    _count[0] += 1
    _log(path)
    if kind == "slow":  # a slow disk: every object write waits (widens a writer's window)
        __import__("time").sleep(float(arg))
    if kind in ("marker", "digest") and f"/{'complete' if kind == 'marker' else 'digest'}/c/" in str(path):
        _marks[0] += 1  # the window after a slab's data and before it is published
        if _marks[0] == int(arg):
            _die(path, _count[0])
    if (kind == "before" and _count[0] == int(arg)) or (kind == "acts" and _acts_write(path, False)):
        _die(path, _count[0])
    if (kind == "torn" and _count[0] == int(arg)) or (kind == "tornacts" and _acts_write(path, True)):
        raw = value.to_bytes()
        tmp = path.with_suffix(".0123abcd.partial")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(raw[: len(raw) // 2])
            f.flush()
        _die(path, _count[0])
    return _orig_put(path, value, exclusive=exclusive)
_local._put = _put
try:  # revstats' direct chunk writer (local stores) bypasses zarr's store: count it too
    from revstats.store import _chunkio
except ImportError:
    _chunkio = None
if _chunkio is not None:
    _orig_write_chunk = _chunkio.ChunkReader.write_chunk
    def _write_chunk(self, idx, values):
        _count[0] += 1
        path = self._path(idx)
        _log(path)
        if kind == "slow":
            __import__("time").sleep(float(arg))
        if (kind == "before" and _count[0] == int(arg)) or (kind == "acts" and _acts_write(path, False)):
            _die(path, _count[0])
        if (kind == "torn" and _count[0] == int(arg)) or (kind == "tornacts" and _acts_write(path, True)):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".0123abcd.partial", "wb") as f:
                f.write(b"\0" * (self._chunk_nbytes // 2))
                f.flush()
            _die(path, _count[0])
        return _orig_write_chunk(self, idx, values)
    _chunkio.ChunkReader.write_chunk = _write_chunk
if kind == "replace":  # kill just before the N-th os.replace (atomic renames of plain files)
    _orig_replace = os.replace
    _renames = [0]
    def _replace(src, dst, *a, **k):
        _renames[0] += 1
        if _renames[0] == int(arg):
            _die(dst, _renames[0])
        return _orig_replace(src, dst, *a, **k)
    os.replace = _replace
if kind == "rmtree":  # kill just before the N-th shutil.rmtree (`--overwrite` emptying a store)
    import shutil
    _orig_rmtree = shutil.rmtree
    _trees = [0]
    def _rmtree(path, *a, **k):
        _trees[0] += 1
        if _trees[0] == int(arg):
            _die(path, _trees[0])
        return _orig_rmtree(path, *a, **k)
    shutil.rmtree = _rmtree
import atexit
atexit.register(lambda: sys.stderr.write(f"\nZARR_WRITES={_count[0]}\n"))
from revstats.cli import main
main(argv, prog_name="revstats")
'''


@dataclass
class CrashLog:
    """What happened over a crash campaign (summed into the test report)."""

    kills: int = 0
    checks: int = 0
    reruns: int = 0
    slabs_seen_after_kill: int = 0
    modes: dict[str, int] = field(default_factory=dict)
    #: what each kill interrupted: "acts chunk", "metadata", ... ("timer" for timed kills)
    phases: dict[str, int] = field(default_factory=dict)

    def record_kill(self, mode: str, note: str) -> str:
        """Count one kill of `mode`; `note` is the driver's "KIND N PATH" line."""
        kind, _, rest = note.strip().partition(" ")
        path = rest.partition(" ")[2]
        if kind == "rmtree":
            phase = "--overwrite deleting the old store"
        elif kind == "timer":
            phase = "timer, no write yet" if path == "-" else f"timer, after a {write_phase(path)} write"
        else:
            phase = write_phase(path) if path else "unknown"
        self.kills += 1
        self.modes[mode] = self.modes.get(mode, 0) + 1
        self.phases[phase] = self.phases.get(phase, 0) + 1
        return phase


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.setdefault("OMP_NUM_THREADS", "1")
    env["COLUMNS"] = "120"
    return env


def run(argv: list[str], spec: str = "none:0", *, cwd: str | None = None) -> tuple[int, int, str]:
    """Run `revstats argv` under the driver; return (returncode, zarr writes, stderr)."""
    if spec.startswith("time:"):
        proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, "none:0", *argv], env=_env(), cwd=cwd,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            _, err = proc.communicate(timeout=float(spec[5:]))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate()
        return proc.returncode, -1, err
    res = subprocess.run(
        [sys.executable, "-c", DRIVER, spec, *argv], env=_env(), cwd=cwd,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=600,
    )
    writes = -1
    for line in res.stderr.splitlines():
        if line.startswith("ZARR_WRITES="):
            writes = int(line.split("=")[1])
    return res.returncode, writes, res.stderr


def run_noted(argv: list[str], spec: str, *, cwd: str | None = None, trace: bool = False) -> tuple[int, str, str]:
    """`run` that also says what a kill interrupted: "KIND N PATH" (killed at the N-th object
    write, to PATH); for a timed kill "timer N PATH" (N-th write, the last one before the
    kill; "timer 0 -" if none); "" when the process was not killed. With `trace`, all the
    object writes of the run instead, one "N PATH" line each."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="crashnote") as tmp:
        note_path, trace_path = os.path.join(tmp, "note"), os.path.join(tmp, "trace")
        os.environ["CRASH_NOTE"], os.environ["CRASH_TRACE"] = note_path, trace_path
        try:
            code, _, err = run(argv, spec, cwd=cwd)
        finally:
            del os.environ["CRASH_NOTE"], os.environ["CRASH_TRACE"]
        traced = open(trace_path).read() if os.path.exists(trace_path) else ""
        if trace:
            return code, err, traced
        note = open(note_path).read() if os.path.exists(note_path) else ""
        if spec.startswith("time:") and code == -signal.SIGKILL:
            lines = traced.splitlines()
            note = f"timer {lines[-1]}" if lines else "timer 0 -"
    return code, err, note


def write_phase(path: str) -> str:
    """Which part of a store an object write at `path` belongs to."""
    p = path.replace(os.sep, "/")
    for name, phase in (("/acts/c/", "acts chunk"), ("/digest/c/", "digest manifest"),
                        ("/complete/c/", "completion marker"), ("/witness/c/", "witness"),
                        ("/behavior/c/", "behavior chunk"), ("/task/c/", "task chunk")):
        if name in p:
            return phase
    return "metadata" if p.endswith("zarr.json") else "other"


def snapshot(path: str) -> dict[str, str]:
    """sha256 of every visible complete slab (acts, behavior, task) and of the witness."""
    from revstats.store import open_store

    ds = open_store(path)
    out: dict[str, str] = {}
    complete = ds["complete"].values
    steps = [int(s) for s in ds["step"].values]
    assert len(set(steps)) == len(steps), f"duplicated steps {steps}"
    for ri, run_id in enumerate(ds["run"].values):
        for si, step in enumerate(steps):
            if not complete[ri, si]:
                # nothing partial is visible: an incomplete slab reads as NaN only
                assert np.isnan(ds["acts"].isel(run=ri, step=si).values).all()
                continue
            h = hashlib.sha256()
            for name in ("acts", "behavior", "task"):
                if name in ds:
                    h.update(np.ascontiguousarray(ds[name].isel(run=ri, step=si).values).tobytes())
            out[f"{run_id}@{step}"] = h.hexdigest()
    if "witness" in ds:
        out["witness"] = hashlib.sha256(np.ascontiguousarray(ds["witness"].values).tobytes()).hexdigest()
    return out


def _holds_nothing(path: str) -> bool:
    from revstats.store import _aborted_creation

    return (not os.path.exists(path)) or not os.listdir(path) or _aborted_creation(path)


def check_after_kill(path: str, reference: dict[str, str], log: CrashLog) -> int:
    """The store a killed writer left: opens, shows only whole slabs equal to the reference.
    Returns how many complete slabs (and witness) it shows."""
    from revstats.store import verify_store

    log.checks += 1
    if _holds_nothing(path):
        return 0
    snap = snapshot(path)
    for key, digest in snap.items():
        assert key in reference, f"{key} visible after a kill but not in the reference run"
        assert digest == reference[key], f"{key} differs from the reference run after a kill"
    log.slabs_seen_after_kill += len(snap)
    problems = verify_store(path)
    assert problems == [], problems
    return len(snap)


def crash_campaign(
    argv: list[str],
    out: str,
    reference: dict[str, str],
    n_writes: int,
    ref_seconds: float,
    *,
    n_kills: int,
    rng: np.random.Generator,
    log: CrashLog,
    cwd: str | None = None,
    finish: bool = True,
) -> None:
    """Kill `argv` (which writes the store `out`) `n_kills` times.

    Each attempt reruns the command on whatever the previous kill left (so later kills hit a
    resumed writer); when an attempt completes instead, its store must equal the reference and
    a fresh chain starts. With `finish`, the last chain is completed and compared, then rerun
    once more to show a finished store is left untouched.
    """
    attempts, kills = 0, 0
    while kills < n_kills and attempts < 4 * n_kills:
        attempts += 1
        mode = str(rng.choice(["before", "before", "torn", "time"]))
        if mode == "time":
            spec = f"time:{rng.uniform(0.3, max(ref_seconds, 0.6)):.2f}"
        else:
            # a resumed writer has fewer writes left: aim early half the time
            high = n_writes if rng.random() < 0.5 else max(2, n_writes // 3)
            spec = f"{mode}:{int(rng.integers(1, high + 1))}"
        code, err, note = run_noted(argv, spec, cwd=cwd)
        if code == -signal.SIGKILL:
            kills += 1
            log.record_kill(mode, note)
            check_after_kill(out, reference, log)
        else:  # the kill point lay beyond the work left: the rerun finished it
            assert code == 0, err[-3000:]
            log.reruns += 1
            assert snapshot(out) == reference
            shutil.rmtree(out)
    if not finish:
        return
    code, _, err = run(argv, cwd=cwd)
    log.reruns += 1
    assert code == 0, err[-3000:]
    assert snapshot(out) == reference
    assert_rerun_is_noop(argv, out, reference, cwd=cwd)


def assert_rerun_is_noop(argv: list[str], out: str, reference: dict[str, str], *, cwd: str | None = None) -> None:
    """Rerunning a finished command rewrites no data chunk and changes nothing."""
    before = {p: p.stat().st_mtime_ns for p in Path(out).rglob("c/**/*") if p.is_file()}
    code, _, err = run(argv, cwd=cwd)
    assert code == 0, err[-3000:]
    after = {p: p.stat().st_mtime_ns for p in Path(out).rglob("c/**/*") if p.is_file()}
    assert before == after, "rerunning a finished command rewrote data chunks"
    assert snapshot(out) == reference


def _wait_for_writes(trace: str, n: int, proc: subprocess.Popen, timeout: float = 600) -> None:
    """Until the writer `proc` (run under the driver with CRASH_TRACE=`trace`) has started its
    `n`-th object write, or has exited."""
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < timeout:
        if os.path.exists(trace):
            with open(trace) as f:
                if sum(1 for _ in f) >= n:
                    return
        time.sleep(0.02)


def overwrite_race(argv: list[str], out: str, reference: dict[str, str], *, rng: np.random.Generator,
                   rounds: int, log: CrashLog, n_writes: int, cwd: str | None = None,
                   slow: float = 0.05) -> dict[str, int]:
    """Two writers of `argv` on `out`, one of them with ``--overwrite``; each round picks:

    * ``overwrite_during`` - the plain writer starts on a slow disk (``slow:`` kind) and the
      overwrite starts when the first one has begun its N-th object write (N uniform over a
      reference run's writes): it meets the first writer at every stage of its run;
    * ``overwrite_first`` - the overwrite starts on the slow disk, the plain writer at its
      N-th write;
    * ``overwrite_after`` - the overwrite starts when the first writer has exited.

    Each run must finish (exit 0) or be refused cleanly (exit 2, "open by another writer"),
    never corrupt the store or die with a traceback; afterwards the store equals the
    reference (both runs write the same data), `verify_store` is clean and a plain rerun
    changes nothing. Returns counts per "<scenario>: <exit codes of first, second>"."""
    import tempfile

    from revstats.store import verify_store

    outcome: dict[str, int] = {}
    for _ in range(rounds):
        if os.path.exists(out):
            shutil.rmtree(out)
        scenario = str(rng.choice(["overwrite_during", "overwrite_during", "overwrite_first",
                                   "overwrite_after"]))
        n = int(rng.integers(1, n_writes + 1))
        extras = [[], ["--overwrite"]] if scenario != "overwrite_first" else [["--overwrite"], []]
        procs, logs = [], []
        with tempfile.TemporaryDirectory(prefix="race") as tmp:
            trace = os.path.join(tmp, "trace")
            for k, extra in enumerate(extras):
                spec, env = "none:0", _env()
                if k == 0:
                    if scenario != "overwrite_after":
                        spec = f"slow:{slow}"
                    env["CRASH_TRACE"] = trace
                else:
                    if scenario == "overwrite_after":
                        procs[0].wait(timeout=600)
                    else:
                        _wait_for_writes(trace, n, procs[0])
                # stderr goes to files, not pipes: a child never blocks on a full pipe while
                # the parent waits for the other one
                logs.append(open(os.path.join(tmp, f"err{k}"), "w+"))
                procs.append(subprocess.Popen(
                    [sys.executable, "-c", DRIVER, spec, *argv, *extra], env=env, cwd=cwd,
                    stdout=subprocess.DEVNULL, stderr=logs[-1], text=True))
            codes, errs = [], []
            for p, f in zip(procs, logs, strict=True):
                p.wait(timeout=600)
                f.seek(0)
                codes.append(p.returncode)
                errs.append(f.read())
                f.close()
        for code, err in zip(codes, errs, strict=True):
            assert code in (0, 2), err[-3000:]
            assert "Traceback" not in err, err[-3000:]
            if code == 2:
                assert "another writer" in " ".join(err.split()), err[-2000:]
        assert 0 in codes, errs
        key = f"{scenario}: exit {codes[0]}, {codes[1]}"
        outcome[key] = outcome.get(key, 0) + 1
        log.checks += 1
        assert snapshot(out) == reference
        assert verify_store(out) == []
        assert_rerun_is_noop(argv, out, reference, cwd=cwd)
    return outcome


def reference_run(argv: list[str], out: str, *, cwd: str | None = None) -> tuple[dict[str, str], int, float]:
    """Run `argv` to completion once; return (snapshot, zarr writes, seconds)."""
    t0 = time.perf_counter()
    code, writes, err = run(argv, cwd=cwd)
    assert code == 0, err[-3000:]
    return snapshot(out), writes, time.perf_counter() - t0
