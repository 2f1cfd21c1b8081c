"""Shared fixtures: matrices with a controlled spectrum, tolerances, tiny models."""

from __future__ import annotations

import pytest
import torch

# One tolerance table for the whole suite (relative errors by compute dtype).
TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 3e-2}


def make_matrix(m: int, n: int, sigma, *, seed: int = 0, dtype=torch.float64, batch: tuple = ()) -> torch.Tensor:
    """``U diag(sigma) Vᵀ`` with Haar-random U, V (float64): a matrix whose singular values we know."""
    g = torch.Generator().manual_seed(seed)
    r = min(m, n)
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    if sigma.numel() != r:
        raise ValueError(f"need {r} singular values, got {sigma.numel()}")
    U, _ = torch.linalg.qr(torch.randn(*batch, m, r, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(*batch, n, r, generator=g, dtype=torch.float64))
    return ((U * sigma) @ V.mT).to(dtype)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
