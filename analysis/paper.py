"""The paper's headline table (DESIGN §1), rebuilt from a results dict.

The paper's values are shown beside ours only when the store came from the `paper-main-track`
simulator preset: for any other store the comparison would be meaningless.
"""

from __future__ import annotations

from typing import Any

PAPER_VALUES = {
    "alignment_first_update": "0.429 ± 0.052",
    "alignment_step_20": "0.647 ± 0.021",
    "isotropic_p99_exceedance": "24 of 24",
    "final_alignment_control_to_blocked": "0.648 ± 0.009 → −0.211 ± 0.021",
    "behavior_control_to_blocked": "19.0% ± 4.0% → 8.5% ± 1.5%, little task cost",
    "spearman_alignment_behavior": "r = 0.958; ordering block < baseline < push",
}
_LABELS = {
    "alignment_first_update": "cos(drift, v_rev) after the first update (control)",
    "alignment_step_20": "same, by step 20 (control)",
    "isotropic_p99_exceedance": "run-step pairs above the isotropic null's p99 (control)",
    "final_alignment_control_to_blocked": "final alignment, control → blocked",
    "behavior_control_to_blocked": "behavior rate, control → blocked",
    "spearman_alignment_behavior": "alignment vs behavior (Spearman, runs); ordering",
}


def _pm(x: dict | None, pct: bool = False) -> str | None:
    if not x or x.get("mean") is None:
        return None
    f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.3f}")
    sd = x.get("sd")
    return f"{f(x['mean'])} ± {f(sd)}" if sd is not None else f(x["mean"])


def _at_step(traj: list[dict], step: int) -> dict | None:
    for row in traj:
        if row["step"] == step:
            return row
    return None


def paper_table(results: dict) -> dict:
    """Rows of the paper's headline table computed from `results` (first analysed layer)."""
    layers = results["settings"]["layers"]
    show_paper = results["store"].get("preset") == "paper-main-track"
    if not layers:
        return {"layer": None, "paper_preset": show_paper, "rows": []}
    layer = layers[0]
    h = results["headline"]["layers"][layer]
    arms = h["arms"]
    ctrl = arms.get("control")
    blk = arms.get("blocked")
    rows: dict[str, Any] = {}
    if ctrl is not None:
        steps = [r["step"] for r in ctrl["alignment"] if r["step"] > 0]
        first = min(steps) if steps else None
        rows["alignment_first_update"] = (
            _pm(_at_step(ctrl["alignment"], first)) if first is not None else None)
        rows["alignment_step_20"] = _pm(_at_step(ctrl["alignment"], 20))
        iso = ctrl["null_p99"].get("isotropic")
        rows["isotropic_p99_exceedance"] = (
            f"{iso['n_above']} of {iso['n_pairs']} (step {iso['first_step']}: "
            f"{iso['n_above_first_step']} of {iso['n_runs_first_step']})" if iso else None)
    if ctrl is not None and blk is not None:
        rows["final_alignment_control_to_blocked"] = (
            f"{_pm(ctrl['final_alignment'])} → {_pm(blk['final_alignment'])}")
        if ctrl.get("behavior_rate") and blk.get("behavior_rate"):
            txt = f"{_pm(ctrl['behavior_rate'], True)} → {_pm(blk['behavior_rate'], True)}"
            ni = h["effects"].get("blocked_vs_control", {}).get("task_noninferiority")
            if ni:
                txt += ("; task non-inferior" if ni.get("noninferior")
                        else "; task non-inferiority not shown")
            rows["behavior_control_to_blocked"] = txt
    sp = results["details"]["layers"][layer].get("spearman")
    trend = results["details"]["layers"][layer].get("trend")
    if sp or trend:
        parts = []
        if sp:
            parts.append(f"r = {sp['estimate']:.3f} [{sp['low']:.3f}, {sp['high']:.3f}]"
                         if sp.get("low") is not None else f"r = {sp['estimate']:.3f}")
        if trend and trend.get("final_alignment"):
            parts.append(f"trend {' < '.join(trend['order'])}: "
                         f"p = {trend['final_alignment']['pvalue']:.2g}")
        rows["spearman_alignment_behavior"] = "; ".join(parts)
    return {
        "layer": layer,
        "paper_preset": show_paper,
        "rows": [
            {"key": key, "quantity": _LABELS[key], "revstats": rows.get(key),
             "paper": PAPER_VALUES[key] if show_paper else None}
            for key in PAPER_VALUES
        ],
    }
