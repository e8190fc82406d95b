"""Tables of the unlearning and trait-transfer settings (docs/organism.md), from their stores.

Run: ``python -m revstats.sims.organism.phenomena_report STORE [--summary RUN_SUMMARY.json] [--json F]``.
The unit of inference is the seed (a cluster of probes): every interval is a t interval over
per-seed values (:func:`revstats.intervals.mean_ci`) or a paired t over seeds
(:func:`revstats.effects.mean_difference`); an interval with no spread (all seeds equal, or one
seed) is reported as ``no interval`` with the reason, never printed as an interval.
"""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Any

import numpy as np

__all__ = ["fmt", "summarize_setting", "to_markdown"]


def _seed_interval(x: np.ndarray, bounds: tuple[float, float] = (0.0, 1.0)) -> dict[str, Any]:
    """t interval over seeds clipped to the parameter's ``bounds``, or the reason there is
    none."""
    from revstats import intervals

    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return {"estimate": float(x.mean()), "low": None, "high": None, "n": int(x.size),
                "reason": "one seed"}
    if np.ptp(x) == 0:
        return {"estimate": float(x[0]), "low": None, "high": None, "n": int(x.size),
                "reason": "all seeds equal"}
    iv = intervals.mean_ci(x)
    return {"estimate": float(iv.estimate), "low": max(float(iv.low), bounds[0]),
            "high": min(float(iv.high), bounds[1]), "n": int(x.size),
            "method": "t over seeds"}


def _rate(k: np.ndarray, n: int) -> dict[str, Any]:
    """Pooled rate with the Korn-Graubard interval, seeds as clusters
    (:func:`revstats.intervals.cluster_proportion_ci`; bounds in [0, 1], defined at 0 and 1)."""
    from revstats import intervals

    k = np.asarray(k, dtype=float)
    if k.size < 2:
        return {"estimate": float(k.sum() / n), "low": None, "high": None, "n": int(k.size),
                "reason": "one seed"}
    iv = intervals.cluster_proportion_ci(k, n)
    return {"estimate": float(iv.estimate), "low": float(iv.low), "high": float(iv.high),
            "n": int(k.size), "method": "korn_graubard, seeds as clusters",
            "design_effect": float(iv.extra["design_effect"])}


def _paired(a: np.ndarray, b: np.ndarray, bound: float = 1.0) -> dict[str, Any]:
    """Paired t over seeds of a - b clipped to [-bound, bound], or the reason there is none."""
    from revstats import effects

    d = np.asarray(a, float) - np.asarray(b, float)
    if d.size < 2:
        return {"estimate": float(d.mean()), "low": None, "high": None, "n": int(d.size),
                "reason": "one seed"}
    if np.ptp(d) == 0:
        return {"estimate": float(d[0]), "low": None, "high": None, "n": int(d.size),
                "reason": "every seed has the same difference"}
    e = effects.mean_difference(a, b, paired=True)
    return {"estimate": e.estimate, "low": max(e.low, -bound), "high": min(e.high, bound),
            "n": int(d.size),
            "pvalue": e.pvalue, "method": "paired t over seeds"}


def fmt(d: dict[str, Any], pct: bool = True, digits: int | None = None) -> str:
    """``est [low, high]``, or ``est (no interval: reason)``."""
    k, u, p = (100.0, " %", 1) if pct else (1.0, "", 2)
    p = digits if digits is not None else p
    est = f"{k * d['estimate']:+.{p}f}{u}" if d.get("signed") else f"{k * d['estimate']:.{p}f}{u}"
    if d.get("low") is None:
        return f"{est} (no interval: {d.get('reason', 'n/a')}, n = {d['n']})"
    return f"{est} [{k * d['low']:.{p}f}, {k * d['high']:.{p}f}]"


def _signed(d: dict[str, Any]) -> dict[str, Any]:
    return {**d, "signed": True}


def summarize_setting(path: str, *, run_summary: dict | None = None) -> dict[str, Any]:
    """Per arm: behaviour at step 0 and at the final step (mean of seeds), change over
    fine-tuning, behaviour trajectory, final cos(drift, v_rev) per layer; effects of every arm
    vs ``control`` (and of ``control`` vs ``trait_free`` when present), paired by seed."""
    import revstats as rs
    from revstats import nulls

    ds = rs.open_store(path)
    prov = json.loads(ds.attrs["provenance"])
    acts, witness, beh = ds.acts.load(), ds.witness.load(), ds.behavior.load()
    task = ds.task.load()
    a0 = acts.sel(step=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rs.DegenerateDataWarning)  # step 0 has zero drift
        v = rs.reversion_direction(witness, a0, dim="example")
        align = rs.alignment((acts - a0).mean("example"), v).transpose("run", "step", "layer")
    steps = [int(s) for s in ds.step.values]
    final = steps[-1]
    arms = list(dict.fromkeys(str(a) for a in ds.arm.values))
    seeds_of = {str(r): int(s) for r, s in zip(ds.run.values, ds.seed.values, strict=True)}
    by_arm = {arm: sorted((str(r) for r, a in zip(ds.run.values, ds.arm.values, strict=True)
                           if a == arm), key=lambda r: seeds_of[r]) for arm in arms}
    layers = [str(x) for x in ds.layer.values]
    out: dict[str, Any] = {
        "store": path, "setting": prov.get("setting", "refusal"), "steps": steps,
        "n_probes": int(ds.sizes["example"]), "hidden": int(ds.sizes["hidden"]),
        "isotropic_p99": float(nulls.isotropic_cosine(ds.sizes["hidden"]).quantile(0.99)),
        "behavior": prov.get("behavior"), "witness": prov.get("witness"),
        "aligned": prov.get("aligned"), "arms": {}, "effects": {}}

    def rates(runs: list[str], step: int) -> np.ndarray:
        return beh.sel(run=runs, step=step).mean("example").values

    for arm, runs in by_arm.items():
        r0, rT = rates(runs, 0), rates(runs, final)
        n_p = out["n_probes"]
        res: dict[str, Any] = {
            "n_seeds": len(runs), "seeds": [seeds_of[r] for r in runs],
            "step0": _rate(np.rint(r0 * n_p), n_p), "final": _rate(np.rint(rT * n_p), n_p),
            "change": _signed(_paired(rT, r0)),
            "per_seed_final": [float(x) for x in rT],
            "trajectory": {s: float(rates(runs, s).mean()) for s in steps},
            "task_final": _seed_interval(task.sel(run=runs, step=final).values),
            "final_alignment": {}}
        for layer in layers:
            al = align.sel(run=runs, layer=layer, step=final).values
            res["final_alignment"][layer] = {
                **_seed_interval(al, (-1.0, 1.0)),
                "above_isotropic_p99": f"{int((al > out['isotropic_p99']).sum())}/{al.size}"}
        out["arms"][arm] = res

    def paired_effect(a: str, b: str) -> dict[str, Any]:
        sa = {seeds_of[r]: r for r in by_arm[a]}
        sb = {seeds_of[r]: r for r in by_arm[b]}
        common = sorted(set(sa) & set(sb))
        ra = np.array([float(beh.sel(run=sa[s], step=final).mean()) for s in common])
        rb = np.array([float(beh.sel(run=sb[s], step=final).mean()) for s in common])
        eff: dict[str, Any] = {"behavior_final": _signed(_paired(ra, rb)), "alignment_final": {}}
        for layer in layers:
            fa = align.sel(run=[sa[s] for s in common], layer=layer, step=final).values
            fb = align.sel(run=[sb[s] for s in common], layer=layer, step=final).values
            eff["alignment_final"][layer] = _signed(_paired(fa, fb, 2.0))
        ta = task.sel(run=[sa[s] for s in common], step=final).values
        tb = task.sel(run=[sb[s] for s in common], step=final).values
        eff["task_final"] = _signed(_paired(ta, tb))
        return eff

    if "control" in by_arm:
        for arm in arms:
            if arm not in ("control", "trait_free"):
                out["effects"][f"{arm} - control"] = paired_effect(arm, "control")
    if "trait_free" in by_arm and "control" in by_arm:
        out["effects"]["control - trait_free"] = paired_effect("control", "trait_free")
    if run_summary:
        per_seed = {k: v for k, v in run_summary.items() if k.startswith("seed")}
        keys = sorted({k for v in per_seed.values() for k in v})
        out["phases"] = {
            k: _seed_interval(np.array([v[k] for v in per_seed.values() if k in v]),
                              (0.0, np.inf) if k.startswith("kept") else (0.0, 1.0))
            for k in keys}
        out["timing_s"] = run_summary.get("timing_s")
        # the trait as a probability (traits setting): students vs each other and vs the base
        pairs = [("p_trait_final_control", "p_trait_final_trait_free"),
                 ("p_trait_final_control", "p_trait_base"),
                 ("p_trait_final_trait_free", "p_trait_base"),
                 ("p_trait_final_blocked", "p_trait_final_control")]
        out["phase_effects"] = {
            f"{a} - {b}": _signed(_paired(np.array([v[a] for v in per_seed.values()]),
                                          np.array([v[b] for v in per_seed.values()])))
            for a, b in pairs if all(a in v and b in v for v in per_seed.values())}
    return out


def to_markdown(s: dict[str, Any], *, layer: str | None = None) -> str:
    """The tables of docs/organism.md for one setting store."""
    arms = s["arms"]
    layers = list(next(iter(arms.values()))["final_alignment"])
    layer = layer or layers[-1]
    steps = s["steps"]
    lines = [f"Setting `{s['setting']}`; behaviour: {s['behavior']}; witness: {s['witness']}; "
             f"{s['aligned']}. {s['n_probes']} probes per run, final step {steps[-1]}; "
             "rates: pooled, Korn-Graubard 95 % interval with seeds as clusters; changes and "
             "differences: paired t over seeds; cosines: t over seeds.", ""]
    if "phases" in s:
        lines += ["| phase metric (per seed) | mean [t 95 % CI over seeds] |",
                  "|---|---|"]
        for k, d in s["phases"].items():
            lines.append(f"| {k} | {fmt(d, pct=not k.startswith(('kept', 'p_trait')), digits=None if not k.startswith('p_trait') else 3)} |")
        lines.append("")
    if s.get("phase_effects"):
        lines += ["| per-seed metric difference | paired t over seeds |", "|---|---|"]
        for k, d in s["phase_effects"].items():
            lines.append(f"| {k} | {fmt(d, pct=False, digits=3)} |")
        lines.append("")
    lines += ["| arm | seeds | behaviour at step 0 | behaviour final | change (paired t) | "
              f"task final | cos(drift, v_rev) final, {layer} |", "|---|---|---|---|---|---|---|"]
    for arm, r in arms.items():
        fa = r["final_alignment"][layer]
        lines.append(f"| {arm} | {r['n_seeds']} | {fmt(r['step0'])} | {fmt(r['final'])} | "
                     f"{fmt(r['change'])} | {fmt(r['task_final'], pct=False)} | "
                     f"{fmt(fa, pct=False)} (> iso p99: {fa['above_isotropic_p99']}) |")
    shown = [st for st in steps if st in (0, steps[-1]) or st % max(1, steps[-1] // 5) == 0]
    lines += ["", "Behaviour over fine-tuning steps (mean of seeds):", "",
              "| arm | " + " | ".join(str(st) for st in shown) + " |",
              "|---|" + "---|" * len(shown)]
    for arm, r in arms.items():
        lines.append(f"| {arm} | " + " | ".join(f"{100 * r['trajectory'][st]:.0f} %"
                                                for st in shown) + " |")
    if s["effects"]:
        lines += ["", f"Paired by seed, final step (alignment at {layer}):", "",
                  "| comparison | Δ behaviour | Δ cos(drift, v_rev) | Δ task |",
                  "|---|---|---|---|"]
        for name, e in s["effects"].items():
            lines.append(f"| {name} | {fmt(e['behavior_final'])} | "
                         f"{fmt(e['alignment_final'][layer], pct=False)} | "
                         f"{fmt(e['task_final'], pct=False)} |")
    lines += ["", f"Final alignment per layer (isotropic p99 for d = {s['hidden']}: "
              f"{s['isotropic_p99']:.3f}):", "", "| arm | " + " | ".join(layers) + " |",
              "|---|" + "---|" * len(layers)]
    for arm, r in arms.items():
        lines.append(f"| {arm} | " + " | ".join(fmt(r["final_alignment"][ly], pct=False)
                                                for ly in layers) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store")
    parser.add_argument("--summary", default=None,
                        help="the run's --summary JSON (adds the per-seed phase metrics)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    run_summary = None
    if args.summary:
        with open(args.summary) as fh:
            run_summary = json.load(fh)
    s = summarize_setting(args.store, run_summary=run_summary)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(s, fh, indent=1, default=str)
    print(to_markdown(s))


if __name__ == "__main__":
    main()
