"""`revstats simulate`: run a named simulator preset into a store (source="simulator")."""

from __future__ import annotations

import ast
import shlex
import sys
from typing import Any

import click


def _parse_set(items: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE (e.g. --set lr=0.5)", param_hint="--set")
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()  # bare strings: --set geometry=sphere
        out[key.strip()] = value
    return out


def _parse_steps(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(s) for s in text.replace(" ", "").split(",") if s)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma list of ints (e.g. 0,1,20,100)",
                                 param_hint="--save-steps") from None


@click.command("simulate")
@click.option("--preset", default="paper-main-track", show_default=True, help="Preset name (see --list).")
@click.option("--list", "list_presets", is_flag=True, help="List presets, one line each, and exit.")
@click.option("--runs", type=click.IntRange(min=1), help="Runs per arm (default: the preset's).")
@click.option("--steps", type=click.IntRange(min=1), help="Fine-tuning steps T.")
@click.option("--hidden", type=click.IntRange(min=2), help="Hidden size of the stored activations.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Experiment seed.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config field (repeatable).")
@click.option("--save-steps", help="Comma list of steps to store (0, 1, 20 and T are always kept).")
@click.option("--out", metavar="STORE", help="Output store path (local or fsspec URL).")
@click.option("--overwrite/--no-overwrite", default=False, show_default=True, help="Replace an existing store.")
def simulate(preset, list_presets, runs, steps, hidden, seed, sets, save_steps, out, overwrite):
    """Simulate fine-tuning reversion with the toy geometric model and write a store.

    \b
    Example:
      revstats simulate --preset paper-main-track --out sim.zarr
      revstats simulate --preset light-pretraining --runs 8 --set lr=0.5 --out light.zarr
      revstats simulate --list
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from revstats.sims.presets import PRESETS

    if list_presets:
        width = max(map(len, PRESETS))
        for name, p in PRESETS.items():
            click.echo(f"{name:<{width}}  {p.summary}")
        return
    if out is None:
        raise click.UsageError("missing `--out STORE`: where to write the simulated store")
    overrides = _parse_set(sets)
    parsed_steps = _parse_steps(save_steps)
    if parsed_steps is not None:
        overrides["save_steps"] = parsed_steps
    from revstats.errors import RevstatsError
    from revstats.sims.simulate import config_for, simulate_to_store

    try:
        cfg = config_for(preset, runs=runs, steps=steps, hidden=hidden, overrides=overrides)
    except (ValueError, TypeError) as err:
        raise click.UsageError(str(err)) from None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=False) as bar:
        sim_task = bar.add_task(f"simulating {preset}", total=cfg.steps)
        write_task = bar.add_task("writing store", total=cfg.runs * len(cfg.arms))
        try:
            simulate_to_store(
                preset, out, runs=runs, steps=steps, hidden=hidden, seed=seed, overrides=overrides,
                progress=lambda k: bar.advance(sim_task, k),
                write_progress=lambda done, total: bar.update(write_task, completed=done, total=total),
                overwrite=overwrite,
                command=shlex.join(["revstats", *sys.argv[1:]]) if sys.argv[1:2] == ["simulate"]
                else None,
            )
        except (FileExistsError, RevstatsError, ValueError) as err:
            raise click.UsageError(str(err)) from None
    click.echo(f"wrote {out} ({cfg.runs} runs x {len(cfg.arms)} arms, T={cfg.steps}, hidden={cfg.hidden}, seed={seed})")
