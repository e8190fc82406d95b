"""Summarise an organism store: reversion, alignment against nulls, arm effects (for docs/organism.md).

Run: ``python -m revstats.sims.organism.report STORE [--json FILE]``. Every statistic comes from the
revstats core (geometry, nulls, intervals, effects); this module only selects the numbers.

Honest-interval rules (issue 13.3, 13.11):

* runs (seeds) are the independent units: a rate's interval is the Korn-Graubard interval with
  runs as clusters (:func:`revstats.intervals.cluster_proportion_ci`, inside [0, 1]); a
  comparison of arms is the paired-by-seed t on per-seed differences, truncated to the
  parameter space ([-1, 1] for a difference of rates) and flagged when truncated; pooled
  probe-level intervals are kept only with the label "probes independent";
* an interval that cannot be estimated (one run, or every run giving the same value) is not
  printed as an interval: it is ``{"low": None, "high": None, "na": reason}`` and prints as
  "n/a (reason)";
* the core's ``DegenerateDataWarning`` is never silenced here.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

__all__ = ["summarize", "to_markdown"]


def _f(x: Any) -> float:
    return float(np.asarray(x))


def _iv(obj, *, bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    lo, hi = _f(obj.low), _f(obj.high)
    out: dict[str, Any] = {"estimate": _f(obj.estimate), "low": lo, "high": hi,
                           "method": obj.method}
    if bounds is not None and (lo < bounds[0] or hi > bounds[1]):
        out["low"], out["high"] = max(lo, bounds[0]), min(hi, bounds[1])
        out["truncated"] = True
    return out


def _na(estimate: float, why: str) -> dict[str, Any]:
    return {"estimate": float(estimate), "low": None, "high": None, "na": why}


def _why_degenerate(x: np.ndarray, what: str) -> str | None:
    if x.size < 2:
        return f"{x.size} {what}: no spread to estimate an interval from"
    if np.ptp(x) <= 1e-12 * max(1.0, float(np.abs(x).max())):
        return f"all {x.size} {what} equal ({float(x.flat[0]):.4g}): no spread to estimate " \
               "an interval from"
    return None


def _mean_ci(x, *, what: str = "runs", bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    from revstats import intervals

    x = np.asarray(x, dtype=float)
    why = _why_degenerate(x, what)
    if why:
        return _na(float(x.mean()) if x.size else float("nan"), why)
    return _iv(intervals.mean_ci(x), bounds=bounds)


def _paired(a, b, *, what: str = "seeds", bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """Paired-by-seed mean difference a - b (t), or n/a with the reason."""
    from revstats import effects

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    why = _why_degenerate(a - b, f"per-{what.rstrip('s')} differences")
    if why:
        return _na(float(np.mean(a - b)) if a.size else float("nan"), why)
    res = _iv(effects.mean_difference(a, b, paired=True), bounds=bounds)
    res["n_pairs"] = int(a.size)
    return res


def _rate_ci(k: np.ndarray, n_per_run: int) -> dict[str, Any]:
    """Pooled rate with runs as clusters (Korn-Graubard), or n/a for one run."""
    from revstats import intervals

    k = np.asarray(k, dtype=float)
    if k.size < 2:
        return _na(float(k.sum() / (n_per_run * max(k.size, 1))),
                   f"{k.size} run: no between-run variation (a probe-level interval would "
                   "treat probes as independent)")
    return _iv(intervals.cluster_proportion_ci(k, n_per_run))


def _activity(ds) -> dict[str, dict[str, dict[str, float]]]:
    raw = ds.attrs.get("organism_penalty_activity")
    if not raw:
        return {}
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def _binding(activity: dict, arms: list[str], reference: str = "blocked") -> dict[str, Any]:
    """How much each loss-term arm binds relative to ``reference`` (same seed): ratios of the
    mean penalty value and of the mean norm of its parameter gradient over the steps."""
    out: dict[str, Any] = {}
    for arm in arms:
        if arm == reference:
            continue
        loss_r, grad_r = [], []
        for per_seed in activity.values():
            if arm in per_seed and reference in per_seed:
                a, r = per_seed[arm], per_seed[reference]
                loss_r.append(a["penalty_mean"] / r["penalty_mean"] if r["penalty_mean"] > 0 else np.inf)
                grad_r.append(a["grad_norm_mean"] / r["grad_norm_mean"] if r["grad_norm_mean"] > 0 else np.inf)
        if loss_r:
            out[arm] = {"n_seeds": len(loss_r), "reference": reference,
                        "loss_ratio_median": float(np.median(loss_r)),
                        "loss_ratio_range": [float(np.min(loss_r)), float(np.max(loss_r))],
                        "grad_ratio_median": float(np.median(grad_r)),
                        "grad_ratio_range": [float(np.min(grad_r)), float(np.max(grad_r))]}
    return out


def summarize(path: str, *, n_permutations: int = 999, seed: int = 0) -> dict[str, Any]:
    """Reversion, alignment and effects of every arm of the organism store at ``path``."""
    import revstats as rs
    from revstats import intervals, nulls

    ds = rs.open_store(path)
    acts = ds.acts.load()
    witness = ds.witness.load()
    beh = ds.behavior.load()
    task = ds.task.load()
    a0 = acts.sel(step=0)
    steps = [int(s) for s in ds.step.values]
    later = steps[1:]
    final = steps[-1]
    v = rs.reversion_direction(witness, a0, dim="example")
    drift = (acts.sel(step=later) - a0).mean("example")  # step 0 has no drift: not a cosine
    align = rs.alignment(drift, v).transpose("run", "step", "layer")
    arms = list(dict.fromkeys(str(a) for a in ds.arm.values))
    n_probe = ds.sizes["example"]
    hidden = ds.sizes["hidden"]
    iso = nulls.isotropic_cosine(hidden)
    out: dict[str, Any] = {"store": path, "steps": steps, "hidden": hidden,
                           "n_probes": n_probe, "isotropic_p99": _f(iso.quantile(0.99)),
                           "arms": {}}
    rng = np.random.default_rng(seed)
    by_arm = {arm: [str(r) for r, a in zip(ds.run.values, ds.arm.values, strict=True) if a == arm]
              for arm in arms}
    seeds = {str(r): int(s) for r, s in zip(ds.run.values, ds.seed.values, strict=True)}
    for arm, runs in by_arm.items():
        k0 = beh.sel(run=runs, step=0).sum("example").values
        kT = beh.sel(run=runs, step=final).sum("example").values
        n = n_probe * len(runs)
        res: dict[str, Any] = {
            "n_runs": len(runs),
            "harm_aligned": {"pooled": float(k0.sum()) / n, **_rate_ci(k0, n_probe)},
            "harm_final": {"pooled": float(kT.sum()) / n, **_rate_ci(kT, n_probe)},
            "reversion_paired": _paired(kT / n_probe, k0 / n_probe, what="runs",
                                        bounds=(-1.0, 1.0)),
            "reversion_pooled_probes_independent": _iv(
                intervals.proportion_diff_ci(int(kT.sum()), n, int(k0.sum()), n)),
            "task_final": _mean_ci(task.sel(run=runs, step=final).values),
            "layers": {},
        }
        for layer in [str(x) for x in ds.layer.values]:
            al = align.sel(run=runs, layer=layer)
            if not np.isfinite(al.values).all():  # the core warned (zero-length v or drift)
                why = "alignment undefined (zero-length v_rev or drift; see the warning)"
                res["layers"][layer] = {"alignment": {}, "final_alignment": _na(float("nan"), why),
                                        "undefined": why}
                continue
            traj = {}
            for s in later:
                x = al.sel(step=s).values
                traj[s] = {"mean": float(x.mean()),
                           "sd": float(x.std(ddof=1)) if len(x) > 1 else float("nan"),
                           **{k: val for k, val in _mean_ci(x, bounds=(-1.0, 1.0)).items()
                              if k != "estimate"}}
            obs = al.values
            ex = nulls.exceedance(obs, iso, q=0.99)
            # effective-dimension isotropic null: d_eff of the per-probe drift at the final step
            per_probe = (acts.sel(run=runs, layer=layer, step=final)
                         - a0.sel(run=runs, layer=layer)).values.reshape(-1, hidden)
            try:
                eff_null = nulls.effective_isotropic_cosine(per_probe, kind="samples")
                ex_eff = nulls.exceedance(obs, eff_null, q=0.99)
                eff = {"effective_dim": float(eff_null.d),
                       "effective_p99": _f(eff_null.quantile(0.99)),
                       "effective_p99_above": f"{ex_eff.n_above}/{ex_eff.n_pairs}"}
            except ValueError:  # no probe-to-probe variation (e.g. layer 0 at one token)
                eff = {"effective_dim": float("nan"), "effective_p99": float("nan"),
                       "effective_p99_above": "n/a (no probe-to-probe variation)"}
            # matched null: v rebuilt from sign-swapped (witness, aligned) probe pairs, per run
            perm_above = 0
            for r in runs:
                w = witness.sel(run=r, layer=layer).values
                h = a0.sel(run=r, layer=layer).values
                d = drift.sel(run=r, layer=layer).values
                pn = nulls.permutation_cosine(w, h, d, n_permutations=n_permutations, rng=rng)
                thr = np.quantile(pn.samples, 0.99, axis=-1)
                perm_above += int((al.sel(run=r).values > thr).sum())
            res["layers"][layer] = {
                "alignment": traj,
                "final_alignment": traj[final],
                "isotropic_p99_above": f"{ex.n_above}/{ex.n_pairs}",
                "isotropic_holm_reject": int(np.sum(ex.reject)),
                "permutation_p99_above": f"{perm_above}/{obs.size}",
                **eff,
            }
        out["arms"][arm] = res

    def contrast(runs_a: list[str], runs_b: list[str]) -> dict[str, Any]:
        """arm a minus arm b, paired by seed, final step."""
        b_seed = {seeds[r]: r for r in runs_b}
        pairs = [(r, b_seed[seeds[r]]) for r in runs_a if seeds[r] in b_seed]
        ra_, rb_ = [a for a, _ in pairs], [b for _, b in pairs]
        ha = beh.sel(run=ra_, step=final).mean("example").values
        hb = beh.sel(run=rb_, step=final).mean("example").values
        ka, kb = int(beh.sel(run=ra_, step=final).sum()), int(beh.sel(run=rb_, step=final).sum())
        n = n_probe * len(pairs)
        from revstats import effects

        eff: dict[str, Any] = {
            "n_pairs": len(pairs),
            "harm_diff_paired": _paired(ha, hb, bounds=(-1.0, 1.0)),
            "risk_difference_pooled_probes_independent": _iv(effects.risk_difference(ka, n, kb, n)),
            "task_diff_paired": _paired(task.sel(run=ra_, step=final).values,
                                        task.sel(run=rb_, step=final).values),
        }
        for layer in [str(x) for x in ds.layer.values]:
            fa_, fb_ = (align.sel(run=r_, layer=layer, step=final).values for r_ in (ra_, rb_))
            if not (np.isfinite(fa_).all() and np.isfinite(fb_).all()):
                eff[f"final_alignment_diff_{layer}"] = _na(float("nan"), "alignment undefined")
                continue
            eff[f"final_alignment_diff_{layer}"] = _paired(
                align.sel(run=ra_, layer=layer, step=final).values,
                align.sel(run=rb_, layer=layer, step=final).values, bounds=(-2.0, 2.0))
        return eff

    if "control" in by_arm:
        for arm, runs in by_arm.items():
            if arm != "control":
                out["arms"][arm]["vs_control"] = contrast(runs, by_arm["control"])
    placebos = [a for a in arms if a.startswith("placebo")]
    blockers = [a for a in arms if a.startswith("blocked")]
    out["blocked_vs_placebo"] = {f"{b} - {p}": contrast(by_arm[b], by_arm[p])
                                 for b in blockers for p in placebos}
    activity = _activity(ds)
    if activity and "blocked" in arms:
        out["binding_vs_blocked"] = _binding(activity, arms)
    return out


def _fmt(d: dict, pct: bool = False, digits: int | None = None) -> str:
    """'estimate [low, high]' or 'estimate (CI n/a: why)'; rates and differences in %."""
    k, unit = (100.0, "%") if pct else (1.0, "")
    nd = (1 if pct else 3) if digits is None else digits
    est = f"{k * d['estimate']:.{nd}f}{unit}"
    if d.get("low") is None:
        return f"{est} (CI n/a: {d.get('na', 'not estimable')})"
    mark = "†" if d.get("truncated") else ""
    return f"{est} [{k * d['low']:.{nd}f}, {k * d['high']:.{nd}f}]{mark}"


def to_markdown(summary: dict[str, Any], *, layer: str | None = None) -> str:
    """Tables: harmfulness after alignment vs final, alignment vs nulls, effects vs control,
    blocked vs placebo and how much each placebo binds."""
    arms = summary["arms"]
    first = next(iter(arms.values()))
    layers = list(first["layers"])
    layer = layer or layers[-1]  # the last layer (final norm), never the embedding by default
    lines = [f"Final step {summary['steps'][-1]}; {summary['n_probes']} held-out trigger probes "
             f"per run (the same probes in every run); isotropic p99 (d={summary['hidden']}) = "
             f"{summary['isotropic_p99']:.3f}. Rate intervals: Korn-Graubard with runs (seeds) "
             "as clusters; differences: paired by seed (t over seeds); † = truncated to the "
             "parameter space; n/a = not estimable, with the reason.",
             "",
             "| arm | runs | harm after align | harm final | final − aligned (paired t) | "
             "final − aligned (pooled, probes independent) | task final |",
             "|---|---|---|---|---|---|---|"]
    for arm, r in arms.items():
        lines.append(
            f"| {arm} | {r['n_runs']} | {_fmt(r['harm_aligned'], True)} | "
            f"{_fmt(r['harm_final'], True)} | {_fmt(r['reversion_paired'], True)} | "
            f"{_fmt(r['reversion_pooled_probes_independent'], True)} | "
            f"{_fmt(r['task_final'])} |")
    lines += ["", "Alignment cos(drift, v_rev), final step, per layer (mean [t 95% CI over "
              "runs]); run-step pairs above the p99 of the isotropic null (d = hidden), the "
              "effective-dimension isotropic null (approximate: anti-conservative when v_rev "
              "lies in high-variance directions) and the matched permutation null:", "",
              "| arm | " + " | ".join(layers) + " |", "|---|" + "---|" * len(layers)]
    for arm, r in arms.items():
        cells = []
        for lay in layers:
            x = r["layers"][lay]
            fa = x["final_alignment"]
            if "undefined" in x:
                cells.append(f"n/a ({x['undefined']})")
                continue
            cells.append(f"{_fmt({'estimate': fa['mean'], **fa}, digits=2)}; iso "
                         f"{x['isotropic_p99_above']}, d_eff {x['effective_p99_above']}, "
                         f"perm {x['permutation_p99_above']}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", f"Effects vs control (paired by seed; alignment at {layer}):", "",
              "| arm | pairs | harm diff (paired t) | risk diff (pooled, probes independent) | "
              "task diff | final alignment diff |", "|---|---|---|---|---|---|"]
    for arm, r in arms.items():
        e = r.get("vs_control")
        if not e:
            continue
        lines.append(f"| {arm} | {e['n_pairs']} | {_fmt(e['harm_diff_paired'], True)} | "
                     f"{_fmt(e['risk_difference_pooled_probes_independent'], True)} | "
                     f"{_fmt(e['task_diff_paired'])} | "
                     f"{_fmt(e[f'final_alignment_diff_{layer}'])} |")
    bp = summary.get("blocked_vs_placebo") or {}
    if bp:
        lines += ["", "Blocked vs placebo directly (paired by seed, final step; negative = "
                  "the blocked arm has less harm):", "",
                  "| contrast | pairs | harm diff | task diff | final alignment diff |",
                  "|---|---|---|---|---|"]
        for name, e in bp.items():
            lines.append(f"| {name} | {e['n_pairs']} | {_fmt(e['harm_diff_paired'], True)} | "
                         f"{_fmt(e['task_diff_paired'])} | "
                         f"{_fmt(e[f'final_alignment_diff_{layer}'])} |")
    bind = summary.get("binding_vs_blocked") or {}
    if bind:
        lines += ["", "How much each loss-term arm binds, relative to the v_rev penalty "
                  "(`blocked`) of the same seed: mean penalty value and mean norm of its "
                  "parameter gradient over the fine-tuning steps (median [min, max] over seeds):",
                  "", "| arm | seeds | penalty ratio | gradient ratio |", "|---|---|---|---|"]
        for arm, b in bind.items():
            lines.append(f"| {arm} | {b['n_seeds']} | {b['loss_ratio_median']:.3g} "
                         f"[{b['loss_ratio_range'][0]:.3g}, {b['loss_ratio_range'][1]:.3g}] | "
                         f"{b['grad_ratio_median']:.3g} [{b['grad_ratio_range'][0]:.3g}, "
                         f"{b['grad_ratio_range'][1]:.3g}] |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    s = summarize(args.store)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(s, fh, indent=1, default=str)
    print(to_markdown(s))


if __name__ == "__main__":
    main()
