"""Muon and AdamW against torch.optim and against a plain for-loop reference."""

from __future__ import annotations

import math

import pytest
import torch

import muonlab
from muonlab.optim.steps import shape_scale

SHAPES = [(32, 16), (16, 48), (24, 24), (40, 8)]


def _params(seed=0, dtype=torch.float32, shapes=SHAPES):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*s, generator=g).to(dtype)) for s in shapes]


def _grads(step, params, seed=1):
    g = torch.Generator().manual_seed(seed * 1000 + step)
    return [torch.randn(p.shape, generator=g).to(p.dtype) for p in params]


def _run(opt_cls, params, steps=20, **kw):
    opt = opt_cls(params, **kw)
    for t in range(steps):
        for p, g in zip(params, _grads(t, params)):
            p.grad = g
        opt.step()
    return opt


def _max_rel(a, b):
    return max(((x - y).norm() / y.norm()).item() for x, y in zip(a, b))


@pytest.mark.parametrize("adjust_lr_fn", [None, "original", "match_rms_adamw"])
@pytest.mark.parametrize("nesterov", [True, False])
def test_reproduces_torch_optim_muon(adjust_lr_fn, nesterov):
    kw = dict(lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=nesterov, adjust_lr_fn=adjust_lr_fn)
    ours, exact, theirs = _params(), _params(), _params()
    _run(muonlab.Muon, ours, **kw)  # default: Gram iteration on the 3:1 and 5:1 matrices
    _run(muonlab.Muon, exact, ns_gram=False, **kw)
    _run(torch.optim.Muon, theirs, **kw)
    assert _max_rel(ours, theirs) <= 1e-3
    # With ns_gram=False the operations are torch's own, in the same order:
    assert all(torch.equal(a, b) for a, b in zip(exact, theirs))


def test_torch_default_arguments_give_torch_results():
    ours, theirs = _params(), _params()
    _run(muonlab.Muon, ours, ns_gram=False)
    _run(torch.optim.Muon, theirs)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_default_uses_gram_on_large_matrices_and_stays_within_1e3_of_torch():
    """On large elongated matrices the default takes the Gram iteration (a different operation
    order, so not bitwise) and still tracks torch.optim.Muon within 1e-3 relative."""
    from muonlab.matfn.polar import _gram_pays

    shapes = [(256, 1024), (768, 256)]
    assert all(_gram_pays(torch.empty(min(s), max(s))) for s in shapes)
    kw = dict(lr=0.02, weight_decay=0.1, momentum=0.95)
    ours, exact, theirs = (_params(shapes=shapes) for _ in range(3))
    _run(muonlab.Muon, ours, steps=10, **kw)
    _run(muonlab.Muon, exact, steps=10, ns_gram=False, **kw)
    _run(torch.optim.Muon, theirs, steps=10, **kw)
    assert 0 < _max_rel(ours, theirs) <= 1e-3
    assert all(torch.equal(a, b) for a, b in zip(exact, theirs))


def test_gram_path_stays_within_bf16_rounding_of_torch():
    kw = dict(lr=1e-3, weight_decay=0.1, momentum=0.95)
    ours, theirs = _params(), _params()
    _run(muonlab.Muon, ours, ns_gram=True, **kw)
    _run(torch.optim.Muon, theirs, **kw)
    assert _max_rel(ours, theirs) <= 1e-3


def _reference_muon(params, steps, lr, wd, beta, nesterov, form="ema"):
    """Obvious for-loop Muon in float64 with the exact polar factor (the slow reference)."""
    ps = [p.detach().double().clone() for p in params]
    bufs = [torch.zeros_like(p) for p in ps]
    for t in range(steps):
        for p, buf, g in zip(ps, bufs, _grads(t, params)):
            g = g.double()
            if form == "ema":
                buf.mul_(beta).add_((1 - beta) * g)
                x = (1 - beta) * g + beta * buf if nesterov else buf
            else:
                buf.mul_(beta).add_(g)
                x = g + beta * buf if nesterov else buf
            U, _, Vh = torch.linalg.svd(x, full_matrices=False)
            m, n = p.shape
            p.mul_(1 - lr * wd).sub_(lr * math.sqrt(max(1, m / n)) * (U @ Vh))
    return ps


@pytest.mark.parametrize("form", ["ema", "accumulate"])
@pytest.mark.parametrize("nesterov", [True, False])
def test_exact_polar_muon_matches_float64_reference(form, nesterov):
    params = _params(dtype=torch.float64)
    want = _reference_muon(params, 10, 0.02, 0.05, 0.9, nesterov, form)
    _run(muonlab.Muon, params, steps=10, lr=0.02, weight_decay=0.05, momentum=0.9, nesterov=nesterov,
         momentum_form=form, orthogonalizer="svd", compute_dtype="float64")
    assert _max_rel(params, want) < 1e-10


def test_bf16_params_without_nesterov_keep_a_correct_momentum_buffer():
    # torch 2.13 normalises the bf16 momentum buffer in place when nesterov=False (aliasing).
    params = _params(dtype=torch.bfloat16)
    opt = _run(muonlab.Muon, params, steps=3, lr=0.02, nesterov=False, momentum=0.9)
    for i, p in enumerate(params):
        expect = torch.zeros(p.shape, dtype=torch.bfloat16)
        for t in range(3):
            expect.lerp_(_grads(t, params)[i], 0.1)
        assert torch.equal(opt.state[p]["momentum_buffer"], expect)
        assert p.dtype == torch.bfloat16
    # torch's buffer is corrupted (normalised to unit Frobenius norm): show the bug is real.
    theirs = _params(dtype=torch.bfloat16)
    topt = _run(torch.optim.Muon, theirs, steps=3, lr=0.02, nesterov=False, momentum=0.9)
    buf = topt.state[theirs[0]]["momentum_buffer"]
    assert not torch.equal(buf, opt.state[params[0]]["momentum_buffer"])


@pytest.mark.parametrize("mode,expected", [
    ("original", math.sqrt(2)), ("match_rms_adamw", 0.2 * math.sqrt(32)),
    ("spectral_norm", math.sqrt(2)), ("none", 1.0)])
def test_shape_scaling_modes(mode, expected):
    assert shape_scale(32, 16, mode) == pytest.approx(expected)
    assert shape_scale(16, 32, "original") == 1.0
    assert shape_scale(16, 32, "spectral_norm") == pytest.approx(math.sqrt(0.5))


def test_update_rms_follows_shape_scaling():
    p = torch.nn.Parameter(torch.zeros(64, 256))
    p.grad = torch.randn(64, 256)
    opt = muonlab.Muon([p], lr=1.0, weight_decay=0, adjust_lr_fn="match_rms_adamw", orthogonalizer="svd")
    opt.step()
    assert p.detach().pow(2).mean().sqrt().item() == pytest.approx(0.2, rel=1e-3)


def test_one_dimensional_parameter_rejected_with_its_shape():
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        muonlab.Muon([torch.nn.Parameter(torch.randn(5))])


def test_conv_weights_need_an_explicit_view():
    w = torch.nn.Parameter(torch.randn(8, 3, 3, 3))
    with pytest.raises(ValueError, match=r"matrix_view='flatten'"):
        muonlab.Muon([w])
    opt = muonlab.Muon([w], lr=0.1, weight_decay=0, matrix_view="flatten", orthogonalizer="svd",
                       compute_dtype="float32")
    w.grad = torch.randn_like(w)
    before = w.detach().clone()
    opt.step()
    delta = (before - w.detach()).reshape(8, 27)
    s = torch.linalg.svdvals(delta / 0.1)
    assert torch.allclose(s, torch.ones(8), atol=1e-4)  # (8, 27) polar factor, √max(1, 8/27) = 1


def test_batch_view_orthogonalizes_each_matrix():
    w = torch.nn.Parameter(torch.zeros(4, 6, 10))
    w.grad = torch.randn(4, 6, 10)
    muonlab.Muon([w], lr=1.0, weight_decay=0, matrix_view="batch", orthogonalizer="svd").step()
    for k in range(4):
        assert torch.allclose(torch.linalg.svdvals(w[k].detach()), torch.ones(6), atol=1e-5)


@pytest.mark.parametrize("method", ["you5", "you6", "polar_express", "svd"])
def test_orthogonalizer_choices_train(method):
    params = _params()
    before = [p.detach().clone() for p in params]
    _run(muonlab.Muon, params, steps=2, lr=0.01, orthogonalizer=method)
    assert all(not torch.equal(a, b) for a, b in zip(params, before))


@pytest.mark.parametrize("impl,torch_kw", [("loop", {"foreach": False}), ("foreach", {"foreach": True}),
                                           ("fused", {"fused": True}), ("auto", {"fused": True})])
def test_adamw_bitwise_equal_to_torch(impl, torch_kw):
    kw = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    shapes = [(7, 3), (5,), (2, 2, 2)]
    ours, theirs = _params(shapes=shapes), _params(shapes=shapes)
    _run(muonlab.AdamW, ours, impl=impl, **kw)
    _run(torch.optim.AdamW, theirs, **torch_kw, **kw)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("impl", ["foreach", "fused"])
@pytest.mark.parametrize("mode", ["decoupled", "coupled"])
def test_adamw_fast_paths_match_the_loop_reference(impl, mode):
    shapes = [(7, 3), (5,), (2, 2, 2)]
    ref, fast = _params(shapes=shapes), _params(shapes=shapes)
    kw = dict(lr=1e-2, weight_decay=0.1, weight_decay_mode=mode)
    _run(muonlab.AdamW, ref, impl="loop", **kw)
    _run(muonlab.AdamW, fast, impl=impl, **kw)
    assert _max_rel(fast, ref) < 1e-6


def test_cautious_weight_decay_only_decays_agreeing_coordinates():
    p = torch.nn.Parameter(torch.tensor([[1.0, -1.0], [2.0, -2.0]]))
    p.grad = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    opt = muonlab.HybridOptimizer([p], "sgd", lr=0.1, momentum=0.0, weight_decay=0.5,
                                  weight_decay_mode="cautious")
    opt.step()
    # update U = grad; decay where U·W >= 0: entries (0,0) and (1,1)
    want = torch.tensor([[1.0 - 0.05 - 0.1, -1.0 - 0.1], [2.0 + 0.1, -2.0 + 0.1 + 0.1]])
    assert torch.allclose(p.detach(), want)


@pytest.mark.parametrize("impl", ["auto", "fused", "foreach"])
def test_adamw_non_contiguous_gradients(impl):
    # torch 2.13's fused CPU AdamW kernel mishandles gradients whose strides differ from the param.
    a = torch.nn.Parameter(torch.randn(20, 8))
    b = torch.nn.Parameter(a.detach().clone())
    opt_a = muonlab.AdamW([a], lr=0.1, impl=impl)
    opt_b = muonlab.AdamW([b], lr=0.1, impl="loop")
    for t in range(3):
        g = torch.randn(8, 20, generator=torch.Generator().manual_seed(t)).T
        a.grad, b.grad = g, g.contiguous()
        opt_a.step()
        opt_b.step()
    assert torch.allclose(a, b, atol=1e-6)


def test_compiled_newton_schulz_matches_eager():
    params, ref = _params(shapes=[(16, 32), (40, 8)]), _params(shapes=[(16, 32), (40, 8)])
    _run(muonlab.Muon, params, steps=3, lr=0.02, ns_compile=True)
    _run(muonlab.Muon, ref, steps=3, lr=0.02)
    assert _max_rel(params, ref) < 1e-2  # fusion may round differently in bf16


# ---- foreach fast paths against their per-parameter loops -------------------------------------

from muonlab.optim.steps import apply_update, apply_updates, can_foreach, momentum_, momentum_many_  # noqa: E402


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("form", ["ema", "accumulate"])
def test_momentum_many_equals_the_loop_bitwise(nesterov, form):
    grads = [torch.randn(s) for s in SHAPES]
    bufs_a = [torch.randn(s) for s in SHAPES]
    bufs_b = [b.clone() for b in bufs_a]
    many = momentum_many_(bufs_a, grads, 0.9, nesterov=nesterov, form=form)
    loop = [momentum_(b, g, 0.9, nesterov=nesterov, form=form) for b, g in zip(bufs_b, grads)]
    assert all(torch.equal(x, y) for x, y in zip(many, loop))
    assert all(torch.equal(x, y) for x, y in zip(bufs_a, bufs_b))


@pytest.mark.parametrize("mode,wd", [("decoupled", 0.1), ("decoupled", 0.0), ("cautious", 0.1), ("coupled", 0.1)])
def test_apply_updates_equals_the_loop_bitwise(mode, wd):
    params_a = [torch.randn(s) for s in SHAPES]
    params_b = [p.clone() for p in params_a]
    updates = [torch.randn(s) for s in SHAPES]
    sizes = [0.02, 0.03, 0.02, 0.05]  # shared and distinct step sizes
    apply_updates(params_a, updates, sizes, lr=0.02, weight_decay=wd, mode=mode)
    for p, u, s in zip(params_b, updates, sizes):
        apply_update(p, u, s, lr=0.02, weight_decay=wd, mode=mode)
    assert all(torch.equal(x, y) for x, y in zip(params_a, params_b))


def test_foreach_is_refused_for_mixed_devices_and_dtypes_fall_back_to_the_loop():
    assert can_foreach([torch.zeros(2)], [torch.nn.Parameter(torch.zeros(2))])
    assert not can_foreach([torch.zeros(2), torch.zeros(2, device="meta")])
    p, u = torch.ones(3, dtype=torch.bfloat16), torch.full((3,), 0.5)  # fp32 update on a bf16 param
    q = p.clone()
    apply_updates([p], [u], [0.1], lr=0.1, weight_decay=0.0)
    apply_update(q, u, 0.1, lr=0.1, weight_decay=0.0)
    assert torch.equal(p, q)
