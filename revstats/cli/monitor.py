"""`revstats monitor-config`: write the v_rev and thresholds a training-time monitor loads."""

from __future__ import annotations

import json
import os

import click

from revstats.cli._options import layers_option


@click.command("monitor-config")
@click.argument("store", required=False)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Directory to write monitor.json + monitor.npz into.")
@click.option("--witness", type=click.Path(file_okay=False, exists=True),
              help="Pre-alignment model directory (instead of STORE; with --aligned and --probes).")
@click.option("--aligned", type=click.Path(file_okay=False, exists=True),
              help="Aligned model directory (instead of STORE): the model about to be fine-tuned.")
@layers_option("Layers to monitor, comma-separated (default with STORE: all). With --witness/--aligned: "
               "output_hidden_states indices, negative from the end, hidden_states.L or TransformerLens "
               "names, e.g. 8,-1. With STORE: its layer names.")
@click.option("--run", default=None, help="Run whose step-0 slab is the aligned model (default: mean over runs).")
@click.option("--probes", default=None, type=click.Path(dir_okay=False, exists=True),
              help="Probe inputs: the probes.jsonl / text file `revstats capture` takes (tokenised here), "
                   "or an npz of arrays (input_ids, attention_mask; or `input`).")
@click.option("--tokenizer", type=click.Path(file_okay=False, exists=True),
              help="Tokenizer directory for a probes file (default: the aligned model's, or the one in "
                   "STORE's provenance).")
@click.option("--chat-template/--no-chat-template", default=False, show_default=True,
              help="Render each probe as a user turn with the tokenizer's chat template.")
@click.option("--device", default="cpu", show_default=True, help="torch device for --witness/--aligned.")
@click.option("--dtype", default="float32", show_default=True,
              type=click.Choice(["float32", "bfloat16", "float16"]), help="Model compute dtype.")
@click.option("--alpha", default=0.05, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="False-alarm rate over the whole run.")
@click.option("--looks", default=20, show_default=True, type=click.IntRange(min=1),
              help="Planned number of looks (bonferroni/power).")
@click.option("--every", default=10, show_default=True, type=click.IntRange(min=1), help="Training steps between looks.")
@click.option("--spending", default="bonferroni", show_default=True,
              type=click.Choice(["bonferroni", "power", "harmonic"]), help="Alpha-spending rule over looks.")
@click.option("--rho", default=2.0, show_default=True, type=float, help="Exponent of the power spending rule.")
@click.option("--null", "null", default="isotropic", show_default=True,
              type=click.Choice(["isotropic", "effective"]), help="Null law of the alignment cosine.")
@click.option("--position", default="last", show_default=True, type=click.Choice(["last", "mean_prompt", "mean"]),
              help="Token policy as `capture --position`: last or mean_prompt (the monitor's probes have no "
                   "response part; `mean` is the same as mean_prompt).")
def monitor_config(store, out, witness, aligned, layers, run, probes, tokenizer, chat_template,
                   device, dtype, alpha, looks, every, spending, rho, null, position) -> None:
    """Compute v_rev per layer and write a monitor configuration (JSON + npz, never pickle)
    that a training callback loads: from the witness and aligned model folders and the probes
    file (before the first fine-tune), or from a captured STORE (witness vs its step-0 slab).

    \b
    Example (before any checkpoint exists):
      revstats monitor-config --witness models/base --aligned models/aligned \\
          --probes probes.jsonl --layers 8,-1 --out monitor-cfg --looks 30 --every 10
    From a store:
      revstats monitor-config captured.zarr --out monitor-cfg --probes probes.jsonl \\
          --layers hidden_states.8
    Then, in the training script (two lines):
      mon = TorchMonitor.from_config("monitor-cfg", model)
      mon.step(step)      # after each optimizer step
    """
    import numpy as np

    from revstats.monitor import build_config

    layer_list = list(layers)
    position = "mean" if position in ("mean", "mean_prompt") else position
    settings = dict(alpha=alpha, n_looks=looks, every=every, spending=spending, rho=rho, null=null)
    if store is None:
        if witness is None or aligned is None or probes is None:
            raise click.UsageError("give a STORE, or --witness DIR --aligned DIR --probes probes.jsonl (before "
                                   "the first fine-tune)")
        if probes.endswith(".npz"):
            raise click.UsageError("--probes: with --witness/--aligned give the probes.jsonl / text file "
                                   "(`revstats capture --probes`); it is tokenised here")
        if not layer_list:
            raise click.UsageError("--layers is required with --witness/--aligned, e.g. --layers 8,-1")
        try:
            from revstats.capture.monitor_setup import monitor_config_from_models
            from revstats.errors import RevstatsError

            cfg = monitor_config_from_models(witness, aligned, probes, layers=layer_list, tokenizer=tokenizer,
                                             position=position, chat_template=chat_template, device=device,
                                             dtype=dtype, **settings)
        except (TypeError, ValueError, FileNotFoundError, RevstatsError) as e:
            raise click.UsageError(str(e)) from None
        _save(cfg, out)
        return
    if witness is not None or aligned is not None:
        raise click.UsageError("give either STORE or --witness/--aligned, not both")

    from revstats.store import open_store

    try:
        ds = open_store(store)
    except (FileNotFoundError, ValueError) as e:
        raise click.UsageError(f"cannot open STORE: {e}") from None
    if "witness" not in ds:
        raise click.UsageError("STORE has no `witness` variable: capture the pre-alignment model first")
    all_layers = [str(x) for x in ds["layer"].values]
    chosen = layer_list or all_layers
    missing = [x for x in chosen if x not in all_layers]
    if missing:
        raise click.UsageError(f"--layers {missing[0]!r} is not in STORE; its layers are: {', '.join(all_layers)}")
    if 0 not in [int(s) for s in ds["step"].values]:
        raise click.UsageError("STORE has no step 0 (the aligned model) to measure drift from")
    acts0 = ds["acts"].sel(step=0)
    if run is not None:
        if run not in [str(r) for r in ds["run"].values]:
            raise click.UsageError(f"--run {run!r} is not in STORE")
        acts0 = acts0.sel(run=run)
    else:
        acts0 = acts0.mean("run")
    wit = ds["witness"]
    if "run" in wit.dims:
        wit = wit.sel(run=run) if run is not None else wit.mean("run")
    probe_arrays: dict[str, np.ndarray] = {}
    n_ex = ds.sizes["example"]
    if probes is not None and probes.endswith(".npz"):
        with np.load(probes, allow_pickle=False) as z:
            probe_arrays = {k: z[k] for k in z.files}
    elif probes is not None:
        tok_dir = tokenizer or json.loads(ds.attrs.get("provenance", "{}")).get("tokenizer")
        if not tok_dir or not os.path.isdir(tok_dir):
            raise click.UsageError("--probes is a probes file: pass --tokenizer DIR to tokenise it "
                                   "(STORE's provenance names no local tokenizer)")
        from revstats.capture.checkpoints import load_tokenizer
        from revstats.capture.monitor_setup import probe_inputs

        _, probe_arrays = probe_inputs(probes, load_tokenizer(tok_dir), chat_template=chat_template)
    bad = [k for k, v in probe_arrays.items() if v.shape[0] != n_ex]
    if bad:
        raise click.UsageError(f"--probes array {bad[0]!r} has {probe_arrays[bad[0]].shape[0]} rows; STORE has {n_ex} examples")
    try:
        cfg = build_config(
            {x: np.asarray(wit.sel(layer=x).transpose("example", "hidden")) for x in chosen},
            {x: np.asarray(acts0.sel(layer=x).transpose("example", "hidden")) for x in chosen},
            probes=probe_arrays, examples=[str(e) for e in ds["example"].values], position=position,
            aligned_dtype=str(ds["acts"].dtype), **settings,
        )
    except (TypeError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    _save(cfg, out)


def _save(cfg, out: str) -> None:
    cfg.save(out)
    click.echo(json.dumps({"out": os.path.abspath(out), "layers": list(cfg.layers),
                           "threshold_look1": {x: cfg.threshold(1, x) for x in cfg.layers},
                           "level_per_look_layer": cfg.level(1)}, indent=2))
