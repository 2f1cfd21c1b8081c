"""Drop-in means drop-in: torch.optim's signatures, results, checkpoints (both ways), schedulers,
add_param_group, wrapped models."""

from __future__ import annotations

import copy
import inspect
import io

import pytest
import torch
from torch import nn

import muonlab
from muonlab.registry import all_specs
from nets import RoleNet, role_batch

SPECS = all_specs()


def _prefix(cls_ours, cls_torch):
    theirs = inspect.signature(cls_torch.__init__).parameters
    ours = list(inspect.signature(cls_ours.__init__).parameters.items())[: len(theirs)]
    return [(n, p.kind, p.default) for n, p in theirs.items()], [(n, p.kind, p.default) for n, p in ours]


@pytest.mark.parametrize("ours,theirs", [(muonlab.AdamW, torch.optim.AdamW), (muonlab.Muon, torch.optim.Muon)])
def test_signature_is_torchs(ours, theirs):
    """Same names, order, kinds and defaults; muonlab's extras come after, keyword-only."""
    a, b = _prefix(ours, theirs)
    assert a == b
    extra = list(inspect.signature(ours.__init__).parameters.values())[len(a):]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in extra)


# ---- AdamW: every torch option, torch's results --------------------------------------------------


def _params(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(5, 4, generator=g, dtype=dtype)), nn.Parameter(torch.randn(7, generator=g, dtype=dtype))]


def _run(opt_cls, params, steps=5, **kw):
    opt = opt_cls(params, **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
        opt.step()
    return opt


MODES = {"loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("tensor_lr", [False, True])
def test_adamw_options_bitwise_equal_to_torch(mode, amsgrad, maximize, tensor_lr):
    if tensor_lr and mode == "foreach":
        pytest.skip("torch refuses a tensor lr with foreach=True and capturable=False")
    kw = dict(lr=torch.tensor(0.01) if tensor_lr else 0.01, betas=(0.8, 0.99), weight_decay=0.1,
              amsgrad=amsgrad, maximize=maximize, **MODES[mode])
    ours, theirs = _params(), _params()
    _run(muonlab.AdamW, ours, **kw)
    _run(torch.optim.AdamW, theirs, **copy.deepcopy(kw))
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_adamw_tensor_betas_equal_to_torch():
    kw = dict(lr=0.01, betas=(torch.tensor(0.8), torch.tensor(0.99)), foreach=False)
    ours, theirs = _params(), _params()
    _run(muonlab.AdamW, ours, **kw)
    _run(torch.optim.AdamW, theirs, **kw)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adamw_capturable_matches_the_reference(amsgrad):
    """torch refuses capturable=True on CPU; ours runs it (no host sync) and equals the loop."""
    ref, cap = _params(dtype=torch.float64), _params(dtype=torch.float64)
    _run(muonlab.AdamW, ref, lr=0.01, amsgrad=amsgrad, foreach=False)
    opt = _run(muonlab.AdamW, cap, lr=torch.tensor(0.01, dtype=torch.float64), amsgrad=amsgrad, capturable=True)
    for a, b in zip(ref, cap):  # bias corrections from float32 step tensors, as in torch's capturable path
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert all(st["step"].device == p.device for p, st in opt.state.items())


@pytest.mark.parametrize("kw,match", [
    (dict(differentiable=True), "differentiable=True"),
    (dict(fused=True, foreach=True), "fused=True with foreach=True"),
    (dict(fused=True, weight_decay_mode="cautious"), "cautious"),
])
def test_adamw_unsupported_options_fail_at_construction(kw, match):
    with pytest.raises(ValueError, match=match):
        muonlab.AdamW(_params(), **kw)


# ---- checkpoints move both ways ---------------------------------------------------------------


def _grads(params, t):
    g = torch.Generator().manual_seed(100 + t)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)


def _continue(opt, params, start, steps):
    for t in range(start, start + steps):
        _grads(params, t)
        opt.step()


def _mats(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(8, 6, generator=g)), nn.Parameter(torch.randn(6, 6, generator=g))]


def _roundtrip(sd):
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


CASES = {
    "muon": (lambda ps: torch.optim.Muon(ps, lr=0.02), lambda ps: muonlab.Muon(ps, lr=0.02, ns_gram=False), _mats),
    "adamw-fused": (lambda ps: torch.optim.AdamW(ps, lr=0.01, fused=True), lambda ps: muonlab.AdamW(ps, lr=0.01, fused=True), _params),
    "adamw-foreach": (lambda ps: torch.optim.AdamW(ps, lr=0.01, foreach=True, amsgrad=True),
                      lambda ps: muonlab.AdamW(ps, lr=0.01, foreach=True, amsgrad=True), _params),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("direction", ["torch->muonlab", "muonlab->torch"])
def test_checkpoints_move_both_ways(case, direction):
    make_torch, make_ours, make_params = CASES[case]
    src_make, dst_make = (make_torch, make_ours) if direction == "torch->muonlab" else (make_ours, make_torch)
    reference = make_params()
    ref_opt = dst_make(reference)
    _continue(ref_opt, reference, 0, 6)  # uninterrupted, in the destination library

    params = make_params()
    src = src_make(params)
    _continue(src, params, 0, 3)
    moved = [nn.Parameter(p.detach().clone()) for p in params]
    dst = dst_make(moved)
    dst.load_state_dict(_roundtrip(src.state_dict()))
    _continue(dst, moved, 3, 3)
    for a, b in zip(reference, moved):
        assert torch.equal(a, b), case


def Net():
    return RoleNet(experts=False)


_batch = role_batch


def _train(model, opt, start, steps):
    for t in range(start, start + steps):
        x, y = _batch(t)
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()


def _make(spec):
    torch.manual_seed(0)
    model = Net()
    return model, muonlab.create_optimizer(model, spec.name, **spec.test_overrides)


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_older_checkpoints_load_and_step(spec):
    """A Python-number ``step`` (older torch format) and a group saved before a hyperparameter
    existed both load; the continued run equals the uninterrupted one."""
    model, opt = _make(spec)
    _train(model, opt, 0, 3)
    sd = copy.deepcopy(opt.state_dict())
    msd = copy.deepcopy(model.state_dict())
    _train(model, opt, 3, 3)
    expected = [p.detach().clone() for p in model.parameters()]

    for st in sd["state"].values():
        st["step"] = float(st["step"])
    for g in sd["param_groups"]:
        g.pop("weight_decay_mode", None)  # "added since" the checkpoint
    model2, opt2 = _make(spec)
    model2.load_state_dict(msd)
    opt2.load_state_dict(sd)
    assert all(g["weight_decay_mode"] for g in opt2.param_groups)
    _train(model2, opt2, 3, 3)
    for a, b in zip(expected, model2.parameters()):
        assert torch.equal(a, b), spec.name
    for st in opt2.state.values():
        assert torch.is_tensor(st["step"])


def test_torch_muon_checkpoint_has_no_step_and_still_loads():
    ps = _mats()
    t = torch.optim.Muon(ps, lr=0.02)
    _continue(t, ps, 0, 2)
    sd = t.state_dict()
    assert all("step" not in st for st in sd["state"].values())
    ours = muonlab.Muon(_mats(), lr=0.02)
    ours.load_state_dict(sd)
    assert ours.param_groups[0]["algorithm"] == "muon" and ours.param_groups[0]["ns_gram"] is None
    _continue(ours, ours.param_groups[0]["params"], 2, 1)


def test_matrix_state_keeps_its_saved_dtype():
    """torch casts all floating state to the parameter dtype on load; per-matrix float32 state of a
    bf16 parameter (TrasMuon's energy reference) keeps float32."""
    p = nn.Parameter(torch.randn(6, 4).bfloat16())
    opt = muonlab.HybridOptimizer([p], "trasmuon")
    p.grad = torch.randn(6, 4).bfloat16()
    opt.step()
    assert opt.state[p]["energy_ref"].dtype == torch.float32
    opt2 = muonlab.HybridOptimizer([p], "trasmuon")
    opt2.load_state_dict(opt.state_dict())
    assert opt2.state[p]["energy_ref"].dtype == torch.float32


# ---- add_param_group --------------------------------------------------------------------------


def test_add_param_group_after_create_optimizer_gets_its_settings():
    model = Net()
    opt = muonlab.create_optimizer(model, "muon", lr=0.05, adamw={"lr": 1e-3})
    extra = nn.Linear(4, 4)
    opt.add_param_group({"params": [extra.weight]})  # no names, algorithm defaults to muon
    opt.add_param_group({"params": [extra.bias], "algorithm": "adamw"})
    g_muon, g_adamw = opt.param_groups[-2], opt.param_groups[-1]
    assert g_muon["lr"] == 0.05 and g_muon["weight_decay"] == muonlab.get_spec("muon").recommended["weight_decay"]
    assert g_adamw["lr"] == 1e-3 and g_adamw["betas"] == (0.9, 0.95)
    assert len(g_muon["param_names"]) == 1
    extra.weight.grad, extra.bias.grad = torch.randn(4, 4), torch.randn(4)
    opt.step()
    # and the other way round: a named group added to an unnamed optimizer
    opt = muonlab.Muon([nn.Parameter(torch.randn(3, 3))])
    opt.add_param_group({"params": [("w", nn.Parameter(torch.randn(3, 3)))]})
    assert opt.param_groups[1]["param_names"] == ["w"] and len(opt.param_groups[0]["param_names"]) == 1


# ---- schedulers that cycle momentum -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["onecycle", "cyclic"])
def test_momentum_cycling_schedulers_cycle_the_right_key_per_group(kind):
    model = Net()
    opt = muonlab.create_optimizer(model, "muon")
    if kind == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=10, base_momentum=0.8, max_momentum=0.95)
    else:
        sched = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=0.001, max_lr=0.05, step_size_up=3, base_momentum=0.8,
                                                  max_momentum=0.95, cycle_momentum=True)
    seen = {"muon": set(), "adamw": set()}
    for t in range(6):
        _train(model, opt, t, 1)
        for g in opt.param_groups:
            if g["algorithm"] == "muon":
                seen["muon"].add(round(g["momentum"], 6))
            else:  # the written momentum became β₁ and left no stray key
                assert "momentum" not in g and g["betas"][1] == 0.95
                seen["adamw"].add(round(g["betas"][0], 6))
        sched.step()
    assert len(seen["muon"]) > 2 and len(seen["adamw"]) > 2, seen
    assert all(0.8 - 1e-9 <= m <= 0.95 + 1e-9 for s in seen.values() for m in s)


def test_adamw_alone_cycles_betas_like_torch():
    opt = muonlab.AdamW(_params(), lr=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=10)
    ref = torch.optim.AdamW(_params(), lr=0.01)
    ref_sched = torch.optim.lr_scheduler.OneCycleLR(ref, max_lr=0.05, total_steps=10)
    for _ in range(4):
        for o, s in ((opt, sched), (ref, ref_sched)):
            for p in o.param_groups[0]["params"]:
                p.grad = torch.ones_like(p)
            o.step()
            s.step()
    assert opt.param_groups[0]["betas"] == ref.param_groups[0]["betas"]
    for a, b in zip(opt.param_groups[0]["params"], ref.param_groups[0]["params"]):
        assert torch.equal(a, b)


# ---- wrapped models ---------------------------------------------------------------------------


@pytest.mark.parametrize("wrap", ["compile", "dataparallel"])
def test_routing_patterns_match_wrapped_models(wrap):
    torch.manual_seed(0)
    plain = Net()
    wrapped = torch.compile(copy.deepcopy(plain)) if wrap == "compile" else nn.DataParallel(copy.deepcopy(plain))
    kw = dict(output="head", overrides={"fc1.*": {"lr": 0.01}, "emb": "adamw"})
    a = muonlab.create_optimizer(plain, "muon", **kw)
    b = muonlab.create_optimizer(wrapped, "muon", **kw)
    summary = lambda o: [(g["role"], g["algorithm"], g["lr"], g["param_names"]) for g in o.param_groups]  # noqa: E731
    assert summary(a) == summary(b)
    assert any(g["lr"] == 0.01 and g["param_names"] == ["fc1.weight"] for g in b.param_groups)


# ---- what the optimizer says about itself -----------------------------------------------------


def test_repr_and_summary_name_the_executor():
    opt = muonlab.create_optimizer(Net(), "muon")
    assert "executor: LocalExecutor(" in repr(opt)
    assert "executor: LocalExecutor(" in muonlab.routing_summary(opt)
    assert muonlab.LocalExecutor is muonlab.optim.LocalExecutor
    from muonlab.distributed import DistributedExecutor

    assert muonlab.DistributedExecutor is DistributedExecutor


# ---- regressions found in review ----------------------------------------------------------------


def test_matrix_state_round_trips_exactly_for_bf16_parameters():
    p = nn.Parameter(torch.randn(8, 8).bfloat16())
    opt = muonlab.HybridOptimizer([p], "adago")
    for _ in range(3):
        p.grad = torch.randn(8, 8).bfloat16()
        opt.step()
    opt2 = muonlab.HybridOptimizer([p], "adago")
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    for k in ("grad_norm_sq_sum", "adaptive_step"):
        assert torch.equal(opt.state[p][k], opt2.state[p][k]), k


@pytest.mark.parametrize("shape", [(), (1,)])
def test_adamw_capturable_takes_tensor_betas_and_lr_of_any_one_element_shape(shape):
    ref, cap = _params(), _params()
    _run(muonlab.AdamW, ref, lr=0.01, betas=(0.8, 0.99), foreach=False)
    _run(muonlab.AdamW, cap, lr=torch.tensor(0.01).reshape(shape), capturable=True,
         betas=(torch.tensor(0.8).reshape(shape), torch.tensor(0.99).reshape(shape)))
    for a, b in zip(ref, cap):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_momentum_cycling_is_refused_where_momentum_is_not_a_beta():
    """Scion's ``momentum`` is α = 1 − β: a scheduler writing β values would silently break it."""
    opt = muonlab.create_optimizer(Net(), "scion")
    with pytest.raises(ValueError, match="momentum"):
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.02, total_steps=10)


def test_rejected_param_group_leaves_the_others_unchanged():
    opt = muonlab.Muon([nn.Parameter(torch.randn(3, 3))])
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [("w", nn.Parameter(torch.randn(3, 3)))], "lr": -1.0})
    assert len(opt.param_groups) == 1 and "param_names" not in opt.param_groups[0]


def test_resume_between_step_and_scheduler_step_keeps_the_saved_beta1():
    model = Net()
    opt = muonlab.create_optimizer(model, "muon")
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=10)
    _train(model, opt, 0, 2)
    sched.step()
    _train(model, opt, 2, 1)  # saved after opt.step(), before sched.step()
    saved = copy.deepcopy(opt.state_dict())
    betas = [g["betas"] for g in opt.param_groups if g["algorithm"] == "adamw"]
    model2 = copy.deepcopy(model)
    opt2 = muonlab.create_optimizer(model2, "muon")
    torch.optim.lr_scheduler.OneCycleLR(opt2, max_lr=0.05, total_steps=10)  # writes its own momentum
    opt2.load_state_dict(saved)
    _train(model2, opt2, 3, 1)
    assert [g["betas"] for g in opt2.param_groups if g["algorithm"] == "adamw"] == betas


def test_external_optimizer_routes_a_wrapped_model_with_the_aux_defaults():
    from muonlab.lab.external import build_external

    model = torch.compile(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)))
    opts = build_external(model, "torch.optim.SGD", {"lr": 0.1}, {}, {})
    assert type(opts[0]) is torch.optim.SGD
    assert opts[1].param_groups[0]["lr"] == muonlab.registry.AUX_DEFAULTS["lr"]
