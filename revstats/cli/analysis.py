"""`revstats analyze`, `revstats report` and `revstats demo` (the composition root's commands).

Thin: open the store lazily, run `analysis.pipeline.analyze` (one dask compute), write outputs
atomically. Domain errors become click usage errors that say the fix. `analysis`, `sims`,
`rich` and `matplotlib` are imported inside the commands, never at `import revstats`.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from revstats.cli._options import layers_option

_SCHEDULER_HELP = ("Where dask computes: threads (default), processes, synchronous, local:N "
                   "(a dask.distributed LocalCluster with N workers) or a tcp:// address of a "
                   "running dask.distributed scheduler.")


def _common_options(f):
    f = click.option("--scheduler", default="threads", show_default=True, metavar="SPEC",
                     help=_SCHEDULER_HELP)(f)
    f = click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Seed of every resampling and Monte Carlo null (child seeds recorded).")(f)
    f = click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                     default=0.95, show_default=True, help="Confidence level of every interval.")(f)
    f = click.option("--n-resamples", type=click.IntRange(min=100), default=2000,
                     show_default=True, help="Bootstrap resamples and Monte Carlo null draws.")(f)
    f = click.option("--ni-margin", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Non-inferiority margin for the task cost, in task-metric units "
                          "(default: 20% of the control arm's task change over fine-tuning).")(f)
    f = click.option("--headline-layer", default=None, metavar="NAME",
                     help="Layer the report and paper table lead with (default: the last "
                          "analysed layer that is not the embedding output hidden_states.0).")(f)
    f = layers_option("Layers to analyse, comma-separated (repeatable); all layers by default.")(f)
    f = click.option("--allow-incomplete", is_flag=True,
                     help="Analyse an interrupted store's complete slabs only (says which are "
                          "missing) instead of refusing it.")(f)
    return f


def _console(err: bool = False):
    from rich.console import Console

    con = Console(stderr=err, highlight=False)
    if not con.is_terminal:  # pipes, files and CliRunner: wide enough for the headline table
        con = Console(stderr=err, highlight=False, width=max(con.width, 120))
    return con


def _open(store: str, allow_incomplete: bool = False):
    from revstats.errors import CorruptStoreError, SchemaError
    from revstats.store import open_store

    is_url = "://" in store
    if not is_url and not Path(store).exists():
        raise click.UsageError(
            f"no store at {store!r}: check the path, or make one with "
            f"`revstats simulate --preset paper-main-track --out {store}` (or `revstats demo`)")
    try:
        ds = open_store(store)
    except CorruptStoreError as err:
        raise click.UsageError(f"{store!r} is damaged: {err}") from None
    except SchemaError as err:
        raise click.UsageError(f"{store!r} is not a valid revstats store: {err}") from None
    except (FileNotFoundError, KeyError, ValueError, OSError) as err:
        raise click.UsageError(
            f"cannot open {store!r} as a revstats store ({type(err).__name__}: {err}); "
            "point STORE at the zarr directory written by `revstats simulate`, `capture` or "
            "`ingest`") from None
    return _complete_part(ds, store, allow_incomplete)


def _complete_part(ds: Any, store: str, allow_incomplete: bool):
    """Refuse an incomplete store (an interrupted writer), or keep its complete part."""
    import json

    import numpy as np

    gap = ds.attrs.get("revstats_incomplete")
    if not gap:
        return ds
    gap = json.loads(gap)
    if not allow_incomplete:
        raise click.UsageError(
            f"{store!r}: {gap['message']}. Finish it first, or pass --allow-incomplete to analyse "
            "its complete slabs only")
    complete = np.asarray(ds["complete"].values, dtype=bool)
    runs = complete.all(axis=1)
    if runs.any():
        dropped = [str(r) for r in ds["run"].values[~runs]]
        ds = ds.isel(run=np.nonzero(runs)[0])
        what = f"run(s) {', '.join(dropped[:8])}{' …' if len(dropped) > 8 else ''} left out"
    else:
        steps = complete.all(axis=0)
        if not steps.any():
            raise click.UsageError(f"{store!r}: no run has all of its slabs and no step is complete "
                                   f"in every run: nothing to analyse. {gap['resume']}")
        dropped = [str(int(x)) for x in ds["step"].values[~steps]]
        ds = ds.isel(step=np.nonzero(steps)[0])
        what = f"step(s) {', '.join(dropped[:8])}{' …' if len(dropped) > 8 else ''} left out"
    _console(err=True).print(
        f"[yellow]note:[/] --allow-incomplete: {gap['n_missing']} slab(s) missing; analysing "
        f"the complete part only ({what}). {gap['resume']}", highlight=False)
    return ds


def _settings(seed: int, confidence: float, n_resamples: int, ni_margin: float | None = None,
              headline_layer: str | None = None):
    from revstats.analysis.pipeline import AnalysisSettings

    return AnalysisSettings(confidence=confidence, seed=seed, n_resamples=n_resamples,
                            n_null_draws=n_resamples, ni_margin=ni_margin,
                            headline_layer=headline_layer)


def _run_analysis(ds: Any, store: str, layers: tuple[str, ...], settings: Any,
                  scheduler: str) -> dict:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from revstats.analysis.pipeline import MissingDataError, analyze
    from revstats.errors import CorruptStoreError, SchemaError
    from revstats.scheduler import parse_scheduler, use_scheduler

    with contextlib.ExitStack() as stack:
        try:
            parse_scheduler(scheduler)
            stack.enter_context(use_scheduler(scheduler))
        except (ValueError, TypeError) as err:
            raise click.BadParameter(str(err), param_hint="--scheduler") from err
        prog = stack.enter_context(Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
            console=_console(err=True), transient=True))
        task = prog.add_task("analysing", total=None)
        try:
            return analyze(ds, layers=list(layers) or None, settings=settings,
                           store_path=store,
                           progress=lambda msg: prog.update(task, description=msg))
        except MissingDataError as err:
            raise click.UsageError(f"{store!r}: {err}") from err
        except (CorruptStoreError, SchemaError) as err:  # found while reading the chunks
            raise click.UsageError(f"{store!r} is damaged: {err}") from None
        except ValueError as err:
            if "`headline_layer`" in str(err):
                raise click.BadParameter(str(err), param_hint="--headline-layer") from err
            if "`layers`" in str(err):
                raise click.BadParameter(str(err), param_hint="--layer") from err
            raise


def _warn_skipped(results: dict) -> None:
    con = _console(err=True)
    seen = set()
    for s in results["skipped"]:
        if s["piece"] in ("behavior", "task") and s["piece"] not in seen:
            seen.add(s["piece"])
            what = ("behavior rates, risk difference/ratio, the Spearman correlation and the "
                    "behavior trend were skipped" if s["piece"] == "behavior" else
                    "task cost and the non-inferiority test were skipped")
            fix = ("write per-probe 0/1 outcomes with StoreWriter.write_slab(..., behavior=...)"
                   if s["piece"] == "behavior" else
                   "write a task metric with StoreWriter.write_slab(..., task=...)")
            con.print(f"[yellow]note:[/] {s['reason']}: {what}; to include them, {fix}.")
        elif s["piece"].startswith(("effects:", "trend")):
            # one note per piece and reason, whatever the number of layers
            key = (s["piece"], s["reason"])
            if key in seen:
                continue
            seen.add(key)
            what = s["piece"].replace("effects:", "").replace("_vs_", " vs ").replace(":", ", ")
            con.print(f"[yellow]note:[/] {what} skipped: {s['reason']}.")


_EFFECT_SHORT = {
    "final_alignment_difference": "alignment diff.", "final_alignment_hedges_g": "alignment g",
    "behavior_risk_difference": "behav. RD", "behavior_risk_difference_pooled": "behav. RD pooled",
    "behavior_risk_ratio": "behav. RR", "behavior_risk_ratio_pooled": "behav. RR pooled",
    "behavior_gee_odds_ratio": "behav. OR (GEE)", "task_noninferiority": "task non-inf.",
}
_NULL_SHORT = (("isotropic", "isotropic"), ("covariance_matched", "cov-matched"),
               ("permutation", "permutation"), ("effective_dimension", "eff-dim"))


def _null_cell(n: dict | None, alpha: float, floors: list[str]) -> str:
    """'above/pairs (significant)': no significance count for an approximate null; a binding
    p floor marks the cell with * and is listed in `floors` (printed under the table)."""
    from revstats.analysis.report import adjusted_p_floor, p_floor_binds

    if not n:
        return "—"
    txt = f"{n['n_above']}/{n['n_pairs']}"
    if n.get("approximate"):
        return txt + " approx"
    txt += f" ({n['n_significant_adjusted']})"
    if p_floor_binds(n, alpha):
        floors.append(f"{adjusted_p_floor(n):.2g}")
        txt += "*"
    return txt


def _headline_tables(results: dict):
    """The terminal tables (each fits 80 columns): alignment and rates; the nulls side by
    side; blocked vs control."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    def pm(e, scale=1.0, fmt="{:.3f}"):
        if not e or e.get("mean") is None:
            return "—"
        s = fmt.format(e["mean"] * scale)
        if e.get("sd") is not None:
            s += "±" + fmt.format(e["sd"] * scale)
        return s

    def table(title: str) -> Table:
        return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                     padding=(0, 1))

    alpha = 1 - results["settings"]["confidence"]
    adjust = results["settings"]["p_adjust"]
    tables = []
    for layer in results["settings"]["layers"]:
        h = results["headline"]["layers"][layer]
        t = table(f"layer {escape(layer)}: alignment cos(drift, v_rev), mean±sd over runs")
        for col in ("arm", "runs", "first update", "step 20", "final"):
            t.add_column(col, overflow="fold")
        for arm, e in h["arms"].items():
            first = next((r for r in e["alignment"] if r["step"] > 0), None)
            s20 = next((r for r in e["alignment"] if r["step"] == 20), None)
            t.add_row(escape(arm), str(e["n_runs"]), pm(first), pm(s20), pm(e["final_alignment"]))
        tables.append(t)
        if any(e.get("behavior_rate") or e.get("task") for e in h["arms"].values()):
            conf = int(round(100 * results["settings"]["confidence"]))
            tr = table(f"final step: behavior % (mean±sd [{conf}% CI, runs as clusters]) "
                       "and task (mean±sd)")
            for col in ("arm", "behavior %", "task"):
                tr.add_column(col, overflow="fold")
            for arm, e in h["arms"].items():
                b = e.get("behavior_rate")
                ci = (f" [{100 * b['low']:.1f}, {100 * b['high']:.1f}]"
                      if b and b.get("low") is not None else "")
                tr.add_row(escape(arm), pm(b, 100, "{:.1f}") + ci, pm(e.get("task"), fmt="{:.2g}"))
            tables.append(tr)
        tn = table(f"layer {escape(layer)}: run-step pairs above each null's p99 "
                   f"(significant, {adjust})")
        present = [(k, lab) for k, lab in _NULL_SHORT
                   if any(k in e["null_p99"] for e in h["arms"].values())]
        tn.add_column("arm")
        for _, lab in present:
            tn.add_column(lab, overflow="fold")
        floors: list[str] = []
        approx = False
        for arm, e in h["arms"].items():
            tn.add_row(escape(arm), *[_null_cell(e["null_p99"].get(k), alpha, floors)
                                      for k, _ in present])
            approx |= any(n.get("approximate") for n in e["null_p99"].values())
        notes = []
        if floors:
            notes.append(f"* p floor {'/'.join(sorted(set(floors)))} binds: the smallest "
                         f"attainable {adjust}-adjusted p (Monte Carlo draws), so the "
                         "significant count is limited by the draws, not the data")
        if approx:
            notes.append("approx: approximate null, no significance count")
        if notes:
            tn.caption = "; ".join(notes)
            tn.caption_justify = "left"
        tables.append(tn)
        eff = h["effects"].get("blocked_vs_control")
        if eff:
            conf = int(round(100 * results["settings"]["confidence"]))
            te = table(f"blocked vs control, layer {escape(layer)}")
            te.add_column("effect", no_wrap=True)
            te.add_column(f"estimate [{conf}% CI]", no_wrap=True)
            te.add_column("method", overflow="fold")
            for name, e in eff.items():
                fmt = "{:.3g}" if name == "task_noninferiority" else "{:.3f}"
                est = "—" if e["estimate"] is None else fmt.format(e["estimate"])
                iv = ("" if e["low"] is None else
                      f" [{fmt.format(e['low'])}, {fmt.format(e['high'])}]")
                method = e["method"].replace("(probes independent: pooled runs x probes)",
                                             "(probes independent)")
                if name == "task_noninferiority":
                    method += "; treatment - control, larger is better"
                te.add_row(_EFFECT_SHORT.get(name, name.replace("_", " ")), est + iv, method)
            tables.append(te)
    return tables


@click.command("analyze")
@click.argument("store")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True),
              help="Write results.json here (atomically).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the headline as a tidy CSV table here (revstats.analysis.frames).")
@_common_options
def analyze_command(store: str, json_path: str | None, csv_path: str | None,
                    layers: tuple[str, ...], headline_layer: str | None, ni_margin: float | None,
                    n_resamples: int, confidence: float, seed: int, scheduler: str,
                    allow_incomplete: bool) -> None:
    """Analyse STORE: alignment, nulls, ablation effects; print the headline table.

    \b
    Example:
      revstats analyze runs.zarr --json results.json
      revstats analyze runs.zarr --layers hidden_states.12 --scheduler local:2
    """
    from rich.markup import escape

    from revstats.analysis.io import write_results

    ds = _open(store, allow_incomplete)
    results = _run_analysis(ds, store, layers, _settings(seed, confidence, n_resamples, ni_margin,
                                                           headline_layer), scheduler)
    con = _console()
    for t in _headline_tables(results):
        con.print(t)
    _warn_skipped(results)
    if json_path:
        write_results(results, json_path)
        con.print(f"results written to {escape(json_path)}")
    if csv_path:
        from revstats.analysis.frames import to_csv

        to_csv(results, csv_path)
        con.print(f"headline table written to {escape(csv_path)}")


@click.command("report")
@click.argument("store")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for report.md, report.html, results.json and the PNG figures.")
@_common_options
def report_command(store: str, out_dir: str, layers: tuple[str, ...],
                   headline_layer: str | None, ni_margin: float | None, n_resamples: int,
                   confidence: float, seed: int, scheduler: str, allow_incomplete: bool) -> None:
    """Write the significance report for STORE into --out DIR.

    \b
    Example:
      revstats report runs.zarr --out report/
      revstats report s3://bucket/runs.zarr --out report/ --scheduler tcp://10.0.0.5:8786
    """
    from rich.markup import escape

    from revstats.analysis.report import write_report

    ds = _open(store, allow_incomplete)
    results = _run_analysis(ds, store, layers, _settings(seed, confidence, n_resamples, ni_margin,
                                                           headline_layer), scheduler)
    _warn_skipped(results)
    paths = write_report(results, out_dir)
    _console().print(f"report written to {escape(str(paths['html']))}")


def _simulate(out_store: Path, runs: int | None, seed: int, steps: int | None,
              hidden: int | None, console) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from revstats import sims

    cfg = sims.config_for("paper-main-track", runs=runs, steps=steps, hidden=hidden)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as prog:
        sim = prog.add_task("simulating paper-main-track (steps)", total=cfg.steps)
        # the total is known before writing starts: never shown as "0/None"
        write = prog.add_task("writing the store (runs)", total=cfg.runs * len(cfg.arms))
        sims.simulate_to_store(
            "paper-main-track", str(out_store), runs=runs, steps=steps, hidden=hidden, seed=seed,
            progress=lambda k: prog.advance(sim, k),
            write_progress=lambda done, total: prog.update(write, completed=done, total=total),
        )


#: What `revstats demo` writes into --out (refused without --overwrite when present).
_DEMO_OUTPUTS = ("store.zarr", "report.md", "report.html", "results.json")


@click.command("demo")
@click.option("--out", "out_dir", default="revstats-demo", show_default=True,
              type=click.Path(file_okay=False),
              help="Directory for the simulated store (store.zarr) and the report.")
@click.option("--runs", type=click.IntRange(min=1), default=None,
              help="Runs per arm (default: the preset's, 24).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Fine-tuning steps T (default: the preset's, 100).")
@click.option("--hidden", type=click.IntRange(min=2), default=None,
              help="Hidden size of the simulated activations (default: the preset's).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Experiment seed (simulation and analysis).")
@click.option("--n-resamples", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Bootstrap resamples and Monte Carlo null draws.")
@click.option("--scheduler", default="threads", show_default=True, metavar="SPEC",
              help=_SCHEDULER_HELP)
@click.option("--overwrite", is_flag=True,
              help="Replace the store and report a previous demo left in --out.")
def demo_command(out_dir: str, runs: int | None, steps: int | None, hidden: int | None,
                 seed: int, n_resamples: int, scheduler: str, overwrite: bool) -> None:
    """Simulate the paper preset, analyse it and write the report (the main job).

    \b
    Example:
      revstats demo --out revstats-demo
      revstats demo --out /tmp/demo --runs 8 --seed 1
    """
    from rich.markup import escape

    from revstats.analysis.report import write_report

    con = _console()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise click.BadParameter(f"{out_dir!r} exists and is not a directory; pass a new path",
                                 param_hint="--out")
    from revstats.errors import RevstatsError
    from revstats.store import check_writable, replace_store

    store = out / "store.zarr"
    # check every output before any work: nothing of a previous demo is replaced silently
    existing = [n for n in _DEMO_OUTPUTS if (out / n).exists()] if out.is_dir() else []
    if existing and not overwrite:
        raise click.UsageError(
            f"{out_dir!r} already holds {', '.join(existing)} (a previous demo?): pass "
            "--overwrite to replace them, or a new --out directory")
    try:
        check_writable(store, overwrite=True)  # refuses a store another writer holds
    except RevstatsError as err:
        raise click.UsageError(str(err)) from None
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # simulate into a fresh temporary store, then move it into place whole
    tmp = Path(tempfile.mkdtemp(prefix=".store.", dir=out))
    try:
        _simulate(tmp / "store.zarr", runs, seed, steps, hidden, _console(err=True))
        try:
            replace_store(tmp / "store.zarr", store)  # under the old store's writer lock
        except RevstatsError as err:
            raise click.UsageError(str(err)) from None
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    t_sim = time.perf_counter() - t0
    ds = _open(str(store))
    results = _run_analysis(ds, str(store), (), _settings(seed, 0.95, n_resamples), scheduler)
    t_an = time.perf_counter() - t0 - t_sim
    paths = write_report(results, out)
    for t in _headline_tables(results):
        con.print(t)
    _warn_skipped(results)
    with contextlib.suppress(Exception):
        con.print(f"simulated in {t_sim:.1f} s, analysed in {t_an:.1f} s, total "
                  f"{time.perf_counter() - t0:.1f} s")
    con.print(f"store:   {escape(str(store))}")
    con.print(f"report:  {escape(str(paths['html']))}")
    con.print(f"results: {escape(str(paths['json']))}")
