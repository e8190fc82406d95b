"""`revstats calibrate`: the calibration dashboard (coverage and type-I error by simulation)."""

from __future__ import annotations

import os
import sys
import tempfile

import click

_GROUPS = ("intervals", "nulls", "monitor")


@click.command("calibrate")
@click.option("--quick", is_flag=True, help="Few data sets per row (a smoke run, ~1 minute).")
@click.option("--out", default="docs/calibration.md", show_default=True, type=click.Path(dir_okay=False),
              help="Markdown table to write (atomically).")
@click.option("--only", "only", multiple=True, type=click.Choice(_GROUPS),
              help="Run only these groups (repeatable).")
def calibrate(quick: bool, out: str, only: tuple[str, ...]) -> None:
    """Simulate coverage of the intervals and type-I error of the nulls and the monitor, test
    each against its target with a binomial test, and write a table.

    Exit status is 1 if a tested row fails.

    \b
    Example:
      revstats calibrate --quick --out /tmp/calibration.md
      revstats calibrate --only nulls
      revstats calibrate                    # full run, writes docs/calibration.md
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from revstats import _calibration as cal

    groups = only or _GROUPS
    rows = cal.studies(groups)
    present = {s.group for s in rows}
    missing = []
    for g in groups:
        if g not in present:
            missing.append({"intervals": "interval rows (revstats._coverage could not be imported)",
                            "monitor": "monitor rows (need `revstats.monitor`)"}.get(g, g))
    if not rows:
        raise click.UsageError("nothing to run: " + "; ".join(missing))
    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("calibrating", total=len(rows))
        for s in rows:
            bar.update(task, description=f"{s.group}: {s.name}")
            results.append(cal.run_study(s, quick=quick))
            r = results[-1]
            verdict = "—" if r.ok is None else ("ok" if r.ok else "FAIL")
            bar.console.print(f"{s.group:9s} {s.name:38s} {r.rate:.4f} (target {s.target:g}, "
                              f"{s.expect}, n={r.n}) {verdict}", markup=False, soft_wrap=True)
            bar.advance(task)
    command = "revstats calibrate" + (" --quick" if quick else "") + "".join(f" --only {g}" for g in only)
    text = cal.render_markdown(results, command=command, missing=missing)
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".calibration-", suffix=".partial")
    try:  # atomic: a reader never sees half a table
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    failed = [r for r in results if r.ok is False]
    click.echo(f"wrote {out}: {len(results)} rows, {len(failed)} failed")
    if failed:
        sys.exit(1)
