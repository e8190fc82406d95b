"""`revstats monitor-config`: write the v_rev and thresholds a training-time monitor loads."""

from __future__ import annotations

import json
import os

import click


@click.command("monitor-config")
@click.argument("store")
@click.option("--out", "-o", required=True, help="Directory to write monitor.json + monitor.npz into.")
@click.option("--layer", "layers", multiple=True, help="Layer(s) to monitor (default: every layer of the store).")
@click.option("--run", default=None, help="Run whose step-0 slab is the aligned model (default: mean over runs).")
@click.option("--probes", default=None, help="npz of probe inputs (e.g. input_ids, attention_mask; or `input`).")
@click.option("--alpha", default=0.05, show_default=True, type=float, help="False-alarm rate over the whole run.")
@click.option("--looks", default=20, show_default=True, type=int, help="Planned number of looks (bonferroni/power).")
@click.option("--every", default=10, show_default=True, type=int, help="Training steps between looks.")
@click.option("--spending", default="bonferroni", show_default=True,
              type=click.Choice(["bonferroni", "power", "harmonic"]), help="Alpha-spending rule over looks.")
@click.option("--rho", default=2.0, show_default=True, type=float, help="Exponent of the power spending rule.")
@click.option("--null", "null", default="isotropic", show_default=True,
              type=click.Choice(["isotropic", "effective"]), help="Null law of the alignment cosine.")
@click.option("--position", default="last", show_default=True, type=click.Choice(["last", "mean"]),
              help="Token pooling of sequence outputs.")
def monitor_config(store, out, layers, run, probes, alpha, looks, every, spending, rho, null, position) -> None:
    """Compute v_rev per layer from STORE (witness vs the aligned step-0 slab) and write a
    monitor configuration (JSON + npz, never pickle) that a training callback loads.

    \b
    Example:
      revstats monitor-config captured.zarr --out monitor-cfg --probes probes.npz \\
          --layer transformer.h.1 --looks 30 --every 10
    Then, in the training script (two lines):
      mon = TorchMonitor.from_config("monitor-cfg", model)
      mon.step(step)      # after each optimizer step
    """
    import numpy as np

    from revstats.monitor import build_config
    from revstats.store import open_store

    try:
        ds = open_store(store)
    except (FileNotFoundError, ValueError) as e:
        raise click.UsageError(f"cannot open STORE: {e}") from None
    if "witness" not in ds:
        raise click.UsageError("STORE has no `witness` variable: capture the pre-alignment model first")
    all_layers = [str(x) for x in ds["layer"].values]
    chosen = list(layers) or all_layers
    missing = [x for x in chosen if x not in all_layers]
    if missing:
        raise click.UsageError(f"--layer {missing[0]!r} is not in STORE; its layers are: {', '.join(all_layers)}")
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
    probe_arrays = {}
    if probes is not None:
        with np.load(probes, allow_pickle=False) as z:
            probe_arrays = {k: z[k] for k in z.files}
        n_ex = ds.sizes["example"]
        bad = [k for k, v in probe_arrays.items() if v.shape[0] != n_ex]
        if bad:
            raise click.UsageError(f"--probes array {bad[0]!r} has {probe_arrays[bad[0]].shape[0]} rows; STORE has {n_ex} examples")
    try:
        cfg = build_config(
            {x: np.asarray(wit.sel(layer=x).transpose("example", "hidden")) for x in chosen},
            {x: np.asarray(acts0.sel(layer=x).transpose("example", "hidden")) for x in chosen},
            alpha=alpha, n_looks=looks, every=every, spending=spending, rho=rho, null=null,
            probes=probe_arrays, examples=[str(e) for e in ds["example"].values], position=position,
        )
    except (TypeError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    cfg.save(out)
    click.echo(json.dumps({"out": os.path.abspath(out), "layers": list(cfg.layers),
                           "threshold_look1": {x: cfg.threshold(1, x) for x in cfg.layers},
                           "level_per_look_layer": cfg.level(1)}, indent=2))
