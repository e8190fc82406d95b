"""Simulated fine-tuning runs with a known alignment, shared by the debiased-alignment tests
(tests/unit/test_geometry.py, fast; tests/calibration/test_debiased_alignment.py, slow)."""

from __future__ import annotations

import numpy as np
import xarray as xr


def simulate_reversion(
    rng,
    *,
    n_runs=24,
    n_probes=32,
    d=4096,
    drift_norm=9.85,
    witness_norm=9.85,
    true_cos=1.0,
    aligned_noise=0.0,
):
    """Fine-tuning runs with a known cos(drift, witness - aligned).

    Probe i: aligned = c_i + aligned_noise * e_i; step 1 = c_i + D + eps_i (per run);
    witness = c_i + W + eta_i, all noises N(0, I_d). The plug-in cosine is about
    true_cos * sqrt(|D|^2 / (|D|^2 + d/n)) * sqrt(|W|^2 / (|W|^2 + d/n)): 0.43 at the defaults.
    """
    u = np.zeros(d)
    u[0] = 1.0
    perp = np.zeros(d)
    perp[1] = 1.0
    big_d = drift_norm * (true_cos * u + np.sqrt(1 - true_cos**2) * perp)
    content = 3.0 * rng.normal(size=(n_probes, d))
    aligned = content + aligned_noise * rng.normal(size=(n_probes, d))
    acts = np.empty((n_runs, 2, n_probes, d), np.float32)
    acts[:, 0] = aligned
    acts[:, 1] = content + big_d + rng.normal(size=(n_runs, n_probes, d))
    wit = (content + witness_norm * u + rng.normal(size=(n_probes, d))).astype(np.float32)
    return (
        xr.DataArray(acts, dims=("run", "step", "example", "hidden"), coords={"step": [0, 1]}),
        xr.DataArray(wit, dims=("example", "hidden")),
    )
