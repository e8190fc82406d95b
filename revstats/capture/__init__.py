"""Activation capture from torch models and Hugging Face checkpoints (needs the `torch`/`hf` extras).

`import revstats` never imports this package; import it explicitly:

>>> from revstats.capture import capture_residual, TokenBatch   # doctest: +SKIP

In memory, like TransformerLens ``run_with_cache`` (an xarray Dataset with the store's dims):

>>> from revstats.capture import capture                          # doctest: +SKIP
>>> ds = capture(model, prompts, layers="blocks.0.hook_resid_post,-1", tokenizer=tok)  # doctest: +SKIP
"""

from __future__ import annotations

from revstats.capture.hooks import (
    Position,
    TokenBatch,
    capture_modules,
    capture_named,
    capture_residual,
    make_batches,
    parse_position,
    residual_layer_names,
    residual_stream,
)
from revstats.capture.in_memory import capture

__all__ = [
    "Position",
    "TokenBatch",
    "capture",
    "capture_modules",
    "capture_named",
    "capture_residual",
    "make_batches",
    "parse_position",
    "residual_layer_names",
    "residual_stream",
]
