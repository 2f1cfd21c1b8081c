"""Contractive compressors for error feedback (EF21): pure functions on ``(..., m, n)`` matrices.

A compressor ``C`` is *contractive* with parameter ``α ∈ (0, 1]`` when, for every ``x``,

    ‖C(x) − x‖_F² ≤ (1 − α)·‖x‖_F²

(Richtárik, Sokolov, Fatkhullin, "EF21", arXiv 2106.05203; Gruntkowska et al., "Error Feedback for
Muon and Friends", arXiv 2510.00643, use top-k and rank-k). Each compressor here works on every
matrix of a ``(..., m, n)`` batch separately and has a deterministic bound (no expectation needed):

=============  ===============================================  ==================================
name           C(x)                                             α (``contraction``)
=============  ===============================================  ==================================
``identity``   x                                                1
``top_k``      the k entries of largest |x_ij|, others 0;       k / (m·n): the dropped entries are
               k = ⌈ratio·m·n⌉                                  the smallest, so their mean square
                                                                is at most the overall mean square
``rank_k``     best rank-r approximation U_r Σ_r V_rᵀ (SVD);    r / min(m, n): the dropped σ_i² are
               r = ⌈ratio·min(m, n)⌉                            the smallest of min(m, n) (Eckart–
                                                                Young)
=============  ===============================================  ==================================

Both bounds are tight: equal |x_ij| (top-k) and a flat spectrum (rank-k) attain them.

A message travels in a compact form: :func:`encode` returns it (``top_k``: values and int64
indices, k per matrix; ``rank_k``: factors ``P = U_rΣ_r`` (m×r) and ``Q = V_r`` (n×r);
``identity``: the matrix) and :func:`decode` rebuilds ``C(x)``. :func:`compress` is
``decode(encode(x))``, so a sender and every receiver of the same message get the same bits.
Ties in top-k go to whichever entry ``torch.topk`` returns (deterministic for a given input).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

COMPRESSORS = ("identity", "top_k", "rank_k")


def _count(ratio: float, size: int) -> int:
    """``⌈ratio·size⌉`` clamped to ``[1, size]`` (``round``: 0.1·30 stays 3, not 4)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"compression ratio must be in (0, 1], got {ratio!r}")
    return max(1, min(size, math.ceil(round(ratio * size, 9))))


def kept(kind: str, ratio: float, m: int, n: int) -> int:
    """What ``kind`` keeps of an ``m×n`` matrix: entries (top_k), rank (rank_k), or m·n (identity)."""
    if kind == "identity":
        return m * n
    if kind == "top_k":
        return _count(ratio, m * n)
    if kind == "rank_k":
        return _count(ratio, min(m, n))
    raise ValueError(f"unknown compressor {kind!r}; choose one of {COMPRESSORS}")


def contraction(kind: str, ratio: float, m: int, n: int) -> float:
    """The contraction parameter ``α`` of ``kind`` on ``m×n`` matrices (see the module docstring)."""
    if kind == "identity":
        return 1.0
    if kind == "top_k":
        return kept(kind, ratio, m, n) / (m * n)
    if kind == "rank_k":
        return kept(kind, ratio, m, n) / min(m, n)
    raise ValueError(f"unknown compressor {kind!r}; choose one of {COMPRESSORS}")


def message_numel(kind: str, ratio: float, m: int, n: int) -> int:
    """Numbers sent per ``m×n`` matrix (top_k counts each index as one number)."""
    k = kept(kind, ratio, m, n)
    return {"identity": m * n, "top_k": 2 * k, "rank_k": k * (m + n)}[kind]


def _work_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def encode_top_k(x: Tensor, k: int, *, sorted: bool = False) -> tuple[Tensor, Tensor]:
    """The ``k`` largest-magnitude entries of each matrix of ``x (..., m, n)``: ``(values, indices)``,
    each ``(..., k)``, indices into the flattened matrix (``sorted``: by decreasing magnitude)."""
    flat = x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])
    idx = flat.abs().topk(k, dim=-1, sorted=sorted).indices
    return flat.gather(-1, idx), idx


def decode_top_k(values: Tensor, idx: Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """The ``(..., m, n)`` matrix with ``values`` at ``idx`` (of the flattened matrix) and zeros elsewhere."""
    m, n = shape[-2:]
    out = values.new_zeros((*shape[:-2], m * n), dtype=dtype)
    return out.scatter_(-1, idx, values.to(dtype)).reshape(shape)


def encode_rank_k(x: Tensor, r: int) -> tuple[Tensor, Tensor]:
    """The best rank-``r`` approximation of each matrix of ``x (..., m, n)`` as factors
    ``P = U_rΣ_r (..., m, r)`` and ``Q = V_r (..., n, r)`` (SVD in float32, float64 for float64)."""
    U, S, Vh = torch.linalg.svd(x.to(_work_dtype(x)), full_matrices=False)
    return U[..., :r] * S[..., None, :r], Vh[..., :r, :].mT


def encode(x: Tensor, kind: str, ratio: float = 1.0) -> tuple[Tensor, ...]:
    """The compact message of ``C(x)`` for ``x`` of shape ``(..., m, n)`` (see the module docstring)."""
    if x.ndim < 2:
        raise ValueError(f"compressors work on (..., m, n) matrices, got shape {tuple(x.shape)}")
    m, n = x.shape[-2:]
    if kind == "identity":
        return (x,)
    if kind == "top_k":
        return encode_top_k(x, kept(kind, ratio, m, n))
    if kind == "rank_k":
        return encode_rank_k(x, kept(kind, ratio, m, n))
    raise ValueError(f"unknown compressor {kind!r}; choose one of {COMPRESSORS}")


def decode(message: tuple[Tensor, ...], kind: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """``C(x)`` of shape ``shape`` and dtype ``dtype`` from :func:`encode`'s message."""
    if kind == "identity":
        return message[0].to(dtype)
    if kind == "top_k":
        return decode_top_k(*message, shape, dtype)
    if kind == "rank_k":
        P, Q = message
        return (P @ Q.mT).to(dtype)
    raise ValueError(f"unknown compressor {kind!r}; choose one of {COMPRESSORS}")


def compress(x: Tensor, kind: str, ratio: float = 1.0) -> Tensor:
    """``C(x)``, same shape and dtype as ``x``."""
    if kind == "identity":
        return x
    return decode(encode(x, kind, ratio), kind, tuple(x.shape), x.dtype)


def identity(x: Tensor) -> Tensor:
    """``C(x) = x`` (α = 1)."""
    return x


def top_k(x: Tensor, ratio: float) -> Tensor:
    """Keep the ``⌈ratio·m·n⌉`` largest-magnitude entries of each matrix (α = k/(m·n))."""
    return compress(x, "top_k", ratio)


def rank_k(x: Tensor, ratio: float) -> Tensor:
    """Best rank-``⌈ratio·min(m, n)⌉`` approximation of each matrix (α = r/min(m, n))."""
    return compress(x, "rank_k", ratio)


__all__ = ["COMPRESSORS", "compress", "contraction", "decode", "decode_top_k", "encode", "encode_rank_k",
           "encode_top_k", "identity", "kept", "message_numel", "rank_k", "top_k"]
