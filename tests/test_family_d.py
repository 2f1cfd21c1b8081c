"""Family D (issue 15): EF21-Muon and its compressors, Pion (spectrum-preserving).

The torch.optim contract and "defaults train an MLP via create_optimizer" run for every registered
method in tests/test_contract.py; the 2-rank DDP/FSDP2 equivalence in tests/test_distributed.py.
References here are float64 for-loops written from the sources:

* EF21-Muon: Gruntkowska et al., "Error Feedback for Muon and Friends", arXiv 2510.00643 (algorithm
  as junaidaliop/zij ``canon/math/ef21muon.md`` states it); EF21: Richtárik, Sokolov, Fatkhullin,
  arXiv 2106.05203 (the contraction property of top-k / rank-k compressors).
* Pion: Shi et al., arXiv 2605.12492 (rule as junaidaliop/zij ``canon/math/pion.md`` states it).
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_matrix
from torch import nn

import muonlab
from muonlab.distributed.ef21 import worker_gradients
from muonlab.optim import LocalExecutor
from muonlab.optim.compressors import (
    compress,
    contraction,
    decode,
    encode,
    kept,
    message_numel,
)
from muonlab.optim.ef21_muon import EF21Muon
from muonlab.optim.pion import rotation, skew_sides

F64 = torch.float64
SHAPES = [(12, 8), (6, 10), (7, 7)]
EXACT = {"orthogonalizer": "svd", "compute_dtype": "float64"}


def _params(shapes=SHAPES, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(*s, generator=g, dtype=dtype)) for s in shapes]


def _clone(params):
    return [nn.Parameter(p.detach().clone()) for p in params]


def _close(a, b, tol):
    assert (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item()), (a - b).abs().max().item()


def _polar(G):
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    return U @ Vh


# ---- compressors --------------------------------------------------------------------------------


def _ref_top_k(x, k):
    """Keep the k largest |x_ij| of one matrix, by a full sort (independent of torch.topk)."""
    flat = x.reshape(-1)
    order = sorted(range(flat.numel()), key=lambda i: -abs(flat[i].item()))
    out = torch.zeros_like(flat)
    for i in order[:k]:
        out[i] = flat[i]
    return out.reshape(x.shape)


def _ref_rank_k(x, r):
    U, S, Vh = torch.linalg.svd(x, full_matrices=False)
    return U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]


@pytest.mark.parametrize("kind", ["identity", "top_k", "rank_k"])
@pytest.mark.parametrize("ratio", [0.05, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("shape", [(9, 5), (4, 11), (3, 6, 6)])
def test_compressors_are_contractive_with_their_alpha(kind, ratio, shape):
    """‖C(x) − x‖² ≤ (1 − α)‖x‖² per matrix, with α from ``contraction``; C matches a reference."""
    x = torch.randn(*shape, dtype=F64)
    m, n = shape[-2:]
    alpha = contraction(kind, ratio, m, n)
    Cx = compress(x, kind, ratio)
    assert Cx.shape == x.shape and Cx.dtype == x.dtype
    for xi, ci in zip(x.reshape(-1, m, n), Cx.reshape(-1, m, n)):
        err, norm = (ci - xi).pow(2).sum().item(), xi.pow(2).sum().item()
        assert err <= (1 - alpha) * norm * (1 + 1e-12) + 1e-14
        if kind == "top_k":
            assert torch.equal(ci, _ref_top_k(xi, kept(kind, ratio, m, n)))
        elif kind == "rank_k":
            _close(ci, _ref_rank_k(xi, kept(kind, ratio, m, n)), 1e-12)
        else:
            assert torch.equal(ci, xi)


@pytest.mark.parametrize("kind", ["top_k", "rank_k"])
@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5])
def test_contraction_bounds_are_tight(kind, ratio):
    """Equal magnitudes (top-k) and a flat spectrum (rank-k) attain ‖C(x) − x‖² = (1 − α)‖x‖²."""
    m, n = 10, 8
    if kind == "top_k":
        x = torch.randint(0, 2, (m, n), dtype=F64) * 2 - 1
    else:
        x = make_matrix(m, n, torch.ones(n))
    alpha = contraction(kind, ratio, m, n)
    err = (compress(x, kind, ratio) - x).pow(2).sum().item()
    assert err == pytest.approx((1 - alpha) * x.pow(2).sum().item(), rel=1e-12)


def test_counts_and_messages():
    """k = ⌈ratio·size⌉ in [1, size]; the compact message has the documented size; decode(encode(x)) = C(x)."""
    assert kept("top_k", 0.1, 6, 5) == 3 and kept("rank_k", 0.1, 30, 40) == 3 and kept("rank_k", 1e-6, 5, 5) == 1
    assert contraction("top_k", 0.1, 6, 5) == pytest.approx(0.1) and contraction("rank_k", 0.5, 8, 4) == 0.5
    x = torch.randn(2, 8, 6, dtype=F64)
    for kind, ratio in (("top_k", 0.25), ("rank_k", 0.5), ("identity", 1.0)):
        msg = encode(x, kind, ratio)
        assert sum(t[0].numel() for t in msg) == message_numel(kind, ratio, 8, 6)
        assert torch.equal(decode(msg, kind, tuple(x.shape), x.dtype), compress(x, kind, ratio))
    values, idx = encode(x, "top_k", 0.25)
    assert idx.dtype == torch.int64 and values.shape == (2, 12)
    with pytest.raises(ValueError, match="ratio"):
        kept("top_k", 0.0, 3, 3)
    with pytest.raises(ValueError, match="unknown compressor"):
        compress(x, "random_k", 0.5)


# ---- EF21-Muon ------------------------------------------------------------------------------------


def _worker_grads(t, params, K, seed=1):
    g = torch.Generator().manual_seed(seed * 1000 + t)
    return [[torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params] for _ in range(K)]


@pytest.mark.parametrize("K", [1, 3])
def test_identity_compressors_are_muon_on_the_mean_gradient(K):
    """C_up = C_down = identity: G_j = M_j, G = mean_j M_j, so EF21-Muon with K workers is Muon (EMA
    momentum μ, no Nesterov) on the mean gradient, with the same decoupled weight decay."""
    a = _params()
    b = _clone(a)
    hp = dict(lr=0.05, momentum=0.9, weight_decay=0.1, **EXACT)
    opt = EF21Muon(a, workers=K, uplink="identity", downlink="identity", **hp)
    muon = muonlab.HybridOptimizer(b, "muon", nesterov=False, **hp)
    for t in range(6):
        grads = _worker_grads(t, a, K)
        if K == 1:
            for p, g in zip(a, grads[0]):
                p.grad = g.clone()
            opt.step()
        else:
            opt.step_workers(grads)
        for i, p in enumerate(b):
            p.grad = sum(w[i] for w in grads) / K
        muon.step()
    for x, y in zip(a, b):
        _close(x.detach(), y.detach(), 1e-12)


def _quadratic(K, shapes, seed=3):
    """Worker j's loss ½‖A_j W − B_j‖² per matrix: gradients depend on the point they are taken at."""
    g = torch.Generator().manual_seed(seed)
    return [[(torch.randn(m, m, generator=g, dtype=F64) / math.sqrt(m), torch.randn(m, n, generator=g, dtype=F64))
             for m, n in shapes] for _ in range(K)]


def _grad(problem, j, i, W):
    A, B = problem[j][i]
    return A.T @ (A @ W - B)


def _ef21_reference(W0s, problem, steps, lr, mu, up, down):
    """The paper's algorithm (server model X, workers' model W), float64, one matrix at a time."""
    K = len(problem)
    out = []
    for i, W0 in enumerate(W0s):
        m, n = W0.shape
        W, X = W0.clone(), W0.clone()
        M = [torch.zeros_like(W) for _ in range(K)]
        Gj = [torch.zeros_like(W) for _ in range(K)]
        G = torch.zeros_like(W)
        t_k = lr * math.sqrt(max(1, m / n))
        hist = []
        for _ in range(steps):
            R = []
            for j in range(K):
                M[j] = mu * M[j] + (1 - mu) * _grad(problem, j, i, W)  # gradient at the workers' W
                R.append(_ref_rank_k(M[j] - Gj[j], kept("rank_k", up, m, n)))
                Gj[j] = Gj[j] + R[j]
            G = G + sum(R) / K
            X = X - t_k * _polar(G)
            S = _ref_top_k(X - W, kept("top_k", down, m, n))
            W = W + S
            hist.append({"W": W.clone(), "M": [x.clone() for x in M], "Gj": [x.clone() for x in Gj],
                         "G": G.clone(), "D": X - W})
        out.append(hist)
    return out


def test_bookkeeping_matches_the_papers_algorithm():
    """K = 3 workers, rank-k uplink, top-k downlink, gradients at the workers' model: every state
    entry (M_j, G_j, G, D = X − W) and W after every step match a float64 for-loop of EF21-Muon.
    (Not a rank-k downlink: X⁺ − W = −t·polar(G) at step 1 has a flat spectrum, so which r
    directions it keeps is arbitrary.)"""
    shapes, K, steps = [(8, 5), (4, 9)], 3, 5
    params = _params(shapes, seed=4)
    W0s = [p.detach().clone() for p in params]
    problem = _quadratic(K, shapes)
    hp = {"lr": 0.05, "momentum": 0.8, "uplink": "rank_k", "uplink_ratio": 0.5, "downlink": "top_k",
          "downlink_ratio": 0.3}
    ref = _ef21_reference(W0s, problem, steps, hp["lr"], hp["momentum"], hp["uplink_ratio"], hp["downlink_ratio"])
    opt = EF21Muon(params, workers=K, **hp, **EXACT)
    for t in range(steps):
        grads = [[_grad(problem, j, i, p.detach()) for i, p in enumerate(params)] for j in range(K)]
        opt.step_workers(grads)
        for i, p in enumerate(params):
            st, r = opt.state[p], ref[i][t]
            _close(p.detach(), r["W"], 1e-11)
            _close(st["server_estimate"], r["G"], 1e-11)
            _close(st["downlink_error"], r["D"], 1e-11)
            for j in range(K):
                _close(st["momentum_buffer"][j], r["M"][j], 1e-11)
                _close(st["ef_estimate"][j], r["Gj"][j], 1e-11)


def test_error_feedback_contracts_towards_a_fixed_momentum():
    """μ = 0 and a constant gradient g: M = g, and the EF21 error e = g − G_j shrinks each step by
    ‖e⁺‖² ≤ (1 − α)‖e‖² (top-k, α = k/(mn)); G_j reaches g once every entry has been sent."""
    (p,) = _params([(6, 5)])
    g = torch.randn(6, 5, dtype=F64)
    opt = muonlab.HybridOptimizer([p], "ef21_muon", momentum=0.0, uplink="top_k", uplink_ratio=0.2, lr=0.0, **EXACT)
    alpha = contraction("top_k", 0.2, 6, 5)
    err = g.pow(2).sum().item()
    for _ in range(5):
        p.grad = g.clone()
        opt.step()
        new = (g - opt.state[p]["ef_estimate"]).pow(2).sum().item()
        assert new <= (1 - alpha) * err * (1 + 1e-12)
        err = new
    assert err == 0.0  # 5 steps × 6 entries = all 30 entries sent


def test_single_worker_state_and_shapes():
    """K = 1: the worker's G_1 is the server's G (no extra buffer); K > 1: (K, *shape) worker state."""
    (p,) = _params([(6, 4)])
    opt = muonlab.HybridOptimizer([p], "ef21_muon", **EXACT)
    p.grad = torch.randn(6, 4, dtype=F64)
    opt.step()
    assert set(opt.state[p]) == {"step", "momentum_buffer", "ef_estimate"}
    (q,) = _params([(6, 4)])
    opt = EF21Muon([q], workers=2, downlink="top_k", **EXACT)
    opt.step_workers(_worker_grads(0, [q], 2))
    shapes = {k: tuple(v.shape) for k, v in opt.state[q].items() if k != "step"}
    assert shapes == {"momentum_buffer": (2, 6, 4), "ef_estimate": (2, 6, 4), "server_estimate": (6, 4),
                      "downlink_error": (6, 4)}
    q.grad = torch.randn(6, 4, dtype=F64)
    with pytest.raises(ValueError, match="step_workers"):
        opt.step()
    with pytest.raises(ValueError, match="3 workers"):
        opt.step_workers(_worker_grads(1, [q], 3))


def test_multi_worker_state_dict_resume_is_bitwise():
    """All worker and server state is in state_dict: a resumed run equals the uninterrupted one."""
    cfg = dict(workers=3, uplink="rank_k", uplink_ratio=0.5, downlink="top_k", lr=0.03, **EXACT)
    a = _params()
    opt = EF21Muon(a, **cfg)
    for t in range(3):
        opt.step_workers(_worker_grads(t, a, 3))
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    b = _clone(a)
    for t in range(3, 6):
        opt.step_workers(_worker_grads(t, a, 3))
    buf.seek(0)
    opt2 = EF21Muon(b, **cfg)
    opt2.load_state_dict(torch.load(buf))
    for t in range(3, 6):
        opt2.step_workers(_worker_grads(t, b, 3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_batched_matrix_phase_equals_one_at_a_time():
    shapes = [(8, 6), (8, 6), (5, 7)]
    a = _params(shapes)
    b = _clone(a)
    cfg = dict(uplink="rank_k", uplink_ratio=0.5, downlink="top_k", **EXACT)
    opt_a = muonlab.HybridOptimizer(a, "ef21_muon", **cfg)
    opt_b = muonlab.HybridOptimizer(b, "ef21_muon", executor=LocalExecutor(batch=False), **cfg)
    for t in range(3):
        for opt, ps in ((opt_a, a), (opt_b, b)):
            for p, g in zip(ps, _worker_grads(t, ps, 1)[0]):
                p.grad = g
            opt.step()
    for x, y in zip(a, b):
        _close(x.detach(), y.detach(), 1e-12)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 7, bias=False)
        self.b = nn.Linear(7, 3, bias=False)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def _data(step, size=8):
    g = torch.Generator().manual_seed(500 + step)
    return torch.randn(size, 5, generator=g, dtype=F64), torch.randn(size, 3, generator=g, dtype=F64)


def test_worker_gradients_split_the_batch():
    """Worker j's gradient is the gradient on the j-th contiguous slice; their mean is the full batch's
    (a mean loss over equal slices); p.grad is left untouched."""
    torch.manual_seed(0)
    model = _Tiny().double()
    x, y = _data(0)
    params = list(model.parameters())
    params[0].grad = sentinel = torch.ones_like(params[0])
    loss = lambda xb, yb: (model(xb) - yb).pow(2).mean()
    grads = worker_gradients(params, loss, (x, y), 2)
    assert params[0].grad is sentinel and params[1].grad is None
    full = torch.autograd.grad(loss(x, y), params)
    part = torch.autograd.grad(loss(x[4:], y[4:]), params)
    for i in range(2):
        _close(grads[1][i], part[i], 1e-14)
        _close((grads[0][i] + grads[1][i]) / 2, full[i], 1e-14)


def test_step_workers_gives_other_groups_the_mean_gradient():
    """create_optimizer's AdamW side gets the workers' mean gradient (what an all-reduce would give)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 7), nn.Tanh(), nn.Linear(7, 2)).double()
    ref = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 7), nn.Tanh(), nn.Linear(7, 2)).double()
    ref.load_state_dict(model.state_dict())
    # create_optimizer's routing, as an EF21Muon (which has step_workers)
    opt = EF21Muon(muonlab.create_optimizer(model, "ef21_muon", workers=2, uplink="identity", **EXACT).param_groups)
    ref_opt = muonlab.create_optimizer(ref, "ef21_muon", uplink="identity", **EXACT)
    assert [g["algorithm"] for g in opt.param_groups] == [g["algorithm"] for g in ref_opt.param_groups]
    assert {g["algorithm"] for g in opt.param_groups} == {"ef21_muon", "adamw"}
    x, y = torch.randn(8, 5, dtype=F64), torch.randn(8, 2, dtype=F64)
    params = [p for g in opt.param_groups for p in g["params"]]
    for _ in range(3):
        grads = worker_gradients(params, lambda xb, yb: (model(xb) - yb).pow(2).mean(), (x, y), 2)
        opt.step_workers(grads)
        ref_opt.zero_grad()
        (ref(x) - y).pow(2).mean().backward()
        ref_opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        _close(p.detach(), q.detach(), 1e-10)


# ---- EF21-Muon under torchrun: 2 ranks ≡ 2 simulated workers -----------------------------------------

TORCHRUN_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from muonlab.distributed import get_rank, init_from_env, shard_batch, shutdown
from muonlab.distributed.ef21 import EF21Executor
from muonlab.optim.ef21_muon import EF21Muon
from test_family_d import EF21_TORCHRUN, _Tiny, _data
info = init_from_env(device="cpu")
torch.set_num_threads(1)
torch.manual_seed(0)
model = _Tiny().double()
opt = EF21Muon(model.parameters(), executor=EF21Executor(timeout=60), **EF21_TORCHRUN)
for step in range(4):
    x, y = shard_batch(_data(step))
    (model(x) - y).pow(2).mean().backward()
    opt.step(); opt.zero_grad()
torch.save({{"params": [p.detach() for p in model.parameters()], "state": opt.state_dict()}},
           {out!r} + "/rank%d.pt" % get_rank())
shutdown()
"""

EF21_TORCHRUN = dict(lr=0.05, uplink="rank_k", uplink_ratio=0.5, downlink="top_k", downlink_ratio=0.3, **EXACT)


@pytest.mark.distributed
def test_torchrun_two_ranks_equal_two_simulated_workers(tmp_path):
    """``torchrun --nproc_per_node=2`` with EF21Executor (each rank a worker, compact messages
    all-gathered) gives the parameters and per-worker state of 2 simulated workers on the same slices."""
    script = tmp_path / "ef21.py"
    script.write_text(TORCHRUN_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    src = str(Path(muonlab.__file__).parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180, env=env)
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr:
        # gloo's C++ teardown aborted a rank once in CI under load (after the barrier of shutdown());
        # not reproduced in 14 runs here, loaded or not. One fresh attempt; any other failure fails.
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    torch.manual_seed(0)
    model = _Tiny().double()
    params = list(model.parameters())
    opt = EF21Muon(params, workers=2, **EF21_TORCHRUN)
    for step in range(4):
        opt.step_workers(worker_gradients(params, lambda xb, yb: (model(xb) - yb).pow(2).mean(), _data(step), 2))
    sim = opt.state_dict()["state"]
    for r, got in enumerate(ranks):
        for p, q in zip(got["params"], params):
            _close(p, q.detach(), 1e-12)
        for i, st in got["state"]["state"].items():
            _close(st["momentum_buffer"], sim[i]["momentum_buffer"][r], 1e-12)
            _close(st["ef_estimate"], sim[i]["ef_estimate"][r], 1e-12)
            _close(st["server_estimate"], sim[i]["server_estimate"], 1e-12)
            _close(st["downlink_error"], sim[i]["downlink_error"], 1e-12)
    for p, q in zip(*(g["params"] for g in ranks)):
        assert torch.equal(p, q)  # the ranks' models never drift apart


# ---- Pion -----------------------------------------------------------------------------------------


def _pion_reference(W0, grads, lr, betas=(0.9, 0.999), eps=1e-8, c=0.2, kind="taylor2", bias_correction=True):
    """Shi et al.'s Pion, float64, one matrix, written from the rule (not from muonlab's functions)."""
    W = W0.clone()
    m, n = W.shape
    mo, vo = torch.zeros(m, m, dtype=F64), torch.zeros(m, m, dtype=F64)
    mi, vi = torch.zeros(n, n, dtype=F64), torch.zeros(n, n, dtype=F64)
    b1, b2 = betas

    def E(B):
        I = torch.eye(B.shape[0], dtype=F64)
        if kind == "taylor2":
            return I + B + B @ B / 2
        if kind == "exact":
            out, term = I.clone(), I.clone()
            for k in range(1, 30):  # power series of exp
                term = term @ B / k
                out = out + term
            return out
        return torch.linalg.inv(I - B / 2) @ (I + B / 2)

    for t, g in enumerate(grads, start=1):
        Gout = g @ W.T - W @ g.T
        Gin = W.T @ g - g.T @ W
        mo, vo = b1 * mo + (1 - b1) * Gout, b2 * vo + (1 - b2) * Gout**2
        mi, vi = b1 * mi + (1 - b1) * Gin, b2 * vi + (1 - b2) * Gin**2
        c1, c2 = (1 - b1**t, 1 - b2**t) if bias_correction else (1.0, 1.0)
        Aout = -(mo / c1) / ((vo / c2).sqrt() + eps)
        Ain = -(mi / c1) / ((vi / c2).sqrt() + eps)
        alpha = c * math.sqrt(m * n) / ((Aout @ W + W @ Ain).norm() + eps)
        W = E(lr * alpha * Aout) @ W @ E(lr * alpha * Ain)
    return W


@pytest.mark.parametrize("kind", ["taylor2", "exact", "cayley"])
def test_pion_matches_float64_loop(kind):
    """Five steps on tall, wide and square matrices equal a float64 for-loop of the rule."""
    params = _params()
    W0s = [p.detach().clone() for p in params]
    grads = [_worker_grads(t, params, 1)[0] for t in range(5)]
    opt = muonlab.HybridOptimizer(params, "pion", lr=0.1, exponential=kind)
    for t in range(5):
        for p, g in zip(params, grads[t]):
            p.grad = g.clone()
        opt.step()
    for i, p in enumerate(params):
        _close(p.detach(), _pion_reference(W0s[i], [grads[t][i] for t in range(5)], 0.1, kind=kind), 1e-11)
        assert "weight" not in opt.state[p]  # the snapshot of W lives only during the step


def test_pion_options_match_the_loop():
    """Bias correction off, other betas, ε and scale (one configuration of each)."""
    (p,) = _params([(9, 6)])
    W0 = p.detach().clone()
    grads = [_worker_grads(t, [p], 1)[0][0] for t in range(4)]
    opt = muonlab.HybridOptimizer([p], "pion", lr=0.05, betas=(0.5, 0.9), eps=1e-3, scale=0.7, bias_correction=False)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    ref = _pion_reference(W0, grads, 0.05, betas=(0.5, 0.9), eps=1e-3, c=0.7, bias_correction=False)
    _close(p.detach(), ref, 1e-11)


@pytest.mark.parametrize("kind", ["exact", "cayley"])
def test_orthogonal_exponentials_keep_singular_values_to_rounding(kind):
    """exp and Cayley of a skew matrix are orthogonal: σ(W) is unchanged after 20 large steps."""
    params = _params()
    s0 = [torch.linalg.svdvals(p.detach()) for p in params]
    opt = muonlab.HybridOptimizer(params, "pion", lr=0.5, exponential=kind)
    for t in range(20):
        for p, g in zip(params, _worker_grads(t, params, 1)[0]):
            p.grad = g
        opt.step()
    for p, q, s in zip(params, _params(), s0):
        assert (p.detach() - q).abs().max() > 0.1  # W moved a lot, its spectrum did not
        _close(torch.linalg.svdvals(p.detach()), s, 1e-12)


def test_taylor2_singular_values_only_grow_and_at_fourth_order():
    """E₂(B)ᵀE₂(B) = I + ¼B⁴ for skew B: one step never shrinks a singular value, grows it by at most
    √(1+¼‖B_out‖⁴)·√(1+¼‖B_in‖⁴), and halving the step cuts the change ≈ 16×."""
    W = torch.randn(10, 7, dtype=F64)
    g = torch.randn(10, 7, dtype=F64)
    s0 = torch.linalg.svdvals(W)
    changes = []
    for lr in (0.2, 0.1):
        (p,) = [nn.Parameter(W.clone())]
        opt = muonlab.HybridOptimizer([p], "pion", lr=lr)
        p.grad = g.clone()
        opt.step()
        st = opt.state[p]
        A = [-st[f"exp_avg_{s}"] / 0.1 / ((st[f"exp_avg_sq_{s}"] / 1e-3).sqrt() + 1e-8) for s in ("out", "in")]
        h = lr * 0.2 * math.sqrt(70) / ((A[0] @ W + W @ A[1]).norm() + 1e-8)
        bound = math.prod(math.sqrt(1 + 0.25 * torch.linalg.matrix_norm(h * a, 2).item() ** 4) for a in A)
        s1 = torch.linalg.svdvals(p.detach())
        assert (s1 >= s0 * (1 - 1e-13)).all() and (s1 <= s0 * bound * (1 + 1e-13)).all()
        changes.append((s1 - s0).abs().max().item())
    assert changes[0] > 0 and 10 < changes[0] / changes[1] < 20


def test_pion_descends_with_update_rms_lr_times_scale():
    """To first order the step is ηα(A_out W + W A_in): its RMS is η·c, it is a descent direction
    (⟨g, ΔW⟩ < 0), and the side gradients are exactly skew."""
    W = torch.randn(8, 5, dtype=F64)
    g = torch.randn(8, 5, dtype=F64)
    lr = 1e-5
    (p,) = [nn.Parameter(W.clone())]
    opt = muonlab.HybridOptimizer([p], "pion", lr=lr, bias_correction=False, betas=(0.0, 0.0))
    p.grad = g.clone()
    opt.step()
    dW = p.detach() - W
    assert dW.pow(2).mean().sqrt().item() == pytest.approx(lr * 0.2, rel=1e-4)
    assert (g * dW).sum().item() < 0
    Gout, Gin = skew_sides(W, g)
    assert torch.equal(Gout, -Gout.T) and torch.equal(Gin, -Gin.T)  # skew to the last bit
    # β = 0 and no bias correction: A = −G/(|G| + ε), the sign of the skew projection (zero diagonal).
    Aout = -Gout / (Gout.abs() + 1e-8)
    Ain = -Gin / (Gin.abs() + 1e-8)
    Y = Aout @ W + W @ Ain
    _close(dW, lr * 0.2 * math.sqrt(40) / Y.norm() * Y, 1e-4)


def test_rotation_functions():
    B = torch.randn(6, 6, dtype=F64)
    B = B - B.T
    I = torch.eye(6, dtype=F64)
    for kind in ("exact", "cayley"):
        R = rotation(B, kind)
        _close(R.T @ R, I, 1e-12)
    E2 = rotation(B, "taylor2")
    _close(E2.T @ E2, I + 0.25 * torch.linalg.matrix_power(B, 4), 1e-12)
    _close(rotation(torch.zeros(4, 4, dtype=F64)), torch.eye(4, dtype=F64), 0)


def test_pion_batch_view_and_conv_equal_per_matrix_steps():
    """A (3, m, n) stack seen as a batch and a conv filter seen flattened equal stepping each matrix
    alone; learning rate 0 leaves W unchanged bit for bit."""
    stack = nn.Parameter(torch.randn(3, 6, 4, dtype=F64))
    conv = nn.Parameter(torch.randn(5, 2, 3, dtype=F64))
    singles = [nn.Parameter(stack.detach()[i].clone()) for i in range(3)]
    flat = nn.Parameter(conv.detach().reshape(5, 6).clone())
    opt_s = muonlab.HybridOptimizer([stack], "pion", matrix_view="batch", lr=0.1)
    opt_c = muonlab.HybridOptimizer([conv], "pion", matrix_view="flatten", lr=0.1)
    opt_1 = muonlab.HybridOptimizer(singles + [flat], "pion", lr=0.1)
    for t in range(3):
        gs = torch.randn(3, 6, 4, dtype=F64)
        gc = torch.randn(5, 2, 3, dtype=F64)
        stack.grad, conv.grad = gs, gc
        for i, q in enumerate(singles):
            q.grad = gs[i].clone()
        flat.grad = gc.reshape(5, 6).clone()
        opt_s.step(), opt_c.step(), opt_1.step()
    for i, q in enumerate(singles):
        _close(stack.detach()[i], q.detach(), 1e-12)
    _close(conv.detach().reshape(5, 6), flat.detach(), 1e-12)
    before = stack.detach().clone()
    for group in opt_s.param_groups:
        group["lr"] = 0.0
    stack.grad = torch.randn(3, 6, 4, dtype=F64)
    opt_s.step()
    assert torch.equal(stack.detach(), before)
