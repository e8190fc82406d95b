"""The README's 30-second tour, run as a script, prints what it says (and `groupby` on the
store's `arm`/`seed` coordinates works)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tour_code() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## 30-second tour"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from revstats.sims.simulate import config_for, simulate
    from revstats.store import write_dataset

    path = tmp_path_factory.mktemp("tour") / "runs.zarr"
    ds = simulate(config_for("paper-main-track", runs=2, hidden=64, overrides={"steps": 20}), seed=0)
    write_dataset(ds, path, source="simulator", provenance={"command": "test"})
    return path


def test_readme_tour_prints_what_it_claims(store):
    code = tour_code().replace('"runs.zarr"', repr(str(store)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout
    assert re.search(r"blocked\s+-?\d", lines) and re.search(r"control\s+0\.\d", lines)
    assert "isotropic p99 of the cosine: 0." in lines
    assert "Interval(estimate=0.19" in lines and "method='wilson'" in lines


def test_groupby_seed_on_an_opened_store(store):
    import revstats as rs

    ds = rs.open_store(store)
    means = ds["acts"].isel(step=-1).groupby("seed").mean()
    assert means.sizes["seed"] == len(set(ds["seed"].values.tolist()))
