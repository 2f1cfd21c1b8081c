"""muonlab.diagnostics.spectrum: closed forms, degenerate input, agreement with numpy/scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_matrix
from muonlab.diagnostics import spectrum as S
from muonlab.matfn import polar_svd

SCALARS = [k for k in S.spectral_stats(torch.eye(2)) if k != "singular_values"]


def f(x) -> float:
    return float(x)


# ---- closed forms ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_identity(n):
    st_ = S.spectral_stats(torch.eye(n))
    assert f(st_["rank"]) == n
    assert f(st_["stable_rank"]) == pytest.approx(n)
    assert f(st_["effective_rank"]) == pytest.approx(n)
    assert f(st_["nuclear_norm"]) == pytest.approx(n)
    assert f(st_["frobenius_norm"]) == pytest.approx(math.sqrt(n))
    assert f(st_["spectral_norm"]) == pytest.approx(1.0)
    assert f(st_["condition_number"]) == pytest.approx(1.0)
    assert f(st_["flatness"]) == pytest.approx(1.0)
    assert f(st_["flatness_cv"]) == pytest.approx(0.0, abs=1e-12)
    # Maximal entropy for n ≥ 2; a single nonzero σ has entropy 0 by definition.
    want_h = 1.0 if n >= 2 else 0.0
    assert f(st_["spectral_entropy"]) == pytest.approx(want_h)
    assert f(st_["spectral_entropy_sq"]) == pytest.approx(want_h)
    # All σ equal: the gap is 0 (a degeneracy), or +inf with only one σ.
    assert f(st_["min_gap"]) == (0.0 if n >= 2 else math.inf)
    # Flat spectrum σ₀ = 1: R_pw = −r(r−1)·log 2, S(μ) = r(r−1)/4.
    assert f(st_["pairwise_regularizer"]) == pytest.approx(-n * (n - 1) * math.log(2.0))
    assert f(st_["polar_sensitivity"]) == pytest.approx(n * (n - 1) / 4)


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5)])
def test_rank_one(shape):
    g = torch.Generator().manual_seed(1)
    u = torch.randn(shape[0], 1, generator=g, dtype=torch.float64)
    v = torch.randn(1, shape[1], generator=g, dtype=torch.float64)
    W = 3.0 * u @ v
    st_ = S.spectral_stats(W)
    assert f(st_["rank"]) == 1
    assert f(st_["stable_rank"]) == pytest.approx(1.0)
    assert f(st_["spectral_entropy"]) == 0.0
    assert f(st_["spectral_entropy_sq"]) == 0.0
    assert f(st_["effective_rank"]) == pytest.approx(1.0)
    assert f(st_["min_gap"]) == math.inf  # no pair of nonzero σ's
    assert f(st_["flatness"]) == 1.0 and f(st_["condition_number"]) == 1.0
    sigma1 = 3.0 * u.norm() * v.norm()
    for key in ("spectral_norm", "nuclear_norm", "frobenius_norm"):
        assert f(st_[key]) == pytest.approx(f(sigma1), rel=1e-12)


def test_rank_one_in_float32_uses_input_precision():
    # A float32 rank-1 matrix has σ₂ ≈ 1e-7·σ₁ from rounding. The default threshold uses float32's
    # eps, so the rank is 1; a float64 threshold would count the rounding noise as rank.
    W = (torch.randn(32, 1) @ torch.randn(1, 24)).float()
    assert S.numerical_rank(W) == 1
    assert f(S.spectral_entropy(W)) == 0.0
    assert S.numerical_rank(W, rtol=1e-15) > 1


def test_diagonal_gaps_and_norms():
    sigma = [5.0, 3.0, 2.5, 1.0]
    W = torch.diag(torch.tensor(sigma, dtype=torch.float64))
    st_ = S.spectral_stats(W)
    assert S.singular_gaps(W).tolist() == pytest.approx([2.0, 0.5, 1.5])
    assert f(st_["min_gap"]) == pytest.approx(0.5)
    assert f(st_["min_gap_relative"]) == pytest.approx(0.1)
    assert f(st_["spectral_norm"]) == 5.0
    assert f(st_["nuclear_norm"]) == pytest.approx(11.5)
    assert f(st_["frobenius_norm"]) == pytest.approx(math.sqrt(25 + 9 + 6.25 + 1))
    assert f(st_["stable_rank"]) == pytest.approx((25 + 9 + 6.25 + 1) / 25)
    assert f(st_["condition_number"]) == pytest.approx(5.0)
    assert f(st_["flatness"]) == pytest.approx(0.2)
    s = np.array(sigma)
    assert f(st_["flatness_cv"]) == pytest.approx(s.std() / s.mean())
    p = s / s.sum()
    H = -(p * np.log(p)).sum()
    assert f(st_["spectral_entropy"]) == pytest.approx(H / math.log(4))
    assert f(st_["effective_rank"]) == pytest.approx(math.exp(H))
    q = s**2 / (s**2).sum()
    assert f(st_["spectral_entropy_sq"]) == pytest.approx(-(q * np.log(q)).sum() / math.log(4))
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    assert f(st_["pairwise_regularizer"]) == pytest.approx(-sum(math.log(s[i] + s[j]) for i, j in pairs))
    assert f(st_["polar_sensitivity"]) == pytest.approx(sum(1 / (s[i] + s[j]) ** 2 for i, j in pairs))


def test_gap_ignores_zero_singular_values():
    # diag(4, 1, 0) padded to 3×5: the gap to the zero σ (1.0) is excluded, κ = 3.
    W = torch.zeros(3, 5, dtype=torch.float64)
    W[0, 0], W[1, 1] = 4.0, 1.0
    st_ = S.spectral_stats(W)
    assert f(st_["rank"]) == 2
    assert f(st_["min_gap"]) == pytest.approx(3.0)
    assert f(st_["condition_number"]) == pytest.approx(4.0)  # σ₁/σ_r over nonzero σ's
    assert f(st_["flatness"]) == pytest.approx(0.25)
    assert f(st_["spectral_entropy"]) == pytest.approx(scipy.stats.entropy([0.8, 0.2]) / math.log(2))


@pytest.mark.parametrize("shape", [(3, 4), (1, 1), (2, 3, 3)])
def test_zero_matrix_is_defined(shape):
    st_ = S.spectral_stats(torch.zeros(shape))
    for k in SCALARS:
        v = st_[k]
        assert not torch.isnan(v).any(), k
        want = math.inf if k.startswith("min_gap") else 0.0
        assert torch.all(v == want), (k, v)
    Z = torch.zeros(3, 4)
    assert f(S.orthogonality_error(Z)) == pytest.approx(1.0)
    assert f(S.orthogonality_error(Z, normalize=True)) == pytest.approx(1.0)
    assert f(S.polar_error(Z, Z)) == 0.0
    assert f(S.update_alignment(Z, torch.ones(3, 4))) == 0.0
    assert f(S.critical_batch_size(Z, 1.0)) == 0.0
    fa = S.frame_alignment(Z, Z, 2)
    assert all(not torch.isnan(v) for v in fa.values())


# ---- agreement with numpy / scipy on random matrices ----------------------------------------


@pytest.mark.parametrize("shape", [(7, 5), (5, 9), (6, 6)])
def test_agrees_with_numpy(shape):
    rng = np.random.default_rng(sum(shape))
    A = rng.standard_normal(shape)
    W = torch.from_numpy(A)
    s = np.linalg.svd(A, compute_uv=False)
    st_ = S.spectral_stats(W)
    np.testing.assert_allclose(st_["singular_values"].numpy(), s, rtol=1e-12)
    assert f(st_["spectral_norm"]) == pytest.approx(np.linalg.norm(A, 2), rel=1e-12)
    assert f(st_["nuclear_norm"]) == pytest.approx(np.linalg.norm(A, "nuc"), rel=1e-12)
    assert f(st_["frobenius_norm"]) == pytest.approx(np.linalg.norm(A, "fro"), rel=1e-12)
    assert f(st_["condition_number"]) == pytest.approx(np.linalg.cond(A), rel=1e-10)
    assert f(st_["rank"]) == np.linalg.matrix_rank(A)
    assert f(st_["stable_rank"]) == pytest.approx(np.linalg.norm(A, "fro") ** 2 / s[0] ** 2, rel=1e-12)
    r = len(s)
    assert f(st_["spectral_entropy"]) == pytest.approx(scipy.stats.entropy(s) / math.log(r), rel=1e-12)
    assert f(st_["spectral_entropy_sq"]) == pytest.approx(scipy.stats.entropy(s**2) / math.log(r), rel=1e-12)
    assert f(st_["effective_rank"]) == pytest.approx(math.exp(scipy.stats.entropy(s)), rel=1e-12)
    assert f(st_["min_gap"]) == pytest.approx(np.min(-np.diff(s)), rel=1e-10)


def test_rank_matches_numpy_on_rank_deficient():
    for dtype in (np.float64, np.float32):
        rng = np.random.default_rng(3)
        A = (rng.standard_normal((12, 3)) @ rng.standard_normal((3, 10))).astype(dtype)
        assert int(S.numerical_rank(torch.from_numpy(A))) == np.linalg.matrix_rank(A) == 3


def test_polar_error_against_scipy_polar():
    rng = np.random.default_rng(5)
    A = rng.standard_normal((8, 5))
    Up, _ = scipy.linalg.polar(A)
    G = torch.from_numpy(A)
    assert f(S.polar_error(torch.from_numpy(Up), G)) < 1e-12
    # A known perturbation: E orthogonal to nothing in particular; error = ‖E‖_F/√k.
    E = 1e-3 * rng.standard_normal((8, 5))
    assert f(S.polar_error(torch.from_numpy(Up + E), G)) == pytest.approx(np.linalg.norm(E) / math.sqrt(5), rel=1e-9)
    # fit_scale removes an lr-like factor but not a change of direction.
    assert f(S.polar_error(torch.from_numpy(-0.03 * Up), G, fit_scale=True)) == pytest.approx(1.0)  # c clamps to 0
    assert f(S.polar_error(torch.from_numpy(0.03 * Up), G, fit_scale=True)) < 1e-12


def test_frame_alignment_against_scipy_subspace_angles():
    rng = np.random.default_rng(7)
    A = rng.standard_normal((9, 6))
    B = A + 0.3 * rng.standard_normal((9, 6))
    k = 3
    fa = S.frame_alignment(torch.from_numpy(A), torch.from_numpy(B), k)
    Ua, _, Vah = np.linalg.svd(A, full_matrices=False)
    Ub, _, Vbh = np.linalg.svd(B, full_matrices=False)
    left = np.linalg.norm(np.sin(scipy.linalg.subspace_angles(Ua[:, :k], Ub[:, :k])))
    right = np.linalg.norm(np.sin(scipy.linalg.subspace_angles(Vah[:k].T, Vbh[:k].T)))
    assert f(fa["left"]) == pytest.approx(left, rel=1e-8, abs=1e-10)
    assert f(fa["right"]) == pytest.approx(right, rel=1e-8, abs=1e-10)
    assert f(fa["max"]) == pytest.approx(max(left, right), rel=1e-8, abs=1e-10)
    # Same matrix: 0 (up to sign flips of singular vectors); orthogonal subspaces: √k.
    assert f(S.frame_alignment(torch.from_numpy(A), torch.from_numpy(2 * A), k)["max"]) < 1e-6
    X = torch.zeros(4, 4, dtype=torch.float64)
    Y = torch.zeros(4, 4, dtype=torch.float64)
    X[0, 0], X[1, 1], Y[2, 2], Y[3, 3] = 2.0, 1.0, 2.0, 1.0
    assert f(S.frame_alignment(X, Y, 2)["left"]) == pytest.approx(math.sqrt(2))


def test_batched_equals_loop():
    W = torch.randn(2, 3, 7, 4, dtype=torch.float64)
    W[0, 1] = 0.0  # a zero matrix inside the batch
    W[1, 2, :, 1:] = 0.0  # and a rank-1 one
    batched = S.spectral_stats(W)
    for i in range(2):
        for j in range(3):
            single = S.spectral_stats(W[i, j])
            for k, v in single.items():
                torch.testing.assert_close(batched[k][i, j], v, rtol=1e-12, atol=1e-12, msg=k)
    G = torch.randn_like(W)
    torch.testing.assert_close(
        S.polar_error(W, G)[1, 0], S.polar_error(W[1, 0], G[1, 0]), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        S.frame_alignment(W, G, 2)["max"][0, 2], S.frame_alignment(W[0, 2], G[0, 2], 2)["max"])


def test_known_spectrum_from_conftest():
    sigma = [4.0, 2.0, 1.0, 0.5, 0.25]
    W = make_matrix(8, 5, sigma, seed=3)
    assert S.singular_values(W).tolist() == pytest.approx(sigma, rel=1e-12)
    assert f(S.min_gap(W)) == pytest.approx(0.25)
    assert f(S.min_gap(W, relative=True)) == pytest.approx(0.0625)
    assert f(S.flatness(W, kind="cv")) == pytest.approx(np.std(sigma) / np.mean(sigma))
    # Invariances: scale (entropy, stable rank), transpose (everything).
    for fn in (S.stable_rank, S.spectral_entropy, S.effective_rank):
        assert f(fn(7.5 * W)) == pytest.approx(f(fn(W)), rel=1e-12)
        assert f(fn(W.mT)) == pytest.approx(f(fn(W)), rel=1e-12)


# ---- pairwise diagnostics -------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 4), (4, 6)])
def test_orthogonality_error(shape):
    G = torch.randn(*shape, dtype=torch.float64)
    Q = polar_svd(G)
    assert f(S.orthogonality_error(Q)) < 1e-12
    # 2Q: every σ² − 1 = 3, so the error is exactly 3; normalize=True removes the scale.
    assert f(S.orthogonality_error(2 * Q)) == pytest.approx(3.0)
    assert f(S.orthogonality_error(0.01 * Q, normalize=True)) < 1e-12
    s = torch.linalg.svdvals(G)
    assert f(S.orthogonality_error(G)) == pytest.approx(f(((s**2 - 1) ** 2).mean().sqrt()), rel=1e-10)


def test_alignment_and_descent_potential():
    sigma = [3.0, 1.0, 0.5]
    G = make_matrix(5, 3, sigma, seed=4)
    O = polar_svd(G)
    # ⟨G, polar(G)⟩ = ‖G‖_*, so the cosine is ‖G‖_*/(‖G‖_F √r).
    assert f(S.descent_potential(G, O)) == pytest.approx(4.5)
    assert f(S.update_alignment(G, O)) == pytest.approx(4.5 / (math.sqrt(10.25) * math.sqrt(3)))
    assert f(S.update_alignment(G, 0.1 * G)) == pytest.approx(1.0)
    assert f(S.update_alignment(G, -G)) == pytest.approx(-1.0)


@pytest.mark.parametrize("r", [2, 4, 8, 16])
def test_polar_sensitivity_flat_spectrum_matches_seed(r):
    # Seed 003 Fig. 4a: S(μ) = r(r−1)/(4σ₀²) for a flat spectrum σ₀ of rank r.
    sigma0 = 0.7
    G = make_matrix(20, 16, [sigma0] * r + [0.0] * (16 - r), seed=r)
    assert f(S.polar_sensitivity(G)) == pytest.approx(r * (r - 1) / (4 * sigma0**2), rel=1e-9)
    # B_crit = 2σ²S/r = σ²(r−1)/(2σ₀²).
    assert f(S.critical_batch_size(G, 0.3)) == pytest.approx(0.3 * (r - 1) / (2 * sigma0**2), rel=1e-9)


def test_momentum_noise_factor_matches_simulation():
    beta = 0.9
    rng = np.random.default_rng(0)
    xi = rng.standard_normal((4000, 64))
    m = np.zeros(64)
    ms = []
    for t in range(xi.shape[0]):
        m = beta * m + (1 - beta) * xi[t]
        if t > 100:  # past the transient
            ms.append(m.copy())
    assert np.var(np.array(ms)) == pytest.approx(S.momentum_noise_factor(beta), rel=0.05)
    assert S.momentum_noise_factor(0.0) == 1.0


# ---- errors and properties ------------------------------------------------------------------


def test_bad_input_raises():
    with pytest.raises(ValueError, match="at least 2 dims"):
        S.spectral_stats(torch.ones(3))
    with pytest.raises(ValueError, match="rtol"):
        S.spectral_stats(torch.eye(3), rtol=-1.0)
    with pytest.raises(ValueError, match="variant"):
        S.spectral_entropy(torch.eye(3), variant="log")
    with pytest.raises(ValueError, match="kind"):
        S.flatness(torch.eye(3), kind="min")
    with pytest.raises(ValueError, match="k must be"):
        S.frame_alignment(torch.eye(3), torch.eye(3), 4)
    with pytest.raises(ValueError, match="same matrix shape"):
        S.polar_error(torch.eye(3), torch.ones(3, 2))
    with pytest.raises(ValueError, match="noise_var"):
        S.critical_batch_size(torch.eye(3), -1.0)
    with pytest.raises(TypeError):
        S.spectral_stats(np.eye(3))


def test_input_not_modified_and_float64():
    W = torch.randn(5, 4)
    before = W.clone()
    out = S.spectral_stats(W)
    assert torch.equal(W, before)
    assert out["singular_values"].dtype == torch.float64
    assert S.spectral_stats(W, dtype=torch.float32)["stable_rank"].dtype == torch.float32


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 6),
    n=st.integers(1, 6),
    rank=st.integers(0, 6),
    scale=st.sampled_from([0.0, 1e-30, 1e-8, 1.0, 1e8]),
    seed=st.integers(0, 2**16),
)
def test_property_finite_and_in_range(m, n, rank, scale, seed):
    g = torch.Generator().manual_seed(seed)
    r = min(rank, m, n)
    W = scale * (torch.randn(m, r, generator=g, dtype=torch.float64) @ torch.randn(r, n, generator=g, dtype=torch.float64))
    st_ = S.spectral_stats(W)
    for k in SCALARS:
        assert not torch.isnan(st_[k]), k
    k_ = min(m, n)
    assert 0.0 <= f(st_["spectral_entropy"]) <= 1.0
    assert 0.0 <= f(st_["spectral_entropy_sq"]) <= 1.0
    assert 0.0 <= f(st_["flatness"]) <= 1.0
    assert f(st_["stable_rank"]) <= f(st_["effective_rank"]) + 1e-9 or f(st_["rank"]) == 0
    assert f(st_["effective_rank"]) <= f(st_["rank"]) + 1e-9 <= k_ + 1e-9
    assert f(st_["min_gap"]) >= 0.0
