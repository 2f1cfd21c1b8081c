"""Claim 18 (implicit-bias margin): margins and max-margin optima on hand-built cases, the
steepest-descent directions, the cross-entropy gradient, and a smoke run of the claim."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("cvxpy")

from muonlab.claims import VERDICTS, get_claim  # noqa: E402
from muonlab.claims.bias import (  # noqa: E402
    ce_grad, margin_ratios, margins, max_margin, norm_of, separable_data, steepest_direction, train,
)


def test_margins_by_hand():
    X = np.eye(2)
    y = np.array([0, 1])
    W = np.array([[2.0, -1.0], [0.5, 1.0]])
    # point 0 (class 0): W₀₀ − W₁₀ = 1.5; point 1 (class 1): W₁₁ − W₀₁ = 2
    assert margins(W, X, y) == pytest.approx(1.5)
    assert margins(np.stack([W, -W]), X, y) == pytest.approx([1.5, -2.0])


def test_max_margin_two_classes():
    # x₀ = e₁ (class 0), x₁ = e₂ (class 1): margins m₀ = W₀₀ − W₁₀, m₁ = W₁₁ − W₀₁, and
    # m₀ + m₁ = ⟨W, J⟩ with J = [[1, −1], [−1, 1]]: ≤ ‖W‖₂‖J‖_* = 2‖W‖₂, ≤ ‖W‖_F‖J‖_F = 2‖W‖_F,
    # ≤ max|W_ij|·Σ|J_ij| = 4 max|W_ij|; all attained by J (scaled).
    X, y = np.eye(2), np.array([0, 1])
    assert max_margin(X, y, 2, "spectral")[0] == pytest.approx(1.0, abs=1e-6)
    assert max_margin(X, y, 2, "fro")[0] == pytest.approx(1.0, abs=1e-6)
    assert max_margin(X, y, 2, "linf")[0] == pytest.approx(2.0, abs=1e-6)


def test_max_margin_three_classes_separates_the_norms():
    # x_i = e_i, y_i = i: by symmetry the optimum is αI + β11ᵀ. Spectral: I − 11ᵀ/3 (norm 1,
    # margin 1); ℓ∞: 2I − 11ᵀ (entries ±1, margin 2); Frobenius: margin α−β with 3α² + 6β² = 1,
    # maximised at β = −α/2: 1/√2.
    X, y = np.eye(3), np.arange(3)
    assert max_margin(X, y, 3, "spectral")[0] == pytest.approx(1.0, abs=1e-6)
    assert max_margin(X, y, 3, "linf")[0] == pytest.approx(2.0, abs=1e-6)
    assert max_margin(X, y, 3, "fro")[0] == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    opt = {nm: max_margin(X, y, 3, nm)[0] for nm in ("spectral", "linf", "fro")}
    r = margin_ratios(np.eye(3), X, y, opt)   # I: margin 1, ‖I‖₂ = 1, ‖I‖_F = √3, max|I_ij| = 1
    assert r["spectral"] == pytest.approx(1.0, abs=1e-6)
    assert r["fro"] == pytest.approx(math.sqrt(2 / 3), abs=1e-6) and r["linf"] == pytest.approx(0.5, abs=1e-6)


def test_norms_and_directions():
    W = np.array([[3.0, 0.0], [0.0, -4.0]])
    assert norm_of(W, "spectral") == pytest.approx(4.0)
    assert norm_of(W, "linf") == 4.0 and norm_of(W, "fro") == 5.0
    M = np.array([[[3.0, 0.0], [0.0, -4.0]]])
    assert np.allclose(steepest_direction(M, "muon"), [[1, 0], [0, -1]])
    assert np.array_equal(steepest_direction(M, "signum"), [[[1, 0], [0, -1]]])
    assert np.allclose(steepest_direction(M, "gd"), M / 5)
    with pytest.raises(ValueError):
        norm_of(W, "nuclear")


def test_ce_grad_matches_finite_differences():
    X, y = separable_data(0, 3, 4, 10)
    rng = np.random.default_rng(0)
    W = rng.standard_normal((3, 4))

    def loss(W):
        Z = X @ W.T
        Z = Z - Z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(Z).sum(1)) - Z[np.arange(len(y)), y]))

    G = ce_grad(W[None], X[None], y[None])[0]
    h = 1e-6
    for i, j in [(0, 0), (1, 2), (2, 3)]:
        E = np.zeros_like(W)
        E[i, j] = h
        assert G[i, j] == pytest.approx((loss(W + E) - loss(W - E)) / (2 * h), abs=1e-7)


def test_separable_data_and_training_separates():
    X, y = separable_data(5, 4, 6, 20)
    assert set(y) == {0, 1, 2, 3}
    W = train(X[None], y[None], "muon", np.array([0.3]), 400)
    assert margins(W[0], X, y) > 0


def test_claim_smoke(tmp_path):
    r = get_claim("implicit_bias_margin").run(
        tmp_path, "small", fig_dir=tmp_path, log=lambda _: None, seeds=8, classes=3, dim=5, points=12,
        steps=300, optimizers=["muon", "signum", "gd"])
    assert r.verdict in VERDICTS and r.tests
    assert sum(t["primary"] for t in r.tests) == 1
