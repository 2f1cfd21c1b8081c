"""musgd against ultralytics' ``MuSGD`` (``ultralytics/optim/muon.py``, loaded by file path: the
package's ``__init__`` needs cv2), with the shared exact polar factor in place of its Newton–Schulz."""

from __future__ import annotations

import pytest

import muonlab

from ._upstream import EXACT, Problem, polar64, rel_diff, run, ultralytics_musgd

ROUNDING = 1e-12
P = Problem()


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("weights", [(0.2, 1.0), (0.5, 0.5)])
def test_musgd(monkeypatch, nesterov, weights):
    mod = ultralytics_musgd()
    monkeypatch.setattr(mod, "zeropower_via_newtonschulz5", lambda G, *a, **k: polar64(G))
    w_muon, w_sgd = weights
    kw = dict(lr=0.01, momentum=0.9, weight_decay=5e-3, nesterov=nesterov)
    theirs = run(lambda ps: mod.MuSGD([dict(params=ps, use_muon=True)], muon=w_muon, sgd=w_sgd, **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "musgd", muon_weight=w_muon, sgd_weight=w_sgd, **EXACT, **kw), P)
    assert rel_diff(ours, theirs, P) <= ROUNDING
