"""`revstats organism`: train the model organism (pretrain -> align -> benign fine-tune) into a store.

Thin command: parses options, calls :func:`sims.organism.run_organism` with a rich progress bar,
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

# The --profile names, literal so that `revstats --help` / `organism --help` import no simulator
# code (tests/unit/test_imports.py checks both, and that this list matches the registries
# revstats.sims.organism.PROFILES + revstats.sims.organism.settings.SETTING_PROFILES).
PROFILE_NAMES = ("tiny", "quick", "paper", "sweep",
                 "unlearning-tiny", "unlearning", "unlearning-relabel", "unlearning-family",
                 "traits-tiny", "traits", "traits-shared-alphabet")


@click.command("organism")
@click.option("--profile", default="quick", show_default=True,
              type=click.Choice(PROFILE_NAMES),
              help="tiny: seconds (tests); quick: ~1 min, 2 seeds x 6 arms, 50 steps; "
                   "paper: 8 seeds x 6 arms, 100 fine-tuning steps; sweep: 3 seeds x 16 "
                   "blocking variants/layer sets/strengths, 100 steps; unlearning*, traits*: "
                   "the re-emergence and trait-transfer settings (docs/organism.md).")
@click.option("--out", required=True, metavar="STORE", help="Store path (local dir or fsspec URL).")
@click.option("--seeds", default=None,
              help="Comma-separated seeds overriding the profile's, e.g. 0,1,2.")
@click.option("--checkpoints", "checkpoint_dir", type=click.Path(file_okay=False),
              default=None, help="Also save the pretrained, aligned and fine-tuned networks here.")
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
@progress_option()
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False), default=None,
              help="Write per-seed phase metrics and wall times as JSON here.")
def organism_command(profile: str, out: str, seeds: str | None, checkpoint_dir: str | None,
                     overwrite: bool, progress: bool, summary_path: str | None) -> None:
    """Train a tiny GPT-2 on a synthetic language through pretraining, alignment (refusal of a
    trigger family) and benign fine-tuning, for every arm (control, blocked variants, push,
    placebo) and seed, capturing the residual stream of held-out trigger probes into a store
    with harmfulness per probe (`behavior`) and benign task accuracy (`task`).

    \b
    Example:
      revstats organism --profile quick --out organism.zarr
      revstats analyze organism.zarr --json results.json
    """
    import dataclasses

    from revstats.sims.organism import PROFILES, run_organism, total_units
    from revstats.sims.organism.settings import SETTING_PROFILES

    cfg = PROFILES[profile] if profile in PROFILES else SETTING_PROFILES[profile].config
    if profile in SETTING_PROFILES:  # another setting: same command, its own run function
        setting = SETTING_PROFILES[profile]
        run_organism, total_units = setting.run, setting.total_units
    if seeds is not None:
        try:
            cfg = dataclasses.replace(cfg, seeds=tuple(int(s) for s in seeds.split(",") if s.strip()))
        except ValueError:
            raise click.BadParameter(f"expected comma-separated integers such as 0,1,2; got "
                                     f"{seeds!r}", param_hint="--seeds") from None
    if Path(out).exists() and not overwrite and "://" not in out:
        raise click.UsageError(f"{out} exists: pass --overwrite to replace it or choose another --out")
    command = "revstats " + shlex.join(sys.argv[1:]) if sys.argv else "revstats organism"
    try:
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            with Progress("[progress.description]{task.description}", BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn()) as bar:
                task = bar.add_task("organism", total=total_units(cfg))

                def tick(description: str, n: int) -> None:
                    bar.update(task, advance=n, description=description)

                summary = run_organism(out, cfg, overwrite=overwrite, progress=tick,
                                       command=command, checkpoint_dir=checkpoint_dir)
        else:
            summary = run_organism(out, cfg, overwrite=overwrite, command=command,
                                   checkpoint_dir=checkpoint_dir)
    except (RevstatsError, ValueError) as e:
        raise click.UsageError(str(e)) from e
    if summary_path:
        Path(summary_path).write_text(json.dumps(summary.phases, indent=2))
    t = summary.phases["timing_s"]["total"]
    click.echo(f"wrote {out}: {len(summary.runs)} runs in {t:.0f} s")
