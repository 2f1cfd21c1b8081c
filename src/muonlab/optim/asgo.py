"""ASGO (one-sided Shampoo) and DASGO (its diagonal form), as the authors' code runs them.

Math of the released code (per matrix W ∈ R^{m×n}, m = fan_out, gradient G, k = min(m, n))::

    M ← β₁M + (1−β₁)G                         momentum_buffer (EMA, no Nesterov, no bias correction)
    variant="asgo":                           precond P ∈ R^{k×k}, on the SMALLER side
        S ← G Gᵀ if m < n else Gᵀ G           (m = n: the right side GᵀG), the RAW gradient
        P ← β₂P + (1−β₂)S                     EMA (β₂ = 0.8: short memory)
        R ← P^{−1/2}                           inv_root: coupled Polar-Express iteration, 10 steps
        U ← R M if m < n else M R              (a non-finite R is replaced by I, as the code does)
    variant="dasgo":                          precond v ∈ Rⁿ, always the column (input) side
        v ← β₂v + (1−β₂)·Σᵢ G_{i,:}⊙G_{i,:}    column sums of squares (β₂ = 0.95)
        U ← M ⊙ (v + ε)^{−1/2}                 broadcast over rows
    U ← U · 0.2·√(m·n)/‖U‖_F                   fixed update RMS 0.2 (update_rms; a zero U stays 0)
    W ← (1 − ηλ)W − η U                       decoupled, lr-coupled weight decay λ = 0.1

The preconditioner is built from the raw gradient while the numerator is the momentum.

The inverse root (``inv_root``; :func:`inv_sqrt`):

* ``"polar_express"`` (the code's default): s = 1.01·‖P + εI‖_F, Y₀ = P/s, Z₀ = I and, with the
  Polar Express triples (1.01 safety factor on all but the last, the last repeated)::

      T ← Z Y;  B ← bT + cT²;  Y ← aY + YB;  Z ← aZ + BZ;      R = Z/√s

  Each eigenvalue follows the scalar Polar Express map from √(λ/s) and Z → (P/s)^{−1/2}. With 10
  steps it is exact to < 1% for λ/s ≥ 1e-8 and saturates at Π a_t ≈ 2.24e4 below, so the root is
  about min(λ^{−1/2}, 2.24e4/√s): this cap, not ε, keeps flat directions from exploding (tested).
* ``"newton_schulz"`` (the code's alternative): Y₀ = (P + εI)/(‖P‖_F + ε), Z₀ = I, the same
  coupled loop with (a, b, c) = (2, −1.5, 0.5), R = Z/√‖P‖_F.
* ``"eigh"``: the exact (P + εI)^{−1/2} by an eigendecomposition (eigenvalues clipped at 0).

Defaults: the code's classes, ``lr 1e-2, momentum 0.9, weight_decay 0.1``; ``beta2`` and ``eps``
default to the variant's own (ASGO 0.8 and 1e-10, DASGO 0.95 and 1e-8; ``None`` selects them);
``inv_steps 10``. The authors' trainer routes embeddings and 1-D parameters to Adam with the same
lr, betas (0.9, 0.95), no weight decay; :func:`muonlab.create_optimizer` sends them to AdamW.

The paper's Algorithm 1 (AdaGrad-type ``V_t = V_{t−1} + G Gᵀ``, ``W ← W − η V^{−1/2} G``, no
momentum) is reachable with ``accumulate=True, momentum=0, update_rms=None, inv_root="eigh"``
(registered config "paper"). Where the paper puts ε is not known [RECON]: here (V + εI)^{−1/2}.
With β₂ = 0, β₁ = 0 and the exact root, ASGO is Muon without momentum, with the exact polar factor
and Moonlight's 0.2·√max(m, n) scale (G (GᵀG)^{−1/2} = U Vᵀ; tested), and when GᵀG is diagonal
(orthogonal columns) ASGO equals DASGO (tested).

Differences from the code, each by choice: the preconditioner and the root are computed in the
parameter's precision when that is float64 (the code: always float32; bf16/fp16/fp32 parameters
get float32 here too); conv filters are handled through ``matrix_view`` (the code raises for
non-2-D tensors); one host synchronisation fewer (the RMS rescale uses a tensor norm, not
``.item()``). Not implemented: the paper's head-wise treatment of W_Q, W_K (absent from the code).

Source: An, Liu, Pan, Ren, Ma, Goldfarb, Zhang, "ASGO: Adaptive Structured Gradient Optimization",
arXiv 2503.20762 (NeurIPS 2025); github infinity-stars/ASGO ``optimizers/asgo.py``,
``optimizers/dasgo.py``, ``optimizers/utils/matrix_decom.py`` @ d3ef14b [EXACT code; paper form
SECONDARY, its ε placement RECON].
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from ..matfn import matrix_shape
from ..matfn.coefficients import POLAR_EXPRESS, POLAR_EXPRESS_SAFETY, schedule
from ..registry import OptimizerSpec, register
from . import hyper as H
from .rule import MATRIX_HYPERS, MatrixRule, scalar
from .state import Slot
from .steps import gather_states, matrix_state_zeros, scatter_states_

VARIANTS = ("asgo", "dasgo")
INV_ROOTS = ("polar_express", "newton_schulz", "eigh")
#: The code's class defaults that differ between the two variants.
VARIANT_DEFAULTS = {"asgo": {"beta2": 0.8, "eps": 1e-10}, "dasgo": {"beta2": 0.95, "eps": 1e-8}}
#: The coupled Newton–Schulz triple of the code's ``_matrix_inverse_root_newtonschulz``.
NS_INV_TRIPLE = (2.0, -1.5, 0.5)


def _coupled_iteration(Y: Tensor, table) -> Tensor:
    """Z of the coupled iteration ``T = ZY; B = bT + cT²; Y ← aY + YB; Z ← aZ + BZ`` from Z₀ = I."""
    Z = torch.eye(Y.size(-1), dtype=Y.dtype, device=Y.device).expand_as(Y)
    for a, b, c in table:
        T = Z @ Y
        B = b * T + c * (T @ T)
        Y = a * Y + Y @ B
        Z = a * Z + B @ Z
    return Z


def inv_sqrt(P: Tensor, method: str, eps: float, steps: int) -> Tensor:
    """≈ P^{−1/2} of symmetric PSD ``P`` (``(..., k, k)``), by ``method`` (see the module docstring).

    Returns NaN/Inf where the method breaks down (e.g. P = 0 with ε = 0); the caller decides.
    """
    k = P.size(-1)
    eye = torch.eye(k, dtype=P.dtype, device=P.device)
    if method == "polar_express":
        s = torch.linalg.matrix_norm(P + eps * eye, keepdim=True) * POLAR_EXPRESS_SAFETY
        return _coupled_iteration(P / s, schedule(POLAR_EXPRESS, steps)) / s.sqrt()
    if method == "newton_schulz":
        norm = torch.linalg.matrix_norm(P, keepdim=True)
        Z = _coupled_iteration((P + eps * eye) / (norm + eps), (NS_INV_TRIPLE,) * steps)
        return Z / norm.sqrt()
    if method == "eigh":
        evals, V = torch.linalg.eigh(P)
        return (V * (evals.clamp_min(0) + eps).pow(-0.5).unsqueeze(-2)) @ V.mT
    raise ValueError(f"unknown inverse root {method!r}; choose one of {INV_ROOTS}")


def rms_rescale(U: Tensor, rms: float) -> Tensor:
    """``U · rms·√(m·n)/‖U‖_F`` per matrix (update RMS ``rms``); a zero matrix stays zero."""
    m, n = U.shape[-2:]
    norm = torch.linalg.matrix_norm(U, keepdim=True)
    return U * torch.where(norm > 0, rms * math.sqrt(m * n) / norm, torch.zeros_like(norm))


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class ASGORule(MatrixRule):
    """ASGO / DASGO as a :class:`MatrixRule` (see the module docstring for the math)."""

    name = "asgo"
    batchable = True
    hypers: ClassVar[dict[str, H.Hyper]] = {
        **MATRIX_HYPERS,
        "lr": H.Hyper(1e-2, "learning rate η (the code's default; update RMS is η·0.2)", low=0.0),
        "weight_decay": H.Hyper(0.1, "decoupled weight decay λ (the code's default)", low=0.0),
        "variant": H.Hyper("asgo", "asgo: one-sided full-matrix preconditioner on the smaller side; "
                           "dasgo: diagonal, column sums of squares", kind="choice", choices=VARIANTS),
        "momentum": H.Hyper(0.9, "β₁ of the EMA momentum M ← β₁M + (1−β₁)G (the numerator)", low=0.0,
                            high=1.0, high_open=True),
        "beta2": H.Hyper(None, "β₂ of the preconditioner EMA; None = the variant's (ASGO 0.8, DASGO 0.95)",
                         low=0.0, high=1.0, high_open=True, optional=True),
        "eps": H.Hyper(None, "ε of the inverse root; None = the variant's (ASGO 1e-10, DASGO 1e-8)",
                       low=0.0, optional=True),
        "accumulate": H.Hyper(False, "P ← P + S (AdaGrad, the paper's Algorithm 1) instead of the EMA",
                              kind="bool"),
        "inv_root": H.Hyper("polar_express", "P^(-1/2) by the code's coupled Polar Express or Newton–Schulz "
                            "iteration, or exactly by eigh", kind="choice", choices=INV_ROOTS),
        "inv_steps": H.Hyper(10, "iterations of the inverse root (the code's matalg_steps)", kind="int",
                             low=1, high=1000),
        "update_rms": H.Hyper(0.2, "rescale U to this RMS (0.2·√(mn)/‖U‖_F); None = no rescale (paper)",
                              low=0.0, low_open=True, optional=True),
    }
    state_spec: ClassVar[dict[str, Slot]] = {  # matrix_fn reads M and reads/writes the preconditioner
        "momentum_buffer": Slot("param", matrix_phase=True),
        "precond": Slot("matrix", matrix_phase=True, doc="P (k×k) for asgo, v (n) for dasgo"),
    }

    @staticmethod
    def resolved(group: dict, key: str) -> float:
        """``beta2``/``eps`` of the group, or its variant's default when None."""
        value = group[key]
        return VARIANT_DEFAULTS[group["variant"]][key] if value is None else value

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        view = group["matrix_view"]
        m, n = matrix_shape(tuple(p.shape), view)
        tail = (min(m, n),) * 2 if group["variant"] == "asgo" else (n,)
        return {
            "momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format),
            # The code keeps P in float32 whatever the parameter's dtype (float64 stays float64 here).
            "precond": matrix_state_zeros(p, view, tail, dtype=_work_dtype(p.dtype)),
        }

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        state["momentum_buffer"].lerp_(grad, 1 - group["momentum"])
        return grad  # the matrix phase needs the raw G (for P) as well as M (from the state)

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        work = _work_dtype(X.dtype)
        m, n = X.shape[-2:]
        G = X.to(work)
        M = gather_states(states, "momentum_buffer", (m, n)).to(work)
        beta2, eps = self.resolved(group, "beta2"), self.resolved(group, "eps")
        if group["variant"] == "dasgo":
            S = G.square().sum(dim=-2)  # (B, n): column sums of squares
        else:
            S = G @ G.mT if m < n else G.mT @ G
        P = gather_states(states, "precond", tuple(S.shape[1:])).to(work)
        P = P.add_(S) if group["accumulate"] else P.lerp_(S, 1 - beta2)
        scatter_states_(states, "precond", P)
        if group["variant"] == "dasgo":
            U = M * (P + eps).pow(-0.5).unsqueeze(-2)
        else:
            R = inv_sqrt(P, group["inv_root"], eps, group["inv_steps"])
            bad = ~torch.isfinite(R).all(dim=(-2, -1), keepdim=True)
            R = torch.where(bad, torch.eye(R.size(-1), dtype=work, device=R.device).expand_as(R), R)
            U = R @ M if m < n else M @ R
        if group["update_rms"] is not None:
            U = rms_rescale(U, group["update_rms"])
        return U.to(X.dtype)

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        return O, scalar(group["lr"])  # the RMS rescale replaces any shape factor


register(
    OptimizerSpec(
        name="asgo",
        configs={
            "dasgo": {"variant": "dasgo"},
            "newton_schulz_root": {"inv_root": "newton_schulz"},
            "paper": {"accumulate": True, "momentum": 0.0, "update_rms": None, "inv_root": "eigh", "lr": 0.05},
        },
        rule=ASGORule(),
        summary="one-sided Shampoo: W ← W − η·rms0.2(P^{-1/2}M or MP^{-1/2}), P = EMA of GGᵀ/GᵀG on the "
        "smaller side (variant='dasgo': M⊙(v+ε)^{-1/2}, v = EMA of column sums of G²)",
        recommended={"lr": 1e-2},  # the code's lr (also its GPT-2 run config) and wd 0.1
        source="An et al., ASGO, arXiv 2503.20762; github infinity-stars/ASGO optimizers/asgo.py, dasgo.py @ d3ef14b",
        certainty="EXACT",
        state="1× + k² (momentum_buffer, precond k×k); dasgo: 1× + n",
        search_space={"lr": (1e-3, 1e-1)},
    )
)
