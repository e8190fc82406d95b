"""The HTML report rendered in a real headless Chromium (Debian's `chromium` package)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from revstats.analysis.pipeline import AnalysisSettings, analyze
from revstats.analysis.report import write_report
from revstats.analysis.testing import make_synthetic_store

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    ds = make_synthetic_store(layers=(HOSTILE,), seed=7)
    ds = ds.assign_coords(run=[f"<b>run {i}</b>" for i in range(ds.sizes["run"])])
    results = analyze(ds, settings=AnalysisSettings(n_resamples=200, n_null_draws=400))
    out = tmp_path_factory.mktemp("rep") / "report"
    return results, out, write_report(results, out)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None,
                    reason="no chromium on PATH: install Debian's chromium "
                           "(apt-get install -y chromium) to render the report")
def test_report_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    _, out, _ = report
    shot = tmp_path / "shot.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
           "--window-size=1200,9000", f"--screenshot={shot}",
           (out / "report.html").as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[0] == 9000 and img.shape[1] == 1200
    # the hostile layer name was not executed as a script: the DOM dump still shows it as text
    dom = subprocess.run(cmd[:-2] + ["--dump-dom", cmd[-1]], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "<script>" not in dom.lower()
    # the figures' arm colours (matplotlib C0 blue, C3 red) appear: images were decoded
    for rgb in ((31, 119, 180), (214, 39, 40)):
        near = np.all(np.abs(img - np.array(rgb)) < 12, axis=-1)
        assert near.sum() > 500, rgb
    # and the page is not blank
    assert (img.sum(axis=-1) < 600).mean() > 0.02
