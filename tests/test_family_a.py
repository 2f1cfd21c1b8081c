"""Family A (issue 6): NorMuon, AdaMuon, AdaGO, PolarGrad, MuSGD, MuonBP, TrasMuon.

For each method: a float64 for-loop reference written from its source (the paper or code cited in
its module docstring and in docs/methods/family_a.md), a reduction to a
simpler, already tested method with the extra knob switched off, and the concrete behaviour the
source states. The exact polar factor (``orthogonalizer="svd"`` in float64) makes the comparisons
exact up to round-off. The torch.optim contract and MLP training come from test_contract.py.
"""

from __future__ import annotations

import math

import pytest
import torch

import muonlab

EXACT = dict(orthogonalizer="svd", compute_dtype="float64")
SHAPES = [(12, 8), (12, 8), (6, 10), (8, 8)]  # tall (twice: a batch of 2), wide, square


def _params(shapes=SHAPES, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*s, generator=g, dtype=torch.float64)) for s in shapes]


def _grads(t, shapes, seed=1):
    g = torch.Generator().manual_seed(1000 * seed + t)
    return [torch.randn(*s, generator=g, dtype=torch.float64) for s in shapes]


def _run(name, steps=5, shapes=SHAPES, grads=_grads, **kw):
    """Run a registered method on fresh float64 params; return the final params."""
    params = _params(shapes)
    opt = muonlab.HybridOptimizer(params, name, **{**EXACT, **kw})
    for t in range(steps):
        for p, g in zip(params, grads(t, shapes)):
            p.grad = g
        opt.step()
    return [p.detach() for p in params]


def _start(shapes=SHAPES):
    return [p.detach().clone() for p in _params(shapes)]


def _close(ours, ref, tol=1e-10):
    for a, b in zip(ours, ref):
        assert ((a - b).norm() / b.norm()).item() <= tol


def polar(x):
    """U Vᵀ over the nonzero singular values (sign matrices can be singular)."""
    U, S, Vh = torch.linalg.svd(x, full_matrices=False)
    keep = (S > 1e-10 * S[0]).to(x.dtype)
    return (U * keep) @ Vh


def rms(x):
    return x.pow(2).mean().sqrt()


def ema_momentum(buf, g, beta, nesterov):
    buf.mul_(beta).add_((1 - beta) * g)
    return (1 - beta) * g + beta * buf if nesterov else buf.clone()


# ---- NorMuon ------------------------------------------------------------------------------------


def _ref_normuon(steps, lr, wd, beta, beta2, eps, nesterov, mode, shapes=SHAPES):
    ws = _start(shapes)
    ms = [torch.zeros_like(w) for w in ws]
    vs = [torch.zeros(w.shape[0], 1, dtype=w.dtype) for w in ws]
    for t in range(steps):
        for w, m, v, g in zip(ws, ms, vs, _grads(t, shapes)):
            rows, cols = w.shape
            O = polar(ema_momentum(m, g, beta, nesterov))
            v.mul_(beta2).add_((1 - beta2) * (O * O).mean(dim=1, keepdim=True))
            if mode == "official":
                Ob = O / (v.sqrt() + eps)
                Ob = Ob * O.norm() / (Ob.norm() + eps)
                step = lr * math.sqrt(max(1, rows / cols)) * Ob
            else:
                Ob = O / (v + eps).sqrt()
                step = lr * 0.2 * math.sqrt(rows * cols) / (Ob.norm() + eps) * Ob
            w.mul_(1 - lr * wd).sub_(step)
    return ws


@pytest.mark.parametrize("mode", ["official", "paper"])
@pytest.mark.parametrize("nesterov", [True, False])
def test_normuon_matches_float64_reference(mode, nesterov):
    kw = dict(lr=0.02, weight_decay=0.1, momentum=0.9, beta2=0.8, norm_eps=1e-6, nesterov=nesterov)
    ours = _run("normuon", scale_mode=mode, **kw)
    ref = _ref_normuon(5, 0.02, 0.1, 0.9, 0.8, 1e-6, nesterov, mode)
    _close(ours, ref)


def test_normuon_is_muon_when_rows_of_the_polar_factor_are_orthonormal():
    # Wide or square + exact polar: every row of U Vᵀ has norm 1, so v is uniform over rows and
    # the normalisation is a no-op (official) or Moonlight's RMS-0.2 scaling (paper).
    shapes = [(6, 10), (8, 8), (4, 16)]
    kw = dict(lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=True, steps=6, shapes=shapes)
    _close(_run("normuon", **kw), _run("muon", **kw), tol=1e-9)
    _close(_run("normuon", scale_mode="paper", **kw), _run("muon", adjust_lr_fn="match_rms_adamw", **kw),
           tol=1e-9)


def test_normuon_changes_tall_matrices():
    kw = dict(lr=0.02, weight_decay=0.0, shapes=[(12, 4)])
    a, b = _run("normuon", **kw)[0], _run("muon", **kw)[0]
    assert (a - b).norm() > 1e-3 * b.norm()


def test_normuon_paper_mode_rejects_a_shape_scaling():
    with pytest.raises(ValueError, match="scale_mode='paper'"):
        muonlab.HybridOptimizer(_params(), "normuon", scale_mode="paper", adjust_lr_fn="original")


# ---- AdaMuon ------------------------------------------------------------------------------------


def _ref_adamuon(steps, lr, wd, beta, beta2, eps, nesterov, sign):
    ws = _start()
    ms = [torch.zeros_like(w) for w in ws]
    Vs = [torch.zeros_like(w) for w in ws]
    for t in range(steps):
        for w, m, V, g in zip(ws, ms, Vs, _grads(t, SHAPES)):
            X = ema_momentum(m, g, beta, nesterov)
            O = polar(torch.sign(X) if sign else X)
            V.mul_(beta2).add_((1 - beta2) * O * O)
            Oh = O / (V.sqrt() + eps)
            Oh = Oh * 0.2 * math.sqrt(w.numel()) / (Oh.norm() + eps)
            w.mul_(1 - lr * wd).sub_(lr * Oh)
    return ws


@pytest.mark.parametrize("sign", [True, False])
@pytest.mark.parametrize("beta2", [None, 0.99])
def test_adamuon_matches_float64_reference(sign, beta2):
    kw = dict(lr=0.02, weight_decay=0.05, momentum=0.9, nesterov=True, norm_eps=1e-8)
    ours = _run("adamuon", sign_before_ns=sign, beta2=beta2, **kw)
    ref = _ref_adamuon(5, 0.02, 0.05, 0.9, 0.9 if beta2 is None else beta2, 1e-8, True, sign)
    _close(ours, ref)


@pytest.mark.parametrize("sign", [True, False])
def test_adamuon_update_rms_is_0_2_lr(sign):
    """The RMS-aligned rescale: every step moves each matrix by exactly RMS 0.2·η (no WD)."""
    params = _params()
    opt = muonlab.HybridOptimizer(params, "adamuon", lr=0.01, weight_decay=0.0, sign_before_ns=sign,
                                  norm_eps=0.0, **EXACT)
    for t in range(3):
        before = [p.detach().clone() for p in params]
        for p, g in zip(params, _grads(t, SHAPES)):
            p.grad = g
        opt.step()
        for p, b in zip(params, before):
            assert rms(p.detach() - b).item() == pytest.approx(0.2 * 0.01, rel=1e-12)


def test_adamuon_without_momentum_is_sign_descent_on_the_polar_factor():
    # β = β₂ = 0: V = O⊙O, so Ô = sign(O) and the step is 0.2·η·sign(polar(G)) (up to ε).
    shapes = [(12, 8), (6, 10)]
    start = _start(shapes)
    ours = _run("adamuon", steps=1, shapes=shapes, lr=0.01, weight_decay=0.0, momentum=0.0,
                sign_before_ns=False)
    for w0, w1, g in zip(start, ours, _grads(0, shapes)):
        _close([w1], [w0 - 0.01 * 0.2 * torch.sign(polar(g))], tol=1e-7)


# ---- AdaGO --------------------------------------------------------------------------------------


def _scaled_grads(norms):
    """Gradients whose Frobenius norms follow ``norms[t]``."""

    def grads(t, shapes):
        return [g / g.norm() * norms[t] for g in _grads(t, shapes)]

    return grads


def _ref_adago(steps, lr, beta, gamma, floor, grads):
    ws = _start()
    ms = [torch.zeros_like(w) for w in ws]
    vsq = [0.0] * len(ws)
    for t in range(steps):
        for i, (w, m, g) in enumerate(zip(ws, ms, grads(t, SHAPES))):
            m.mul_(beta).add_((1 - beta) * g)
            clipped = min(g.norm().item(), gamma)
            vsq[i] += clipped**2
            alpha = max(floor * lr, lr * clipped / math.sqrt(vsq[i]))
            w.sub_(alpha * polar(m))
    return ws


def test_adago_matches_float64_reference():
    grads = _scaled_grads([0.5, 3.0, 0.2, 1.5, 0.05, 2.0])  # both sides of γ
    ours = _run("adago", steps=6, grads=grads, lr=0.1, momentum=0.9, gamma=1.0, step_floor=0.05)
    _close(ours, _ref_adago(6, 0.1, 0.9, 1.0, 0.05, grads))


@pytest.mark.parametrize("norm", [0.3, 4.0])
def test_adago_step_is_lr_over_sqrt_t_for_constant_gradient_norms(norm):
    # v_t = √t·min(‖G‖, γ), so α_t = η/√t ≤ η: AdaGrad-norm's decay of the step size.
    shapes = [(12, 8), (6, 10)]
    params = _params(shapes)
    opt = muonlab.HybridOptimizer(params, "adago", lr=0.1, gamma=1.0, step_floor=0.0, **EXACT)
    grads = _scaled_grads([norm] * 8)
    for t in range(8):
        before = [p.detach().clone() for p in params]
        for p, g in zip(params, grads(t, shapes)):
            p.grad = g
        opt.step()
        for p, b in zip(params, before):
            # ‖α·U Vᵀ‖_F = α·√min(m, n)
            alpha = (p.detach() - b).norm().item() / math.sqrt(min(p.shape))
            assert alpha == pytest.approx(0.1 / math.sqrt(t + 1), rel=1e-12)


def test_adago_step_floor():
    shapes = [(6, 10)]
    params = _params(shapes)
    opt = muonlab.HybridOptimizer(params, "adago", lr=0.1, step_floor=0.4, **EXACT)
    grads = _scaled_grads([2.0] * 10)
    for t in range(10):
        before = params[0].detach().clone()
        params[0].grad = grads(t, shapes)[0]
        opt.step()
        alpha = (params[0].detach() - before).norm().item() / math.sqrt(6)
        assert alpha == pytest.approx(0.1 * max(0.4, 1 / math.sqrt(t + 1)), rel=1e-12)


def test_adago_first_step_is_a_muon_step():
    kw = dict(steps=1, lr=0.05, weight_decay=0.1, momentum=0.9, nesterov=False, adjust_lr_fn="none")
    _close(_run("adago", **kw), _run("muon", **kw), tol=1e-12)


# ---- PolarGrad ----------------------------------------------------------------------------------


@pytest.mark.parametrize("nesterov", [False, True])
def test_polargrad_is_muon_times_the_nuclear_norm(nesterov):
    """tr(H) = ⟨M, U_p⟩ = ‖M‖_* = Σσᵢ, checked against svdvals in a float64 loop."""
    lr, wd, beta = 0.01, 0.1, 0.9
    ws = _start()
    ms = [torch.zeros_like(w) for w in ws]
    for t in range(5):
        for w, m, g in zip(ws, ms, _grads(t, SHAPES)):
            X = ema_momentum(m, g, beta, nesterov)
            w.mul_(1 - lr * wd).sub_(lr * torch.linalg.svdvals(X).sum() * polar(X))
    ours = _run("polargrad", lr=lr, weight_decay=wd, momentum=beta, nesterov=nesterov)
    _close(ours, ws)


def test_polargrad_one_step_equals_scaled_muon_step():
    start = _start()
    kw = dict(steps=1, lr=0.01, weight_decay=0.0, momentum=0.9, nesterov=False, adjust_lr_fn="none")
    pg, mu = _run("polargrad", **kw), _run("muon", **kw)
    for w0, a, b, g in zip(start, pg, mu, _grads(0, SHAPES)):
        nuclear = torch.linalg.svdvals(0.1 * g).sum()  # M₁ = (1−β)G
        _close([a - w0], [nuclear * (b - w0)], tol=1e-12)


# ---- MuSGD --------------------------------------------------------------------------------------


def _ref_musgd(steps, lr, momentum, wd, nesterov, w_muon, w_sgd):
    """Ultralytics MuSGD.step for a use_muon group, transcribed with the exact polar factor."""
    ws = _start()
    bufs = [torch.zeros_like(w) for w in ws]
    sgd_bufs = [torch.zeros_like(w) for w in ws]
    for t in range(steps):
        for w, buf, sbuf, grad in zip(ws, bufs, sgd_bufs, _grads(t, SHAPES)):
            rows, cols = w.shape
            update = polar(ema_momentum(buf, grad, momentum, nesterov)) * max(1, rows / cols) ** 0.5
            w.add_(update, alpha=-(lr * w_muon))
            if wd != 0:
                grad = grad.add(w, alpha=wd)  # L2 at the weights after the Muon part
            sbuf.mul_(momentum).add_(grad)
            sgd_update = grad.add(sbuf, alpha=momentum) if nesterov else sbuf
            w.add_(sgd_update, alpha=-(lr * w_sgd))
    return ws


@pytest.mark.parametrize("nesterov", [True, False])
def test_musgd_matches_ultralytics_step(nesterov):
    kw = dict(lr=0.01, momentum=0.9, weight_decay=0.05, nesterov=nesterov)
    ours = _run("musgd", muon_weight=0.2, sgd_weight=1.0, **kw)
    _close(ours, _ref_musgd(5, 0.01, 0.9, 0.05, nesterov, 0.2, 1.0))


def test_musgd_muon_only_is_muon_without_weight_decay():
    kw = dict(lr=0.02, momentum=0.9, nesterov=True)
    ours = _run("musgd", muon_weight=1.0, sgd_weight=0.0, weight_decay=0.3, **kw)
    _close(ours, _run("muon", weight_decay=0.0, **kw), tol=1e-12)


@pytest.mark.parametrize("nesterov", [True, False])
def test_musgd_sgd_only_is_the_sgd_rule_bitwise(nesterov):
    # Default float32 settings (bf16 Newton–Schulz still runs, with weight 0).
    kw = dict(lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
    results = []
    for name, extra in [("musgd", dict(muon_weight=0.0, sgd_weight=1.0)),
                        ("sgd", dict(weight_decay_mode="coupled"))]:
        params = [torch.nn.Parameter(p.detach().float()) for p in _params()]
        opt = muonlab.HybridOptimizer(params, name, **kw, **extra)
        for t in range(5):
            for p, g in zip(params, _grads(t, SHAPES)):
                p.grad = g.float()
            opt.step()
        results.append(params)
    assert all(torch.equal(a, b) for a, b in zip(*results))


# ---- MuonBP -------------------------------------------------------------------------------------


def _ref_muonbp(steps, lr, wd, beta, period, k, dim, r, adjust, shapes):
    scale = {"original": lambda a, b: math.sqrt(max(1, a / b)),
             "match_rms_adamw": lambda a, b: 0.2 * math.sqrt(max(a, b))}[adjust]
    ws = _start(shapes)
    ms = [torch.zeros_like(w) for w in ws]
    for t in range(steps):
        for w, m, g in zip(ws, ms, _grads(t, shapes)):
            X = ema_momentum(m, g, beta, True)
            w.mul_(1 - lr * wd)
            if t % period == 0:  # 0-based t: steps 1, P+1, ... in 1-based counting
                w.sub_(lr * scale(*X.shape) * polar(X))
            else:
                size = -(-X.shape[dim] // k)  # torch.chunk: ceil-sized blocks
                for start in range(0, X.shape[dim], size):
                    Xb = X.narrow(dim, start, min(size, X.shape[dim] - start))
                    w.narrow(dim, start, Xb.shape[dim]).sub_(lr * r * scale(*Xb.shape) * polar(Xb))
    return ws


@pytest.mark.parametrize("adjust", ["original", "match_rms_adamw"])
def test_muonbp_with_period_1_or_one_block_is_muon(adjust):
    kw = dict(lr=0.02, weight_decay=0.1, adjust_lr_fn=adjust)
    muon = _run("muon", **kw)
    _close(_run("muonbp", period=1, num_blocks=4, **kw), muon, tol=1e-12)
    _close(_run("muonbp", period=3, num_blocks=1, **kw), muon, tol=1e-12)


@pytest.mark.parametrize("dim", [0, 1])
def test_muonbp_matches_float64_reference(dim):
    shapes = [(10, 8), (10, 8), (6, 9)]  # uneven blocks: 10 rows in 3 → 4, 4, 2; 9 cols → 3, 3, 3
    kw = dict(lr=0.02, weight_decay=0.1, period=3, num_blocks=3, shard_dim=dim, block_lr_scale=0.5)
    ours = _run("muonbp", steps=7, shapes=shapes, **kw)
    _close(ours, _ref_muonbp(7, 0.02, 0.1, 0.95, 3, 3, dim, 0.5, "match_rms_adamw", shapes))


def test_muonbp_block_step_orthogonalizes_each_block():
    # Period > steps: after one block step, each row block of the update is a scaled partial isometry.
    params = _params([(8, 6)])
    opt = muonlab.HybridOptimizer(params, "muonbp", lr=1.0, weight_decay=0.0, period=100, num_blocks=2,
                                  adjust_lr_fn="none", **EXACT)
    for t in range(2):
        before = params[0].detach().clone()
        params[0].grad = _grads(t, [(8, 6)])[0]
        opt.step()
    delta = before - params[0].detach()  # the second (block) step
    for block in delta.chunk(2, dim=0):
        torch.testing.assert_close(block @ block.T, torch.eye(4, dtype=torch.float64))
    assert (delta @ delta.T - torch.eye(8, dtype=torch.float64)).abs().max() > 1e-3  # not a full polar


def test_muonbp_params_at_different_steps_in_one_batch():
    """Same-shape matrices are batched; one that missed a step is at another phase of the period."""
    shapes = [(8, 6), (8, 6)]
    kw = dict(lr=0.02, period=2, num_blocks=2, **EXACT)

    def run(together):
        params = _params(shapes)
        opts = ([muonlab.HybridOptimizer(params, "muonbp", **kw)] if together
                else [muonlab.HybridOptimizer([p], "muonbp", **kw) for p in params])
        for t in range(5):
            for i, (p, g) in enumerate(zip(params, _grads(t, shapes))):
                p.grad = None if (t == 1 and i == 1) else g
            for opt in opts:
                opt.step()
        return params

    _close(run(True), run(False), tol=1e-14)


# ---- TrasMuon -----------------------------------------------------------------------------------


def _ref_trasmuon(steps, lr, wd, b1, b2, be, alpha, cmin, eps):
    """variant="summary": muonlab's earlier reading of the paper (bias-corrected E_ref from 0)."""
    ws = _start()
    ms = [torch.zeros_like(w) for w in ws]
    rs = [torch.zeros(w.shape[0], 1, dtype=w.dtype) for w in ws]
    erefs = [0.0] * len(ws)
    for t in range(steps):
        for i, (w, m, r, g) in enumerate(zip(ws, ms, rs, _grads(t, SHAPES))):
            rows, cols = w.shape
            m.mul_(b1).add_((1 - b1) * g)
            O = polar(m / (m.norm() / math.sqrt(rows * cols) + eps))
            r.mul_(b2).add_((1 - b2) * (O * O).mean(dim=1, keepdim=True))
            Ob = O / (r + eps).sqrt()
            E = (m * m).sum(dim=0)  # per column
            erefs[i] = be * erefs[i] + (1 - be) * E.median().item()
            ref = erefs[i] / (1 - be ** (t + 1))
            c = (1 / (1 + alpha * torch.log(1 + E / (ref + eps)))).clamp(cmin, 1)
            w.mul_(1 - lr * wd).sub_(lr * math.sqrt(rows * cols) / (Ob.norm() + eps) * Ob * c)
    return ws


def _ref_trasmuon_v21(steps, lr, wd=0.0, b1=0.95, b2=0.95, be=0.99, alpha=1.0, cmin=0.7, kappa=3.0,
                      gamma=0.9, every=4, mu=0.3, rho=0.2, n_min=8, eps=1e-8, eps_e=1e-12, shapes=SHAPES):
    """The released v2.1 (trasmuon-pytorch 0.1.0 ``trasmuon/optimizer.py``) as a float64 loop."""
    ws = _start(shapes)
    st = [dict(m=torch.zeros_like(w), r=torch.zeros(w.shape[0], 1, dtype=w.dtype), eref=None,
               cbar=torch.ones(w.shape[1], dtype=w.dtype), clast=torch.ones(w.shape[1], dtype=w.dtype),
               S=0.0, C=torch.zeros(w.shape[1], dtype=w.dtype)) for w in ws]
    for t in range(1, steps + 1):
        for w, s, g in zip(ws, st, _grads(t - 1, shapes)):
            rows, cols = w.shape
            w.mul_(1 - lr * wd)
            s["m"].mul_(b1).add_((1 - b1) * g)
            O = polar(s["m"])
            s["r"].mul_(b2).add_((1 - b2) * (O * O).mean(dim=1, keepdim=True))
            Ob = O / (s["r"].sqrt() + eps)
            eta = rho * lr * math.sqrt(rows * cols) / (Ob.norm() + 1e-12)
            E = (s["m"] ** 2).sum(dim=0)
            Eq = E.sort().values[max(1, min(cols, int(0.5 * cols + 0.5))) - 1]
            s["eref"] = Eq if s["eref"] is None else be * s["eref"] + (1 - be) * Eq
            s["S"] += lr**2
            s["C"] += lr**2 * s["clast"]
            if cols >= n_min:
                ratio = E / (s["eref"] + eps_e)
                c = (1 / (1 + alpha * torch.log(ratio + 1))).clamp(cmin, 1)
                c = torch.where(ratio > kappa, c, torch.ones_like(c))
                if t == 1 or t % every == 0:
                    s["cbar"] = gamma * s["cbar"] + (1 - gamma) * c
                used = (1 - mu) * s["cbar"] + mu * s["C"] / (s["S"] + 1e-12)
            else:
                used = torch.ones(cols, dtype=w.dtype)
            s["clast"] = used
            w.sub_(eta * Ob * used)
    return ws


WIDE_SHAPES = [(12, 8), (6, 10), (16, 16), (10, 5)]  # 8, 10, 16 columns gated; 5 < 8 not


def test_trasmuon_default_matches_float64_reference_of_v21():
    ours = _run("trasmuon", steps=9, shapes=WIDE_SHAPES, lr=0.003, weight_decay=0.1)
    _close(ours, _ref_trasmuon_v21(9, 0.003, wd=0.1, shapes=WIDE_SHAPES))


def test_trasmuon_v21_knobs_match_float64_reference():
    kw = dict(lr=0.003, momentum=0.9, beta2=0.8, energy_beta=0.9, damping=2.0, min_damping=0.3,
              energy_threshold=1.0, gate_ema=0.5, gate_every=2, sf_mix=0.5, update_rms=0.5, gate_min_cols=9)
    ours = _run("trasmuon", steps=7, shapes=WIDE_SHAPES, **kw)
    ref = _ref_trasmuon_v21(7, 0.003, b1=0.9, b2=0.8, be=0.9, alpha=2.0, cmin=0.3, kappa=1.0, gamma=0.5,
                            every=2, mu=0.5, rho=0.5, n_min=9, shapes=WIDE_SHAPES)
    _close(ours, ref)


def test_trasmuon_summary_variant_matches_its_float64_reference():
    kw = dict(lr=0.003, weight_decay=0.1, momentum=0.9, beta2=0.8, energy_beta=0.9, damping=2.0,
              min_damping=0.3, norm_eps=1e-8, variant="summary")
    ours = _run("trasmuon", steps=6, **kw)
    _close(ours, _ref_trasmuon(6, 0.003, 0.1, 0.9, 0.8, 0.9, 2.0, 0.3, 1e-8))


@pytest.mark.parametrize("variant, extra", [("summary", dict(norm_eps=1e-9)),
                                            ("v2.1", dict(norm_eps=0.0, sf_mix=0.0))])
def test_trasmuon_without_damping_is_normuon_paper_form(variant, extra):
    """Gate off: the summary variant is NorMuon's paper form at update RMS 1 (lr scaled by 0.2);
    v2.1 at its RMS 0.2 (ε outside the root, so compared at ε = 0)."""
    common = dict(weight_decay=0.0, momentum=0.9, beta2=0.8)
    lr = 0.2 * 0.01 if variant == "summary" else 0.01
    tras = _run("trasmuon", lr=lr, damping=0.0, variant=variant, **extra, **common)
    nor = _run("normuon", lr=0.01, scale_mode="paper", nesterov=False, norm_eps=extra["norm_eps"], **common)
    _close(tras, nor, tol=1e-10)


@pytest.mark.parametrize("variant, rho, c_min", [("summary", 1.0, 0.1), ("v2.1", 0.2, 0.7)])
def test_trasmuon_update_rms_is_rho_lr_without_damping_and_within_the_clip_with_it(variant, rho, c_min):
    for damping in (0.0, 1.0):
        params = _params()
        opt = muonlab.HybridOptimizer(params, "trasmuon", lr=0.01, damping=damping, norm_eps=0.0, variant=variant,
                                      sf_mix=0.0, **EXACT)
        for t in range(3):
            before = [p.detach().clone() for p in params]
            for p, g in zip(params, _grads(t, SHAPES)):
                p.grad = g
            opt.step()
            for p, b in zip(params, before):
                u = rms(p.detach() - b).item()
                if damping == 0:
                    assert u == pytest.approx(rho * 0.01, rel=1e-12)
                else:
                    assert c_min * rho * 0.01 <= u <= rho * 0.01


def test_trasmuon_v21_gate_moves_only_at_t1_and_every_kth_step():
    params = _params(WIDE_SHAPES)
    opt = muonlab.HybridOptimizer(params, "trasmuon", lr=0.01, **EXACT)
    moved = []
    for t in range(1, 10):
        before = [opt.state[p]["gate_ema"].clone() for p in params] if t > 1 else None
        for p, g in zip(params, _grads(t, WIDE_SHAPES)):
            p.grad = g * t  # growing gradients: the energies outgrow E_ref
        opt.step()
        if before is not None:
            moved.append(any(not torch.equal(b, opt.state[p]["gate_ema"]) for b, p in zip(before, params)))
    assert moved == [t % 4 == 0 for t in range(2, 10)]
    assert torch.equal(opt.state[params[-1]]["gate_ema"], torch.ones(5, dtype=torch.float64))  # 5 < 8 columns


# ---- all of family A ----------------------------------------------------------------------------

FAMILY = ["normuon", "adamuon", "adago", "polargrad", "musgd", "muonbp", "trasmuon"]


@pytest.mark.parametrize("name", FAMILY)
def test_batch_view_equals_separate_matrices(name):
    """A (3, m, n) parameter with matrix_view='batch' keeps one state slot per matrix."""
    kw = dict(lr=0.01, num_blocks=2, period=2) if name == "muonbp" else dict(lr=0.01)
    g = torch.Generator().manual_seed(0)
    stacked = torch.nn.Parameter(torch.randn(3, 6, 10, generator=g, dtype=torch.float64))
    separate = [torch.nn.Parameter(stacked.detach()[i].clone()) for i in range(3)]
    opt_a = muonlab.HybridOptimizer([stacked], name, matrix_view="batch", **EXACT, **kw)
    opt_b = muonlab.HybridOptimizer(separate, name, **EXACT, **kw)
    for t in range(4):
        grad = torch.randn(3, 6, 10, generator=g, dtype=torch.float64) * (1 + t)
        stacked.grad = grad
        for i, p in enumerate(separate):
            p.grad = grad[i].clone()
        opt_a.step()
        opt_b.step()
    _close(list(stacked.detach()), [p.detach() for p in separate], tol=1e-12)


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("nesterov", [True, False])
def test_gradients_are_never_modified(name, nesterov):
    kw = {} if name in ("trasmuon",) else dict(nesterov=nesterov)
    params = [torch.nn.Parameter(torch.randn(8, 6)) for _ in range(2)]
    opt = muonlab.HybridOptimizer(params, name, weight_decay=0.1, **kw)
    for _ in range(2):
        grads = [torch.randn(8, 6) for _ in params]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        assert all(torch.equal(p.grad, g) for p, g in zip(params, grads))


@pytest.mark.parametrize("name", FAMILY)
def test_conv_filters_train_through_create_optimizer(name):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.ReLU(), torch.nn.Conv2d(6, 4, 3),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 2))
    opt = muonlab.create_optimizer(model, name)
    x, y = torch.randn(8, 3, 8, 8), torch.randn(8, 2)
    losses = []
    for _ in range(5):
        loss = (model(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert any(g["algorithm"] == name and g["matrix_view"] == "flatten" for g in opt.param_groups)
