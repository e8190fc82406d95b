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
# the paper's run-to-run sds behind PAPER_VALUES (row key -> (arm, quantity, sd))
PAPER_SDS = (
    ("alignment_first_update", "control", "first", 0.052),
    ("alignment_step_20", "control", 20, 0.021),
    ("final_alignment_control_to_blocked", "control", "final", 0.009),
    ("final_alignment_control_to_blocked", "blocked", "final", 0.021),
    ("behavior_control_to_blocked", "control", "behavior", 0.040),
    ("behavior_control_to_blocked", "blocked", "behavior", 0.015),
)
_MATCHED = (("covariance_matched", "covariance-matched"), ("permutation", "permutation"),
            ("effective_dimension", "effective-dimension"))
_LABELS = {
    "alignment_first_update": "cos(drift, v_rev) after the first update (control)",
    "alignment_step_20": "same, by step 20 (control)",
    "isotropic_p99_exceedance": "run-step pairs above the p99 of the isotropic null and, beside "
                                "it, of the matched nulls (control)",
    "final_alignment_control_to_blocked": "final alignment, control → blocked",
    "behavior_control_to_blocked": "behavior rate, control → blocked",
    "spearman_alignment_behavior": "alignment vs behavior (Spearman over runs: pooled, and "
                                   "within arms); ordering",
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


def _null_count(n: dict) -> str:
    if n.get("approximate"):
        return f"{n['n_above']} of {n['n_pairs']} (approximate null)"
    return f"{n['n_above']} of {n['n_pairs']}"


def _exceedance_row(nulls: dict) -> str | None:
    iso = nulls.get("isotropic")
    if not iso:
        return None
    txt = (f"isotropic {iso['n_above']} of {iso['n_pairs']} (step {iso['first_step']}: "
           f"{iso['n_above_first_step']} of {iso['n_runs_first_step']})")
    matched = [f"{label} {_null_count(nulls[key])}" for key, label in _MATCHED if key in nulls]
    return txt + ("; " + "; ".join(matched) if matched
                  else "; matched nulls not computed (see skipped)")


def _ordering_text(trend: dict | None) -> str | None:
    if not trend:
        return None
    parts = []
    for key, label in (("final_alignment", "alignment"), ("behavior_rate", "behavior")):
        t = trend.get(key)
        if not t:
            continue
        steps = ", ".join(
            f"{p['contrast']} {p['estimate']:.3g} [{p['low']:.3g}, {p['high']:.3g}]"
            for p in t.get("pairwise", []) if p.get("estimate") is not None)
        verdict = ("order holds at each step" if t.get("ordering_holds")
                   else "order not established")
        jt = ("n/a (no variation)" if t.get("pvalue") is None  # e.g. every rate 0 in every arm
              else f"{t['pvalue']:.2g}")
        parts.append(f"{label}: {verdict} ({steps}); JT p = {jt}")
    return "; ".join(parts) if parts else None


def _sd_ratios(arms: dict) -> dict[str, float]:
    """Our run-to-run sd over the paper's, per quantity with a published sd."""
    out = {}
    for key, arm, what, paper_sd in PAPER_SDS:
        e = arms.get(arm)
        if e is None:
            continue
        if what == "final":
            row = e.get("final_alignment")
        elif what == "behavior":
            row = e.get("behavior_rate")
        elif what == "first":
            steps = [r["step"] for r in e["alignment"] if r["step"] > 0]
            row = _at_step(e["alignment"], min(steps)) if steps else None
        else:
            row = _at_step(e["alignment"], int(what))
        if row and row.get("sd") is not None:
            out[f"{key}:{arm}"] = row["sd"] / paper_sd
    return out


def calibration_note(ratios: dict[str, float]) -> str:
    """The sentence printed wherever the preset's output stands beside the paper's values."""
    txt = ("The paper-main-track preset was tuned so that its means land on the paper's; "
           "agreement of the means is by construction, not a replication.")
    if ratios:
        lo, hi = min(ratios.values()), max(ratios.values())
        txt += (f" Its run-to-run sds are {lo:.1f}-{hi:.1f} times the paper's "
                f"(over {len(ratios)} quantities with a published sd).")
    return txt


def paper_table(results: dict) -> dict:
    """Rows of the paper's headline table computed from `results` (the headline layer)."""
    layers = results["settings"]["layers"]
    show_paper = results["store"].get("preset") == "paper-main-track"
    if not layers:
        return {"layer": None, "paper_preset": show_paper, "rows": []}
    chosen = results.get("headline_layer") or {}
    layer = chosen.get("layer") or layers[0]
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
        rows["isotropic_p99_exceedance"] = _exceedance_row(ctrl["null_p99"])
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
            parts.append(f"pooled r = {sp['estimate']:.3f} [{sp['low']:.3f}, {sp['high']:.3f}]"
                         if sp.get("low") is not None else f"pooled r = {sp['estimate']:.3f}")
            within = [f"{arm} {w['estimate']:.2f}" for arm, w in
                      (sp.get("within_arm") or {}).items() if w and w.get("estimate") is not None]
            if within:
                parts.append("within arms " + ", ".join(within))
        ordering = _ordering_text(trend)
        if ordering:
            parts.append(ordering)
        rows["spearman_alignment_behavior"] = "; ".join(parts)
    ratios = _sd_ratios(arms) if show_paper else {}
    return {
        "layer": layer,
        "layer_rule": chosen.get("rule"),
        "calibration_note": calibration_note(ratios) if show_paper else None,
        "sd_ratio_to_paper": ratios or None,
        "paper_preset": show_paper,
        "rows": [
            {"key": key, "quantity": _LABELS[key], "revstats": rows.get(key),
             "paper": PAPER_VALUES[key] if show_paper else None}
            for key in PAPER_VALUES
        ],
    }
