"""A pluggable orthogonalizer: any callable ``X -> polar(X)`` is accepted where a method name is
(``orthogonalize``, every rule with an ``orthogonalizer`` hyperparameter, ``create_optimizer``).
The torch.optim contract with a callable runs for every such method in tests/test_contract.py
(config ``callable_orthogonalizer``); here: the calling convention, equality with the built-in
method it reimplements, and the errors."""

from __future__ import annotations

import io

import pytest
import torch
from nets import RoleNet, role_batch, user_orthogonalizer

import muonlab
from muonlab.matfn import orthogonalize, polar_svd
from muonlab.registry import all_specs

F64 = torch.float64


def _full_rank(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_callable_gets_one_matrix_at_a_time_unless_batched():
    seen = []

    def per_matrix(X):
        seen.append(tuple(X.shape))
        return polar_svd(X)

    G = _full_rank(3, 2, 6, 4)
    out = orthogonalize(G, per_matrix)
    assert seen == [(6, 4)] * 6
    torch.testing.assert_close(out, polar_svd(G), rtol=0, atol=1e-12)

    seen.clear()

    def stacked(X):
        seen.append(tuple(X.shape))
        return polar_svd(X)

    stacked.batched = True
    torch.testing.assert_close(orthogonalize(G, stacked), polar_svd(G), rtol=0, atol=1e-12)
    assert seen == [(3, 2, 6, 4)]


def test_callable_receives_the_input_dtype_and_output_is_cast_back():
    dtypes = []

    def f(X):
        dtypes.append(X.dtype)
        return polar_svd(X.double())  # returns float64; must come back as the input's dtype

    G = torch.randn(5, 3)
    out = orthogonalize(G, f, compute_dtype=torch.bfloat16)  # NS options are ignored for a callable
    assert dtypes == [torch.float32] and out.dtype == torch.float32


def test_optimizer_with_callable_equals_builtin_svd_on_full_rank_gradients():
    """Muon with the user's float64 SVD polar factor equals Muon with orthogonalizer='svd' (both
    exact) when every momentum is full rank."""
    torch.manual_seed(0)
    shapes = [(12, 8), (8, 20)]
    ps_a = [torch.nn.Parameter(_full_rank(*s, seed=i)) for i, s in enumerate(shapes)]
    ps_b = [torch.nn.Parameter(p.detach().clone()) for p in ps_a]
    kw = dict(lr=0.05, weight_decay=0.01, compute_dtype=None)
    oa = muonlab.Muon(ps_a, orthogonalizer=user_orthogonalizer, **kw)
    ob = muonlab.Muon(ps_b, orthogonalizer="svd", **kw)
    for t in range(5):
        for i, (a, b) in enumerate(zip(ps_a, ps_b)):
            g = _full_rank(*a.shape, seed=100 * t + i)
            a.grad, b.grad = g.clone(), g.clone()
        oa.step()
        ob.step()
    for a, b in zip(ps_a, ps_b):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_every_orthogonalizing_method_accepts_a_callable():
    names = [s.name for s in all_specs() if "orthogonalizer" in s.rule.hypers]
    assert {"muon", "normuon", "polargrad"} <= set(names)
    for name in names:
        model = RoleNet()
        opt = muonlab.create_optimizer(model, name, orthogonalizer=user_orthogonalizer)
        x, y = role_batch(0)
        (model(x).float() - y).pow(2).mean().backward()
        opt.step()
        assert all(torch.isfinite(p).all() for p in model.parameters()), name


def test_checkpoint_saves_the_callable_by_name_and_loads_with_weights_only():
    """A callable is saved as its name, so ``torch.load(weights_only=True)`` accepts the checkpoint;
    loading takes the callable from the optimizer it loads into, and refuses a different one."""
    model = RoleNet()
    opt = muonlab.create_optimizer(model, "muon", orthogonalizer=user_orthogonalizer)
    x, y = role_batch(0)
    (model(x).float() - y).pow(2).mean().backward()
    opt.step()
    sd = opt.state_dict()
    tags = {g["orthogonalizer"] for g in sd["param_groups"] if "orthogonalizer" in g}
    assert tags == {"callable:nets.user_orthogonalizer"}
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    fresh = muonlab.create_optimizer(model, "muon", orthogonalizer=user_orthogonalizer)
    fresh.load_state_dict(loaded)
    assert any(g.get("orthogonalizer") is user_orthogonalizer for g in fresh.param_groups)
    for a, b in zip(opt.state.values(), fresh.state.values()):
        torch.testing.assert_close(a["momentum_buffer"], b["momentum_buffer"], rtol=0, atol=0) if "momentum_buffer" in a else None
    other = muonlab.create_optimizer(model, "muon", orthogonalizer="svd")
    with pytest.raises(ValueError, match="saved with orthogonalizer=nets.user_orthogonalizer.*this one has orthogonalizer='svd'"):
        other.load_state_dict(loaded)


@pytest.mark.parametrize("bad", [3, "nope"])
def test_non_callable_non_name_is_rejected_naming_the_value(bad):
    with pytest.raises(ValueError, match=f"orthogonalizer={bad!r}.*or a callable"):
        muonlab.Muon([torch.nn.Parameter(torch.randn(4, 3))], orthogonalizer=bad)


def test_wrong_shape_from_the_callable_names_it():
    def truncating(X):
        return X[:1]

    with pytest.raises(ValueError, match="orthogonalizer .*truncating returned \\(1, 3\\) for an input of shape \\(4, 3\\)"):
        orthogonalize(torch.randn(4, 3), truncating)
    with pytest.raises(ValueError, match="returned int"):
        orthogonalize(torch.randn(2, 4, 3), lambda X: 0)
