"""`revstats calibrate`: the calibration dashboard (coverage and type-I error by simulation)."""

from __future__ import annotations

import sys

import click

from revstats.cli._options import progress_option

_GROUPS = ("intervals", "nulls", "monitor")


_CONTRAST = {
    "inflated": "ok: a known failure shown for contrast, its excess is significant as expected",
    "undercover": "ok: a known under-coverage shown for contrast, its shortfall is significant as expected",
}


@click.command("calibrate")
@click.option("--quick", is_flag=True, help="Few data sets per row (a smoke run, ~1 minute).")
@click.option("--out", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the markdown table to this file (atomically). Default: print it only.")
@click.option("--only", "only", multiple=True, type=click.Choice(_GROUPS),
              help="Run only these groups (repeatable).")
@progress_option()
def calibrate(quick: bool, out: str | None, only: tuple[str, ...], progress: bool) -> None:
    """Simulate coverage of the intervals and type-I error of the nulls and the monitor, test
    each against its target with a binomial test, and print the markdown table (stdout).

    Exit status is 1 if a tested row fails. Rows marked *inflated* / *undercover* are known
    failures shown for contrast (an isotropic null misapplied, Wald at small n): they are
    "ok" when the failure is as significant as expected. Nothing is written unless `--out`
    names a file (the table in docs/calibration.md is regenerated with
    `--out docs/calibration.md`).

    \b
    Example:
      revstats calibrate --quick
      revstats calibrate --only nulls --out /tmp/calibration.md
      revstats calibrate --out docs/calibration.md    # full run, the committed table
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from revstats import calibration as cal

    groups = only or _GROUPS
    rows = cal.studies(groups)
    present = {s.group for s in rows}
    missing = []
    for g in groups:
        if g not in present:
            missing.append({"intervals": "interval rows (revstats.calibration._coverage could not be imported)",
                            "monitor": "monitor rows (need `revstats.monitor`)"}.get(g, g))
    if not rows:
        raise click.UsageError("nothing to run: " + "; ".join(missing))
    results = []
    show = progress  # the bar and one line per row, on stderr
    err = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=not show) as bar:
        task = bar.add_task("calibrating", total=len(rows))
        for s in rows:
            bar.update(task, description=f"{s.group}: {s.name}")
            results.append(cal.run_study(s, quick=quick))
            r = results[-1]
            verdict = "—" if r.ok is None else (_CONTRAST.get(s.expect, "ok") if r.ok else "FAIL")
            if show:
                bar.console.print(f"{s.group:9s} {s.name:38s} {r.rate:.4f} (target {s.target:g}, "
                                  f"{s.expect}, n={r.n}) {verdict}", markup=False, soft_wrap=True)
            bar.advance(task)
    command = "revstats calibrate" + (" --quick" if quick else "") + "".join(f" --only {g}" for g in only)
    text = cal.render_markdown(results, command=command, missing=missing)
    failed = [r for r in results if r.ok is False]
    if out is None:
        click.echo(text, nl=False)
    else:
        from revstats.analysis.io import atomic_write_text

        atomic_write_text(out, text)
        click.echo(f"wrote {out}: {len(results)} rows, {len(failed)} failed", err=True)
    if failed:
        sys.exit(1)
