"""Parameter sweeps in parallel with dask, into one `xr.Dataset`, and the phase diagram.

Each grid point simulates its runs and reduces them to the plug-in statistics in latent
coordinates (exactly the hidden-space cosines, since the readout embeds the latent space
isometrically), so a sweep never materialises 4096-dim activations.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from revstats.sims.model import build_model
from revstats.sims.simulate import (
    config_for,
    draw_noise,
    experiment_seeds,
    run_layout,
    trajectories,
)

DEFAULT_GRID: dict[str, list[float]] = {
    "pretrain_mass": [0.02, 0.1, 0.3, 1.0, 2.0],
    "align_mass": [0.0, 0.1, 0.4, 1.2],
    "lr": [0.5, 1.0],
    "noise": [0.02, 0.042, 0.08],
}


def point_stats(cfg, seed: int) -> dict[str, float]:
    """Alignment (mean over runs) at steps 1, 20 and T, and behaviour rate at T, per arm."""
    ids, arms, sign = run_layout(cfg)
    ms, rs = experiment_seeds(seed, len(ids))
    model = build_model(cfg, ms)
    T = cfg.steps
    saved = tuple(sorted({0, min(1, T), min(20, T), T}))
    xi, _ = draw_noise(cfg, rs, len(saved))
    th = trajectories(model, sign, xi, saved)
    mu = model.latent_acts(th).mean(-2)
    delta = mu - model.latent_acts(model.aligned).mean(0)
    norm = np.linalg.norm(delta, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norm > 0, delta @ model.v_latent / norm, np.nan)
    beh = model.behavior_prob(th[:, -1]).mean(-1)
    out: dict[str, float] = {}
    for arm in cfg.arms:
        rows = np.array(arms) == arm
        for s in (1, 20):
            if s in saved:
                out[f"align_{s}_{arm}"] = float(np.nanmean(cos[rows, saved.index(s)]))
        out[f"align_final_{arm}"] = float(np.nanmean(cos[rows, -1]))
        out[f"align_final_sd_{arm}"] = float(np.nanstd(cos[rows, -1], ddof=1)) if rows.sum() > 1 else 0.0
        out[f"behavior_final_{arm}"] = float(beh[rows].mean())
    return out


def sweep(
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    preset: str = "paper-main-track",
    runs: int = 8,
    steps: int = 100,
    arms: Sequence[str] = ("control", "blocked"),
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    scheduler: str | None = "threads",
) -> xr.Dataset:
    """Run every point of ``grid`` (field -> values) in parallel with dask.

    Returns a Dataset with one dim per grid field; variables ``align_1_<arm>``,
    ``align_20_<arm>``, ``align_final_<arm>``, ``align_final_sd_<arm>``,
    ``behavior_final_<arm>``. Every point uses the same experiment ``seed`` (common random
    numbers: differences between points are not seed noise). ``scheduler`` is passed to
    ``dask.compute`` ("threads", "processes", "synchronous", or None for the active
    distributed client).
    """
    import dask

    grid = dict(DEFAULT_GRID if grid is None else grid)
    if not grid:
        raise ValueError("`grid` is empty: pass {field: [values, ...]}")
    base = dict(overrides or {})
    base["arms"] = tuple(arms)
    if "hidden" not in base:  # statistics are latent-exact: skip building a 4096-wide readout
        lat = grid.get("latent", [base.get("latent", config_for(preset).latent)])
        base["hidden"] = int(max(lat))
    names = list(grid)
    points = list(itertools.product(*(list(grid[n]) for n in names)))
    cfgs = [config_for(preset, runs=runs, steps=steps, overrides={**base, **dict(zip(names, pt, strict=True))})
            for pt in points]
    tasks = [dask.delayed(point_stats)(c, seed) for c in cfgs]
    kwargs = {} if scheduler is None else {"scheduler": scheduler}
    results = dask.compute(*tasks, **kwargs)
    shape = tuple(len(grid[n]) for n in names)
    data = {k: (names, np.array([r[k] for r in results]).reshape(shape)) for k in results[0]}
    ds = xr.Dataset(data, coords={n: list(grid[n]) for n in names})
    ds.attrs.update(preset=preset, runs=runs, steps=steps, seed=seed, arms=list(arms))
    return ds


def plot_phase_diagram(
    ds: xr.Dataset,
    *,
    x: str = "pretrain_mass",
    y: str = "align_mass",
    var: str = "align_final_control",
    threshold: float | None = None,
    path: str | None = None,
):
    """Heatmaps of ``var`` over (x, y), one panel per combination of the other grid dims.

    ``threshold`` (default: the isotropic p99 at hidden 4096) is drawn as a contour: the
    boundary of the region where reversion appears. Returns the matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from revstats.sims.summary import isotropic_p99

    if var not in ds:
        raise ValueError(f"`var` {var!r} is not in the sweep; choose one of {sorted(ds.data_vars)}")
    for dim in (x, y):
        if dim not in ds[var].dims:
            raise ValueError(f"`{dim}` is not a sweep dim; dims are {list(ds[var].dims)}")
    thr = isotropic_p99(4096) if threshold is None else threshold
    others = [d for d in ds[var].dims if d not in (x, y)]
    combos = list(itertools.product(*(range(ds.sizes[d]) for d in others))) or [()]
    ncol = int(np.ceil(np.sqrt(len(combos))))
    nrow = int(np.ceil(len(combos) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.2 * nrow), squeeze=False,
                             layout="constrained")
    for ax, combo in zip(axes.flat, combos, strict=False):
        da = ds[var].isel(dict(zip(others, combo, strict=True))).transpose(y, x)
        im = ax.imshow(da.values, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_xticks(range(ds.sizes[x]), [f"{v:g}" for v in ds[x].values], fontsize=7)
        ax.set_yticks(range(ds.sizes[y]), [f"{v:g}" for v in ds[y].values], fontsize=7)
        if da.shape[0] > 1 and da.shape[1] > 1:
            ax.contour(da.values, levels=[thr], colors="k", linewidths=1)
        ax.set_title(", ".join(f"{d}={ds[d].values[i]:g}" for d, i in zip(others, combo, strict=True)) or var,
                     fontsize=8)
        ax.set_xlabel(x, fontsize=8)
        ax.set_ylabel(y, fontsize=8)
    for ax in list(axes.flat)[len(combos):]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes, shrink=0.8, label=var)
    fig.suptitle(f"where reversion appears ({var}; contour = isotropic p99 {thr:.3f})", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
