"""The organism's network, its three training phases, the judges and the blocking glue.

The network is a Hugging Face GPT-2 built from a config (random init, no hub). Training uses
response-only next-token cross-entropy on fixed-length pre-tokenised batches, Adam, a single
thread and deterministic algorithms, so a seed fixes every number.

Interventions are pluggable: :class:`Intervention` has three hooks (an extra loss term, a
context manager around the training forward, a context manager around the optimizer), and each
blocking variant is a thin adapter to the torch wrappers of :mod:`revstats.training.blocking`,
which apply the one definition in :mod:`revstats.blocking`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from revstats.sims.organism.language import Sequences

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
    "residual_module",
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
def residual_module(n_layers: int, layer: int) -> str:
    """The GPT-2 module whose output is ``hidden_states[layer]`` (activation hooks need modules)."""
    if layer == 0:
        return "transformer.drop"
    return "transformer.ln_f" if layer == n_layers else f"transformer.h.{layer - 1}"


class Intervention:
    """No-op base (the control arm): subclasses override any of the three hooks."""

    def loss(self, model) -> torch.Tensor | None:
        return None

    def forward_context(self, model, input_ids: torch.Tensor) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def optimizer_context(self, optimizer) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


class Penalty(Intervention):
    """(a) ``lam * ReLU(sign <h_t - h_0, v>)^2`` on anchor-probe activations, summed over layers:
    :class:`revstats.training.blocking.ReversionPenalty` (h_0 read from ``model`` now, so build it
    on the aligned network)."""

    def __init__(self, model, anchors: torch.Tensor, directions: Mapping[int, torch.Tensor], *,
                 lam: float, sign: int = 1) -> None:
        from revstats.training.blocking import ReversionPenalty

        self._penalty = ReversionPenalty(
            model, anchors, {f"hidden_states.{k}": v for k, v in directions.items()}, lam=lam,
            sign=sign, position="last")

    def loss(self, model) -> torch.Tensor:
        return self._penalty(model)


class ActivationProjection(Intervention):
    """(b) In each training forward, the hooked layers' outputs become
    ``h_ref + project_off(h - h_ref, v)`` (:func:`revstats.training.blocking.project_activations`;
    ``h_ref`` = the frozen aligned network on the same batch). Hooks live only during the
    training forward, so capture and judges see the unhooked network."""

    def __init__(self, reference, directions: Mapping[int, torch.Tensor], n_layers: int, *,
                 sign: int = 1, strength: float = 1.0) -> None:
        self.reference, self.sign, self.strength = reference, sign, strength
        self.directions = {residual_module(n_layers, k): v for k, v in directions.items()}

    def forward_context(self, model, input_ids):
        from revstats.training.blocking import project_activations

        return project_activations(model, self.directions, reference=self.reference,
                                   sign=self.sign, strength=self.strength)


class ParameterProjection(Intervention):
    """(c) Every optimizer update is projected off ``u_l = grad_theta <mean_i h_l(anchor_i), v_l>``
    taken at the aligned network (:func:`revstats.training.blocking.parameter_directions` and
    :func:`~revstats.training.blocking.project_parameter_updates`); all layers span one subspace."""

    def __init__(self, model, anchors: torch.Tensor, directions: Mapping[int, torch.Tensor], *,
                 sign: int = 1, strength: float = 1.0) -> None:
        from revstats.training.blocking import parameter_directions

        self.sign, self.strength = sign, strength
        self.directions = parameter_directions(
            model, anchors, {f"hidden_states.{k}": v for k, v in directions.items()},
            position="last")

    def optimizer_context(self, optimizer):
        from revstats.training.blocking import project_parameter_updates

        return project_parameter_updates(optimizer, self.directions, sign=self.sign,
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
    losses = []
    model.train()
    with iv.optimizer_context(opt):
        for step in range(1, steps + 1):
            idx = torch.from_numpy(gen.choice(len(ids), size=batch_size,
                                              replace=len(ids) < batch_size))
            x, y = ids[idx], labels[idx]
            with iv.forward_context(model, x):
                task_loss = model(input_ids=x, attention_mask=torch.ones_like(x), labels=y,
                                  use_cache=False).loss
            extra = iv.loss(model)
            loss = task_loss if extra is None else task_loss + extra
            opt.zero_grad(set_to_none=True)
            loss.backward()
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
