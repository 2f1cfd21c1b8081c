"""convex_lipschitz: a convex Lipschitz function of a 2×2 matrix on which momentum-free Muon stalls.

Workload of claim 17. Parshakova, Khaled, Crawshaw, Garrigos and Gower ("Muon Does Not Converge on
Convex Lipschitz Functions", arXiv 2605.08980) show that for every step-size schedule some convex
Lipschitz function defeats Muon, and that error feedback restores convergence. Their construction
was not available to us; this is **our own** counterexample [RECON, checked numerically], not the
paper's::

    f(W) = |W₁₁ + W₂₂| + ε |W₁₁ − W₂₂| + |W₁₂| + |W₂₁|,   0 < ε < 1

convex (a sum of absolute values of linear maps), Lipschitz in Frobenius norm with constant
``√(4 + 2ε²)``, minimised at ``W* = 0`` with ``f* = 0``, and ``f(W) ≥ ε |W₁₁ − W₂₂|``. The
subgradient oracle (:func:`convex_subgradient`) takes ``sign(0) := +1`` in the two diagonal
terms and ``sign(0) := 0`` off the diagonal. From a diagonal ``W₀`` with ``c = W₁₁ − W₂₂ ≠ 0`` the
subgradient is ``diag(s + εt, s − εt)`` with both entries of sign ``s``, so its polar factor is
``s·I``: every momentum-free Muon step ``W ← W − η_t polar(G)`` moves only ``W₁₁ + W₂₂`` and
``f(W_t) ≥ ε|c|`` for **every** schedule. (With EMA momentum the invariance is no longer exact.)

The lab workload trains ``W`` with any optimizer: :meth:`ConvexLipschitz.loss` returns ``f(W)``
through an autograd function whose backward is exactly the oracle (autograd's own ``|x|'`` at 0
would be 0, not +1). Starting points come from the run's seed (:func:`initial_points`: a random
diagonal ``W₀`` with ``|c| ≥ 0.5``, plus ``perturb · N(0, 1)`` off the diagonal when ``perturb > 0``).
:mod:`muonlab.claims.convex` runs the same function, oracle and starting points in a batched
float64 simulation of Muon and EF-Muon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..workload import Workload

# ---- the function, its oracle and the starting points (shared with muonlab.claims.convex) ----------


def sign1(x: Tensor) -> Tensor:
    """``sign`` with ``sign(0) := +1``."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def convex_f(W: Tensor, eps: Tensor | float) -> Tensor:
    """Our counterexample (not the paper's), for ``W`` of shape ``(..., 2, 2)`` and ``0 < ε < 1``::

        f(W) = |W₁₁ + W₂₂| + ε |W₁₁ − W₂₂| + |W₁₂| + |W₂₁|

    A sum of absolute values of linear maps: convex, Lipschitz in Frobenius norm with constant
    √(4 + 2ε²) (the largest subgradient norm), minimised at W* = 0 with f* = 0, and
    ``f(W) ≥ ε |W₁₁ − W₂₂|``."""
    eps = torch.as_tensor(eps, dtype=W.dtype, device=W.device)
    d1, d2 = W[..., 0, 0], W[..., 1, 1]
    return (d1 + d2).abs() + eps * (d1 - d2).abs() + W[..., 0, 1].abs() + W[..., 1, 0].abs()


def convex_subgradient(W: Tensor, eps: Tensor | float) -> Tensor:
    """A subgradient oracle of :func:`convex_f`::

        s = sign(W₁₁ + W₂₂),  t = sign(W₁₁ − W₂₂)      with sign(0) := +1
        G = [[s + εt, sign(W₁₂)], [sign(W₂₁), s − εt]]  with sign(0) := 0 off the diagonal

    (each term's subdifferential at 0 contains the value chosen). For a diagonal W, G is diagonal
    and both diagonal entries have the sign of s (ε < 1), so the polar factor of G is ``s·I``."""
    eps = torch.as_tensor(eps, dtype=W.dtype, device=W.device)
    d1, d2 = W[..., 0, 0], W[..., 1, 1]
    s, t = sign1(d1 + d2), sign1(d1 - d2)
    row0 = torch.stack([s + eps * t, torch.sign(W[..., 0, 1])], -1)
    row1 = torch.stack([torch.sign(W[..., 1, 0]), s - eps * t], -1)
    return torch.stack([row0, row1], -2)


def initial_points(seed: int, perturb: float, *, spread: float = 2.0, min_gap: float = 0.5
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Replicate ``seed``'s starting points: a diagonal ``W₀ = diag(u₁, u₂)`` with
    ``u ~ U(−spread, spread)²`` redrawn until ``|u₁ − u₂| ≥ min_gap`` (so c = W₁₁ − W₂₂ ≠ 0), and the
    same matrix with off-diagonal entries ``perturb · N(0, 1)`` (the non-invariant variant)."""
    rng = np.random.default_rng(seed)
    while True:
        u = rng.uniform(-spread, spread, 2)
        if abs(u[0] - u[1]) >= min_gap:
            break
    diag = np.diag(u)
    pert = diag.copy()
    pert[0, 1], pert[1, 0] = perturb * rng.standard_normal(2)
    return diag, pert


class _ConvexF(torch.autograd.Function):
    """``f(W)`` whose backward is the oracle :func:`convex_subgradient` (times the upstream grad)."""

    @staticmethod
    def forward(ctx, W: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(W)
        ctx.eps = eps
        return convex_f(W, eps)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (W,) = ctx.saved_tensors
        return grad_out * convex_subgradient(W, ctx.eps), None


def convex_loss(W: Tensor, eps: float) -> Tensor:
    """``f(W)`` for a ``(2, 2)`` tensor, differentiable with gradient :func:`convex_subgradient`."""
    return _ConvexF.apply(W, float(eps))


# ---- the lab workload -----------------------------------------------------------------------------


@dataclass
class ConvexLipschitz(Workload):
    """Minimise our convex Lipschitz ``f`` over 2×2 matrices from a seed-dependent ``W₀``.

    Knobs:
        epsilon: ε in (0, 1) (default 0.1); the floor of momentum-free Muon is ``ε|c|``. (Named
            ``epsilon``, not ``eps``, so that ``--set eps=…`` still reaches an optimizer's eps.)
        perturb: standard deviation of ``W₀``'s off-diagonal entries (default 0: a diagonal ``W₀``,
            on which the invariance holds exactly).

    The model holds ``W`` as ``W.weight`` and the start's ``c = W₁₁ − W₂₂`` as the buffer ``c0``.
    Metrics: ``val/f`` (headline), ``val/rel_f = f/(ε|c|)`` (≥ 1 means the iterate never crossed
    Muon's floor), ``val/gap_ratio = (W₁₁ − W₂₂)/c`` (1 while the diagonal gap is frozen) and
    ``val/offdiag = |W₁₂| + |W₂₁|``. There is no data: :meth:`get_batch` returns None (a
    deterministic oracle).
    """

    name = "convex_lipschitz"
    description = "convex Lipschitz f on 2x2 matrices where momentum-free Muon stalls (claim 17)"
    default_steps = 2000
    eval_every = 100
    metric = "val/f"
    params_name: ClassVar[str] = "W.weight"

    epsilon: float = 0.1
    perturb: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.epsilon < 1:
            raise ValueError(f"convex_lipschitz: epsilon={self.epsilon} must lie in (0, 1)")
        if not self.perturb >= 0:
            raise ValueError(f"convex_lipschitz: perturb={self.perturb} must be >= 0")

    def build_model(self, seed: int) -> nn.Module:
        _, W0 = initial_points(seed, self.perturb)  # equal to the diagonal start when perturb = 0
        model = nn.Module()
        model.W = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            model.W.weight.copy_(torch.from_numpy(W0))
        w = model.W.weight.detach().double()  # the gap of the stored (rounded) start, so val/gap_ratio is exact
        model.register_buffer("c0", (w[0, 0] - w[1, 1]).clone())
        return model

    def get_batch(self, gen: torch.Generator) -> None:
        return None  # a deterministic subgradient oracle: no data

    def loss(self, model: nn.Module, batch: None) -> Tensor:
        return convex_loss(model.W.weight, self.epsilon)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        W = model.W.weight.detach().double()
        c0 = float(model.c0)
        f = float(convex_f(W, self.epsilon))
        return {"val/f": f, "val/rel_f": f / (self.epsilon * abs(c0)),
                "val/gap_ratio": float(W[0, 0] - W[1, 1]) / c0,
                "val/offdiag": float(W[0, 1].abs() + W[1, 0].abs())}

    def routing(self) -> dict:
        # W is the problem's matrix: a hidden matrix for the matrix methods.
        return {"roles": {self.params_name: "hidden"}}
