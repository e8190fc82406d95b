"""The paper-table summary of a simulated store, with the plug-in statistics of DESIGN.md §4.

Alignment per run and step: a = cos(mean_i h_t,i - mean_i h_0,i, v_rev) with
v_rev = normalize(mean_i witness_i - mean_i h_0,i); then mean and sd over runs per arm.
Uses `revstats.reversion_direction` / `revstats.alignment` when the core provides them, and
this file's NumPy transcription of the same definitions otherwise.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
import xarray as xr


def isotropic_p99(d: int) -> float:
    """p99 of cos(u, v) for u uniform on S^(d-1): (cos + 1)/2 ~ Beta((d-1)/2, (d-1)/2)."""
    a = (d - 1) / 2
    return float(scipy.stats.beta(a, a).ppf(0.99) * 2 - 1)


def plugin_alignment(ds: xr.Dataset, layer: int = 0) -> xr.DataArray:
    """Plug-in alignment (run, step) for the steps > 0 of one layer of a store-shaped Dataset."""
    acts_all = ds["acts"].isel(layer=layer)
    acts = acts_all.sel(step=acts_all["step"] > 0)  # step 0 has no drift (no alignment)
    wit = ds["witness"].isel(layer=layer)
    mu = acts.mean("example")
    mu0 = acts_all.sel(step=0).mean("example")
    muw = wit.mean("example")
    try:
        import revstats as rs

        v = rs.reversion_direction(wit, acts_all.sel(step=0), dim="example")
        out = rs.alignment(mu - mu0, v, dim="hidden")
        return out.compute() if hasattr(out, "compute") else out
    except AttributeError:
        pass
    vr = muw - mu0
    vr = vr / np.sqrt((vr**2).sum("hidden"))
    drift = mu - mu0
    num = (drift * vr).sum("hidden")
    den = np.sqrt((drift**2).sum("hidden"))
    return (num / den.where(den > 0)).compute()


def summarize(ds: xr.Dataset, *, steps: tuple[int, ...] = (1, 20)) -> dict:
    """Per-arm table: alignment mean/sd at ``steps`` and at T, run-step pairs above the isotropic
    p99 (over steps >= 1), behaviour rate and task at T (mean/sd over runs)."""
    align = plugin_alignment(ds)
    T = int(ds["step"].max())
    p99 = isotropic_p99(ds.sizes["hidden"])
    out: dict = {"isotropic_p99": p99, "T": T, "arms": {}}
    for arm in list(dict.fromkeys(ds["arm"].values.tolist())):
        a = align.where(ds["arm"] == arm, drop=True)
        row: dict = {"n_runs": int(a.sizes["run"])}
        for s in (*steps, T):
            vals = a.sel(step=s).values
            row[f"align_{s}"] = (float(vals.mean()), float(vals.std(ddof=1)) if vals.size > 1 else 0.0)
        later = a.sel(step=a["step"] >= 1).values
        row["above_p99"] = (int((later > p99).sum()), int(later.size))
        if "behavior" in ds:
            rate = ds["behavior"].sel(step=T).where(ds["arm"] == arm, drop=True).mean("example")
            row["behavior_T"] = (float(rate.mean()), float(rate.std(ddof=1)))
            rate0 = ds["behavior"].sel(step=0).where(ds["arm"] == arm, drop=True).mean("example")
            row["behavior_0"] = float(rate0.mean())
        if "task" in ds:
            tk = ds["task"].sel(step=T).where(ds["arm"] == arm, drop=True)
            row["task_T"] = (float(tk.mean()), float(tk.std(ddof=1)))
            row["task_0"] = float(ds["task"].sel(step=0).where(ds["arm"] == arm, drop=True).mean())
        out["arms"][arm] = row
    return out


def format_table(summary: dict) -> str:
    """A markdown table of :func:`summarize` output."""
    arms = summary["arms"]
    keys = [k for k in next(iter(arms.values())) if k != "n_runs"]
    lines = ["| quantity | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for k in keys:
        cells = []
        for row in arms.values():
            v = row[k]
            if isinstance(v, tuple) and k == "above_p99":
                cells.append(f"{v[0]} / {v[1]}")
            elif isinstance(v, tuple):
                cells.append(f"{v[0]:.3f} ± {v[1]:.3f}")
            else:
                cells.append(f"{v:.3f}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
