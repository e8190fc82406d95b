"""The report's figures (matplotlib), callable on results or a store.

Public API::

    from revstats.analysis.figures import plot
    fig = plot("report/results.json", "trajectory")          # results.json, a results dict,
    fig = plot(results, "ablation", layer="hidden_states.2")  # an analysis.frames.Results,
    fig = plot("acts.zarr", "per_run")                       # or a store (analysed first)
    fig.savefig("trajectory.png")

Kinds (:data:`FIGURES`): ``trajectory`` (alignment by step per arm with CI bands, each null's
p99 line, and one panel per null with its own median-to-p99 band), ``per_run``, ``ablation``
(final alignment / behavior / task per arm with intervals), ``scatter`` (final alignment vs
behavior per run; None without behavior). Every figure works from results.json alone, so a
report can be re-drawn without the store. The figures use matplotlib's Agg backend unless a
backend is already selected (so they also show in a notebook).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

ARM_COLORS = {"control": "#1f77b4", "blocked": "#d62728", "push": "#2ca02c"}
NULL_STYLES = {
    "isotropic": ("#555555", "--"),
    "effective_dimension": ("#9467bd", ":"),
    "covariance_matched": ("#ff7f0e", "-."),
    "permutation": ("#8c564b", (0, (6, 2, 1, 2))),
}


def _plt():
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # headless by default; keep a notebook's backend
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _text(s: str) -> str:
    """User text shown literally (no mathtext from `$`)."""
    return str(s).replace("$", r"\$")


def _color(arm: str, i: int) -> str:
    return ARM_COLORS.get(arm, f"C{(i + 3) % 10}")


def _legend(ax, **kwargs) -> None:
    """A legend only when something is labelled (matplotlib warns "No artists" otherwise)."""
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(**kwargs)


def _vals(rows, key):
    return np.array([np.nan if r.get(key) is None else r[key] for r in rows], float)


def _null_label(name: str) -> str:
    return name.replace("_", " ")


def trajectory(results: dict, layer: str):
    """Alignment by step per arm (mean, CI band, debiased mean) with each null's p99 line; below,
    one small panel per null with its own median-to-p99 band against the reference arm's mean.
    The legend sits outside the data (right of the main panel)."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    h = results["headline"]["layers"][layer]
    d = results["details"]["layers"][layer]
    ctrl = "control" if "control" in d["arms"] else next(iter(d["arms"]))
    nulls = d["arms"][ctrl].get("nulls") or {}
    q = int(round(100 * results["settings"]["null_quantile"]))
    conf = int(round(100 * results["settings"]["confidence"]))
    n_null = max(1, len(nulls))
    fig = plt.figure(figsize=(11, 7.4 if nulls else 5.2), dpi=110)
    grid = fig.add_gridspec(2 if nulls else 1, n_null, height_ratios=[2.4, 1] if nulls else [1],
                            hspace=0.32, wspace=0.25)
    ax = fig.add_subplot(grid[0, :])
    ref = None
    for i, (arm, e) in enumerate(h["arms"].items()):
        steps = np.array([r["step"] for r in e["alignment"]])
        m, lo, hi = (_vals(e["alignment"], k) for k in ("mean", "low", "high"))
        col = _color(arm, i)
        ax.plot(steps, m, "-o", ms=3, color=col, label=f"{_text(arm)}: mean (n={e['n_runs']})")
        ax.fill_between(steps, lo, hi, color=col, alpha=0.15, lw=0, label=f"{_text(arm)}: {conf}% CI")
        md = _vals(e["alignment_debiased"], "mean")
        if np.any(np.isfinite(md)):
            ax.plot(steps, md, ":", color=col, lw=1.5, label=f"{_text(arm)}: debiased (cross-fit)")
        if arm == ctrl:
            ref = (steps, m, col)
    for name, nd in nulls.items():
        col, ls = NULL_STYLES.get(name, ("k", "--"))
        bands = nd["bands"]
        steps = np.array([b["step"] for b in bands])
        ax.plot(steps, _vals(bands, "q99"), color=col, ls=ls, lw=1.8,
                label=f"null p{q}: {_null_label(name)}")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("alignment cos(drift, v_rev)\n[unitless, −1…1]")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Alignment trajectory, layer {_text(layer)}: arm means with {conf}% CI; "
                 f"dashed: p{q} of each null ({_text(ctrl)} arm)", fontsize=10)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
              frameon=False)
    ax.grid(alpha=0.3)
    for j, (name, nd) in enumerate(nulls.items()):
        col, ls = NULL_STYLES.get(name, ("k", "--"))
        sub = fig.add_subplot(grid[1, j], sharey=ax)
        bands = nd["bands"]
        steps = np.array([b["step"] for b in bands])
        sub.fill_between(steps, _vals(bands, "q50"), _vals(bands, "q99"), color=col, alpha=0.3, lw=0,
                         label=f"median–p{q}")
        sub.plot(steps, _vals(bands, "q99"), color=col, ls=ls, lw=1.4)
        if ref is not None:
            sub.plot(ref[0], ref[1], "-", color=ref[2], lw=1.0, label=f"{_text(ctrl)} mean")
        sub.axhline(0, color="k", lw=0.5)
        sub.set_title(f"null: {_null_label(name)}", fontsize=9, color=col)
        sub.set_xlabel("step", fontsize=7)
        sub.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
        sub.tick_params(labelsize=7)
        sub.grid(alpha=0.3)
        if j == 0:
            sub.set_ylabel("alignment", fontsize=8)
        else:
            sub.tick_params(labelleft=False)
        sub.legend(fontsize=6.5, loc="lower right", frameon=False)
    fig.subplots_adjust(left=0.08, right=0.74, top=0.93, bottom=0.08)
    return fig


def per_run(results: dict, layer: str):
    plt = _plt()
    pr = results["details"]["layers"][layer]["per_run"]
    steps = np.array(pr["steps"])
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    arms = list(dict.fromkeys(pr["arm"]))
    seen: set[str] = set()
    for run_arm, row in zip(pr["arm"], pr["alignment"], strict=True):
        y = np.array([np.nan if v is None else v for v in row], float)
        lab = None if run_arm in seen else f"{_text(run_arm)} runs"
        seen.add(run_arm)
        ax.plot(steps, y, color=_color(run_arm, arms.index(run_arm)), lw=0.8, alpha=0.6,
                label=lab)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("alignment cos(drift, v_rev)  [unitless]")
    ax.set_title(f"Per-run alignment, layer {_text(layer)} ({len(pr['run'])} runs)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(ax, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def ablation(results: dict, layer: str):
    plt = _plt()
    h = results["headline"]["layers"][layer]
    arms = list(h["arms"])
    panels = [("final_alignment", "final alignment cos(drift, v_rev)", 1.0)]
    if any(h["arms"][a]["behavior_rate"] for a in arms):
        panels.append(("behavior_rate", "behavior rate [% of probes]", 100.0))
    if any(h["arms"][a]["task"] for a in arms):
        t = next(h["arms"][a]["task"] for a in arms if h["arms"][a]["task"])
        panels.append(("task", f"task {_text(t.get('metric', 'metric'))} (final step)", 1.0))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), dpi=110)
    axes = np.atleast_1d(axes)
    conf = int(round(100 * results["settings"]["confidence"]))
    for ax, (key, label, scale) in zip(axes, panels, strict=True):
        x = np.arange(len(arms))
        for i, a in enumerate(arms):
            e = h["arms"][a][key]
            if not e or e.get("mean") is None:
                continue
            m = e["mean"] * scale
            lo = (e["low"] if e["low"] is not None else e["mean"]) * scale
            hi = (e["high"] if e["high"] is not None else e["mean"]) * scale
            ax.bar(x[i], m, color=_color(a, i), alpha=0.8,
                   yerr=[[m - lo], [hi - m]], capsize=6, label=_text(a))
        ax.set_xticks(x, [_text(a) for a in arms])
        ax.set_xlabel("arm")
        ax.set_ylabel(label)
        ax.axhline(0, color="k", lw=0.6)
        ax.grid(alpha=0.3, axis="y")
    _legend(axes[0], fontsize=8)
    fig.suptitle(f"Ablation, layer {_text(layer)}: means with {conf}% intervals "
                 f"(behavior: Wilson)", fontsize=10)
    fig.tight_layout()
    return fig


def scatter(results: dict, layer: str):
    d = results["details"]["layers"][layer]
    pr = d["per_run"]
    if pr.get("behavior_rate") is None:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 5), dpi=110)
    arms = list(dict.fromkeys(pr["arm"]))
    x = np.array([np.nan if r[-1] is None else r[-1] for r in pr["alignment"]], float)
    y = 100 * np.array([np.nan if r[-1] is None else r[-1] for r in pr["behavior_rate"]], float)
    for i, a in enumerate(arms):
        sel = np.array([ra == a for ra in pr["arm"]])
        ax.scatter(x[sel], y[sel], color=_color(a, i), label=_text(a), s=28, alpha=0.8)
    sp = d.get("spearman")
    title = f"Alignment vs behavior, layer {_text(layer)}"
    if sp and sp.get("estimate") is not None:
        title += (f"\nSpearman r = {sp['estimate']:.3f}"
                  + (f" [{sp['low']:.3f}, {sp['high']:.3f}]" if sp.get("low") is not None else ""))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"final alignment cos(drift, v_rev) at step {pr['steps'][-1]}")
    ax.set_ylabel("final behavior rate [% of probes]")
    _legend(ax, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


FIGURES = {"trajectory": trajectory, "per_run": per_run, "ablation": ablation,
           "scatter": scatter}


def _as_results(source: Any, analyze_kwargs: dict) -> dict:
    import xarray as xr

    if isinstance(source, dict):
        return source
    if isinstance(source, xr.Dataset):
        from revstats.analysis.pipeline import analyze

        return analyze(source, **analyze_kwargs)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_file():
            from revstats.analysis.frames import Results

            return Results.load(path)
        if path.is_dir() and (path / "results.json").is_file() and not (path / "zarr.json").is_file():
            from revstats.analysis.frames import Results

            return Results.load(path / "results.json")
        from revstats.analysis.pipeline import analyze
        from revstats.store import open_store

        return analyze(open_store(path), store_path=str(path), **analyze_kwargs)
    raise TypeError(f"`source` must be a results dict, a results.json path, a store path or an xarray "
                    f"Dataset; got {type(source).__name__}")


def plot(source: Any, kind: str = "trajectory", *, layer: str | None = None, **analyze_kwargs: Any):
    """One report figure for `layer` (default: the first analysed) from results or a store.

    `source`: a results dict (``analyze`` / ``Results``), a results.json path (or a report
    directory holding one), a store path or an opened store (analysed first with
    `analyze_kwargs`, e.g. ``settings=AnalysisSettings(n_resamples=500)``). Returns the
    matplotlib Figure (None for ``scatter`` without behavior data).
    """
    if kind not in FIGURES:
        raise ValueError(f"`kind` must be one of {sorted(FIGURES)}, got {kind!r}")
    results = _as_results(source, analyze_kwargs)
    layers = list(results["settings"]["layers"])
    if layer is None:
        layer = layers[0]
    if layer not in layers:
        raise ValueError(f"`layer` {layer!r} was not analysed; analysed layers: {', '.join(layers)}")
    return FIGURES[kind](results, layer)


def render_all(results: dict, out_dir: Path) -> list[dict]:
    """Draw every figure for every layer into `out_dir`; return [{file, layer, kind, png}]."""
    plt = _plt()
    out = []
    for li, layer in enumerate(results["settings"]["layers"]):
        for kind, fn in FIGURES.items():
            fig = fn(results, layer)
            if fig is None:
                continue
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
            plt.close(fig)
            name = f"{kind}_layer{li}.png"
            (out_dir / name).write_bytes(buf.getvalue())
            out.append({"file": name, "layer": layer, "kind": kind, "png": buf.getvalue()})
    return out
