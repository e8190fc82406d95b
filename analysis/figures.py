"""PNG figures from a results dict (matplotlib, Agg backend, no display needed).

Every figure works from results.json alone, so a report can be re-drawn without the store.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

ARM_COLORS = {"control": "#1f77b4", "blocked": "#d62728", "push": "#2ca02c"}
NULL_STYLES = {
    "isotropic": ("#555555", "--"),
    "effective_dimension": ("#9467bd", ":"),
    "covariance_matched": ("#ff7f0e", "-."),
    "permutation": ("#8c564b", (0, (6, 2, 1, 2))),
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _text(s: str) -> str:
    """User text shown literally (no mathtext from `$`)."""
    return str(s).replace("$", r"\$")


def _color(arm: str, i: int) -> str:
    return ARM_COLORS.get(arm, f"C{(i + 3) % 10}")


def _vals(rows, key):
    return np.array([np.nan if r.get(key) is None else r[key] for r in rows], float)


def trajectory(results: dict, layer: str):
    plt = _plt()
    h = results["headline"]["layers"][layer]
    d = results["details"]["layers"][layer]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for i, (arm, e) in enumerate(h["arms"].items()):
        steps = np.array([r["step"] for r in e["alignment"]])
        m, lo, hi = (_vals(e["alignment"], k) for k in ("mean", "low", "high"))
        col = _color(arm, i)
        ax.plot(steps, m, "-o", ms=3, color=col, label=f"{_text(arm)}: plug-in mean (n={e['n_runs']})")
        ax.fill_between(steps, lo, hi, color=col, alpha=0.2, lw=0)
        md = _vals(e["alignment_debiased"], "mean")
        if np.any(np.isfinite(md)):
            ax.plot(steps, md, ":", color=col, lw=1.5, label=f"{_text(arm)}: debiased (cross-fit)")
    ctrl = "control" if "control" in d["arms"] else next(iter(d["arms"]))
    q = results["settings"]["null_quantile"]
    for name, nd in d["arms"][ctrl]["nulls"].items():
        col, ls = NULL_STYLES.get(name, ("k", "--"))
        bands = nd["bands"]
        steps = np.array([b["step"] for b in bands])
        ax.plot(steps, _vals(bands, "q99"), color=col, ls=ls, lw=1.2,
                label=f"null p{int(round(q * 100))}: {name.replace('_', ' ')}")
        ax.fill_between(steps, _vals(bands, "q50"), _vals(bands, "q99"), color=col, alpha=0.07,
                        lw=0)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("alignment cos(drift, v_rev)  [unitless, −1…1]")
    conf = int(round(100 * results["settings"]["confidence"]))
    ax.set_title(f"Alignment trajectory, layer {_text(layer)}\n(arm bands: {conf}% CI of the "
                 f"mean; null bands: median to p{int(round(q * 100))} of the {_text(ctrl)} arm's "
                 f"nulls)", fontsize=10)
    ax.legend(fontsize=7, loc="best", ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
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
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def ablation(results: dict, layer: str):
    plt = _plt()
    h = results["headline"]["layers"][layer]
    arms = list(h["arms"])
    panels = [("final_alignment", "final alignment cos(drift, v_rev)", 1.0)]
    if any(h["arms"][a]["behavior_rate"] for a in arms):
        panels.append(("behavior_rate", "behaviour rate [% of probes]", 100.0))
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
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Ablation, layer {_text(layer)}: means with {conf}% intervals "
                 f"(behaviour: Wilson)", fontsize=10)
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
    title = f"Alignment vs behaviour, layer {_text(layer)}"
    if sp and sp.get("estimate") is not None:
        title += (f"\nSpearman r = {sp['estimate']:.3f}"
                  + (f" [{sp['low']:.3f}, {sp['high']:.3f}]" if sp.get("low") is not None else ""))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"final alignment cos(drift, v_rev) at step {pr['steps'][-1]}")
    ax.set_ylabel("final behaviour rate [% of probes]")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


FIGURES = {"trajectory": trajectory, "per_run": per_run, "ablation": ablation,
           "scatter": scatter}


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
