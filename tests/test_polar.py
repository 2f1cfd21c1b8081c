"""Orthogonalization against float64 SVD: exact polynomial maps, invariances, convergence, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_matrix
from muonlab import newton_schulz, orthogonalize, polar_svd
from muonlab.matfn import coefficients as C

NS_METHODS = ("newton_schulz", "you5", "you6", "polar_express", "polar_express_4")


def _expected_ns(G: torch.Tensor, table, steps, norm_safety=1.0) -> torch.Tensor:
    """U f(Σ/‖G‖_F) Vᵀ in float64, f the composed scalar polynomial: the exact NS output."""
    G = G.double()
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    fro = torch.linalg.vector_norm(G, dim=(-2, -1), keepdim=True).squeeze(-1)
    f = C.scalar_map(C.schedule(C.as_table(table), steps), S / (fro * norm_safety))
    return (U * f.unsqueeze(-2)) @ Vh


@pytest.mark.parametrize("shape", [(16, 16), (24, 10), (10, 24), (3, 40, 12)])
@pytest.mark.parametrize("table,steps", [("jordan", 5), ("you5", 5), ("you6", 6), ("polar_express", 8), ((1.5, -0.5, 0.0), 12)])
@pytest.mark.parametrize("gram,restarts", [(False, None), (True, ()), (True, (1, 3)), (True, (2,))])
def test_newton_schulz_is_the_scalar_polynomial_of_the_singular_values(shape, table, steps, gram, restarts):
    sigma = torch.linspace(1.0, 0.05, min(shape[-2:]))
    G = make_matrix(shape[-2], shape[-1], sigma, seed=1, batch=shape[:-2])
    got = newton_schulz(G, table, steps, compute_dtype=torch.float64, eps=0.0, gram=gram, gram_restarts=restarts)
    want = _expected_ns(G, table, steps)
    assert torch.allclose(got, want, atol=1e-10, rtol=0), (got - want).abs().max()


@pytest.mark.parametrize("rank", [1, 2, 8])
def test_gram_path_is_stable_on_low_rank_inputs_in_every_dtype(rank):
    g = torch.Generator().manual_seed(rank)
    A = torch.randn(64, rank, generator=g) @ torch.randn(rank, 256, generator=g)
    for dtype in (torch.bfloat16, torch.float32):
        s = torch.linalg.svdvals(newton_schulz(A, compute_dtype=dtype, gram=True).double())
        assert s.max() < 1.25, (dtype, s.max())  # Keller's polynomial never exceeds ~1.2


def test_gram_restart_schedules_by_table_and_dtype():
    from muonlab.matfn.polar import gram_restart_steps

    table = lambda name, steps: C.schedule(C.TABLES[name], steps)  # noqa: E731
    assert gram_restart_steps(table("jordan", 5), torch.bfloat16) == (3,)
    assert gram_restart_steps(table("polar_express", 5), torch.float16) == (2, 3)
    assert gram_restart_steps(table("polar_express", 8), torch.bfloat16) == (2, 4, 6)
    assert gram_restart_steps(table("polar_express_4", 4), torch.bfloat16) == (2,)
    assert gram_restart_steps(table("jordan", 5), torch.float32) == (3,)
    assert gram_restart_steps(table("you6", 6), torch.float64) == (3,)
    assert gram_restart_steps(table("jordan", 2), torch.float32) == ()


def _spectrum_inputs():
    """Wide, tall and 3:1 inputs with spectra that stress bf16: Gaussian, rank 1, rank 8 over a
    1e-3 floor, power-law decay."""
    g = torch.Generator().manual_seed(11)
    out = []
    for m, n in [(64, 256), (256, 64), (48, 144)]:
        r = min(m, n)
        U, _ = torch.linalg.qr(torch.randn(m, r, generator=g, dtype=torch.float64))
        V, _ = torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))
        i = torch.arange(1, r + 1, dtype=torch.float64)
        out.append(torch.randn(m, n, generator=g))
        for s in ((i == 1).double(), torch.where(i <= 8, 1.0, 1e-3), i**-1.5):
            out.append(((U * s) @ V.T).float())
    return out


@pytest.mark.parametrize("G", _spectrum_inputs(), ids=lambda G: "x".join(map(str, G.shape)))
def test_bf16_gram_path_with_restarts_is_as_accurate_as_the_plain_bf16_path(G):
    """What Muon wants is the polar factor U Vᵀ: the restarted bf16 Gram iteration is as close to
    it as the plain bf16 iteration (sine of the angle within 0.03; both ≈ 0.14–0.77 here, set by
    Keller's polynomial). Against the exact output U f(Σ) Vᵀ of the polynomial itself both carry
    bf16 rounding amplified by the polynomial, 1–3%; the Gram one at most 2.5× the plain one
    (measured 0.8–2.2×). Its singular values stay in Keller's band."""
    want = _expected_ns(G, "jordan", 5)
    polar = polar_svd(G.double())
    plain = newton_schulz(G, compute_dtype=torch.bfloat16, gram=False).double()
    gram = newton_schulz(G, compute_dtype=torch.bfloat16, gram=True).double()

    def sin_angle(X):
        cos = (X * polar).sum() / (X.norm() * polar.norm())
        return (1 - cos**2).clamp_min(0).sqrt().item()

    err = lambda X: ((X - want).norm() / want.norm()).item()  # noqa: E731
    assert sin_angle(gram) <= sin_angle(plain) + 0.03, (sin_angle(gram), sin_angle(plain))
    assert err(gram) <= 2.5 * err(plain) + 1e-3, (err(gram), err(plain))
    assert torch.linalg.svdvals(gram).max() < 1.25


def test_bf16_gram_path_without_restarts_blows_up_on_low_rank_input():
    """Why the restart exists: bf16 rounding gives R = XXᵀ spurious negative eigenvalues that the
    polynomial amplifies without bound when R is only carried along."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(64, 1, generator=g) @ torch.randn(1, 256, generator=g)
    unrestarted = newton_schulz(A, compute_dtype=torch.bfloat16, gram=True, gram_restarts=())
    restarted = newton_schulz(A, compute_dtype=torch.bfloat16, gram=True)
    assert torch.linalg.svdvals(unrestarted.double()).max() > 10
    assert torch.linalg.svdvals(restarted.double()).max() < 1.25


def test_gram_path_batched_equals_looped():
    G = torch.randn(4, 32, 96)
    batched = newton_schulz(G, compute_dtype=torch.float32, gram=True)
    looped = torch.stack([newton_schulz(g, compute_dtype=torch.float32, gram=True) for g in G])
    torch.testing.assert_close(batched, looped, rtol=0, atol=1e-5)


def test_default_chooses_gram_for_large_elongated_matrices_only():
    """gram=None takes the Gram iteration from aspect ratio 2 (fewer FLOPs) and 2^25 multiply-adds
    (enough work to beat call overhead); otherwise the plain one, torch.optim.Muon's exact
    operations."""
    cases = [((256, 512), True), ((512, 256), True), ((4, 128, 512), True), ((2, 128, 512), False), ((256, 511), False),
             ((128, 512), False), ((64, 64), False)]
    for shape, gram in cases:
        G = torch.randn(*shape)
        auto = newton_schulz(G)
        assert torch.equal(auto, newton_schulz(G, gram=gram)), shape


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 5e-2)])
def test_gram_path_matches_plain_path_in_low_precision(dtype, tol):
    G = torch.randn(3, 64, 256)
    plain = newton_schulz(G, compute_dtype=dtype, gram=False).double()
    gram = newton_schulz(G, compute_dtype=dtype, gram=True).double()
    assert ((gram - plain).norm() / plain.norm()).item() < tol


def test_float32_and_bfloat16_track_the_polynomial_within_dtype_tolerance():
    G = make_matrix(64, 32, torch.linspace(1, 0.1, 32), seed=2)
    want = _expected_ns(G, "jordan", 5)
    f32 = newton_schulz(G.float(), compute_dtype=torch.float32).double()
    bf16 = newton_schulz(G.float(), compute_dtype=torch.bfloat16).double()
    assert (f32 - want).abs().max() < 1e-4
    # bf16 has 8 mantissa bits; the error stays at the few-percent level of the unit-size entries
    assert (bf16 - want).norm() / want.norm() < 3e-2


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(2, 20),
    n=st.integers(2, 20),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 10_000),
    method=st.sampled_from(NS_METHODS),
)
def test_invariances_transpose_scale_rotation(m, n, scale, seed, method):
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(m, n, generator=g, dtype=torch.float64)
    ortho = lambda X: orthogonalize(X, method, compute_dtype=torch.float64)  # noqa: E731
    base = ortho(G)
    assert torch.allclose(ortho(G.T), base.T, atol=1e-9)
    assert torch.allclose(ortho(scale * G), base, atol=1e-8)
    Q, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
    P, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    assert torch.allclose(ortho(Q @ G @ P), Q @ base @ P, atol=1e-8)


@pytest.mark.parametrize("method", NS_METHODS + ("svd",))
def test_batched_equals_looped(method):
    G = torch.randn(5, 2, 12, 7)
    batched = orthogonalize(G, method)
    looped = torch.stack([torch.stack([orthogonalize(G[i, j], method) for j in range(2)]) for i in range(5)])
    assert torch.allclose(batched, looped, atol=1e-6)


def test_polar_express_8_steps_reaches_one_within_1e_3():
    # The composed scalar map on the whole interval the table was designed for.
    x = np.geomspace(1e-3, 1.0, 2001) / C.POLAR_EXPRESS_SAFETY
    y = C.scalar_map(C.schedule(C.POLAR_EXPRESS, 8), x)
    assert np.abs(y - 1).max() < 1e-3
    # And the matrix iteration on a matrix whose normalised singular values span [1e-3, 1].
    # σ_max dominates, so after Frobenius normalisation the spectrum spans about [1e-3, 1].
    sigma = torch.cat([torch.tensor([1.0]), torch.logspace(-3, -1.5, 31)])
    assert sigma.min() / sigma.norm() > 0.99e-3
    G = make_matrix(48, 32, sigma, seed=3)
    for dtype in (torch.float32, torch.float64):
        O = orthogonalize(G.to(dtype), "polar_express", steps=8, compute_dtype=dtype)
        s = torch.linalg.svdvals(O.double())
        assert (s - 1).abs().max() < 1e-3, (dtype, s.min(), s.max())


def test_keller_coefficients_stay_in_documented_band():
    G = make_matrix(64, 64, torch.linspace(1, 0.05, 64), seed=4)
    s = torch.linalg.svdvals(orthogonalize(G, compute_dtype=torch.float64))
    # σ/‖G‖_F is below 1 here, still every output lies in Keller's band (KellerJordan/Muon ``muon.py``).
    assert s.min() > 0.6 and s.max() < 1.2


@pytest.mark.parametrize("method", NS_METHODS + ("svd",))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_zero_and_rank_deficient_inputs_are_finite(method, dtype):
    Z = torch.zeros(8, 5, dtype=dtype)
    out = orthogonalize(Z, method)
    assert out.dtype == dtype and torch.equal(out, torch.zeros_like(out))
    R = make_matrix(12, 9, [1.0, 0.5, 0.0, 0, 0, 0, 0, 0, 0], seed=5).to(dtype)
    out = orthogonalize(R, method)
    assert torch.isfinite(out).all()
    if method == "svd":
        s = torch.linalg.svdvals(out.double())
        assert torch.allclose(s[:2], torch.ones(2, dtype=torch.float64), atol=1e-2)
        assert s[2:].abs().max() < 1e-2


def test_svd_reference_is_exact_polar_factor():
    G = make_matrix(10, 6, torch.linspace(3, 0.1, 6), seed=6)
    O = polar_svd(G)
    assert torch.allclose(O.T @ O, torch.eye(6, dtype=torch.float64), atol=1e-12)
    # polar: G = O H with H symmetric positive definite
    H = O.T @ G
    assert torch.allclose(H, H.T, atol=1e-12)
    assert torch.linalg.eigvalsh(H).min() > 0


def test_returns_input_dtype_and_never_modifies_input():
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        G = torch.randn(9, 4, dtype=dtype)
        before = G.clone()
        out = orthogonalize(G)
        assert out.dtype == dtype and out.shape == G.shape
        assert torch.equal(G, before)
    G = torch.randn(9, 4, dtype=torch.bfloat16)
    assert orthogonalize(G, out_dtype=torch.float32).dtype == torch.float32


def test_custom_per_step_table_repeats_last_triple():
    G = make_matrix(6, 6, torch.linspace(1, 0.2, 6), seed=7)
    table = [(3.0, -3.2, 1.2), (1.875, -1.25, 0.375)]
    got = newton_schulz(G, table, 6, compute_dtype=torch.float64)
    want = _expected_ns(G, [table[0]] + [table[1]] * 5, 6)
    assert torch.allclose(got, want, atol=1e-10)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"method": "qr"}, "unknown orthogonalization method 'qr'"),
        ({"coefficients": "nope"}, "unknown coefficient table 'nope'"),
        ({"coefficients": [(1, 2)]}, r"coefficients\[0\]=\(1, 2\)"),
        ({"steps": -1}, "steps must be >= 0, got -1"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        orthogonalize(torch.randn(4, 4), **kwargs)


def test_vectors_are_rejected_with_their_shape():
    with pytest.raises(ValueError, match=r"shape \(7,\)"):
        orthogonalize(torch.randn(7))


def test_polar_express_generator_reproduces_the_papers_table():
    table = C.polar_express_table(1e-3, 8)
    assert np.abs(np.array(table) - np.array(C.POLAR_EXPRESS_RAW)).max() < 1e-8
    assert np.abs(np.array(C.polar_express_table(1e-2, 4)) - np.array(C.POLAR_EXPRESS_4_RAW)).max() < 1e-12


def test_four_step_table_beats_keller_five_steps_on_its_interval():
    x = np.geomspace(1e-2, 1.0, 5001)
    pe4 = C.scalar_map(C.POLAR_EXPRESS_4, x / C.POLAR_EXPRESS_SAFETY)
    keller = C.scalar_map(C.schedule(C.JORDAN, 5), x)
    assert np.abs(pe4 - 1).max() < 0.025 < np.abs(keller - 1).max()


def test_compiled_gram_iteration_matches_eager():
    """The GPU-oriented torch.compile path of the restarted Gram iteration (static restart steps)."""
    G = torch.randn(2, 16, 48)
    eager = newton_schulz(G, compute_dtype=torch.float32, gram=True, gram_restarts=(2,))
    compiled = newton_schulz(G, compute_dtype=torch.float32, gram=True, gram_restarts=(2,), compile=True)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
