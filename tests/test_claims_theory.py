"""Claims 19–21 (muonlab.claims.theory): the pure math against hand-computable cases, and a fast
smoke run of each claim with tiny budgets."""

from __future__ import annotations

import math

import pytest
import torch

from muonlab.claims import get_claim
from muonlab.claims import theory as th
from muonlab.diagnostics import polar_sensitivity
from muonlab.lab.inference import VERDICTS

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one intra-op thread is faster (and far faster on a loaded machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- helpers -------------------------------------------------------------------------------------


def test_haar_orthogonal_and_rotation_are_orthogonal():
    Q = th.haar_orthogonal(5, gen())
    assert torch.allclose(Q.T @ Q, torch.eye(5, dtype=F64), atol=1e-12)
    R = th.random_rotation(5, 0.3, gen(1))
    assert torch.allclose(R.T @ R, torch.eye(5, dtype=F64), atol=1e-12)
    assert torch.allclose(th.random_rotation(4, 0.0, gen(2)), torch.eye(4, dtype=F64))
    # the largest principal rotation angle is the requested one
    angles = torch.linalg.eigvals(R).angle().abs()
    assert float(angles.max()) == pytest.approx(0.3, abs=1e-9)


def test_spectrum_kinds():
    assert th.spectrum("flat", 3, 2.0).tolist() == [2.0, 2.0, 2.0]
    assert th.spectrum("power", 4).tolist() == pytest.approx([1.0, 0.5, 1 / 3, 0.25])
    assert th.spectrum("two_level", 4).tolist() == pytest.approx([1.0, 1.0, 0.2, 0.2])
    with pytest.raises(ValueError):
        th.spectrum("bumpy", 3)


# ---- claim 19 ------------------------------------------------------------------------------------


def test_flat_sensitivity_matches_pair_sum():
    assert th.flat_sensitivity(2, 1.0) == pytest.approx(0.5)          # 2 pairs × 1/(2)²
    assert th.flat_sensitivity(16, 2.0) == pytest.approx(16 * 15 / 16)
    G = th.with_spectrum(th.spectrum("flat", 8, 1.5), th.haar_orthogonal(8, gen()), th.haar_orthogonal(8, gen(1)))
    assert float(polar_sensitivity(G)) == pytest.approx(th.flat_sensitivity(8, 1.5), rel=1e-12)


def test_polar_noise_energy_hand_case():
    """G = I₂, N = ε·[[0, 1], [−1, 0]]: polar(I + εJ) = (I + εJ)/√(1+ε²), so
    ‖ΔQ‖² = 2[(1/√(1+ε²) − 1)² + ε²/(1+ε²)]; first order Ω₁₂ = 2ε/(1+1) = ε, ‖Ω‖² = 2ε²."""
    eps = 1e-3
    J = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=F64)
    e = float(th.polar_noise_energy(torch.eye(2, dtype=F64), J.unsqueeze(0), eps)[0])
    exact = 2 * ((1 / math.sqrt(1 + eps**2) - 1) ** 2 + eps**2 / (1 + eps**2))
    assert e == pytest.approx(exact, rel=1e-8)
    assert e == pytest.approx(2 * eps**2, rel=1e-5)
    # a symmetric perturbation does not move the polar factor of I
    S = torch.tensor([[1.0, 0.5], [0.5, -0.3]], dtype=F64)
    assert float(th.polar_noise_energy(torch.eye(2, dtype=F64), S.unsqueeze(0), 1e-3)[0]) < 1e-20


def test_first_order_noise_energy_matches_monte_carlo_and_not_a_wrong_formula():
    g = gen(3)
    s = th.spectrum("power", 5)
    G = th.with_spectrum(s, th.haar_orthogonal(5, g), th.haar_orthogonal(5, g))
    std = th.probe_std(s, 0.05)
    Z = torch.randn(4000, 5, 5, generator=g, dtype=F64)
    mc = float(th.polar_noise_energy(G, Z, std).mean())
    pred = th.first_order_noise_energy(G, std**2)
    assert mc / pred == pytest.approx(1.0, abs=0.05)
    wrong = 2 * std**2 * th.flat_sensitivity(5, float(s.mean()))
    assert abs(mc / wrong - 1.0) > 0.5


def test_noise_to_signal_first_order_and_saturation():
    g = gen(4)
    G = th.with_spectrum(th.spectrum("flat", 6), th.haar_orthogonal(6, g), th.haar_orthogonal(6, g))
    bcrit = float(th.critical_batch_size(G, 1.0))
    assert bcrit == pytest.approx(5 / 2)                     # σ²(r−1)/(2σ₀²) with σ₀ = 1
    Z = torch.randn(2000, 6, 6, generator=g, dtype=F64)
    assert th.noise_to_signal(G, Z, 1e4 * bcrit) * 1e4 == pytest.approx(1.0, abs=0.05)
    assert 1.5 < th.noise_to_signal(G, Z, 1e-4 * bcrit) <= 2.0 + 1e-9   # Haar-like limit: 2
    assert th.variance_to_signal(G, Z, 1e4 * bcrit) * 1e4 == pytest.approx(1.0, abs=0.05)


def test_crossing_batch():
    assert th.crossing_batch(lambda B: 10.0 / B, 1e-2, 1e4) == pytest.approx(10.0, rel=1e-6)
    assert th.crossing_batch(lambda B: 3.0 / B, 1e-2, 1e4, level=0.5) == pytest.approx(6.0, rel=1e-6)
    assert math.isnan(th.crossing_batch(lambda B: 10.0 / B, 100.0, 1e4))     # not bracketed


# ---- claim 20 ------------------------------------------------------------------------------------


def test_burn_in_and_factors():
    assert th.burn_in_steps(0.5, 1e-12) == 20           # ⌈log 1e-12 / (2 log 0.5)⌉ = ⌈19.93⌉
    assert th.burn_in_steps(0.0) == 1
    with pytest.raises(ValueError):
        th.burn_in_steps(1.0)
    assert th.naive_momentum_factor(0.95) == pytest.approx(0.0025)


def test_simulate_ema_variance_is_ar1_not_naive():
    m = th.simulate_ema(0.9, 40000, th.burn_in_steps(0.9), gen(5))
    v = float((m**2).mean())
    assert v / ((1 - 0.9) / (1 + 0.9)) == pytest.approx(1.0, abs=0.04)
    assert v / th.naive_momentum_factor(0.9) > 4.0


def test_ema_polar_energy_scales_by_the_factor():
    g = gen(6)
    s = th.spectrum("power", 4)
    G = th.with_spectrum(s, th.haar_orthogonal(4, g), th.haar_orthogonal(4, g))
    std = th.probe_std(s, 0.05)
    T = th.burn_in_steps(0.9)
    ratio = th.ema_polar_energy(G, 0.9, std, 3000, T, g) / th.ema_polar_energy(G, 0.0, std, 3000, T, g)
    assert ratio / ((1 - 0.9) / (1 + 0.9)) == pytest.approx(1.0, abs=0.08)


# ---- claim 21 ------------------------------------------------------------------------------------


def test_entropy_gradient_hand_case_and_identities():
    w = torch.tensor([2.0, 1.0], dtype=F64)
    p = torch.tensor([2 / 3, 1 / 3], dtype=F64)
    H = -(p * p.log()).sum()
    c = th.entropy_gradient(w)
    assert c.tolist() == pytest.approx((-(p.log() + H) / 3).tolist())
    assert float(c[0]) < 0 < float(c[1])                  # growing the small σ raises H
    assert float(w @ c) == pytest.approx(0.0, abs=1e-15)  # scale invariance
    assert float(c.sum()) > 0
    assert th.entropy_gradient(torch.full((4,), 0.7, dtype=F64)).abs().max() < 1e-15


def test_first_order_gain_matches_finite_differences():
    W, UG, VG, g = th.entropy_instance("misaligned", 6, gen(7), angle=0.5)
    Delta = UG @ torch.diag(torch.rand(6, generator=gen(8), dtype=F64)) @ VG.T
    fo = th.first_order_entropy_gain(W, Delta)
    fd = th.finite_difference_gain(W, Delta, 1e-6)
    assert fo == pytest.approx(fd, rel=1e-6)


def test_gain_coefficients_aligned_and_linear():
    W, UG, VG, g = th.entropy_instance("blind", 5, gen(9))
    e = th.gain_coefficients(W, UG, VG)
    w = torch.linalg.svdvals(W)
    c = th.entropy_gradient(w)
    assert sorted(e.tolist()) == pytest.approx(sorted(c.tolist()), abs=1e-12)  # a permutation of ∂H/∂σ
    s = torch.rand(5, generator=gen(10), dtype=F64)
    assert th.first_order_entropy_gain(W, UG @ torch.diag(s) @ VG.T) == pytest.approx(float(s @ e), rel=1e-10)


def test_regression_regime_gd_beats_polar_exactly():
    W, UG, VG, g = th.entropy_instance("regression", 6, gen(11))
    w = torch.linalg.svdvals(W)
    e = th.gain_coefficients(W, UG, VG)
    tau = 1.25 * float(w.max())
    gd = float((g / g.max()) @ e)
    expected = -float(w.min()) * float(e.sum()) / (tau - float(w.min()))
    assert float(e.sum()) - gd == pytest.approx(expected, rel=1e-9)
    assert expected < 0


def test_co_sorted_polar_beats_nondecreasing_profiles():
    for seed in range(5):
        W, UG, VG, g = th.entropy_instance("co_sorted", 8, gen(20 + seed))
        res = th.compare_profiles(W, UG, VG, g, 0, gen(0))
        for p in ("0.25", "0.5", "1", "2"):
            assert res[f"alt:(g/gmax)^{p}"] >= -1e-12


def test_alternative_profiles_are_bounded_and_blind():
    g = torch.tensor([3.0, 1.0, 2.0, 0.5], dtype=F64)
    names, S = th.alternative_profiles(g, 3, gen(12))
    assert len(names) == S.shape[0] == 8 + 3
    assert float(S.min()) >= 0.0 and float(S.max()) <= 1.0
    assert S[names.index("(g/gmax)^1")].tolist() == pytest.approx([1.0, 1 / 3, 2 / 3, 1 / 6])
    assert S[names.index("top half of g")].tolist() == [1.0, 0.0, 1.0, 0.0]


def test_compare_profiles_bottom_half_beats_polar_on_a_known_w():
    # aligned, w = (2, 1): c = ∂H/∂σ has c₁ < 0 < c₂. With g = (1, 0.999) the GD profile is ≈ 1 and
    # loses a little to polar, while "bottom half of g" = (0, 1) puts the step on the small w only
    # and beats polar (it happens to see w through g's order): the metric can fail.
    U = torch.eye(2, dtype=F64)
    W = torch.diag(torch.tensor([2.0, 1.0], dtype=F64))
    res = th.compare_profiles(W, U, U, torch.tensor([1.0, 0.999], dtype=F64), 0, gen(0))
    assert 0.0 < res["alt:(g/gmax)^1"] < 1e-2
    assert res["alt:bottom half of g"] < 0
    assert res["loses"] == 1.0 and res["d_rel"] < 0
    c = th.entropy_gradient(torch.tensor([2.0, 1.0], dtype=F64))
    assert res["polar_frac"] == pytest.approx(float(c.sum() / c[1]))   # oracle = c₂


# ---- smoke runs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,over", [
    ("critical_batch_formula", dict(dim=4, r_flat=[2, 4], draws=128, draws_sweep=32, plot=False)),
    ("momentum_noise_factor", dict(betas=[0.9, 0.95], chains=500, dim=4, muon_chains=16, plot=False)),
    ("entropy_one_step", dict(dim=6, instances=2, n_random=2, angles=[0.3], plot=False)),
])
def test_claim_smoke(tmp_path, name, over):
    claim = get_claim(name)
    assert claim.number in (19, 20, 21)
    res = claim.run(tmp_path, "small", fig_dir=tmp_path, log=lambda _: None, seeds=8, **over)
    assert res.verdict in VERDICTS
    assert res.tests and sum(t["primary"] for t in res.tests) == 1
    assert all(t["verdict"] for t in res.tests)
    assert set(claim.budgets["full"]) == set(claim.budgets["small"])
    assert claim.budgets["full"]["seeds"] >= claim.budgets["small"]["seeds"] >= 8
