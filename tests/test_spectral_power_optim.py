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


# ---- BeyondMuon's exact regularisation (regularization="beyondmuon") ------------------------------


def _bm_sqrt_invsqrt(A, iters=15, eps=1e-6):
    """BeyondMuon ``coupled_newton_schulz_sqrt_invsqrt`` (spectral_ns.py @ 56dd187), float64 loop."""
    k = A.shape[-1]
    eye = torch.eye(k, dtype=A.dtype)
    A = A + (eps + 1e-4 * torch.trace(A) / k) * eye
    s = A.norm()  # Frobenius
    Y, Z = A / s, eye.clone()
    every = max(1, min(iters // 3, 5))
    for i in range(iters):
        T = 0.5 * (3.0 * eye - Z @ Y)
        Y, Z = Y @ T, T @ Z
        if i > 0 and i % every == 0:
            Y, Z = 0.5 * (Y + Y.T), 0.5 * (Z + Z.T)
    Y, Z = 0.5 * (Y + Y.T), 0.5 * (Z + Z.T)
    return s.sqrt() * Y, Z / s.sqrt()


def _bm_half(U, iters=15):
    """BeyondMuon ``spectral_half_power_via_ns``: the right Gram for tall/square, else the left."""
    rows, cols = U.shape
    if cols <= rows:
        _, inv_sqrt = _bm_sqrt_invsqrt(U.T @ U, iters)
        return U @ _bm_sqrt_invsqrt(inv_sqrt, iters)[0]
    _, inv_sqrt = _bm_sqrt_invsqrt(U @ U.T, iters)
    return _bm_sqrt_invsqrt(inv_sqrt, iters)[0] @ U


def _bm_transform(U, p):
    for _ in range({0.5: 1, 0.25: 2}[p]):
        U = _bm_half(U)
    return U


@pytest.mark.parametrize("shape", [(12, 12), (20, 8), (6, 14)])
@pytest.mark.parametrize("p", [0.5, 0.25])
@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_beyondmuon_regularization_matches_their_formula_in_float64(shape, p, scale):
    g = torch.Generator().manual_seed(7)
    X = torch.randn(*shape, generator=g, dtype=torch.float64) * scale
    ours = muonlab.spectral_power(X, p, "newton", iters=15, ridge=1e-4, regularization="beyondmuon",
                                  compute_dtype=torch.float64)
    torch.testing.assert_close(ours, _bm_transform(X, p), rtol=1e-11, atol=0)


def _bm_reference(shapes, steps, p, base, lr, wd=0.0, mu=0.9, betas=(0.9, 0.95), eps=1e-8):
    """BeyondMuon's AdamW_NS / SGDW_NS with their transform, float64 (as _reference_loop)."""
    g = torch.Generator().manual_seed(123)
    W = [torch.randn(*s, generator=g).double() for s in shapes]
    buf = [torch.zeros_like(w) for w in W]
    v = [torch.zeros_like(w) for w in W]
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
            W[i] = W[i] - lr * _bm_transform(u, p)
    return W


@pytest.mark.parametrize("base", ["adam", "momentum"])
@pytest.mark.parametrize("p", [0.5, 0.25])
def test_optimizer_with_beyondmuon_regularization_is_their_optimizer(base, p):
    lr = BEYONDMUON_LR[(base, p)]
    kw = dict(p=p, base=base, lr=lr, weight_decay=0.1, regularization="beyondmuon", power_dtype="float64")
    params = [nn.Parameter(w) for w in _bm_reference(SHAPES, 0, p, base, lr)]
    opt = muonlab.HybridOptimizer(params, "spectral_power", **kw)
    for grads in _grads(4, SHAPES):
        for prm, gr in zip(params, grads):
            prm.grad = gr.double()
        opt.step()
    for ours, ref in zip(params, _bm_reference(SHAPES, 4, p, base, lr, wd=0.1)):
        torch.testing.assert_close(ours.detach(), ref, rtol=1e-11, atol=1e-12)


def test_homogeneous_default_is_scale_free_and_beyondmuon_is_not():
    """Why "homogeneous" is the default: at gradient scale BeyondMuon's absolute 1e-6 dominates."""
    from conftest import make_matrix

    X = make_matrix(16, 48, torch.logspace(0, -1, 16, dtype=torch.float64)) * 1e-4
    exact = muonlab.spectral_power(X, 0.5, "svd", compute_dtype=torch.float64)
    err = {}
    for reg in ("homogeneous", "beyondmuon"):
        Y = muonlab.spectral_power(X, 0.5, "newton", iters=15, ridge=1e-4, regularization=reg,
                                   compute_dtype=torch.float64)
        err[reg] = ((Y - exact).norm() / exact.norm()).item()
        if reg == "homogeneous":
            Y1 = muonlab.spectral_power(X * 1e4, 0.5, "newton", iters=15, ridge=1e-4, compute_dtype=torch.float64)
            torch.testing.assert_close(Y, Y1 * 1e-2, rtol=1e-12, atol=0)  # Ψ(cX) = c^½ Ψ(X)
    assert err["homogeneous"] < 1e-3 and err["beyondmuon"] > 0.5


@pytest.mark.parametrize("sigma, lift", [(torch.logspace(0, -2, 16, dtype=torch.float64), (8e-4, 1.5e-3)),
                                         (torch.tensor([1.0] + [1e-2] * 15, dtype=torch.float64), (4e-3, 6e-3))],
                         ids=["geometric", "clustered_low"])
def test_beyondmuon_second_ridge_lifts_the_top_singular_value(sigma, lift):
    """≈ ½·1e-4·σ_max·mean(1/σ_i) on the largest output; the homogeneous form keeps it within 1e-5."""
    from conftest import make_matrix

    X = make_matrix(16, 48, sigma)
    top = {}
    for reg in ("homogeneous", "beyondmuon"):
        Y = muonlab.spectral_power(X, 0.5, "newton", iters=15, ridge=1e-4, regularization=reg,
                                   compute_dtype=torch.float64)
        top[reg] = (torch.linalg.svdvals(Y)[0] / sigma.max().sqrt() - 1).item()
    predicted = 0.5e-4 * (1 / sigma).mean().item()
    assert abs(top["homogeneous"]) < 1e-5
    assert lift[0] < top["beyondmuon"] < lift[1]
    assert top["beyondmuon"] == pytest.approx(predicted, rel=0.1)


def test_the_two_regularizations_agree_closely_on_adam_updates():
    kw = dict(p=0.5, lr=BEYONDMUON_LR[("adam", 0.5)], power_dtype="float64")
    a = _trajectory(lambda ps: muonlab.HybridOptimizer(ps, "spectral_power", **kw), steps=20)
    b = _trajectory(lambda ps: muonlab.HybridOptimizer(ps, "spectral_power", regularization="beyondmuon", **kw),
                    steps=20)
    g = torch.Generator().manual_seed(123)
    W0 = [torch.randn(*s, generator=g) for s in SHAPES]
    for w0, x, y in zip(W0, a[-1], b[-1]):
        assert (x - y).norm() / (y - w0).norm() < 1e-3


def test_beyondmuon_regularization_needs_the_newton_route():
    p = nn.Parameter(torch.randn(4, 3))
    with pytest.raises(ValueError, match="beyondmuon"):
        muonlab.HybridOptimizer([p], "spectral_power", p=0.3, regularization="beyondmuon")
    with pytest.raises(ValueError, match="beyondmuon"):
        muonlab.HybridOptimizer([p], "spectral_power", power_method="eigh", regularization="beyondmuon")
    with pytest.raises(ValueError, match="regularization"):
        muonlab.spectral_power(torch.randn(4, 3), 0.5, regularization="ridge")
    muonlab.HybridOptimizer([p], "spectral_power", p=0.0, regularization="beyondmuon")  # p = 0: Muon, no ridge
