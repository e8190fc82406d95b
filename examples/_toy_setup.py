"""Shared toy setup for the training-tool examples: a tiny GPT-2 (random init, no download), probe
prompts, and a monitor config whose witness is where the fine-tuning data pull the model (so the
run really "reverts" and the monitor has something to find)."""

from __future__ import annotations

import copy
import os

import numpy as np
import torch
import transformers

from revstats._torch_probes import read_layers
from revstats.monitor import build_config

LAYER = "transformer.h.1"
VOCAB = 64


def tiny_gpt2(seed: int = 0) -> transformers.GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


def data(n: int, seed: int) -> torch.Tensor:
    """Fine-tuning data: sequences over a small sub-vocabulary (a 'benign task')."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB // 4, (n, 12), generator=g)


def probes(n: int = 16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(99)
    return {"input_ids": torch.randint(0, VOCAB, (n, 10), generator=g), "attention_mask": torch.ones(n, 10, dtype=torch.long)}


def write_config(model: torch.nn.Module, out: str, *, every: int, looks: int) -> str:
    """Witness = the model after some steps on the task (the place fine-tuning drifts to)."""
    p = probes()
    aligned = read_layers(model.eval(), p, [LAYER])[LAYER].numpy()
    pre = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(pre.parameters(), lr=3e-3)
    x = data(64, seed=1)
    for _ in range(30):
        loss = pre(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    witness = read_layers(pre.eval(), p, [LAYER])[LAYER].numpy()
    cfg = build_config({LAYER: witness}, {LAYER: aligned}, every=every, n_looks=looks,
                       probes={k: v.numpy() for k, v in p.items()})
    cfg.save(out)
    return os.path.abspath(out)


def direction(cfg_dir: str) -> torch.Tensor:
    with np.load(os.path.join(cfg_dir, "monitor.npz"), allow_pickle=False) as z:
        return torch.as_tensor(z["direction/0"], dtype=torch.float32)
