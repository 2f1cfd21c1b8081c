"""Shampoo and SOAP: float64 for-loop references written from the papers/official code, reductions,
and parity with the pip-installable upstreams (pytorch_optimizer 4.1.0; importorskip).

References (numpy, float64, one block at a time with slices, so they also check the zero padding
of the blocked implementation):
* Shampoo: Qiu et al., arXiv 2512.05620 App. A; charliezchen/scaling-matrix-preconditioning
  ``optax_optim/_shampoo.py`` (eigh route), plus Gupta et al.'s summed statistics;
* SOAP: nikhilvyas/SOAP ``soap.py`` @ a1e5535, with the first moment stored in the rotated basis
  and rotated back and forth at each refresh, as the official code does.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import muonlab
from muonlab.optim import LocalExecutor
from muonlab.optim.shampoo import block_layout, merge_blocks, split_blocks

# ---- a shared problem: gradients that depend on W ---------------------------------------------


def _problem(m, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    W0 = torch.randn(m, n, generator=g, dtype=torch.float64)
    T = torch.randn(m, n, generator=g, dtype=torch.float64)
    C = torch.randn(n, n, generator=g, dtype=torch.float64) / math.sqrt(n)
    noise = [0.3 * torch.randn(m, n, generator=g, dtype=torch.float64) for _ in range(40)]

    def grad(W, t):  # t = 1, 2, ...
        return (W - T) @ C + noise[t - 1]

    return W0, grad


def _run_muonlab(name, W0, grad, steps, cfg, executor=None):
    W = torch.nn.Parameter(W0.clone())
    opt = muonlab.HybridOptimizer([W], name, executor=executor, **cfg)
    for t in range(1, steps + 1):
        W.grad = grad(W.detach(), t)
        opt.step()
    return W.detach()


def _slices(d, b, on):
    if b > 0 and on and d > b:
        return [slice(i, min(i + b, d)) for i in range(0, d, b)]
    return [slice(0, d)]


# ---- Shampoo reference ---------------------------------------------------------------------------


def _np_root(A, e, ridge, relative):
    if relative:
        ridge = ridge * max(np.linalg.eigvalsh(A).max(), 0.0)
    lam, V = np.linalg.eigh(A + ridge * np.eye(len(A)))
    lam = np.maximum(lam, max(ridge, np.finfo(np.float64).tiny))
    return (V * lam ** (-e)) @ V.T


def _ref_shampoo(W0, grad, steps, *, lr, betas=(0.9, 0.95), exponents=(0.25, 0.25), matrix_eps=1e-6,
                 ridge=True, relative_eps=False, statistics="ema", bias_correction=True, precondition_frequency=1,
                 grafting="none", adam_eps=1e-8, graft_eps=1e-8, block_size=0, max_precond_dim=10000,
                 weight_decay=0.0):
    W = W0.numpy().copy()
    m, n = W.shape
    b1, b2 = betas
    left, right = m <= max_precond_dim, n <= max_precond_dim
    rows, cols = _slices(m, block_size, left), _slices(n, block_size, right)
    L = {(i, j): matrix_eps * np.eye(r.stop - r.start) for i, r in enumerate(rows) for j in range(len(cols))}
    R = {(i, j): matrix_eps * np.eye(c.stop - c.start) for i in range(len(rows)) for j, c in enumerate(cols)}
    PL, PR = {}, {}
    M, nu = np.zeros_like(W), np.zeros_like(W)
    for t in range(1, steps + 1):
        G = grad(torch.from_numpy(W), t).numpy()
        M = b1 * M + (1 - b1) * G
        nu = b2 * nu + (1 - b2) * G * G
        Mh = M / (1 - b1**t) if bias_correction else M
        S = np.zeros_like(W)
        for i, rs in enumerate(rows):
            for j, cs in enumerate(cols):
                g = G[rs, cs]
                for stats, outer in ((L, g @ g.T), (R, g.T @ g)):
                    stats[i, j] = b2 * stats[i, j] + (1 - b2) * outer if statistics == "ema" else stats[i, j] + outer
                if (t - 1) % precondition_frequency == 0:
                    c = 1 - b2**t if statistics == "ema" and bias_correction else 1.0
                    r = matrix_eps if ridge else 0.0
                    PL[i, j] = _np_root(L[i, j] / c, exponents[0], r, relative_eps)
                    PR[i, j] = _np_root(R[i, j] / c, exponents[1], r, relative_eps)
                blk = Mh[rs, cs]
                blk = PL[i, j] @ blk if left else blk
                S[rs, cs] = blk @ PR[i, j] if right else blk
        if grafting == "adam":
            A = Mh / (np.sqrt(nu / (1 - b2**t)) + adam_eps)
            S = np.linalg.norm(A) / (np.linalg.norm(S) + graft_eps) * S
        W = (1 - lr * weight_decay) * W - lr * S
    return torch.from_numpy(W)


SHAMPOO_CASES = {
    "default": {},
    "shampoo2_grafted": {"exponents": (0.5, 0.5), "grafting": "adam"},
    "blocked_padded_freq3": {"block_size": 4, "precondition_frequency": 3},
    "one_sided_relative_eps": {"max_precond_dim": 8, "relative_eps": True, "matrix_eps": 1e-4},
    "sum_no_ridge_wd": {"statistics": "sum", "ridge": False, "bias_correction": False, "weight_decay": 0.1},
    "asymmetric_exponents": {"exponents": (0.5, 0.0), "betas": (0.5, 0.99)},
}


@pytest.mark.parametrize("case", list(SHAMPOO_CASES))
@pytest.mark.parametrize("shape", [(7, 10), (10, 6)])
def test_shampoo_matches_float64_reference(case, shape):
    cfg = {"lr": 0.02, **SHAMPOO_CASES[case]}
    W0, grad = _problem(*shape)
    ours = _run_muonlab("shampoo", W0, grad, 7, cfg)
    ref = _ref_shampoo(W0, grad, 7, **cfg)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_shampoo_one_step_is_the_polar_factor():
    """Without momentum or accumulation, e_L = e_R = ¼ and ε → 0: (GGᵀ)^(−¼) G (GᵀG)^(−¼) = UVᵀ
    (Muon's direction)."""
    W0, grad = _problem(6, 6)
    W1 = _run_muonlab("shampoo", W0, grad, 1, {"lr": 1.0, "betas": (0.0, 0.95), "matrix_eps": 1e-14})
    U, _, Vh = torch.linalg.svd(grad(W0, 1))
    torch.testing.assert_close(W0 - W1, U @ Vh, rtol=0, atol=1e-7)


def test_shampoo_with_zero_exponents_is_momentum_sgd():
    W0, grad = _problem(5, 8)
    ours = _run_muonlab("shampoo", W0, grad, 6, {"lr": 0.1, "exponents": (0.0, 0.0), "betas": (0.8, 0.95)})
    W, M = W0.clone(), torch.zeros_like(W0)
    for t in range(1, 7):
        M = 0.8 * M + 0.2 * grad(W, t)
        W = W - 0.1 * M / (1 - 0.8**t)
    torch.testing.assert_close(ours, W, rtol=1e-12, atol=1e-12)


def test_blocking_with_one_block_is_no_blocking_and_padding_round_trips():
    W0, grad = _problem(9, 7)
    a = _run_muonlab("shampoo", W0, grad, 4, {"lr": 0.02})
    b = _run_muonlab("shampoo", W0, grad, 4, {"lr": 0.02, "block_size": 9})
    assert torch.equal(a, b)
    lay = block_layout(9, 7, 4, 10000)
    assert (lay.rows, lay.cols, lay.bo, lay.bi) == (3, 2, 4, 4)
    X = torch.randn(2, 9, 7)
    assert torch.equal(merge_blocks(split_blocks(X, lay), lay), X)
    assert block_layout(9, 20000, 4, 10000).right is False  # too long: identity, one block


@pytest.mark.parametrize("name,cfg", [
    ("shampoo", {"block_size": 4, "grafting": "adam", "spectral_norm": "spectral"}),
    ("soap", {"block_size": 4, "precondition_frequency": 2, "spectral_norm": "spectral"}),
])
def test_batched_matrix_phase_equals_one_matrix_at_a_time(name, cfg):
    torch.manual_seed(0)
    params = [torch.randn(6, 5, dtype=torch.float64) for _ in range(3)]
    grads = [[torch.randn(6, 5, dtype=torch.float64) for _ in params] for _ in range(4)]
    out = []
    for executor in (LocalExecutor(batch=True), LocalExecutor(batch=False)):
        ps = [torch.nn.Parameter(p.clone()) for p in params]
        opt = muonlab.HybridOptimizer([{"params": ps, "param_names": ["a", "b", "c"]}], name, executor=executor,
                                      lr=0.01, **cfg)
        for gs in grads:
            for p, g in zip(ps, gs):
                p.grad = g.clone()
            opt.step()
        out.append(torch.stack([p.detach() for p in ps]))
    torch.testing.assert_close(out[0], out[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["shampoo", "soap"])
@pytest.mark.parametrize("shape", [(6, 9), (12, 4)])
def test_spectral_norm_gives_update_of_spectral_norm_sqrt_m_over_n(name, shape):
    """App. F of 2512.05620: the update ΔW = η·A·√(m/n)/σ̂ has ‖ΔW‖₂ = η√(m/n) up to the power
    iteration's error (σ̂ = ‖Av‖ ≤ σ_max, so never below, and within 2% after 5 warm-started steps)."""
    m, n = shape
    W0, grad = _problem(m, n)
    cfg = {"lr": 0.01, "spectral_norm": "spectral", "weight_decay": 0.0}
    before = _run_muonlab(name, W0, grad, 5, cfg)
    after = _run_muonlab(name, W0, grad, 6, cfg)
    sigma = torch.linalg.matrix_norm(after - before, ord=2)
    assert 1 - 1e-9 <= sigma.item() / (0.01 * math.sqrt(m / n)) < 1.02
    rms = _run_muonlab(name, W0, grad, 6, {**cfg, "spectral_norm": "rms"}) - \
        _run_muonlab(name, W0, grad, 5, {**cfg, "spectral_norm": "rms"})
    assert abs(rms.square().mean().sqrt().item() / 0.01 - 1) < 1e-6


# ---- SOAP reference ------------------------------------------------------------------------------


def _np_eigbasis(P):
    _, Q = np.linalg.eigh(P + 1e-30 * np.eye(len(P)))
    return Q[:, ::-1]


def _ref_soap(W0, grad, steps, *, lr, betas=(0.95, 0.95), shampoo_beta=None, eps=1e-8, weight_decay=0.01,
              precondition_frequency=10, max_precond_dim=10000, block_size=0, correct_bias=True):
    """soap.py's algorithm (rotated first moment, decay after the update), blockwise."""
    W = W0.numpy().copy()
    m, n = W.shape
    b1, b2 = betas
    bs = b2 if shampoo_beta is None else shampoo_beta
    left, right = m <= max_precond_dim, n <= max_precond_dim
    rows, cols = _slices(m, block_size, left), _slices(n, block_size, right)
    blocks = [(rs, cs) for rs in rows for cs in cols]
    st = {}
    for t_call in range(1, steps + 1):
        G = grad(torch.from_numpy(W), t_call).numpy()
        U = np.zeros_like(W)
        t = t_call - 1
        for k, (rs, cs) in enumerate(blocks):
            g = G[rs, cs]
            if t == 0:
                s = st[k] = {"m": np.zeros_like(g), "v": np.zeros_like(g)}
                s["L"] = (1 - bs) * g @ g.T if left else None
                s["R"] = (1 - bs) * g.T @ g if right else None
                s["QL"] = _np_eigbasis(s["L"]) if left else None
                s["QR"] = _np_eigbasis(s["R"]) if right else None
                continue
            s = st[k]
            rot = lambda X, s=s: (s["QL"].T @ X if left else X) @ (s["QR"] if right else np.eye(X.shape[1]))
            back = lambda X, s=s: (s["QL"] @ X if left else X) @ (s["QR"].T if right else np.eye(X.shape[1]))
            gp = rot(g)
            s["m"] = b1 * s["m"] + (1 - b1) * gp
            s["v"] = b2 * s["v"] + (1 - b2) * gp * gp
            U[rs, cs] = back(s["m"] / (np.sqrt(s["v"]) + eps))
            if left:
                s["L"] = bs * s["L"] + (1 - bs) * g @ g.T
            if right:
                s["R"] = bs * s["R"] + (1 - bs) * g.T @ g
            if t % precondition_frequency == 0:
                mo = back(s["m"])
                for side, axis in (("L", 0), ("R", 1)):
                    if s[side] is None:
                        continue
                    P, Q = s[side], s["Q" + side]
                    order = np.argsort(-np.diag(Q.T @ P @ Q), kind="stable")
                    s["v"] = np.take(s["v"], order, axis=axis)
                    s["Q" + side] = np.linalg.qr(P @ Q[:, order])[0]
                s["m"] = rot(mo)
        if t == 0:
            continue
        step = lr * math.sqrt(1 - b2**t) / (1 - b1**t) if correct_bias else lr
        W = W - step * U
        W = W - lr * weight_decay * W
    return torch.from_numpy(W)


SOAP_CASES = {
    "default_freq3": {"precondition_frequency": 3},
    "blocked_freq2": {"block_size": 4, "precondition_frequency": 2, "shampoo_beta": 0.9},
    "one_sided": {"max_precond_dim": 10, "precondition_frequency": 2},
    "no_preconditioning": {"max_precond_dim": 3, "correct_bias": False},
}


@pytest.mark.parametrize("case", list(SOAP_CASES))
def test_soap_matches_float64_reference_of_soap_py(case):
    cfg = {"lr": 0.01, **SOAP_CASES[case]}
    shape = (6, 20) if case == "one_sided" else (8, 8)
    W0, grad = _problem(*shape)
    ours = _run_muonlab("soap", W0, grad, 9, cfg)
    ref = _ref_soap(W0, grad, 9, **cfg)
    assert not torch.equal(ours, W0)
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)


def test_soap_first_step_leaves_the_weights_alone():
    W0, grad = _problem(5, 5)
    assert torch.equal(_run_muonlab("soap", W0, grad, 1, {"lr": 0.1, "weight_decay": 0.5}), W0)


def test_soap_without_preconditioned_sides_is_adamw_one_step_late():
    """Both sides longer than max_precond_dim: Q = I, so SOAP is Adam (ε outside the bias
    correction) on the gradients from the second call on, with the decay after the update."""
    W0, grad = _problem(5, 7)
    cfg = {"lr": 0.01, "betas": (0.9, 0.99), "weight_decay": 0.1, "max_precond_dim": 2}
    ours = _run_muonlab("soap", W0, grad, 6, cfg)
    W, m, v = W0.clone(), torch.zeros_like(W0), torch.zeros_like(W0)
    for t_call in range(2, 7):
        t, g = t_call - 1, grad(W, t_call)
        m, v = 0.9 * m + 0.1 * g, 0.99 * v + 0.01 * g * g
        W = (W - 0.01 * math.sqrt(1 - 0.99**t) / (1 - 0.9**t) * m / (v.sqrt() + 1e-8)) * (1 - 0.01 * 0.1)
    torch.testing.assert_close(ours, W, rtol=1e-12, atol=1e-12)


def test_soap_decay_order_option():
    W0, grad = _problem(6, 6)
    after = _run_muonlab("soap", W0, grad, 3, {"lr": 0.05, "weight_decay": 0.5})
    before = _run_muonlab("soap", W0, grad, 3, {"lr": 0.05, "weight_decay": 0.5, "decay_after_update": False})
    assert 0 < (after - before).abs().max() < 1e-2  # O(η²λ)


# ---- parity with pip upstreams -------------------------------------------------------------------


def _run_upstream(opt_cls, W0, grad, steps, **kw):
    W = torch.nn.Parameter(W0.clone())
    opt = opt_cls([W], **kw)
    for t in range(1, steps + 1):
        W.grad = grad(W.detach(), t)
        opt.step()
    return W.detach()


@pytest.mark.parametrize("shape", [(6, 6), (5, 8)])
def test_shampoo_parity_with_pytorch_optimizer(shape):
    """kozistr's ``Shampoo`` (momentum 0) is Gupta et al.'s: summed statistics from εI, inverse 4th
    roots without ridge, no bias correction: our ``statistics='sum', ridge=False,
    bias_correction=False, betas=(0, ·)``. Its roots use an SVD, ours eigh: rounding only."""
    po = pytest.importorskip("pytorch_optimizer")
    W0, grad = _problem(*shape)
    theirs = _run_upstream(po.Shampoo, W0, grad, 8, lr=0.02, momentum=0.0, matrix_eps=1e-6,
                           preconditioning_compute_steps=1)
    ours = _run_muonlab("shampoo", W0, grad, 8, {"lr": 0.02, "statistics": "sum", "ridge": False,
                                                "bias_correction": False, "betas": (0.0, 0.95),
                                                "matrix_eps": 1e-6})
    torch.testing.assert_close(ours, theirs, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("freq", [20, 3])
def test_soap_parity_with_pytorch_optimizer(freq):
    """kozistr's ``SOAP`` is the same algorithm (its first moment is kept in parameter space, as
    ours). It takes eigh in the parameter's dtype and the refresh QR in float32: with
    ``basis_dtype='qr_float32'`` we agree to rounding with and without refreshes; our default
    ("auto": float64 QR for float64 parameters) differs only once a refresh happened (~1e-7)."""
    po = pytest.importorskip("pytorch_optimizer")
    W0, grad = _problem(8, 8)
    kw = {"lr": 0.01, "betas": (0.9, 0.95), "weight_decay": 0.01, "precondition_frequency": freq, "eps": 1e-8}
    theirs = _run_upstream(po.SOAP, W0, grad, 10, **kw)
    ours = _run_muonlab("soap", W0, grad, 10, {**kw, "basis_dtype": "qr_float32"})
    assert not torch.equal(ours, W0)
    torch.testing.assert_close(ours, theirs, rtol=1e-11, atol=1e-11)
    auto = _run_muonlab("soap", W0, grad, 10, kw)
    diff = (auto - theirs).abs().max().item()
    assert (diff < 1e-11) if freq > 10 else (1e-10 < diff < 1e-5)
