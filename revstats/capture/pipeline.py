"""Capture an experiment into a revstats store: witness, aligned (step 0), every checkpoint.

One model is in memory at a time. The run is resumable: (run, step) slabs the store already holds
complete are skipped, so rerunning after a crash only captures what is missing. A rerun must use
the same probes, layers and position policy (checked against the store's provenance).
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from revstats._layers import parse_layer_list, resolve_layers
from revstats._version import __version__
from revstats.capture.checkpoints import (
    Manifest,
    ProbeSet,
    load_causal_lm,
    load_probes,
    load_tokenizer,
    model_fingerprint,
)
from revstats.capture.hooks import (
    capture_residual,
    check_store_dtype,
    make_batches,
    parse_position,
    residual_layer_names,
)
from revstats.errors import RevstatsError

__all__ = ["CaptureSummary", "capture_experiment"]

# Provenance keys that must match for a resumed capture to extend the same experiment.
_RESUME_KEYS = ("probes_sha256", "layers", "position", "chat_template", "padding_side")

# progress(label, n_examples) -> per-batch callback taking the batch size
ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass
class CaptureSummary:
    """What a capture did: the store path and the (run, step) slabs written and skipped."""

    path: str
    written: list[tuple[str, int]] = field(default_factory=list)
    skipped: list[tuple[str, int]] = field(default_factory=list)
    witness_written: bool = False


def _validate_capture(witness, aligned, checkpoints, layers, batch_size, store_dtype, padding_side):
    for name, value in (("witness", witness), ("aligned", aligned)):
        if value is None or not Path(value).is_dir():
            raise ValueError(f"`{name}` must be a local model directory; got {value!r}")
    if not isinstance(checkpoints, Manifest) or not checkpoints.checkpoints:
        raise ValueError("`checkpoints` must be a non-empty Manifest (see discover_checkpoints)")
    if not layers:
        raise ValueError("`layers` is empty: pass residual indices such as [8, 12, 16]")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    if store_dtype not in ("float32", "float16"):
        raise ValueError(f"`store_dtype` must be 'float32' or 'float16', got {store_dtype!r}")
    if padding_side not in ("left", "right"):
        raise ValueError(f"`padding_side` must be 'left' or 'right', got {padding_side!r}")


def _check_context(probe_set: ProbeSet, model_dir: str) -> None:
    """Refuse probes longer than the model's context before any model is loaded (they would
    end in an IndexError deep inside the position embedding)."""
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
    except (OSError, ValueError):
        return  # loading the model reports it
    ctx = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    if not ctx:
        return
    lengths = [len(a) + len(b) for a, b in zip(probe_set.prompt_ids, probe_set.response_ids, strict=True)]
    too_long = [(probe_set.ids[i], n) for i, n in enumerate(lengths) if n > int(ctx)]
    if too_long:
        shown = ", ".join(f"{pid} ({n} tokens)" for pid, n in too_long[:3])
        raise RevstatsError(
            f"{len(too_long)} probe(s) are longer than the model's context of {ctx} tokens: "
            f"{shown}; shorten them or drop them from {probe_set.source}")


def _hidden_size(path: str) -> int:
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(path, trust_remote_code=False).hidden_size)


def _n_blocks(path: str) -> int:
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(path).num_hidden_layers)


def _free(model) -> None:
    del model
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def _store_exists(path: str) -> bool:
    if "://" in path:
        return False if path.startswith("memory://") else True
    from revstats.store import _aborted_creation

    # a directory left by a writer killed while creating the store holds no data: start over
    return (Path(path) / "zarr.json").is_file() and not _aborted_creation(path)


def capture_experiment(
    out: str | os.PathLike,
    *,
    witness: str | os.PathLike,
    aligned: str | os.PathLike,
    checkpoints: Manifest,
    probes: str | os.PathLike,
    layers: Sequence[int | str],
    position: str | int = "last",
    device: str = "cpu",
    dtype: str = "float32",
    store_dtype: str = "float32",
    batch_size: int = 8,
    tokenizer: str | os.PathLike | None = None,
    adapter_base: str | os.PathLike | None = None,
    chat_template: bool = False,
    padding_side: str = "left",
    progress: ProgressFactory | None = None,
    overwrite: bool = False,
    command: str | None = None,
) -> CaptureSummary:
    """Capture residual activations of witness, aligned and checkpoints into the store `out`.

    Writes ``witness`` (layer, example, hidden) and ``acts`` (run, step, layer, example, hidden)
    with step 0 = the aligned model (the same vectors for every run) and layer names
    ``hidden_states.L``. Parameters mirror ``revstats capture`` (see its ``--help``).
    """
    from revstats.store import check_writable, create_store, open_store, open_writer

    out = str(out)
    # busy store or a directory that is not a store: refused before any model is loaded
    # (`overwrite=True` here only skips the provenance check, which happens below)
    check_writable(out, overwrite=True)
    witness, aligned = str(witness), str(aligned)
    _validate_capture(witness, aligned, checkpoints, layers, batch_size, store_dtype, padding_side)
    pos = parse_position(position)
    # resolve negative / TransformerLens names against the depth, and refuse a bad layer
    # before any store is created (a rejected --layers must leave nothing behind)
    layers = resolve_layers(parse_layer_list(layers) or [], _n_blocks(aligned))
    tok_dir = str(tokenizer) if tokenizer is not None else aligned
    tok = load_tokenizer(tok_dir)
    probe_set: ProbeSet = load_probes(probes, tokenizer=tok, chat_template=chat_template)
    _check_context(probe_set, aligned)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    batches = make_batches(probe_set.prompt_ids, probe_set.response_ids, batch_size=batch_size,
                           pad_id=int(pad_id), padding_side=padding_side)
    layer_names = residual_layer_names(layers)
    runs = checkpoints.runs
    adapter_base = str(adapter_base) if adapter_base is not None else (
        checkpoints.adapter_base or aligned)

    provenance: dict[str, Any] = {
        "command": command or "revstats.capture.capture_experiment",
        "revstats_version": __version__,
        "witness": model_fingerprint(witness),
        "aligned": model_fingerprint(aligned),
        "checkpoints": [
            {"run": c.run, "step": c.step, **model_fingerprint(c.path)}
            for c in checkpoints.checkpoints
        ],
        "adapter_base": adapter_base,
        "tokenizer": str(Path(tok_dir).resolve()),
        "probes": probe_set.source,
        "probes_sha256": probe_set.sha256,
        "chat_template": bool(chat_template),
        "layers": layer_names,
        "layer_numbering": "output_hidden_states: 0 = embeddings, L = block L, last = final norm",
        "position": str(pos),
        "padding_side": padding_side,
        "model_dtype": dtype,
        "store_dtype": store_dtype,
        "device": device,
        "batch_size": batch_size,
    }

    if _store_exists(out) and not overwrite:
        old = json.loads(open_store(out).attrs.get("provenance", "{}"))
        diff = [k for k in _RESUME_KEYS if k in old and old[k] != provenance[k]]
        if diff:
            raise RevstatsError(
                f"store {out} was captured with different {', '.join(diff)} "
                f"({', '.join(f'{k}={old[k]!r}' for k in diff)}): use the same settings to "
                "resume, or `--overwrite` / a new `--out` to start over"
            )
        writer = open_writer(out)
    else:
        writer = create_store(
            out, runs=runs, layers=layer_names, examples=probe_set.ids,
            hidden=_hidden_size(aligned), steps=[0, *checkpoints.steps],
            arms=checkpoints.run_attr("arm"), seeds=checkpoints.run_attr("seed"),
            dtype=store_dtype, behavior=False, source="capture", provenance=provenance,
            overwrite=overwrite,
        )
    summary = CaptureSummary(out)

    def capture(path: str, label: str) -> np.ndarray:
        model = load_causal_lm(path, device=device, dtype=dtype, adapter_base=adapter_base)
        try:
            on_batch = progress(label, len(probe_set)) if progress is not None else None
            acts = capture_residual(model, batches, layers=layers, position=pos, on_batch=on_batch)
        finally:
            _free(model)
        return check_store_dtype(acts, store_dtype)

    with writer:
        if overwrite or not _witness_complete(out):
            writer.write_witness(capture(witness, "witness"))
            summary.witness_written = True
        missing0 = [r for r in runs if not writer.has_slab(r, 0)]
        if missing0:
            acts0 = capture(aligned, "aligned (step 0)")
            for run in missing0:
                writer.write_slab(run, 0, acts0)
                summary.written.append((run, 0))
        summary.skipped += [(r, 0) for r in runs if r not in missing0]
        for spec in checkpoints.checkpoints:
            if writer.has_slab(spec.run, spec.step):
                summary.skipped.append((spec.run, spec.step))
                continue
            acts = capture(spec.path, f"{spec.run} step {spec.step}")
            writer.write_slab(spec.run, spec.step, acts)
            summary.written.append((spec.run, spec.step))
        writer.finish()  # runs without a checkpoint at some step leave those slabs unplanned
    return summary


def _witness_complete(out: str) -> bool:
    if not _store_exists(out):
        return False
    from revstats.store import open_store

    ds = open_store(out)  # the store drops `witness` until it has been written
    return "witness" in ds and bool(ds["witness"].notnull().all().compute())
