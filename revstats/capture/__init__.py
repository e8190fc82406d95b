"""Activation capture from torch models and Hugging Face checkpoints (needs the `torch`/`hf` extras).

`import revstats` never imports this package; import it explicitly:

>>> from revstats.capture import capture_residual, TokenBatch   # doctest: +SKIP
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

__all__ = [
    "Position",
    "TokenBatch",
    "capture_modules",
    "capture_named",
    "capture_residual",
    "make_batches",
    "parse_position",
    "residual_layer_names",
    "residual_stream",
]
