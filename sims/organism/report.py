"""Summarise an organism store: reversion, alignment against nulls, arm effects (for docs/organism.md).

Run: ``python -m revstats.sims.organism.report STORE [--json FILE]``. Every statistic comes from the
revstats core (geometry, nulls, intervals, effects); this module only selects the numbers.
"""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Any

import numpy as np

__all__ = ["summarize", "to_markdown"]


def _f(x: Any) -> float:
    return float(np.asarray(x))


def _iv(obj) -> dict[str, float]:
    return {"estimate": _f(obj.estimate), "low": _f(obj.low), "high": _f(obj.high),
            "method": obj.method}


def _mean_ci(x) -> dict[str, Any]:
    from revstats import intervals

    x = np.asarray(x, dtype=float)
    if x.size < 2 or np.ptp(x) == 0:
        m = float(x.mean())
        return {"estimate": m, "low": m, "high": m, "method": "constant or n < 2"}
    return _iv(intervals.mean_ci(x))


def summarize(path: str, *, n_permutations: int = 999, seed: int = 0) -> dict[str, Any]:
    """Reversion, alignment and effects of every arm of the organism store at ``path``."""
    import revstats as rs
    from revstats import effects, intervals, nulls

    ds = rs.open_store(path)
    acts = ds.acts.load()
    witness = ds.witness.load()
    beh = ds.behavior.load()
    task = ds.task.load()
    a0 = acts.sel(step=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rs.DegenerateDataWarning)  # step 0 has zero drift
        v = rs.reversion_direction(witness, a0, dim="example")
        drift = (acts - a0).mean("example")
        align = rs.alignment(drift, v).transpose("run", "step", "layer")
    steps = [int(s) for s in ds.step.values]
    final = steps[-1]
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
        rate0 = beh.sel(run=runs, step=0).mean("example").values
        rate = beh.sel(run=runs, step=final).mean("example").values
        k0, kT = int(beh.sel(run=runs, step=0).sum()), int(beh.sel(run=runs, step=final).sum())
        n = n_probe * len(runs)
        res: dict[str, Any] = {
            "n_runs": len(runs),
            "harm_aligned": {"pooled": k0 / n, **_mean_ci(rate0)},
            "harm_final": {"pooled": kT / n, **_mean_ci(rate)},
            "reversion_pooled_diff": _iv(intervals.proportion_diff_ci(kT, n, k0, n)),
            "task_final": _mean_ci(task.sel(run=runs, step=final).values),
            "layers": {},
        }
        if len(runs) > 1 and np.ptp(rate - rate0) > 0:
            res["reversion_paired_t"] = _iv(effects.mean_difference(rate, rate0, paired=True))
        for layer in [str(x) for x in ds.layer.values]:
            al = align.sel(run=runs, layer=layer)
            traj = {}
            for s in steps[1:]:
                x = al.sel(step=s).values
                ci = _mean_ci(x)
                traj[s] = {"mean": float(x.mean()),
                           "sd": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
                           "low": ci["low"], "high": ci["high"]}
            obs = al.sel(step=steps[1:]).values
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
                       "effective_p99_above": "n/a"}
            # matched null: v rebuilt from sign-swapped (witness, aligned) probe pairs, per run
            perm_above = 0
            for r in runs:
                w = witness.sel(run=r, layer=layer).values
                h = a0.sel(run=r, layer=layer).values
                d = drift.sel(run=r, layer=layer, step=steps[1:]).values
                pn = nulls.permutation_cosine(w, h, d, n_permutations=n_permutations, rng=rng)
                thr = np.quantile(pn.samples, 0.99, axis=-1)
                perm_above += int((al.sel(run=r).sel(step=steps[1:]).values > thr).sum())
            res["layers"][layer] = {
                "alignment": traj,
                "final_alignment": traj[final],
                "isotropic_p99_above": f"{ex.n_above}/{ex.n_pairs}",
                "isotropic_holm_reject": int(np.sum(ex.reject)),
                "permutation_p99_above": f"{perm_above}/{obs.size}",
                **eff,
            }
        out["arms"][arm] = res
    # effects against control, paired by seed
    if "control" in by_arm:
        ctl = by_arm["control"]
        ctl_seed = {seeds[r]: r for r in ctl}
        for arm, runs in by_arm.items():
            if arm == "control":
                continue
            pairs = [(r, ctl_seed[seeds[r]]) for r in runs if seeds[r] in ctl_seed]
            ra = np.array([float(beh.sel(run=a, step=final).mean()) for a, _ in pairs])
            rc = np.array([float(beh.sel(run=c, step=final).mean()) for _, c in pairs])
            ta = np.array([float(task.sel(run=a, step=final)) for a, _ in pairs])
            tc = np.array([float(task.sel(run=c, step=final)) for _, c in pairs])
            ka = int(beh.sel(run=[a for a, _ in pairs], step=final).sum())
            kc = int(beh.sel(run=[c for _, c in pairs], step=final).sum())
            n = n_probe * len(pairs)
            eff: dict[str, Any] = {"risk_difference_pooled": _iv(effects.risk_difference(ka, n, kc, n))}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rs.DegenerateDataWarning)
                if len(pairs) > 1:
                    eff["harm_diff_paired"] = _iv(effects.mean_difference(ra, rc, paired=True))
                    eff["task_diff_paired"] = _iv(effects.mean_difference(ta, tc, paired=True))
                    for layer in [str(x) for x in ds.layer.values]:
                        fa = align.sel(run=[a for a, _ in pairs], layer=layer, step=final).values
                        fc = align.sel(run=[c for _, c in pairs], layer=layer, step=final).values
                        eff[f"final_alignment_diff_{layer}"] = _iv(
                            effects.mean_difference(fa, fc, paired=True))
            out["arms"][arm]["vs_control"] = eff
    return out


def _pm(d: dict, pct: bool = False) -> str:
    k = 100.0 if pct else 1.0
    unit = "%" if pct else ""
    return f"{k * d['estimate']:.1f}{unit} [{k * d['low']:.1f}, {k * d['high']:.1f}]" if pct else \
        f"{d['estimate']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"


def to_markdown(summary: dict[str, Any], *, layer: str | None = None) -> str:
    """Tables: harmfulness after alignment vs final, alignment vs nulls, effects vs control."""
    arms = summary["arms"]
    first = next(iter(arms.values()))
    layers = list(first["layers"])
    layer = layer or layers[-1]
    lines = [f"Final step {summary['steps'][-1]}; {summary['n_probes']} held-out trigger probes "
             f"per run; isotropic p99 (d={summary['hidden']}) = {summary['isotropic_p99']:.3f}.",
             "",
             "| arm | runs | harm after align | harm final (mean of runs, t 95% CI) | "
             "final − aligned (pooled, Newcombe) | task final |",
             "|---|---|---|---|---|---|"]
    for arm, r in arms.items():
        lines.append(
            f"| {arm} | {r['n_runs']} | {100 * r['harm_aligned']['pooled']:.1f}% | "
            f"{_pm(r['harm_final'], True)} | {_pm(r['reversion_pooled_diff'], True)} | "
            f"{_pm(r['task_final'])} |")
    lines += ["", "Alignment cos(drift, v_rev), final step, per layer (mean [t 95% CI]); "
              "run-step pairs above the p99 of the isotropic null (d = hidden), the effective-"
              "dimension isotropic null and the matched permutation null:", "",
              "| arm | " + " | ".join(layers) + " |", "|---|" + "---|" * len(layers)]
    for arm, r in arms.items():
        cells = []
        for lay in layers:
            x = r["layers"][lay]
            fa = x["final_alignment"]
            cells.append(f"{fa['mean']:.2f} [{fa['low']:.2f}, {fa['high']:.2f}]; iso "
                         f"{x['isotropic_p99_above']}, d_eff {x['effective_p99_above']}, "
                         f"perm {x['permutation_p99_above']}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", f"Effects vs control (paired by seed; alignment at {layer}):", "",
              "| arm | harm diff (paired t) | risk diff (pooled, Newcombe) | task diff | "
              "final alignment diff |", "|---|---|---|---|---|"]
    for arm, r in arms.items():
        e = r.get("vs_control")
        if not e or "harm_diff_paired" not in e:
            continue
        lines.append(f"| {arm} | {_pm(e['harm_diff_paired'], True)} | "
                     f"{_pm(e['risk_difference_pooled'], True)} | {_pm(e['task_diff_paired'])} | "
                     f"{_pm(e[f'final_alignment_diff_{layer}'])} |")
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
