"""AuON: Muon's momentum, but a linear-time cosh-RMS "brake" instead of the orthogonalization.

Math (per matrix W ∈ R^{m×n}; the paper's form, the default)::

    M ← βM + (1−β)G;   Y ← (1−β)G + βM  if nesterov else M       momentum_buffer (EMA)
    Y ← NS_k(Y)                          only with hybrid=True (HybridAuON)
    X ← Y / (‖Y‖_F + 1e-7)
    r ← √(mean_ij cosh(γ·X_ij)²)          ≥ 1: the brake grows with heavy-tailed entries
    U ← X / (r + 1e-8)      (update_of="normalized")   or   Y / (r + 1e-8)   ("raw")
    W ← (1 − ηλ)W − η·s(m, n)·U           s = √max(1, m/n) ("original")

No SVD and no Newton–Schulz: O(mn) per step. Since ‖X‖_F = 1 the entries of X are O(1/√(mn)),
so for large matrices r ≈ 1 + γ²/(2mn) and the paper's update is close to the Frobenius-normalised
momentum (normalised SGD); the brake matters for small or very peaked matrices.

Two authors' implementations differ, and both are selectable:

* ``update_of="normalized"``, ``gamma=1``, ``adjust_lr_fn=None`` (√max(1, m/n)), no weight decay:
  the paper's formula (arXiv 2509.24320; as relayed by junaidaliop/zij ``canon/math/auon.md``) and
  the authors' experiment script ``Auon_Adam_train.py`` (github ryyzn9/AuON @ c87b862, lr 0.24,
  β 0.95, Nesterov, AdamW for embeddings and norms at lr/10). **The default.**
* ``update_of="raw"``, ``gamma=1.5``, ``adjust_lr_fn="none"``, decoupled weight decay: the
  authors' package ``auon/optimizer.py`` (``AuON``, ryyzn9/AuON @ bba2e82), where the brake divides
  the *unnormalised* Nesterov input, so the step keeps the momentum's scale (registered config
  ``"package"``). ``hybrid=True`` with it is the package's ``HybridAuON`` (5 Keller Newton–Schulz
  steps first); zij's page describes the hybrid with one NS step: ``ns_steps=1``.

The zij page writes the momentum as ``m ← (1−β)m + βG``; both authors' files use
``m ← βm + (1−β)G`` with β = 0.95 (``lerp``), which is what ``momentum`` means here.

Deviations from the code: the brake is computed in ≥ float32 (the experiment script runs it in
bf16); a zero momentum gives a zero update (the package skips the parameter, after its decay,
which is the same). Defaults: lr 0.24 (both files), momentum 0.95, Nesterov. Source certainty:
EXACT (authors' code), the paper's body not read (SECONDARY through the zij summary, which agrees
with the experiment script).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ..registry import OptimizerSpec, register
from . import hyper as H
from .muon import MuonRule
from .rule import orthogonalize_group
from .steps import SHAPE_SCALES

UPDATE_OF = ("normalized", "raw")


def cosh_brake(Y: Tensor, gamma: float = 1.0, update_of: str = "normalized") -> Tensor:
    """AuON's direction for a batch ``(..., m, n)``: ``X/(r + 1e-8)`` or ``Y/(r + 1e-8)`` with
    ``X = Y/(‖Y‖_F + 1e-7)`` and ``r = √mean(cosh(γX)²)`` per matrix (computed in ≥ float32)."""
    work = torch.promote_types(Y.dtype, torch.float32)
    Yw = Y.to(work)
    X = Yw / (torch.linalg.vector_norm(Yw, dim=(-2, -1), keepdim=True) + 1e-7)
    r = torch.cosh(gamma * X).square().mean(dim=(-2, -1), keepdim=True).sqrt()
    return ((X if update_of == "normalized" else Yw) / (r + 1e-8)).to(Y.dtype)


class AuONRule(MuonRule):
    """Muon's momentum with AuON's cosh-RMS brake in place of the polar factor (module docstring)."""

    name = "auon"
    hypers: ClassVar[dict[str, H.Hyper]] = {
        **MuonRule.hypers,
        "lr": H.Hyper(0.24, "learning rate η (authors' default, both files)", low=0.0),
        "weight_decay": H.Hyper(0.0, "decoupled weight decay λ (experiment script: none)", low=0.0),
        "gamma": H.Hyper(1.0, "γ inside cosh (paper/script 1; package 1.5)", low=0.0),
        "update_of": H.Hyper("normalized", "what the brake divides: normalized X (paper) or raw Y "
                             "(package)", kind="choice", choices=UPDATE_OF),
        "hybrid": H.Hyper(False, "orthogonalize first (HybridAuON; ns_steps, orthogonalizer apply)",
                          kind="bool"),
        "adjust_lr_fn": H.Hyper(None, "shape scaling; None = √max(1, m/n) (paper); package: 'none'",
                                kind="choice", choices=(None, *SHAPE_SCALES)),
    }

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        if group["hybrid"]:
            X = orthogonalize_group(X, group)
        return cosh_brake(X, group["gamma"], group["update_of"])


register(
    OptimizerSpec(
        name="auon",
        rule=AuONRule(),
        summary="W ← W − η·√max(1,m/n)·X/√mean(cosh(γX)²), X = Nesterov momentum/‖·‖_F: "
        "linear-time, no orthogonalization",
        recommended={"lr": 0.24},
        source="Maity, AuON, arXiv 2509.24320; github ryyzn9/AuON Auon_Adam_train.py @ c87b862, "
        "auon/optimizer.py @ bba2e82",
        certainty="EXACT",
        state="1× (momentum_buffer)",
        search_space={"lr": (1e-2, 1.0)},
        configs={
            "package": {"update_of": "raw", "gamma": 1.5, "adjust_lr_fn": "none"},
            "hybrid": {"hybrid": True, "update_of": "raw", "gamma": 1.5, "adjust_lr_fn": "none"},
        },
    )
)
