"""muon, moonlight, adamuon, normuon, adago, scion, conda against pytorch_optimizer 4.1.0.

Every Newton–Schulz call of pytorch_optimizer (bf16) is replaced by the shared exact polar factor;
ours runs ``orthogonalizer="svd"`` in float64. Conda's SVD projector computes in float32 for any
other dtype; it is run in float64 here (its ``torch.float`` mapped to float64).
"""

from __future__ import annotations

import math

import pytest
import torch

import muonlab

from ._upstream import (
    EXACT,
    Problem,
    float64_torch,
    polar64,
    rel_diff,
    run,
    run_updates,
)

po = pytest.importorskip("pytorch_optimizer")

ROUNDING = 1e-12
P = Problem()
NS_USERS = ("base", "normuon", "adamuon", "adago")


@pytest.fixture(autouse=True)
def shared_polar(monkeypatch):
    import importlib

    exact = lambda G, *a, **k: polar64(G)  # noqa: E731
    for name in NS_USERS:
        mod = importlib.import_module(f"pytorch_optimizer.optimizer.muon.{name}")
        monkeypatch.setattr(mod, "zero_power_via_newton_schulz_5", exact)
    scion = importlib.import_module("pytorch_optimizer.optimizer.scion")
    monkeypatch.setattr(scion, "zero_power_via_newton_schulz_5", exact)


def _muon_group(ps, **kw):
    return [dict(params=ps, use_muon=True, **kw)]


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjusted", [False, True])
def test_muon(nesterov, adjusted):
    kw = dict(lr=0.02, momentum=0.9, weight_decay=0.1, nesterov=nesterov)
    theirs = run(lambda ps: po.Muon(_muon_group(ps), use_adjusted_lr=adjusted, **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(
        ps, "muon", adjust_lr_fn="match_rms_adamw" if adjusted else None, **EXACT, **kw), P)
    assert rel_diff(ours, theirs, P) <= ROUNDING


def test_moonlight():
    kw = dict(lr=0.01, momentum=0.95, weight_decay=0.1, nesterov=True)
    theirs = run(lambda ps: po.Muon(_muon_group(ps), use_adjusted_lr=True, **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "moonlight", **EXACT, **kw), P)
    assert rel_diff(ours, theirs, P) <= ROUNDING


@pytest.mark.parametrize("eps, tol", [(0.0, ROUNDING), (1e-10, 1e-7)], ids=["eps0", "eps_default"])
def test_adamuon(eps, tol):
    """pytorch_optimizer's AdaMuon is our ``sign_before_ns=False, nesterov=False`` reading. Its
    bias-corrected second moment differs from ours by a uniform factor that the RMS rescale cancels
    exactly at ε = 0; at ε = 1e-10 the ε terms leave ≈ 3e-8."""
    theirs = run(lambda ps: po.AdaMuon(_muon_group(ps), lr=0.02, betas=(0.9, 0.95), weight_decay=0.05,
                                       eps=eps), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(
        ps, "adamuon", lr=0.02, momentum=0.9, beta2=0.95, nesterov=False, sign_before_ns=False,
        norm_eps=eps, weight_decay=0.05, update_rms=0.2, **EXACT), P)
    assert rel_diff(ours, theirs, P) <= tol


@pytest.mark.parametrize("nesterov", [True, False])
def test_normuon_official(nesterov):
    kw = dict(lr=0.02, momentum=0.9, beta2=0.9, weight_decay=0.05, nesterov=nesterov)
    theirs = run(lambda ps: po.NorMuon(_muon_group(ps), eps=1e-10, **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "normuon", norm_eps=1e-10, **EXACT, **kw), P)
    assert rel_diff(ours, theirs, P) <= ROUNDING


@pytest.mark.parametrize("eps, tol", [(0.0, ROUNDING), (1e-10, 1e-8)], ids=["eps0", "eps_default"])
def test_normuon_paper_form(eps, tol):
    """Our paper form divides by √(v+ε), pytorch_optimizer's non-default scale by √v + ε."""
    kw = dict(lr=0.02, momentum=0.9, beta2=0.9, nesterov=False)
    theirs = run(lambda ps: po.NorMuon(_muon_group(ps), eps=eps, update_scale="match_rms", **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "normuon", scale_mode="paper", norm_eps=eps,
                                                  **EXACT, **kw), P)
    assert rel_diff(ours, theirs, P) <= tol


def test_adago_direction_matches_and_step_sizes_follow_the_two_readings():
    """Same orthogonal direction; the step sizes are the two readings of the paper:
    theirs max(ε, η·min(‖G‖,γ)/(v₀ + Σ min(‖G‖²,γ²))), ours η·max(ε', min(‖G‖,γ)/√Σ min(‖G‖,γ)²).
    Gradients without feedback (the same for both trajectories) isolate the step size."""
    Q = Problem(feedback=False)
    lr, gamma, eps, v0, floor = 0.05, 2.0, 5e-4, 1e-6, 1e-4
    theirs = run_updates(lambda ps: po.AdaGO(_muon_group(ps), lr=lr, momentum=0.9, gamma=gamma, eps=eps,
                                             v=v0), Q)
    # pytorch_optimizer applies Keller's √max(1, m/n); ours defaults to no shape factor.
    ours = run_updates(lambda ps: muonlab.HybridOptimizer(ps, "adago", lr=lr, momentum=0.9, gamma=gamma,
                                                          step_floor=floor, adjust_lr_fn="original", **EXACT), Q)
    params = Q.params()
    v_theirs = [v0] * len(params)
    v_ours = [0.0] * len(params)
    worst, step_ratio = 0.0, []
    for t, (dt, do) in enumerate(zip(theirs, ours)):
        for i, g in enumerate(Q.grads(params, t)):
            gn = g.norm().item()
            v_theirs[i] += min(gn**2, gamma**2)
            v_ours[i] += min(gn, gamma) ** 2
            s_theirs = max(eps, lr * min(gn, gamma) / v_theirs[i])
            s_ours = lr * max(floor, min(gn, gamma) / math.sqrt(v_ours[i]))
            worst = max(worst, ((dt[i] / s_theirs - do[i] / s_ours).norm() / (do[i] / s_ours).norm()).item())
            step_ratio.append(s_theirs / s_ours)
    assert worst <= ROUNDING
    assert max(step_ratio) / min(step_ratio) > 2  # the readings really differ


SCION_CASES = {
    # id: (their norm_type, norm_kwargs, constraint, weight_decay) -> our keyword arguments
    "spectral": ((2, {}, True, 0.0), dict(norm="spectral")),
    "spectral_max": ((2, dict(max_scale=True), True, 0.0), dict(norm="spectral", spectral_max=True)),
    "spectral_unnormalized": ((2, dict(normalize=False), True, 0.0), dict(norm="spectral", normalized=False)),
    "spectral_unconstrained": ((2, {}, False, 0.1), dict(norm="spectral", constrained=False, weight_decay=0.1)),
    "sign": ((4, {}, True, 0.0), dict(norm="sign")),
    "col_norm": ((6, {}, True, 0.0), dict(norm="col_norm", normalized=False)),
    "col_norm_normalized": ((6, dict(normalized=True), True, 0.0), dict(norm="col_norm", normalized=True)),
    "row_norm": ((7, {}, True, 0.0), dict(norm="row_norm", normalized=True)),
    "row_norm_transposed": ((7, dict(normalized=False, transpose=True), True, 0.0),
                            dict(norm="row_norm", normalized=False, transpose=True)),
}


@pytest.mark.parametrize("case", sorted(SCION_CASES))
def test_scion(case):
    (norm_type, norm_kwargs, constraint, wd), ours_kw = SCION_CASES[case]
    kw = dict(lr=0.01, momentum=0.2, scale=3.0)
    theirs = run(lambda ps: po.SCION(ps, constraint=constraint, norm_type=norm_type, norm_kwargs=norm_kwargs,
                                     weight_decay=wd, **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "scion", **EXACT, **kw, **ours_kw), P)
    assert rel_diff(ours, theirs, P) <= ROUNDING


@pytest.fixture
def conda_svd64(monkeypatch):
    """Conda's projector takes its SVD in float32 for any other dtype; here it runs in float64."""
    from pytorch_optimizer.optimizer.utils import galore

    t64 = float64_torch()
    t64.float = torch.float64
    monkeypatch.setattr(galore, "torch", t64)


@pytest.mark.parametrize("gap", [1, 2000])
def test_conda(conda_svd64, gap):
    kw = dict(lr=3e-3, betas=(0.9, 0.99), update_proj_gap=gap, scale=0.5, eps=1e-8)
    theirs = run(lambda ps: po.Conda(ps, **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "conda", **kw), P)
    assert rel_diff(ours, theirs, P) <= ROUNDING


def test_conda_as_shipped_computes_its_basis_in_float32():
    kw = dict(lr=3e-3, betas=(0.9, 0.99), update_proj_gap=2000)
    theirs = run(lambda ps: po.Conda(ps, **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "conda", **kw), P)
    assert rel_diff(ours, theirs, P) <= 1e-4


def test_conda_weight_decay_after_the_update(conda_svd64):
    """Conda (and pytorch_optimizer) decays the *updated* W; muonlab's one parameter write decays
    first: a difference of order ηλ relative to the distance moved, never more."""
    lr, wd = 3e-3, 0.1
    kw = dict(lr=lr, betas=(0.9, 0.99), update_proj_gap=2000, weight_decay=wd)
    theirs = run(lambda ps: po.Conda(ps, **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "conda", **kw), P)
    assert 1e-2 * lr * wd < rel_diff(ours, theirs, P) <= 2 * lr * wd


def test_conda_refresh_schedule_differs_by_one_step(conda_svd64):
    """pytorch_optimizer refreshes the basis at t = 1 and t ≡ 0 (mod T); Conda's own projector (and
    muonlab) at t ≡ 1 (mod T). Equal for T = 1 and T ≥ the run (above); different for T = 5."""
    kw = dict(lr=3e-3, betas=(0.9, 0.99), update_proj_gap=5)
    theirs = run(lambda ps: po.Conda(ps, **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "conda", **kw), P)
    assert rel_diff(ours, theirs, P) > 1e-3
