"""Claims 14, 22, 23 (muonlab.claims.geometry): the frame-alignment math against hand-built
subspaces, the matrix_sensing workload's new metrics against it, and a tiny smoke run of each claim."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from muonlab.claims import VERDICTS, get_claim
from muonlab.claims.geometry import (frame_sin_theta, phase, sin_theta, unrelated_level, value_at)
from muonlab.lab.runner import RunConfig, check_config
from muonlab.lab.workloads import make_workload


def _orthonormal(p: int, k: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((p, k)))
    return q


# ---- sin Θ ---------------------------------------------------------------------------------------

def test_sin_theta_identical_subspaces_is_zero_whatever_the_basis():
    U = _orthonormal(7, 3, 0)
    R, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((3, 3)))  # another basis of span(U)
    assert sin_theta(U, U) == pytest.approx(0.0, abs=1e-7)
    assert sin_theta(U, U @ R) == pytest.approx(0.0, abs=1e-7)


def test_sin_theta_orthogonal_subspaces_is_sqrt_k():
    I = np.eye(6)
    assert sin_theta(I[:, :2], I[:, 2:4]) == pytest.approx(math.sqrt(2))
    assert sin_theta(I[:, :3], I[:, 3:]) == pytest.approx(math.sqrt(3))


def test_sin_theta_of_one_angle():
    theta = 0.3
    U = np.array([[1.0], [0.0], [0.0]])
    V = np.array([[math.cos(theta)], [math.sin(theta)], [0.0]])
    assert sin_theta(U, V) == pytest.approx(math.sin(theta))
    # two planes sharing one axis, the other axes at angle θ: ‖sinΘ‖_F = sin θ
    U2 = np.array([[1.0, 0], [0, 1], [0, 0]])
    V2 = np.array([[1.0, 0], [0, math.cos(theta)], [0, math.sin(theta)]])
    assert sin_theta(U2, V2) == pytest.approx(math.sin(theta))
    with pytest.raises(ValueError):
        sin_theta(U, U2)


def test_frame_sin_theta_shared_and_crossed_frames():
    U, V = _orthonormal(6, 6, 2), _orthonormal(5, 5, 3)
    W = (U[:, :5] * [5.0, 4, 3, 2, 1]) @ V.T
    same_top = (U[:, :5] * [9.0, 8, 1, 0.5, 0.1]) @ V.T         # same frame, same top-2 subspace
    assert frame_sin_theta(W, same_top, 2) == pytest.approx((0, 0, 0), abs=1e-7)
    crossed = (U[:, :5] * [0.1, 0.2, 9.0, 8.0, 0.3]) @ V.T       # G's top-2 = W's 3rd and 4th directions
    assert frame_sin_theta(W, crossed, 2) == pytest.approx((math.sqrt(2),) * 3)
    left_only = (U[:, [2, 3, 0, 1, 4]] * [9.0, 8, 1, 0.5, 0.1]) @ V.T  # left vectors crossed, right kept
    left, right, worst = frame_sin_theta(W, left_only, 2)
    assert left == pytest.approx(math.sqrt(2)) and right == pytest.approx(0, abs=1e-7) and worst == left


def test_unrelated_level_matches_random_subspaces():
    k, p = 2, 10
    U = np.eye(p)[:, :k]
    draws = [sin_theta(U, _orthonormal(p, k, s)) ** 2 for s in range(3000)]
    assert np.mean(draws) == pytest.approx(unrelated_level(k, p) ** 2, rel=0.03)
    assert unrelated_level(3, 3) == 0.0
    with pytest.raises(ValueError):
        unrelated_level(4, 3)


def test_phase_and_value_at():
    rows = [{"step": s, "m": float(s)} for s in (0, 25, 50, 75, 100)]
    assert phase(rows, "m", 100, 0.5, 1.0, worst=9.0) == [75.0, 100.0]
    assert phase(rows, "m", 100, 0.0, 0.5, worst=9.0) == [25.0, 50.0]
    assert phase(rows[:2], "m", 100, 0.5, 1.0, worst=9.0) == [9.0]  # stopped early: the worst value
    assert phase([{"step": 80, "m": math.nan}], "m", 100, 0.5, 1.0, worst=9.0) == [9.0]
    assert value_at(rows, "m", 60) == 50.0 and value_at(rows, "m", 100) == 100.0
    assert math.isnan(value_at([], "m", 3))


# ---- the workload's metrics ----------------------------------------------------------------------

def test_sensing_gradient_and_frame_metric_match_the_definition():
    wl = make_workload("matrix_sensing", p=5, n=4, d=7, rank=2, instance=3)
    wl.setup(torch.device("cpu"))
    model = wl.build_model(0)
    with torch.no_grad():
        model.W.weight.normal_(generator=torch.Generator().manual_seed(5))
    loss = wl.loss(model, None)
    loss.backward()
    W = model.W.weight.detach()
    assert torch.allclose(wl.gradient(W), model.W.weight.grad, atol=1e-5)
    with torch.no_grad():
        m = wl.evaluate(model)
    left, right, worst = frame_sin_theta(W.double().numpy(), wl.gradient(W).double().numpy(), 2)
    assert m["val/sin_theta_left"] == pytest.approx(left, abs=1e-5)
    assert m["val/sin_theta_right"] == pytest.approx(right, abs=1e-5)
    assert m["val/sin_theta"] == pytest.approx(worst, abs=1e-5)
    assert 0 <= m["val/frame_gap_w"] <= 1 and 0 <= m["val/frame_gap_g"] <= 1
    assert make_workload("matrix_sensing", frame_k=1).frame_k == 1
    with pytest.raises(ValueError, match="frame_k"):
        make_workload("matrix_sensing", frame_k=7)


def test_sensing_frame_metric_is_zero_when_w_and_g_share_the_top_frame():
    # Fully observed (A_k = the unit matrices E_ij) so G = W − W*; with W = c·W* the frames agree.
    wl = make_workload("matrix_sensing", p=4, n=4, d=16, rank=2, instance=0)
    wl.setup(torch.device("cpu"))
    wl.A = torch.eye(16).reshape(16, 4, 4)
    wl.y = (wl.A * wl.W_star).sum((1, 2))
    model = wl.build_model(0)
    with torch.no_grad():
        model.W.weight.copy_(0.5 * wl.W_star)
        m = wl.evaluate(model)
    assert torch.allclose(wl.gradient(model.W.weight), (0.5 * wl.W_star - wl.W_star) / 16, atol=1e-6)
    assert m["val/sin_theta"] == pytest.approx(0.0, abs=1e-3)


# ---- budgets and smoke runs ----------------------------------------------------------------------

NAMES = ("freon_kaon_spectra", "frame_alignment", "sensing_large_instance")


@pytest.mark.parametrize("name", NAMES)
def test_budgets_are_valid(name):
    claim = get_claim(name)
    assert claim.number in (14, 22, 23)
    for budget in ("small", "full"):
        cfg = claim.budgets[budget]
        assert cfg["seeds"] >= 8 and set(claim.budgets["small"]) <= set(cfg)
        if name == "freon_kaon_spectra":
            for wl, w in cfg["workloads"].items():
                for opt, hp in [("muon", {}), (cfg["control"], {})] + [
                        (v["optimizer"], v["hparams"]) for v in cfg["variants"].values()]:
                    check_config(RunConfig(wl, opt, steps=w["steps"], knobs=w["knobs"], hparams={"lr": 0.01, **hp},
                                           eval_every=w["eval_every"], device="cpu"))
        else:
            ds = cfg.get("ds", [cfg.get("d")])
            for d in ds:
                make_workload("matrix_sensing", p=cfg["p"], n=cfg["p"], d=d, rank=cfg["rank"])


SMOKE = {
    "frame_alignment": {"ds": [10], "steps": 40, "eval_every": 10, "tune_seeds": 1, "tune_instances": 1,
                        "sensitivity_k": 0},
    "sensing_large_instance": {"p": 10, "d": 6, "steps": 40, "eval_every": 10, "tune_seeds": 1},
    "freon_kaon_spectra": {"workloads": {"mlp_digits": {"knobs": {"width": 8}, "steps": 10, "eval_every": 10}},
                           "tune_seeds": 1},
}


@pytest.mark.parametrize("name", NAMES)
def test_smoke_run(tmp_path, name):
    result = get_claim(name).run(tmp_path, "small", fig_dir=tmp_path, log=lambda _: None, **SMOKE[name])
    assert result.verdict in VERDICTS
    assert result.tests and any(t["primary"] for t in result.tests)
    assert result.table and result.plots and (tmp_path / result.plots[0].split("/")[-1]).exists()
    assert result.seeds == 8
