"""Tiny random Hugging Face models and a word-level tokenizer, built locally (no hub access).

Used by the tests and the capture benchmark; handy for a dry run of `revstats capture`.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["TINY_WORDS", "build_tiny_model", "build_tiny_tokenizer"]

TINY_WORDS = (
    "the a an is are was were be to of and in that it for on with as at by this from or not "
    "what how why who when where which can could should would will do does did you i we they he "
    "she me my your our their his her cat dog bird fish tree house car road sun moon star water "
    "fire earth wind good bad big small fast slow red blue green yes no please help make tell "
    "show explain write code story poem safe harm"
).split()


def build_tiny_tokenizer():
    """A whitespace word-level `PreTrainedTokenizerFast` with ~100 tokens and a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<bos>", "<eos>", "<user>", "<assistant>"]
    vocab = {tok: i for i, tok in enumerate(specials + list(TINY_WORDS))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>",
        eos_token="<eos>",
    )
    fast.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'user' %}<user> {{ m['content'] }} "
        "{% else %}<assistant> {{ m['content'] }} {% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<assistant> {% endif %}"
    )
    return fast


def build_tiny_model(
    kind: str = "gpt2",
    path: str | Path | None = None,
    *,
    n_layers: int = 2,
    hidden: int = 32,
    vocab: int = 112,
    seed: int = 0,
    with_tokenizer: bool = True,
):
    """Random-init GPT-2 or Llama causal LM; saved with its tokenizer to `path` when given."""
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    config: GPT2Config | LlamaConfig
    if kind == "gpt2":
        config = GPT2Config(
            vocab_size=vocab, n_positions=128, n_embd=hidden, n_layer=n_layers,
            n_head=max(1, hidden // 16), bos_token_id=2, eos_token_id=3, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )
    elif kind == "llama":
        config = LlamaConfig(
            vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
            num_hidden_layers=n_layers, num_attention_heads=max(1, hidden // 16),
            num_key_value_heads=max(1, hidden // 32), max_position_embeddings=128,
            bos_token_id=2, eos_token_id=3, pad_token_id=0,
        )
    else:
        raise ValueError(f"`kind` must be 'gpt2' or 'llama', got {kind!r}")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.eval()
    if path is not None:
        model.save_pretrained(str(path))
        if with_tokenizer:
            build_tiny_tokenizer().save_pretrained(str(path))
    return model
