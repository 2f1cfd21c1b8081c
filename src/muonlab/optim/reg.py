"""REG: Muon's structure with row-and-column scaling (matrix balancing) in place of the matrix sign.

Liu, Wu, Fu, Liu, Han, Zhong, Yuan, "REG: A Regularization Optimizer for Robust Training Dynamics"
(arXiv 2510.03691). No code and no paper body were found. What is known [SECONDARY: abstract,
introduction, survey notes (Hiroki11x/Papers #434)]: REG keeps momentum on the matrix and one
operator applied to the whole momentum, but replaces msign(M) = polar(M) by the RACS
(Row-And-Column-Scaling) operator, motivated by matrix balancing/equilibration, which regularises
the update "less drastically" than the sign and needs no Newton–Schulz; an RMS scaling keeps the
update AdamW-sized; a norm exponent p = 2 worked best; AdamW for the embedding. The operator below
is our reconstruction [RECON]::

    M ← βM + (1−β)G                                  momentum_buffer (β = 0.9 [GUESS])
    repeat balance_steps times (1: one Ruiz step):
        r_i = ‖M̃_{i,:}‖_p,  c_j = ‖M̃_{:,j}‖_p          row / column p-norms (p = 2)
        M̃ ← diag(r + ε)^{−κ} M̃ diag(c + ε)^{−κ}          κ = ½: Ruiz equilibration (default)
    U ← ρ·√(mn)·M̃ / ‖M̃‖_F                            update RMS ρ = 0.2 (AdamW-matched [GUESS])
    W ← (1 − ηλ)W − ηU

``stats="ema"`` replaces the instantaneous r², c² (first balancing step) by EMAs with ``beta2``
(``row_stats``, ``col_stats``), the form of the RACS optimizer of Gong et al. (arXiv 2502.07752;
kozistr ``pytorch_optimizer.RACS``: κ = 1, mean-square statistics of G) [EXACT-2 for that class,
RECON as REG]. κ = 1 with p = 2 is that operator's instantaneous form.

Properties (tested): κ = 0 gives the RMS-normalised momentum (normalised SGD); a momentum with
entries of equal magnitude gives ρ·sign(M) (sign descent); a scaled orthogonal momentum gives
ρ√n·polar(M), i.e. Muon with ``match_rms_adamw`` scaling (0.2·√n) — REG agrees with sign and polar
where those agree, and in between it compresses magnitudes instead of flattening them: for a
rank-1 M = abᵀ (κ = ½, p = 2, ε = 0) M̃_ij = sign(a_i b_j)·√(|a_i||b_j|)/√(‖a‖‖b‖), whereas
polar(M) = abᵀ/(‖a‖‖b‖) keeps a's and b's profiles and sign(M) flattens them to ±1.
Repeated balancing (``balance_steps`` > 1) drives the row and column norms to be equal.

Defaults [GUESS]: β = 0.9 without Nesterov, κ = ½, p = 2, ε = 1e-8, ρ = 0.2, lr 1e-3 (an AdamW lr,
``recommended``: 1e-2 from a sweep on the contract MLP), weight decay 0. Hidden matrices only; embeddings and the head take AdamW
(:func:`muonlab.create_optimizer`; for the head a GUESS).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from ..matfn import matrix_shape
from ..registry import OptimizerSpec, register
from . import hyper as H
from .rule import MATRIX_HYPERS, MatrixRule, scalar
from .state import PARAM, Slot
from .steps import gather_states, matrix_state_zeros, momentum_, scatter_states_

STATS = ("instant", "ema")


def balance(M: Tensor, kappa: float = 0.5, p: float = 2.0, eps: float = 1e-8, steps: int = 1,
            row_sq: Tensor | None = None, col_sq: Tensor | None = None) -> Tensor:
    """``diag(r+ε)^{−κ} M diag(c+ε)^{−κ}`` with row/column p-norms r, c, repeated ``steps`` times
    (batched over leading dims; ≥ float32). ``row_sq``/``col_sq`` (squared norms) replace the
    first step's statistics (EMA mode)."""
    work = torch.promote_types(M.dtype, torch.float32)
    X = M.to(work)
    for k in range(steps):
        if k == 0 and row_sq is not None:
            r, c = row_sq.sqrt(), col_sq.sqrt()
        else:
            r = torch.linalg.vector_norm(X, ord=p, dim=-1)
            c = torch.linalg.vector_norm(X, ord=p, dim=-2)
        X = X / ((r + eps) ** kappa)[..., :, None] / ((c + eps) ** kappa)[..., None, :]
    return X


def rms_scale(X: Tensor, rho: float) -> Tensor:
    """``ρ·√(mn)·X/‖X‖_F`` per matrix (a zero matrix stays zero)."""
    m, n = X.shape[-2:]
    norm = torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True)
    return X * (rho * math.sqrt(m * n) / norm.clamp_min(torch.finfo(X.dtype).tiny))


class REGRule(MatrixRule):
    """REG as a :class:`MatrixRule` (see the module docstring)."""

    name = "reg"
    hypers: ClassVar[dict[str, H.Hyper]] = {
        **MATRIX_HYPERS,
        "lr": H.Hyper(1e-3, "learning rate η (AdamW-compatible by the RMS scaling)", low=0.0),
        "momentum": H.Hyper(0.9, "β of the momentum [GUESS]", low=0.0, high=1.0, high_open=True),
        "nesterov": H.Hyper(False, "Nesterov look-ahead (not in the relayed rule)", kind="bool"),
        "momentum_form": H.MOMENTUM_FORM,
        "kappa": H.Hyper(0.5, "κ: exponent of the row/column scaling (½ Ruiz, 1 RACS) [RECON]", low=0.0),
        "norm_p": H.Hyper(2.0, "p of the row/column norms (paper: 2 best)", low=1.0),
        "balance_steps": H.Hyper(1, "row/column scaling steps (1 = one Ruiz step) [RECON]", kind="int",
                                 low=1, high=100),
        "stats": H.Hyper("instant", "row/column statistics: instant, or EMAs (RACS form)", kind="choice",
                         choices=STATS),
        "beta2": H.Hyper(0.95, "β₂ of the EMA statistics (stats='ema')", low=0.0, high=1.0, high_open=True),
        "eps": H.Hyper(1e-8, "ε added to the row/column norms [GUESS]", low=0.0),
        "rms": H.Hyper(0.2, "ρ: RMS of the update (AdamW-matched) [GUESS]", low=0.0),
    }
    state_spec: ClassVar[dict[str, Slot]] = {
        "momentum_buffer": PARAM,
        "row_stats": Slot("matrix", matrix_phase=True, doc="EMA of squared row norms (stats='ema')"),
        "col_stats": Slot("matrix", matrix_phase=True, doc="EMA of squared column norms (stats='ema')"),
    }

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        view = group.get("matrix_view")
        m, n = matrix_shape(tuple(p.shape), view)
        dtype = torch.promote_types(p.dtype, torch.float32)
        return {
            "momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format),
            "row_stats": matrix_state_zeros(p, view, (m,), dtype),
            "col_stats": matrix_state_zeros(p, view, (n,), dtype),
        }

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        return momentum_(state["momentum_buffer"], grad, group["momentum"], nesterov=group["nesterov"],
                         form=group["momentum_form"])

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        row_sq = col_sq = None
        if group["stats"] == "ema":
            _, m, n = X.shape
            work = torch.promote_types(X.dtype, torch.float32)
            Xw = X.to(work)
            p, b2 = group["norm_p"], group["beta2"]
            row_sq = gather_states(states, "row_stats", (m,)).to(work)
            col_sq = gather_states(states, "col_stats", (n,)).to(work)
            row_sq.lerp_(torch.linalg.vector_norm(Xw, ord=p, dim=-1).square(), 1 - b2)
            col_sq.lerp_(torch.linalg.vector_norm(Xw, ord=p, dim=-2).square(), 1 - b2)
            scatter_states_(states, "row_stats", row_sq)
            scatter_states_(states, "col_stats", col_sq)
        U = balance(X, group["kappa"], group["norm_p"], group["eps"], group["balance_steps"], row_sq, col_sq)
        return rms_scale(U, group["rms"]).to(X.dtype)

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        return O, scalar(group["lr"])  # the RMS scaling replaces a shape factor


register(
    OptimizerSpec(
        name="reg",
        rule=REGRule(),
        summary="W ← W − η·ρ√(mn)·M̃/‖M̃‖_F, M̃ = D_r^{−κ} M D_c^{−κ} (row/column p-norm balancing of the "
        "momentum, κ = ½) instead of msign(M)",
        recommended={"lr": 1e-2},
        source="Liu et al., REG, arXiv 2510.03691 (abstract, survey notes); RACS: Gong et al., "
        "arXiv 2502.07752, kozistr pytorch_optimizer racs.py",
        certainty="RECON",
        state="1× + (m+n) (momentum_buffer, row_stats, col_stats)",
        search_space={"lr": (1e-4, 3e-2)},
        configs={
            "racs_ema": {"stats": "ema", "kappa": 1.0},
            "ruiz3_nesterov": {"balance_steps": 3, "nesterov": True, "norm_p": 1.5},
        },
    )
)
