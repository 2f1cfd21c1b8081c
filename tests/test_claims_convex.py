"""Claims 17 (convex Lipschitz non-convergence) and 25 (decoupled weight decay bound): the math
against hand-computable cases, and smoke runs of both claims at tiny budgets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from muonlab.claims import VERDICTS, get_claim
from muonlab.claims.convex import (
    SCHEDULES, convex_f, convex_subgradient, decoupled_step, initial_points, ns_sup, polar2, simulate,
    wd_spectral_bound,
)

D = torch.float64


def _t(x):
    return torch.tensor(x, dtype=D)


# ---- claim 17: f, its oracle, the exact 2×2 polar factor -----------------------------------------

def test_f_by_hand():
    W = _t([[1.0, -0.25], [0.5, -0.5]])
    # |1 − 0.5| + 0.1·|1 + 0.5| + 0.25 + 0.5
    assert float(convex_f(W, 0.1)) == pytest.approx(0.5 + 0.15 + 0.75, abs=1e-15)
    assert float(convex_f(torch.zeros(2, 2, dtype=D), 0.1)) == 0.0


def test_oracle_by_hand_and_sign_conventions():
    G = convex_subgradient(_t([[1.0, 0.0], [0.0, -0.5]]), 0.1)   # s = +1, t = +1
    assert torch.equal(G, _t([[1.1, 0.0], [0.0, 0.9]]))
    G = convex_subgradient(_t([[-1.0, 2.0], [-3.0, 0.5]]), 0.1)  # s = −1, t = −1
    assert torch.allclose(G, _t([[-1.1, 1.0], [-1.0, -0.9]]), atol=1e-15)
    G = convex_subgradient(torch.zeros(2, 2, dtype=D), 0.1)      # sign(0) = +1 on the diagonal, 0 off it
    assert torch.equal(G, _t([[1.1, 0.0], [0.0, 0.9]]))


def test_oracle_is_a_subgradient():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        W, V = torch.randn(2, 2, 2, generator=g, dtype=D)
        if _ % 3 == 0:
            W[0, 1] = 0.0  # a kink
        G = convex_subgradient(W, 0.3)
        # f(V) ≥ f(W) + ⟨G, V − W⟩ for every V
        assert float(convex_f(V, 0.3)) >= float(convex_f(W, 0.3) + (G * (V - W)).sum()) - 1e-12


def test_polar2_matches_svd():
    g = torch.Generator().manual_seed(1)
    M = torch.randn(50, 2, 2, generator=g, dtype=D)
    Q, nuc, rank = polar2(M)
    U, S, Vh = torch.linalg.svd(M)
    assert torch.allclose(Q, U @ Vh, atol=1e-12)
    assert torch.allclose(nuc, S.sum(-1), atol=1e-12)
    assert torch.equal(rank, torch.full((50,), 2.0, dtype=D))


def test_polar2_exact_on_diagonal_and_degenerate_cases():
    Q, nuc, rank = polar2(_t([[[1.1, 0.0], [0.0, 0.9]], [[-0.3, 0.0], [0.0, -2.0]]]))
    assert torch.equal(Q[0], torch.eye(2, dtype=D)) and torch.equal(Q[1], -torch.eye(2, dtype=D))
    assert torch.allclose(nuc, _t([2.0, 2.3]), atol=1e-15)
    Q, nuc, rank = polar2(_t([[[3.0, 4.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]))
    assert torch.allclose(Q[0], _t([[0.6, 0.8], [0.0, 0.0]])) and float(nuc[0]) == 5.0 and float(rank[0]) == 1
    assert torch.equal(Q[1], torch.zeros(2, 2, dtype=D)) and float(rank[1]) == 0


def _batch(W0, eps, schedules, beta=0.0, ef=False):
    B = len(schedules)
    return (torch.stack([torch.as_tensor(W0, dtype=D)] * B), torch.full((B,), eps, dtype=D),
            _t([SCHEDULES[s][0] for s in schedules]), _t([SCHEDULES[s][1] for s in schedules]),
            torch.full((B,), beta, dtype=D), torch.full((B,), ef))


def test_muon_keeps_the_diagonal_gap_for_every_schedule():
    W0 = np.diag([1.0, -0.5])
    tr = simulate(*_batch(W0, 0.1, list(SCHEDULES)), steps=3000)
    assert torch.equal(tr.W[:, 0, 1], torch.zeros(4, dtype=D)) and torch.equal(tr.W[:, 1, 0], torch.zeros(4, dtype=D))
    assert torch.allclose(tr.W[:, 0, 0] - tr.W[:, 1, 1], torch.full((4,), 1.5, dtype=D), atol=1e-12)
    assert bool((tr.f_min >= 0.1 * 1.5 * (1 - 1e-9)).all())


def test_ef_muon_converges_where_muon_stalls():
    W0 = np.diag([1.0, -0.5])
    muon = simulate(*_batch(W0, 0.1, ["0.1/√(t+1)"]), steps=4000)
    ef = simulate(*_batch(W0, 0.1, ["0.1/√(t+1)"], ef=True), steps=4000)
    floor = 0.1 * 1.5
    assert float(muon.f_final) >= floor * (1 - 1e-9)
    assert float(ef.f_final) < 0.1 * floor
    assert abs(float(ef.W[0, 0, 0] - ef.W[0, 1, 1])) < 0.1 * 1.5  # the gap itself closes


def test_initial_points():
    diag, pert = initial_points(3, 1e-3)
    assert diag[0, 1] == diag[1, 0] == 0 and abs(diag[0, 0] - diag[1, 1]) >= 0.5
    assert np.allclose(np.diag(pert), np.diag(diag)) and 0 < abs(pert[0, 1]) < 0.01


# ---- claim 25: the weight-decay bound --------------------------------------------------------------

def test_bound_by_hand():
    assert wd_spectral_bound(1.5, 0.5, 1.0) == 2.0
    assert wd_spectral_bound(3.0, 0.5, 1.0) == 3.0
    assert wd_spectral_bound(1.0, 0.5, math.sqrt(2), 1.2) == pytest.approx(math.sqrt(2) * 2.4)
    assert wd_spectral_bound(1.0, 0.0, 1.0) == math.inf


def test_ns_sup():
    assert ns_sup(steps=0) == 1.0
    assert ns_sup() == pytest.approx(1.2024, abs=2e-4)      # Keller's quintic overshoots 1
    assert ns_sup((1.5, -0.5, 0.0), steps=20) <= 1.0 + 1e-12  # the cubic Newton–Schulz never does


def _orthogonal(g, m, n):
    U, _, Vh = torch.linalg.svd(torch.randn(m, n, generator=g, dtype=D), full_matrices=False)
    return U @ Vh


def test_induction_on_random_orthogonal_updates():
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        m, n = (8, 4) if trial % 2 else (5, 5)
        s, lam, kappa = math.sqrt(max(1, m / n)), [0.3, 1.0, 4.0][trial % 3], 1.2
        W = 2.0 * torch.randn(m, n, generator=g, dtype=D) / math.sqrt(n)
        B = wd_spectral_bound(float(torch.linalg.matrix_norm(W, 2)), lam, s, kappa)
        for t in range(300):
            lr = float(torch.rand(1, generator=g)) / lam  # any η with ηλ ≤ 1, varying with t
            W = decoupled_step(W, kappa * _orthogonal(g, m, n), lr, lam, s)
            assert float(torch.linalg.matrix_norm(W, 2)) <= B * (1 + 1e-12)


def test_bound_is_tight_and_fails_without_decay():
    # aligned updates O = −u vᵀ (the worst case) push ‖W‖₂ to sκ/λ; without decay they pass it
    u, v = torch.zeros(4, dtype=D), torch.zeros(3, dtype=D)
    u[0], v[0] = 1.0, 1.0
    O = -torch.outer(u, v)
    W = torch.zeros(4, 3, dtype=D)
    Wn = torch.zeros(4, 3, dtype=D)
    for _ in range(2000):
        W = decoupled_step(W, O, 0.05, 0.5, 1.0)
        Wn = decoupled_step(Wn, O, 0.05, 0.0, 1.0)
    B = wd_spectral_bound(0.0, 0.5, 1.0)
    assert float(torch.linalg.matrix_norm(W, 2)) == pytest.approx(B, rel=1e-9)
    assert float(torch.linalg.matrix_norm(Wn, 2)) > 10 * B


# ---- smoke runs ------------------------------------------------------------------------------------

def test_convex_claim_smoke(tmp_path):
    r = get_claim("convex_lipschitz_nonconvergence").run(
        tmp_path, "small", fig_dir=tmp_path, log=lambda _: None, seeds=8, steps=300, eps=[0.1, 0.01],
        betas=[0.0, 0.9])
    assert r.verdict in VERDICTS and r.tests
    assert r.tests[0]["primary"] and r.tests[0]["verdict"] == "supported"  # the invariant is exact


def test_wd_claim_smoke(tmp_path):
    r = get_claim("decoupled_wd_spectral_norm").run(
        tmp_path, "small", fig_dir=tmp_path, log=lambda _: None, seeds=8, steps=4, width=16, batch=16,
        weight_decays=[0.5, 2.0], coupled=[0.5])
    assert r.verdict in VERDICTS and r.tests
    assert r.tests[0]["primary"] and r.tests[0]["interval"]["estimate"] < 1.0
