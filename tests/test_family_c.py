"""Family C (issue 15): ASGO/DASGO and MARS (MARS-M, MARS-AdamW) — float64 for-loop references of
the authors' code, reductions, source behaviours, and parity with pytorch_optimizer's MARS.

The torch.optim contract and "defaults train an MLP via create_optimizer" run for every registered
method in tests/test_contract.py. References here are float64 for-loops written from the sources:
ASGO/DASGO (An et al., arXiv 2503.20762; infinity-stars/ASGO ``optimizers/asgo.py``, ``dasgo.py``,
``utils/matrix_decom.py`` @ d3ef14b), MARS (Yuan et al., arXiv 2411.10438; AGI-Arena/MARS
``MARS/optimizers/mars.py`` @ 4831e28) and MARS-M (Liu, Yuan, Gu, arXiv 2510.21800;
``MARS_M/optimizers/mars_m.py``, ``mars_m_efficient.py``).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import muonlab
from muonlab.optim import LocalExecutor
from muonlab.optim.asgo import inv_sqrt
from muonlab.optim.mars import store_reference_grads

F64 = torch.float64
SHAPES = [(12, 7), (6, 10), (8, 8)]  # tall (right side), wide (left side), square (right side)


def _params(shapes=SHAPES, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(*s, generator=g, dtype=dtype)) for s in shapes]


def _grads(t, params, seed=1):
    """Random gradients; every third step small (‖G‖_F < 1), so MARS's clip is off on those."""
    g = torch.Generator().manual_seed(seed * 1000 + t)
    scale = 0.02 if t % 3 == 1 else 1.0
    return [scale * torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]


def _step(opt, params, grads):
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt.step()


def _run(name, params, steps, grads=_grads, **kw):
    opt = muonlab.HybridOptimizer(params, name, **kw)
    for t in range(steps):
        _step(opt, params, grads(t, params))
    return opt


def _close(a, b, tol):
    assert (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item())


# ---- ASGO / DASGO (arXiv 2503.20762) --------------------------------------------------------------

# Polar Express triples as the ASGO code lists them (before its 1.01 safety factor).
PE_RAW = [
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
]


def _pe_schedule(N):
    coeffs = [(a / 1.01, b / 1.01**3, c / 1.01**5) for a, b, c in PE_RAW[:-1]] + [PE_RAW[-1]]
    return coeffs[:N] + [coeffs[-1]] * (N - len(coeffs))


def _root_reference(P, eps, N, method):
    """``_matrix_inverse_root_PolarExpress`` / ``_newtonschulz`` of the ASGO code, float64."""
    eye = torch.eye(P.shape[0], dtype=F64)
    if method == "polar_express":
        normalize = (P + eps * eye).norm() * 1.01
        Y, Z, table = P / normalize, eye, _pe_schedule(N)
    else:
        normalize = P.norm()
        Y, Z, table = (P + eps * eye) / (normalize + eps), eye, [(2, -1.5, 0.5)] * N
    for a, b, c in table:
        ZY = Z @ Y
        B = b * ZY + c * ZY @ ZY
        Y = a * Y + Y @ B
        Z = a * Z + B @ Z
    return Z / normalize.sqrt()


def _asgo_reference(params, steps, lr, wd, beta1, beta2, eps, variant, method="polar_express", N=10):
    ps = [p.detach().clone() for p in params]
    Ms = [torch.zeros_like(p) for p in ps]
    Ps = [torch.zeros(min(p.shape), min(p.shape), dtype=F64) if variant == "asgo" else torch.zeros(p.shape[1], dtype=F64)
          for p in ps]
    for t in range(steps):
        for i, (W, G) in enumerate(zip(ps, _grads(t, params))):
            m, n = W.shape
            Ms[i] = beta1 * Ms[i] + (1 - beta1) * G
            if variant == "asgo":
                Ps[i] = beta2 * Ps[i] + (1 - beta2) * (G @ G.T if m < n else G.T @ G)
                R = _root_reference(Ps[i], eps, N, method)
                if not torch.isfinite(R).all():
                    R = torch.eye(R.shape[0], dtype=F64)
                U = R @ Ms[i] if m < n else Ms[i] @ R
            else:
                Ps[i] = beta2 * Ps[i] + (1 - beta2) * (G * G).sum(0)
                U = Ms[i] * (Ps[i] + eps) ** -0.5
            U = U * (0.2 * math.sqrt(m * n) / U.norm())
            W.mul_(1 - lr * wd).sub_(lr * U)
    return ps


ASGO_CASES = [("asgo", "polar_express"), ("asgo", "newton_schulz"), ("dasgo", None)]


@pytest.mark.parametrize("variant,method", ASGO_CASES, ids=["asgo-pe", "asgo-ns", "dasgo"])
def test_asgo_matches_float64_reference_of_the_code(variant, method):
    """Defaults of the code (β₁ 0.9, wd 0.1, β₂ and ε of the variant), tall/wide/square, 6 steps."""
    params = _params()
    beta2, eps = (0.8, 1e-10) if variant == "asgo" else (0.95, 1e-8)
    ref = _asgo_reference(params, 6, 0.01, 0.1, 0.9, beta2, eps, variant, method or "polar_express")
    _run("asgo", params, 6, lr=0.01, variant=variant, **({"inv_root": method} if method else {}))
    for x, y in zip(params, ref):
        _close(x.detach(), y, 1e-12)


def test_asgo_without_memory_is_muon_with_the_exact_polar_factor():
    """β₁ = β₂ = 0, exact root, ε = 0: U = G(GᵀG)^{-1/2} = polar(G) and the RMS rescale gives
    0.2·√max(m, n): Muon without momentum, SVD polar factor, Moonlight's scale."""
    a, b = _params(), _params()
    _run("asgo", a, 4, momentum=0.0, beta2=0.0, inv_root="eigh", eps=0.0, lr=0.05, weight_decay=0.1)
    _run("muon", b, 4, momentum=0.0, nesterov=False, orthogonalizer="svd", adjust_lr_fn="match_rms_adamw",
         lr=0.05, weight_decay=0.1)
    for x, y in zip(a, b):
        _close(x.detach(), y.detach(), 1e-10)


def _orthogonal_columns(t, params):
    """G = Q diag(d) with orthonormal columns Q (m ≥ n): GᵀG = diag(d²), ASGO's P stays diagonal."""
    out = []
    for j, p in enumerate(params):
        g = torch.Generator().manual_seed(100 * t + j)
        Q, _ = torch.linalg.qr(torch.randn(p.shape, generator=g, dtype=F64))
        out.append(Q * (0.1 + torch.rand(p.shape[1], generator=g, dtype=F64)))
    return out


def test_asgo_equals_dasgo_when_the_gradient_columns_are_orthogonal():
    """DASGO's v is the diagonal of ASGO's right preconditioner; when GᵀG is diagonal the full
    root is the diagonal one, and the two variants take the same steps."""
    shapes = [(12, 7), (8, 8)]
    a, b = _params(shapes), _params(shapes)
    kw = {"beta2": 0.9, "eps": 1e-8, "lr": 0.02, "momentum": 0.5}
    _run("asgo", a, 5, grads=_orthogonal_columns, inv_root="eigh", **kw)
    _run("asgo", b, 5, grads=_orthogonal_columns, variant="dasgo", **kw)
    for x, y in zip(a, b):
        _close(x.detach(), y.detach(), 1e-12)


def test_dasgo_preconditioner_is_the_diagonal_of_asgos():
    a, b = _params([(12, 7)]), _params([(12, 7)])
    oa = _run("asgo", a, 4, beta2=0.9)
    ob = _run("asgo", b, 4, beta2=0.9, variant="dasgo")
    _close(torch.diagonal(oa.state[a[0]]["precond"]), ob.state[b[0]]["precond"], 1e-13)


def test_variant_defaults_for_beta2_and_eps():
    """β₂ = None: 0.8 for ASGO, 0.95 for DASGO (the code's class defaults): P after one step."""
    for variant, beta2 in (("asgo", 0.8), ("dasgo", 0.95)):
        (p,) = _params([(6, 10)])
        opt = _run("asgo", [p], 1, variant=variant)
        (G,) = _grads(0, [p])
        expected = G @ G.T if variant == "asgo" else (G * G).sum(0)
        _close(opt.state[p]["precond"], (1 - beta2) * expected, 1e-14)


def _spd(k, eigs, seed=0):
    Q, _ = torch.linalg.qr(torch.randn(k, k, generator=torch.Generator().manual_seed(seed), dtype=F64))
    return (Q * torch.as_tensor(eigs, dtype=F64)) @ Q.T, Q


def test_polar_express_inverse_root_is_accurate_and_capped():
    """Exact to < 1% for λ/s ≥ 1e-8; below, the factor saturates at Π a_t/√s (the implicit damping)."""
    eigs = [1.0, 0.3, 1e-2, 1e-4, 1e-6, 1e-8, 1e-16]
    P, Q = _spd(7, eigs)
    R = inv_sqrt(P, "polar_express", 0.0, 10)
    got = torch.diagonal(Q.T @ R @ Q)
    s = 1.01 * P.norm().item()
    for lam, r in zip(eigs[:-1], got[:-1]):
        assert abs(r.item() * math.sqrt(lam) - 1) < 0.01, (lam, r.item())
    cap = math.prod(a for a, _, _ in _pe_schedule(10)) / math.sqrt(s)
    assert abs(got[-1].item() / cap - 1) < 1e-6 and 2.2e4 < cap * math.sqrt(s) < 2.3e4
    E = inv_sqrt(P, "eigh", 1e-3, 10)  # the exact root of P + εI
    _close(E @ E @ (P + 1e-3 * torch.eye(7, dtype=F64)), torch.eye(7, dtype=F64), 1e-10)


def test_asgo_update_has_rms_0_2_and_a_zero_gradient_changes_nothing():
    params = _params()
    before = [p.detach().clone() for p in params]
    _run("asgo", params, 1, lr=0.1, weight_decay=0.0)
    for p, w in zip(params, before):
        m, n = p.shape
        assert abs((w - p.detach()).norm().item() / (0.1 * math.sqrt(m * n)) - 0.2) < 1e-12
    (p,) = _params([(6, 10)])
    w = p.detach().clone()
    opt = _run("asgo", [p], 2, grads=lambda t, ps: [torch.zeros_like(x) for x in ps], weight_decay=0.0)
    assert torch.equal(p.detach(), w) and all(torch.isfinite(v).all() for v in opt.state[p].values())


def test_a_non_finite_root_falls_back_to_the_identity():
    """ε = 0 and a rank-1 P: the exact root is infinite, the code replaces it by I (U = rescaled M)."""
    (p,) = _params([(6, 4)])
    w = p.detach().clone()
    G = torch.outer(torch.arange(1.0, 7.0, dtype=F64), torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64))
    _run("asgo", [p], 1, grads=lambda t, ps: [G], inv_root="eigh", eps=0.0, momentum=0.0, lr=0.1, weight_decay=0.0)
    _close((w - p.detach()) / 0.1, G * (0.2 * math.sqrt(24) / G.norm()), 1e-12)


def test_paper_form_is_adagrad_with_a_one_sided_full_matrix_root():
    """accumulate, no momentum, no rescale, exact root: W ← W − η(V + εI)^{-1/2}G, V = Σ GGᵀ."""
    params = _params()
    ref = [p.detach().clone() for p in params]
    Vs = [torch.zeros(min(p.shape), min(p.shape), dtype=F64) for p in params]
    for t in range(5):
        for i, (W, G) in enumerate(zip(ref, _grads(t, params))):
            m, n = W.shape
            Vs[i] = Vs[i] + (G @ G.T if m < n else G.T @ G)
            ev, Q = torch.linalg.eigh(Vs[i] + 1e-6 * torch.eye(Vs[i].shape[0], dtype=F64))
            R = (Q * ev**-0.5) @ Q.T
            W.sub_(0.1 * (R @ G if m < n else G @ R))
    _run("asgo", params, 5, accumulate=True, momentum=0.0, update_rms=None, inv_root="eigh", eps=1e-6, lr=0.1,
         weight_decay=0.0)
    for x, y in zip(params, ref):
        _close(x.detach(), y, 1e-10)


@pytest.mark.parametrize("variant", ["asgo", "dasgo"])
def test_asgo_batched_matrix_phase_and_batch_view_equal_one_matrix_at_a_time(variant):
    shapes = [(12, 8), (12, 8), (3, 12, 8), (8, 12)]
    runs = []
    for batch in (True, False):
        params = _params(shapes)
        opt = muonlab.HybridOptimizer(params, "asgo", variant=variant, matrix_view="batch",
                                      executor=LocalExecutor(batch=batch))
        for t in range(4):
            _step(opt, params, _grads(t, params))
        runs.append(params)
    for x, y in zip(*runs):
        _close(x.detach(), y.detach(), 1e-12)
    (stacked,) = _params([(3, 12, 8)])
    split = [nn.Parameter(w.clone()) for w in stacked.detach()]
    a = muonlab.HybridOptimizer([stacked], "asgo", variant=variant, matrix_view="batch")
    b = muonlab.HybridOptimizer(split, "asgo", variant=variant)
    for t in range(4):
        (g,) = _grads(t, [stacked])
        _step(a, [stacked], [g])
        _step(b, split, list(g))
    _close(stacked.detach(), torch.stack([p.detach() for p in split]), 1e-12)


# ---- MARS-M (arXiv 2510.21800) and MARS (arXiv 2411.10438) ----------------------------------------


def _ns5(G, eps=1e-7, steps=5):
    """Keller's quintic Newton–Schulz as the MARS code runs it, in float64."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.T if G.shape[0] > G.shape[1] else G
    X = X / (X.norm() + eps)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if G.shape[0] > G.shape[1] else X


def _correction(G, last, beta, gamma):
    c = (G - last) * (gamma * beta / (1 - beta)) + G
    return c / c.norm() if c.norm() > 1 else c


def _reference_grads(t, params):
    return _grads(t, params, seed=7)


def _mars_m_reference(params, steps, lr, wd, mu, gamma, approx=True, eps=1e-7):
    ps = [p.detach().clone() for p in params]
    bufs = [torch.zeros_like(p) for p in ps]
    lasts = [torch.zeros_like(p) for p in ps]
    for t in range(steps):
        for i, (W, G, Gref) in enumerate(zip(ps, _grads(t, params), _reference_grads(t, params))):
            if not approx:
                lasts[i] = Gref
            bufs[i] = mu * bufs[i] + (1 - mu) * _correction(G, lasts[i], mu, gamma)
            W.mul_(1 - lr * wd).sub_(lr * 0.2 * math.sqrt(max(W.shape)) * _ns5(bufs[i], eps=eps))
            if approx:
                lasts[i] = G
    return ps


def _run_exact(name, params, steps, **kw):
    """Exact MARS: before each step the gradient at the previous iterate on the current batch
    (here an independent random draw) is handed over with store_reference_grads."""
    opt = muonlab.HybridOptimizer(params, name, is_approx=False, **kw)
    for t in range(steps):
        for p, g in zip(params, _reference_grads(t, params)):
            p.grad = g
        assert store_reference_grads(opt) == len(params)
        _step(opt, params, _grads(t, params))
    return opt


NS64 = {"compute_dtype": "float64", "ns_gram": False}


@pytest.mark.parametrize("approx", [True, False], ids=["approx", "exact"])
def test_mars_m_matches_float64_reference_of_the_code(approx):
    """To rounding with the Newton–Schulz floor ε = 0 in both: the code normalises by ‖M‖_F + 1e-7,
    muonlab's orthogonalizer by max(‖M‖_F, 1e-7) (torch.optim.Muon's), a relative 1e-7/‖M‖_F apart
    (‖M‖_F ≤ 1 here, c being clipped); with the default ε the gap stays at that size."""
    for eps, tol in ((0.0, 1e-12), (1e-7, 1e-5)):
        params = _params()
        ref = _mars_m_reference(params, 6, 0.02, 0.1, 0.95, 0.025, approx, eps=1e-7)
        ref0 = _mars_m_reference(params, 6, 0.02, 0.1, 0.95, 0.025, approx, eps=0.0)
        kw = dict(lr=0.02, eps=eps, **NS64)
        _run("mars_m", params, 6, **kw) if approx else _run_exact("mars_m", params, 6, **kw)
        for x, y, y0 in zip(params, ref, ref0):
            _close(x.detach(), y0 if eps == 0 else y, tol)


def test_mars_m_without_correction_and_clip_is_muon_bitwise():
    """γ = 0, clip off: c = g, so MARS-M is Muon with EMA momentum, no Nesterov, Moonlight's scale."""
    a, b = _params(dtype=torch.float32), _params(dtype=torch.float32)
    _run("mars_m", a, 5, gamma=0.0, clip_c=False, lr=0.02)
    _run("muon", b, 5, nesterov=False, adjust_lr_fn="match_rms_adamw", weight_decay=0.1, lr=0.02)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_mars_m_momentum_equals_the_memory_light_efficient_form():
    """Unclipped approximate MARS momentum = γg + μ·buf with buf ← μ buf + (1−γ)(1−μ)/μ·g
    (``MARS_M_Efficient``), at every step."""
    params = _params()
    mu, gamma = 0.9, 0.1
    opt = muonlab.HybridOptimizer(params, "mars_m", momentum=mu, gamma=gamma, clip_c=False)
    bufs = [torch.zeros_like(p) for p in params]
    for t in range(6):
        grads = _grads(t, params)
        _step(opt, params, grads)
        for p, buf, g in zip(params, bufs, grads):
            buf.mul_(mu).add_(g, alpha=(1 - gamma) * (1 - mu) / mu)
            _close(opt.state[p]["momentum_buffer"], gamma * g + mu * buf, 1e-13)


def test_mars_first_step_correction_and_clip():
    """Step 1: last_grad = 0, c = (1 + γβ/(1−β))·g = 1.475·g; clipped to unit norm when larger;
    last_grad keeps the raw g."""
    small, large = _params([(6, 4), (6, 4)])
    g_small = torch.full((6, 4), 0.01, dtype=F64)  # ‖1.475 g‖ < 1
    g_large = torch.full((6, 4), 1.0, dtype=F64)
    opt = muonlab.HybridOptimizer([small, large], "mars_m")
    _step(opt, [small, large], [g_small, g_large])
    _close(opt.state[small]["momentum_buffer"], 0.05 * 1.475 * g_small, 1e-15)
    _close(opt.state[large]["momentum_buffer"], 0.05 * g_large / g_large.norm(), 1e-15)
    assert torch.equal(opt.state[large]["last_grad"], g_large)


def _mars_reference(params, steps, lr, wd, betas, eps, gamma, kind, amsgrad=False, approx=True):
    """``MARS/optimizers/mars.py`` update_fn for 2-D tensors, float64."""
    b1, b2 = betas
    ps = [p.detach().clone() for p in params]
    st = [{"m": torch.zeros_like(p), "v": torch.zeros_like(p), "vmax": torch.zeros_like(p), "last": torch.zeros_like(p)}
          for p in ps]
    for t in range(steps):
        step = t + 1
        for W, s, G, Gref in zip(ps, st, _grads(t, params), _reference_grads(t, params)):
            if not approx:
                s["last"] = Gref
            c = _correction(G, s["last"], b1, gamma)
            s["m"] = b1 * s["m"] + (1 - b1) * c
            if kind == "adamw":
                s["v"] = b2 * s["v"] + (1 - b2) * c * c
                s["vmax"] = torch.maximum(s["vmax"], s["v"])
                v = s["vmax"] if amsgrad else s["v"]
                denom = (v.sqrt() / math.sqrt(1 - b2**step) + eps) * (1 - b1**step)
                W.sub_(lr * (wd * W + s["m"] / denom))
            elif kind == "lion":
                W.sub_(lr * (wd * W + s["m"].sign()))
            else:
                factor = math.sqrt(max(1, W.shape[0] / W.shape[1]))
                W.sub_(lr * (factor * _ns5(s["m"] / (1 - b1), eps=eps) + wd * W))
            if approx:
                s["last"] = G
    return ps


MARS_CASES = [("adamw", {}), ("adamw", {"amsgrad": True}), ("lion", {}), ("shampoo", {})]


@pytest.mark.parametrize("approx", [True, False], ids=["approx", "exact"])
@pytest.mark.parametrize("kind,kw", MARS_CASES, ids=["adamw", "adamw-amsgrad", "lion", "shampoo"])
def test_mars_adamw_matches_float64_reference_of_the_code(kind, kw, approx):
    params = _params()
    hp = {"lr": 0.01, "weight_decay": 0.1, "betas": (0.9, 0.99), "eps": 1e-8, "gamma": 0.05}
    ref = _mars_reference(params, 6, hp["lr"], hp["weight_decay"], hp["betas"], 0.0 if kind == "shampoo" else 1e-8,
                          hp["gamma"], kind, approx=approx, **kw)
    hp.update(mars_type=kind, **kw, **NS64)
    if kind == "shampoo":  # NS floor: the code divides by ‖X‖_F + ε, muonlab by max(‖X‖_F, ε)
        hp["eps"] = 0.0
    _run("mars_adamw", params, 6, **hp) if approx else _run_exact("mars_adamw", params, 6, **hp)
    for x, y in zip(params, ref):
        _close(x.detach(), y, 1e-12)


def test_mars_adamw_without_correction_and_clip_is_adamw():
    a, b = _params(), _params()
    kw = {"lr": 0.01, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.1}
    _run("mars_adamw", a, 6, gamma=0.0, clip_c=False, **kw)
    _run("adamw", b, 6, **kw)
    for x, y in zip(a, b):
        _close(x.detach(), y.detach(), 1e-13)


def test_store_reference_grads_skips_approximate_groups():
    params = _params()
    opt = muonlab.HybridOptimizer(params, "mars_m")
    for p, g in zip(params, _grads(0, params)):
        p.grad = g
    assert store_reference_grads(opt) == 0 and not opt.state


# ---- parity with pytorch_optimizer 4.1.0's MARS -----------------------------------------------------


def _pytorch_optimizer_run(params, steps, **kw):
    po = pytest.importorskip("pytorch_optimizer")
    opt = po.MARS(params, **kw)
    for t in range(steps):
        _step(opt, params, _grads(t, params))


@pytest.mark.parametrize("kind", ["adamw", "lion"])
def test_mars_parity_with_pytorch_optimizer(kind):
    """Same problem through both, float64, 20 steps. The one difference is the Adam denominator:
    pytorch_optimizer adds ε before the bias correction and 1e-15 under √v; with
    ``denominator="pytorch_optimizer"`` the two agree to rounding (lion has no denominator)."""
    hp = {"lr": 0.01, "betas": (0.9, 0.99), "gamma": 0.05, "weight_decay": 0.1}
    theirs = _params()
    _pytorch_optimizer_run(theirs, 20, mars_type=kind, eps=1e-6, **hp)
    ours = _params()
    _run("mars_adamw", ours, 20, mars_type=kind, eps=1e-6, denominator="pytorch_optimizer", **hp)
    for x, y in zip(ours, theirs):
        _close(x.detach(), y.detach(), 1e-12)
    if kind == "adamw":  # the code's denominator (our default) is a real difference at ε = 1e-6
        default = _params()
        _run("mars_adamw", default, 20, eps=1e-6, **hp)
        assert max((x - y).abs().max().item() for x, y in zip(default, theirs)) > 1e-9
