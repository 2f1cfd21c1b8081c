"""Freon: steepest descent in the Schatten-q norm, ``σ ↦ σ^{q−1}`` on the momentum's spectrum.

Shumaylov et al., "Muon is Not That Special" (arXiv 2605.11181, seed 001), as relayed by a
third-party math page (junaidaliop/zij ``canon/math/freonkaon.md``) [SECONDARY formula, RECON
implementation; the paper's QDWH-based iteration was not found]::

    M ← μ M + G                                   momentum_buffer (accumulate, μ = 0.95)
    M = U Σ Vᵀ,  σ̃ = σ / ‖σ‖_q                    normalise by the Schatten-q (quasi-)norm
    O = U diag(σ̃^{q−1}) Vᵀ                         = (M̃ M̃ᵀ)^{−c} M̃ with c = 1 − q/2
    W ← (1 − ηλ) W − η·s(m, n)·O                   s = 1 by default ("none")

q = 1 is Muon with the exact polar factor, q = 2 is SGD on the Frobenius-normalised momentum, and
q < 1 (the quasi-norm regime, where the paper's best GPT-2 runs are) *inverts* the spectrum:
small singular directions get the largest steps. For every q, ``⟨M, O⟩ = ‖M‖_{S_q}`` and
``Σ σ̃ᵢ^q = 1`` (O is the dual-norm steepest-descent direction), and O is invariant to the scale
of M (tests check these against a float64 SVD).

Computation (:func:`schatten_direction`): the eigendecomposition of the small-side Gram matrix
``A = X Xᵀ = Q Λ Qᵀ`` of the wide orientation, ``O = Q diag(w) Qᵀ X`` with
``w = max(σ, σ_f)^{q−2}·‖σ‖_q^{1−q}``. The floor ``σ_f = max(sv_floor·σ₁, √(8ε‖A‖_F))`` turns the
map into ``σ ↦ σ·max(σ, σ_f)^{q−2}``: exact ``σ^{q−1}`` above the floor, a linear ramp to 0 below
it (so rank-deficient momenta give 0, never an arbitrary null direction, and q < 1 amplifies by at
most ``sv_floor^{q−1}``). Eigen-directions below the rounding floor ``8ε‖A‖_F`` of the Gram product
are noise: mapped to 0 and left out of ``‖σ‖_q``. In float32 that floor is ≈ 1e-3·σ₁, so
``compute_dtype="float64"`` is the exact reference. (:func:`muonlab.matfn.power.spectral_power`
covers p ∈ [0, 1] only; Freon needs ``p = q − 1 < 0``.)

Defaults: ``q = 0.5`` and ``sv_floor = 1e-3`` are GUESSes (the paper's values were not found; it
reports q < 1 best); lr is a GUESS tuned on the test MLP — retune it whenever q changes, because
the update's size changes with q (spectral norm 1 at q = 1, Frobenius norm 1 at q = 2).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import OptimizerSpec, register
from . import hyper as H
from .muon import MuonRule
from .rule import MATRIX_HYPERS
from .steps import SHAPE_SCALES

_FLOOR_ULPS = 8  # rounding floor of a Gram product, in ε·‖A‖_F (measured in matfn/power.py)

#: The outer loop shared by Freon and Kaon (arXiv 2605.11181): accumulate momentum, μ = 0.95.
OUTER_HYPERS: dict[str, H.Hyper] = {
    **MATRIX_HYPERS,
    "momentum": H.Hyper(0.95, "momentum μ (accumulate form, the paper's)", low=0.0, high=1.0, high_open=True),
    "nesterov": H.Hyper(False, "Nesterov look-ahead (not in the paper)", kind="bool"),
    "momentum_form": H.Hyper("accumulate", "accumulate (M ← μM + G, the paper's) or ema", kind="choice",
                             choices=("accumulate", "ema")),
    "compute_dtype": H.Hyper("float32", "dtype of the spectral computation", kind="choice",
                             choices=("float32", "float64")),
    "adjust_lr_fn": H.Hyper("none", "shape scaling s(m, n) of the update (paper: none)", kind="choice",
                            choices=(None,) + SHAPE_SCALES),
}


def schatten_direction(X: Tensor, q: float, *, sv_floor: float = 0.0, compute_dtype=torch.float32) -> Tensor:
    """``U diag((σ/‖σ‖_q)^{q−1}) Vᵀ`` of ``X = U Σ Vᵀ``, batched ``(..., m, n)``, via a Gram eigh.

    See the module docstring for the floor. Returns ``X``'s shape and dtype; a zero matrix gives 0.
    """
    work = torch.float64 if X.dtype == torch.float64 else compute_dtype
    A = X.to(work)
    tall = A.size(-2) > A.size(-1)
    if tall:
        A = A.mT
    A = A / torch.linalg.matrix_norm(A).clamp_min(torch.finfo(work).tiny)[..., None, None]  # O(cX) = O(X)
    G = A @ A.mT
    G = 0.5 * (G + G.mT)
    lam, Q = torch.linalg.eigh(G)  # ascending
    noise = _FLOOR_ULPS * torch.finfo(work).eps * torch.linalg.matrix_norm(G)[..., None]
    alive = lam > noise
    sigma = torch.where(alive, lam, torch.zeros_like(lam)).sqrt()
    floor = torch.maximum(sv_floor * sigma[..., -1:], noise.sqrt())
    norm_q = sigma.pow(q).sum(-1, keepdim=True).pow(1 / q)
    gain = torch.where(norm_q > 0, norm_q.clamp_min(torch.finfo(work).tiny).pow(1 - q), torch.zeros_like(norm_q))
    w = torch.where(alive, sigma.clamp_min(floor.clamp_min(torch.finfo(work).tiny)).pow(q - 2) * gain,
                    torch.zeros_like(lam))
    O = (Q * w.unsqueeze(-2)) @ (Q.mT @ A)
    return (O.mT if tall else O).to(X.dtype)


class FreonRule(MuonRule):
    """Freon as a :class:`MatrixRule`: Muon's momentum (``pre``), a Schatten-q ``matrix_fn``."""

    name = "freon"
    hypers = {
        **OUTER_HYPERS,
        "lr": H.Hyper(1e-3, "learning rate η (GUESS, for q = 0.5; retune with q)", low=0.0),
        "q": H.Hyper(0.5, "Schatten exponent: 1 = Muon (polar), 2 = normalised SGD, <1 inverts (GUESS)",
                     low=0.0, high=8.0, low_open=True),
        "sv_floor": H.Hyper(1e-3, "σ floor relative to σ₁ of the map σ^{q−1} (GUESS)", low=0.0, high=1.0,
                            high_open=True),
    }


    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        return schatten_direction(X, group["q"], sv_floor=group["sv_floor"],
                                  compute_dtype=getattr(torch, group["compute_dtype"]))


register(
    OptimizerSpec(
        name="freon",
        configs={"q1.5": {"q": 1.5}},
        rule=FreonRule(),
        summary="M ← μM + G; W ← W − η·U diag((σ/‖σ‖_q)^{q−1}) Vᵀ (Schatten-q steepest descent; "
        "q=1 Muon, q=2 normalised SGD)",
        recommended={"lr": 3e-4},
        source="Shumaylov et al., Muon is Not That Special, arXiv 2605.11181 (via zij canon/math/freonkaon.md)",
        certainty="SECONDARY",
        state="1× (momentum_buffer)",
        search_space={"lr": (1e-4, 1e-1)},
    )
)
