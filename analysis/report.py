"""The significance report: report.md, a self-contained report.html, results.json and PNGs.

The report is built from the results dict alone (one model of sections and tables, rendered
twice). Every string that came from the user's store (run ids, layer and arm names, provenance)
goes through `html.escape` in the HTML and through `_md` in Markdown. Outputs are staged in a
temporary directory and moved into place file by file with `os.replace`.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from revstats.analysis import figures
from revstats.analysis.io import replace_dir, results_to_json

__all__ = ["write_report"]


@dataclass
class _Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class _Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[_Table] = field(default_factory=list)
    figures: list[dict] = field(default_factory=list)


def _f(x, fmt: str = "{:.3f}") -> str:
    return "—" if x is None else fmt.format(x)


def _ci(e: dict | None, scale: float = 1.0, fmt: str = "{:.3f}") -> str:
    center = e.get("mean", e.get("estimate")) if e else None
    if e is None or center is None:
        return "—"
    m = center * scale
    s = fmt.format(m)
    if e.get("sd") is not None:
        s += " ± " + fmt.format(e["sd"] * scale)
    if e.get("low") is not None and e.get("high") is not None:
        s += f" [{fmt.format(e['low'] * scale)}, {fmt.format(e['high'] * scale)}]"
    return s


def _effect(e: dict, fmt: str = "{:.3f}") -> str:
    if e.get("estimate") is not None and e.get("low") is not None and e["low"] == e["high"]:
        return f"{_f(e['estimate'], fmt)} [n/a: zero-width interval]"
    s = f"{_f(e['estimate'], fmt)} [{_f(e['low'], fmt)}, {_f(e['high'], fmt)}]"
    if e.get("pvalue") is not None:
        s += f", p = {e['pvalue']:.2g}"
    return s


_NULL_LABEL = {"isotropic": "isotropic", "effective_dimension": "effective-dimension",
               "covariance_matched": "covariance-matched", "permutation": "permutation"}


def adjusted_p_floor(n: dict) -> float | None:
    """Smallest adjusted p-value a Monte Carlo null can give over the arm's pairs.

    `p_floor` is the smallest attainable unadjusted p (1/(draws + 1) when the entry has only
    `n_draws`); Holm and Bonferroni multiply it by the number of pairs, BH/BY leave it.
    None for a null with an exact p-value.
    """
    floor = n.get("p_floor")
    if floor is None and n.get("n_draws"):
        floor = 1.0 / (n["n_draws"] + 1)
    if floor is None:
        return None
    if n.get("p_adjust") in ("holm", "bonferroni"):
        floor *= max(int(n.get("n_pairs") or 1), 1)
    return min(float(floor), 1.0)


def p_floor_binds(n: dict, alpha: float) -> bool:
    """True when the p floor, not the data, sets the smallest adjusted p (more draws help)."""
    floor = adjusted_p_floor(n)
    low = n.get("min_adjusted_pvalue")
    if floor is None or low is None:
        return False
    return low <= floor * (1 + 1e-6) and (floor >= alpha or n["n_significant_adjusted"] == 0)


def null_significance(n: dict, alpha: float) -> str:
    """The 'significant pairs' cell: none for an approximate null; the p floor when it binds."""
    if n.get("approximate"):
        return "n/a (approximate null)"
    txt = f"{n['n_significant_adjusted']} of {n['n_pairs']}"
    if p_floor_binds(n, alpha):
        txt += f" (p floor {adjusted_p_floor(n):.2g} binds)"
    return txt


def _interval_method(e: dict | None) -> str | None:
    """The alignment interval's method and what it is conditional on, when not the plain t."""
    if not e or e.get("method") in (None, "t"):
        return None
    cond = e.get("conditional_on")
    return f"{e['method']}" + (f", conditional on {cond}" if cond else "")


def conclusion(results: dict) -> str:
    """One paragraph: what was tested, which nulls are exceeded and by how much, what blocking
    did (with intervals), and the caveats. Built from the headline layer."""
    se = results["settings"]
    if not se["layers"]:
        return "No layer was analysed."
    conf = int(round(100 * se["confidence"]))
    alpha = 1 - se["confidence"]
    layer = (results.get("headline_layer") or {}).get("layer") or se["layers"][0]
    h = results["headline"]["layers"][layer]
    arms = h["arms"]
    st = results["store"]
    n_runs = ", ".join(f"{a} {k}" for a, k in st["arms"].items())
    out = [f"Tested: whether the fine-tuning drift of layer {layer} points along the reversion "
           f"direction v_rev more than chance directions do ({n_runs} runs; steps "
           f"{st['steps'][0]}-{st['steps'][-1]}; {conf}% intervals)."]
    ref = arms.get("control") or next(iter(arms.values()))
    ref_name = "control" if "control" in arms else next(iter(arms))
    fa = ref["final_alignment"]
    if fa.get("mean") is not None:
        out.append(f"Final alignment ({ref_name}): {_ci(fa)}.")
    parts = []
    n_pairs = None
    for name, n in ref["null_p99"].items():
        label = _NULL_LABEL.get(name, name)
        n_pairs = n["n_pairs"]
        gap = (f" (p99 {n['p99']:.3f}; final alignment {fa['mean'] - n['p99']:+.3f} above it)"
               if fa.get("mean") is not None and n.get("p99") is not None else "")
        if n.get("approximate"):
            sig = ", approximate null: no significance claimed"
        else:
            sig = (f", {n['n_significant_adjusted']} of {n['n_pairs']} significant after "
                   f"{n['p_adjust']}")
            if p_floor_binds(n, alpha):
                sig += (f" (its p floor {adjusted_p_floor(n):.2g} binds: the count is limited "
                        "by the Monte Carlo draws)")
        parts.append(f"{label} {n['n_above']} above{gap}{sig}")
    if parts:
        out.append(f"Run-step pairs above each null's p99 ({ref_name}, {n_pairs} pairs): "
                   + "; ".join(parts) + ".")
    eff = h["effects"].get("blocked_vs_control") or {}
    bits = []
    if eff.get("final_alignment_difference"):
        e = eff["final_alignment_difference"]
        bits.append(f"final alignment by {e['estimate']:+.3f} [{e['low']:.3f}, {e['high']:.3f}]")
    if eff.get("behavior_risk_difference"):
        e = eff["behavior_risk_difference"]
        how = ("runs as clusters" if "cluster" in e["method"] else "probes independent")
        bits.append(f"the behavior rate by {100 * e['estimate']:+.1f} points "
                    f"[{100 * e['low']:.1f}, {100 * e['high']:.1f}] ({how})")
    if eff.get("task_noninferiority"):
        e = eff["task_noninferiority"]
        bits.append("the task metric "
                    + ("non-inferior" if e.get("noninferior") else "not shown non-inferior")
                    + f" (margin {_f(e.get('margin'), '{:.3g}')})")
    if bits:
        out.append("Blocking changed " + "; ".join(bits) + " (blocked minus control).")
    elif "blocked" in arms:
        out.append("Blocking effects were not computed (see Skipped).")
    caveats = ["runs are the independent units (probes within a run are correlated)",
               "the isotropic null in d = hidden is a low bar: read the matched nulls"]
    if results["paper_table"].get("calibration_note"):
        caveats.append("the simulator preset was tuned to the paper's means")
    mult = results.get("multiplicity")
    if mult:
        caveats.append(f"p-values are also adjusted across layers and tests ({mult['method']}, "
                       f"{mult['n_tests']} tests)")
    out.append("Caveats: " + "; ".join(caveats) + ".")
    return " ".join(out)


def _sections(results: dict, figs: list[dict]) -> list[_Section]:
    st = results["store"]
    se = results["settings"]
    out: list[_Section] = [_Section("Conclusion", [conclusion(results)])]
    overview = _Section("Store and settings")
    overview.tables.append(_Table(["field", "value"], [
        ["store", str(st.get("path"))],
        ["source", str(st.get("source"))],
        ["simulator preset", str(st.get("preset"))],
        ["sizes", ", ".join(f"{k}={v}" for k, v in st["sizes"].items())],
        ["arms (runs)", ", ".join(f"{k} ({v})" for k, v in st["arms"].items())],
        ["steps", f"{st['steps'][0]} … {st['steps'][-1]} ({len(st['steps'])} stored)"],
        ["confidence", f"{se['confidence']}"],
        ["seed", f"{se['seed']} (child seeds: "
                 + ", ".join(f"{k}={v}" for k, v in se["seeds"].items()) + ")"],
        ["p-value adjustment", se["p_adjust"]],
        ["revstats", results["revstats_version"]],
    ]))
    out.append(overview)

    pt = results["paper_table"]
    sec = _Section("Paper table")
    if pt["paper_preset"]:
        sec.paragraphs.append("The store came from the `paper-main-track` preset: the paper's "
                              "values (arXiv 2606.28525) are shown beside ours.")
        if pt.get("calibration_note"):
            sec.paragraphs.append(pt["calibration_note"])
        hdr = ["quantity", "revstats (mean ± sd across runs)", "paper"]
        rows = [[r["quantity"], r["revstats"] or "— (not in store)", r["paper"]]
                for r in pt["rows"]]
    else:
        sec.paragraphs.append("The store is not from the paper preset, so the paper's values "
                              "are not shown beside these.")
        hdr = ["quantity", "revstats (mean ± sd across runs)"]
        rows = [[r["quantity"], r["revstats"] or "— (not in store)"] for r in pt["rows"]]
    if pt["layer"] is not None:
        rule = f" (headline layer: {pt['layer_rule']})" if pt.get("layer_rule") else ""
        sec.paragraphs.append(f"Layer: {pt['layer']}{rule}.")
    sec.tables.append(_Table(hdr, rows))
    out.append(sec)

    for layer in se["layers"]:
        out += [_alignment_section(results, layer), _null_section(results, layer),
                _effects_section(results, layer, figs)]

    mult = results.get("multiplicity")
    if mult:
        hl = results.get("headline_layer") or {}
        out.append(_Section("Multiplicity and the headline layer", [
            f"Family: {mult['family']}; {mult['n_tests']} tests, {mult['method']}-adjusted "
            "('across layers' columns).",
            f"Headline layer: {hl.get('layer')} — {hl.get('rule')}."]))

    sk = _Section("Skipped")
    if results["skipped"]:
        sk.tables.append(_Table(["piece", "layer", "reason"],
                                [[s["piece"], str(s["layer"] or "all"), s["reason"]]
                                 for s in results["skipped"]]))
    else:
        sk.paragraphs.append("Nothing was skipped: the store had every input.")
    out.append(sk)
    return out


def _alignment_section(results: dict, layer: str) -> _Section:
    """Alignment trajectories and final-step rates of one layer."""
    h = results["headline"]["layers"][layer]
    se = results["settings"]
    conf = int(round(100 * se["confidence"]))
    sec = _Section(f"Layer {layer}")
    rows = []
    for arm, e in h["arms"].items():
        first = next((r for r in e["alignment"] if r["step"] > 0), None)
        s20 = next((r for r in e["alignment"] if r["step"] == 20), None)
        rows.append([arm, str(e["n_runs"]), _ci(first), _ci(s20), _ci(e["final_alignment"]),
                     _ci(e["final_alignment_debiased"]),
                     _ci(e["behavior_rate"], 100, "{:.1f}"), _ci(e["task"], fmt="{:.3g}")])
    beh_method = next((e["behavior_rate"]["method"] for e in h["arms"].values()
                       if e.get("behavior_rate")), None)
    align_method = _interval_method(next(iter(h["arms"].values()))["final_alignment"])
    sec.paragraphs.append(
        f"Alignment cos(drift, v_rev): mean ± sd across runs [{conf}% "
        + (f"interval: {align_method}" if align_method else "t interval of the mean")
        + "]; debiased = cross-fitted over probe halves."
        + (f" Behavior rate in %: mean ± sd across runs [{beh_method}]; the pooled "
           "Wilson interval, which treats probes as independent, is in results.json "
           "(pooled_ci)." if beh_method else ""))
    sec.tables.append(_Table(
        ["arm", "runs", "first update", "step 20", "final", "final (debiased)",
         "behavior %", "task"], rows))
    return sec


def _null_section(results: dict, layer: str) -> _Section:
    """Every null side by side for one layer, with what the columns mean."""
    h = results["headline"]["layers"][layer]
    se = results["settings"]
    alpha = 1 - se["confidence"]
    sec = _Section(f"Layer {layer}: nulls")
    nrows = []
    notes_null = []
    for arm, e in h["arms"].items():
        for name, n in e["null_p99"].items():
            nrows.append([arm, _NULL_LABEL.get(name, name), _f(n["p99"]),
                          f"{n['n_above']} of {n['n_pairs']}",
                          f"{n['n_above_first_step']} of {n['n_runs_first_step']}",
                          null_significance(n, alpha),
                          _f(n["max_adjusted_pvalue"], "{:.2g}"),
                          _f(n.get("pvalue_adjusted_layers"), "{:.2g}"), n["method"]])
            if n.get("approximate") and n.get("note"):
                notes_null.append(f"{_NULL_LABEL.get(name, name)}: {n['note']}")
    sec.paragraphs.append(
        f"Nulls: a run-step pair is above when its cosine exceeds the null's p99. "
        f"'significant' counts pairs whose p-value, {se['p_adjust']}-adjusted across the "
        f"arm's pairs, is below {alpha:.2g}. 'max {se['p_adjust']}-adjusted p' is the "
        f"largest of those adjusted p-values: below {alpha:.2g} means every pair of the arm "
        "exceeds the null on its own. 'across layers' is the arm-level test (smallest "
        f"adjusted p) adjusted again over layers x tests. A Monte Carlo null cannot give a "
        "p-value below its floor, 1/(draws + 1) before adjustment (times the number of "
        "pairs after Holm); where that floor binds, 'significant' says so: the count is "
        "limited by the number of draws, not by the data.")
    sec.paragraphs.extend(sorted(set(notes_null)))
    sec.tables.append(_Table(
        ["arm", "null", "p99", "run-step pairs above", "at first update", "significant",
         f"max {se['p_adjust']}-adjusted p", "across layers", "method"], nrows))
    return sec


def _effects_section(results: dict, layer: str, figs: list[dict]) -> _Section:
    """Effects, the ordering contrasts, the correlations and the figures of one layer."""
    h = results["headline"]["layers"][layer]
    d = results["details"]["layers"][layer]
    se = results["settings"]
    conf = int(round(100 * se["confidence"]))
    sec = _Section(f"Layer {layer}: effects, ordering, correlation")
    erows = []
    for comp, effs in h["effects"].items():
        for name, e in effs.items():
            n = e["n"]
            extra = ""
            if name == "task_noninferiority":
                extra = (f" (margin {_f(e['margin'], '{:.3g}')}; "
                         + ("non-inferior" if e["noninferior"] else "not shown")
                         + "; treatment − control, sign set so that larger is better)")
            fmt = "{:.3g}" if name == "task_noninferiority" else "{:.3f}"
            size = " vs ".join(map(str, n)) if isinstance(n, list) else str(n)
            if e.get("n_runs"):
                size = f"{' vs '.join(map(str, e['n_runs']))} runs ({size} probes)"
            erows.append([comp.replace("_", " "), name.replace("_", " "),
                          _effect(e, fmt) + extra,
                          _f(e.get("pvalue_adjusted_layers"), "{:.2g}"), e["method"], size])
    if erows:
        sec.paragraphs.append(
            "Effects are treatment minus control at the final step (ratios: treatment over "
            "control). Behavior effects lead with runs as clusters; rows marked 'probes "
            "independent' pool runs x probes and are too narrow when runs differ.")
        sec.tables.append(_Table(["comparison", "effect", f"estimate [{conf}% CI]",
                                  "p across layers", "method", "n"], erows))
    notes = []
    tr = d.get("trend")
    if tr:
        for key in ("final_alignment", "behavior_rate"):
            t = tr.get(key)
            if not t:
                continue
            steps = "; ".join(f"{p['contrast']} = {_effect(p, '{:.3g}')}"
                              for p in t.get("pairwise", []))
            notes.append(
                f"Ordering for {key.replace('_', ' ')}: "
                + (t.get("statement") or " < ".join(tr["order"]))
                + (f" (pairwise, {conf}% CI: {steps})." if steps else ".")
                + f" Secondary: {t['method']}, one-sided p = {_f(t['pvalue'], '{:.2g}')}"
                + (f" — {t['what_it_measures']}." if t.get("what_it_measures") else "."))
    sp = d.get("spearman")
    if sp:
        within = "; ".join(f"{arm} {_effect(w)} (n = {w['n']})"
                           for arm, w in (sp.get("within_arm") or {}).items() if w)
        notes.append(f"Spearman correlation of final alignment with final behavior rate "
                     f"over {sp['n']} runs, pooled across arms: {_effect(sp)} "
                     f"({sp['method']}, seed {sp['seed']})."
                     + (f" What it measures: {sp['what_it_measures']}."
                        if sp.get("what_it_measures") else "")
                     + (f" Within arms: {within}." if within else ""))
    ds_ = d.get("direction_stability") or {}
    bc = ds_.get("bootstrap_cosine")
    if bc:
        notes.append(f"Direction stability: bootstrap over probes, cos(v*, v) = "
                     f"{_effect(bc)} ({bc.get('method')}); split-half cosine "
                     f"{_f(ds_.get('split_half_cosine'))}.")
    sec.paragraphs.extend(notes)
    sec.figures = [f for f in figs if f["layer"] == layer]
    return sec


#: Characters that can start Markdown markup inside a line (links, images, emphasis, code,
#: strikethrough, table cells); each is backslash-escaped, which CommonMark renders literally.
_MD_ACTIVE = frozenset("\\`*_[]()!|~#")


def _md(s: str) -> str:
    """Markdown-safe text, as `html.escape` makes text HTML-safe: raw HTML is escaped (Markdown
    renderers pass it through) and every character that could start markup (a link such as
    ``L](javascript:alert(1))``, emphasis, code, a table cell) is backslash-escaped, so user
    strings (layer, run, arm ids, paths) render as the literal text they are."""
    text = html.escape(str(s), quote=False).replace("\r", " ").replace("\n", " ")
    return "".join("\\" + c if c in _MD_ACTIVE else c for c in text)


def render_markdown(results: dict, figs: list[dict]) -> str:
    lines = ["# revstats significance report", ""]
    for sec in _sections(results, figs):
        lines += [f"## {_md(sec.title)}", ""]
        for p in sec.paragraphs:
            lines += [_md(p), ""]
        for t in sec.tables:
            lines.append("| " + " | ".join(_md(h) for h in t.header) + " |")
            lines.append("|" + "---|" * len(t.header))
            lines += ["| " + " | ".join(_md(c) for c in r) + " |" for r in t.rows]
            lines.append("")
        for f in sec.figures:
            lines += [f"![{_md(f['kind'])} for layer {_md(f['layer'])}]"
                      f"(<{urllib.parse.quote(str(f['file']))}>)", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.3em 0.6em;text-align:left;vertical-align:top}
th{background:#f3f3f3} img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}
figure{margin:1em 0} figcaption{font-size:0.85em;color:#555}
"""


def render_html(results: dict, figs: list[dict]) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
             'img-src data:; style-src \'unsafe-inline\'">',
             "<title>revstats significance report</title>", f"<style>{_CSS}</style>",
             "</head><body>", "<h1>revstats significance report</h1>"]
    for sec in _sections(results, figs):
        parts.append(f"<h2>{e(sec.title)}</h2>")
        parts += [f"<p>{e(p)}</p>" for p in sec.paragraphs]
        for t in sec.tables:
            parts.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in t.header)
                         + "</tr></thead><tbody>")
            parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in t.rows]
            parts.append("</tbody></table>")
        for f in sec.figures:
            b64 = base64.b64encode(f["png"]).decode("ascii")
            alt = e(f"{f['kind']} for layer {f['layer']}", quote=True)
            parts.append(f'<figure><img src="data:image/png;base64,{b64}" alt="{alt}">'
                         f"<figcaption>{alt}</figcaption></figure>")
    prov = json.dumps(results["store"].get("provenance", {}), indent=1, ensure_ascii=False)
    parts.append(f"<h2>Provenance</h2><pre>{e(prov)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _remove_dead_staging(parent: Path, prefix: str) -> None:
    """Remove staging directories left by report writers that were killed (their pid, part of
    the name, no longer runs); a live writer's staging directory is left alone."""
    import shutil

    for d in parent.glob(f"{prefix}*"):
        pid = d.name[len(prefix):].split(".", 1)[0]
        if not (d.is_dir() and pid.isdigit()) or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:  # alive, owned by someone else
            continue


def write_report(results: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write report.md, report.html, results.json and PNG figures into `out_dir` atomically.

    Returns the paths written, keyed by kind ("md", "html", "json", and one per figure).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"`out_dir` {str(out_dir)!r} exists and is not a directory: "
                         "pass a directory path")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out_dir.name}.staging."
    _remove_dead_staging(out_dir.parent, prefix)
    staging = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}.", dir=out_dir.parent))
    try:
        figs = figures.render_all(results, staging)
        (staging / "results.json").write_text(results_to_json(results), encoding="utf-8")
        (staging / "report.md").write_text(render_markdown(results, figs), encoding="utf-8")
        (staging / "report.html").write_text(render_html(results, figs), encoding="utf-8")
        names = ["report.md", "report.html", "results.json"] + [f["file"] for f in figs]
        replace_dir(staging, out_dir)
    finally:
        if staging.exists():
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    paths = {"md": out_dir / "report.md", "html": out_dir / "report.html",
             "json": out_dir / "results.json"}
    for n in names[3:]:
        paths[n] = out_dir / n
    return paths
