"""analysis.report / analysis.figures: files, escaping, self-containment, atomic writes."""

from __future__ import annotations

import json
import re

import pytest

from revstats.analysis.pipeline import AnalysisSettings, analyze
from revstats.analysis.report import write_report
from revstats.analysis.testing import make_synthetic_store

HOSTILE = "<script>alert(1)</script>"
FAST = AnalysisSettings(n_resamples=200, n_null_draws=400)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    ds = make_synthetic_store(layers=(HOSTILE, "L|$x$"), seed=7, preset="paper-main-track")
    ds = ds.assign_coords(run=[f'<img src=x onerror="alert({i})">' for i in range(ds.sizes["run"])],
                          arm=("run", [a if a != "push" else "push<b>" for a in
                                       ds["arm"].values]))
    results = analyze(ds, settings=FAST, store_path="<iframe src=//evil>")
    out = tmp_path_factory.mktemp("rep") / "report"
    paths = write_report(results, out)
    return results, out, paths


def test_report_files_written(report):
    _, out, paths = report
    names = sorted(p.name for p in out.iterdir())
    assert {"report.md", "report.html", "results.json"} <= set(names)
    pngs = [n for n in names if n.endswith(".png")]
    assert len(pngs) == 8  # 4 kinds x 2 layers
    for n in pngs:
        assert (out / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.parent.iterdir() if ".staging." in p.name]
    assert paths["html"] == out / "report.html"


def test_html_is_self_contained_and_escaped(report):
    _, out, _ = report
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 8
    assert "<script" not in html.lower()
    assert "<img src=x" not in html and "<iframe" not in html and "push<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&quot;alert(0)&quot;&gt;" in html or "onerror" not in html
    # no network: every src/href is a data: URI
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert ref.startswith("data:"), ref
    assert "default-src 'none'" in html


def test_markdown_escaped_and_links_figures(report):
    _, out, _ = report
    md = (out / "report.md").read_text()
    assert HOSTILE not in md and "&lt;script&gt;" in md
    assert "L\\|$x$" in md  # table pipes escaped
    pngs = re.findall(r"\]\(<([^>]+\.png)>\)", md)
    assert pngs
    for png in pngs:
        assert (out / png).exists()


def test_paper_table_side_by_side(report):
    results, out, _ = report
    md = (out / "report.md").read_text()
    assert "## Paper table" in md and "0.647 ± 0.021" in md and "24 of 24" in md
    saved = json.loads((out / "results.json").read_text())
    assert saved["paper_table"] == results["paper_table"]


def test_rewrite_replaces_files_atomically(tmp_path):
    results = analyze(make_synthetic_store(layers=("a",), behavior=False), settings=FAST)
    out = tmp_path / "r"
    write_report(results, out)
    (out / "mine.txt").write_text("user file")
    first = (out / "results.json").read_text()
    write_report(results, out)
    assert (out / "results.json").read_text() == first
    assert (out / "mine.txt").read_text() == "user file"
    with pytest.raises(ValueError, match="`out_dir`.*is not a directory"):
        write_report(results, out / "mine.txt")


def test_figures_without_behaviour(tmp_path):
    r = analyze(make_synthetic_store(layers=("a",), behavior=False, task=False), settings=FAST)
    write_report(r, tmp_path / "o")
    names = {p.name for p in (tmp_path / "o").iterdir()}
    assert "scatter_layer0.png" not in names and "trajectory_layer0.png" in names
