"""Torch blocking wrappers on tiny models: projection removes (push doubles) the component of the
activation/parameter update along v and leaves orthogonal motion alone; the penalty penalises
only motion toward the witness; no hook survives the context manager."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from revstats import blocking  # noqa: E402
from revstats.placebo import placebo_direction  # noqa: E402
from revstats.training.blocking import (  # noqa: E402
    ReversionPenalty,
    block_reversion,
    parameter_directions,
    project_activations,
    project_parameter_updates,
)

LAYER = "2"


def mlp(seed: int = 0, dropout: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 12), torch.nn.Tanh(), torch.nn.Linear(12, 12), torch.nn.Dropout(dropout),
        torch.nn.Tanh(), torch.nn.Linear(12, 3),
    )


def tiny_gpt2(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2LMHeadModel(cfg)


def unit(t: torch.Tensor) -> torch.Tensor:
    return t / t.norm()


def perturb_(model: torch.nn.Module, scale: float = 0.3, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def layer_output(model: torch.nn.Module, name: str, run) -> torch.Tensor:
    out = {}
    mod = dict(model.named_modules())[name]
    h = mod.register_forward_hook(lambda _m, _i, o: out.__setitem__("h", o[0] if isinstance(o, tuple) else o))
    try:
        with torch.no_grad():
            run(model)
    finally:
        h.remove()
    return out["h"]


def no_hooks(model: torch.nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks for m in model.modules()
    )


# --------------------------------------------------------------------------- activation projection
@pytest.mark.parametrize("sign", [1, -1])
def test_activation_projection_mlp_removes_or_doubles_component_only(sign):
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    model = mlp()
    aligned = copy.deepcopy(model)
    v = unit(torch.randn(12, generator=torch.Generator().manual_seed(3)))
    h0 = layer_output(aligned, LAYER, lambda m: m(x))
    perturb_(model)  # "fine-tuning": every parameter moved
    h_free = layer_output(model, LAYER, lambda m: m(x))
    with project_activations(model, {LAYER: v}, reference=aligned, sign=sign):
        h_hooked = layer_output(model, LAYER, lambda m: m(x))
    d_free, d_hooked = h_free - h0, h_hooked - h0
    along_free, along_hooked = d_free @ v, d_hooked @ v
    assert along_free.abs().min() > 1e-3  # the test has something to remove
    expected = torch.zeros_like(along_free) if sign == 1 else 2 * along_free
    torch.testing.assert_close(along_hooked, expected, atol=1e-5, rtol=1e-5)
    orth = lambda d: d - (d @ v)[:, None] * v  # noqa: E731
    torch.testing.assert_close(orth(d_hooked), orth(d_free), atol=1e-5, rtol=1e-5)
    assert no_hooks(model) and no_hooks(aligned)


def test_activation_projection_is_identity_at_start_even_with_dropout():
    model = mlp(dropout=0.3).train()
    x = torch.randn(9, 5)
    v = torch.randn(12)
    torch.manual_seed(5)
    plain = model(x)
    with project_activations(model, {LAYER: v}):  # reference = copy of the aligned model
        torch.manual_seed(5)
        hooked = model(x)
    torch.testing.assert_close(hooked, plain)


def test_activation_projection_gpt2_blocks_residual_motion_and_gradient():
    model = tiny_gpt2()
    model.eval()
    aligned = copy.deepcopy(model)
    ids = torch.randint(0, 40, (3, 6), generator=torch.Generator().manual_seed(0))
    v = unit(torch.randn(16, generator=torch.Generator().manual_seed(1)))
    name = "transformer.h.0"
    h0 = layer_output(aligned, name, lambda m: m(input_ids=ids))
    perturb_(model, scale=0.05)
    h_free = layer_output(model, name, lambda m: m(input_ids=ids))
    with project_activations(model, {name: v}, reference=aligned):
        h_hooked = layer_output(model, name, lambda m: m(input_ids=ids))
        # no gradient reaches the component along v: upstream params cannot learn to move it
        captured = {}
        mod = dict(model.named_modules())[name]
        hk = mod.register_forward_hook(lambda _m, _i, o: captured.__setitem__("h", o[0] if isinstance(o, tuple) else o))
        try:
            out = model(input_ids=ids)
        finally:
            hk.remove()
        captured["h"].retain_grad()
        wte_grad = torch.autograd.grad((captured["h"] @ v).sum(), model.transformer.wte.weight, allow_unused=True)[0]
        assert out.logits.shape == (3, 6, 40)
    assert wte_grad is None or wte_grad.abs().max() < 1e-6
    d_free, d_hooked = h_free - h0, h_hooked - h0
    assert (d_free @ v).abs().max() > 1e-3
    assert (d_hooked @ v).abs().max() < 1e-5
    orth = lambda d: d - (d @ v)[..., None] * v  # noqa: E731
    torch.testing.assert_close(orth(d_hooked), orth(d_free), atol=1e-5, rtol=1e-4)
    assert no_hooks(model)


def test_activation_projection_mean_variant_removes_only_mean_component():
    x = torch.randn(8, 5)
    model, aligned = mlp(), mlp()
    v = unit(torch.randn(12))
    h0 = layer_output(aligned, LAYER, lambda m: m(x))
    perturb_(model)
    h_free = layer_output(model, LAYER, lambda m: m(x))
    with project_activations(model, {LAYER: v}, reference=aligned, reduce="mean"):
        h_hooked = layer_output(model, LAYER, lambda m: m(x))
    d_hooked = h_hooked - h0
    assert abs(float(d_hooked.mean(0) @ v)) < 1e-5
    assert float((d_hooked @ v).std()) > 1e-3  # per-example variation along v kept
    torch.testing.assert_close(d_hooked @ v - (d_hooked @ v).mean(), (h_free - h0) @ v - ((h_free - h0) @ v).mean())


def test_hooks_removed_after_exception():
    model = mlp()
    with pytest.raises(RuntimeError, match="boom"), project_activations(model, {LAYER: torch.randn(12)}):
        assert not no_hooks(model)
        raise RuntimeError("boom")
    assert no_hooks(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pd = parameter_directions(model, torch.randn(4, 5), {LAYER: torch.randn(12)})
    with pytest.raises(RuntimeError, match="boom"), project_parameter_updates(opt, pd):
        assert opt._optimizer_step_pre_hooks and opt._optimizer_step_post_hooks
        raise RuntimeError("boom")
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    with pytest.raises(RuntimeError, match="boom"), block_reversion(model, {LAYER: torch.randn(12)}):
        raise RuntimeError("boom")
    assert no_hooks(model)


def test_submodule_call_without_reference_inputs_errors():
    model = mlp()
    with project_activations(model, {LAYER: torch.randn(12)}), pytest.raises(RuntimeError, match="no reference activation"):
        model[:3](torch.randn(2, 5))


# --------------------------------------------------------------------------- parameter projection
@pytest.mark.parametrize("sign", [1, -1])
def test_parameter_projection_sgd_step(sign):
    x = torch.randn(10, 5)
    model = mlp()
    v = unit(torch.randn(12))
    pd = parameter_directions(model, x, {LAYER: v})
    u = pd.vectors[0] / pd.vectors[0].norm()
    # J^T v really is the direction moving the probe-mean activation along v (finite difference)
    theta0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    eps = 1e-3
    torch.nn.utils.vector_to_parameters((theta0 + eps * u).clone(), model.parameters())
    h_plus = layer_output(model, LAYER, lambda m: m(x)).mean(0)
    torch.nn.utils.vector_to_parameters(theta0.clone(), model.parameters())
    h_base = layer_output(model, LAYER, lambda m: m(x)).mean(0)
    assert float((h_plus - h_base) @ v) / eps == pytest.approx(float(pd.vectors[0].norm()), rel=1e-2)

    target = torch.randn(10, 3)

    def one_step(project: bool) -> torch.Tensor:
        torch.nn.utils.vector_to_parameters(theta0.clone(), model.parameters())
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss = ((model(x) - target) ** 2).mean() - 0.5 * (model[:3](x).mean(0) @ v)
        opt.zero_grad()
        loss.backward()
        if project:
            with project_parameter_updates(opt, pd, sign=sign):
                opt.step()
        else:
            opt.step()
        return torch.nn.utils.parameters_to_vector(model.parameters()).detach() - theta0

    free, projected = one_step(False), one_step(True)
    assert abs(float(free @ u)) > 1e-4
    expected_along = 0.0 if sign == 1 else 2 * float(free @ u)
    assert float(projected @ u) == pytest.approx(expected_along, abs=1e-6)
    torch.testing.assert_close(projected - (projected @ u) * u, free - (free @ u) * u, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(projected, blocking.project_parameter_update(free, pd.vectors, sign=sign), atol=1e-6, rtol=1e-5)


def test_block_reversion_parameter_method_needs_optimizer_and_probes():
    with pytest.raises(ValueError, match="needs `optimizer=` and `probes=`"), block_reversion(
        mlp(), {LAYER: torch.randn(12)}, method="parameter"
    ):
        pass


# --------------------------------------------------------------------------- penalty
@pytest.mark.parametrize(("sign", "c", "penalised"), [(1, 0.7, True), (1, -0.7, False), (-1, 0.7, False), (-1, -0.7, True)])
def test_penalty_on_shift_along_and_orthogonal(sign, c, penalised):
    """Shift the layer's bias by c v + w (w orthogonal): the penalty is lam c^2 when the shift goes
    the blocked way, 0 otherwise, and its gradient never touches w."""
    x = torch.randn(6, 5)
    model = mlp()
    v = unit(torch.randn(12))
    w = torch.randn(12)
    w = w - (w @ v) * v
    pen = ReversionPenalty(model, x, {LAYER: v}, lam=2.0, sign=sign)
    with torch.no_grad():
        model[2].bias.add_(c * v + w)
    p = pen()
    assert float(p.detach()) == pytest.approx(2.0 * c**2 if penalised else 0.0, rel=1e-4, abs=1e-7)
    (g,) = torch.autograd.grad(p, model[2].bias)
    torch.testing.assert_close(g, (2 * 2.0 * c * v) if penalised else torch.zeros(12), atol=1e-5, rtol=1e-4)
    assert abs(float(g @ w)) < 1e-5
    assert no_hooks(model)


def test_penalty_training_reduces_motion_along_v_only():
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))
    v = unit(torch.randn(12, generator=torch.Generator().manual_seed(1)))
    w = torch.randn(12, generator=torch.Generator().manual_seed(2))
    w = unit(w - (w @ v) * v)

    def train(lam: float, sign: int = 1) -> tuple[float, float]:
        model = mlp()
        h0 = layer_output(model, LAYER, lambda m: m(x)).mean(0)
        pen = ReversionPenalty(model, x, {LAYER: v}, lam=lam, sign=sign, reduce="mean")
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(60):
            h = model[:3](x).mean(0)
            loss = -(h @ (v + w)) + pen()  # the task pulls along v and along w
            opt.zero_grad()
            loss.backward()
            opt.step()
        d = layer_output(model, LAYER, lambda m: m(x)).mean(0) - h0
        return float(d @ v), float(d @ w)

    along0, orth0 = train(0.0)
    along1, orth1 = train(20.0)
    assert along0 > 0.3 and along1 < 0.3 * along0
    assert orth1 == pytest.approx(orth0, rel=0.35)


# --------------------------------------------------------------------------- placebo
def test_placebo_directions():
    rng = np.random.default_rng(0)
    v = rng.normal(size=20) * 3
    u = placebo_direction(v, rng=1)
    assert np.linalg.norm(u) == pytest.approx(np.linalg.norm(v))
    assert abs(u @ v) < 1e-9
    acts = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 20))  # rank-3 activations
    uc = placebo_direction(v, kind="covariance", acts=acts, orthogonal=False, rng=2)
    basis = np.linalg.svd(acts - acts.mean(0), full_matrices=False)[2][:3]
    assert np.linalg.norm(uc - basis.T @ (basis @ uc)) < 1e-8 * np.linalg.norm(uc)
    assert np.allclose(placebo_direction(v, rng=5), placebo_direction(v, rng=5))
    with pytest.raises(ValueError, match="needs `acts=`"):
        placebo_direction(v, kind="covariance")
    with pytest.raises(ValueError, match="`kind` must be one of"):
        placebo_direction(v, kind="gaussian")


# --------------------------------------------------------------------------- validation
def test_validation_messages():
    model = mlp()
    with pytest.raises(ValueError, match="not a module of this model"), project_activations(model, {"nope": torch.randn(12)}):
        pass
    with pytest.raises(TypeError, match="`directions` must be a non-empty mapping"), project_activations(model, {}):
        pass
    with pytest.raises(ValueError, match="`sign` must be"), project_activations(model, {LAYER: torch.randn(12)}, sign=0):
        pass
    with pytest.raises(ValueError, match="`reduce` must be"), project_activations(model, {LAYER: torch.randn(12)}, reduce="sum"):
        pass
    with pytest.raises(ValueError, match="finite non-zero vector"), project_activations(model, {LAYER: torch.zeros(12)}):
        pass
    with pytest.raises(ValueError, match="`lam` must be a non-negative"):
        ReversionPenalty(model, torch.randn(3, 5), {LAYER: torch.randn(12)}, lam=-1)
    with pytest.raises(ValueError, match="`method` must be"), block_reversion(model, {LAYER: torch.randn(12)}, method="x"):
        pass
    with pytest.raises(TypeError, match="`optimizer` must be"), project_parameter_updates(object(), None):  # type: ignore[arg-type]
        pass
    assert no_hooks(model)
