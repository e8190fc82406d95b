"""`read_layers` (the training tools' probe reader) on capture's hooks: equals Hugging Face's
`output_hidden_states` pooled by hand, keeps gradients when asked, leaves no hook behind."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from revstats.capture import capture_modules  # noqa: E402
from revstats.capture._tiny import build_tiny_model  # noqa: E402
from revstats.capture.probes import read_layers  # noqa: E402
from revstats.errors import RevstatsError  # noqa: E402

IDS = torch.tensor([[5, 9, 12, 13, 14], [7, 8, 9, 0, 0], [0, 0, 20, 21, 22]])
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 1, 1, 1]])


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request):
    return build_tiny_model(request.param, n_layers=2, hidden=32).eval()


def _n_hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _by_hand(model, position: str) -> torch.Tensor:
    """(layer, example, hidden): HF hidden_states of the same call, pooled over attended tokens."""
    with torch.no_grad():
        hs = torch.stack(model(input_ids=IDS, attention_mask=MASK, output_hidden_states=True).hidden_states)
    if position == "last":
        return hs[:, [0, 1, 2], [4, 2, 4]]
    w = MASK[None, :, :, None].float()
    return (hs * w).sum(2) / w.sum(2)


@pytest.mark.parametrize("position", ["last", "mean"])
def test_hidden_states_match_output_hidden_states(model, position):
    before = _n_hooks(model)
    names = ["hidden_states.0", "hidden_states.1", "hidden_states.2"]
    got = read_layers(model, {"input_ids": IDS, "attention_mask": MASK}, names, position=position)
    assert _n_hooks(model) == before  # checked before HF's own output_hidden_states call
    want = _by_hand(model, position)
    for i, name in enumerate(names):
        assert not got[name].requires_grad
        torch.testing.assert_close(got[name], want[i], rtol=1e-5, atol=1e-5)


def test_grad_flows_through_module_and_residual_reads(model):
    block = [n for n, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)][0] + ".0"
    got = read_layers(model, {"input_ids": IDS, "attention_mask": MASK}, [block, "hidden_states.2"],
                      position="mean", grad=True)
    params = [p for p in model.parameters() if p.requires_grad]
    g_got = torch.autograd.grad(got[block].sum() + got["hidden_states.2"].sum(), params, allow_unused=True)
    hs = model(input_ids=IDS, attention_mask=MASK, output_hidden_states=True).hidden_states
    w = MASK[:, :, None].float()
    target = ((hs[1] * w).sum(1) / w.sum(1)).sum() + ((hs[2] * w).sum(1) / w.sum(1)).sum()
    g_want = torch.autograd.grad(target, params, allow_unused=True)
    assert sum(g is not None for g in g_got) > 0
    for a, b in zip(g_got, g_want, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_tensor_probes_and_two_dim_outputs_pass_through():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh())
    x = torch.randn(5, 4)
    got = read_layers(net, x.numpy(), ["0"])["0"]
    torch.testing.assert_close(got, net[0](x).detach())


def test_capture_modules_keeps_graph_when_asked():
    net = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with capture_modules(net, [""], detach=False) as rec:
        net(x)
    (g,) = torch.autograd.grad(rec[""][0].sum(), [net.bias])
    torch.testing.assert_close(g, torch.full((2,), 4.0))
    with capture_modules(net, [""]) as rec:
        net(x)
    assert not rec[""][0].requires_grad


def test_validation_messages():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="`position` must be one of"):
        read_layers(net, torch.randn(2, 4), ["0"], position="first")
    shared = torch.nn.Linear(4, 4)
    twice = torch.nn.Sequential(shared, shared)
    with pytest.raises(RevstatsError, match="ran 2 times in one forward pass"):
        read_layers(twice, torch.randn(2, 4), ["0"])
    with pytest.raises(ValueError, match="expected \\(example, hidden\\) or \\(example, seq, hidden\\)"):
        read_layers(net, torch.randn(2, 3, 3, 4), ["0"])
