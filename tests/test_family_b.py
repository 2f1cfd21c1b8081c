"""Family B (issue 6): Scion, Dion, Conda, Kaon, Freon — reductions, source behaviours, and
cautious weight decay (Chen et al., arXiv 2510.12402) for them and for Muon/AdamW.

The torch.optim contract and "defaults train an MLP via create_optimizer" run for every registered
method in tests/test_contract.py. References here are float64 for-loops written from
the sources: Conda (Wang et al., arXiv 2509.24218; jie040109/Conda ``conda_torch/conda.py``), Scion
(Pethick et al., arXiv 2502.07529; LIONS-EPFL/scion ``scion.py``), Dion (Ahn, Xu et al., arXiv
2504.05295; microsoft/dion ``dion/dion_reference.py``), CWD (Chen et al., arXiv 2510.12402;
microsoft/dion ``dion/muon.py``), Freon/Kaon (Shumaylov et al., arXiv 2605.11181, via
junaidaliop/zij ``canon/math/freonkaon.md``).
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_matrix
from torch import nn

import muonlab
from muonlab.optim import LocalExecutor
from muonlab.optim.dion import dion_rank
from muonlab.optim.freon import schatten_direction
from muonlab.optim.kaon import KAON_GAIN, KAON_NORM, chaotic_spectrum
from muonlab.routing import scion_param_groups

F64 = torch.float64
SHAPES = [(32, 16), (16, 40), (24, 24)]


def _params(shapes=SHAPES, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(*s, generator=g, dtype=dtype)) for s in shapes]


def _clone(params):
    return [nn.Parameter(p.detach().clone()) for p in params]


def _grads(t, params, seed=1):
    g = torch.Generator().manual_seed(seed * 1000 + t)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]


def _step(opt, params, grads):
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt.step()


def _run(name, params, steps, grads=_grads, **kw):
    opt = muonlab.HybridOptimizer(params, name, **kw)
    for t in range(steps):
        _step(opt, params, grads(t, params))
    return opt


def _polar(G):
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    return U @ Vh


def _close(a, b, tol):
    assert (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item())


MUON_EXACT = dict(orthogonalizer="svd", momentum_form="accumulate", nesterov=False, weight_decay=0.0)

# ---- Scion (arXiv 2502.07529) ---------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1.0, 0.1])
def test_scion_unconstrained_is_muon_with_spectral_norm_scaling(alpha):
    """Spectral, unconstrained, ρ = 1: Muon with EMA momentum β = 1 − α, no Nesterov, √(m/n) — bitwise."""
    a, b = _params(dtype=torch.float32), _params(dtype=torch.float32)
    _run("scion", a, 5, norm="spectral", constrained=False, momentum=alpha, lr=0.05)
    _run("muon", b, 5, momentum=1 - alpha, nesterov=False, adjust_lr_fn="spectral_norm", weight_decay=0.0, lr=0.05)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def _lmo_cases(m, n):
    col = lambda G, d, c: G / (G.norm(dim=0, keepdim=True) / math.sqrt(G.shape[0]) * c + 1e-8)  # noqa: E731
    return [
        ("sign", {}, lambda G: G.sign() / n),
        ("sign", {"normalized": False}, lambda G: G.sign()),
        ("col_norm", {}, lambda G: col(G, m, 1)),
        ("col_norm", {"normalized": True}, lambda G: col(G, m, n)),
        ("col_norm", {"transpose": True}, lambda G: col(G.T, n, 1).T),
        ("row_norm", {}, lambda G: G / (G.norm(dim=1, keepdim=True) * math.sqrt(n) + 1e-8)),
        ("row_norm", {"normalized": False}, lambda G: G / (G.norm(dim=1, keepdim=True) + 1e-8)),
        ("bias_rms", {}, lambda G: G / (G.pow(2).mean(dim=0, keepdim=True).sqrt() + 1e-8)),
        ("spectral", {}, lambda G: _polar(G) * math.sqrt(m / n)),
        ("spectral", {"normalized": False}, lambda G: _polar(G) * math.sqrt(m)),
        ("spectral", {"spectral_max": True}, lambda G: _polar(G) * max(1.0, math.sqrt(m / n))),
        ("auto", {}, lambda G: _polar(G) * math.sqrt(m / n)),
    ]


@pytest.mark.parametrize("case", range(12))
def test_scion_lmo_table(case):
    """One unconstrained step without momentum is W − γρ·lmo(G), lmo from Scion's scion.py table."""
    m, n = 12, 20
    norm, kw, lmo = _lmo_cases(m, n)[case]
    (p,) = _params([(m, n)])
    W0, G = p.detach().clone(), _grads(0, [p])[0]
    opt = muonlab.HybridOptimizer([p], "scion", norm=norm, constrained=False, lr=0.1, scale=2.0,
                                  orthogonalizer="svd", **kw)
    _step(opt, [p], [G])
    _close(p.detach(), W0 - 0.1 * 2.0 * lmo(G), 1e-12)


def test_scion_conv_and_vector_lmos():
    """'auto': SpectralConv √(out/in)/k² on a flattened 4-D filter; BiasRMS on a vector."""
    conv, vec = _params([(8, 3, 3, 3), (7,)])
    W0, V0 = conv.detach().clone(), vec.detach().clone()
    G, g = _grads(0, [conv, vec])
    opt = muonlab.HybridOptimizer([conv, vec], "scion", constrained=False, lr=0.1, matrix_view="flatten",
                                  orthogonalizer="svd")
    _step(opt, [conv, vec], [G, g])
    _close(conv.detach(), W0 - 0.1 * _polar(G.reshape(8, 27)).reshape(G.shape) * math.sqrt(8 / 3) / 9, 1e-12)
    _close(vec.detach(), V0 - 0.1 * g / (g.pow(2).mean().sqrt() + 1e-8), 1e-12)


@pytest.mark.parametrize("norm", ["spectral", "sign", "col_norm", "auto-vector"])
def test_scion_constrained_constant_gradient_converges_to_fixed_point(norm):
    """W* = −ρ·lmo(G) is the fixed point and W_t − W* = (1−γ)ᵗ(W₀ − W*) exactly (Frank–Wolfe)."""
    shape = (7,) if norm == "auto-vector" else (10, 6)
    norm = "auto" if norm == "auto-vector" else norm
    (p,) = _params([shape])
    W0, G = p.detach().clone(), _grads(0, [p])[0]
    gamma, rho = 0.2, 3.0
    opt = muonlab.HybridOptimizer([p], "scion", norm=norm, lr=gamma, scale=rho, orthogonalizer="svd")
    _step(opt, [p], [G])
    W_star = -(W0 * (1 - gamma) - p.detach()) / gamma  # first step gives −ρ·lmo(G)
    for _ in range(9):
        _step(opt, [p], [G])
    _close(p.detach(), W_star + (1 - gamma) ** 10 * (W0 - W_star), 1e-12)
    p.data.copy_(W_star)
    _step(opt, [p], [G])
    _close(p.detach(), W_star, 1e-12)


def test_scion_constrained_keeps_the_spectral_ball_invariant():
    """‖W_{t+1}‖₂ ≤ (1−γ)‖W_t‖₂ + γρs: inside the ball stays inside; outside contracts at (1−γ)ᵗ."""
    gamma, rho, m, n = 0.1, 2.0, 20, 12
    s = rho * math.sqrt(m / n)
    inside, outside = _params([(m, n), (m, n)])
    with torch.no_grad():
        inside.mul_(0.5 * s / torch.linalg.matrix_norm(inside, 2))
        outside.mul_(5 * s / torch.linalg.matrix_norm(outside, 2))
    opt = muonlab.HybridOptimizer([inside, outside], "scion", norm="spectral", lr=gamma, scale=rho,
                                  momentum=0.3, orthogonalizer="svd")
    for t in range(1, 31):
        _step(opt, [inside, outside], _grads(t, [inside, outside]))
        assert torch.linalg.matrix_norm(inside, 2) <= s * (1 + 1e-12)
        assert torch.linalg.matrix_norm(outside, 2) - s <= (1 - gamma) ** t * 4 * s * (1 + 1e-12)


def test_scion_rejects_weight_decay_with_the_constrained_update_and_vectors_with_spectral():
    p, v = nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(3))
    with pytest.raises(ValueError, match="constrained"):
        muonlab.HybridOptimizer([p], "scion", weight_decay=0.1)
    with pytest.raises(ValueError, match="norm='spectral' needs a matrix"):
        muonlab.HybridOptimizer([v], "scion", norm="spectral")
    muonlab.HybridOptimizer([p], "scion", weight_decay=0.1, constrained=False)  # fine


def test_scion_param_groups_give_every_role_its_geometry_and_train():
    from test_contract import Net, _batch

    torch.manual_seed(0)
    model = Net()
    groups = scion_param_groups(model)
    by_role = {g["role"]: g for g in groups}
    assert by_role["hidden"]["norm"] == "spectral" and by_role["output"]["norm"] == "sign"
    assert by_role["embedding"]["norm"] == "col_norm" and by_role["embedding"]["transpose"]
    assert by_role["vector"]["norm"] == "bias_rms" and by_role["output"]["scale"] == 60.0
    opt = muonlab.HybridOptimizer(groups)
    muonlab.check_coverage(model, opt)
    x, y = _batch(0)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ---- Dion (arXiv 2504.05295) ----------------------------------------------------------------------


def test_dion_rank():
    assert dion_rank(64, 32, 1.0, 1) == 32
    assert dion_rank(64, 32, 0.25, 1) == 8
    assert dion_rank(30, 100, 0.1, 1) == 3  # not 4 from 0.1·30 = 3.0000000000000004
    assert dion_rank(64, 32, 0.1, 8) == 8
    assert dion_rank(64, 32, 0.01, 1) == 1


def test_dion_full_rank_error_feedback_is_accumulate_momentum():
    """At full rank P Pᵀ B = B, so M ← B − (1−μ)PRᵀ = μB, B = Muon's accumulate buffer (random grads)."""
    a, b = _params(), _params()
    dion = _run("dion", a, 5, momentum=0.9, weight_decay=0.0)
    muon = _run("muon", b, 5, momentum=0.9, **MUON_EXACT)
    for x, y in zip(a, b):
        _close(dion.state[x]["momentum_buffer"], 0.9 * muon.state[y]["momentum_buffer"], 1e-12)


def _separated(t, params):
    """Gradients U diag(σ_t) Vᵀ with fixed U, V and σ_t,i ≈ 0.7^i: power iteration converges fast."""
    out = []
    for j, p in enumerate(params):
        k = min(p.shape)
        sig = 0.7 ** torch.arange(k, dtype=F64) * (1 + 0.2 * torch.rand(k, generator=torch.Generator().manual_seed(t)))
        out.append(make_matrix(*p.shape, sig, seed=j))
    return out


def test_dion_full_rank_equals_exact_polar_muon():
    """Dion at full rank with a converged power iteration = accumulate-momentum Muon with the exact
    polar factor and √(m/n) scaling (tall, wide and square; with weight decay). ε = 0: Dion's
    column normaliser R/(‖R‖ + ε) is otherwise off by ε/σ in each direction."""
    a, b = _params(), _params()
    kw = dict(lr=0.05, momentum=0.9)
    _run("dion", a, 6, grads=_separated, power_iters=40, weight_decay=0.1, eps=0.0, **kw)
    _run("muon", b, 6, grads=_separated, adjust_lr_fn="spectral_norm", **{**MUON_EXACT, "weight_decay": 0.1}, **kw)
    for x, y in zip(a, b):
        _close(x.detach(), y.detach(), 1e-10)


def test_dion_warm_start_converges_to_the_polar_factor_of_a_constant_gradient():
    """Default power_iters = 1: the warm-started Q does one subspace iteration per step."""
    (p,) = _params([(24, 12)])
    G = _separated(0, [p])[0]
    opt = muonlab.HybridOptimizer([p], "dion", lr=0.01, weight_decay=0.0, eps=0.0)
    for _ in range(40):
        before = p.detach().clone()
        _step(opt, [p], [G])
    _close((before - p.detach()) / (0.01 * math.sqrt(24 / 12)), _polar(G), 1e-9)


def _dion_reference(params, Q0, steps, lr, mu, wd, r):
    """Dion (``dion_reference.py``), one power iteration per step, float64 for-loop."""
    ps = [p.detach().clone() for p in params]
    Ms = [torch.zeros_like(p) for p in ps]
    Qs = [q.clone() for q in Q0]
    for t in range(steps):
        for i, (p, g) in enumerate(zip(ps, _grads(t, params))):
            m, n = p.shape
            B = Ms[i] + g
            Bt = B.T if m < n else B
            P, _ = torch.linalg.qr(Bt @ Qs[i])
            R = Bt.T @ P
            Bt = Bt - (1 - mu) * P @ R.T
            Qs[i] = R / (R.norm(dim=0, keepdim=True) + 1e-8)
            Ms[i] = Bt.T if m < n else Bt
            O = P @ Qs[i].T
            O = O.T if m < n else O
            p.mul_(1 - lr * wd).sub_(lr * math.sqrt(m / n) * O)
            assert Qs[i].shape[1] == r[i]
    return ps


def test_dion_low_rank_matches_float64_reference():
    params = _params()
    opt = muonlab.HybridOptimizer(params, "dion", rank_fraction=0.25, lr=0.02, momentum=0.9, weight_decay=0.1)
    rule = muonlab.get_spec("dion").rule
    Q0 = [rule.init_state(p, opt.param_groups[0])["Q"] for p in params]  # what step 1 will create
    ref = _dion_reference(params, Q0, 5, 0.02, 0.9, 0.1, [4, 4, 6])
    for t in range(5):
        _step(opt, params, _grads(t, params))
    for x, y in zip(params, ref):
        _close(x.detach(), y, 1e-10)


def test_dion_update_has_rank_r_and_frobenius_norm_sqrt_r():
    (p,) = _params([(40, 24)])
    W0 = p.detach().clone()
    _run("dion", [p], 1, rank_fraction=0.25, lr=0.01, weight_decay=0.0, eps=0.0)
    D = (W0 - p.detach()) / (0.01 * math.sqrt(40 / 24))
    s = torch.linalg.svdvals(D)
    assert s[6:].max() < 1e-12 * s[0] and s[5] > 1e-3
    assert abs(D.norm().item() - math.sqrt(6)) < 1e-12


def test_dion_initial_q_is_reproducible_from_the_seed():
    runs = [_params() for _ in range(3)]
    opts = [_run("dion", ps, 3, rank_fraction=0.5, seed=s) for ps, s in zip(runs, (7, 7, 8))]
    assert all(torch.equal(x, y) for x, y in zip(runs[0], runs[1]))
    assert not torch.equal(runs[0][0], runs[2][0])
    twins = _params([(8, 6), (8, 6)])  # same shape, different key → different Q₀
    rule, group = muonlab.get_spec("dion").rule, opts[0].param_groups[0]
    q0 = [rule.init_state(p, {**group, "params": twins})["Q"] for p in twins]
    assert not torch.equal(q0[0], q0[1])


# ---- Conda (arXiv 2509.24218) ---------------------------------------------------------------------


def _conda_reference(params, steps, lr, betas, eps, T, scale, grads=_grads):
    ps = [p.detach().clone() for p in params]
    st = [dict(m=torch.zeros_like(p), v=torch.zeros_like(p), P=None) for p in ps]
    b1, b2 = betas
    for t in range(steps):  # t counts from 0, as in Conda's code
        for p, s, g in zip(ps, st, grads(t, params)):
            s["m"] = b1 * s["m"] + (1 - b1) * g
            tall = p.shape[0] >= p.shape[1]
            if t % T == 0:
                U, _, Vh = torch.linalg.svd(s["m"], full_matrices=False)
                s["P"] = Vh if tall else U
            P = s["P"]
            proj = (lambda X: X @ P.T) if tall else (lambda X: P.T @ X)
            back = (lambda X: X @ P) if tall else (lambda X: P @ X)
            gp = proj(g)
            s["v"] = b2 * s["v"] + (1 - b2) * gp * gp
            step = lr * math.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
            p.sub_(step * scale * back(proj(s["m"]) / (s["v"].sqrt() + eps)))
    return ps


@pytest.mark.parametrize("T", [1, 3])
def test_conda_matches_float64_reference(T):
    params = _params()
    ref = _conda_reference(params, 7, 0.01, (0.9, 0.99), 1e-8, T, 0.5)
    _run("conda", params, 7, lr=0.01, betas=(0.9, 0.99), update_proj_gap=T, scale=0.5)
    for x, y in zip(params, ref):
        _close(x.detach(), y, 1e-10)


def test_conda_is_adam_when_the_singular_basis_is_standard():
    """G_t = H·D_t (orthonormal columns H, positive diagonal D_t): the momentum's V is a signed
    permutation, the rotation cancels, and Conda (ε = 0) is Adam (ε = 0)."""
    m, n = 20, 8
    H, _ = torch.linalg.qr(torch.randn(m, n, generator=torch.Generator().manual_seed(3), dtype=F64))

    def grads(t, params):
        d = 2.0 ** torch.arange(n, dtype=F64) * (1 + 0.1 * torch.rand(n, generator=torch.Generator().manual_seed(t)))
        return [(H * d).contiguous()]  # torch 2.13's fused CPU AdamW mishandles strided grads

    a, b = _params([(m, n)]), _params([(m, n)])
    _run("conda", a, 8, grads=grads, lr=0.01, eps=0.0, update_proj_gap=1)
    _run("adamw", b, 8, grads=grads, lr=0.01, eps=0.0, weight_decay=0.0)
    _close(a[0].detach(), b[0].detach(), 1e-12)


def test_conda_projection_refreshes_every_T_steps():
    (p,) = _params([(12, 8)])
    opt = muonlab.HybridOptimizer([p], "conda", update_proj_gap=3)
    seen = []
    for t in range(7):
        _step(opt, [p], _grads(t, [p]))
        seen.append(opt.state[p]["proj"].clone())
    same = [torch.equal(seen[i], seen[i - 1]) for i in range(1, 7)]
    assert same == [True, True, False, True, True, False]  # refreshed at steps 1, 4, 7


# ---- Freon (arXiv 2605.11181) ---------------------------------------------------------------------


def test_freon_q1_is_exact_polar_muon():
    a, b = _params(), _params()
    _run("freon", a, 5, q=1.0, sv_floor=0.0, lr=0.02)
    _run("muon", b, 5, adjust_lr_fn="none", lr=0.02, momentum=0.95, **MUON_EXACT)
    for x, y in zip(a, b):
        _close(x.detach(), y.detach(), 1e-10)


def test_freon_q2_is_sgd_on_the_normalised_momentum():
    params = _params()
    ref, bufs = [p.detach().clone() for p in params], [torch.zeros_like(p) for p in params]
    for t in range(5):
        for p, buf, g in zip(ref, bufs, _grads(t, params)):
            buf.mul_(0.95).add_(g)
            p.sub_(0.1 * buf / buf.norm())
    _run("freon", params, 5, q=2.0, lr=0.1)
    for x, y in zip(params, ref):
        _close(x.detach(), y, 1e-12)


@pytest.mark.parametrize("q", [0.5, 1.5, 3.0])
@pytest.mark.parametrize("shape", [(20, 12), (12, 20)])
def test_freon_direction_is_the_schatten_q_steepest_descent(q, shape):
    """O = U (σ/‖σ‖_q)^{q−1} Vᵀ: ⟨M, O⟩ = ‖M‖_{S_q}, Σ σ̃ᵢ^q = 1, scale invariant (float64 SVD)."""
    sig = torch.linspace(1.0, 0.1, min(shape), dtype=F64)
    M = make_matrix(*shape, sig, seed=5)
    O = schatten_direction(M, q)
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    norm_q = S.pow(q).sum().pow(1 / q)
    _close(O, (U * (S / norm_q).pow(q - 1)) @ Vh, 1e-10)
    assert abs((M * O).sum().item() - norm_q.item()) < 1e-10 * norm_q.item()
    assert abs((S / norm_q).pow(q).sum().item() - 1) < 1e-12
    _close(schatten_direction(7.0 * M, q), O, 1e-10)


def test_freon_floor_handles_rank_deficient_and_zero_momenta():
    M = make_matrix(16, 10, [1.0, 0.3] + [0.0] * 8, seed=2).float()
    O = schatten_direction(M, 0.5, sv_floor=1e-3)
    _, _, Vh = torch.linalg.svd(M.double())
    assert torch.isfinite(O).all()
    assert (O.double() @ Vh[2:].T).abs().max() < 1e-4  # nothing along the null space
    assert torch.equal(schatten_direction(torch.zeros(6, 4), 0.5), torch.zeros(6, 4))


# ---- Kaon (arXiv 2605.11181) ----------------------------------------------------------------------


def _kaon_map(x, steps):
    for _ in range(steps):
        x = KAON_GAIN * x * (1 - x * x) ** 2
    return x / KAON_NORM


@pytest.mark.parametrize("shape", [(20, 12), (12, 20)])
def test_kaon_chaotic_keeps_singular_vectors_and_maps_singular_values_into_0_1(shape):
    sig = torch.linspace(1.0, 0.05, min(shape), dtype=F64)
    M = make_matrix(*shape, sig, seed=4)
    O = chaotic_spectrum(M, 6)
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    xi = _kaon_map(S / S.norm(), 6)
    _close(O, (U * xi) @ Vh, 1e-9)  # aligned with M's U, V; values h⁶(σ/‖σ‖_F)/1.175
    assert (xi > 0).all() and (xi <= 1).all()
    assert (torch.linalg.svdvals(chaotic_spectrum(M.float(), 10)) <= 1).all()


def test_kaon_without_map_steps_is_freon_q2_scaled():
    a, b = _params(), _params()
    _run("kaon", a, 4, kaon_steps=0, lr=0.02)
    _run("freon", b, 4, q=2.0, lr=0.02 / KAON_NORM)
    for x, y in zip(a, b):
        _close(x.detach(), y.detach(), 1e-12)


def test_kaon_uniform_spectrum_is_aligned_random_and_reproducible():
    def update(seed, shapes=((20, 12), (20, 12))):
        ps = _params(list(shapes))
        W0 = [p.detach().clone() for p in ps]
        _run("kaon", ps, 1, spectrum="uniform", seed=seed, lr=1.0)
        return [w - p.detach() for w, p in zip(W0, ps)], _grads(0, ps)

    (O1, O2), (G1, _) = update(0)
    U, _, Vh = torch.linalg.svd(G1, full_matrices=False)
    core = U.T @ O1 @ Vh.T
    xi = core.diagonal()
    _close(core, torch.diag(xi), 1e-10)
    assert (xi > 0).all() and (xi <= 1).all() and xi.std() > 0.1
    assert torch.equal(update(0)[0][0], O1) and not torch.equal(update(1)[0][0], O1)
    assert not torch.allclose(torch.linalg.svdvals(O1), torch.linalg.svdvals(O2))  # per-parameter ξ


# ---- cautious weight decay (arXiv 2510.12402) for every family-B method and for Muon/AdamW --------

CWD_CASES = [
    ("muon", {}),
    ("adamw", {}),
    ("scion", {"constrained": False, "momentum": 0.5}),
    ("dion", {"rank_fraction": 0.5}),
    ("conda", {"update_proj_gap": 2}),
    ("kaon", {}),
    ("kaon", {"spectrum": "uniform"}),
    ("freon", {}),
]


@pytest.mark.parametrize("name,kw", CWD_CASES, ids=[f"{n}-{'-'.join(k) or 'default'}" for n, k in CWD_CASES])
def test_cautious_weight_decay_matches_the_for_loop_formula(name, kw):
    """W ← W − U − ηλ·𝟙[U ⊙ W ≥ 0] ⊙ W with U the undecayed update, the pre-update W, the base lr."""
    lr, lam = 0.01, 0.5
    cautious, plain = _params(), _params()
    opt_c = muonlab.HybridOptimizer(cautious, name, lr=lr, weight_decay=lam, weight_decay_mode="cautious", **kw)
    opt_p = muonlab.HybridOptimizer(plain, name, lr=lr, weight_decay=0.0, **kw)
    decayed = kept = 0
    for t in range(4):
        W = [p.detach().clone() for p in cautious]
        for p, w in zip(plain, W):
            p.data.copy_(w)  # same W; the optimizer states never depend on W
        grads = _grads(t, cautious)
        _step(opt_c, cautious, grads)
        _step(opt_p, plain, grads)
        for p, q, w in zip(cautious, plain, W):
            U = w - q.detach()
            mask = (U * w >= 0).to(w.dtype)
            _close(p.detach(), w - U - lr * lam * mask * w, 1e-12)
            decayed, kept = decayed + int(mask.sum()), kept + int((1 - mask).sum())
    assert decayed > 0 and kept > 0


def test_cautious_mode_of_scions_constrained_update_decays_with_lambda_one():
    gamma = 0.1
    (p,), (q,) = _params([(10, 6)]), _params([(10, 6)])
    W, G = p.detach().clone(), _grads(0, [p])[0]
    _step(muonlab.HybridOptimizer([p], "scion", norm="sign", lr=gamma, weight_decay_mode="cautious"), [p], [G])
    _step(muonlab.HybridOptimizer([q], "scion", norm="sign", lr=gamma, constrained=False), [q], [G])
    U = W - q.detach()
    _close(p.detach(), W - U - gamma * (U * W >= 0).to(W.dtype) * W, 1e-12)


# ---- batching and matrix views (per-matrix state through the (B, m, n) batch) ---------------------

FAMILY_B = [("scion", {"momentum": 0.5}), ("dion", {"rank_fraction": 0.5}), ("conda", {"update_proj_gap": 2}),
            ("kaon", {}), ("kaon", {"spectrum": "uniform"}), ("freon", {})]


@pytest.mark.parametrize("name,kw", FAMILY_B, ids=[f"{n}-{'-'.join(k)}" for n, k in FAMILY_B])
def test_batched_matrix_phase_equals_one_matrix_at_a_time(name, kw):
    """Same-shape matrices stacked into one matrix_fn call (and a "batch"-view 3-D parameter) give
    the same steps as one call per matrix."""
    shapes = [(12, 8), (12, 8), (3, 12, 8), (8, 12)]
    runs = []
    for batch in (True, False):
        params = _params(shapes)
        opt = muonlab.HybridOptimizer(params, name, matrix_view="batch", executor=LocalExecutor(batch=batch), **kw)
        for t in range(4):
            _step(opt, params, _grads(t, params))
        runs.append(params)
    for x, y in zip(*runs):
        _close(x.detach(), y.detach(), 1e-12)


@pytest.mark.parametrize("name,kw", [FAMILY_B[i] for i in (0, 2, 3, 5)], ids=["scion", "conda", "kaon", "freon"])
def test_batch_view_equals_separate_matrices(name, kw):
    (stacked,) = _params([(3, 12, 8)])
    split = [nn.Parameter(w.clone()) for w in stacked.detach()]
    a = muonlab.HybridOptimizer([stacked], name, matrix_view="batch", **kw)
    b = muonlab.HybridOptimizer(split, name, **kw)
    for t in range(4):
        (g,) = _grads(t, [stacked])
        _step(a, [stacked], [g])
        _step(b, split, list(g))
    _close(stacked.detach(), torch.stack([p.detach() for p in split]), 1e-12)


@pytest.mark.parametrize("name", ["scion", "dion", "conda", "kaon", "freon"])
def test_conv_filters_train_through_create_optimizer(name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 1))
    x, y = torch.randn(16, 2, 8, 8), torch.randn(16, 1)
    opt = muonlab.create_optimizer(model, name)
    assert {g["role"]: g.get("matrix_view") for g in opt.param_groups if g["algorithm"] == name} == {"conv": "flatten"}
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] and all(math.isfinite(v) for v in losses)
