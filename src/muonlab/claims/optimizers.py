"""Optimizers only the claims lab needs, usable by import path (``muonlab.claims.optimizers.X``).

:class:`NormMatchedGD` is seed 003's ablation (arXiv 2606.08388): gradient descent whose
step has the Frobenius norm of Muon's polar step, ``W ← W − η·(‖polar(G)‖_F/‖G‖_F)·G =
W − η·√rank(G)·G/‖G‖_F``. It keeps GD's direction (the gradient's own spectrum) and only matches
the step size, so any difference from Muon is due to the flattened spectrum, not the step norm.
"""

from __future__ import annotations

import torch


class NormMatchedGD(torch.optim.Optimizer):
    """``W ← W − lr·√rank(G)·G/‖G‖_F`` per matrix (vectors: ``G/‖G‖·√1``), no momentum.

    Args:
        lr: step size η.
        rank_rtol: singular values below ``rank_rtol·σ₁`` do not count toward rank(G).
    """

    def __init__(self, params, lr: float = 0.01, rank_rtol: float = 1e-6) -> None:
        if lr <= 0:
            raise ValueError(f"lr={lr} must be > 0")
        super().__init__(params, {"lr": lr, "rank_rtol": rank_rtol})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                G = p.grad
                norm = G.norm()
                if norm == 0:
                    continue
                if G.ndim >= 2:
                    s = torch.linalg.svdvals(G.reshape(G.shape[0], -1).double())
                    rank = int((s > group["rank_rtol"] * s[0]).sum())
                else:
                    rank = 1
                p.add_(G, alpha=-group["lr"] * rank**0.5 / float(norm))
        return loss
