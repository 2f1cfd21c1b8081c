"""Tiny models shared by several test files."""

from __future__ import annotations

import torch
from torch import nn


class RoleNet(nn.Module):
    """Embedding, hidden matrices, a norm, biases and a head: every routing role; with
    ``experts``, also a raw 3-D stack (a "batch" view when routed to a matrix method)."""

    def __init__(self, experts: bool = True):
        super().__init__()
        self.emb = nn.Embedding(11, 8)
        self.fc1 = nn.Linear(8, 16)
        self.norm = nn.LayerNorm(16)
        self.fc2 = nn.Linear(16, 12)
        self.head = nn.Linear(12, 3)
        if experts:
            self.experts = nn.Parameter(torch.randn(3, 4, 6) * 0.3)

    def forward(self, idx):
        h = self.emb(idx).mean(1)
        t = torch.tanh(self.fc2(self.norm(torch.relu(self.fc1(h)))))
        if not hasattr(self, "experts"):
            return self.head(t)
        e = torch.einsum("bn,emn->bm", t[:, :6], self.experts)
        return self.head(t) + torch.tanh(e).sum(1, keepdim=True)


def role_batch(step: int):
    """The batch of step ``step`` for :class:`RoleNet` (deterministic)."""
    g = torch.Generator().manual_seed(100 + step)
    return torch.randint(0, 11, (16, 4), generator=g), torch.randn(16, 3, generator=g)


def user_orthogonalizer(X: torch.Tensor) -> torch.Tensor:
    """A user-supplied orthogonalizer (one (m, n) matrix at a time): the exact polar factor U Vᵀ by
    an SVD in float64, written here as a user would, not with muonlab's own function."""
    U, _, Vh = torch.linalg.svd(X.double(), full_matrices=False)
    return (U @ Vh).to(X.dtype)
