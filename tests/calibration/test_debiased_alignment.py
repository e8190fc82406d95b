"""Calibration of the cross-fitted (debiased) alignment by simulation (slow).

Known truth, d = 4096, 24 runs, 32 probes; 150 replicate experiments per setting. The plug-in
cosine is visibly biased; the pooled cross-fitted estimate must match the truth within Monte
Carlo error (|mean - truth| < 3.5 SE, two-sided, fixed seed). The per-run estimates (mean over
runs of per-run ratios) are checked too, with an allowance for the ratio's second-order bias.
The fast version is in tests/unit/test_geometry.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import revstats.geometry as geo
from revstats.errors import DegenerateDataWarning
from tests._geometry_sim import simulate_reversion

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("true_cos", "aligned_noise"),
    [(1.0, 0.0), (0.6, 0.0), (0.0, 1.0)],
)
def test_debiased_alignment_is_unbiased(true_cos, aligned_noise):
    rng = np.random.default_rng(4096 + int(100 * true_cos))
    reps = 150
    plug, pooled, per_run = np.empty(reps), np.empty(reps), np.empty(reps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)  # step 0 has no drift
        for r in range(reps):
            acts, wit = simulate_reversion(rng, true_cos=true_cos, aligned_noise=aligned_noise)
            ds = geo.debiased_alignment(acts, wit).sel(step=1)
            dp = geo.debiased_alignment(acts, wit, pool_dim="run").sel(step=1)
            plug[r] = float(ds.plugin.mean())
            per_run[r] = float(ds.debiased.mean())
            pooled[r] = float(dp.debiased)
    se = pooled.std(ddof=1) / np.sqrt(reps)
    print(
        f"truth={true_cos} plug-in={plug.mean():.4f} pooled={pooled.mean():.4f}±{se:.4f} "
        f"per-run-mean={per_run.mean():.4f}"
    )
    assert abs(plug.mean() - true_cos) > 0.15  # the plug-in is visibly biased
    assert abs(pooled.mean() - true_cos) < 3.5 * se
    # per-run ratios carry an O(1/n) ratio bias (~0.2% here); allow 0.01 beside MC error
    se_run = per_run.std(ddof=1) / np.sqrt(reps)
    assert abs(per_run.mean() - true_cos) < 3.5 * se_run + 0.01
