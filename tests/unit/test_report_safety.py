"""Reports treat every user-supplied string as text: hostile run ids, layer names, arm
attributes and provenance come out escaped in report.html and report.md (the store refuses
`<` `>` in ids, but `analysis.analyze` also takes in-memory datasets, which never pass the
store's checks)."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

pytest.importorskip("revstats.analysis.pipeline")
pytest.importorskip("matplotlib")

from revstats.analysis.pipeline import AnalysisSettings, analyze
from revstats.analysis.report import write_report
from revstats.sims.simulate import config_for, simulate

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'


@pytest.fixture(scope="module")
def hostile_results():
    cfg = config_for("theory-flat", runs=2, steps=20, hidden=64)
    ds = simulate(cfg, seed=0, preset="theory-flat")
    runs = [f"{SCRIPT}-{i}" for i in range(ds.sizes["run"])]
    ds = ds.assign_coords(run=runs, layer=[IMG] * ds.sizes["layer"])
    prov = json.loads(ds.attrs.get("provenance", "{}"))
    prov["command"] = f"revstats simulate {SCRIPT}"
    ds.attrs["provenance"] = json.dumps(prov)
    if "task" in ds:
        ds["task"].attrs["metric"] = f"loss {SCRIPT}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return analyze(ds, settings=AnalysisSettings(n_resamples=200, n_null_draws=200))


def test_html_and_markdown_escape_hostile_strings(hostile_results, tmp_path):
    paths = write_report(hostile_results, tmp_path / "report")
    html = paths["html"].read_text(encoding="utf-8")
    md = paths["md"].read_text(encoding="utf-8")
    for text in (html, md):  # markup in a user string never reaches the output as markup
        assert SCRIPT not in text and "<img src=x" not in text
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html  # shown, as text
    assert "&lt;img src=x onerror=" in md
    assert "<script" not in html.lower()  # the self-contained report carries no script at all
    # results.json keeps the real strings (JSON is data, not markup)
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert IMG in json.dumps(data)[1:-1].replace('\\"', '"')


def test_no_partial_or_temporary_file_is_left(hostile_results, tmp_path):
    out = tmp_path / "report"
    write_report(hostile_results, out)
    write_report(hostile_results, out)  # rewriting replaces files by rename
    leftovers = [p.name for p in tmp_path.rglob("*") if ".staging." in p.name or p.suffix == ".tmp"]
    assert leftovers == []
    assert np.all([p.stat().st_size > 0 for p in out.iterdir()])


def test_staging_left_by_a_killed_writer_is_removed(hostile_results, tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".report.staging.{dead}.abc123"
    stale.mkdir()
    (stale / "report.html").write_text("half")
    alive = tmp_path / f".report.staging.{os.getppid()}.xyz"  # a live process: left alone
    alive.mkdir()
    write_report(hostile_results, tmp_path / "report")
    assert not stale.exists() and alive.exists()
