"""Claims 15–16 (associative memory, arXiv 2603.26554): the model's pure functions and smoke runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from muonlab.claims import VERDICTS, get_claim
from muonlab.claims import memory as mem

F64 = torch.float64


# ---- polar map --------------------------------------------------------------------------------------

def test_polar_of_a_diagonal_gradient_is_its_sign():
    g = torch.diag(torch.tensor([3.0, -2.0, 0.5], dtype=F64))
    assert torch.allclose(mem.polar(g), torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=F64)), atol=1e-12)


def test_polar_maps_the_null_space_to_zero():
    g = torch.diag(torch.tensor([3.0, 0.0, 0.0], dtype=F64))
    assert torch.allclose(mem.polar(g), torch.diag(torch.tensor([1.0, 0.0, 0.0], dtype=F64)), atol=1e-12)
    assert torch.equal(mem.polar(torch.zeros(3, 3, dtype=F64)), torch.zeros(3, 3, dtype=F64))
    # a rank-1 gradient: its polar factor is a b^T / (|a| |b|), i.e. G rescaled
    a, b = torch.tensor([1.0, 2.0, 2.0], dtype=F64), torch.tensor([0.0, 3.0, 4.0], dtype=F64)
    assert torch.allclose(mem.polar(torch.outer(a, b)), torch.outer(a, b) / 15.0, atol=1e-12)


def test_polar_of_a_rotated_spectrum_is_the_orthogonal_part():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=F64))
    r, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=F64))
    s = torch.tensor([5.0, 1.0, 0.1, 0.01, 0.001], dtype=F64)
    pg = mem.polar(q @ torch.diag(s) @ r.T)
    assert torch.allclose(pg, q @ r.T, atol=1e-9)
    assert torch.allclose(pg.T @ pg, torch.eye(5, dtype=F64), atol=1e-9)


def test_spectral_power_interpolates_between_sgd_and_muon():
    g = torch.diag(torch.tensor([4.0, 1.0, 0.0], dtype=F64))
    assert torch.allclose(mem.spectral_power(g, 1.0), g, atol=1e-12)
    assert torch.allclose(mem.spectral_power(g, 0.5), torch.diag(torch.tensor([2.0, 1.0, 0.0], dtype=F64)), atol=1e-12)


def test_spectral_maps_share_one_svd_and_agree_with_spectral_power():
    g = torch.randn(6, 6, generator=torch.Generator().manual_seed(3), dtype=F64)
    out = mem.spectral_maps(g, mem.BATCH_ARMS)
    assert out["SGD"] is g
    for name, s in mem.BATCH_ARMS.items():
        if s is not None:
            assert torch.allclose(out[name], mem.spectral_power(g, s), atol=1e-12)
    assert torch.allclose(out["control: identity via the Muon path"], g, atol=1e-12)
    zero = mem.spectral_maps(torch.zeros(2, 2, dtype=F64), mem.BATCH_ARMS)
    assert all(torch.equal(v, torch.zeros(2, 2, dtype=F64)) for v in zero.values())


# ---- model pieces -----------------------------------------------------------------------------------

def test_power_law_and_embedding_scale():
    p = mem.power_law(4, 1.0)
    assert torch.allclose(p, torch.tensor([12.0, 6.0, 4.0, 3.0], dtype=F64) / 25.0)
    e, u = mem.embeddings(256, 64, 32, seed=1)
    assert e.shape == (256, 64) and u.shape == (256, 32)
    assert abs(float((e**2).sum(0).mean()) - 1.0) < 0.05  # ‖e_i‖² ≈ 1 for N(0, I/d)
    assert torch.equal(mem.embeddings(8, 4, 4, seed=3)[0], mem.embeddings(8, 4, 4, seed=3)[0])


def test_batch_frequencies_are_counts_over_b_and_nested_batches_nest():
    p = mem.power_law(50, 1.5)
    c = mem.batch_frequencies(p, 100, np.random.default_rng(0))
    assert abs(float(c.sum()) - 1.0) < 1e-12 and np.allclose((c * 100).numpy(), np.round((c * 100).numpy()))
    nested = mem.nested_frequencies(p, [1, 4, 16, 64], np.random.default_rng(0))
    counts = [(c * b).round() for c, b in zip(nested, [1, 4, 16, 64])]
    assert all(bool((b >= a).all()) for a, b in zip(counts, counts[1:]))
    with pytest.raises(ValueError):
        mem.nested_frequencies(p, [4, 2], np.random.default_rng(0))


def _loss(w, e, u, c, f):
    """Σ_i c_i · cross-entropy(Uᵀ W e_i, f(i)), by autograd."""
    z = (u.T @ w @ e).T  # N × M
    return (c * torch.nn.functional.cross_entropy(z, f, reduction="none")).sum()


def test_gradient_matches_autograd_and_the_closed_form_at_zero():
    e, u = mem.embeddings(6, 20, 20, seed=2)
    p = mem.power_law(20, 1.5)
    c = mem.batch_frequencies(p, 40, np.random.default_rng(1))
    f = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    for w0 in (torch.zeros(6, 6, dtype=F64), 0.7 * torch.randn(6, 6, generator=torch.Generator().manual_seed(1),
                                                                dtype=F64)):
        w = w0.clone().requires_grad_(True)
        _loss(w, e, u, c, f).backward()
        assert torch.allclose(mem.gradient(w0, e, u, c, f, chunk=3), w.grad, atol=1e-12)
    assert torch.allclose(mem.gradient_at_zero(e, u, c, f), mem.gradient(torch.zeros(6, 6, dtype=F64), e, u, c, f),
                          atol=1e-14)


def test_recovery_of_a_hand_built_memory():
    eye = torch.eye(3, dtype=F64)  # e_i = u_i = i-th basis vector
    assert mem.recovered(eye, eye, eye).tolist() == [True, True, True]
    perm = torch.tensor([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=F64)  # W e_i = e_{i+1}
    assert mem.recovered(perm, eye, eye).tolist() == [False, False, False]
    assert mem.recovered(perm, eye, eye, f=torch.tensor([1, 2, 0])).tolist() == [True, True, True]
    # ties are not recoveries: W = 0, and a W scoring keys 1 and 2 equally for key 0
    assert mem.recovered(torch.zeros(3, 3, dtype=F64), eye, eye).tolist() == [False, False, False]
    tie = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=F64)
    assert mem.recovered(tie, eye, eye, chunk=2).tolist() == [False, True, True]


def test_error_and_capacities_on_a_tiny_case():
    rec = torch.tensor([True, True, False, True])
    p = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=F64)
    assert math.isclose(mem.weighted_error(rec, p), 0.2)
    assert mem.capacity(rec) == 3 and mem.prefix_capacity(rec) == 2
    assert mem.prefix_capacity(torch.ones(5, dtype=torch.bool)) == 5


@pytest.mark.parametrize("update", [mem.identity_map, mem.polar])
def test_one_step_capacity_with_orthonormal_embeddings_is_the_number_of_sampled_keys(update):
    # e_i = u_i = basis vectors (N = M = d): W₁ ∝ Σ_i c_i (u_i − ū) e_iᵀ, so key i's target scores
    # c_i (1 − 1/N) against −c_i/N: recovered exactly when it is in the batch (for SGD and Muon).
    n = 12
    eye = torch.eye(n, dtype=F64)
    p = mem.power_law(n, 1.5)
    c = mem.batch_frequencies(p, 10, np.random.default_rng(4))
    rec = mem.recovered(mem.one_step(eye, eye, c, update), eye, eye)
    assert torch.equal(rec, c > 0)
    assert mem.capacity(rec) == int((c > 0).sum()) < n


@pytest.mark.parametrize("update", [mem.identity_map, mem.polar])
def test_one_step_recovery_does_not_depend_on_eta(update):
    e, u = mem.embeddings(16, 128, 128, seed=5)
    p = mem.power_law(128, 1.5)
    c = mem.batch_frequencies(p, 4096, np.random.default_rng(5))
    recs = [mem.recovered(mem.one_step(e, u, c, update, eta=eta), e, u) for eta in (2.0**-10, 1.0, 2.0**10)]
    assert all(torch.equal(recs[0], r) for r in recs[1:])
    assert 0 < mem.capacity(recs[0]) < 128


def test_muon_stores_more_than_sgd_on_one_instance():
    e, u = mem.embeddings(32, 512, 512, seed=0)
    p = mem.power_law(512, 1.5)
    c = mem.batch_frequencies(p, 2**20, np.random.default_rng(0))
    cap = {m: mem.capacity(mem.recovered(mem.one_step(e, u, c, fn), e, u)) for m, fn in mem.MAPS.items()}
    assert cap["Muon"] > 2 * cap["SGD"] > 0


# ---- critical batch, tuning, multi-step ------------------------------------------------------------

def test_normalized_gap():
    assert np.allclose(mem.normalized_gap([1.0, 0.6, 0.2], 0.2), [1.0, 0.5, 0.0])
    with pytest.raises(ValueError):
        mem.normalized_gap([0.5], 1.0)


def test_critical_batch_interpolates_and_flags_censoring():
    b = [1, 2, 4, 8]
    val, cens = mem.critical_batch(b, [1.0, 0.5, 0.05, 0.02], 0.1)
    assert cens == "" and math.isclose(val, 2 ** (1 + 0.4 / 0.45))
    assert mem.critical_batch(b, [0.05, 0.04, 0.03, 0.02], 0.1) == (1.0, "low")
    assert mem.critical_batch(b, [1.0, 0.5, 0.3, 0.2], 0.1) == (8.0, "high")
    # an excursion above the tolerance after a dip resets the search
    val, cens = mem.critical_batch(b, [1.0, 0.05, 0.3, 0.1], 0.1)
    assert cens == "" and math.isclose(val, 2 ** (2 + 0.2 / 0.2))
    assert mem.critical_batch_abs(b, [0.9, 0.5, 0.25, 0.2], 0.2, 0.05) == (4.0, "")


def test_tune_step_size_extends_past_an_edge_optimum():
    obj = lambda eta: (math.log(eta) - math.log(300.0)) ** 2  # noqa: E731
    best, grid, vals, located, ext = mem.tune_step_size(obj, 1.0, ratio=4.0, points=3, max_extend=6)
    assert located and ext >= 3 and best == 256.0 and grid == sorted(grid) and len(vals) == len(grid)
    best, grid, _, located, ext = mem.tune_step_size(obj, 1.0, ratio=4.0, points=3, max_extend=1)
    assert not located and ext == 1 and best == grid[-1]


def test_log_steps_and_multi_step_first_step_is_one_step():
    assert mem.log_steps(8) == [1, 2, 4, 8] and mem.log_steps(6) == [1, 2, 4, 6]
    e, u = mem.embeddings(8, 64, 64, seed=1)
    p = mem.power_law(64, 1.5)
    errs = mem.multi_step(e, u, p, mem.polar, 3.0, 256, 4, np.random.default_rng(9))
    c = mem.batch_frequencies(p, 256, np.random.default_rng(9))
    one = mem.weighted_error(mem.recovered(mem.one_step(e, u, c, mem.polar), e, u), p)
    assert len(errs) == 3 and math.isclose(errs[0], one)
    assert mem.multi_step(e, u, p, mem.identity_map, float("inf"), 16, 2, np.random.default_rng(0)) == [1.0, 1.0]


# ---- smoke runs ---------------------------------------------------------------------------------

def test_capacity_claim_smoke(tmp_path):
    r = get_claim("assoc_memory_capacity").run(
        tmp_path, "small", fig_dir=tmp_path, log=lambda _: None, seeds=8, dims=[8, 16], log2_batch=12,
        ms_dim=8, ms_batch=32, ms_steps=4, tune_seeds=1)
    assert r.verdict in VERDICTS and r.tests and any(t["primary"] for t in r.tests)
    assert (tmp_path / "assoc_memory_capacity.png").exists()


def test_critical_batch_claim_smoke(tmp_path):
    r = get_claim("assoc_memory_critical_batch").run(
        tmp_path, "small", fig_dir=tmp_path, log=lambda _: None, seeds=8, dim=16, log2_batches=[0, 9], draws=1)
    assert r.verdict in VERDICTS and r.tests and any(t["primary"] for t in r.tests)
    assert get_claim("16").name == "assoc_memory_critical_batch"


def test_full_budgets_construct():
    for name in ("assoc_memory_capacity", "assoc_memory_critical_batch"):
        c = get_claim(name)
        assert set(c.budgets["small"]) == set(c.budgets["full"]) and c.budgets["full"]["seeds"] >= 16
