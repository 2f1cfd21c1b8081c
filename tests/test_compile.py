"""``torch.compile(opt.step)``: every registered method with its defaults compiles, does not
recompile as a cosine schedule changes the lr or as steps go by, and equals eager stepping within
bf16 rounding (the Newton–Schulz iteration runs in bf16)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import muonlab
from muonlab.registry import all_specs

#: Run in the default suite; the others are opt-in (-m slow): each compiles for 10–30 s on 2 cores.
FAST = ("muon", "adamw", "mimuon")
CASES = [pytest.param(s, marks=() if s.name in FAST else pytest.mark.slow, id=s.name) for s in all_specs()]


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(64, 16, generator=g), torch.randn(64, 4, generator=g)


def _run(spec, compiled: bool, steps: int, **kw):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = _model()
    opt = muonlab.create_optimizer(model, spec.name, **spec.test_overrides, **kw)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    step = torch.compile(opt.step) if compiled else opt.step
    x, y = _data()
    graphs, first = [], None
    for t in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        before = [p.detach().clone() for p in model.parameters()]
        step()
        sched.step()
        if t == 0:
            first = [p.detach() - b for p, b in zip(model.parameters(), before)]
        graphs.append(counters["stats"]["unique_graphs"])
    return first, graphs, sum(counters["graph_break"].values())


@pytest.mark.parametrize("spec", CASES)
def test_compiled_step_compiles_once_per_structure_and_equals_eager(spec):
    _, graphs, _ = _run(spec, True, 12)
    # The first step initialises state (one structure), the second runs with it (another); from
    # then on neither the scheduled lr nor the step count may cause a new graph.
    assert graphs[-1] == graphs[2], f"{spec.name}: graphs per step {graphs}"
    # Equality with eager stepping, with the matrix work in float64: in bf16 (and for Freon's σ^{q−1}
    # even in float32) the iteration amplifies rounding in the near-null directions of these
    # low-rank gradients (Newton–Schulz by ~3.4⁵), so two correct runs differ by far more than one
    # rounding of their inputs.
    f64 = {k: "float64" for k in ("compute_dtype", "power_dtype") if k in spec.rule.hypers}
    eager_update, _, _ = _run(spec, False, 1, **f64)
    update, _, _ = _run(spec, True, 1, **f64)
    for e, c in zip(eager_update, update):  # relative Frobenius error of the first update
        err = (torch.linalg.vector_norm(c - e) / torch.linalg.vector_norm(e).clamp_min(1e-12)).item()
        assert err <= 1e-3, f"{spec.name}: {err:.3g}"
