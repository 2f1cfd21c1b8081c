"""Kaon: keep the momentum's singular vectors, replace its singular values by pseudo-random ones.

Shumaylov et al., "Muon is Not That Special" (arXiv 2605.11181, seed 001), as relayed by
junaidaliop/zij ``canon/math/freonkaon.md`` [SECONDARY]: Muon's spectrum is not what matters; any
``O = U diag(ξ) Vᵀ`` with ξ ∈ (0, 1] trains as well once the step size is tuned. Outer loop as
Freon's (``M ← μM + G``, μ = 0.95; ``W ← (1 − ηλ) W − η·s(m, n)·O``). Two realisations::

    "chaotic" (default; the reported matmul-only one):
        X₀ = M/‖M‖_F;   X_k = 4.1·(I − X Xᵀ)² X   (k = 1..kaon_steps);   O = X_T / 1.175
    "uniform" [RECON]:  M = U Σ Vᵀ (SVD);   O = U diag(ξ) Vᵀ,   ξᵢ ~ U(0, 1] i.i.d.

The chaotic map acts on each singular value as ``h(σ) = 4.1σ(1−σ²)²``, which maps [0, 1.1735]
into itself (its maximum, at σ = 1/√5, is 1.1735; 1.175 normalises it), so O has M's singular
vectors and singular values ``h^T(σ/‖M‖_F)/1.175 ∈ [0, 1)``: small ones grow ×4.1 per step, then
wander chaotically. Deterministic (bitwise, for one batching), but sensitive to round-off, as a
pseudo-random generator is. With ``kaon_steps = 0`` it is ``M/(1.175‖M‖_F)``: Freon's q = 2.
In "uniform", singular values at or below ``max(m, n)·ε·σ₁`` (the null space) get ξ = 0, and ξ is
drawn from a generator seeded by (``seed``, parameter key, step), so it is reproducible and
survives ``state_dict`` round trips (same-shape parameters get different ξ through their key: the
CRC-32 of the name, else the position in the group).

Defaults: ``kaon_steps = 10`` (GUESS: the paper's count was not found; 10 steps lift any
σ/‖M‖_F ≥ 1e-6 into the chaotic range) and lr (GUESS, tuned on the test MLP).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import OptimizerSpec, register
from . import hyper as H
from .seeding import param_key, seeded_generator
from .freon import OUTER_HYPERS
from .muon import MuonRule
from .state import Slot

KAON_GAIN = 4.1  # the map's gain (zij freonkaon.md)
KAON_NORM = 1.175  # ≈ max of 4.1σ(1−σ²)² on [0, 1] (= 1.1735 at σ = 1/√5), so O's σ ≤ 1
SPECTRA = ("chaotic", "uniform")


def chaotic_spectrum(X: Tensor, steps: int, *, eps: float = 1e-7, compute_dtype=torch.float32) -> Tensor:
    """``X_T/1.175`` for ``X₀ = X/‖X‖_F``, ``X_k = 4.1(I − X Xᵀ)² X``; batched ``(..., m, n)``."""
    work = torch.float64 if X.dtype == torch.float64 else compute_dtype
    A = X.to(work)
    tall = A.size(-2) > A.size(-1)
    if tall:
        A = A.mT  # every Gram product on the small side
    A = A / torch.linalg.matrix_norm(A).clamp_min(eps)[..., None, None]
    for _ in range(steps):
        G = A @ A.mT
        Y = A - G @ A  # (I − G) A
        A = KAON_GAIN * (Y - G @ Y)  # 4.1 (I − G)² A
    A = A / KAON_NORM
    return (A.mT if tall else A).to(X.dtype)


def uniform_spectrum(X: Tensor, xi: Tensor) -> Tensor:
    """``U diag(ξ) Vᵀ`` for ``X = U Σ Vᵀ`` (thin SVD, ≥ float32); null directions get 0."""
    work = torch.float64 if X.dtype == torch.float64 else torch.float32
    U, S, Vh = torch.linalg.svd(X.to(work), full_matrices=False)
    keep = S > max(X.shape[-2:]) * torch.finfo(work).eps * S[..., :1]
    return ((U * (xi.to(work) * keep).unsqueeze(-2)) @ Vh).to(X.dtype)


class KaonRule(MuonRule):
    """Kaon as a :class:`MatrixRule`: Muon's momentum (``pre``), a random-spectrum ``matrix_fn``."""

    name = "kaon"
    hypers = {
        **OUTER_HYPERS,
        "lr": H.Hyper(0.02, "learning rate η (GUESS)", low=0.0),
        "spectrum": H.Hyper("chaotic", "chaotic map (matmuls) or uniform ξ on an SVD", kind="choice",
                            choices=SPECTRA),
        "kaon_steps": H.Hyper(10, "chaotic-map iterations (GUESS)", kind="int", low=0, high=1000),
        "eps": H.Hyper(1e-7, "floor of ‖M‖_F before the chaotic map", low=0.0),
        "seed": H.Hyper(0, "seed of the uniform ξ", kind="int", low=0),
    }

    # matrix_fn reads only the step counter and the (plain int) draw key.
    state_spec = {**MuonRule.state_spec, "draw_key": Slot("counter")}

    def init_state(self, p: Tensor, group: dict) -> dict:
        return {**super().init_state(p, group), "draw_key": param_key(p, group)}

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        dtype = getattr(torch, group["compute_dtype"])
        if group["spectrum"] == "chaotic":
            return chaotic_spectrum(X, group["kaon_steps"], eps=group["eps"], compute_dtype=dtype)
        per, k = X.size(0) // len(states), min(X.shape[-2:])
        xi = torch.cat([
            1 - torch.rand(per, k, generator=seeded_generator(group["seed"], st["draw_key"], int(st["step"].item())))
            for st in states
        ])  # U[0, 1) → (0, 1]
        return uniform_spectrum(X, xi.to(X.device))


register(
    OptimizerSpec(
        name="kaon",
        configs={"uniform": {"spectrum": "uniform"}},
        rule=KaonRule(),
        summary="M ← μM + G; W ← W − η·U diag(ξ) Vᵀ with pseudo-random ξ ∈ (0,1] (chaotic map "
        "4.1σ(1−σ²)² or uniform on an SVD)",
        recommended={"lr": 0.05},
        source="Shumaylov et al., Muon is Not That Special, arXiv 2605.11181 (via zij canon/math/freonkaon.md)",
        certainty="SECONDARY",
        state="1× (momentum_buffer)",
        search_space={"lr": (1e-3, 1e-1)},
    )
)
