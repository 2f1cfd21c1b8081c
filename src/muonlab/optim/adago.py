"""AdaGO: Muon's orthogonal direction with an AdaGrad-norm step size (one scalar per matrix).

Math (per matrix W ∈ R^{m×n}, gradient G)::

    M ← μM + (1−μ)G                                          momentum_buffer (EMA, no Nesterov)
    v² ← v² + min(‖G‖_F, γ)²                                 grad_norm_sq_sum (0-D per matrix)
    a ← min(‖G‖_F, γ) / v                                    adaptive_step (of this step)
    α ← η·max(ε, a)
    W ← (1 − ηλ)W − α·s(m, n)·orthogonalize(M)               s = 1 ("none") by default

Properties the source states (tested): α ≤ η, since v ≥ min(‖G‖_F, γ); with gradient norms all ≥ γ
(or all equal) α_t = η/√t, AdaGrad-norm's decay.

Deviations, both forced by the library's contracts and both [GUESS] where the source is silent:
the step floor is relative, ``α ≥ ε·η`` (the summaries write ``max(ε, …)`` with an absolute ε, which
would move parameters at lr = 0 and ignore LR schedules); v² starts at 0 and a zero first gradient
gives a = 0 (no 0/0). Defaults γ = 1, ε = 1e-4, μ = 0.95 are [GUESS] (no published values found);
weight decay is decoupled (not specified by the source), default 0. ‖G‖_F is the norm of the
full gradient matrix, computed in ``pre``: an executor that runs ``pre`` on parameter shards would
have to all-reduce ‖G‖_F² there.

Source: Zhang, Liu, Schaeffer, "AdaGrad Meets Muon: Adaptive Stepsizes for Orthogonal Updates",
arXiv 2509.02981 [SECONDARY: zij ``canon/math/adago.md`` and the emergentmind summary agree].
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..matfn import from_matrix, to_matrix
from ..registry import OptimizerSpec, register
from . import hyper as H
from .muon import MuonRule
from .steps import matrix_state_zeros
from .state import PARAM, Slot


class AdaGORule(MuonRule):
    """Muon with the AdaGrad-norm step size α = η·max(ε, min(‖G‖, γ)/v) (see the module docstring)."""

    name = "adago"
    hypers = {
        **MuonRule.hypers,
        "weight_decay": H.Hyper(0.0, "decoupled weight decay λ (not in the source)", low=0.0),
        "nesterov": H.Hyper(False, "Nesterov look-ahead (AdaGO: plain momentum)", kind="bool"),
        "adjust_lr_fn": H.Hyper("none", "shape scaling of the update (AdaGO: none)", kind="choice",
                                choices=MuonRule.hypers["adjust_lr_fn"].choices),
        "gamma": H.Hyper(1.0, "clip γ of the gradient norm in v² and in the step [GUESS 1]", low=0.0,
                         low_open=True),
        "step_floor": H.Hyper(1e-4, "ε: lower bound of α/η [GUESS]", low=0.0, high=1.0),
    }
    state_spec = {
        "momentum_buffer": PARAM,
        "grad_norm_sq_sum": Slot("matrix"),
        "adaptive_step": Slot("matrix", matrix_phase=True, doc="written by pre, read by post"),
    }

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        dtype = torch.promote_types(p.dtype, torch.float32)
        view = group.get("matrix_view")
        return {
            **super().init_state(p, group),
            "grad_norm_sq_sum": matrix_state_zeros(p, view, dtype=dtype),
            "adaptive_step": matrix_state_zeros(p, view, dtype=dtype),
        }

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        G = to_matrix(grad, group.get("matrix_view"))
        norm = torch.linalg.vector_norm(G, dim=(-2, -1), dtype=state["grad_norm_sq_sum"].dtype)
        clipped = norm.clamp(max=group["gamma"])
        v_sq = state["grad_norm_sq_sum"].add_(clipped.square())
        # a = 0 when v = 0 (only possible while every gradient so far was zero).
        state["adaptive_step"].copy_(torch.where(v_sq > 0, clipped / v_sq.sqrt(), 0.0))
        return super().pre(p, grad, state, group)

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        O, step_size = super().post(p, O, state, group)  # η·s(m, n)
        a = state["adaptive_step"].clamp(min=group["step_floor"])
        view = group.get("matrix_view")
        scaled = to_matrix(O, view) * a[..., None, None].to(O.dtype)
        return from_matrix(scaled, p.shape), step_size


register(
    OptimizerSpec(
        name="adago",
        rule=AdaGORule(),
        summary="W ← W − η·max(ε, min(‖G‖,γ)/v)·polar(M), v² = Σ min(‖G‖,γ)² (AdaGrad-norm step)",
        recommended={"lr": 1.0},
        source="Zhang, Liu, Schaeffer, AdaGrad Meets Muon, arXiv 2509.02981 (zij/emergentmind summaries)",
        certainty="SECONDARY",
        state="1× + 2 scalars per matrix (momentum_buffer, grad_norm_sq_sum, adaptive_step)",
        search_space={"lr": (1e-2, 3.0)},
    )
)
