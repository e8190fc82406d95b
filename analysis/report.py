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


def _effect(e: dict) -> str:
    s = f"{_f(e['estimate'])} [{_f(e['low'])}, {_f(e['high'])}]"
    if e.get("pvalue") is not None:
        s += f", p = {e['pvalue']:.2g}"
    return s


def _sections(results: dict, figs: list[dict]) -> list[_Section]:
    st = results["store"]
    se = results["settings"]
    conf = int(round(100 * se["confidence"]))
    out: list[_Section] = []
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
        hdr = ["quantity", "revstats (mean ± sd across runs)", "paper"]
        rows = [[r["quantity"], r["revstats"] or "— (not in store)", r["paper"]]
                for r in pt["rows"]]
    else:
        sec.paragraphs.append("The store is not from the paper preset, so the paper's values "
                              "are not shown beside these.")
        hdr = ["quantity", "revstats (mean ± sd across runs)"]
        rows = [[r["quantity"], r["revstats"] or "— (not in store)"] for r in pt["rows"]]
    if pt["layer"] is not None:
        sec.paragraphs.append(f"Layer: {pt['layer']}.")
    sec.tables.append(_Table(hdr, rows))
    out.append(sec)

    for layer in se["layers"]:
        h = results["headline"]["layers"][layer]
        d = results["details"]["layers"][layer]
        sec = _Section(f"Layer {layer}")
        rows = []
        for arm, e in h["arms"].items():
            first = next((r for r in e["alignment"] if r["step"] > 0), None)
            s20 = next((r for r in e["alignment"] if r["step"] == 20), None)
            rows.append([arm, str(e["n_runs"]), _ci(first), _ci(s20), _ci(e["final_alignment"]),
                         _ci(e["final_alignment_debiased"]),
                         _ci(e["behavior_rate"], 100, "{:.1f}"), _ci(e["task"], fmt="{:.3g}")])
        sec.paragraphs.append(
            f"Alignment cos(drift, v_rev): mean ± sd across runs [{conf}% t interval of the "
            "mean]; debiased = cross-fitted over probe halves. Behaviour rate in %: mean ± sd "
            "across runs [Wilson interval, pooled probes].")
        sec.tables.append(_Table(
            ["arm", "runs", "first update", "step 20", "final", "final (debiased)",
             "behaviour %", "task"], rows))
        nrows = []
        for arm, e in h["arms"].items():
            for name, n in e["null_p99"].items():
                nrows.append([arm, name.replace("_", " "), _f(n["p99"]),
                              f"{n['n_above']} of {n['n_pairs']}",
                              f"{n['n_above_first_step']} of {n['n_runs_first_step']}",
                              _f(n["max_adjusted_pvalue"], "{:.2g}"), n["method"]])
        sec.tables.append(_Table(
            ["arm", "null", "p99", "run-step pairs above", "at first update",
             f"max {se['p_adjust']}-adjusted p", "method"], nrows))
        erows = []
        for comp, effs in h["effects"].items():
            for name, e in effs.items():
                n = e["n"]
                extra = ""
                if name == "task_noninferiority":
                    extra = (f" (margin {_f(e['margin'])}; "
                             + ("non-inferior" if e["noninferior"] else "not shown") + ")")
                erows.append([comp.replace("_", " "), name.replace("_", " "),
                              _effect(e) + extra, e["method"],
                              " vs ".join(map(str, n)) if isinstance(n, list) else str(n)])
        if erows:
            sec.tables.append(_Table(["comparison", "effect", f"estimate [{conf}% CI]",
                                      "method", "n"], erows))
        notes = []
        tr = d.get("trend")
        if tr:
            for key in ("final_alignment", "behavior_rate"):
                if tr.get(key):
                    notes.append(f"Ordering {' < '.join(tr['order'])} for {key.replace('_', ' ')}:"
                                 f" {tr[key]['method']}, one-sided p = {_f(tr[key]['pvalue'], '{:.2g}')}.")
        sp = d.get("spearman")
        if sp:
            notes.append(f"Spearman correlation of final alignment with final behaviour rate "
                         f"over {sp['n']} runs: {_effect(sp)} ({sp['method']}, seed {sp['seed']}).")
        ds_ = d.get("direction_stability") or {}
        bc = ds_.get("bootstrap_cosine")
        if bc:
            notes.append(f"Direction stability: bootstrap over probes, cos(v*, v) = "
                         f"{_effect(bc)} ({bc.get('method')}); split-half cosine "
                         f"{_f(ds_.get('split_half_cosine'))}.")
        sec.paragraphs.extend(notes)
        sec.figures = [f for f in figs if f["layer"] == layer]
        out.append(sec)

    sk = _Section("Skipped")
    if results["skipped"]:
        sk.tables.append(_Table(["piece", "layer", "reason"],
                                [[s["piece"], str(s["layer"] or "all"), s["reason"]]
                                 for s in results["skipped"]]))
    else:
        sk.paragraphs.append("Nothing was skipped: the store had every input.")
    out.append(sk)
    return out


def _md(s: str) -> str:
    """Markdown-safe text: HTML-escaped (Markdown renderers pass raw HTML), pipes escaped."""
    return html.escape(str(s), quote=False).replace("|", "\\|").replace("\n", " ")


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
            lines += [f"![{_md(f['kind'])} for layer {_md(f['layer'])}]({f['file']})", ""]
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
