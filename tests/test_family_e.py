"""Family E (issue 15): LiMuon, AuON, SUMO, LANTON, REG — float64 for-loop references written from
the sources, reductions to known rules, and the behaviours the sources state.

The torch.optim contract and "defaults train an MLP via create_optimizer" run for every registered
method in tests/test_contract.py. Sources: AuON (Maity, arXiv 2509.24320; github ryyzn9/AuON
``Auon_Adam_train.py`` @ c87b862 and ``auon/optimizer.py`` @ bba2e82), LiMuon (Huang, Luo, Chen,
arXiv 2509.14562, via junaidaliop/zij ``canon/math/limuon.md``), SUMO (Refael et al., arXiv
2505.24749, via zij ``canon/math/sumo.md``), LANTON (Hao et al., arXiv 2510.14009) and REG (Liu et
al., arXiv 2510.03691) — the last two reconstructions, so their tests pin our documented reading.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

import muonlab
from muonlab.optim import LocalExecutor
from muonlab.optim.auon import cosh_brake
from muonlab.optim.lanton import lanton_lr_factors, layer_factors
from muonlab.optim.limuon import previous_gradients, randomized_svd, storm_step
from muonlab.optim.reg import balance

F64 = torch.float64
SHAPES = [(12, 8), (6, 10), (7, 7)]


def _params(shapes=SHAPES, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(*s, generator=g, dtype=dtype)) for s in shapes]


def _grads(t, params, seed=1):
    g = torch.Generator().manual_seed(seed * 1000 + t)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]


def _step(opt, params, grads):
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt.step()


def _run(name, params, steps, grads=_grads, executor=None, **kw):
    opt = muonlab.HybridOptimizer(params, name, executor=executor, **kw)
    for t in range(steps):
        _step(opt, params, grads(t, params))
    return opt


def _polar(G):
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    return U @ Vh


def _close(a, b, tol):
    err = (a - b).abs().max().item()
    assert err <= tol * max(1.0, b.abs().max().item()), err


EXACT_MUON = {"orthogonalizer": "svd", "nesterov": False, "adjust_lr_fn": "none"}


@pytest.mark.parametrize("name,kw", [
    ("auon", {}), ("auon", {"hybrid": True, "orthogonalizer": "svd"}),
    ("limuon", {"rank": 3}), ("sumo", {"rank": 3, "update_proj_gap": 2}),
    ("lanton", {"nuclear": "svd", "orthogonalizer": "svd"}), ("reg", {"stats": "ema"}),
])
def test_batched_matrix_phase_equals_one_matrix_at_a_time(name, kw):
    """Same-shape matrices stacked into one matrix_fn call give the per-matrix results (seeded draws
    depend on the parameter, not on its place in the batch)."""
    shapes = [(8, 6)] * 3 + [(5, 9)]
    a, b = _params(shapes), _params(shapes)
    _run(name, a, 4, executor=LocalExecutor(batch=True), **kw)
    _run(name, b, 4, executor=LocalExecutor(batch=False), **kw)
    for x, y in zip(a, b):
        _close(x.detach(), y.detach(), 1e-12)


# ---- AuON (arXiv 2509.24320; ryyzn9/AuON) --------------------------------------------------------


def _auon_reference(params, steps, lr, beta, wd, gamma, raw, shape, hybrid=False):
    ps = [p.detach().clone() for p in params]
    bufs = [torch.zeros_like(p) for p in ps]
    for t in range(steps):
        for p, buf, g in zip(ps, bufs, _grads(t, params)):
            m, n = p.shape
            buf.mul_(beta).add_(g, alpha=1 - beta)  # m.lerp_(g, 1 − β)
            Y = (1 - beta) * g + beta * buf          # Nesterov: g.lerp_(m, β)
            if hybrid:
                Y = _polar(Y)
            X = Y / (Y.norm() + 1e-7)
            r = torch.cosh(gamma * X).pow(2).mean().sqrt()
            U = (Y if raw else X) / (r + 1e-8)
            s = max(1.0, m / n) ** 0.5 if shape else 1.0
            p.mul_(1 - lr * wd).sub_(lr * s * U)
    return ps


@pytest.mark.parametrize("form", ["paper", "package", "hybrid"])
def test_auon_matches_the_authors_code_in_float64(form):
    """paper: experiment script (normalised X, γ = 1, √max(1, m/n)); package: AuON class (raw Y,
    γ = 1.5, no shape factor, decoupled decay); hybrid: HybridAuON with an exact polar factor."""
    params = _params()
    if form == "paper":
        ref = _auon_reference(params, 5, 0.24, 0.95, 0.0, 1.0, False, True)
        _run("auon", params, 5)
    else:
        kw = {"update_of": "raw", "gamma": 1.5, "adjust_lr_fn": "none", "weight_decay": 0.1, "lr": 0.05}
        if form == "hybrid":
            kw.update(hybrid=True, orthogonalizer="svd")
        ref = _auon_reference(params, 5, 0.05, 0.95, 0.1, 1.5, True, False, hybrid=form == "hybrid")
        _run("auon", params, 5, **kw)
    for x, y in zip(params, ref):
        _close(x.detach(), y, 1e-12)


def test_auon_brake_values():
    """r = √mean(cosh(γX)²) ≥ 1; a one-hot matrix gives r² = (cosh(γx)² + mn − 1)/mn, x ≈ 1; for a
    large dense matrix r → 1 (the update is nearly the Frobenius-normalised momentum)."""
    E = torch.zeros(3, 4, dtype=F64)
    E[1, 2] = 5.0
    x = 5.0 / (5.0 + 1e-7)  # the 1e-7 of the Frobenius normaliser
    r = math.sqrt((math.cosh(1.5 * x) ** 2 + 11) / 12)
    _close(cosh_brake(E, 1.5), E / 5.0 * x / (r + 1e-8), 1e-14)
    _close(cosh_brake(E, 1.5, "raw"), E / (r + 1e-8), 1e-14)
    G = torch.randn(256, 256, dtype=F64)
    U = cosh_brake(G)
    assert 1 - 1e-4 < U.norm().item() < 1.0


# ---- LiMuon (arXiv 2509.14562) --------------------------------------------------------------------


def test_limuon_without_correction_from_zero_is_muon():
    """γ = 0 and M starting at 0: EMA momentum μ, exact polar factor, no shape factor — Muon."""
    a, b = _params(), _params()
    kw = {"lr": 0.03, "momentum": 0.8, "weight_decay": 0.1}
    _run("limuon", a, 5, gamma=0.0, momentum_init="zero", **kw)
    _run("muon", b, 5, **EXACT_MUON, **kw)
    for x, y in zip(a, b):
        _close(x.detach(), y.detach(), 1e-12)


def test_limuon_approx_storm_with_gamma_one_has_no_momentum():
    """With g̃ = the previous gradient, M_t − g_t = μ(M_{t−1} − g_{t−1}) = 0: each step is polar(g_t)."""
    a, b = _params(), _params()
    _run("limuon", a, 5, gamma=1.0, lr=0.03)
    _run("muon", b, 5, momentum=0.0, weight_decay=0.0, lr=0.03, **EXACT_MUON)
    for x, y in zip(a, b):
        _close(x.detach(), y.detach(), 1e-12)


def test_limuon_approx_matches_float64_reference():
    params = _params()
    mu, gamma, lr = 0.9, 0.025, 0.02
    ps = [p.detach().clone() for p in params]
    Ms, prev = [None] * 3, [None] * 3
    for t in range(6):
        for i, (p, g) in enumerate(zip(ps, _grads(t, params))):
            Ms[i] = g.clone() if t == 0 else (1 - mu) * g + mu * Ms[i] + gamma * mu * (g - prev[i])
            prev[i] = g
            p.sub_(lr * _polar(Ms[i]))
    _run("limuon", params, 6)
    for x, y in zip(params, ps):
        _close(x.detach(), y, 1e-12)


class _Regression(nn.Module):
    """y = W x, one LiMuon matrix and nothing else: exact STORM over the whole model."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(5, 7, dtype=F64, generator=torch.Generator().manual_seed(3)))

    def forward(self, x):
        return x @ self.w.T


def _batch(t):
    g = torch.Generator().manual_seed(50 + t)
    return torch.randn(16, 7, generator=g, dtype=F64), torch.randn(16, 5, generator=g, dtype=F64)


def _loss_grad(W, x, y):
    W = W.detach().clone().requires_grad_(True)
    loss = (x @ W.T - y).pow(2).mean()
    loss.backward()
    return W.grad


def test_limuon_exact_storm_matches_float64_reference():
    """M_0 = g_0; M_t = g_t + (1−β)(M_{t−1} − ∇f(W_{t−1}; ξ_t)); W ← W − η·UVᵀ — two gradients per
    step on the same batch, through storm_step."""
    model = _Regression()
    W, W_prev, M = model.w.detach().clone(), None, None
    beta, lr = 0.3, 0.05
    for t in range(6):
        x, y = _batch(t)
        g = _loss_grad(W, x, y)
        M = g if t == 0 else g + (1 - beta) * (M - _loss_grad(W_prev, x, y))
        W_prev, W = W, W - lr * _polar(M)
    opt = muonlab.HybridOptimizer(model.parameters(), "limuon", storm="exact", momentum=1 - beta, lr=lr)
    for t in range(6):
        x, y = _batch(t)

        def closure(x=x, y=y):
            opt.zero_grad()
            loss = (model(x) - y).pow(2).mean()
            loss.backward()
            return loss

        storm_step(opt, closure)
    _close(model.w.detach(), W, 1e-12)


def test_limuon_exact_needs_the_previous_gradients_and_restores_the_model():
    model = _Regression()
    opt = muonlab.HybridOptimizer(model.parameters(), "limuon", storm="exact")
    x, y = _batch(0)

    def closure():
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        return loss

    closure()
    assert previous_gradients(opt, closure) is None  # no previous point before the first step
    opt.step()
    closure()
    with pytest.raises(RuntimeError, match="previous_gradients"):
        opt.step()
    W, G = model.w.detach().clone(), model.w.grad.clone()
    previous_gradients(opt, closure)
    assert torch.equal(model.w, W) and torch.equal(model.w.grad, G)
    st = opt.state[model.w]
    _close(st["prev_grad"], _loss_grad(st["prev_param"], x, y), 1e-14)
    opt.step()  # now accepted


def test_limuon_low_rank_at_full_rank_equals_full_momentum():
    a, b = _params(), _params()
    _run("limuon", a, 5, rank=12)
    _run("limuon", b, 5)
    for x, y in zip(a, b):
        _close(x.detach(), y.detach(), 1e-10)


def _low_rank_grads(t, params, r=2):
    """Gradients A_j C_t B_jᵀ in fixed rank-r subspaces: the momentum stays in them."""
    out = []
    for j, p in enumerate(params):
        g = torch.Generator().manual_seed(10 + j)
        A, B = torch.randn(p.shape[0], r, generator=g, dtype=F64), torch.randn(p.shape[1], r, generator=g, dtype=F64)
        C = torch.randn(r, r, generator=torch.Generator().manual_seed(100 * j + t), dtype=F64)
        out.append(A @ C @ B.T)
    return out


def test_limuon_low_rank_is_exact_on_low_rank_momentum_and_stores_only_factors():
    a, b = _params(), _params()
    opt = _run("limuon", a, 5, grads=_low_rank_grads, rank=2)
    _run("limuon", b, 5, grads=_low_rank_grads)
    for x, y in zip(a, b):
        _close(x.detach(), y.detach(), 1e-9)
    for p in a:
        st = opt.state[p]
        assert "momentum_buffer" not in st
        m, n = p.shape
        assert st["lowrank_U"].shape == (m, 2) and st["lowrank_S"].shape == (2,) and st["lowrank_V"].shape == (n, 2)


def test_limuon_low_rank_update_has_rank_r_and_is_reproducible():
    (p,) = _params([(20, 16)])
    q = nn.Parameter(p.detach().clone())
    W0 = p.detach().clone()
    _run("limuon", [p], 1, rank=3, lr=0.1)
    D = (W0 - p.detach()) / 0.1
    s = torch.linalg.svdvals(D)
    _close(s[:3], torch.ones(3, dtype=F64), 1e-12)
    assert s[3:].max() < 1e-12
    _run("limuon", [q], 1, rank=3, lr=0.1)
    assert torch.equal(p, q)


def test_randomized_svd():
    """Exact on a matrix of rank ≤ r; with subspace iterations, close to the top singular values."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(30, 4, generator=g, dtype=F64) @ torch.randn(4, 20, generator=g, dtype=F64)
    U, S, V = randomized_svd(A, 4, generator=torch.Generator().manual_seed(1))
    _close(U @ torch.diag(S) @ V.T, A, 1e-12)
    B = torch.randn(40, 30, generator=g, dtype=F64)
    _, S, _ = randomized_svd(B, 3, power_iters=6, generator=torch.Generator().manual_seed(1))
    _close(S, torch.linalg.svdvals(B)[:3], 1e-3)


# ---- SUMO (arXiv 2505.24749) ----------------------------------------------------------------------


@pytest.mark.parametrize("method,K", [("randomized", 1), ("svd", 3), ("randomized", 200)])
def test_sumo_full_rank_is_accumulate_momentum_muon(method, K):
    """r = min(m, n): Q square, QM = accumulated momentum, QO = its polar factor."""
    a, b = _params(), _params()
    kw = {"lr": 0.03, "momentum": 0.9, "weight_decay": 0.1}
    _run("sumo", a, 6, subspace_method=method, update_proj_gap=K, **kw)
    _run("muon", b, 6, momentum_form="accumulate", **EXACT_MUON, **kw)
    for x, y in zip(a, b):
        _close(x.detach(), y.detach(), 1e-10)


def _sumo_reference(params, steps, lr, mu, r, K, residual, gamma, side="small"):
    ps = [p.detach().clone() for p in params]
    st = [{"Q": None, "M": None, "prev": None} for _ in ps]
    for t in range(steps):
        for p, s, g in zip(ps, st, _grads(t, params)):
            tr = side == "small" and p.shape[0] > p.shape[1]
            G = g.T if tr else g
            if t % K == 0:
                Q = torch.linalg.svd(G)[0][:, :r]
                s["M"] = torch.zeros(r, G.shape[1], dtype=F64) if s["Q"] is None else Q.T @ s["Q"] @ s["M"]
                s["Q"] = Q
            Q = s["Q"]
            Gh = Q.T @ G
            s["M"] = mu * s["M"] + Gh
            D = Q @ _polar(s["M"])
            if residual:
                D = D + G - Q @ Gh
            if s["prev"] is not None and D.norm() > gamma * s["prev"]:
                D = D * (gamma * s["prev"] / D.norm())
            s["prev"] = D.norm()
            p.sub_(lr * (D.T if tr else D))
    return ps


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("side", ["small", "left"])
def test_sumo_low_rank_matches_float64_reference(residual, side):
    params = _params()
    ref = _sumo_reference(params, 7, 0.02, 0.9, 3, 3, residual, 1.1, side)
    _run("sumo", params, 7, lr=0.02, momentum=0.9, rank=3, update_proj_gap=3, residual=residual,
         subspace_method="svd", project_side=side)
    for x, y in zip(params, ref):
        _close(x.detach(), y, 1e-10)


def test_sumo_subspace_refreshes_at_1_K_plus_1_and_update_has_rank_r():
    (p,) = _params([(10, 16)])
    opt = muonlab.HybridOptimizer([p], "sumo", rank=2, update_proj_gap=3)
    Qs = []
    for t in range(7):
        W = p.detach().clone()
        _step(opt, [p], _grads(t, [p]))
        Qs.append(opt.state[p]["Q"].clone())
        s = torch.linalg.svdvals(W - p.detach())
        assert s[2:].max() < 1e-12 * s[0]
    changed = [not torch.equal(Qs[i], Qs[i - 1]) for i in range(1, 7)]
    assert changed == [False, False, True, False, False, True]  # steps 4 and 7
    st = opt.state[p]
    assert st["Q"].shape == (10, 2) and st["moment"].shape == (2, 16)


def test_sumo_norm_growth_limiter_bounds_the_residual_update():
    """With the residual, a gradient 10× larger can grow the update by at most γ per step."""
    (p,) = _params([(8, 12)])
    opt = muonlab.HybridOptimizer([p], "sumo", rank=2, residual=True, lr=1.0, norm_growth_limit=1.1)
    norms = []
    for t in range(4):
        W = p.detach().clone()
        _step(opt, [p], [g * (10.0 ** t) for g in _grads(t, [p])])
        norms.append((W - p.detach()).norm().item())
    for a, b in itertools.pairwise(norms):
        assert b == pytest.approx(1.1 * a, rel=1e-12)


# ---- LANTON (arXiv 2510.14009) --------------------------------------------------------------------


def _rotated_grads(t, params):
    """The same noisy gradient for every layer, rotated by a fixed orthogonal matrix per layer:
    equal dual norms (identical noise), different directions."""
    base = torch.randn(8, 6, generator=torch.Generator().manual_seed(t), dtype=F64)
    out = []
    for j, _ in enumerate(params):
        Q, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(90 + j), dtype=F64))
        out.append(Q @ base)
    return out


def test_lanton_with_identical_noise_is_its_base_muon():
    shapes = [(8, 6)] * 3
    a, b = _params(shapes), _params(shapes)
    kw = {"lr": 0.03, "momentum": 0.9, "weight_decay": 0.1, "orthogonalizer": "svd", "adjust_lr_fn": "spectral_norm"}
    opt = _run("lanton", a, 6, grads=_rotated_grads, nuclear="svd", **kw)
    _run("muon", b, 6, grads=_rotated_grads, **kw)
    for x, y in zip(a, b):
        _close(x.detach(), y.detach(), 1e-12)
    assert all(f == pytest.approx(1.0, abs=1e-12) for f in lanton_lr_factors(opt).values())


def test_lanton_noisy_layer_gets_its_lr_cut_by_the_noise_ratio():
    """Two layers with the same signal; the second gets extra Gaussian noise. Float64 for-loop of
    the reconstructed rule: σ̂ from the EMA of √(m/n)·‖G − M‖_*, factor min σ̂/σ̂_ℓ on the step."""
    shapes = [(8, 6), (8, 6)]
    params = _params(shapes)

    def grads(t, ps):
        sig = torch.randn(8, 6, generator=torch.Generator().manual_seed(t), dtype=F64)
        noise = torch.randn(8, 6, generator=torch.Generator().manual_seed(500 + t), dtype=F64)
        return [sig, sig + 4.0 * noise]

    lr, beta, b2, s = 0.02, 0.95, 0.99, math.sqrt(8 / 6)
    ps = [p.detach().clone() for p in params]
    Ms, v = [torch.zeros(8, 6, dtype=F64) for _ in ps], [0.0, 0.0]
    for t in range(8):
        gs = grads(t, params)
        sig = [None, None]
        for i, g in enumerate(gs):
            if t > 0:
                e = s * torch.linalg.svdvals(g - Ms[i]).sum().item()
                v[i] = b2 * v[i] + (1 - b2) * e * e
                sig[i] = math.sqrt(v[i] / (1 - b2 ** t))
            Ms[i] = beta * Ms[i] + (1 - beta) * g
        f = [1.0, 1.0] if t == 0 else [min(sig) / sig[0], min(sig) / sig[1]]
        for i, g in enumerate(gs):
            ps[i] -= lr * f[i] * s * _polar((1 - beta) * g + beta * Ms[i])
    opt = _run("lanton", params, 8, grads=grads, nuclear="svd", orthogonalizer="svd", lr=lr)
    for x, y in zip(params, ps):
        _close(x.detach(), y, 1e-12)
    f = list(lanton_lr_factors(opt).values())
    assert f[0] == 1.0 and 0.1 < f[1] < 0.4  # the noise is ~4× the signal's change


def test_lanton_layer_factor_forms():
    assert layer_factors([2.0, 4.0, None], "min", 1.0, 1.0) == [1.0, 0.5, 1.0]
    assert layer_factors([2.0, 4.0], "mean", 2.0, 1.0) == [pytest.approx(2.25), pytest.approx(0.5625)]
    assert layer_factors([3.0], "bounded", 1.0, 4.0) == [pytest.approx(0.8)]
    assert layer_factors([None, None], "min", 1.0, 1.0) == [1.0, 1.0]


def test_lanton_sign_lmo_step():
    """lmo="sign": the first step is −η·sign(Nesterov momentum)/n (factor 1 at step 1)."""
    (p,) = _params([(5, 4)])
    W0, G = p.detach().clone(), _grads(0, [p])[0]
    opt = muonlab.HybridOptimizer([p], "lanton", lmo="sign", lr=0.1, weight_decay=0.0)
    _step(opt, [p], [G])
    _close(p.detach(), W0 - 0.1 * torch.sign(G) / 4, 1e-15)


# ---- REG (arXiv 2510.03691) -----------------------------------------------------------------------


def _reg_reference(params, steps, lr, beta, kappa, p_, eps, rho):
    ps = [p.detach().clone() for p in params]
    bufs = [torch.zeros_like(p) for p in ps]
    for t in range(steps):
        for W, M, g in zip(ps, bufs, _grads(t, params)):
            M.mul_(beta).add_(g, alpha=1 - beta)
            m, n = W.shape
            U = torch.empty_like(M)
            r = [sum(abs(M[i, j].item()) ** p_ for j in range(n)) ** (1 / p_) for i in range(m)]
            c = [sum(abs(M[i, j].item()) ** p_ for i in range(m)) ** (1 / p_) for j in range(n)]
            for i in range(m):
                for j in range(n):
                    U[i, j] = M[i, j] / ((r[i] + eps) ** kappa * (c[j] + eps) ** kappa)
            W.sub_(lr * rho * math.sqrt(m * n) * U / U.norm())
    return ps


@pytest.mark.parametrize("kappa,p_", [(0.5, 2.0), (1.0, 2.0), (0.5, 3.0)])
def test_reg_matches_float64_reference(kappa, p_):
    params = _params()
    ref = _reg_reference(params, 4, 0.01, 0.9, kappa, p_, 1e-8, 0.2)
    _run("reg", params, 4, lr=0.01, kappa=kappa, norm_p=p_)
    for x, y in zip(params, ref):
        _close(x.detach(), y, 1e-12)


def test_reg_rank_one_compresses_magnitudes():
    a = torch.tensor([3.0, -1.0, 0.5, 2.0], dtype=F64)
    b = torch.tensor([1.0, -4.0, 2.0], dtype=F64)
    M = torch.outer(a, b)
    expected = torch.sign(M) * torch.sqrt(torch.outer(a.abs(), b.abs())) / math.sqrt(a.norm() * b.norm())
    _close(balance(M, 0.5, 2.0, 0.0), expected, 1e-14)


def _one_step(params, G, **kw):
    W0 = [p.detach().clone() for p in params]
    opt = muonlab.HybridOptimizer(params, "reg", lr=1.0, weight_decay=0.0, **kw)
    _step(opt, params, G)
    return [w - p.detach() for w, p in zip(W0, params)]


def test_reg_agrees_with_sign_and_polar_where_they_agree_and_kappa0_is_normalised_sgd():
    (p,) = _params([(6, 6)])
    signs = torch.sign(torch.randn(6, 6, dtype=F64))
    (U,) = _one_step([p], [3.0 * signs])  # equal magnitudes: REG = ρ·sign(M)
    _close(U, 0.2 * signs, 1e-12)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=F64))
    (U,) = _one_step([p], [2.0 * Q])  # scaled orthogonal: REG = Muon with 0.2·√n (match_rms_adamw)
    _close(U, 0.2 * math.sqrt(6) * _polar(2.0 * Q), 1e-12)
    G = torch.randn(6, 6, dtype=F64)
    (U,) = _one_step([p], [G], kappa=0.0)
    _close(U, 0.2 * 6 * G / G.norm(), 1e-12)


def test_reg_repeated_balancing_equalises_row_and_column_norms():
    M = torch.rand(7, 5, dtype=F64) + 0.1
    X = balance(M, 0.5, 2.0, 0.0, steps=60)
    r, c = X.norm(dim=1), X.norm(dim=0)
    assert (r.max() / r.min()).item() < 1 + 1e-6 and (c.max() / c.min()).item() < 1 + 1e-6


def test_reg_ema_statistics():
    """stats="ema": r² and c² are EMAs of the momentum's squared row/column norms; at step 1 their
    (1−β₂) factor cancels in the RMS scaling, so the step equals the instantaneous one (ε = 0)."""
    a, b = _params(), _params()
    da = _one_step(a, _grads(0, a), stats="ema", kappa=1.0, eps=0.0)
    db = _one_step(b, _grads(0, b), kappa=1.0, eps=0.0)
    for x, y in zip(da, db):
        _close(x, y, 1e-12)
    params = _params()
    opt = _run("reg", params, 3, stats="ema", beta2=0.8)
    p = params[0]
    M = torch.zeros_like(p)
    rows = torch.zeros(p.shape[0], dtype=F64)
    for t in range(3):
        M = 0.9 * M + 0.1 * _grads(t, params)[0]
        rows = 0.8 * rows + 0.2 * M.norm(dim=1) ** 2
    _close(opt.state[p]["row_stats"], rows, 1e-12)
