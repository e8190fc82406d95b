"""`revstats calibrate`: the dashboard runs, writes its table atomically, and its checks have
power (a miscalibrated procedure fails them)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from revstats import calibration as cal
from revstats.cli import main


def test_quick_nulls_dashboard_writes_a_passing_table(tmp_path):
    out = tmp_path / "cal.md"
    res = CliRunner().invoke(main, ["calibrate", "--quick", "--only", "nulls", "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "| isotropic exact, alpha=0.05 |" in text and "| permutation, paired |" in text
    assert "**NO**" not in text and "0 fail" in text
    assert [p.name for p in tmp_path.iterdir()] == ["cal.md"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("expect", "k", "n", "target", "ok"),
    [
        ("nominal", 50, 1000, 0.05, True),
        ("nominal", 80, 1000, 0.05, False),  # 8% type-I error at alpha 5%: caught
        ("nominal", 20, 1000, 0.05, False),  # too conservative for an exact test: caught
        ("conservative", 990, 1000, 0.95, True),
        ("conservative", 920, 1000, 0.95, False),
        ("at most", 10, 1000, 0.05, True),
        ("at most", 90, 1000, 0.05, False),
        ("inflated", 300, 1000, 0.05, True),
        ("inflated", 55, 1000, 0.05, False),  # not a demonstrated failure
        ("undercover", 800, 1000, 0.95, True),
        ("report", 0, 1000, 0.05, None),
    ],
)
def test_binomial_checks_have_power(expect, k, n, target, ok):
    _, passed = cal.binomial_check(expect, k, n, target)
    assert passed is ok


def test_a_broken_null_fails_its_row():
    """Feed the dashboard a null with the wrong dimension: its row must fail."""
    from revstats.nulls import isotropic_cosine

    def wrong_d(n, seed):
        import numpy as np

        rng = np.random.default_rng(seed)
        g = rng.standard_normal((n, 64))
        c = g[:, 0] / np.linalg.norm(g, axis=1)
        return int(np.sum(isotropic_cosine(256).sf(c) <= 0.05))

    study = cal.Study("nulls", "wrong d", "d=64 tested as d=256", 0, "nominal", 0.05, "type-I error",
                      wrong_d, full=4000, quick=4000)
    assert cal.run_study(study).ok is False


def test_default_prints_the_table_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["calibrate", "--quick", "--only", "nulls", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "# Calibration dashboard" in res.stdout and "| isotropic exact, misapplied |" in res.stdout
    assert "yes (failure shown as expected)" in res.stdout  # why a deliberately failing row is ok
    assert list(tmp_path.iterdir()) == []  # no ./docs/calibration.md, nothing at all


def test_written_files_honour_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        out = tmp_path / "cal.md"
        res = CliRunner().invoke(main, ["calibrate", "--quick", "--only", "nulls", "--out", str(out), "--no-progress"])
        assert res.exit_code == 0, res.output
        assert (out.stat().st_mode & 0o777) == 0o644
        from revstats.analysis.io import write_results

        p = write_results({"a": 1}, tmp_path / "r.json")  # what `analyze --json` writes with
        assert (p.stat().st_mode & 0o777) == 0o644
    finally:
        os.umask(old)
