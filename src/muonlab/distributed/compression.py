"""What DiLoCo's workers send: compressors of pseudo-gradients, ``x → payload → x̂``.

A payload is a tuple of tensors whose shapes depend only on ``x.shape``, so workers can
all-gather them. Top-k and rank-k are the contractive compressors of
:mod:`muonlab.optim.compressors` (one implementation for EF21-Muon and DiLoCo), here with the
counting conventions of the authors' DiLoCo code: top-k keeps ``k = max(1, ⌊ratio·numel⌋)``
entries of the whole flattened tensor (facebookresearch/MuLoCo ``quantized_outer_sgd.py`` @
475bbf4), rank-k a fixed rank r of ``x.reshape(shape[0], -1)``. The quantizers are that code's
statistical and min–max maps; ``fp16``/``bf16`` is OpenDiLoCo's low-precision all-reduce.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..optim.compressors import decode_top_k, encode_rank_k, encode_top_k


class Compressor:
    """A (possibly lossy) map ``x → payload → x̂``. ``payload`` is a tuple of tensors whose shapes
    depend only on ``x.shape`` (so workers can all-gather them)."""

    name = "identity"

    def applies(self, x: Tensor) -> bool:
        """Whether this tensor is compressed at all (else it is sent as is)."""
        return True

    def compress(self, x: Tensor) -> tuple[Tensor, ...]:
        return (x.clone(),)

    def decompress(self, payload: Sequence[Tensor], like: Tensor) -> Tensor:
        return payload[0].to(like.dtype).reshape(like.shape)

    def wire_bits(self, payload: Sequence[Tensor]) -> int:
        """Bits a bit-packed transport would send for ``payload``."""
        return sum(t.numel() * t.element_size() * 8 for t in payload)

    def options(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


class TopK(Compressor):
    """Keep the ``k = max(1, ⌊ratio·numel⌋)`` entries of largest magnitude (values + int64 indices).
    Contractive: ``‖x − D(C(x))‖² ≤ (1 − k/numel)‖x‖²``."""

    name = "top_k"

    def __init__(self, ratio: float = 0.1) -> None:
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"top_k: invalid ratio={ratio!r}; expected 0 < ratio <= 1")
        self.ratio = float(ratio)

    def k(self, numel: int) -> int:
        return max(1, int(numel * self.ratio))

    def compress(self, x: Tensor) -> tuple[Tensor, ...]:
        return encode_top_k(x.reshape(1, -1), self.k(x.numel()), sorted=True)

    def decompress(self, payload: Sequence[Tensor], like: Tensor) -> Tensor:
        values, idx = payload
        return decode_top_k(values.to(like.device), idx.to(like.device), (1, like.numel()), like.dtype).reshape(like.shape)

    def wire_bits(self, payload: Sequence[Tensor]) -> int:
        values, _ = payload
        return values.numel() * (values.element_size() * 8 + 32)  # 32-bit indices suffice

    def options(self) -> dict[str, Any]:
        return {"ratio": self.ratio}


class RankK(Compressor):
    """Best rank-r approximation (truncated SVD of ``x.reshape(shape[0], -1)``): payload
    ``(U_r Σ_r, V_rᵀ)``. Contractive: ``‖x − D(C(x))‖² ≤ (1 − r/min(m, n))‖x‖²``. Tensors with
    fewer than 2 dimensions are sent uncompressed."""

    name = "rank_k"

    def __init__(self, rank: int = 4) -> None:
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank_k: invalid rank={rank!r}; expected an integer >= 1")
        self.rank = rank

    def applies(self, x: Tensor) -> bool:
        return x.ndim >= 2

    def compress(self, x: Tensor) -> tuple[Tensor, ...]:
        mat = x.reshape(x.shape[0], -1)
        P, Q = encode_rank_k(mat, min(self.rank, *mat.shape))
        return P.to(x.dtype), Q.mT.to(x.dtype).contiguous()

    def decompress(self, payload: Sequence[Tensor], like: Tensor) -> Tensor:
        P, Q = payload
        return (P @ Q).to(like.dtype).reshape(like.shape)

    def options(self) -> dict[str, Any]:
        return {"rank": self.rank}


class _Quantizer(Compressor):
    def __init__(self, bits: int) -> None:
        if bits not in (1, 2, 4, 8):
            raise ValueError(f"{self.name}: invalid bits={bits!r}; choose 1, 2, 4 or 8")
        self.bits = bits
        self.n_bins = 2**bits

    def wire_bits(self, payload: Sequence[Tensor]) -> int:
        codes, *meta = payload
        return codes.numel() * self.bits + sum(t.numel() * 32 for t in meta)


class StatisticalQuant(_Quantizer):
    """The authors' default quantizer: codes ``clamp(round((x−μ)/s + n_bins/2), 0, n_bins−1)`` with
    μ the mean, ``s = range_sigmas·std/n_bins`` (unbiased std; s = 1 when it is 0 or not finite);
    the receiver maps each code to the mean of the centred values that fell in its bin, plus μ."""

    name = "statistical"

    def __init__(self, bits: int = 2, range_sigmas: float = 6.0) -> None:
        super().__init__(bits)
        if not range_sigmas > 0:
            raise ValueError(f"statistical: invalid range_sigmas={range_sigmas!r}; expected > 0")
        self.range_sigmas = float(range_sigmas)

    def compress(self, x: Tensor) -> tuple[Tensor, ...]:
        flat = x.reshape(-1)
        mu = flat.mean()
        centred = flat - mu
        std = centred.var(unbiased=True).sqrt() if flat.numel() > 1 else torch.zeros_like(mu)
        scale = self.range_sigmas * std / self.n_bins
        if not (scale > 0 and torch.isfinite(scale)):
            scale = torch.ones_like(mu)
        codes = torch.round(centred / scale + self.n_bins // 2).clamp_(0, self.n_bins - 1).to(torch.uint8)
        counts = torch.zeros(self.n_bins, dtype=x.dtype, device=x.device).index_add_(
            0, codes.long(), torch.ones_like(centred))
        sums = torch.zeros(self.n_bins, dtype=x.dtype, device=x.device).index_add_(0, codes.long(), centred)
        table = sums / counts.clamp(min=1)
        return codes, mu.reshape(1), table

    def decompress(self, payload: Sequence[Tensor], like: Tensor) -> Tensor:
        codes, mu, table = payload
        return (table[codes.long()] + mu).to(like.dtype).reshape(like.shape)

    def options(self) -> dict[str, Any]:
        return {"bits": self.bits, "range_sigmas": self.range_sigmas}


class LinearQuant(_Quantizer):
    """Min–max quantizer: ``s = (max − min)/(n_bins − 1)`` (1 if 0), codes ``round((x − min)/s)``,
    received as ``min + s·code``."""

    name = "linear"

    def __init__(self, bits: int = 4) -> None:
        super().__init__(bits)

    def compress(self, x: Tensor) -> tuple[Tensor, ...]:
        flat = x.reshape(-1)
        lo, hi = flat.min(), flat.max()
        scale = (hi - lo) / (self.n_bins - 1)
        if not scale > 0:
            scale = torch.ones_like(scale)
        codes = torch.round((flat - lo) / scale).clamp_(0, self.n_bins - 1).to(torch.uint8)
        return codes, lo.reshape(1), scale.reshape(1)

    def decompress(self, payload: Sequence[Tensor], like: Tensor) -> Tensor:
        codes, lo, scale = payload
        return (lo + scale * codes.to(like.dtype)).to(like.dtype).reshape(like.shape)

    def options(self) -> dict[str, Any]:
        return {"bits": self.bits}


class Cast(Compressor):
    """Send a low-precision copy (OpenDiLoCo all-reduces pseudo-gradients in FP16)."""

    def __init__(self, dtype: torch.dtype = torch.float16) -> None:
        if dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(f"cast: invalid dtype={dtype!r}; choose torch.float16 or torch.bfloat16")
        self.dtype = dtype
        self.name = "fp16" if dtype == torch.float16 else "bf16"

    def compress(self, x: Tensor) -> tuple[Tensor, ...]:
        return (x.to(self.dtype),)

    def options(self) -> dict[str, Any]:
        return {"dtype": str(self.dtype)}


COMPRESSORS: dict[str, Callable[..., Compressor]] = {
    "top_k": TopK,
    "rank_k": RankK,
    "statistical": StatisticalQuant,
    "linear": LinearQuant,
    "fp16": lambda: Cast(torch.float16),
    "bf16": lambda: Cast(torch.bfloat16),
}


def make_compressor(compression: str | Compressor | None, options: dict[str, Any] | None = None) -> Compressor | None:
    """``None``, a :class:`Compressor`, or a name of :data:`COMPRESSORS` with ``options``
    (e.g. ``("top_k", {"ratio": 0.05})``, ``("statistical", {"bits": 4})``)."""
    if compression is None:
        if options:
            raise ValueError(f"compression_options={options!r} given without a compression")
        return None
    if isinstance(compression, Compressor):
        if options:
            raise ValueError("compression_options apply to a compression given by name, not to an instance")
        return compression
    if compression not in COMPRESSORS:
        raise ValueError(f"unknown compression {compression!r}; choose None, a Compressor, or one of "
                         f"{sorted(COMPRESSORS)}")
    try:
        return COMPRESSORS[compression](**(options or {}))
    except TypeError as e:
        raise ValueError(f"compression {compression!r}: bad compression_options {options!r} ({e})") from None
