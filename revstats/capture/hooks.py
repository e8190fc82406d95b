"""Forward-hook capture of activations, pooled over tokens by a position policy.

Two ways in:

* any `torch.nn.Module`: :func:`capture_modules` / :func:`capture_named` hook modules by their
  dotted name (``model.named_modules()``) and record their output (the first tensor of a tuple);
* Hugging Face decoder models: :func:`residual_stream` / :func:`capture_residual` record the
  residual stream by layer index in the numbering of ``output_hidden_states``.

Layer numbering (the store's ``"hidden_states.L"``), checked against ``output_hidden_states=True``
in tests/unit/test_capture_hooks.py for GPT-2 and Llama:

* ``L = 0``: the input of the first block (token + position embeddings after dropout for GPT-2,
  token embeddings for Llama) -- what ``hidden_states[0]`` holds;
* ``1 <= L < n_layers``: the output of block ``L`` (1-based);
* ``L = n_layers``: ``hidden_states[-1]``, which Hugging Face replaces by ``last_hidden_state``,
  i.e. the output of the last block *after the final norm* (GPT-2 ``ln_f``, Llama ``norm``). We take
  it from the base model's ``last_hidden_state`` so it equals ``hidden_states[-1]`` exactly; models
  whose config sets ``tie_last_hidden_states=False`` get the raw output of the last block, as HF does.

Hooks live only inside context managers that remove them in ``finally`` (also when the forward
raises). Pooling happens inside the hook, so full (batch, seq, hidden) tensors are never kept.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from revstats.errors import RevstatsError
from revstats.store._dtypes import to_store_dtype

__all__ = [
    "POSITION_KINDS",
    "Position",
    "TokenBatch",
    "capture_modules",
    "capture_named",
    "capture_residual",
    "check_store_dtype",
    "make_batches",
    "parse_position",
    "pool_tokens",
    "residual_layer_names",
    "residual_stream",
]

POSITION_KINDS = ("last", "mean_prompt", "mean_response", "index")


# --------------------------------------------------------------------------- position policies
@dataclass(frozen=True)
class Position:
    """Which tokens of each example a captured vector summarises.

    * ``last``: the last prompt token (the one whose next-token prediction starts the response);
    * ``mean_prompt``: mean over the prompt tokens;
    * ``mean_response``: mean over the response tokens (every example needs a response);
    * ``index``: token ``index`` of the example's own (unpadded) prompt+response sequence,
      Python-style (``-1`` = its last real token), so padding side never changes the result.
    """

    kind: str
    index: int | None = None

    def __str__(self) -> str:
        return f"index:{self.index}" if self.kind == "index" else self.kind


def parse_position(position: str | int | Position) -> Position:
    """Parse ``"last"``, ``"mean_prompt"``, ``"mean_response"``, ``"index:K"``, ``"K"`` or an int."""
    if isinstance(position, Position):
        return position
    if isinstance(position, (int, np.integer)) and not isinstance(position, bool):
        return Position("index", int(position))
    if isinstance(position, str):
        text = position.strip().lower()
        text = text if re.search(r"\d", text) else text.replace("-", "_")
        aliases = {"last": "last", "last_prompt": "last", "mean": "mean_prompt",
                   "mean_prompt": "mean_prompt", "mean_response": "mean_response"}
        if text in aliases:
            return Position(aliases[text])
        m = re.fullmatch(r"(?:index:)?(-?\d+)", text)
        if m:
            return Position("index", int(m.group(1)))
    raise ValueError(
        f"`position` must be 'last', 'mean_prompt', 'mean_response', 'index:K' or an int K; "
        f"got {position!r}"
    )


# --------------------------------------------------------------------------- token batches
@dataclass(frozen=True)
class TokenBatch:
    """One padded batch: ``input_ids``/``attention_mask`` (batch, seq) and which real tokens are
    prompt (``prompt_mask``) or response (``response_mask``)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_mask: torch.Tensor
    response_mask: torch.Tensor

    @property
    def position_ids(self) -> torch.Tensor:
        # Count only real tokens, so a left-padded example sees the same positions as unpadded.
        return (self.attention_mask.long().cumsum(-1) - 1).clamp_min(0)

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask,
                                                   self.prompt_mask, self.response_mask)))

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def make_batches(
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]] | None = None,
    *,
    batch_size: int = 8,
    pad_id: int = 0,
    padding_side: str = "right",
) -> list[TokenBatch]:
    """Pad pre-tokenised prompts (+ optional responses) into :class:`TokenBatch` es, in order."""
    _validate_make_batches(prompt_ids, response_ids, batch_size, padding_side)
    responses = response_ids if response_ids is not None else [[] for _ in prompt_ids]
    batches = []
    for start in range(0, len(prompt_ids), batch_size):
        rows = list(zip(prompt_ids[start:start + batch_size], responses[start:start + batch_size],
                        strict=True))
        width = max(len(p) + len(r) for p, r in rows)
        ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
        attn = torch.zeros((len(rows), width), dtype=torch.long)
        pmask = torch.zeros((len(rows), width), dtype=torch.bool)
        rmask = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, (p, r) in enumerate(rows):
            n = len(p) + len(r)
            off = width - n if padding_side == "left" else 0
            ids[i, off:off + n] = torch.tensor(list(p) + list(r), dtype=torch.long)
            attn[i, off:off + n] = 1
            pmask[i, off:off + len(p)] = True
            rmask[i, off + len(p):off + n] = True
        batches.append(TokenBatch(ids, attn, pmask, rmask))
    return batches


def _validate_make_batches(prompt_ids, response_ids, batch_size, padding_side) -> None:
    if len(prompt_ids) == 0:
        raise ValueError("`prompt_ids` is empty: pass at least one tokenised prompt")
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("`prompt_ids` has an empty prompt: every probe needs >= 1 prompt token")
    if response_ids is not None and len(response_ids) != len(prompt_ids):
        raise ValueError(
            f"`response_ids` has {len(response_ids)} entries but `prompt_ids` has "
            f"{len(prompt_ids)}: pass one response (possibly empty) per prompt"
        )
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    if padding_side not in ("left", "right"):
        raise ValueError(f"`padding_side` must be 'left' or 'right', got {padding_side!r}")


# --------------------------------------------------------------------------- pooling
def _token_selection(batch: TokenBatch, position: Position) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(index per row, None) for single-token policies, (None, bool mask) for means."""
    attn = batch.attention_mask.bool()
    if position.kind == "last":
        if not bool(batch.prompt_mask.any(-1).all()):
            raise RevstatsError("an example has no prompt token: position 'last' needs one")
        seq = torch.arange(attn.shape[1], device=attn.device)
        return torch.where(batch.prompt_mask, seq, -1).amax(-1), None
    if position.kind == "mean_prompt":
        return None, batch.prompt_mask
    if position.kind == "mean_response":
        if not bool(batch.response_mask.any(-1).all()):
            raise RevstatsError(
                "position 'mean_response' needs a non-empty response for every probe: add "
                "`response` fields to the probe file or use position 'last'/'mean_prompt'"
            )
        return None, batch.response_mask
    # index: count real tokens from the left (or right, for negative K) of each row
    lengths = attn.sum(-1)
    first = attn.long().argmax(-1)  # offset of the first real token (left padding)
    k = position.index
    assert k is not None
    rel = torch.full_like(lengths, k) if k >= 0 else lengths + k
    if bool(((rel < 0) | (rel >= lengths)).any()):
        raise RevstatsError(
            f"position index {k} is outside an example of length {int(lengths.min())}: choose "
            "an index every probe has, e.g. 0 or -1"
        )
    return first + rel, None


def pool_tokens(hidden: torch.Tensor, batch: TokenBatch, position: Position) -> torch.Tensor:
    """Reduce (batch, seq, hidden) to (batch, hidden) in float32 with the position policy.

    Means are ``sum_{s in S_i} h_is / |S_i|`` over the selected real tokens S_i; padded positions
    are zero-filled (not multiplied by 0), so NaN in a padded row cannot leak in.
    """
    index, mask = _token_selection(batch, position)
    if index is not None:
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, index.to(hidden.device)].float()
    assert mask is not None
    mask = mask.to(hidden.device)
    summed = hidden.float().masked_fill(~mask[..., None], 0.0).sum(1)
    return summed / mask.sum(-1, keepdim=True).clamp_min(1).float()


# --------------------------------------------------------------------------- hook plumbing
def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "last_hidden_state") and output.last_hidden_state is not None:
        return output.last_hidden_state
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise RevstatsError(
        f"cannot capture an output of type {type(output).__name__}: hook a module that returns "
        "a tensor (or a tuple whose first item is one)"
    )


# (module, "forward" | "pre", hook): a pre-hook is registered with kwargs
_HookSpec = tuple[torch.nn.Module, str, Callable[..., Any]]


@contextmanager
def _hooks(specs: Iterable[_HookSpec]) -> Iterator[None]:
    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        for module, kind, fn in specs:
            if kind == "pre":
                handles.append(module.register_forward_pre_hook(fn, with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(fn))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_modules(
    model: torch.nn.Module,
    names: Sequence[str],
    *,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    detach: bool = True,
) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record the output of named modules of any ``nn.Module`` while the block is open.

    Yields ``{name: [tensor per forward call]}`` (detached unless ``detach=False``, which keeps
    them in the autograd graph for a loss term; passed through ``reduce`` when given).
    The hooks are removed on exit, also when the body raises.
    """
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        some = ", ".join(list(modules)[1:8])
        raise ValueError(
            f"`names` {missing} are not modules of the model; names look like {some}, ... "
            "(see `model.named_modules()`)"
        )
    records: dict[str, list[torch.Tensor]] = {n: [] for n in names}

    def hook_for(name: str):
        def hook(module, args, output):
            t = _first_tensor(output)
            t = t.detach() if detach else t
            records[name].append(reduce(t) if reduce is not None else t)
        return hook

    with _hooks([(modules[n], "forward", hook_for(n)) for n in names]):
        yield records


def _base_and_blocks(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.ModuleList]:
    """The decoder trunk (whose output holds ``last_hidden_state``) and its list of blocks."""
    if hasattr(model, "merge_and_unload") and hasattr(model, "get_base_model"):
        model = model.get_base_model()  # type: ignore[operator]  # unmerged PEFT model
    base = getattr(model, "base_model", model)
    config = getattr(model, "config", None)
    n_layers = getattr(config, "num_hidden_layers", None) if config is not None else None
    candidates = [
        (name.count("."), name, mod) for name, mod in base.named_modules()
        if isinstance(mod, torch.nn.ModuleList) and len(mod) > 0
        and (n_layers is None or len(mod) == n_layers)
    ]
    if not candidates:
        raise RevstatsError(
            f"could not find the list of decoder blocks in {type(model).__name__} (a ModuleList "
            f"with num_hidden_layers={n_layers} entries): hook modules by name with "
            "`capture_named` instead"
        )
    return base, min(candidates, key=lambda c: c[:2])[2]


def residual_layer_names(layers: Sequence[int]) -> list[str]:
    """Store layer names for residual-stream indices: ``hidden_states.L``."""
    return [f"hidden_states.{int(layer)}" for layer in layers]


@contextmanager
def residual_stream(
    model: torch.nn.Module,
    layers: Sequence[int],
    *,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    detach: bool = True,
) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Record the residual stream of a HF decoder model at ``output_hidden_states`` indices.

    Yields ``{L: [tensor per forward call]}`` (detached unless ``detach=False``); see the module
    docstring for the numbering. Hooks are removed on exit, also when the body raises.
    """
    base, blocks = _base_and_blocks(model)
    n = len(blocks)
    layers = [int(x) for x in layers]
    bad = [x for x in layers if not 0 <= x <= n]
    if bad or not layers or len(set(layers)) != len(layers):
        raise ValueError(
            f"`layers` must be distinct indices in 0..{n} (0 = embeddings, {n} = final-norm "
            f"output of this {n}-block model); got {layers}"
        )
    cfg = getattr(getattr(base, "config", None) or getattr(model, "config", None),
                  "tie_last_hidden_states", None)
    last_from_base = cfg is None or bool(cfg)
    records: dict[int, list[torch.Tensor]] = {x: [] for x in layers}

    def store(layer: int, t: torch.Tensor) -> None:
        t = t.detach() if detach else t
        records[layer].append(reduce(t) if reduce is not None else t)

    def output_hook(layer: int) -> Callable[..., None]:
        def hook(module, args, output) -> None:
            store(layer, _first_tensor(output))
        return hook

    def embedding_hook(module, args, kwargs) -> None:
        store(0, args[0] if args else kwargs["hidden_states"])

    specs: list[_HookSpec] = []
    for layer in layers:
        if layer == 0:
            specs.append((blocks[0], "pre", embedding_hook))
        elif layer == n and last_from_base:
            specs.append((base, "forward", output_hook(n)))
        else:
            specs.append((blocks[layer - 1], "forward", output_hook(layer)))
    with _hooks(specs):
        yield records


# --------------------------------------------------------------------------- whole-probe capture
def _forward(target: torch.nn.Module, batch: TokenBatch) -> None:
    kwargs: dict[str, Any] = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    try:
        params = set(inspect.signature(target.forward).parameters)
    except (TypeError, ValueError):  # pragma: no cover - exotic forward signatures
        params = set()
    if "position_ids" in params:
        kwargs["position_ids"] = batch.position_ids
    if "use_cache" in params:
        kwargs["use_cache"] = False
    target(**kwargs)


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _run_capture(model, batches, position, hook_cm, keys, trunk, on_batch=None) -> np.ndarray:
    position = parse_position(position)
    batches = list(batches)
    if not batches:
        raise ValueError("`batches` is empty: pass at least one TokenBatch (see `make_batches`)")
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    vocab = getattr(emb, "num_embeddings", None)
    filled = [b.input_ids for b in batches if b.input_ids.numel()]
    if vocab is not None and filled:  # an out-of-range id would fail deep inside torch
        top = max(int(t.max()) for t in filled)
        low = min(int(t.min()) for t in filled)
        if top >= vocab or low < 0:
            raise ValueError(
                f"token ids must lie in 0..{vocab - 1} (the model's vocabulary), got ids from "
                f"{low} to {top}: check `prompt_ids`/`response_ids` or use the model's tokenizer"
            )
    device = _model_device(model)
    current: dict[str, TokenBatch] = {}
    out: list[list[torch.Tensor]] = [[] for _ in keys]

    def reduce(h: torch.Tensor) -> torch.Tensor:
        return pool_tokens(h, current["batch"], position)

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), hook_cm(reduce) as records:
            for batch in batches:
                current["batch"] = batch.to(device)
                _forward(trunk, current["batch"])
                for i, key in enumerate(keys):
                    if len(records[key]) != 1:
                        raise RevstatsError(
                            f"module {key!r} ran {len(records[key])} times in one forward pass; "
                            "capture needs modules that run exactly once"
                        )
                    out[i].append(records[key].pop().cpu())
                if on_batch is not None:
                    on_batch(len(batch))
    finally:
        model.train(was_training)
    arr = torch.stack([torch.cat(parts) for parts in out]).numpy()
    if not np.isfinite(arr).all():
        raise RevstatsError(
            "captured activations contain NaN or inf (often a float16 overflow in the model): "
            "load the model with dtype float32 or bfloat16"
        )
    return arr


def capture_residual(
    model: torch.nn.Module,
    batches: Iterable[TokenBatch],
    *,
    layers: Sequence[int],
    position: str | int | Position = "last",
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Residual-stream activations of a HF decoder model, pooled per example.

    Returns a float32 array (layer, example, hidden), in the order of ``layers`` and of the
    examples in ``batches``. The forward runs the decoder trunk only (no LM head, whose output is
    not needed) on the model's device, with ``position_ids`` from the attention mask so left and
    right padding give the same vectors. ``on_batch(n_examples)`` is called after each batch
    (progress bars).
    """
    base, _ = _base_and_blocks(model)
    layers = [int(x) for x in layers]
    return _run_capture(
        model, batches, position,
        lambda reduce: residual_stream(model, layers, reduce=reduce), layers, base, on_batch,
    )


def capture_named(
    model: torch.nn.Module,
    batches: Iterable[TokenBatch],
    *,
    modules: Sequence[str],
    position: str | int | Position = "last",
) -> np.ndarray:
    """Outputs of named modules of any model taking ``input_ids``/``attention_mask``, pooled per
    example: float32 (module, example, hidden)."""
    return _run_capture(
        model, batches, position,
        lambda reduce: capture_modules(model, list(modules), reduce=reduce), list(modules), model,
    )


def check_store_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    """Convert to the store dtype, refusing non-finite values and float16 overflow (|x| > 65504)."""
    return to_store_dtype(values, dtype, name="activations")
