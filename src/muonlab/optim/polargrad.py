"""PolarGrad: Muon's polar factor scaled by the nuclear norm of the momentum.

Math (per matrix W ∈ R^{m×n}; momentum-first, the official default)::

    M ← βM + (1−β)G                               momentum_buffer (EMA, no Nesterov)
    U_p H = M                                     polar decomposition, U_p = orthogonalize(M)
    tr(H) = ‖M‖_* = ⟨M, U_p⟩_F                    no SVD needed
    W ← (1 − ηλ)W − η·tr(H)·U_p

So PolarGrad is Muon times ‖M‖_* (with no shape factor: ``adjust_lr_fn="none"``). Because the
scale comes from the polar factor, the default orthogonalizer is Polar Express in float32 (the
official code uses QDWH); with Keller's Newton–Schulz, whose singular values land in about
[0.7, 1.1], ⟨M, O⟩ under- or over-estimates ‖M‖_* by that factor.

Defaults (official ``polar_grad.py``): lr 0.02, momentum 0.95, weight decay 0. Not implemented:
the official ``polar_first=True`` variant (polar factor of G, momentum on U_p).

Source: Lau, Long, Su, "PolarGrad: A Class of Matrix-Gradient Optimizers from a Unifying
Preconditioning Perspective", arXiv 2505.21799; github timlautk/polargrad ``polar_grad.py``
@ 79590d7 [EXACT code; the third-party summary junaidaliop/zij ``canon/math/polargrad.md`` is
only SECONDARY].
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import OptimizerSpec, register
from . import hyper as H
from .muon import MuonRule
from .rule import COMPUTE_DTYPES, orthogonalize_group
from .steps import SHAPE_SCALES


class PolarGradRule(MuonRule):
    """Muon × ‖M‖_* (see the module docstring)."""

    name = "polargrad"
    hypers = {
        **MuonRule.hypers,
        "weight_decay": H.Hyper(0.0, "decoupled weight decay λ (official default 0)", low=0.0),
        "nesterov": H.Hyper(False, "Nesterov look-ahead (PolarGrad: plain momentum)", kind="bool"),
        "adjust_lr_fn": H.Hyper("none", "shape scaling of the update (PolarGrad: none)", kind="choice",
                                choices=(None,) + SHAPE_SCALES),
        "orthogonalizer": H.Hyper("polar_express", "orthogonalization method (accurate: it sets the scale)",
                                  kind="choice", choices=MuonRule.hypers["orthogonalizer"].choices,
                                  allow_callable=True),
        "compute_dtype": H.Hyper("float32", "dtype of the iteration; None = the update's dtype",
                                 kind="choice", choices=COMPUTE_DTYPES + (None,)),
    }

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        O = orthogonalize_group(X, group)
        work = torch.promote_types(O.dtype, torch.float32)
        nuclear = (X.to(work) * O.to(work)).sum(dim=(-2, -1), keepdim=True)  # ⟨M, U_p⟩ = tr(H)
        return (O.to(work) * nuclear).to(O.dtype)


register(
    OptimizerSpec(
        name="polargrad",
        rule=PolarGradRule(),
        summary="W ← W − η·‖M‖_*·polar(M): Muon scaled by the nuclear norm ⟨M, U_p⟩ of the momentum",
        recommended={"lr": 0.3},
        source="Lau, Long, Su, PolarGrad, arXiv 2505.21799; github timlautk/polargrad polar_grad.py",
        certainty="EXACT",
        state="1× (momentum_buffer)",
        search_space={"lr": (1e-3, 3.0)},
    )
)
