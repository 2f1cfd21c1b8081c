"""NorMuon: Muon whose orthogonalized update is normalised per output neuron (row) by an EMA.

Math (per matrix W ∈ R^{m×n}; official code, ``scale_mode="official"``, the default)::

    M ← β₁M + (1−β₁)G;   X ← (1−β₁)G + β₁M  if nesterov else M          momentum_buffer
    O ← orthogonalize(X)
    v ← β₂v + (1−β₂)·mean_j(O ⊙ O)            (m×1, no bias correction)  second_momentum_buffer
    Ō ← O / (√v + ε)
    Ō ← Ō · ‖O‖_F / (‖Ō‖_F + ε)               keeps Muon's Frobenius norm
    W ← (1 − ηλ)W − η·s(m, n)·Ō               s = √max(1, m/n) ("original", adjust_lr_fn)

``scale_mode="paper"`` (the paper's form, per the authors in issues #6 and #9)::

    Ō ← O / √(v + ε);   W ← (1 − ηλ)W − η·0.2·√(mn)/(‖Ō‖_F + ε)·Ō      (update RMS 0.2)

which replaces the shape factor (so ``adjust_lr_fn`` must stay None). The paper also uses plain
momentum: pass ``nesterov=False`` for the full paper configuration.

Defaults (official ``normuon.py``): lr 0.02 (given by ``recommended``), momentum β₁ 0.95 with
Nesterov, β₂ 0.95, ε 1e-10, weight decay 0. The normalisation axis is the output neuron, i.e. the
rows of the ``(out, in·∏k)`` matrix for a conv filter (the official code instead normalises the
4-D tensor over its last, kernel-width, dimension).

Reduction: for a wide matrix (m ≤ n) whose orthogonalization is exact, the rows of O = U Vᵀ are
orthonormal, v is uniform over rows, and NorMuon is exactly Muon ("official") or Muon with
``adjust_lr_fn="match_rms_adamw"`` ("paper").

Source: Li, Liu, Liang, Chen, Zhao, "NorMuon", arXiv 2510.05491; github zichongli5/NorMuon
``normuon.py`` @ e5aaaf4 [EXACT code; paper form EXACT-2 via the repository's issues].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..matfn import matrix_shape
from ..registry import OptimizerSpec, register
from . import hyper as H
from .muon import MuonRule
from .rule import orthogonalize_group, scalar
from .steps import gather_states, matrix_state_zeros, scatter_states_, shape_scale
from .state import PARAM, Slot

SCALE_MODES = ("official", "paper")


class NorMuonRule(MuonRule):
    """Muon + per-row second-moment normalisation (see the module docstring)."""

    name = "normuon"
    hypers = {
        **MuonRule.hypers,
        "weight_decay": H.Hyper(0.0, "decoupled weight decay λ (official default 0)", low=0.0),
        "beta2": H.Hyper(0.95, "EMA coefficient β₂ of the per-row second moment", low=0.0, high=1.0,
                         high_open=True),
        "norm_eps": H.Hyper(1e-10, "ε of the row normalisation and of the norm restoration", low=0.0),
        "scale_mode": H.Hyper("official", "official: restore ‖O‖_F, then s(m,n); paper: RMS 0.2",
                              kind="choice", choices=SCALE_MODES),
    }
    state_spec = {"momentum_buffer": PARAM, "second_momentum_buffer": Slot("matrix", matrix_phase=True)}

    def check_param(self, p: Tensor, group: dict, where: str) -> None:
        super().check_param(p, group, where)
        if group["scale_mode"] == "paper" and group["adjust_lr_fn"] is not None:
            raise ValueError(
                f"{where}: scale_mode='paper' sets the update RMS to 0.2 itself; "
                f"adjust_lr_fn={group['adjust_lr_fn']!r} would be ignored, leave it None"
            )

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        m, _ = matrix_shape(tuple(p.shape), group.get("matrix_view"))
        v = matrix_state_zeros(p, group.get("matrix_view"), (m, 1))
        return {**super().init_state(p, group), "second_momentum_buffer": v}

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        O = orthogonalize_group(X, group)
        _, m, n = O.shape
        O32 = O.to(torch.promote_types(O.dtype, torch.float32))
        v = gather_states(states, "second_momentum_buffer", (m, 1)).to(O32.dtype)
        v.lerp_(O32.square().mean(-1, keepdim=True), 1 - group["beta2"])
        scatter_states_(states, "second_momentum_buffer", v)
        eps = group["norm_eps"]
        fro = lambda A: torch.linalg.vector_norm(A, dim=(-2, -1), keepdim=True)  # noqa: E731
        if group["scale_mode"] == "official":
            out = O32 / (v.sqrt() + eps)
            out = out * (fro(O32) / (fro(out) + eps))
        else:
            out = O32 / (v + eps).sqrt()
            out = out * (0.2 * math.sqrt(m * n) / (fro(out) + eps))
        return out.to(O.dtype)

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        if group["scale_mode"] == "paper":
            return O, scalar(group["lr"])
        m, n = matrix_shape(tuple(p.shape), group.get("matrix_view"))
        return O, scalar(group["lr"]) * shape_scale(m, n, group["adjust_lr_fn"])


register(
    OptimizerSpec(
        name="normuon",
        configs={"paper": {"scale_mode": "paper"}},
        rule=NorMuonRule(),
        summary="Muon, then each row of the update divided by an EMA of its mean square (norm kept)",
        recommended={"lr": 0.02, "weight_decay": 0.01},
        source="Li et al., NorMuon, arXiv 2510.05491; github zichongli5/NorMuon normuon.py",
        certainty="EXACT",
        state="1× + m per matrix (momentum_buffer, second_momentum_buffer m×1)",
        search_space={"lr": (1e-3, 1e-1)},
    )
)
