"""Residual-stream capture equals `output_hidden_states=True`, for every position policy, with
left and right padding, on tiny random GPT-2 and Llama models; hooks never outlive capture."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from revstats.capture import (  # noqa: E402
    Position,
    capture_modules,
    capture_named,
    capture_residual,
    make_batches,
    parse_position,
    residual_stream,
)
from revstats.capture._tiny import build_tiny_model  # noqa: E402
from revstats.capture.hooks import check_store_dtype  # noqa: E402
from revstats.errors import RevstatsError  # noqa: E402

PROMPTS = [[5, 9, 12], [7, 8, 9, 10, 11, 14], [20], [30, 31, 32, 33]]
RESPONSES = [[40, 41], [42], [43, 44, 45], [46, 47]]
POLICIES = ["last", "mean_prompt", "mean_response", "index:0", "index:-1", "index:1"]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request):
    return build_tiny_model(request.param, n_layers=2, hidden=32)


def _reference(model, prompt, response, position: Position) -> np.ndarray:
    """Each example alone (no padding) through HF's own `output_hidden_states`."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
    h = torch.stack(hs)[:, 0].float()  # (n_layers+1, seq, hidden)
    n_p = len(prompt)
    if position.kind == "last":
        v = h[:, n_p - 1]
    elif position.kind == "mean_prompt":
        v = h[:, :n_p].mean(1)
    elif position.kind == "mean_response":
        v = h[:, n_p:].mean(1)
    else:
        v = h[:, position.index]
    return v.numpy()


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("policy", POLICIES)
def test_residual_equals_hidden_states(model, side, policy):
    pos = parse_position(policy)
    batches = make_batches(PROMPTS, RESPONSES, batch_size=3, pad_id=0, padding_side=side)
    layers = [0, 1, 2]
    got = capture_residual(model, batches, layers=layers, position=pos)
    assert got.shape == (3, len(PROMPTS), 32) and got.dtype == np.float32
    want = np.stack([_reference(model, p, r, pos) for p, r in zip(PROMPTS, RESPONSES, strict=True)], axis=1)
    np.testing.assert_allclose(got, want[layers], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_matches_hf_padded_forward(model, side):
    """Same padded batch, same position ids: equal to HF's hidden_states of that batch."""
    batch = make_batches(PROMPTS, RESPONSES, batch_size=4, padding_side=side)[0]
    got = capture_residual(model, [batch], layers=[2, 0, 1], position="last")
    with torch.no_grad():
        hs = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   position_ids=batch.position_ids, output_hidden_states=True).hidden_states
    seq = torch.arange(batch.input_ids.shape[1])
    last = torch.where(batch.prompt_mask, seq, -1).amax(-1)
    want = torch.stack([h[torch.arange(4), last] for h in hs]).numpy()
    np.testing.assert_allclose(got, want[[2, 0, 1]], rtol=1e-5, atol=1e-6)


def test_last_layer_is_final_norm_output(model):
    """hidden_states[-1] carries the final norm (ln_f / norm): so must our last layer."""
    batch = make_batches(PROMPTS[:1], batch_size=1)[0]
    got = capture_residual(model, [batch], layers=[2], position="index:0")[0, 0]
    final_norm = model.transformer.ln_f if hasattr(model, "transformer") else model.model.norm
    with capture_modules(model, [n for n, m in model.named_modules() if m is final_norm]) as rec:
        with torch.no_grad():
            model(input_ids=batch.input_ids)
    normed = next(iter(rec.values()))[0][0, 0].numpy()
    np.testing.assert_allclose(got, normed, rtol=1e-5, atol=1e-6)


def _n_hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_no_hook_left_after_capture_or_error(model):
    before = _n_hooks(model)
    batches = make_batches(PROMPTS, RESPONSES, batch_size=2)
    capture_residual(model, batches, layers=[0, 1, 2], position="mean_prompt")
    assert _n_hooks(model) == before
    name = [n for n, _ in model.named_modules() if n.endswith(".0")][0]
    capture_named(model, batches, modules=[name], position="last")
    assert _n_hooks(model) == before

    class Boom(RuntimeError):
        pass

    def explode(module, args, output):
        raise Boom("forward failed")

    block = dict(model.named_modules())[name]
    handle = block.register_forward_hook(explode)
    try:
        with pytest.raises(Boom):
            capture_residual(model, batches, layers=[0, 1, 2], position="last")
        with pytest.raises(Boom), residual_stream(model, [1]) as _:
            assert _n_hooks(model) > before + 1
            model(input_ids=batches[0].input_ids)
    finally:
        handle.remove()
    assert _n_hooks(model) == before


def test_named_module_capture_any_module():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Linear(8, 4))

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask=None):
            return self.net(input_ids)

    wrap = Wrap()
    batches = make_batches(PROMPTS, RESPONSES, batch_size=4, padding_side="left")
    got = capture_named(wrap, batches, modules=["net.1"], position="mean_response")
    with torch.no_grad():
        want = np.stack([net(torch.tensor(p + r))[len(p):].mean(0).numpy()
                         for p, r in zip(PROMPTS, RESPONSES, strict=True)])
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6)


def test_validation_messages(model):
    with pytest.raises(ValueError, match="`position` must be"):
        parse_position("middle")
    with pytest.raises(ValueError, match="`layers` must be distinct indices in 0..2"):
        capture_residual(model, make_batches(PROMPTS), layers=[3])
    with pytest.raises(ValueError, match="`names`"):
        with capture_modules(model, ["nope"]):
            pass
    with pytest.raises(ValueError, match="`padding_side`"):
        make_batches(PROMPTS, padding_side="middle")
    with pytest.raises(ValueError, match="`response_ids` has 1 entries"):
        make_batches(PROMPTS, [[1]])
    with pytest.raises(ValueError, match="`prompt_ids` has an empty prompt"):
        make_batches([[]])
    with pytest.raises(ValueError, match="`batch_size`"):
        make_batches(PROMPTS, batch_size=0)
    with pytest.raises(RevstatsError, match="needs a non-empty response"):
        capture_residual(model, make_batches(PROMPTS), layers=[1], position="mean_response")
    with pytest.raises(RevstatsError, match="position index 9 is outside"):
        capture_residual(model, make_batches(PROMPTS), layers=[1], position=9)


def test_store_dtype_overflow_refused():
    x = np.array([1.0, 7e4], dtype=np.float32)
    with pytest.raises(RevstatsError, match="beyond float16"):
        check_store_dtype(x, "float16")
    assert check_store_dtype(x, "float32").dtype == np.float32
    assert check_store_dtype(x[:1], "float16").dtype == np.float16
    with pytest.raises(RevstatsError, match="NaN or inf"):
        check_store_dtype(np.array([np.nan]), "float32")
