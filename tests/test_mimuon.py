"""MiMuon: each rule's endpoints equal Muon / momentum SGD, κ, Bernoulli reproducibility, diagnostics."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

import muonlab
from conftest import make_matrix
from muonlab.optim.executor import LocalExecutor
from muonlab.optim.mimuon import bernoulli_uniform, min_singular_gap, orthogonalized_fraction

SHAPES = [(12, 12), (20, 8), (6, 14), (12, 12)]  # two same-shape matrices: batched matrix_fn calls


def _run(make_opt, steps=5, shapes=SHAPES, seed=0):
    """(parameters after each step, optimizer) for a fixed sequence of random gradients."""
    g = torch.Generator().manual_seed(123)
    params = [nn.Parameter(torch.randn(*s, generator=g)) for s in shapes]
    opt = make_opt(params)
    gg = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gg)
        opt.step()
        out.append([p.detach().clone() for p in params])
    return out, opt


def _same(a, b, exact=True):
    for sa, sb in zip(a, b):
        for x, y in zip(sa, sb):
            if exact:
                assert torch.equal(x, y)
            else:
                torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)


COMMON = dict(lr=0.05, weight_decay=0.1, momentum=0.9, nesterov=False)


def _mimuon(**hp):
    return lambda ps: muonlab.HybridOptimizer(ps, "mimuon", **{**COMMON, **hp})


def _muon(**hp):
    return lambda ps: muonlab.HybridOptimizer(ps, "muon", **{**COMMON, **hp})


def _sgd(**hp):  # decoupled weight decay, as MiMuon's W ← (1 − ηλ)W
    return lambda ps: muonlab.HybridOptimizer(ps, "sgd", weight_decay_mode="decoupled", **{**COMMON, **hp})


MUON_CASES = {
    "gap-tau0": dict(rule="gap", tau=0.0),
    "bernoulli-p1": dict(rule="bernoulli", ortho_prob=1.0),
    "periodic-1": dict(rule="periodic", period=1),
    "blend-0": dict(rule="blend", blend=0.0),
}
SGD_CASES = {
    "gap-tau-inf": dict(rule="gap", tau=math.inf),
    "bernoulli-p0": dict(rule="bernoulli", ortho_prob=0.0),
    "blend-1": dict(rule="blend", blend=1.0),
}


@pytest.mark.parametrize("form", ["ema", "accumulate"])
@pytest.mark.parametrize("case", MUON_CASES, ids=list(MUON_CASES))
def test_always_orthogonalizing_rules_equal_exact_polar_muon(case, form):
    ours, opt = _run(_mimuon(orthogonalizer="svd", momentum_form=form, **MUON_CASES[case]))
    ref, _ = _run(_muon(orthogonalizer="svd", momentum_form=form))
    _same(ours, ref, exact=False)  # the shape factor is folded in one multiplication earlier
    assert set(orthogonalized_fraction(opt).values()) == {1.0}


@pytest.mark.parametrize("form", ["ema", "accumulate"])
@pytest.mark.parametrize("case", SGD_CASES, ids=list(SGD_CASES))
def test_never_orthogonalizing_rules_equal_momentum_sgd(case, form):
    ours, opt = _run(_mimuon(momentum_form=form, **SGD_CASES[case]))
    ref, _ = _run(_sgd(momentum_form=form))
    _same(ours, ref)
    assert set(orthogonalized_fraction(opt).values()) == {0.0}


def test_accumulate_form_tau_inf_equals_torch_sgd():
    ours, _ = _run(_mimuon(rule="gap", tau=math.inf, momentum_form="accumulate", weight_decay=0.0))
    ref, _ = _run(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9))
    _same(ours, ref, exact=False)


def test_sgd_lr_scale_scales_only_the_sgd_branch():
    ours, _ = _run(_mimuon(rule="bernoulli", ortho_prob=0.0, sgd_lr_scale=4.0, weight_decay=0.0))
    ref, _ = _run(_sgd(lr=0.2, weight_decay=0.0, momentum_form="ema"))
    _same(ours, ref, exact=False)
    ours, _ = _run(_mimuon(rule="bernoulli", ortho_prob=1.0, sgd_lr_scale=4.0, orthogonalizer="svd"))
    ref, _ = _run(_muon(orthogonalizer="svd"))
    _same(ours, ref, exact=False)


def test_blend_is_the_convex_combination_of_the_two_branches():
    shapes = [(10, 6)]
    ours, _ = _run(_mimuon(rule="blend", blend=0.3, sgd_lr_scale=2.0, orthogonalizer="svd",
                           weight_decay=0.0), shapes=shapes)
    g = torch.Generator().manual_seed(123)
    W = torch.randn(10, 6, generator=g).double()
    M = torch.zeros_like(W)
    gg = torch.Generator().manual_seed(0)
    for step in range(5):
        M = 0.9 * M + 0.1 * torch.randn(10, 6, generator=gg).double()
        O = muonlab.polar_svd(M) * math.sqrt(10 / 6)
        W = W - 0.05 * (0.7 * O + 0.3 * 2.0 * M)
        torch.testing.assert_close(ours[step][0].double(), W, rtol=1e-5, atol=1e-6)


def test_periodic_orthogonalizes_steps_1_plus_k_multiples():
    _, opt = _run(_mimuon(rule="periodic", period=3), steps=7, shapes=[(8, 8)])
    st = next(iter(opt.state.values()))
    assert (st["ortho_steps"], st["matrix_steps"]) == (3, 7)  # steps 1, 4, 7


# ---- κ ------------------------------------------------------------------------------------------


def test_min_singular_gap_on_known_spectra():
    G = make_matrix(7, 5, [5.0, 4.0, 3.5, 2.0, 1.0], batch=(2,))
    f64 = dict(dtype=torch.float64)
    torch.testing.assert_close(min_singular_gap(G), torch.full((2,), 0.5, **f64))
    torch.testing.assert_close(min_singular_gap(G, "relative_to_sigma1"), torch.full((2,), 0.1, **f64))
    fro = math.sqrt(25 + 16 + 12.25 + 4 + 1)
    torch.testing.assert_close(min_singular_gap(G[0], "relative_to_fro"), torch.tensor(0.5 / fro, **f64))
    torch.testing.assert_close(min_singular_gap(G[0], top_k=2), torch.tensor(1.0, **f64))
    # Zero singular values are not part of the set: rank-deficient input, rank one, zero.
    assert min_singular_gap(make_matrix(6, 5, [3.0, 2.5, 1.0, 0, 0])).item() == pytest.approx(0.5)
    assert min_singular_gap(make_matrix(6, 5, [3.0, 0, 0, 0, 0])).item() == math.inf
    assert min_singular_gap(torch.zeros(4, 3)).item() == math.inf
    assert min_singular_gap(torch.randn(1, 5)).item() == math.inf
    with pytest.raises(ValueError, match="'sigma2'"):
        min_singular_gap(G, "sigma2")


@pytest.mark.parametrize("mode,kappa", [("absolute", 0.1 * 0.5), ("relative_to_sigma1", 0.5 / 4.0)])
def test_gap_rule_compares_kappa_of_the_momentum_with_tau(mode, kappa):
    """First step, EMA form: M = (1−μ)G, so κ(M) = 0.1·κ(G) (absolute) and κ(G)/σ₁ (relative)."""
    G = make_matrix(8, 6, [4.0, 3.0, 2.5, 2.0, 1.0, 0.5]).float()
    for tau, expect in [(0.9 * kappa, 1), (1.1 * kappa, 0)]:
        p = nn.Parameter(torch.zeros(8, 6))
        opt = muonlab.HybridOptimizer([p], "mimuon", rule="gap", tau=tau, gap_mode=mode, momentum=0.9)
        p.grad = G.clone()
        opt.step()
        st = opt.state[p]
        assert st["gap"][0] == pytest.approx(kappa, rel=1e-5)
        assert st["ortho_steps"] == expect


def test_gap_every_reuses_kappa_between_checks():
    g = torch.Generator().manual_seed(0)
    p = nn.Parameter(torch.zeros(6, 6))
    opt = muonlab.HybridOptimizer([p], "mimuon", rule="gap", tau=0.0, gap_every=3)
    seen = []
    for _ in range(7):
        p.grad = torch.randn(6, 6, generator=g)
        opt.step()
        seen.append(opt.state[p]["gap"][0])
    assert seen[0] == seen[1] == seen[2] != seen[3] == seen[4] == seen[5] != seen[6]


# ---- Bernoulli draws ----------------------------------------------------------------------------


def test_bernoulli_fraction_is_near_p_and_independent_of_batching():
    shapes = [(6, 6)] * 8
    _, batched = _run(_mimuon(ortho_prob=0.3, seed=7), steps=40, shapes=shapes)
    frac = orthogonalized_fraction(batched)
    assert set(frac) == {f"group0.param{i}" for i in range(8)}
    assert abs(sum(frac.values()) / 8 - 0.3) < 0.08
    # fp32 iteration: one matrix goes through mm, a batch through bmm, which round differently in
    # bf16; a different Bernoulli decision would change the parameters by a whole update (≈ lr).
    fp32 = {**COMMON, "ortho_prob": 0.3, "seed": 7, "compute_dtype": "float32"}
    unbatched, _ = _run(lambda ps: muonlab.HybridOptimizer(ps, "mimuon", executor=LocalExecutor(batch=False), **fp32),
                        steps=40, shapes=shapes)
    batched32, _ = _run(lambda ps: muonlab.HybridOptimizer(ps, "mimuon", **fp32), steps=40, shapes=shapes)
    for sa, sb in zip(batched32, unbatched):
        for x, y in zip(sa, sb):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    again, _ = _run(_mimuon(ortho_prob=0.3, seed=7), steps=40, shapes=shapes)
    other, _ = _run(_mimuon(ortho_prob=0.3, seed=8), steps=40, shapes=shapes)
    first, _ = _run(_mimuon(ortho_prob=0.3, seed=7), steps=40, shapes=shapes)
    _same(first, again)
    assert not torch.equal(first[-1][0], other[-1][0])


def test_bernoulli_uniform_is_a_pure_function():
    u = [bernoulli_uniform(0, t, 12345) for t in range(2000)]
    assert u == [bernoulli_uniform(0, t, 12345) for t in range(2000)]
    assert all(0 <= x < 1 for x in u) and abs(sum(u) / len(u) - 0.5) < 0.03
    assert bernoulli_uniform(0, 1, 1) != bernoulli_uniform(1, 1, 1) != bernoulli_uniform(0, 1, 2)


@pytest.mark.parametrize("hp", [{"rule": "bernoulli"}, {"rule": "gap", "gap_every": 3, "tau": 0.02,
                                                        "gap_mode": "relative_to_sigma1"}])
def test_state_dict_resume_is_bitwise_identical(hp):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))
    make = lambda m: muonlab.create_optimizer(m, "mimuon", **hp)  # noqa: E731
    opt = make(model)
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(32, 6, generator=g), torch.randn(32, 2, generator=g)) for _ in range(8)]

    def train(m, o, batches):
        for x, y in batches:
            o.zero_grad()
            (m(x) - y).pow(2).mean().backward()
            o.step()

    train(model, opt, data[:3])
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    model2 = copy.deepcopy(model)
    train(model, opt, data[3:])
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    opt2 = make(model2)
    opt2.load_state_dict(ckpt["opt"])
    train(model2, opt2, data[3:])
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    assert orthogonalized_fraction(opt) == orthogonalized_fraction(opt2)
    assert set(orthogonalized_fraction(opt)) == {"0.weight", "2.weight"}  # hidden matrices, by name


def test_batch_view_decides_per_matrix():
    p = nn.Parameter(torch.randn(5, 4, 3))
    opt = muonlab.HybridOptimizer([p], "mimuon", matrix_view="batch", ortho_prob=0.5)
    for _ in range(6):
        p.grad = torch.randn(5, 4, 3)
        opt.step()
    st = opt.state[p]
    assert st["matrix_steps"] == 30 and 0 < st["ortho_steps"] < 30


# ---- usability ----------------------------------------------------------------------------------


@pytest.mark.parametrize("hp", [{}, {"rule": "periodic"}, {"rule": "blend"},
                                {"rule": "gap", "gap_mode": "relative_to_sigma1", "tau": 1e-3}],
                         ids=["defaults", "periodic", "blend", "gap-relative"])
def test_trains_a_small_mlp(hp):
    torch.manual_seed(0)
    X = torch.randn(256, 10)
    teacher = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 1))
    with torch.no_grad():
        y = teacher(X)
    model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    opt = muonlab.create_optimizer(model, "mimuon", **hp)
    first = None
    for _ in range(100):
        loss = (model(X) - y).pow(2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    assert set(orthogonalized_fraction(opt)) == {"0.weight", "2.weight"}


@pytest.mark.parametrize("name,value", [("rule", "cautious"), ("tau", -1.0), ("ortho_prob", 1.5),
                                        ("period", 0), ("gap_mode", "relative"), ("seed", -1)])
def test_invalid_hyperparameters_raise(name, value):
    with pytest.raises(ValueError, match=name):
        muonlab.HybridOptimizer([nn.Parameter(torch.randn(4, 3))], "mimuon", **{name: value})
