"""A monitor configuration straight from the witness and aligned model folders and the probes
file ``revstats capture`` takes -- what the first fine-tune needs before any checkpoint exists.

>>> from revstats.capture.monitor_setup import monitor_config_from_models     # doctest: +SKIP
>>> cfg = monitor_config_from_models("models/base", "models/aligned", "probes.jsonl",
...                                  layers="8,-1", n_looks=30, every=10)      # doctest: +SKIP
>>> cfg.save("monitor-cfg")                                                     # doctest: +SKIP

The probes are tokenised as ``capture`` does, right-padded into one batch and stored in the
config as ``input_ids``/``attention_mask``; the witness and aligned activations are read with
the monitor's own reader (:func:`revstats.capture.probes.read_layers`, the model called as
training calls it), so at step 0 the monitor sees only rounding noise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from revstats._layers import parse_layer_list, resolve_layers

__all__ = ["monitor_config_from_models", "probe_inputs"]


def probe_inputs(probes: str | os.PathLike[str], tokenizer: Any, *, chat_template: bool = False) -> tuple[list[str], dict[str, np.ndarray]]:
    """(probe ids, {"input_ids", "attention_mask"}) from a probes file, right-padded."""
    from revstats.capture.checkpoints import load_probes
    from revstats.capture.hooks import make_batches

    ps = load_probes(probes, tokenizer=tokenizer, chat_template=chat_template)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    (batch,) = make_batches(ps.prompt_ids, ps.response_ids, batch_size=max(1, len(ps)), pad_id=int(pad),
                            padding_side="right")
    return list(ps.ids), {"input_ids": batch.input_ids.numpy(), "attention_mask": batch.attention_mask.numpy()}


def monitor_config_from_models(
    witness: str | os.PathLike[str],
    aligned: str | os.PathLike[str],
    probes: str | os.PathLike[str],
    *,
    layers: Sequence[int | str] | str,
    tokenizer: str | os.PathLike[str] | None = None,
    position: str = "last",
    chat_template: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
    **build_kwargs: Any,
):
    """:class:`revstats.monitor.MonitorConfig` from two model directories and a probes file.

    `layers` as ``revstats capture --layers`` (ints, negative, ``hidden_states.L``,
    TransformerLens names); `position` is the monitor's pooling (``"last"`` or ``"mean"``);
    `build_kwargs` go to :func:`revstats.monitor.build_config` (``alpha``, ``n_looks``,
    ``every``, ``spending``, ``rho``, ``null``).
    """
    from revstats.capture.checkpoints import load_causal_lm, load_tokenizer
    from revstats.capture.pipeline import _n_blocks
    from revstats.capture.probes import PROBE_POSITIONS, read_layers
    from revstats.monitor import build_config

    if position not in PROBE_POSITIONS:
        raise ValueError(f"`position` must be one of {PROBE_POSITIONS} for the monitor, got {position!r}")
    witness, aligned = os.fspath(witness), os.fspath(aligned)
    idx = resolve_layers(parse_layer_list(layers) or [], _n_blocks(aligned))
    names = [f"hidden_states.{i}" for i in idx]
    tok = load_tokenizer(os.fspath(tokenizer) if tokenizer is not None else aligned)
    ids, inputs = probe_inputs(probes, tok, chat_template=chat_template)
    acts = {}
    for label, path in (("witness", witness), ("aligned", aligned)):
        model = load_causal_lm(path, device=device, dtype=dtype)
        got = read_layers(model, inputs, names, position=position)
        acts[label] = {n: got[n].float().cpu().numpy() for n in names}
        del model
    return build_config(acts["witness"], acts["aligned"], probes=inputs, examples=ids, position=position,
                        aligned_dtype=dtype, **build_kwargs)
