"""Conda (Column-Normalized Adam): Adam's second moment in the momentum's singular basis.

Wang et al., "Conda: Column-Normalized Adam for Training Large Language Models Faster"
(arXiv 2509.24218); code github.com/jie040109/Conda ``conda_torch/conda.py``, ``projector.py``;
kozistr ``pytorch_optimizer/optimizer/conda.py`` [EXACT]. For W ∈ R^{m×n}, step t = 1, 2, ...::

    m ← β₁ m + (1−β₁) G                                   exp_avg, in the original space
    if (t − 1) mod T = 0:  U Σ Vᵀ = svd(m)  (thin, ≥ float32)
        P ← Vᵀ (n×n) if m ≥ n ("right")  else  U (m×m) ("left")      proj
    rot(X) = X Pᵀ (m ≥ n)  or  Pᵀ X (m < n)            back(Y) = Y P  or  P Y
    v ← β₂ v + (1−β₂) rot(G)²                             exp_avg_sq, in the rotated basis
    u ← back( rot(m) / (√v + ε) )
    W ← (1 − ηλ) W − η·scale·√(1−β₂ᵗ)/(1−β₁ᵗ) · u

P is a full orthogonal basis of the small side, refreshed every T = ``update_proj_gap`` steps, so
between refreshes the normalisation is per singular direction ("column"). When the momentum's
singular basis is the standard one (P a signed permutation) the rotation cancels and Conda is
Adam (with ε inside the bias correction, as above); the tests check this and a float64 for-loop
of the formula above.

Deviation: Conda decays *after* the update (``W ← W − ηλW`` with the updated W); muonlab's single
parameter write decays before it (difference ``O(η²λ)``). Defaults: the class's ``lr 1e-3, betas
(0.9, 0.999), ε 1e-8, weight_decay 0``; ``update_proj_gap 2000`` and ``scale 1`` (kozistr; the
GPT-2 125M config uses lr 6e-3, betas (0.9, 0.99), wd 0.01, scale 0.25, T 2000). Non-matrix
parameters go to AdamW (Conda: plain AdamW for them). P is stored in the parameter's dtype (what
``load_state_dict`` casts it to) and computed in ≥ float32.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..matfn import matrix_shape
from ..registry import OptimizerSpec, register
from . import hyper as H
from .rule import MATRIX_HYPERS, MatrixRule, scalar
from .steps import gather_states, matrix_state_zeros, scatter_states_
from .state import Slot


class CondaRule(MatrixRule):
    """Conda as a :class:`MatrixRule` (see the module docstring for the math)."""

    name = "conda"
    hypers = {
        **MATRIX_HYPERS,
        "lr": H.Hyper(1e-3, "learning rate η (Conda class default)", low=0.0),
        "betas": H.BETAS,
        "eps": H.ADAM_EPS,
        "update_proj_gap": H.Hyper(2000, "T: refresh the SVD basis every T steps", kind="int", low=1),
        "scale": H.Hyper(1.0, "multiplier of the projected-back update", low=0.0),
    }
    state_spec = {  # all read by matrix_fn after pre; v and P written there
        "exp_avg": Slot("param", matrix_phase=True),
        "exp_avg_sq": Slot("param", matrix_phase=True),
        "proj": Slot("matrix", matrix_phase=True),
    }

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        k = min(matrix_shape(tuple(p.shape), group["matrix_view"]))
        z = lambda: torch.zeros_like(p, memory_format=torch.preserve_format)  # noqa: E731
        return {"exp_avg": z(), "exp_avg_sq": z(), "proj": matrix_state_zeros(p, group["matrix_view"], (k, k))}

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        state["exp_avg"].lerp_(grad, 1 - group["betas"][0])
        return grad  # the matrix phase needs G itself (for v) as well as m (from the state)

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        beta2 = group["betas"][1]
        work = torch.float64 if X.dtype == torch.float64 else torch.float32
        shape = tuple(X.shape[-2:])
        m = gather_states(states, "exp_avg", shape).to(work)
        k = min(shape)
        P = gather_states(states, "proj", (k, k)).to(work)
        refresh = [(int(st["step"].item()) - 1) % group["update_proj_gap"] == 0 for st in states]
        if any(refresh):
            U, _, Vh = torch.linalg.svd(m, full_matrices=False)
            per = X.size(0) // len(states)
            mask = torch.tensor(refresh, device=X.device).repeat_interleave(per)[:, None, None]
            P = torch.where(mask, Vh if shape[0] >= shape[1] else U, P)
            scatter_states_(states, "proj", P)
        if shape[0] >= shape[1]:
            rot, back = (lambda Y: Y @ P.mT), (lambda Y: Y @ P)
        else:
            rot, back = (lambda Y: P.mT @ Y), (lambda Y: P @ Y)
        g = rot(X.to(work))
        v = gather_states(states, "exp_avg_sq", shape).to(work).mul_(beta2).addcmul_(g, g, value=1 - beta2)
        scatter_states_(states, "exp_avg_sq", v)
        return back(rot(m) / (v.sqrt() + group["eps"])).to(X.dtype)

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        beta1, beta2 = group["betas"]
        t = state["step"].item()
        return O, scalar(group["lr"]) * group["scale"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)


register(
    OptimizerSpec(
        name="conda",
        rule=CondaRule(),
        summary="Adam with v in the momentum's SVD basis (refreshed every T steps): "
        "u = P-back(rot(m)/(√v+ε)), column-normalised Adam",
        recommended={"lr": 7e-3, "betas": (0.9, 0.99)},
        source="Wang et al., Conda, arXiv 2509.24218; github jie040109/Conda conda_torch/conda.py; "
        "kozistr pytorch_optimizer conda.py",
        certainty="EXACT",
        state="2× (exp_avg, exp_avg_sq) + min(m,n)² (proj)",
        search_space={"lr": (1e-4, 3e-2)},
    )
)
