"""muon against heavyball 3.2.1's ``Muon`` (eager, float64 storage, the shared exact polar factor).

heavyball bias-corrects its EMA (a per-step factor the polar factor does not see) through a
debiased β computed as ``β ** step`` of an integer step tensor, i.e. in torch's default dtype: the
pair runs with the default dtype float64 (in float32 that step alone leaves ≈ 5e-8).

heavyball's Nesterov form (``nesterov_ema``: the update is G + EMA(G)) is not Keller's
((1−β)G + β·EMA), so the pair is compared without Nesterov; with it the difference is asserted.
"""

from __future__ import annotations

import pytest
import torch

import muonlab

from ._upstream import EXACT, Problem, polar64, rel_diff, run

heavyball = pytest.importorskip("heavyball")

ROUNDING = 1e-12
P = Problem()


@pytest.fixture(autouse=True)
def eager_exact(monkeypatch):
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    monkeypatch.setattr(heavyball.utils, "compile_mode", None)  # eager: no per-shape compilation
    monkeypatch.setattr(heavyball.utils, "zeropower_via_newtonschulz5", lambda G, *a, **k: polar64(G))
    yield
    torch.set_default_dtype(default)


def _theirs(nesterov):
    return lambda ps: heavyball.Muon(ps, lr=0.02, betas=(0.9, 0.99), weight_decay=0.1, nesterov=nesterov,
                                     storage_dtype="float64")


def test_muon_without_nesterov():
    theirs = run(_theirs(False), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "muon", lr=0.02, momentum=0.9, weight_decay=0.1,
                                                  nesterov=False, **EXACT), P)
    assert rel_diff(ours, theirs, P) <= ROUNDING


def test_heavyball_nesterov_is_another_rule():
    theirs = run(_theirs(True), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "muon", lr=0.02, momentum=0.9, weight_decay=0.1,
                                                  nesterov=True, **EXACT), P)
    assert rel_diff(ours, theirs, P) > 1e-3
