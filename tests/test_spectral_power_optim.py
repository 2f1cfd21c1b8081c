"""The spectral_power optimizer: its endpoints equal Muon / SGD / AdamW, its middle a for-loop reference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import muonlab
from muonlab.optim.spectral_power import BEYONDMUON_LR

SHAPES = [(12, 12), (20, 8), (6, 14)]


def _grads(steps: int, shapes, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(*s, generator=g) for s in shapes] for _ in range(steps)]


def _trajectory(make_opt, steps: int = 5, shapes=SHAPES, seed: int = 0):
    """Parameters after each step when fed a fixed sequence of random gradients."""
    g = torch.Generator().manual_seed(123)
    params = [nn.Parameter(torch.randn(*s, generator=g)) for s in shapes]
    opt = make_opt(params)
    out = []
    for grads in _grads(steps, shapes, seed):
        for p, gr in zip(params, grads):
            p.grad = gr.clone()
        opt.step()
        out.append([p.detach().clone() for p in params])
    return out


def _assert_same(a, b, exact=True, rtol=1e-5, atol=1e-6):
    for step_a, step_b in zip(a, b):
        for x, y in zip(step_a, step_b):
            if exact:
                assert torch.equal(x, y)
            else:
                torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


@pytest.mark.parametrize(
    "orth", [{}, {"orthogonalizer": "svd"}, {"orthogonalizer": "polar_express", "ns_steps": 8}]
)
def test_p0_momentum_base_is_muon_with_the_same_orthogonalizer(orth):
    kw = dict(lr=0.03, weight_decay=0.1, momentum=0.9, nesterov=False, momentum_form="accumulate", **orth)
    ours = _trajectory(lambda ps: muonlab.HybridOptimizer(ps, "spectral_power", p=0.0, base="momentum", **kw))
    ns = {"ns_steps": 15} if not orth else {}  # BeyondMuon's 15 Newton–Schulz steps are the default
    muon = _trajectory(lambda ps: muonlab.HybridOptimizer(ps, "muon", **ns, **kw))
    _assert_same(ours, muon)


def test_p1_momentum_base_is_momentum_sgd():
    ours = _trajectory(lambda ps: muonlab.HybridOptimizer(ps, "spectral_power", p=1.0, base="momentum", lr=0.1))
    sgd = _trajectory(lambda ps: muonlab.HybridOptimizer(ps, "sgd", lr=0.1, momentum=0.9))
    _assert_same(ours, sgd)
    torch_sgd = _trajectory(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9))
    _assert_same(ours, torch_sgd, exact=False)


def test_p1_adam_base_is_adamw():
    kw = dict(lr=1e-2, weight_decay=0.05)
    ours = _trajectory(lambda ps: muonlab.HybridOptimizer(ps, "spectral_power", p=1.0, **kw))
    ref = _trajectory(lambda ps: torch.optim.AdamW(ps, betas=(0.9, 0.95), eps=1e-8, **kw))
    _assert_same(ours, ref, exact=False)


def _reference_loop(shapes, steps, p, base, lr, wd=0.0, mu=0.9, betas=(0.9, 0.95), eps=1e-8):
    """Float64 for-loop of BeyondMuon's SGDW_NS / AdamW_NS with an exact SVD transform."""
    g = torch.Generator().manual_seed(123)
    W = [torch.randn(*s, generator=g).double() for s in shapes]
    buf = [torch.zeros_like(w) for w in W]
    v = [torch.zeros_like(w) for w in W]
    out = []
    for t, grads in enumerate(_grads(steps, shapes), start=1):
        for i, gr in enumerate(grads):
            gr = gr.double()
            W[i] = W[i] * (1 - lr * wd)
            if base == "momentum":
                buf[i] = mu * buf[i] + gr
                u = buf[i]
            else:
                buf[i] = betas[0] * buf[i] + (1 - betas[0]) * gr
                v[i] = betas[1] * v[i] + (1 - betas[1]) * gr**2
                u = (buf[i] / (1 - betas[0] ** t)) / ((v[i] / (1 - betas[1] ** t)).sqrt() + eps)
            U, S, Vh = torch.linalg.svd(u, full_matrices=False)
            m, n = u.shape
            scale = max(1, m / n) ** 0.5 if p == 0 else 1.0
            W[i] = W[i] - lr * scale * (U * S.pow(p)) @ Vh
        out.append([w.clone() for w in W])
    return out


@pytest.mark.parametrize("base", ["adam", "momentum"])
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.7])
def test_matches_a_float64_reference_loop(base, p):
    lr = BEYONDMUON_LR.get((base, p), 0.05)
    kw = dict(p=p, base=base, lr=lr, weight_decay=0.1, power_method="svd", orthogonalizer="svd")
    ours = _trajectory(lambda ps: muonlab.HybridOptimizer(ps, "spectral_power", **kw), steps=4)
    ref = _reference_loop(SHAPES, 4, p, base, lr, wd=0.1)
    for a, b in zip(ours, ref):
        for x, y in zip(a, b):
            torch.testing.assert_close(x.double(), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("base", ["adam", "momentum"])
@pytest.mark.parametrize("p", [0.25, 0.5, 0.7])
def test_default_matmul_routes_track_the_svd_route(base, p):
    """The coupled-Newton (p = 1/2, 1/4) and Gram-eigh (other p) routes with BeyondMuon's ridge stay
    within a few percent of the exact-SVD trajectory."""
    kw = dict(p=p, base=base, lr=BEYONDMUON_LR.get((base, p), 0.05))
    fast = _trajectory(lambda ps: muonlab.HybridOptimizer(ps, "spectral_power", **kw))
    exact = _trajectory(lambda ps: muonlab.HybridOptimizer(ps, "spectral_power", power_method="svd", **kw))
    g = torch.Generator().manual_seed(123)
    W0 = [torch.randn(*s, generator=g) for s in SHAPES]
    for w0, a, b in zip(W0, fast[-1], exact[-1]):
        assert (a - b).norm() / (b - w0).norm() < 0.03


def test_invalid_combinations_raise_at_construction():
    p = nn.Parameter(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"p=0\.3"):
        muonlab.HybridOptimizer([p], "spectral_power", p=0.3, power_method="newton")
    with pytest.raises(ValueError, match="1.5"):
        muonlab.HybridOptimizer([p], "spectral_power", p=1.5)
    with pytest.raises(ValueError, match="'rms'"):
        muonlab.HybridOptimizer([p], "spectral_power", base="rms")


def test_state_matches_the_base():
    p = nn.Parameter(torch.randn(4, 3))
    for base, keys in [("adam", {"step", "exp_avg", "exp_avg_sq"}), ("momentum", {"step", "momentum_buffer"})]:
        opt = muonlab.HybridOptimizer([p], "spectral_power", base=base)
        p.grad = torch.randn(4, 3)
        opt.step()
        assert set(opt.state[p]) == keys


def _mlp_loss(name, steps=100, **hp):
    torch.manual_seed(0)
    X = torch.randn(256, 10)
    teacher = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 1))
    with torch.no_grad():
        y = teacher(X)
    model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    opt = muonlab.create_optimizer(model, name, **hp)
    losses = []
    for _ in range(steps):
        loss = (model(X) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize(
    "hp",
    [{}, {"p": 0.25, "lr": 2e-2}, {"base": "momentum", "lr": 0.2}, {"base": "momentum", "p": 0.3, "lr": 0.1}],
    ids=["defaults", "adam-q", "msgd-s", "msgd-eigh"],
)
def test_trains_a_small_mlp(hp):
    losses = _mlp_loss("spectral_power", **hp)
    assert losses[-1] < 0.1 * losses[0]
