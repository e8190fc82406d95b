"""`revstats capture` and `revstats ingest`: real-model activations and logged arrays into a store.

Thin commands: they parse options, call :func:`revstats.capture.pipeline.capture_experiment` or
:func:`revstats.store.ingest.ingest`, and turn domain errors into usage errors that say the fix.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import contextmanager

import click

from revstats.cli._options import LAYER_HELP, progress_option
from revstats.errors import RevstatsError


def _int_list(ctx, param, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 8,12,16; got {value!r}"
                                 ) from None
    big = [v for v in out if abs(v) >= 2**63]
    if big:
        raise click.BadParameter(f"{big[0]} does not fit a 64-bit integer; use values below 2**63")
    return out


def _layer_list(ctx, param, value: str | None) -> list[str | int] | None:
    from revstats._layers import parse_layer_list

    try:
        return parse_layer_list(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _str_list(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


@contextmanager
def _progress_bars(enabled: bool):
    """A factory of per-checkpoint progress bars (rich), or no-ops when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=False) as progress:
        def factory(label: str, total: int | None) -> Callable[[int], None]:
            task = progress.add_task(label, total=total)
            return lambda n: progress.advance(task, n)

        yield factory


@click.command("capture")
@click.option("--witness", required=False, type=click.Path(file_okay=False),
              help="Pre-alignment (history) model directory.")
@click.option("--aligned", required=False, type=click.Path(file_okay=False),
              help="Aligned model directory: step 0 of every run.")
@click.option("--runs", "runs_glob", multiple=True,
              help="Glob of run dirs holding checkpoint-N folders (quote it); repeatable.")
@click.option("--manifest", type=click.Path(dir_okay=False, exists=True),
              help="JSON/TOML manifest of checkpoints (run, arm, seed, step, path); may also "
                   "give witness/aligned/adapter_base.")
@click.option("--probes", required=True, type=click.Path(dir_okay=False, exists=True),
              help="Probe prompts: JSONL (prompt/response or prompt_ids) or text, one per line.")
@click.option("--layers", required=True, callback=_layer_list, help=LAYER_HELP + " E.g. 8,12,-1.")
@click.option("--position", default="last", show_default=True,
              help="Token policy: last, mean_prompt, mean_response or index:K.")
@click.option("--out", required=True, metavar="STORE", help="Store path (local dir or fsspec URL).")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda:0.")
@click.option("--dtype", default="float32", show_default=True,
              type=click.Choice(["float32", "bfloat16", "float16"]), help="Model compute dtype.")
@click.option("--store-dtype", default="float32", show_default=True,
              type=click.Choice(["float32", "float16"]), help="Storage dtype (overflow refused).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Probes per forward pass.")
@click.option("--tokenizer", type=click.Path(file_okay=False),
              help="Tokenizer directory (default: the aligned model's).")
@click.option("--adapter-base", type=click.Path(file_okay=False),
              help="Base model for LoRA/PEFT adapter checkpoints (default: adapter config's "
                   "base if local, else the aligned model).")
@click.option("--chat-template/--no-chat-template", default=False, show_default=True,
              help="Render each prompt as a user turn with the tokenizer's chat template.")
@click.option("--padding-side", default="left", show_default=True,
              type=click.Choice(["left", "right"]),
              help="Side padded tokens go in a batch (positions follow the mask either way).")
@click.option("--overwrite", is_flag=True, help="Start over instead of resuming.")
@progress_option()
def capture_command(witness, aligned, runs_glob, manifest, probes, layers, position, out, device,
                    dtype, store_dtype, batch_size, tokenizer, adapter_base, chat_template,
                    padding_side, overwrite, progress):
    """Capture residual activations of witness, aligned and checkpoint models into a store.

    Resumable: rerunning skips (run, step) slabs the store already holds.

    \b
    Example:
      revstats capture --witness models/base --aligned models/aligned \\
          --runs 'runs/*' --probes probes.jsonl --layers 8,12,16 \\
          --position last --out acts.zarr --device cuda:0 --batch-size 16
    """
    from revstats.capture.checkpoints import discover_checkpoints, read_manifest
    from revstats.capture.pipeline import capture_experiment

    try:
        if manifest is not None:
            spec = read_manifest(manifest)
            witness = witness or spec.witness
            aligned = aligned or spec.aligned
            adapter_base = adapter_base or spec.adapter_base
        elif runs_glob:
            spec = discover_checkpoints(list(runs_glob))
        else:
            raise click.UsageError("give the checkpoints with `--runs 'GLOB'` or `--manifest FILE`")
        if witness is None or aligned is None:
            raise click.UsageError("`--witness` and `--aligned` are required (or set them in the "
                                   "manifest)")
        with _progress_bars(progress) as bars:
            summary = capture_experiment(
                out, witness=witness, aligned=aligned, checkpoints=spec, probes=probes,
                layers=layers, position=position, device=device, dtype=dtype,
                store_dtype=store_dtype, batch_size=batch_size, tokenizer=tokenizer,
                adapter_base=adapter_base, chat_template=chat_template,
                padding_side=padding_side, progress=bars, overwrite=overwrite,
                command=" ".join(["revstats", *sys.argv[1:]]),
            )
    except (RevstatsError, ValueError, FileNotFoundError) as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"wrote {len(summary.written)} slab(s), skipped {len(summary.skipped)} already "
               f"complete{', wrote witness' if summary.witness_written else ''} -> {summary.path}")


@click.command("ingest")
@click.argument("source", type=click.Path(dir_okay=False, exists=True))
@click.option("--out", required=True, metavar="STORE", help="Store path to create (local dir or fsspec URL).")
@click.option("--mapping", type=click.Path(dir_okay=False, exists=True),
              help="TOML mapping of arrays/dims/coords (see docs/capture.md).")
@click.option("--acts-key", help="Array name of the activations in SOURCE.")
@click.option("--acts-dims", help="Axis names of that array, e.g. run,step,layer,example,hidden.")
@click.option("--witness-key", help="Array name of the witness activations.")
@click.option("--witness-dims", help="e.g. layer,example,hidden (or run,layer,example,hidden).")
@click.option("--witness-file", type=click.Path(dir_okay=False, exists=True),
              help="Read the witness from this file instead of SOURCE.")
@click.option("--behavior-key", help="Array of 0/1 outcomes (run,step,example).")
@click.option("--task-key", help="Array of task metrics (run,step).")
@click.option("--runs", help="Run ids, comma-separated.")
@click.option("--steps", callback=_int_list, help="Steps, comma-separated (first = 0 = aligned).")
@click.option("--layers", help="Layer names, comma-separated.")
@click.option("--arms", help="Arm per run, comma-separated.")
@click.option("--seeds", callback=_int_list, help="Seed per run, comma-separated.")
@click.option("--dtype", default="float32", show_default=True,
              type=click.Choice(["float32", "float16"]), help="Storage dtype (overflow refused).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
@progress_option()
def ingest_command(source, out, mapping, acts_key, acts_dims, witness_key, witness_dims,
                   witness_file, behavior_key, task_key, runs, steps, layers, arms, seeds, dtype,
                   overwrite, progress):
    """Ingest logged activations (.npy .npz .safetensors .pt .h5) into a store.

    .pt files are read with torch.load(weights_only=True) only; files that need pickle are
    refused (convert them to safetensors). Options override the --mapping TOML.

    \b
    Example:
      revstats ingest logs/acts.npz --out acts.zarr \\
          --acts-key acts --acts-dims run,step,layer,example,hidden \\
          --witness-key base --witness-dims layer,example,hidden \\
          --runs ctrl-s0,ctrl-s1 --arms control,control --steps 0,10,20
    """
    import dataclasses

    from revstats.store.ingest import IngestMapping, VariableMapping, ingest, read_mapping

    try:
        mp = read_mapping(mapping) if mapping else IngestMapping()

        def merged(vm: VariableMapping | None, key, dims, file=None) -> VariableMapping | None:
            if vm is None and key is None and dims is None and file is None:
                return None
            vm = vm or VariableMapping()
            return dataclasses.replace(
                vm, key=key if key is not None else vm.key,
                dims=tuple(_str_list(dims) or ()) if dims is not None else vm.dims,
                file=file if file is not None else vm.file)

        coords = dict(mp.coords)
        for name, value in (("run", _str_list(runs)), ("step", steps), ("layer", _str_list(layers)),
                            ("arm", _str_list(arms)), ("seed", seeds)):
            if value is not None:
                coords[name] = value
        mp = IngestMapping(
            acts=merged(mp.acts, acts_key, acts_dims) or VariableMapping(),
            witness=merged(mp.witness, witness_key, witness_dims, witness_file),
            behavior=merged(mp.behavior, behavior_key, None),
            task=merged(mp.task, task_key, None),
            coords=coords,
        )
        with _progress_bars(progress) as factory:
            tick = factory("ingest", None) if factory is not None else None
            path = ingest(source, out, mapping=mp, dtype=dtype, overwrite=overwrite,
                          command=" ".join(["revstats", *sys.argv[1:]]), progress=tick)
    except (RevstatsError, ValueError, FileNotFoundError) as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"ingested {source} -> {path}")
