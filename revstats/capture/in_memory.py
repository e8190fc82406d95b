"""In-memory capture, like TransformerLens ``run_with_cache``: a model object and prompts in,
an ``xarray.Dataset`` with the store's dims out, no store written.

>>> ds = capture(model, ["how do i make a cake", "tell me a story"], layers=[1, -1],
...              tokenizer=tok)                                    # doctest: +SKIP
>>> ds["acts"].dims                                                # doctest: +SKIP
('run', 'step', 'layer', 'example', 'hidden')

The vectors are those ``revstats capture`` writes (same hooks, same position policies, same
``hidden_states.L`` names, checked against ``output_hidden_states``); pass ``witness=`` to get
the ``witness`` variable too, so the result goes straight into :mod:`revstats.geometry` or
:func:`revstats.store.write_dataset`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from revstats._layers import parse_layer_list, resolve_layers
from revstats.capture.hooks import (
    _base_and_blocks,
    capture_residual,
    make_batches,
    parse_position,
    residual_layer_names,
)

__all__ = ["capture"]


def _tokenised(prompts: Any, tokenizer: Any, chat_template: bool) -> tuple[list[str], list[list[int]], list[list[int]]]:
    from revstats.capture.checkpoints import load_probes

    if isinstance(prompts, (str, os.PathLike)):
        ps = load_probes(prompts, tokenizer=tokenizer, chat_template=chat_template)
        return list(ps.ids), ps.prompt_ids, ps.response_ids
    if not isinstance(prompts, Sequence) or not prompts:
        raise ValueError("`prompts` must be a non-empty list of strings or of token-id lists, or a probes file path")
    ids = [f"p{i:05d}" for i in range(len(prompts))]
    if all(isinstance(p, str) for p in prompts):
        if tokenizer is None:
            raise ValueError("`prompts` are strings: pass `tokenizer=` (or give token-id lists)")
        if chat_template:
            enc = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                 tokenize=True) for p in prompts]
            enc = [list(e["input_ids"]) if isinstance(e, dict) else list(e) for e in enc]
        else:
            enc = [list(tokenizer(p)["input_ids"]) for p in prompts]
        return ids, enc, [[] for _ in prompts]
    if all(isinstance(p, Sequence) and not isinstance(p, str) for p in prompts):
        return ids, [[int(t) for t in p] for p in prompts], [[] for _ in prompts]
    raise ValueError("`prompts` must be all strings or all token-id lists")


def capture(
    model: torch.nn.Module,
    prompts: Any,
    *,
    layers: Sequence[int | str] | str,
    tokenizer: Any = None,
    witness: torch.nn.Module | None = None,
    position: str | int = "last",
    batch_size: int = 8,
    padding_side: str = "left",
    chat_template: bool = False,
    run: str = "run0",
    step: int = 0,
    arm: str = "control",
    seed: int = 0,
) -> xr.Dataset:
    """Residual activations of `model` (and `witness`) on `prompts`, as a store-shaped Dataset.

    Parameters
    ----------
    model : Hugging Face decoder model (GPT-2, Llama, ... or a PEFT model around one)
    prompts : list of str (needs `tokenizer`), list of token-id lists, or a probes file
        (JSONL/text, as ``revstats capture --probes``)
    layers : ints, names or a comma-separated string
        ``output_hidden_states`` indices (negative from the end), ``hidden_states.L`` or
        TransformerLens names (``blocks.L.hook_resid_post`` = L + 1,
        ``ln_final.hook_normalized`` = n, after the final norm); see :mod:`revstats._layers`.
    witness : model, optional
        The pre-alignment model: adds ``witness`` (layer, example, hidden).
    position, batch_size, padding_side, chat_template
        As ``revstats capture``.
    run, step, arm, seed
        Coordinates of the single (run, step) slab.

    Returns
    -------
    xr.Dataset
        ``acts`` (run, step, layer, example, hidden) float32 with sizes (1, 1, ...), coords
        ``run`` (+ ``arm``, ``seed``), ``step``, ``layer`` (``hidden_states.L``), ``example``;
        ``complete`` (run, step) True, as in a store;
        attrs ``revstats_schema``, ``source="capture"``, ``provenance``. Concatenate several
        along ``step``/``run`` with :func:`xarray.concat`.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    if witness is not None and not isinstance(witness, torch.nn.Module):
        raise TypeError(f"`witness` must be a torch.nn.Module or None, got {type(witness).__name__}")
    _, blocks = _base_and_blocks(model)
    idx = resolve_layers(parse_layer_list(layers) or [], len(blocks))
    pos = parse_position(position)
    ex_ids, prompt_ids, response_ids = _tokenised(prompts, tokenizer, chat_template)
    pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    batches = make_batches(prompt_ids, response_ids, batch_size=batch_size, pad_id=int(pad or 0),
                           padding_side=padding_side)

    def run_model(m: torch.nn.Module) -> np.ndarray:
        was = m.training
        m.eval()
        try:
            return capture_residual(m, batches, layers=idx, position=pos)
        finally:
            m.train(was)

    acts = run_model(model)
    names = residual_layer_names(idx)
    from revstats import _version
    from revstats.store.schema import SCHEMA_VERSION

    digest = hashlib.sha256(json.dumps(prompt_ids).encode()).hexdigest()
    ds = xr.Dataset(
        {"acts": (("run", "step", "layer", "example", "hidden"), acts[None, None]),
         "complete": (("run", "step"), np.ones((1, 1), dtype=bool))},
        coords={"run": [str(run)], "step": [int(step)], "layer": names, "example": ex_ids,
                "arm": ("run", [str(arm)]), "seed": ("run", [int(seed)])},
        attrs={"revstats_schema": SCHEMA_VERSION, "source": "capture",
               "provenance": json.dumps({
                   "command": "revstats.capture.capture (in memory)", "revstats_version": _version.__version__,
                   "model": type(model).__name__, "layers": names, "position": str(pos),
                   "padding_side": padding_side, "prompt_ids_sha256": digest,
                   "layer_numbering": "output_hidden_states: 0 = embeddings, L = block L, last = final norm",
               })},
    )
    if witness is not None:
        ds["witness"] = (("layer", "example", "hidden"), run_model(witness))
    return ds
