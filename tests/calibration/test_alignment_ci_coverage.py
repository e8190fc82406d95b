"""Coverage of the crossed-design alignment interval in the design users run (slow).

d = 4096, 24 runs x 32 probes sharing the witness and the aligned slab (the audit of issue 13.1),
500 seeded experiments per row, exact binomial test against 95% (two-sided, fail at p < 0.001).
The same rows are in `revstats calibrate` (docs/calibration.md); the fast version, which the old
Student-t interval fails, is in tests/unit/test_alignment_ci.py.
"""

from __future__ import annotations

import warnings

import pytest
from scipy import stats

from revstats import calibration as cal
from revstats.errors import DegenerateDataWarning

pytestmark = pytest.mark.slow
N = 500


@pytest.mark.parametrize("design", cal.ALIGNMENT_DESIGNS, ids=lambda g: g.label())
def test_crossed_interval_coverage(design):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        hits = cal.alignment_interval_hits(design, "crossed", N, seed=401)
    p = stats.binomtest(hits, N, 0.95).pvalue
    assert p > 1e-3, f"{design.label()}: coverage {hits / N:.3f}, binomial p = {p:.2g}"


def test_plugin_interval_covers_the_expected_plugin_cosine():
    hits = cal.alignment_interval_hits(cal.AUDIT, "crossed-plugin", N, seed=402)
    assert stats.binomtest(hits, N, 0.95).pvalue > 1e-3, hits / N


def test_t_interval_over_runs_undercovers_with_a_shared_noisy_witness():
    hits = cal.alignment_interval_hits(cal.AUDIT, "t", N, seed=403)
    assert stats.binomtest(hits, N, 0.95, alternative="less").pvalue < 1e-6, hits / N
