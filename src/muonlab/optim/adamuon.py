"""AdaMuon: Muon with an element-wise second moment of the orthogonalized update, RMS-matched.

Math (per matrix W ∈ R^{m×n})::

    M ← βM + (1−β)G;   X ← (1−β)G + βM  if nesterov else M          momentum_buffer
    O ← orthogonalize(sign(X))          (sign only with sign_before_ns, the default)
    V ← β₂V + (1−β₂)·O ⊙ O              element-wise, no bias correction     v_buffer
    Ô ← O / (√V + ε)
    W ← (1 − ηλ)W − η·ρ·√(mn)/(‖Ô‖_F + ε)·Ô          update RMS ρ = 0.2 (Adam-matched)

Defaults (the official GPT-2 optimizer, Chongjie-Si/AdaMuon): lr 0.02 (class default), weight decay
0.01, momentum β 0.95 with Nesterov, β₂ = β (``beta2=None``), ε 1e-8, ρ 0.2, 5 Newton–Schulz steps.
The RMS rescale replaces Muon's shape factor, so there is no ``adjust_lr_fn``.

``sign_before_ns=False`` gives the kozistr/zij reading (no sign; their bias correction of V is a
uniform factor that the RMS rescale cancels up to ε). The repository's top-level ``adamuon.py``
(@ 3b84e03) also drops the sign and uses a separate β₂ = 0.999 with bias correction: that is
``sign_before_ns=False, beta2=0.999`` here, up to the same ε effect.

Source: Si, Zhang, Shen, "AdaMuon", arXiv 2507.11005; github Chongjie-Si/AdaMuon
``gpt2/models/optimizers/adamuon.py`` [EXACT official code].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..registry import OptimizerSpec, register
from . import hyper as H
from .rule import MATRIX_HYPERS, ORTHO_HYPERS, MatrixRule, orthogonalize_group, scalar
from .steps import gather_states, momentum_, scatter_states_
from .state import PARAM, Slot


class AdaMuonRule(MatrixRule):
    """Muon direction, Adam-style element-wise normalisation, RMS 0.2 (see the module docstring)."""

    name = "adamuon"
    hypers = {
        **MATRIX_HYPERS,
        **{k: h for k, h in ORTHO_HYPERS.items() if k != "adjust_lr_fn"},
        "weight_decay": H.Hyper(0.01, "decoupled weight decay λ (official default)", low=0.0),
        "momentum": H.MOMENTUM,
        "nesterov": H.NESTEROV,
        "momentum_form": H.MOMENTUM_FORM,
        "beta2": H.Hyper(None, "EMA coefficient β₂ of V; None = the momentum β (official)", low=0.0,
                         high=1.0, high_open=True, optional=True),
        "sign_before_ns": H.Hyper(True, "orthogonalize sign(X) instead of X (sign stabilisation)",
                                  kind="bool"),
        "norm_eps": H.Hyper(1e-8, "ε of the element-wise normalisation and of the RMS rescale", low=0.0),
        "update_rms": H.Hyper(0.2, "RMS ρ of the final update per unit lr (0.2 = Adam-matched)", low=0.0),
    }
    state_spec = {"momentum_buffer": PARAM, "v_buffer": Slot("param", matrix_phase=True)}

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        z = lambda: torch.zeros_like(p, memory_format=torch.preserve_format)  # noqa: E731
        return {"momentum_buffer": z(), "v_buffer": z()}

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        X = momentum_(state["momentum_buffer"], grad, group["momentum"], nesterov=group["nesterov"],
                      form=group["momentum_form"])
        return X.sign() if group["sign_before_ns"] else X

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        O = orthogonalize_group(X, group)
        _, m, n = O.shape
        O32 = O.to(torch.promote_types(O.dtype, torch.float32))
        beta2 = group["beta2"] if group["beta2"] is not None else group["momentum"]
        V = gather_states(states, "v_buffer", (m, n)).to(O32.dtype)
        V.mul_(beta2).addcmul_(O32, O32, value=1 - beta2)
        scatter_states_(states, "v_buffer", V)
        eps = group["norm_eps"]
        out = O32 / (V.sqrt() + eps)
        norm = torch.linalg.vector_norm(out, dim=(-2, -1), keepdim=True)
        return (out * (group["update_rms"] * math.sqrt(m * n) / (norm + eps))).to(O.dtype)

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        return O, scalar(group["lr"])  # the RMS rescale in matrix_fn is the whole scaling


register(
    OptimizerSpec(
        name="adamuon",
        configs={"no_sign": {"sign_before_ns": False}},
        rule=AdaMuonRule(),
        summary="orthogonalize sign(momentum), divide by an element-wise EMA of O², rescale to RMS 0.2",
        recommended={"lr": 0.02, "weight_decay": 0.01},
        source="Si, Zhang, Shen, AdaMuon, arXiv 2507.11005; github Chongjie-Si/AdaMuon",
        certainty="EXACT",
        state="2× (momentum_buffer, v_buffer)",
        search_space={"lr": (1e-3, 1e-1)},
    )
)
