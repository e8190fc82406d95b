"""Residual-layer names: integers in ``output_hidden_states`` numbering, their store names
``hidden_states.L``, negative indices and TransformerLens hook names (torch-free).

For an n-block decoder, Hugging Face's ``output_hidden_states`` has n + 1 entries:

============================  =====================================  ==========================
revstats / HF                 what it is                             TransformerLens hook
============================  =====================================  ==========================
``0`` / ``hidden_states.0``   input of the first block (embeddings)  ``blocks.0.hook_resid_pre``
``L`` (1 <= L < n)            output of block L (1-based)            ``blocks.{L-1}.hook_resid_post``
                                                                     = ``blocks.{L}.hook_resid_pre``
``n`` / ``-1``                last block output **after final norm**  ``ln_final.hook_normalized``
============================  =====================================  ==========================

``blocks.{n-1}.hook_resid_post`` (the last block's output *before* the final norm) has no
``output_hidden_states`` index: Hugging Face replaces that entry by the normed
``last_hidden_state``. It is refused with that explanation (hook the block module by name with
``revstats.capture.capture_named`` for the un-normed vector). Negative indices count from the
end as in Python: ``-1`` = n, ``-2`` = n - 1. TransformerLens' ``hook_embed`` (token embedding
only, without GPT-2's positional embedding) is not an alias.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["parse_layer_list", "resolve_layers"]

_INT = re.compile(r"^[+-]?\d+$")
_HS = re.compile(r"^hidden_states\.(-?\d+)$")
_TL = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")
_TL_FINAL = ("ln_final.hook_normalized", "ln_final.hook_normalised")


def parse_layer_list(value: str | Iterable[str | int] | None) -> list[str | int] | None:
    """Split ``"8,12,blocks.3.hook_resid_post"`` (or a list) into ints and names; no range
    check (that needs the model's depth: :func:`resolve_layers`). Raises ValueError naming the
    bad entry."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str | int] = []
    for raw in items:
        item = raw.strip() if isinstance(raw, str) else raw
        if item == "":
            continue
        if isinstance(item, bool):
            raise ValueError(f"`layers`: {item!r} is not a layer")
        if isinstance(item, int) or (isinstance(item, str) and _INT.match(item)):
            out.append(int(item))
        elif isinstance(item, str) and (_HS.match(item) or _TL.match(item) or item in _TL_FINAL):
            out.append(item)
        else:
            raise ValueError(
                f"`layers`: expected comma-separated integers such as 8,12,-1 or layer names "
                f"(hidden_states.L, blocks.L.hook_resid_post / hook_resid_pre, "
                f"ln_final.hook_normalized); got {item!r}"
            )
    if not out:
        raise ValueError("`layers` is empty: pass residual indices such as 8,12,16")
    return out


def resolve_layers(layers: Sequence[str | int], n_blocks: int) -> list[int]:
    """Indices 0..n_blocks for an n_blocks-block model; negative and TransformerLens names
    resolved. Raises ValueError (out of range, duplicates, the pre-norm last block)."""
    n = int(n_blocks)
    out: list[int] = []
    for item in layers:
        idx: int
        if isinstance(item, int):
            idx = item
        elif m := _HS.match(item):
            idx = int(m.group(1))
        elif m := _TL.match(item):
            block, kind = int(m.group(1)), m.group(2)
            if kind == "pre":
                idx = block
            elif block == n - 1:
                raise ValueError(
                    f"`layers`: {item!r} is the last block's output before the final norm, which "
                    f"output_hidden_states does not expose (its entry {n} is after the norm): use "
                    "ln_final.hook_normalized (= -1) for the normed vector, or hook the block "
                    "module by name (revstats.capture.capture_named) for the raw one"
                )
            else:
                idx = block + 1
            if block >= n:
                raise ValueError(f"`layers`: {item!r} names block {block}; this model has blocks 0..{n - 1}")
        elif item in _TL_FINAL:
            idx = n
        else:  # pragma: no cover - parse_layer_list filtered these
            raise ValueError(f"`layers`: {item!r} is not a layer")
        if idx < 0:
            idx += n + 1
        if not 0 <= idx <= n:
            raise ValueError(
                f"`layers`: {item!r} is out of range for this {n}-block model: use 0..{n} "
                f"(0 = embeddings, {n} = final-norm output) or -{n + 1}..-1"
            )
        out.append(idx)
    dup = sorted({x for x in out if out.count(x) > 1})
    if dup:
        raise ValueError(f"`layers` names hidden_states.{dup[0]} twice (aliases resolve to the same index)")
    return out
