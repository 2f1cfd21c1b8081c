"""The torch.optim contract, checked for EVERY registered optimizer (the registry drives this file).

A new optimizer gets these tests by registering itself; nothing here names a method.
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

import muonlab
from muonlab.registry import all_specs
from nets import RoleNet, role_batch, user_orthogonalizer

SPECS = all_specs()
IDS = [s.name for s in SPECS]


Net = RoleNet
_batch = role_batch


def _make(spec, dtype=torch.float32, **kw):
    torch.manual_seed(0)
    model = Net().to(dtype)
    opt = muonlab.create_optimizer(model, spec.name, **{**spec.test_overrides, **kw})
    return model, opt


def _configs(spec):
    """The defaults, the spec's registered configurations, and generic ones its hyperparameters
    allow: cautious decay, the other momentum form, a float32 iteration, a user-supplied
    orthogonalizer, a stack seen as a batch."""
    yield "default", {}
    yield from spec.configs.items()
    h = spec.rule.hypers
    if "cautious" in (h["weight_decay_mode"].choices or ()) and spec.name != "adamw":
        yield "cautious", {"weight_decay_mode": "cautious", "weight_decay": 0.1,
                           **({"constrained": False} if "constrained" in h else {})}
    if "momentum_form" in h:
        other = next(c for c in h["momentum_form"].choices if c != h["momentum_form"].default)
        yield f"momentum_form={other}", {"momentum_form": other}
    if "compute_dtype" in h and h["compute_dtype"].default != "float32" and "float32" in h["compute_dtype"].choices:
        yield "fp32", {"compute_dtype": "float32"}
    if "orthogonalizer" in h:  # any callable X -> polar(X) where a method name is accepted
        yield "callable_orthogonalizer", {"orthogonalizer": user_orthogonalizer}
    if spec.matrix:
        yield "batch_view", {"overrides": {"experts": {"algorithm": spec.name, "matrix_view": "batch",
                                                       **spec.recommended, **spec.test_overrides}}}


CASES = [pytest.param(spec, cfg, id=f"{spec.name}-{name}") for spec in SPECS for name, cfg in _configs(spec)]


def _train(model, opt, steps, start=0, scheduler=None):
    losses = []
    for t in range(start, start + steps):
        x, y = _batch(t)
        opt.zero_grad(set_to_none=True)
        loss = (model(x).float() - y).pow(2).mean()
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return losses


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("spec,cfg", CASES)
def test_state_dict_resume_is_bitwise_identical(spec, cfg):
    model, opt = _make(spec, **cfg)
    _train(model, opt, 3)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    _train(model, opt, 4, start=3)
    uninterrupted = _params(model)

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    model2, opt2 = _make(spec, **cfg)
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    _train(model2, opt2, 4, start=3)
    for a, b in zip(uninterrupted, _params(model2)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_scheduler_scales_every_group(spec):
    model, opt = _make(spec)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.0)  # lr → 0 from the start
    before = _params(model)
    _train(model, opt, 2, scheduler=sched)
    for a, b in zip(before, _params(model)):
        assert torch.equal(a, b), "a zero learning rate must leave parameters unchanged"
    for g in opt.param_groups:
        assert g["lr"] == 0.0 and g["initial_lr"] > 0


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_closure_is_called_and_its_loss_returned(spec):
    model, opt = _make(spec)
    calls = []
    x, y = _batch(0)

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert len(calls) == 1 and torch.is_tensor(loss)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_params_without_grad_are_untouched(spec):
    model, opt = _make(spec)
    x, y = _batch(0)
    (model(x) - y).pow(2).mean().backward()
    model.fc2.weight.grad = None
    model.norm.bias.grad = None
    w, b = model.fc2.weight.detach().clone(), model.norm.bias.detach().clone()
    opt.step()
    assert torch.equal(model.fc2.weight, w) and torch.equal(model.norm.bias, b)
    assert model.fc2.weight not in opt.state and model.norm.bias not in opt.state
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_deepcopy_and_pickle_preserve_state(spec):
    model, opt = _make(spec)
    _train(model, opt, 2)
    clone = copy.deepcopy(opt)
    restored = pickle.loads(pickle.dumps(opt))
    for other in (clone, restored):
        sd_a, sd_b = opt.state_dict(), other.state_dict()
        assert sd_a["param_groups"] == sd_b["param_groups"]
        for k, st in sd_a["state"].items():
            for key, val in st.items():
                assert torch.equal(val, sd_b["state"][k][key]) if torch.is_tensor(val) else val == sd_b["state"][k][key]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_step_hooks_run_and_can_be_removed(spec):
    model, opt = _make(spec)
    seen = []
    h1 = opt.register_step_pre_hook(lambda o, a, k: seen.append("pre"))
    h2 = opt.register_step_post_hook(lambda o, a, k: seen.append("post"))
    _train(model, opt, 1)
    assert seen == ["pre", "post"]
    h1.remove(), h2.remove()
    _train(model, opt, 1, start=1)
    assert seen == ["pre", "post"]


@pytest.mark.parametrize("spec,cfg", CASES)
def test_bf16_parameters_keep_their_dtype(spec, cfg):
    model, opt = _make(spec, dtype=torch.bfloat16, **cfg)
    _train(model, opt, 3)
    for p in model.parameters():
        assert p.dtype == torch.bfloat16 and torch.isfinite(p).all()
    for st in opt.state.values():
        for k, v in st.items():
            if torch.is_tensor(v) and k != "step" and v.is_floating_point() and v.numel() > 1:
                assert v.dtype in (torch.bfloat16, torch.float32)


@pytest.mark.parametrize("spec,cfg", CASES)
def test_state_is_declared(spec, cfg):
    """Every state entry is declared in the rule's state_spec; parameter-shaped ones have the
    parameter's shape, counters are Python numbers."""
    model, opt = _make(spec, **cfg)
    _train(model, opt, 3)
    for group in opt.param_groups:
        rule = muonlab.get_spec(group["algorithm"]).rule
        for p in group["params"]:
            for k, v in opt.state[p].items():
                if k == "step":
                    continue
                assert k in rule.state_spec, f"{rule.name}: undeclared state {k!r}"
                kind = rule.state_spec[k].kind
                if kind == "param":
                    assert torch.is_tensor(v) and v.shape == p.shape, (k, tuple(v.shape))
                elif kind == "counter":
                    assert isinstance(v, (int, float)), (k, type(v))


@pytest.mark.parametrize("target", ["tanh", "sin"])
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_defaults_train_a_small_mlp_regression(spec, target):
    """With its recommended defaults (docs/defaults.md), every method halves the loss of a
    16→64→64→4 tanh MLP on 256 points in 150 full-batch steps (targets: tanh or sin of a random
    linear map, workload A of benchmarks/default_sweep.py and its harder check)."""
    torch.manual_seed(0)
    X = torch.randn(256, 16)
    W = torch.randn(16, 4)
    y = torch.tanh(X @ W) if target == "tanh" else torch.sin(X @ W)
    model = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 4))
    opt = muonlab.create_optimizer(model, spec.name, **spec.test_overrides)
    first = None
    for step in range(150):
        loss = (model(X) - y).pow(2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first, f"{spec.name}: {first:.4f} -> {loss.item():.4f}"


def _invalid_values(h):
    """Values that violate a declared hyperparameter (derived from its declaration)."""
    if h.kind == "choice":
        return ["no-such-choice"]
    if h.kind == "bool":
        return ["yes"]
    out = []
    if h.kind in ("float", "int"):
        if h.low is not None:
            out.append(h.low if h.low_open else h.low - 1)
        if h.high is not None:
            out.append(h.high if h.high_open else h.high + 1)
        out.append(float("nan")) if h.kind == "float" else out.append(1.5)
    if h.kind == "pair":
        out.append((0.9,))
        if h.low is not None:
            out.append((h.low - 1, 0.5))
    return out


def _invalid_cases():
    for spec in SPECS:
        for name, h in spec.rule.hypers.items():
            for v in _invalid_values(h):
                yield pytest.param(spec, name, v, id=f"{spec.name}-{name}={v!r}")
        for name, v in spec.invalid.items():
            yield pytest.param(spec, name, v, id=f"{spec.name}-{name}={v!r}")


@pytest.mark.parametrize("spec,name,value", list(_invalid_cases()))
def test_invalid_hyperparameters_raise_naming_the_value(spec, name, value):
    p = torch.nn.Parameter(torch.randn(4, 3))
    with pytest.raises(ValueError) as info:
        muonlab.HybridOptimizer([p], spec.name, **{**spec.test_overrides, name: value})
    assert name in str(info.value) and repr(value) in str(info.value)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_unknown_hyperparameter_is_rejected(spec):
    with pytest.raises(ValueError, match="unknown hyperparameter.*'lrr'"):
        muonlab.HybridOptimizer([torch.nn.Parameter(torch.randn(4, 3))], spec.name, lrr=0.1)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_sparse_and_complex_gradients_raise_clearly(spec):
    p = torch.nn.Parameter(torch.randn(4, 3))
    opt = muonlab.HybridOptimizer([p], spec.name, **spec.test_overrides)
    p.grad = torch.randn(4, 3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse gradient"):
        opt.step()
    c = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.complex64))
    opt = muonlab.HybridOptimizer([c], spec.name, **spec.test_overrides)
    c.grad = torch.randn(4, 3, dtype=torch.complex64)
    with pytest.raises(RuntimeError, match="complex"):
        opt.step()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_non_finite_gradient_reported_with_parameter_name(spec):
    model, opt = _make(spec, check_finite=True)
    x, y = _batch(0)
    (model(x) - y).pow(2).mean().backward()
    model.fc2.weight.grad[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"'fc2\.weight'"):
        opt.step()
