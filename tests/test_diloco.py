"""DiLoCo / MuLoCo (muonlab.distributed.diloco): reductions, float64 for-loop references of the
papers' algorithms, compression with error feedback, resume, and 2 torchrun ranks against 2
simulated workers.

References are written from the sources: DiLoCo (Douillard et al., arXiv 2311.08105; the outer
step is torch.optim.SGD with Nesterov momentum, as in torchft/torchtitan), MuLoCo-1 (Thérien et
al., arXiv 2505.23725; bentherien/muloco-1 ``muloco/pytorch/muloco.py`` @ 33cc333) and the
compressed outer step (facebookresearch/MuLoCo
``torchtitan/torchtitan/components/quantized_outer_sgd.py`` @ 475bbf4).
"""

from __future__ import annotations

import copy
import io
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import muonlab
from muonlab.distributed import shard_batch
from muonlab.distributed.diloco import (
    DiLoCo,
    DiLoCoSimulator,
    LinearQuant,
    MuLoCo,
    RankK,
    StatisticalQuant,
    TopK,
    encode_,
    make_compressor,
    muloco_inner,
    outer_sgd_,
)

F64 = torch.float64


# ---- helpers ------------------------------------------------------------------------------------


def _linear(seed=0, dtype=F64, n_in=5, n_out=3):
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out).to(dtype)


def _batches(n, size=8, dtype=F64, n_in=5, n_out=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, n_in, generator=g, dtype=dtype), torch.randn(size, n_out, generator=g, dtype=dtype))
            for _ in range(n)]


def _mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def _grad_linear(W, b, batch):
    """Gradient of the mean squared error of ``x Wᵀ + b`` (the for-loop references' own)."""
    x, y = batch
    r = 2 * (x @ W.T + b - y) / y.numel()
    return r.T @ x, r.sum(0)


def _sgd(model, lr=0.05, momentum=0.9):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, foreach=False)


def _params_of(model):
    return [p.detach().clone() for p in model.parameters()]


# ---- the outer step -----------------------------------------------------------------------------


@pytest.mark.parametrize("nesterov", [True, False])
def test_outer_step_is_torch_sgd_bitwise(nesterov):
    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(4, 3, generator=g)
    grads = [torch.randn(4, 3, generator=g) for _ in range(4)]
    ref = nn.Parameter(p0.clone())
    sgd = torch.optim.SGD([ref], lr=0.7, momentum=0.9, nesterov=nesterov, foreach=False)
    ours, buf = p0.clone(), torch.zeros_like(p0)
    for gr in grads:
        ref.grad = gr.clone()
        sgd.step()
        outer_sgd_(ours, buf, gr, lr=0.7, momentum=0.9, nesterov=nesterov)
        assert torch.equal(ours, ref.detach())
    assert torch.equal(buf, sgd.state[ref]["momentum_buffer"])


def test_h1_unit_outer_lr_no_momentum_is_the_inner_optimizer():
    """H = 1, η_out = 1, μ = 0: θ − (θ − θ') = θ' (exact whenever the subtraction is, Sterbenz)."""
    a, b = _linear(), _linear()
    opt_a = _sgd(a)
    opt_b = DiLoCo(_sgd(b), outer_lr=1.0, outer_momentum=0.0, sync_every=1)
    for batch in _batches(12):
        for m, o in ((a, opt_a), (b, opt_b)):
            _mse(m, batch).backward()
            o.step()
            o.zero_grad()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=0, atol=1e-15)
    assert opt_b.outer_steps == 12
    for pa, pb in zip(a.parameters(), b.parameters()):  # the inner state is the inner optimizer's
        torch.testing.assert_close(opt_b.inner.state[pb]["momentum_buffer"], opt_a.state[pa]["momentum_buffer"],
                                   rtol=0, atol=1e-14)


def test_h1_identity_with_a_muon_inner_optimizer():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    b = copy.deepcopy(a)
    opt_a = muonlab.create_optimizer(a, "muon", compute_dtype="float32")
    opt_b = DiLoCo(muonlab.create_optimizer(b, "muon", compute_dtype="float32"), outer_lr=1.0,
                   outer_momentum=0.0, sync_every=1)
    for batch in _batches(8, dtype=torch.float32, n_in=6):
        for m, o in ((a, opt_a), (b, opt_b)):
            _mse(m, batch).backward()
            o.step()
            o.zero_grad()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=0, atol=1e-6)


# ---- K = 2 workers, H = 3, Nesterov: the paper's algorithm as a float64 for-loop ---------------


def _reference_diloco(model, batches, K, H, lr, mu_in, eta, mu, nesterov=True, compress=None, decay=1.0,
                      double_lr=False):
    """DiLoCo written from the paper: θ_k ← θ; H SGD-momentum steps on shard k; Δ_k = θ − θ_k;
    (e_k ← ρe_k + Δ_k; c_k = C(e_k); e_k ← e_k − c_k)  ĝ = mean_k c_k (or Δ_k);
    b ← μb + ĝ; θ ← θ − η(ĝ + μb)."""
    theta = [p.detach().clone() for p in model.parameters()]
    local = [[t.clone() for t in theta] for _ in range(K)]
    inner_buf = [[torch.zeros_like(t) for t in theta] for _ in range(K)]
    outer_buf = [torch.zeros_like(t) for t in theta]
    err = [[torch.zeros_like(t) for t in theta] for _ in range(K)]
    for step, batch in enumerate(batches, start=1):
        for k in range(K):
            W, b = local[k]
            gW, gb = _grad_linear(W, b, shard_batch(batch, k, K))
            for i, g in enumerate((gW, gb)):
                inner_buf[k][i] = mu_in * inner_buf[k][i] + g
                local[k][i] = local[k][i] - lr * inner_buf[k][i]
        if step % H:
            continue
        for i in range(len(theta)):
            sent = []
            for k in range(K):
                delta = theta[i] - local[k][i]
                if compress is None:
                    sent.append(delta)
                else:
                    err[k][i] = decay * err[k][i] + (eta * delta if double_lr else delta)
                    c = compress(err[k][i])
                    err[k][i] = err[k][i] - c
                    sent.append(c)
            g = sum(sent) / K
            outer_buf[i] = mu * outer_buf[i] + g
            theta[i] = theta[i] - eta * ((g + mu * outer_buf[i]) if nesterov else outer_buf[i])
        local = [[t.clone() for t in theta] for _ in range(K)]
    return theta, local, outer_buf, err


@pytest.mark.parametrize("nesterov", [True, False])
def test_two_workers_h3_match_the_float64_loop(nesterov):
    model, batches = _linear(), _batches(3 * 4 + 2)  # four rounds and two steps of a fifth
    sim = DiLoCoSimulator(model, lambda m: _sgd(m), workers=2, outer_lr=0.7, outer_momentum=0.9,
                          sync_every=3, nesterov=nesterov)
    for batch in batches:
        sim.train_step(batch, _mse)
    theta, local, outer_buf, _ = _reference_diloco(_linear(), batches, 2, 3, 0.05, 0.9, 0.7, 0.9, nesterov)
    assert sim.outer_steps == 4 and sim.inner_steps == 14
    for p, t in zip(model.parameters(), theta):
        torch.testing.assert_close(p.detach(), t, rtol=0, atol=1e-12)
    for k in range(2):
        for p, t in zip(sim.replicas[k].parameters(), local[k]):
            torch.testing.assert_close(p.detach(), t, rtol=0, atol=1e-12)
    for b, t in zip(sim.momentum, outer_buf):
        torch.testing.assert_close(b, t, rtol=0, atol=1e-12)
    # the workers saw different data: their replicas differ mid-round
    assert not torch.allclose(sim.replicas[0].weight, sim.replicas[1].weight)


def test_pseudo_gradient_is_anchor_minus_mean_of_workers():
    model = _linear()
    sim = DiLoCoSimulator(model, lambda m: _sgd(m), workers=3, outer_lr=1.0, outer_momentum=0.0, sync_every=2)
    batches = _batches(2, size=9)
    sim.train_step(batches[0], _mse)
    theta0 = _params_of(model)
    for batch in batches[1:]:
        for k, r in enumerate(sim.replicas):
            _mse(r, shard_batch(batch, k, 3)).backward()
        for o in sim.inner:
            o.step()
        locals_ = [_params_of(r) for r in sim.replicas]
        sim.inner_steps += 1
        sim.sync()
    for i, p in enumerate(model.parameters()):
        mean = sum(lc[i] for lc in locals_) / 3
        delta = theta0[i] - mean
        torch.testing.assert_close(p.detach(), theta0[i] - delta, rtol=0, atol=1e-14)  # η = 1, μ = 0


def test_one_worker_simulator_equals_the_wrapper_bitwise():
    a, b = _linear(), _linear()
    sim = DiLoCoSimulator(a, lambda m: _sgd(m), workers=1, sync_every=3, compression="top_k",
                          compression_options={"ratio": 0.3})
    opt = DiLoCo(_sgd(b), sync_every=3, compression="top_k", compression_options={"ratio": 0.3})
    for batch in _batches(8):
        sim.train_step(batch, _mse)
        _mse(b, batch).backward()
        opt.step()
        opt.zero_grad()
    for p, q in zip(sim.replicas[0].parameters(), b.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(a.parameters(), opt.anchor):
        assert torch.equal(p.detach(), q)


# ---- compression and error feedback -------------------------------------------------------------


def _topk_dense(x, ratio):
    k = max(1, int(x.numel() * ratio))
    flat = x.reshape(-1)
    keep = flat.abs().argsort(descending=True)[:k]
    out = torch.zeros_like(flat)
    out[keep] = flat[keep]
    return out.reshape(x.shape)


@pytest.mark.parametrize("decay,double_lr", [(1.0, False), (0.9, False), (0.95, True)])
def test_error_feedback_matches_the_float64_loop(decay, double_lr):
    model, batches = _linear(), _batches(3 * 3)
    sim = DiLoCoSimulator(model, lambda m: _sgd(m), workers=2, outer_lr=0.7, outer_momentum=0.9, sync_every=3,
                          compression="top_k", compression_options={"ratio": 0.25}, error_decay=decay,
                          faithful_double_lr=double_lr)
    for batch in batches:
        sim.train_step(batch, _mse)
    theta, _, _, err = _reference_diloco(_linear(), batches, 2, 3, 0.05, 0.9, 0.7, 0.9,
                                         compress=lambda x: _topk_dense(x, 0.25), decay=decay, double_lr=double_lr)
    for p, t in zip(model.parameters(), theta):
        torch.testing.assert_close(p.detach(), t, rtol=0, atol=1e-12)
    for k in range(2):
        for e, t in zip(sim.error[k], err[k]):
            torch.testing.assert_close(e, t, rtol=0, atol=1e-12)
            assert e.abs().sum() > 0  # something was held back


@pytest.mark.parametrize("comp", [TopK(0.2), RankK(2), StatisticalQuant(2), LinearQuant(4)])
def test_residual_bookkeeping_sent_plus_residual_is_the_fed_value(comp):
    """After ``encode_``: D(q) + e_new = ρ e_old + Δ, to rounding, for every compressor."""
    g = torch.Generator().manual_seed(3)
    delta, e_old = torch.randn(12, 10, generator=g, dtype=F64), torch.randn(12, 10, generator=g, dtype=F64)
    e = e_old.clone()
    payload = encode_(delta, e, comp, decay=0.9, scale=1.0)
    sent = comp.decompress(payload, delta)
    torch.testing.assert_close(sent + e, 0.9 * e_old + delta, rtol=0, atol=1e-13)
    # no error feedback: the payload is C(Δ) and nothing is kept
    torch.testing.assert_close(comp.decompress(encode_(delta, None, comp, decay=0.9, scale=1.0), delta),
                               comp.decompress(comp.compress(delta), delta), rtol=0, atol=0)


def test_error_feedback_with_no_decay_loses_nothing_over_rounds():
    """ρ = 1: Σ_rounds sent_k + e_k = Σ_rounds Δ_k for each worker."""
    model = _linear()
    sim = DiLoCoSimulator(model, lambda m: _sgd(m), workers=2, outer_lr=0.7, sync_every=2, compression="top_k",
                          compression_options={"ratio": 0.2}, error_decay=1.0)
    fed = [[torch.zeros_like(p) for p in model.parameters()] for _ in range(2)]
    sent = [[torch.zeros_like(p) for p in model.parameters()] for _ in range(2)]
    comp = sim.outer.comp
    for step, batch in enumerate(_batches(8), start=1):
        if step % 2 == 0:  # just before the sync: record what each worker feeds and sends
            for k, r in enumerate(sim.replicas):
                _mse(r, shard_batch(batch, k, 2)).backward()
                sim.inner[k].step()
            for k in range(2):
                for i, (a, p) in enumerate(zip(model.parameters(), sim.replicas[k].parameters())):
                    d = (a - p).detach()
                    fed[k][i] += d
                    e = (sim.error[k][i] + d)
                    sent[k][i] += comp.decompress(comp.compress(e), e)
            sim.inner_steps += 1
            sim.sync()
            sim.zero_grad()
        else:
            sim.train_step(batch, _mse)
    for k in range(2):
        for i in range(2):
            torch.testing.assert_close(sent[k][i] + sim.error[k][i], fed[k][i], rtol=0, atol=1e-13)


def test_compressors():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 15, generator=g, dtype=F64)
    # top-k keeps the k largest magnitudes exactly
    k = TopK(0.1)
    assert torch.equal(k.decompress(k.compress(x), x), _topk_dense(x, 0.1))
    assert k.k(x.numel()) == 30 and k.k(3) == 1
    # rank-k: the truncated SVD (Eckart–Young), contractive
    r = RankK(3)
    U, S, Vh = torch.linalg.svd(x, full_matrices=False)
    approx = r.decompress(r.compress(x), x)
    torch.testing.assert_close(approx, (U[:, :3] * S[:3]) @ Vh[:3])
    assert (x - approx).norm() ** 2 <= (1 - 3 / 15) * x.norm() ** 2
    assert not r.applies(torch.zeros(5)) and r.applies(x)
    # statistical: codes in range, each bin decodes to the mean of its members (sums preserved)
    for bits in (1, 2, 4, 8):
        q = StatisticalQuant(bits)
        codes, mu, table = q.compress(x)
        assert codes.dtype == torch.uint8 and int(codes.max()) < 2**bits
        y = q.decompress((codes, mu, table), x)
        torch.testing.assert_close(y.sum(), x.sum())
        for b in codes.unique():
            sel = codes.reshape(x.shape) == b
            torch.testing.assert_close(y[sel], x[sel].mean().expand(int(sel.sum())))
    assert StatisticalQuant(8).decompress(StatisticalQuant(8).compress(x), x).sub(x).abs().max() < 0.05
    # linear: error at most half a step, extremes exact
    lq = LinearQuant(4)
    codes, lo, scale = lq.compress(x)
    y = lq.decompress((codes, lo, scale), x)
    assert (y - x).abs().max() <= scale / 2 + 1e-12
    assert y.min() == x.min()
    # a constant tensor survives both quantizers
    c = torch.full((7,), 0.25, dtype=F64)
    for q in (StatisticalQuant(2), LinearQuant(2)):
        torch.testing.assert_close(q.decompress(q.compress(c), c), c)
    # fp16 cast
    h = make_compressor("fp16")
    assert h.compress(x)[0].dtype == torch.float16
    assert make_compressor("statistical", {"bits": 4}).bits == 4
    with pytest.raises(ValueError, match="unknown compression 'zip'"):
        make_compressor("zip")
    with pytest.raises(ValueError, match="bad compression_options"):
        make_compressor("top_k", {"bits": 2})
    with pytest.raises(ValueError, match="ratio=0"):
        TopK(0)


def test_vectors_and_rank_k_skip():
    model = _linear()
    opt = DiLoCo(_sgd(model), compression="rank_k")
    assert opt.outer.compressed == [True, False] and opt.error[1] is None  # bias: rank_k cannot
    opt = DiLoCo(_sgd(model), compression="top_k", skip_vectors=True)
    assert opt.outer.compressed == [True, False]
    opt = DiLoCo(_sgd(model), compression="top_k", error_feedback=False)
    assert opt.error == [None, None]
    assert DiLoCo(_sgd(model)).outer.compressed == [False, False]


def test_requantize_after_reduce_quantizes_the_average():
    model = _linear()
    sim = DiLoCoSimulator(model, lambda m: _sgd(m), workers=2, outer_lr=1.0, outer_momentum=0.0, sync_every=1,
                          compression="linear", compression_options={"bits": 2}, error_feedback=False,
                          requantize_after_reduce=True)
    theta0 = _params_of(model)
    sim.train_step(_batches(1)[0], _mse)
    q = LinearQuant(2)
    W = model.weight.detach()
    step = theta0[0] - W  # = D(C(mean_k D(C(Δ_k)))), up to the rounding of θ − (θ − step)
    assert len(step.round(decimals=12).unique()) <= 4
    torch.testing.assert_close(q.decompress(q.compress(step), step), step, rtol=0, atol=1e-15)


# ---- diagnostics, training, MuLoCo --------------------------------------------------------------


def test_identical_workers_have_cosine_one_and_no_interference():
    model = _linear()
    sim = DiLoCoSimulator(model, lambda m: _sgd(m), workers=3, sync_every=2, diagnostics=True)
    for batch in _batches(2):
        for r in sim.replicas:
            _mse(r, batch).backward()
        sim.step()
        sim.zero_grad()
    assert sim.last_sync["cosine"] == pytest.approx([1.0] * 3)
    assert sim.last_sync["nuclear_ratio"] == pytest.approx(1.0)
    sim2 = DiLoCoSimulator(_linear(), lambda m: _sgd(m), workers=2, sync_every=2, diagnostics=True)
    for batch in _batches(2):
        sim2.train_step(batch, _mse)
    assert all(c < 1 for c in sim2.last_sync["cosine"]) and sim2.last_sync["nuclear_ratio"] <= 1 + 1e-12


def test_simulated_workers_train_a_small_mlp():
    torch.manual_seed(0)
    teacher = nn.Linear(8, 2)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    sim = DiLoCoSimulator(model, lambda m: muloco_inner(m, lr=0.02), workers=2, outer_lr=0.7, outer_momentum=0.6,
                          sync_every=5, compression="statistical", compression_options={"bits": 4})
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(32, 8, generator=g) for _ in range(30)]
    data = [(x, teacher(x).detach()) for x in xs]
    first = _mse(model, data[0]).item()
    for batch in data:
        sim.train_step(batch, _mse)
    assert sim.outer_steps == 6
    assert _mse(model, data[0]).item() < 0.5 * first


def _muloco1_reference(W0, b0, batches, *, lr, mu, wd, eps, H, eta, mom, betas):
    """MuLoCo-1's package step in float64 (muloco/pytorch/muloco.py @ 33cc333): inner Muon on W
    (M ← μM + G; You's 5-step table on X/(‖X‖_F + eps), transposed when tall; W ← W(1 − ηλ) −
    η√(fan_out/fan_in)·O), AdamW on b with the same lr; every H steps u ← μ_out u + η_out Δ,
    θ ← θ_ref − μ_out u − η_out Δ."""
    coeffs = [(4.0848, -6.8946, 2.9270), (3.9505, -6.3029, 2.6377), (3.7418, -5.5913, 2.3037),
              (2.8769, -3.1427, 1.2046), (2.8366, -3.0525, 1.2012)]

    def ns(G):
        X = G.T if G.shape[0] > G.shape[1] else G
        X = X / (X.norm() + eps)
        for a, b, c in coeffs:
            A = X @ X.T
            X = a * X + (b * A + c * A @ A) @ X
        return X.T if G.shape[0] > G.shape[1] else X

    W, b = W0.clone(), b0.clone()
    M, m, v = torch.zeros_like(W), torch.zeros_like(b), torch.zeros_like(b)
    ref, u = [W.clone(), b.clone()], [torch.zeros_like(W), torch.zeros_like(b)]
    for t, batch in enumerate(batches, start=1):
        gW, gb = _grad_linear(W, b, batch)
        M = mu * M + gW
        W = W * (1 - lr * wd) - lr * math.sqrt(W.shape[0] / W.shape[1]) * ns(M)
        m = betas[0] * m + (1 - betas[0]) * gb
        v = betas[1] * v + (1 - betas[1]) * gb * gb
        b = b * (1 - lr * wd) - lr * (m / (1 - betas[0] ** t)) / ((v / (1 - betas[1] ** t)).sqrt() + 1e-8)
        if t % H == 0:
            new = []
            for i, p in enumerate((W, b)):
                delta = ref[i] - p
                u[i] = mom * u[i] + eta * delta
                new.append(ref[i] - mom * u[i] - eta * delta)
            W, b = new
            ref = [W.clone(), b.clone()]
    return W, b


def test_muloco_matches_the_muloco1_package_algorithm_in_float64():
    model = _linear(n_in=7, n_out=4)
    W0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    batches = _batches(2 * 30 + 4, n_in=7, n_out=4)
    opt = MuLoCo(muloco_inner(model, compute_dtype=None, eps=0.0))
    for batch in batches:
        _mse(model, batch).backward()
        opt.step()
        opt.zero_grad()
    W, b = _muloco1_reference(W0, b0, batches, lr=0.02, mu=0.95, wd=0.01, eps=0.0, H=30, eta=0.7, mom=0.6,
                              betas=(0.9, 0.95))
    assert opt.outer_steps == 2
    torch.testing.assert_close(model.weight.detach(), W, rtol=0, atol=1e-10)
    torch.testing.assert_close(model.bias.detach(), b, rtol=0, atol=1e-10)


def test_muloco_defaults_and_routing():
    torch.manual_seed(0)
    model = nn.ModuleDict({"emb": nn.Embedding(10, 4), "body": nn.Linear(4, 6), "conv": nn.Conv1d(2, 3, 2),
                           "head": nn.Linear(6, 10)})
    opt = MuLoCo.from_model(model)
    c = opt.config
    assert (c.outer_lr, c.outer_momentum, c.sync_every, c.nesterov) == (0.7, 0.6, 30, True)
    groups = {(g["algorithm"], tuple(g["param_names"])) for g in opt.param_groups}
    assert groups == {("muon", ("body.weight",)), ("muon", ("conv.weight",)),
                      ("adamw", ("emb.weight", "body.bias", "conv.bias", "head.weight", "head.bias"))}
    muon = next(g for g in opt.param_groups if g["algorithm"] == "muon")
    assert (muon["lr"], muon["momentum"], muon["nesterov"], muon["momentum_form"], muon["orthogonalizer"],
            muon["adjust_lr_fn"], muon["weight_decay"]) == (0.02, 0.95, False, "accumulate", "you5",
                                                            "spectral_norm", 0.01)
    adamw = next(g for g in opt.param_groups if g["algorithm"] == "adamw")
    assert (adamw["lr"], adamw["betas"], adamw["weight_decay"]) == (0.02, (0.9, 0.95), 0.01)
    d = DiLoCo(muloco_inner(model)).config
    assert (d.outer_lr, d.outer_momentum, d.sync_every) == (0.7, 0.9, 500)


# ---- the torch.optim surface, resume ------------------------------------------------------------


def test_scheduler_pickle_hooks_and_validation():
    model = _linear()
    opt = DiLoCo(_sgd(model), sync_every=2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    calls = []
    opt.register_step_post_hook(lambda *a: calls.append(1))
    for batch in _batches(3):
        _mse(model, batch).backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    assert opt.inner.param_groups[0]["lr"] == pytest.approx(0.05 / 8) and len(calls) == 3
    clone = pickle.loads(pickle.dumps(opt))
    assert clone.param_groups is clone.inner.param_groups and torch.equal(clone.anchor[0], opt.anchor[0])
    for kw, msg in [({"outer_lr": -1}, "outer_lr=-1"), ({"outer_momentum": 1.0}, "outer_momentum=1.0"),
                    ({"sync_every": 0}, "sync_every=0"), ({"error_decay": 2}, "error_decay=2"),
                    ({"nesterov": "yes"}, "nesterov='yes'")]:
        with pytest.raises(ValueError, match=msg):
            DiLoCo(_sgd(model), **kw)
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        DiLoCo(model)
    with pytest.raises(ValueError, match="workers=0"):
        DiLoCoSimulator(model, _sgd, workers=0)


def test_add_param_group_joins_the_outer_state():
    a, b = _linear(), nn.Linear(2, 2).double()
    opt = DiLoCo(torch.optim.SGD(a.parameters(), lr=0.1), sync_every=1, compression="top_k")
    opt.add_param_group({"params": list(b.parameters())})
    assert len(opt.anchor) == len(opt.error) == 4 and opt.outer.compressed == [True, True, True, True]
    (b.weight.sum() + _mse(a, _batches(1)[0])).backward()
    opt.step()
    assert torch.equal(b.weight.detach(), opt.anchor[2])


def _save_load(obj_state):
    buf = io.BytesIO()
    torch.save(obj_state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_wrapper_resumes_bitwise_mid_round():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
    batches = _batches(11, dtype=torch.float32, n_in=6)

    def make(model):
        return DiLoCo(muonlab.create_optimizer(model, "muon"), sync_every=3, compression="top_k",
                      compression_options={"ratio": 0.2})

    full = copy.deepcopy(base)
    opt = make(full)
    for batch in batches:
        _mse(full, batch).backward()
        opt.step()
        opt.zero_grad()

    part = copy.deepcopy(base)
    opt = make(part)
    for batch in batches[:7]:  # two rounds and one step
        _mse(part, batch).backward()
        opt.step()
        opt.zero_grad()
    saved = _save_load({"model": part.state_dict(), "opt": opt.state_dict()})
    torch.manual_seed(1)
    fresh = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
    opt = make(fresh)
    fresh.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    assert opt.inner_steps == 7 and opt.outer_steps == 2
    for batch in batches[7:]:
        _mse(fresh, batch).backward()
        opt.step()
        opt.zero_grad()
    for p, q in zip(full.parameters(), fresh.parameters()):
        assert torch.equal(p, q)


def test_simulator_resumes_bitwise_mid_round():
    batches = _batches(10)

    def make(seed):
        return DiLoCoSimulator(_linear(seed), lambda m: torch.optim.Adam(m.parameters(), lr=0.01), workers=2,
                               sync_every=3, compression="rank_k", compression_options={"rank": 1})

    full = make(0)
    for batch in batches:
        full.train_step(batch, _mse)
    part = make(0)
    for batch in batches[:4]:
        part.train_step(batch, _mse)
    state = _save_load(part.state_dict())
    resumed = make(5)  # another initialisation: everything comes from the checkpoint
    resumed.load_state_dict(state)
    for batch in batches[4:]:
        resumed.train_step(batch, _mse)
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    for k in range(2):
        for p, q in zip(full.replicas[k].parameters(), resumed.replicas[k].parameters()):
            assert torch.equal(p, q)
    with pytest.raises(ValueError, match="has 2 workers, this simulator 3"):
        DiLoCoSimulator(_linear(), _sgd, workers=3).load_state_dict(state)


def test_load_state_dict_rejects_another_compression():
    model = _linear()
    state = DiLoCo(_sgd(model), compression="top_k").state_dict()
    with pytest.raises(ValueError, match="error\\[0\\] is unexpected"):
        DiLoCo(_sgd(model)).load_state_dict(state)


# ---- 2 torchrun ranks ≡ 2 simulated workers -----------------------------------------------------

SCRIPT = r"""
import sys
import torch
from torch import nn
import muonlab
from muonlab.distributed import init_from_env, shard_batch, shutdown
from muonlab.distributed.diloco import DiLoCo, DiLoCoSimulator

CONFIGS = {"plain": {}, "top_k": {"compression": "top_k", "compression_options": {"ratio": 0.2}},
           "statistical": {"compression": "statistical", "error_decay": 0.95}}

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))

def batches(n):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 6, generator=g), torch.randn(8, 3, generator=g)) for _ in range(n)]

def loss(m, b):
    return ((m(b[0]) - b[1]) ** 2).mean()

def inner(m):
    return muonlab.create_optimizer(m, "muon", lr=0.02)

info = init_from_env(backend="gloo", device="cpu")
if info.rank == 1:
    torch.manual_seed(123)  # a different local init: broadcast_init must fix it
out = {}
for name, kw in CONFIGS.items():
    model = build() if info.rank == 0 else nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = DiLoCo(inner(model), sync_every=3, **kw)
    for b in batches(7):
        loss(model, shard_batch(b)).backward()
        opt.step()
        opt.zero_grad()
    pos = {id(p): i for i, p in enumerate(opt.params)}  # the outer state in the model's order
    order = [pos[id(p)] for p in model.parameters()]
    out[name] = {"params": [p.detach().clone() for p in model.parameters()],
                 "anchor": [opt.anchor[i] for i in order], "error": [opt.error[i] for i in order],
                 "outer_steps": opt.outer_steps}
torch.save(out, sys.argv[1] + f"/rank{info.rank}.pt")
shutdown()
if info.rank == 0:  # the reference, with the same threads
    sims = {}
    for name, kw in CONFIGS.items():
        sim = DiLoCoSimulator(build(), inner, workers=2, sync_every=3, **kw)
        for b in batches(7):
            sim.train_step(b, loss)
        sims[name] = {"global": [p.detach().clone() for p in sim.model.parameters()],
                      "replicas": [[p.detach().clone() for p in r.parameters()] for r in sim.replicas],
                      "error": sim.error}
    torch.save(sims, sys.argv[1] + "/sim.pt")
"""


@pytest.mark.distributed
def test_torchrun_two_ranks_equal_two_simulated_workers(tmp_path):
    (tmp_path / "script.py").write_text(SCRIPT)
    src = str(Path(muonlab.__file__).parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(tmp_path / "script.py"), str(tmp_path)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    sim = torch.load(tmp_path / "sim.pt", weights_only=False)
    for name in ("plain", "top_k", "statistical"):
        for r in (0, 1):
            got = ranks[r][name]
            assert got["outer_steps"] == 2
            for a, b in zip(got["anchor"], sim[name]["global"]):
                assert torch.equal(a, b), (name, r)
            for a, b in zip(got["params"], sim[name]["replicas"][r]):  # one step into round 3
                assert torch.equal(a, b), (name, r)
            for a, b in zip(got["error"], sim[name]["error"][r]):
                assert (a is None and b is None) or torch.equal(a, b), (name, r)
        assert not torch.equal(ranks[0][name]["params"][0], ranks[1][name]["params"][0])
    assert all(e is None for e in ranks[0]["plain"]["error"])
    assert not torch.equal(ranks[0]["top_k"]["error"][0], ranks[1]["top_k"]["error"][0])
