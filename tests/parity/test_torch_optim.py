"""muon / moonlight / adamw / sgd against torch.optim (Muon, AdamW, SGD), float64, 20 steps.

torch.optim.Muon's Newton–Schulz (bf16) is replaced by the shared exact polar factor; ours runs
``orthogonalizer="svd"`` in float64. AdamW and SGD need no orthogonalizer.
"""

from __future__ import annotations

import pytest
import torch

import muonlab

from ._upstream import EXACT, Problem, polar64, rel_diff, run

ROUNDING = 1e-12
P = Problem()


@pytest.fixture
def shared_polar(monkeypatch):
    import torch.optim._muon as tmuon

    monkeypatch.setattr(tmuon, "_zeropower_via_newtonschulz", lambda G, *a, **k: polar64(G))


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust", [None, "match_rms_adamw"])
def test_muon_matches_torch_optim_muon(shared_polar, nesterov, adjust):
    kw = dict(lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=nesterov, adjust_lr_fn=adjust)
    theirs = run(lambda ps: torch.optim.Muon(ps, **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "muon", **EXACT, **kw), P)
    assert rel_diff(ours, theirs, P) <= ROUNDING


def test_moonlight_is_torch_muon_with_moonlight_scaling(shared_polar):
    """Moonlight accumulates momentum (M ← βM + G) where torch keeps an EMA: the two inputs differ
    by the constant 1/(1−β), which the polar factor does not see."""
    kw = dict(lr=0.01, weight_decay=0.1, momentum=0.95, nesterov=True)
    theirs = run(lambda ps: torch.optim.Muon(ps, adjust_lr_fn="match_rms_adamw", **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "moonlight", **EXACT, **kw), P)
    assert rel_diff(ours, theirs, P) <= ROUNDING


@pytest.mark.parametrize("kw", [dict(lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1),
                                dict(lr=1e-2, weight_decay=0.0, amsgrad=True)], ids=["decay", "amsgrad"])
def test_adamw_matches_torch_adamw(kw):
    theirs = run(lambda ps: torch.optim.AdamW(ps, **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "adamw", **kw), P)
    assert rel_diff(ours, theirs, P) <= ROUNDING


@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_matches_torch_sgd(nesterov):
    kw = dict(lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
    theirs = run(lambda ps: torch.optim.SGD(ps, **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "sgd", **kw), P)
    assert rel_diff(ours, theirs, P) <= ROUNDING
