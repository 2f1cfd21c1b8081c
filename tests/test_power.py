"""spectral_power against float64 SVD: accuracy, documented small/zero-σ behaviour, invariances."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import make_matrix
from muonlab import orthogonalize, polar_svd, spectral_power
from muonlab.matfn import gram_singular_values
from muonlab.matfn.power import coupled_newton_sqrt

SHAPES = [(48, 48), (64, 24), (24, 64)]


def _spectrum(kind: str, k: int, cond: float) -> torch.Tensor:
    if kind == "geometric":
        return torch.logspace(0, -math.log10(cond), k, dtype=torch.float64)
    if kind == "one_small":  # the hardest case for a ridge: many large σ and one tiny one
        s = torch.ones(k, dtype=torch.float64)
        s[-1] = 1 / cond
        return s
    g = torch.Generator().manual_seed(k)
    s = 10 ** (-math.log10(cond) * torch.rand(k, generator=g, dtype=torch.float64))
    s[0], s[-1] = 1.0, 1 / cond
    return s


def _reference(G: torch.Tensor, p: float) -> torch.Tensor:
    U, S, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    return (U * S.pow(p)) @ Vh


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kind", ["geometric", "one_small", "random"])
@pytest.mark.parametrize("cond", [1.0, 10.0, 100.0])
@pytest.mark.parametrize("p,method", [(0.5, "auto"), (0.25, "auto"), (0.3, "auto"), (0.75, "eigh"),
                                      (0.1, "eigh"), (0.5, "eigh"), (0.0, "auto")])
def test_singular_values_within_5_percent_up_to_condition_1e2(shape, kind, cond, p, method):
    m, n = shape
    sigma = 2.5 * _spectrum(kind, min(m, n), cond)
    G = make_matrix(m, n, sigma, seed=m + n).float()
    O = spectral_power(G, p, method)
    assert O.shape == G.shape and O.dtype == torch.float32
    target = sigma.sort(descending=True).values.pow(p)
    got = torch.linalg.svdvals(O.double())
    assert ((got - target).abs() / target).max() < 0.05
    # The singular vectors too: the whole matrix is close to U Σᵖ Vᵀ.
    ref = _reference(G, p)
    assert (O.double() - ref).norm() / ref.norm() < 0.05


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.3, 1.0])
def test_svd_route_is_exact_in_float64(p):
    G = make_matrix(20, 12, torch.linspace(3, 0.1, 12))
    O = spectral_power(G, p, "svd", compute_dtype=None)
    assert O.dtype == torch.float64
    torch.testing.assert_close(O, _reference(G, p), rtol=1e-10, atol=1e-12)


def test_p0_routes_through_orthogonalize_and_defaults_to_a_converged_polar_factor():
    G = make_matrix(40, 24, torch.logspace(0, -2, 24), seed=3).float()
    exact = polar_svd(G.double())
    assert (spectral_power(G, 0) - exact).norm() / exact.norm() < 2e-3  # Polar Express, 10 steps
    # With Muon's settings it is exactly Muon's orthogonalize call.
    got = spectral_power(G, 0, orthogonalizer="newton_schulz", ns_steps=5, compute_dtype=torch.bfloat16)
    assert torch.equal(got, orthogonalize(G))
    torch.testing.assert_close(spectral_power(G, 0, "svd"), polar_svd(G))


def test_p1_returns_the_input():
    G = torch.randn(5, 7)
    assert spectral_power(G, 1) is G
    assert spectral_power(G, 1, out_dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("p,method", [(0.5, "newton"), (0.25, "newton"), (0.3, "eigh"), (0.0, "eigh"),
                                      (0.4, "svd"), (0.0, "auto")])
def test_rank_deficient_input_keeps_its_null_space_and_never_nans(p, method):
    sigma = torch.tensor([3.0, 2.0, 1.0, 0.5, 0, 0, 0, 0], dtype=torch.float64)
    G = make_matrix(8, 30, sigma, seed=1).float()
    O = spectral_power(G, p, method)
    s = torch.linalg.svdvals(O.double())
    top = sigma[:4].pow(p)
    tol = 0.05 if method != "auto" else 0.02
    assert ((s[:4] - top).abs() / top).max() < tol
    assert s[4:].max() < 1e-3 * s[0]  # zero singular values stay (numerically) zero
    Z = spectral_power(torch.zeros(3, 6, 4), p, method)
    assert torch.equal(Z, torch.zeros(3, 6, 4))


@pytest.mark.parametrize("p", [0.5, 0.25])
def test_documented_ridge_map_for_small_singular_values(p):
    """With BeyondMuon's ridge, σ ↦ σ(σ² + δ)^{-1/4} per p = 1/2 pass, in units of ‖G‖_F, with
    δ = ridge·tr(A)/k + 4ε‖A‖_F: close to σᵖ for large σ, damped (never amplified) for small ones."""
    sigma = torch.logspace(0, -3, 16, dtype=torch.float64)
    G = make_matrix(16, 40, sigma, seed=2)

    def half(x):  # one p = 1/2 pass on singular values x, as documented
        fro = x.norm()
        s = x / fro
        delta = 1e-4 * (s**2).sum() / 16 + 4 * torch.finfo(torch.float32).eps * (s**2).norm()
        return fro.sqrt() * s * (s**2 + delta).pow(-0.25)

    expect = half(sigma) if p == 0.5 else half(half(sigma))  # Ψ_{1/4} = Ψ_{1/2} ∘ Ψ_{1/2}
    got = torch.linalg.svdvals(spectral_power(G.float(), p, "newton", ridge=1e-4, iters=30).double())
    torch.testing.assert_close(got, expect, rtol=2e-3, atol=0)
    assert (got <= sigma.pow(p) * 1.001).all()


@pytest.mark.parametrize("p,method", [(0.5, "auto"), (0.25, "auto"), (0.3, "eigh"), (0.0, "auto")])
def test_batched_transposed_and_scaled_inputs(p, method):
    G = make_matrix(12, 20, torch.linspace(2, 0.2, 12), batch=(2, 3)).float()
    O = spectral_power(G, p, method)
    loop = torch.stack([torch.stack([spectral_power(G[i, j], p, method) for j in range(3)]) for i in range(2)])
    torch.testing.assert_close(O, loop, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(spectral_power(G.mT, p, method), O.mT, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(spectral_power(1e-3 * G, p, method), 1e-3**p * O, rtol=1e-3, atol=1e-5)


def test_dtypes():
    G = torch.randn(16, 8)
    assert spectral_power(G.bfloat16(), 0.5).dtype == torch.bfloat16
    assert spectral_power(G.double(), 0.3).dtype == torch.float64
    assert spectral_power(G, 0.5, out_dtype=torch.float64).dtype == torch.float64
    assert spectral_power(torch.zeros(0, 4), 0.5).shape == (0, 4)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"p": -0.1}, "-0.1"),
        ({"p": 1.5}, "1.5"),
        ({"p": float("nan")}, "nan"),
        ({"p": 0.5, "method": "qr"}, "'qr'"),
        ({"p": 0.3, "method": "newton"}, "p=0.3"),
        ({"p": 0.5, "iters": 0}, "iters"),
        ({"p": 0.5, "ridge": -1.0}, "-1.0"),
    ],
)
def test_invalid_arguments_raise_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        spectral_power(torch.randn(4, 3), **kwargs)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        spectral_power(torch.randn(4), 0.5)


def test_coupled_newton_sqrt_and_gram_singular_values():
    B = make_matrix(10, 10, torch.logspace(0, -1, 10))
    A = (B @ B.T).float()
    Y, Z = coupled_newton_sqrt(A, 20)
    w, Q = torch.linalg.eigh(A.double())
    torch.testing.assert_close(Y.double(), (Q * w.sqrt()) @ Q.T, rtol=0, atol=1e-5)
    torch.testing.assert_close(Z.double(), (Q * w.rsqrt()) @ Q.T, rtol=0, atol=1e-3)
    G = make_matrix(30, 7, torch.linspace(4, 0.5, 7), batch=(2,))
    torch.testing.assert_close(gram_singular_values(G), torch.linalg.svdvals(G), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("p", [0.5, 0.25, 0.3])
def test_large_matrix_worst_case_spectrum(p):
    """One σ = σ_max/100 under 255 unit ones: the rounding floor (4ε‖A‖_F, ‖A‖_F ≈ √k·λ_max) costs
    most here, ≈ 2% for p = 1/2 at k = 256 (it grows like √k)."""
    sigma = _spectrum("one_small", 256, 100.0)
    G = make_matrix(256, 256, sigma, seed=5).float()
    got = torch.linalg.svdvals(spectral_power(G, p).double())
    target = sigma.sort(descending=True).values.pow(p)
    assert ((got - target).abs() / target).max() < 0.05
