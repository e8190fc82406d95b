"""`revstats organism`: train the model organism (pretrain -> align -> benign fine-tune) into a store.

Thin command: parses options, calls :func:`revstats.sims.organism.run_organism` with a rich progress bar,
and turns domain errors into usage errors that say the fix.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from revstats.cli._options import progress_option
from revstats.errors import RevstatsError

# The --profile names and help, literal so that `revstats --help` / `organism --help` import no
# simulator code (tests/unit/test_imports.py checks both, and that PROFILE_NAMES matches
# revstats.sims.organism.registry.profile_names()); the registry loads the profile on use.
PROFILE_NAMES = ("tiny", "quick", "paper", "placebo", "sweep", "history", "history-tiny",
                 "unlearning-tiny", "unlearning", "unlearning-relabel", "unlearning-family",
                 "traits-tiny", "traits", "traits-shared-alphabet")
PROFILE_HELP = (
    "tiny: seconds (tests); quick: 2 seeds x 6 arms, 50 steps; paper: 8 seeds x 6 arms, 100 "
    "steps; placebo: 8 seeds, blocked vs random, lambda-matched and drift-matched placebos; "
    "sweep: 3 seeds x 16 blocking variants; history: 3 x 3 grid of pretraining x alignment "
    "steps, 8 seeds (a directory of cell stores + history.json); history-tiny: its test "
    "variant; unlearning*, traits*: the re-emergence and trait-transfer settings "
    "(docs/organism.md).")


@click.command("organism")
@click.option("--profile", default="quick", show_default=True,
              type=click.Choice(PROFILE_NAMES), help=PROFILE_HELP)
@click.option("--out", required=True, metavar="STORE",
              help="Store path (local dir or fsspec URL); for the history profiles a local "
                   "directory that receives one store per cell and history.json.")
@click.option("--seeds", default=None,
              help="Comma-separated seeds overriding the profile's, e.g. 0,1,2.")
@click.option("--workers", default=None, type=int,
              help="Worker processes (seeds run in parallel, one torch thread each; the store "
                   "is the same for any value). Default: one per available core, at most one "
                   "per seed.")
@click.option("--checkpoints", "checkpoint_dir", type=click.Path(file_okay=False),
              default=None, help="Also save the pretrained, aligned and fine-tuned networks here.")
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
@progress_option()
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False), default=None,
              help="Write per-seed phase metrics and wall times as JSON here.")
def organism_command(profile: str, out: str, seeds: str | None, workers: int | None,
                     checkpoint_dir: str | None, overwrite: bool, progress: bool,
                     summary_path: str | None) -> None:
    """Train a tiny GPT-2 on a synthetic language through pretraining, alignment (refusal of a
    trigger family) and benign fine-tuning, for every arm (control, blocked variants, push,
    placebo) and seed, capturing the residual stream of held-out trigger probes into a store
    with harmfulness per probe (`behavior`) and benign task accuracy (`task`).

    \b
    Example:
      revstats organism --profile quick --out organism.zarr
      revstats analyze organism.zarr --json results.json
      revstats organism --profile history --out history/   # then:
      python -m revstats.sims.organism.history history/ --figure phase.png
    """
    from revstats.sims.organism import registry
    from revstats.sims.organism.parallel import default_workers

    try:
        prof = registry.get_profile(profile)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--profile") from None
    cfg = prof.config
    if seeds is not None:
        try:
            cfg = prof.with_seeds(tuple(int(s) for s in seeds.split(",") if s.strip()))
        except ValueError:
            raise click.BadParameter(f"expected comma-separated integers such as 0,1,2; got "
                                     f"{seeds!r}", param_hint="--seeds") from None
    if workers is not None and workers < 1:
        raise click.BadParameter(f"must be a positive integer, got {workers}",
                                 param_hint="--workers")
    n_workers = workers if workers is not None else default_workers(prof.n_jobs(cfg))
    if Path(out).exists() and not overwrite and "://" not in out:
        raise click.UsageError(f"{out} exists: pass --overwrite to replace it or choose another --out")
    command = "revstats " + shlex.join(sys.argv[1:]) if sys.argv else "revstats organism"
    kwargs = {"overwrite": overwrite, "command": command, "checkpoint_dir": checkpoint_dir}
    if prof.accepts_workers:
        kwargs["workers"] = n_workers
    else:
        n_workers = 1
    try:
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            with Progress("[progress.description]{task.description}", BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn()) as bar:
                task = bar.add_task("organism", total=prof.total_units(cfg))

                def tick(description: str, n: int) -> None:
                    bar.update(task, advance=n, description=description)

                summary = prof.run(out, cfg, progress=tick, **kwargs)
        else:
            summary = prof.run(out, cfg, **kwargs)
    except (RevstatsError, ValueError, FileExistsError) as e:
        raise click.UsageError(str(e)) from e
    if summary_path:
        Path(summary_path).write_text(json.dumps(summary.phases, indent=2))
    t = summary.phases["timing_s"]["total"]
    click.echo(f"wrote {out}: {len(summary.runs)} runs in {t:.0f} s ({n_workers} worker"
               f"{'s' if n_workers > 1 else ''})")
