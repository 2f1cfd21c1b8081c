"""muon, scion, polargrad against emerging_optimizers 0.3.0 (NVIDIA) ``Muon``, ``Scion``, ``PolarGrad``.

Their Newton–Schulz (``muon_utils.newton_schulz``) is replaced by the shared exact polar factor;
ours runs ``orthogonalizer="svd"`` in float64. Importing the package on Python 3.11 needs the
``typing.override`` shim of :func:`._upstream.import_emerging_optimizers`.
"""

from __future__ import annotations

import pytest

import muonlab

from ._upstream import (
    EXACT,
    Problem,
    import_emerging_optimizers,
    polar64,
    rel_diff,
    run,
)

ROUNDING = 1e-12
P = Problem()


@pytest.fixture(scope="module")
def eo():
    """The package's ``orthogonalized_optimizers`` module."""
    return import_emerging_optimizers()


@pytest.fixture(autouse=True)
def shared_polar(eo, monkeypatch):
    from emerging_optimizers.orthogonalized_optimizers import muon_utils

    monkeypatch.setattr(muon_utils, "newton_schulz", lambda G, *a, **k: polar64(G))


# their scale_mode (and extra factor) -> our adjust_lr_fn
SCALES = {"shape_scaling": ((1.0,), "original"), "spectral": ((0.2,), "match_rms_adamw"),
          "unit_rms_norm": ((1.0,), "spectral_norm")}


@pytest.mark.parametrize("scale_mode", sorted(SCALES))
@pytest.mark.parametrize("nesterov", [True, False])
def test_muon(eo, scale_mode, nesterov):
    (extra,), adjust = SCALES[scale_mode]
    kw = dict(lr=0.02, momentum=0.9, weight_decay=0.1, nesterov=nesterov)
    theirs = run(lambda ps: eo.Muon(ps, scale_mode=scale_mode, extra_scale_factor=extra,
                                                              **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "muon", adjust_lr_fn=adjust, **EXACT, **kw), P)
    assert rel_diff(ours, theirs, P) <= ROUNDING


def test_scion(eo):
    """Their ``momentum`` is an EMA β; Scion's (and ours) is α = 1 − β, the new gradient's weight."""
    theirs = run(lambda ps: eo.Scion(ps, lr=0.01, momentum=0.8, spectral_radius=3.0), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "scion", norm="spectral", lr=0.01, momentum=1 - 0.8,
                                                  scale=3.0, **EXACT), P)
    assert rel_diff(ours, theirs, P) <= ROUNDING


def test_polargrad(eo):
    kw = dict(lr=0.02, momentum=0.9, weight_decay=0.05)
    theirs = run(lambda ps: eo.PolarGrad(ps, **kw), P)
    ours = run(lambda ps: muonlab.HybridOptimizer(ps, "polargrad", **EXACT, **kw), P)
    assert rel_diff(ours, theirs, P) <= ROUNDING
