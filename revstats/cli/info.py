"""`revstats info`: what a store holds, and (with --check) whether every chunk is intact."""

from __future__ import annotations

import json
import sys

import click


@click.command("info")
@click.argument("store")
@click.option("--check", is_flag=True, help="Read every chunk: verify checksums and values.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(store: str, check: bool, as_json: bool) -> None:
    """Show dims, sizes, runs and arms, steps, layers, provenance and problems of STORE.

    \b
    Example:
      revstats info runs.zarr
      revstats info runs.zarr --check     # verify every chunk (names any corrupt slab)
    Exit status is 1 when the store has problems or is incomplete (an interrupted writer:
    the message gives the command that resumes it).
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    from revstats.store import describe_store, verify_store

    summary = describe_store(store)
    problems = list(summary["problems"])
    if check and not problems:
        with Progress(transient=True, disable=as_json) as bar:
            task = bar.add_task("verifying chunks", total=None)
            problems += verify_store(
                store, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    summary["problems"] = problems
    gap = summary.get("incomplete")
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        sys.exit(1 if problems or gap else 0)
    console = Console()
    table = Table(title=f"revstats store {store}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    if "runs" in summary:
        arms = ", ".join(f"{a}: {n}" for a, n in summary["arms"].items())
        steps = summary["steps"]
        step_text = (
            ", ".join(map(str, steps)) if len(steps) <= 12
            else f"{len(steps)} steps, {steps[0]} … {steps[-1]}"
        )
        rows = [
            ("source", str(summary["attrs"].get("source"))),
            ("schema", str(summary["attrs"].get("revstats_schema"))),
            ("runs", f"{len(summary['runs'])} ({arms})"),
            ("steps", step_text),
            ("layers", ", ".join(summary["layers"])),
            ("examples", str(summary["n_examples"])),
            ("hidden", str(summary["hidden"])),
            ("dtype", summary["dtype"]),
            ("slabs complete", f"{summary['slabs_complete']} of {summary['slabs_total']}"
             + (" (the writer finished; the rest were never planned)" if not gap
                and summary["slabs_complete"] < summary["slabs_total"] else "")),
            ("integrity", "chunks checksummed and bound to their place (digest manifest)"
             if summary.get("place_binding") else
             "chunks checksummed, not bound to their place (schema 1: no digest manifest)"),
            ("witness", "written" if summary["witness_complete"] else "missing"),
        ]
        for k, v in rows:
            table.add_row(k, v)
        for name, var in summary["variables"].items():
            if name in ("acts", "witness", "behavior", "task"):
                dims = ", ".join(f"{d}={n}" for d, n in zip(var["dims"], var["shape"], strict=True))
                table.add_row(f"  {name}", f"({dims}) {var['dtype']}")
        prov = summary.get("provenance") or {}
        for k in sorted(prov)[:12]:
            table.add_row(f"  provenance.{k}", _clip(prov[k]))
    console.print(table)
    if gap and not problems:
        console.print(f"[bold yellow]incomplete:[/] {escape(gap['message'])}", highlight=False,
                      soft_wrap=True)  # the resume command must stay copyable
        console.print("analyze/report refuse it until it is finished (or pass --allow-incomplete "
                      "to analyse the complete slabs only)", markup=False)
        sys.exit(1)
    if problems:
        console.print(f"[bold red]{len(problems)} problem(s):[/]")
        for p in problems:
            console.print(f"  - {p}", markup=False)
        sys.exit(1)
    console.print("[green]no problems found[/]" + (" (every chunk verified)" if check else ""))


def _clip(value, width: int = 160) -> str:
    """A provenance value for the table: whole words only (a long value ends with "…" after
    the last whole word or JSON item that fits; `info --json` has the full text)."""
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) <= width:
        return text
    cut = text[:width]
    stop = max(cut.rfind(c) for c in " ,;/")
    return (cut[:stop + 1] if stop > width // 2 else cut).rstrip() + " …"
