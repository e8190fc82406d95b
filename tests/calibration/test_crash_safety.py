"""Crash safety: every writer is SIGKILLed at seeded random points (>= 50 kills in total).

After each kill the store opens (or holds nothing yet), every slab it shows as complete equals
the uninterrupted reference run bit for bit, no partial slab is visible and `verify_store` is
clean; rerunning the command completes the work without duplicating or rewriting anything.
Kill points: before the N-th object write, in the middle of it (a torn temporary file), or
after a random delay (see `crash_harness`). The tally is printed (`pytest -s`) and checked.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import numpy as np
import pytest

from tests.calibration.crash_harness import CrashLog, crash_campaign, reference_run

pytestmark = pytest.mark.slow

LOG = CrashLog()
KILLS = {"simulate": 16, "ingest_npz": 10, "ingest_h5": 8, "capture": 16, "capture_writes": 12,
         "report": 10, "organism": 6}


def _campaign(name, argv, tmp_path, seed):
    ref = str(tmp_path / "ref.zarr")
    reference, n_writes, seconds = reference_run([*argv, "--out", ref], ref)
    out = str(tmp_path / "killed.zarr")
    before = LOG.kills
    crash_campaign([*argv, "--out", out], out, reference, n_writes, seconds,
                   n_kills=KILLS[name], rng=np.random.default_rng(seed), log=LOG)
    assert LOG.kills - before == KILLS[name]
    print(f"{name}: {KILLS[name]} kills survived; total {LOG}")


def _ingest_npz_argv(tmp_path):
    rng = np.random.default_rng(5)
    src = tmp_path / "log.npz"
    np.savez(src, acts=rng.normal(size=(3, 3, 2, 5, 8)).astype(np.float32),
             base=rng.normal(size=(3, 2, 5, 8)).astype(np.float32),
             harm=(rng.random((3, 3, 5)) < 0.3).astype(np.float32))
    return ["ingest", str(src), "--acts-key", "acts", "--acts-dims", "run,step,layer,example,hidden",
            "--witness-key", "base", "--witness-dims", "run,layer,example,hidden",
            "--behavior-key", "harm", "--runs", "c0,b0,p0", "--arms", "control,blocked,push"]


def test_simulate_survives_kills(tmp_path):
    argv = ["simulate", "--preset", "theory-flat", "--runs", "2", "--steps", "4", "--hidden", "64"]
    _campaign("simulate", argv, tmp_path, 1)


def test_ingest_npz_survives_kills(tmp_path):
    _campaign("ingest_npz", _ingest_npz_argv(tmp_path), tmp_path, 2)


def test_ingest_h5_survives_kills(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(6)
    src = tmp_path / "log.h5"
    with h5py.File(src, "w") as f:
        f["acts"] = rng.normal(size=(2, 4, 1, 6, 16)).astype(np.float32)
        f["base"] = rng.normal(size=(1, 6, 16)).astype(np.float32)
        f["loss"] = rng.random((2, 4))
    argv = ["ingest", str(src), "--acts-key", "acts", "--acts-dims", "run,step,layer,example,hidden",
            "--witness-key", "base", "--witness-dims", "layer,example,hidden", "--task-key", "loss",
            "--steps", "0,1,2,3"]
    _campaign("ingest_h5", argv, tmp_path, 3)


def _capture_argv(tmp_path):
    from revstats.capture._tiny import build_tiny_model

    root = tmp_path / "exp"
    build_tiny_model("gpt2", root / "base", seed=0)
    build_tiny_model("gpt2", root / "aligned", seed=1)
    for run_name, seed in (("a-seed0", 10), ("b-seed1", 20)):
        for k, step in enumerate((10, 20)):
            build_tiny_model("gpt2", root / "runs" / run_name / f"checkpoint-{step}",
                             seed=seed + k, with_tokenizer=False)
    probes = [{"id": f"q{i}", "prompt": p, "response": r} for i, (p, r) in enumerate(
        [("tell me a story", "the cat"), ("how big is the sun", "big"), ("write code", "no")])]
    (root / "probes.jsonl").write_text("\n".join(json.dumps(p) for p in probes) + "\n")
    argv = ["capture", "--witness", str(root / "base"), "--aligned", str(root / "aligned"),
            "--runs", str(root / "runs" / "*"), "--probes", str(root / "probes.jsonl"),
            "--layers", "0,1,2", "--batch-size", "2", "--quiet"]
    return argv


def test_capture_survives_kills(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    _campaign("capture", _capture_argv(tmp_path), tmp_path, 4)


def _slabs_shown(out):
    from tests.calibration.crash_harness import _holds_nothing, snapshot

    return 0 if _holds_nothing(out) else len([k for k in snapshot(out) if k != "witness"])


def test_capture_survives_kills_during_its_writes(tmp_path):
    """Kills that land while capture writes slabs (not while it loads models): before or in
    the middle of a slab's activation chunk write (`acts:K`, `tornacts:K`), just before its
    digest-manifest chunk (`digest:K`) or its completion marker (`marker:K`). K counts the
    writes of the slabs still missing, so every attempt lands in a write of the (resumed)
    writer; the driver reports which object each kill interrupted, and the test checks that
    every kill hit a slab write."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.calibration.crash_harness import CrashLog, check_after_kill, run, run_noted, snapshot

    argv = _capture_argv(tmp_path)
    ref = str(tmp_path / "ref.zarr")
    reference, _, _ = reference_run([*argv, "--out", ref], ref)
    n_slabs = len(reference) - 1  # minus the witness
    out = str(tmp_path / "killed.zarr")
    rng = np.random.default_rng(11)
    local = CrashLog()
    seen_at_kill = []  # complete slabs the store showed right after each kill
    attempts = finished = 0
    while local.kills < KILLS["capture_writes"]:
        attempts += 1
        assert attempts <= 2 * KILLS["capture_writes"], f"kills did not land: {local}"
        left = n_slabs - _slabs_shown(out)
        mode = str(rng.choice(["acts", "tornacts", "digest", "marker"]))
        # capture writes each missing slab as one activation chunk, one manifest row, one marker
        code, err, note = run_noted([*argv, "--out", out], f"{mode}:{int(rng.integers(1, left + 1))}")
        if code != -9:  # cannot happen while slabs are missing, but never loop forever
            assert code == 0, err[-3000:]
        else:
            phase = local.record_kill(f"capture-{mode}", note)
            assert phase in ("acts chunk", "digest manifest", "completion marker"), note
            check_after_kill(out, reference, local)
            seen_at_kill.append(_slabs_shown(out))
            if local.kills % 4:
                continue  # the next attempt resumes what this kill left
            code, _, err = run([*argv, "--out", out])  # every 4 kills: finish, start afresh
            assert code == 0, err[-3000:]
        assert snapshot(out) == reference
        finished += 1
        shutil.rmtree(out)
    for key in ("kills", "checks", "slabs_seen_after_kill"):
        setattr(LOG, key, getattr(LOG, key) + getattr(local, key))
    for d in ("modes", "phases"):
        for k, v in getattr(local, d).items():
            getattr(LOG, d)[k] = getattr(LOG, d).get(k, 0) + v
    print(f"capture (writes): {local.kills} kills survived in {attempts} attempts; phases "
          f"{local.phases}; complete slabs (of {n_slabs}) right after each kill: {seen_at_kill}; "
          f"{finished} resumed chains finished equal to the reference")


RACES = {"simulate": 5, "ingest": 5, "capture": 3}


def test_overwrite_races(tmp_path):
    """A writer with --overwrite started at the N-th object write of another writer of the same
    store (or the other way round, or after it finished): each is refused cleanly (exit 2) or
    finishes, never a corrupt or half-replaced store (issue 14.1); then an `--overwrite`
    killed while it deletes the old store, finished by the rerun."""
    from tests.calibration.crash_harness import overwrite_race, run, run_noted, snapshot

    cases = [("simulate", ["simulate", "--preset", "theory-flat", "--runs", "2", "--steps", "8",
                           "--hidden", "64"]),
             ("ingest", _ingest_npz_argv(tmp_path))]
    if importlib.util.find_spec("torch") is not None:
        cases.append(("capture", _capture_argv(tmp_path)))
    for k, (name, argv) in enumerate(cases):
        ref = str(tmp_path / f"{name}-ref.zarr")
        reference, n_writes, seconds = reference_run([*argv, "--out", ref], ref)
        out = str(tmp_path / f"{name}-raced.zarr")
        outcome = overwrite_race([*argv, "--out", out], out, reference, rng=np.random.default_rng(12 + k),
                                 rounds=RACES[name], log=LOG, n_writes=n_writes)
        assert sum(outcome.values()) == RACES[name]
        # an --overwrite of the finished store killed while it deletes it: the rerun finishes
        code, err, note = run_noted([*argv, "--out", out, "--overwrite"], "rmtree:2")
        assert code == -9, err[-3000:]
        LOG.record_kill("overwrite-rmtree", note)
        code, _, err = run([*argv, "--out", out, "--overwrite"])
        assert code == 0, err[-3000:]
        assert snapshot(out) == reference
        print(f"{name} --overwrite races ({seconds:.1f} s reference run): {outcome}; "
              "a killed --overwrite finished by its rerun")


def _report_files(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())} if out.exists() else {}


def test_report_survives_kills(tmp_path):
    """`revstats report` renames each finished file into place: after any kill every file in
    the report directory is whole (byte-identical to an uninterrupted run's), and the rerun
    completes the report."""
    pytest.importorskip("revstats.analysis.report")
    from tests.calibration.crash_harness import run

    store = str(tmp_path / "s.zarr")
    code, _, err = run(["simulate", "--preset", "theory-flat", "--runs", "2", "--steps", "20",
                        "--hidden", "64", "--out", store])
    assert code == 0, err
    argv = ["report", store, "--n-resamples", "200", "--out"]
    ref_out = tmp_path / "ref"
    import time

    t0 = time.perf_counter()
    code, _, err = run([*argv, str(ref_out)])
    seconds = time.perf_counter() - t0
    assert code == 0, err
    reference = _report_files(ref_out)
    assert {"report.html", "report.md", "results.json"} <= set(reference)
    rng = np.random.default_rng(5)
    out = tmp_path / "killed"
    kills = 0
    while kills < KILLS["report"]:
        if rng.random() < 0.5:
            spec = f"replace:{int(rng.integers(1, len(reference) + 1))}"
        else:
            spec = f"time:{rng.uniform(0.5, seconds):.2f}"
        code, _, err = run([*argv, str(out)], spec)
        files = _report_files(out)
        for name, data in files.items():  # whole files only, and the right ones
            assert name in reference, name
            assert data == reference[name], f"{name} differs from the reference after {spec}"
        if code == -9:
            kills += 1
            LOG.kills += 1
            LOG.checks += 1
            LOG.modes[spec.split(":")[0]] = LOG.modes.get(spec.split(":")[0], 0) + 1
        else:
            assert code == 0, err
            assert files == reference
    code, _, err = run([*argv, str(out)])
    assert code == 0, err
    assert _report_files(out) == reference
    # staging directories of killed writers are removed by the next report
    debris = [p.name for p in tmp_path.iterdir() if p.name.startswith(".killed.staging.")]
    assert debris == [], debris
    print(f"report: {kills} kills survived; no staging directory left behind")


def test_organism_survives_kills(tmp_path):
    """The organism trains all arms before writing, so it is not resumable: a killed run leaves
    only whole slabs, a plain rerun is refused (usage error, nothing overwritten) and
    `--overwrite` redoes the work, giving the reference store exactly."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.calibration.crash_harness import run

    base = ["organism", "--profile", "tiny", "--no-progress", "--out"]
    ref = str(tmp_path / "ref.zarr")
    reference, n_writes, seconds = reference_run([*base, ref], ref)
    out = str(tmp_path / "killed.zarr")
    before = LOG.kills
    crash_campaign([*base, out, "--overwrite"], out, reference, n_writes, seconds,
                   n_kills=KILLS["organism"], rng=np.random.default_rng(7), log=LOG, finish=False)
    assert LOG.kills - before == KILLS["organism"]
    if os.path.exists(out):
        code, _, err = run([*base, out])
        assert code == 2 and "--overwrite" in err, err
    code, _, err = run([*base, out, "--overwrite"])
    assert code == 0, err
    from tests.calibration.crash_harness import snapshot

    assert snapshot(out) == reference
    print(f"organism: {KILLS['organism']} kills survived; total {LOG}")


def test_total_kills_at_least_50():
    """Runs last (file order): the campaign above killed writers >= 50 times, losing nothing."""
    if LOG.kills == 0:
        pytest.skip("run with the campaigns above")
    print(f"crash campaign total: {LOG}")
    assert LOG.kills >= 50
