"""Dion: low-rank orthonormal updates from one power-iteration step, with error feedback.

Ahn, Xu et al., "Dion: Distributed Orthonormalized Updates" (arXiv 2504.05295); code
github.com/microsoft/dion (``dion_reference.py``, ``dion_simple.py`` @ 0a059a4) [EXACT]. Per matrix
``W ∈ R^{m×n}``, worked on in its tall orientation (``B = Mᵀ`` when ``m < n``) so that
``Q ∈ R^{k×r}`` lives on the small side ``k = min(m, n)``::

    B ← M + G                                   momentum_buffer (accumulate, no decay here)
    repeat power_iters times:                   (Dion: 1, warm-started from the last Q)
        P ← orth(B Q)                           Householder QR, ≥ float32             (a×r)
        R ← Bᵀ P                                                                      (k×r)
        Q ← R / (‖R_:,j‖₂ + ε)                  column-normalised: next warm start
    M ← B − (1−μ) P Rᵀ                          error feedback: what P missed stays at full weight
    W ← (1 − ηλ) W − η·√(m/n)·P Qᵀ               "spectral_norm" scale, unadjusted lr for the decay

    r = min(rank_multiple_of·⌈rank_fraction·k / rank_multiple_of⌉, m, n)

Consequences the tests check: the update has rank ≤ r and Frobenius norm exactly ``√r`` (P has
orthonormal columns, Q unit columns); at full rank ``P Pᵀ B = B``, so the error feedback is
``M ← μB`` — Muon's accumulate momentum — and the update tends to the exact polar factor of
``B`` as the power iteration converges (exactly with enough ``power_iters`` on a separated
spectrum).

Defaults (``dion_reference.py``): ``lr 0.01, μ 0.95, weight_decay 0.01, rank_fraction 1.0,
rank_multiple_of 1, power_iters 1, ε 1e-8``. The README finds ``rank_fraction 0.25`` near full-rank
quality at 3B. Not reproduced: the randomized Cholesky-QR (``qr_method="rcqr"``, a speed
optimisation; we always use Householder QR) and the distributed sharding.

Randomness: ``Q₀`` is Gaussian from a generator seeded by (``seed``, the parameter's key): the
CRC-32 of its name when the group has ``param_names`` (as :func:`muonlab.create_optimizer` sets),
else its position in the group. Q is stored in the optimizer state (in the parameter's dtype,
which is what ``load_state_dict`` casts it to anyway), so a resumed run is bitwise identical. A
zero (or non-finite) ``R`` keeps the previous Q, as Dion falls back to ``Q_init``; the rank is
fixed when a parameter's state is created.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..matfn import matrix_shape
from ..registry import OptimizerSpec, register
from . import hyper as H
from .seeding import param_key, seeded_generator
from .rule import MATRIX_HYPERS, MatrixRule
from .steps import SHAPE_SCALES, gather_states, matrix_state_zeros, scatter_states_
from .state import Slot

def dion_rank(m: int, n: int, rank_fraction: float, multiple_of: int) -> int:
    """Dion's rank: ``min(multiple_of·⌈rank_fraction·min(m,n)/multiple_of⌉, m, n)``, at least 1."""
    r = rank_fraction * min(m, n) / multiple_of
    r = multiple_of * math.ceil(round(r, 9))  # round: 0.1·30 must stay 3, not become 4
    return max(1, min(r, m, n))


class DionRule(MatrixRule):
    """Dion as a :class:`MatrixRule` (see the module docstring for the math)."""

    name = "dion"
    hypers = {
        **MATRIX_HYPERS,
        "lr": H.Hyper(0.01, "learning rate η (dion_reference default)", low=0.0),
        "weight_decay": H.Hyper(0.01, "decoupled weight decay λ (dion_reference default)", low=0.0),
        "momentum": H.Hyper(0.95, "μ: the share of the explained part P Rᵀ kept in momentum", low=0.0,
                            high=1.0, high_open=True),
        "rank_fraction": H.Hyper(1.0, "rank r as a fraction of min(m, n)", low=0.0, high=1.0, low_open=True),
        "rank_multiple_of": H.Hyper(1, "round r up to a multiple of this", kind="int", low=1),
        "power_iters": H.Hyper(1, "power-iteration steps per optimizer step (Dion: 1)", kind="int", low=1,
                               high=1000),
        "eps": H.Hyper(1e-8, "ε of the column normalisation of R", low=0.0),
        "seed": H.Hyper(0, "seed of the initial Q", kind="int", low=0),
        "adjust_lr_fn": H.Hyper("spectral_norm", "shape scaling (Dion: √(m/n))", kind="choice",
                                choices=(None,) + SHAPE_SCALES),
    }
    state_spec = {  # matrix_fn writes both (error feedback, warm start)
        "momentum_buffer": Slot("param", matrix_phase=True),
        "Q": Slot("matrix", matrix_phase=True),
    }

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        view = group["matrix_view"]
        m, n = matrix_shape(tuple(p.shape), view)
        r = dion_rank(m, n, group["rank_fraction"], group["rank_multiple_of"])
        Q = matrix_state_zeros(p, view, (min(m, n), r))
        gen = seeded_generator(group["seed"], param_key(p, group))
        Q.copy_(torch.randn(Q.shape, generator=gen, dtype=torch.float32))
        return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format), "Q": Q}

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        return state["momentum_buffer"].add_(grad)  # B = M + G

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        work = torch.float64 if X.dtype == torch.float64 else torch.float32
        wide = X.size(-2) < X.size(-1)
        B = X.to(work)
        B = B.mT if wide else B  # (batch, a, k) with a ≥ k
        Q_old = gather_states(states, "Q", tuple(states[0]["Q"].shape[-2:])).to(work)
        Q = Q_old
        for _ in range(group["power_iters"]):
            P, _ = torch.linalg.qr(B @ Q)
            R = B.mT @ P
            Q = R / (R.norm(dim=-2, keepdim=True) + group["eps"])
        O = P @ Q.mT
        M = B - (1 - group["momentum"]) * (P @ R.mT)
        ok = (R.abs().amax(dim=(-2, -1)) > 0) & torch.isfinite(R).all(dim=(-2, -1))
        Q = torch.where(ok[:, None, None], Q, Q_old)
        if wide:
            O, M = O.mT, M.mT
        scatter_states_(states, "momentum_buffer", M)
        scatter_states_(states, "Q", Q)
        return O.to(X.dtype)


register(
    OptimizerSpec(
        name="dion",
        configs={"low_rank": {"rank_fraction": 0.5}},
        rule=DionRule(),
        summary="rank-r power iteration P=orth(BQ), Q=colnorm(BᵀP) with error feedback M←B−(1−μ)PRᵀ; "
        "W ← W − η√(m/n)·PQᵀ",
        recommended={"lr": 0.02},
        source="Ahn, Xu et al., Dion, arXiv 2504.05295; github microsoft/dion dion_reference.py, dion_simple.py",
        certainty="EXACT",
        state="1× (momentum_buffer) + min(m,n)·r (Q)",
        search_space={"lr": (1e-3, 1e-1)},
    )
)
