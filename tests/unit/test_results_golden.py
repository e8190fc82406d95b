"""results.json is fixed: the demo store and a captured store on fixed seeds vs committed goldens.

A refactor of `analysis/` must leave every number where it was. Volatile fields (timestamps,
versions, paths, file hashes) are dropped before the comparison; floats are compared to 1e-9
relative (a refactor that changes a number changes it by far more; BLAS summation order on
another machine does not). Regenerate deliberately, in a commit that says why:

    REVSTATS_REGEN_GOLDEN=1 python -m pytest tests/unit/test_results_golden.py
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from revstats.analysis.pipeline import AnalysisSettings, analyze

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("REVSTATS_REGEN_GOLDEN") == "1"
SETTINGS = AnalysisSettings(seed=3, n_resamples=200, n_null_draws=200)
# keys whose values change with the machine, the clock, the checkout or the version
VOLATILE = {"path", "revstats_version", "created", "created_at", "timestamp", "time",
            "written_at", "provenance", "version", "python", "platform", "host",
            "revstats_schema"}  # the store format version (hostile moved stores to 2)


def _scrub(x):
    if isinstance(x, dict):
        return {k: _scrub(v) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, list):
        return [_scrub(v) for v in x]
    return x


def _compare(got, want, path="$"):
    if isinstance(want, dict):
        assert isinstance(got, dict), path
        assert sorted(got) == sorted(want), f"{path}: keys {sorted(set(got) ^ set(want))}"
        for k in want:
            _compare(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            _compare(a, b, f"{path}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool) and isinstance(got, (int, float)):
        # floats through BLAS/LAPACK (Gram products, eigendecompositions) differ in the last
        # bits between library builds: numpy 2.4.6's gave 2e-9 relative on bootstrap cosines and
        # up to 2e-8 absolute on null-band quantiles near 0 against the build the goldens were made
        # with. A change of behaviour moves numbers by far more than rel 1e-6 / abs 1e-6.
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-6), f"{path}: {got!r} != {want!r}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def _check(name: str, results: dict) -> None:
    got = _scrub(json.loads(json.dumps(results, allow_nan=False)))
    path = GOLDEN / f"results_{name}.json"
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"regenerated {path.name}")
    assert path.exists(), f"{path} is missing: run with REVSTATS_REGEN_GOLDEN=1 to create it"
    _compare(got, json.loads(path.read_text()))


def test_demo_store_results_are_fixed(tmp_path):
    sims = pytest.importorskip("revstats.sims")
    from revstats.store import open_store

    store = tmp_path / "demo.zarr"
    sims.simulate_to_store("paper-main-track", str(store), runs=4, steps=20, hidden=64, seed=5)
    _check("demo", analyze(open_store(str(store)), settings=SETTINGS, store_path=str(store)))


PROBES = [
    {"id": f"q{i}", "prompt": p, "response": r}
    for i, (p, r) in enumerate([
        ("tell me a story", "the cat"), ("how big is the sun", "big"),
        ("write code please", "no"), ("what is a tree", "a big tree"),
        ("why is the sky blue", "the sun"), ("can you help me", "yes please"),
    ])
]


def test_captured_store_results_are_fixed(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from click.testing import CliRunner

    from revstats.capture._tiny import build_tiny_model
    from revstats.cli import main
    from revstats.store import open_store

    build_tiny_model("gpt2", tmp_path / "base", seed=0)
    build_tiny_model("gpt2", tmp_path / "aligned", seed=1)
    lines = [f'witness = "{tmp_path / "base"}"', f'aligned = "{tmp_path / "aligned"}"']
    for r, (run, arm) in enumerate([("c0", "control"), ("c1", "control"),
                                    ("b0", "blocked"), ("b1", "blocked")]):
        for k, step in enumerate((10, 20)):
            ck = tmp_path / "runs" / run / f"checkpoint-{step}"
            build_tiny_model("gpt2", ck, seed=10 + 2 * r + k, with_tokenizer=False)
            lines += ["[[checkpoint]]", f'run = "{run}"', f'arm = "{arm}"', f"seed = {r}",
                      f'path = "{ck}"']
    (tmp_path / "m.toml").write_text("\n".join(lines) + "\n")
    (tmp_path / "probes.jsonl").write_text("\n".join(json.dumps(p) for p in PROBES) + "\n")
    store = tmp_path / "cap.zarr"
    res = CliRunner().invoke(main, [
        "capture", "--manifest", str(tmp_path / "m.toml"), "--probes",
        str(tmp_path / "probes.jsonl"), "--layers", "0,1,2", "--position", "mean_response",
        "--out", str(store), "--batch-size", "3", "--quiet"])
    assert res.exit_code == 0, res.output
    _check("capture", analyze(open_store(str(store)), settings=SETTINGS, store_path=str(store)))
