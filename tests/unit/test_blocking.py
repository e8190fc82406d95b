"""Blocking definitions: blocked component removed/penalised, orthogonal motion untouched,
push does the opposite. NumPy always; torch (same functions, autograd) when importable."""

from __future__ import annotations

import numpy as np
import pytest

from revstats import blocking as B


def _setup(rng, n=6, d=10):
    v = rng.standard_normal(d)
    v /= np.linalg.norm(v)
    h0 = rng.standard_normal((n, d))
    orth = rng.standard_normal((n, d))
    orth -= np.outer(orth @ v, v)
    return v, h0, orth


def test_penalty_zero_for_orthogonal_motion_and_away_motion():
    rng = np.random.default_rng(0)
    v, h0, orth = _setup(rng)
    assert B.reversion_penalty(h0 + orth, h0, v, lam=3.0) == pytest.approx(0.0, abs=1e-12)
    away = h0 + orth - 0.5 * v
    assert B.reversion_penalty(away, h0, v, lam=3.0) == 0.0
    # push is the mirror image: motion away is penalised, motion toward is free
    assert B.reversion_penalty(away, h0, v, lam=3.0, sign=-1) == pytest.approx(3.0 * 0.25)
    assert B.reversion_penalty(h0 + 0.5 * v, h0, v, lam=3.0, sign=-1) == 0.0


def test_penalty_value_per_probe_and_mean():
    rng = np.random.default_rng(1)
    v, h0, orth = _setup(rng, n=4)
    c = np.array([1.0, -2.0, 0.5, 3.0])
    ht = h0 + orth + c[:, None] * v
    expect_pp = 2.0 * np.mean(np.maximum(c, 0) ** 2)
    assert B.reversion_penalty(ht, h0, v, lam=2.0) == pytest.approx(expect_pp)
    assert B.reversion_penalty(ht, h0, v, lam=2.0, reduce="mean") == pytest.approx(
        2.0 * max(c.mean(), 0) ** 2
    )


@pytest.mark.parametrize("reduce", ["per_probe", "mean"])
@pytest.mark.parametrize("sign", [1, -1])
def test_penalty_grad_matches_finite_differences(reduce, sign):
    rng = np.random.default_rng(2)
    v = rng.standard_normal((2, 5))  # two directions, un-normalised on purpose
    h0 = rng.standard_normal((3, 4, 5))
    ht = h0 + rng.standard_normal((3, 4, 5))
    g = B.reversion_penalty_grad(ht, h0, v, lam=1.7, sign=sign, reduce=reduce)
    eps = 1e-6
    num = np.zeros_like(ht)
    for idx in np.ndindex(ht.shape):
        e = np.zeros_like(ht)
        e[idx] = eps
        num[idx] = (
            B.reversion_penalty(ht + e, h0, v, lam=1.7, sign=sign, reduce=reduce)[idx[0]]
            - B.reversion_penalty(ht - e, h0, v, lam=1.7, sign=sign, reduce=reduce)[idx[0]]
        ) / (2 * eps)
    np.testing.assert_allclose(g, num, atol=1e-6)


def test_gradient_descent_on_penalty_removes_blocked_component_only():
    rng = np.random.default_rng(3)
    v, h0, orth = _setup(rng)
    ht = h0 + orth + 2.0 * v
    for _ in range(200):
        ht = ht - 0.5 * B.reversion_penalty_grad(ht, h0, v, lam=ht.shape[0])
    np.testing.assert_allclose((ht - h0) @ v, 0.0, atol=1e-8)
    drift = ht - h0
    np.testing.assert_allclose(drift - np.outer(drift @ v, v), orth, atol=1e-10)


def test_projection_removes_pushes_and_keeps_orthogonal():
    rng = np.random.default_rng(4)
    v, _, orth = _setup(rng)
    u = orth + 1.5 * v
    blocked = B.project_off(u, v)
    np.testing.assert_allclose(blocked @ v, 0.0, atol=1e-12)
    np.testing.assert_allclose(blocked, orth, atol=1e-12)
    pushed = B.project_off(u, v, sign=-1)
    np.testing.assert_allclose(pushed @ v, 3.0, atol=1e-12)
    np.testing.assert_allclose(pushed - np.outer(pushed @ v, v), orth, atol=1e-12)
    # idempotent
    np.testing.assert_allclose(B.project_off(blocked, v), blocked, atol=1e-12)


def test_projection_several_directions_and_activation_update():
    rng = np.random.default_rng(5)
    V = rng.standard_normal((3, 12))
    u = rng.standard_normal((7, 12))
    out = B.project_off(u, V)
    np.testing.assert_allclose(out @ V.T, 0.0, atol=1e-10)
    q, _ = np.linalg.qr(V.T)
    np.testing.assert_allclose(out, u - (u @ q) @ q.T, atol=1e-12)
    h_old = rng.standard_normal((7, 12))
    h_new = B.project_activation_update(h_old + u, h_old, V)
    np.testing.assert_allclose((h_new - h_old) @ V.T, 0.0, atol=1e-10)
    np.testing.assert_allclose(B.project_parameter_update(u, V), out)


def test_penalty_over_layers_sums():
    rng = np.random.default_rng(6)
    v, h0, orth = _setup(rng)
    one = B.reversion_penalty(h0 + v, h0, v)
    assert B.penalty_over_layers({"a": (h0 + v, h0, v), "b": (h0 + v, h0, v)}) == pytest.approx(
        2 * one
    )


def test_validation_messages():
    h = np.zeros((2, 3))
    v = np.ones(3)
    with pytest.raises(ValueError, match="`sign` must be"):
        B.reversion_penalty(h, h, v, sign=0)
    with pytest.raises(ValueError, match="`reduce` must be"):
        B.reversion_penalty(h, h, v, reduce="sum")
    with pytest.raises(ValueError, match="`lam` must be a non-negative"):
        B.reversion_penalty(h, h, v, lam=-1)
    with pytest.raises(TypeError, match="`lam` must be"):
        B.reversion_penalty(h, h, v, lam="x")
    with pytest.raises(ValueError, match="`v` has 4 hidden units"):
        B.reversion_penalty(h, h, np.ones(4))
    with pytest.raises(ValueError, match="zero vector"):
        B.project_off(h, np.zeros(3))
    with pytest.raises(ValueError, match=r"`v` must have shape"):
        B.project_off(h, np.ones((1, 1, 3)))
    with pytest.raises(ValueError, match=r"`h_t` must have shape"):
        B.reversion_penalty(np.ones(3), np.ones(3), v)
    with pytest.raises(ValueError, match="`strength` must be >= 0"):
        B.project_off(h, v, strength=-1)
    with pytest.raises(TypeError, match="`strength` must be a number"):
        B.project_off(h, v, strength="a")
    with pytest.raises(ValueError, match="`layers` is empty"):
        B.penalty_over_layers({})


def test_torch_same_definition_and_autograd():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    v = rng.standard_normal(6)
    h0 = rng.standard_normal((5, 6))
    ht = h0 + rng.standard_normal((5, 6))
    for reduce in ("per_probe", "mean"):
        for sign in (1, -1):
            t = torch.tensor(ht, requires_grad=True)
            p = B.reversion_penalty(t, torch.tensor(h0), torch.tensor(v), lam=0.7, sign=sign,
                                    reduce=reduce)
            p.backward()
            assert float(p.detach()) == pytest.approx(
                float(B.reversion_penalty(ht, h0, v, lam=0.7, sign=sign, reduce=reduce))
            )
            np.testing.assert_allclose(
                t.grad.numpy(),
                B.reversion_penalty_grad(ht, h0, v, lam=0.7, sign=sign, reduce=reduce),
                atol=1e-10,
            )
    out = B.project_off(torch.tensor(ht), torch.tensor(v))
    np.testing.assert_allclose(out.numpy(), B.project_off(ht, v), atol=1e-12)


def test_blocking_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, revstats.blocking; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
