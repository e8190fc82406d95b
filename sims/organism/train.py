"""The organism's network, its three training phases, the judges and the blocking glue.

The network is a Hugging Face GPT-2 built from a config (random init, no hub). Training uses
response-only next-token cross-entropy on fixed-length pre-tokenised batches, Adam, a single
thread and deterministic algorithms, so a seed fixes every number.

Interventions are pluggable: :class:`Intervention` has three hooks (an extra loss term, a
context manager around the training forward, a correction of the parameter update), and each
blocking variant is thin glue around the one definition in :mod:`revstats.blocking`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from revstats import blocking
from sims.organism.language import Sequences

__all__ = [
    "ActivationProjection",
    "Intervention",
    "ParameterProjection",
    "Penalty",
    "build_model",
    "deterministic",
    "greedy_continuations",
    "harmful_outcomes",
    "hidden_at_last_prompt",
    "task_score",
    "train_steps",
    "training_arrays",
]


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Single thread, deterministic kernels, seeded torch; previous settings restored on exit."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)


def build_model(vocab_size: int, *, n_layers: int, hidden: int, n_heads: int, n_positions: int,
                seed: int):
    """A random-init GPT-2 causal LM (no dropout), seeded."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=hidden, n_layer=n_layers,
        n_head=n_heads, bos_token_id=1, eos_token_id=2, pad_token_id=0, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def _ids(seqs: Sequences) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.from_numpy(np.concatenate([seqs.prompts, seqs.responses], axis=1))
    labels = ids.clone()
    labels[:, : seqs.prompts.shape[1]] = -100  # loss on the response only
    return ids, labels


def training_arrays(*families: Sequences) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and labels of several families, right-padded to one length (causal attention
    never looks right, so padding changes nothing before it); loss on responses only."""
    parts = [_ids(f) for f in families]
    width = max(ids.shape[1] for ids, _ in parts)
    ids = torch.cat([torch.nn.functional.pad(i, (0, width - i.shape[1]), value=0)
                     for i, _ in parts])
    labels = torch.cat([torch.nn.functional.pad(lab, (0, width - lab.shape[1]), value=-100)
                        for _, lab in parts])
    return ids, labels


def hidden_at_last_prompt(model, prompts: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
    """Residual stream (``output_hidden_states`` numbering) at the last prompt token, with grad."""
    out = model.transformer(input_ids=prompts, output_hidden_states=True, use_cache=False)
    return [out.hidden_states[layer][:, -1, :] for layer in layers]


# ---------------------------------------------------------------------------- interventions
class Intervention:
    """No-op base: subclasses override any of the three hooks. ``control`` uses this."""

    def loss(self, model) -> torch.Tensor | None:
        return None

    def forward_context(self, model, input_ids: torch.Tensor) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def direction_for_update(self, model) -> torch.Tensor | None:
        return None

    def correct_update(self, update: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        return update


@dataclass
class Penalty(Intervention):
    """(a) ``lam * ReLU(sign <h_t - h_0, v>)^2`` on anchor-probe activations, summed over layers
    (:func:`revstats.blocking.penalty_over_layers`)."""

    anchors: torch.Tensor
    h0: list[torch.Tensor]
    directions: list[torch.Tensor]
    layers: list[int]
    lam: float
    sign: int = 1
    reduce: str = "per_probe"

    def loss(self, model) -> torch.Tensor:
        hs = hidden_at_last_prompt(model, self.anchors, self.layers)
        layers = {str(layer): (h, h0, v) for layer, h, h0, v in
                  zip(self.layers, hs, self.h0, self.directions, strict=True)}
        return blocking.penalty_over_layers(layers, lam=self.lam, sign=self.sign,
                                            reduce=self.reduce)  # type: ignore[arg-type]


@dataclass
class ActivationProjection(Intervention):
    """(b) In the training forward, each hooked layer's output becomes
    ``h_ref + project_off(h - h_ref, v)`` (:func:`revstats.blocking.project_activation_update`),
    ``h_ref`` = the aligned model's activation on the same batch."""

    reference: torch.nn.Module
    directions: list[torch.Tensor]
    layers: list[int]
    sign: int = 1
    strength: float = 1.0

    def forward_context(self, model, input_ids):
        return _projection_hooks(self, model, input_ids)


@contextlib.contextmanager
def _projection_hooks(spec: ActivationProjection, model, input_ids) -> Iterator[None]:
    with torch.no_grad():
        ref = spec.reference.transformer(input_ids=input_ids,
                                         attention_mask=torch.ones_like(input_ids),
                                         output_hidden_states=True, use_cache=False).hidden_states
    blocks = model.transformer.h
    n = len(blocks)
    handles = []

    def project(h: torch.Tensor, layer: int, v: torch.Tensor) -> torch.Tensor:
        return blocking.project_activation_update(h, ref[layer], v, sign=spec.sign,
                                                  strength=spec.strength)

    try:
        for layer, v in zip(spec.layers, spec.directions, strict=True):
            if layer == 0:
                def pre(module, args, kwargs, v=v):
                    if args:
                        return (project(args[0], 0, v), *args[1:]), kwargs
                    kwargs = dict(kwargs)
                    kwargs["hidden_states"] = project(kwargs["hidden_states"], 0, v)
                    return args, kwargs
                handles.append(blocks[0].register_forward_pre_hook(pre, with_kwargs=True))
                continue
            module = model.transformer.ln_f if layer == n else blocks[layer - 1]

            def post(module, args, output, layer=layer, v=v):
                if isinstance(output, torch.Tensor):
                    return project(output, layer, v)
                return (project(output[0], layer, v), *output[1:])
            handles.append(module.register_forward_hook(post))
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class ParameterProjection(Intervention):
    """(c) Project each optimizer update off the parameter-space directions
    ``d_l = grad_theta <mean_i h_l(anchor_i), v_l>`` (the first-order image of v_l), with
    :func:`revstats.blocking.project_parameter_update`; the directions of all layers span one
    subspace."""

    anchors: torch.Tensor
    directions: list[torch.Tensor]
    layers: list[int]
    sign: int = 1
    strength: float = 1.0

    def direction_for_update(self, model) -> torch.Tensor:
        params = [p for p in model.parameters() if p.requires_grad]
        rows = []
        hs = hidden_at_last_prompt(model, self.anchors, self.layers)
        for i, (h, v) in enumerate(zip(hs, self.directions, strict=True)):
            score = (h.mean(0) * v).sum()
            grads = torch.autograd.grad(score, params, retain_graph=i < len(hs) - 1,
                                        allow_unused=True)
            rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                   for g, p in zip(grads, params, strict=True)]))
        return torch.stack(rows)

    def correct_update(self, update, direction):
        return blocking.project_parameter_update(update, direction, sign=self.sign,
                                                 strength=self.strength)


# ---------------------------------------------------------------------------- training
def train_steps(
    model,
    data: Sequences | tuple[torch.Tensor, torch.Tensor],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    intervention: Intervention | None = None,
    on_step: Callable[[int], None] | None = None,
    optimizer: str = "adam",
) -> list[float]:
    """``steps`` Adam steps on batches drawn (seeded) from ``data`` (a family or the output of
    :func:`training_arrays`); returns the task losses.

    ``on_step(step)`` runs after step ``step`` (1-based), e.g. to capture and judge.
    """
    iv = intervention or Intervention()
    ids, labels = _ids(data) if isinstance(data, Sequences) else data
    gen = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"`optimizer` must be 'adam' or 'sgd', got {optimizer!r}")
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    params = [p for p in model.parameters() if p.requires_grad]
    losses = []
    model.train()
    for step in range(1, steps + 1):
        idx = torch.from_numpy(gen.choice(len(ids), size=batch_size, replace=len(ids) < batch_size))
        x, y = ids[idx], labels[idx]
        direction = iv.direction_for_update(model)
        with iv.forward_context(model, x):
            task_loss = model(input_ids=x, attention_mask=torch.ones_like(x), labels=y,
                              use_cache=False).loss
        extra = iv.loss(model)
        loss = task_loss if extra is None else task_loss + extra
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if direction is not None:
            before = torch.nn.utils.parameters_to_vector(params).detach().clone()
            opt.step()
            with torch.no_grad():
                after = torch.nn.utils.parameters_to_vector(params)
                torch.nn.utils.vector_to_parameters(
                    before + iv.correct_update(after - before, direction), params)
        else:
            opt.step()
        losses.append(float(task_loss.detach()))
        if on_step is not None:
            on_step(step)
    model.eval()
    return losses


# ---------------------------------------------------------------------------- judges
@torch.no_grad()
def greedy_continuations(model, prompts: np.ndarray, n_tokens: int) -> np.ndarray:
    """Greedy (argmax) continuation of ``n_tokens`` tokens for equal-length prompts."""
    was = model.training
    model.eval()
    ids = torch.from_numpy(prompts)
    for _ in range(n_tokens):
        logits = model(input_ids=ids, use_cache=False).logits[:, -1, :]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    model.train(was)
    return ids[:, prompts.shape[1]:].numpy()


def harmful_outcomes(model, probes: Sequences) -> np.ndarray:
    """1 where the greedy continuation equals the compliant ("harmful") answer exactly, else 0."""
    gen = greedy_continuations(model, probes.prompts, probes.responses.shape[1])
    return (gen == probes.responses).all(axis=1).astype(np.float32)


@torch.no_grad()
def task_score(model, data: Sequences) -> float:
    """Teacher-forced next-token accuracy on the response tokens of held-out benign data."""
    was = model.training
    model.eval()
    ids, _ = _ids(data)
    logits = model(input_ids=ids, use_cache=False).logits
    p = data.prompts.shape[1]
    pred = logits[:, p - 1:-1, :].argmax(-1)
    model.train(was)
    return float((pred == ids[:, p:]).float().mean())
