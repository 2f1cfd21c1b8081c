"""TrasMuon: NorMuon-style row normalisation, unit-RMS calibration and energy trust-region damping.

Math (per matrix W ∈ R^{m×n}; ε one small constant)::

    M ← β₁M + (1−β₁)G                                       momentum_buffer (EMA, no Nesterov)
    O ← orthogonalize(M / (‖M‖_F/√(mn) + ε))                RMS-normalised input
    r ← β₂r + (1−β₂)·mean_j(O ⊙ O)                          row_second_moment (m×1)
    O_b ← diag((r + ε)^{-1/2})·O
    E_j ← Σ_i M_ij²                                         column (input-feature) energy
    E_ref ← β_E·E_ref + (1−β_E)·median_j E_j;  Ê_ref ← E_ref/(1 − β_Eᵗ)        energy_ref (scalar)
    c_j ← clip(1/(1 + α·log(1 + E_j/(Ê_ref + ε))), c_min, 1)                   per column
    W ← (1 − ηλ)W − η·√(mn)/(‖O_b‖_F + ε)·(O_b ⊙ c)        unit-RMS calibration, then damping

``damping = 0`` switches the trust region off (c = 1); then TrasMuon is NorMuon's paper form with
update RMS 1 instead of 0.2 (tested).

Defaults [GUESS unless stated]: α = 1, c_min = 0.1, β_E = 0.99 (the zij summary gives none);
β₁ = β₂ = 0.95 (Muon's and NorMuon's values); ε = 1e-8; weight decay 0. The E_ref EMA starts at 0
and is bias-corrected (our choice: the summary gives no initialisation); the median is the lower
median (``torch.median``) for an even number of columns.

Source: Cheng et al., "TrasMuon", arXiv 2602.13498 [SECONDARY: zij ``canon/math/trasmuon.md``; it
matches the abstract's "global RMS calibration and energy-based trust-region clipping"].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..matfn import matrix_shape
from ..registry import OptimizerSpec, register
from . import hyper as H
from .rule import MATRIX_HYPERS, ORTHO_HYPERS, MatrixRule, orthogonalize_group, scalar
from .steps import gather_states, matrix_state_zeros, momentum_, scatter_states_
from .state import PARAM, Slot


def _unit(doc: str, default: float) -> H.Hyper:
    return H.Hyper(default, doc, low=0.0, high=1.0, high_open=True)


class TrasMuonRule(MatrixRule):
    """Row-normalised, unit-RMS Muon with per-column energy damping (see the module docstring)."""

    name = "trasmuon"
    hypers = {
        **MATRIX_HYPERS,
        **{k: h for k, h in ORTHO_HYPERS.items() if k != "adjust_lr_fn"},
        "weight_decay": H.Hyper(0.0, "decoupled weight decay λ", low=0.0),
        "momentum": _unit("EMA coefficient β₁ of the momentum", 0.95),
        "beta2": _unit("EMA coefficient β₂ of the row second moment", 0.95),
        "energy_beta": _unit("EMA coefficient β_E of the reference column energy [GUESS 0.99]", 0.99),
        "damping": H.Hyper(1.0, "α of the trust region c = 1/(1 + α·log(1+ρ)); 0 = off [GUESS 1]", low=0.0),
        "min_damping": H.Hyper(0.1, "c_min: lower clip of the column factors [GUESS 0.1]", low=0.0, high=1.0),
        "norm_eps": H.Hyper(1e-8, "ε of the normalisations and the energy ratio", low=0.0),
    }
    state_spec = {
        "momentum_buffer": PARAM,
        "row_second_moment": Slot("matrix", matrix_phase=True),
        "energy_ref": Slot("matrix", matrix_phase=True),
    }

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        view = group.get("matrix_view")
        m, _ = matrix_shape(tuple(p.shape), view)
        return {
            "momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format),
            "row_second_moment": matrix_state_zeros(p, view, (m, 1)),
            "energy_ref": matrix_state_zeros(p, view, dtype=torch.promote_types(p.dtype, torch.float32)),
        }

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        return momentum_(state["momentum_buffer"], grad, group["momentum"], nesterov=False, form="ema")

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        B, m, n = X.shape
        eps = group["norm_eps"]
        M = X.to(torch.promote_types(X.dtype, torch.float32))
        fro = lambda A: torch.linalg.vector_norm(A, dim=(-2, -1), keepdim=True)  # noqa: E731
        O = orthogonalize_group(M / (fro(M) / math.sqrt(m * n) + eps), group).to(M.dtype)

        r = gather_states(states, "row_second_moment", (m, 1)).to(M.dtype)
        r.lerp_(O.square().mean(-1, keepdim=True), 1 - group["beta2"])
        scatter_states_(states, "row_second_moment", r)
        Ob = O * (r + eps).rsqrt()

        energy = M.square().sum(-2, keepdim=True)  # (B, 1, n)
        beta_e = group["energy_beta"]
        e_ref = gather_states(states, "energy_ref", ()).to(M.dtype)
        e_ref.lerp_(energy.median(dim=-1).values.reshape(B), 1 - beta_e)
        scatter_states_(states, "energy_ref", e_ref)
        t = torch.stack([st["step"] for st in states]).repeat_interleave(B // len(states)).to(M.dtype)
        e_hat = (e_ref / (1 - beta_e**t)).reshape(B, 1, 1)
        c = (1 / (1 + group["damping"] * torch.log1p(energy / (e_hat + eps)))).clamp(group["min_damping"], 1)

        return (Ob * c * (math.sqrt(m * n) / (fro(Ob) + eps))).to(X.dtype)

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        return O, scalar(group["lr"])  # the unit-RMS calibration in matrix_fn is the whole scaling


register(
    OptimizerSpec(
        name="trasmuon",
        rule=TrasMuonRule(),
        summary="row-normalised Muon rescaled to unit RMS, columns damped by 1/(1+α·log(1+E_j/E_ref))",
        recommended={"lr": 2e-3},
        source="Cheng et al., TrasMuon, arXiv 2602.13498 (zij canon/math/trasmuon.md)",
        certainty="SECONDARY",
        state="1× + m + 1 per matrix (momentum_buffer, row_second_moment m×1, energy_ref)",
        search_space={"lr": (1e-4, 1e-2)},
    )
)
