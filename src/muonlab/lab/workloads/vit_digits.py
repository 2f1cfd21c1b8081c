"""vit_digits: a small vision transformer on scikit-learn's 8×8 digits.

Seed 003 reports that Muon beats AdamW on a small NanoGPT but the ranking reverses on a matched
small ViT; this workload and ``tiny_gpt`` share the block design (pre-LN attention + 4× GELU MLP)
so the contrast is one sweep each. Patches of ``patch × patch`` pixels are linearly embedded
(an input embedding, routed to AdamW like the GPT's token embedding), a learned positional table is
added, and the mean of the final tokens feeds a linear head (Dosovitskiy et al., arXiv 2010.11929,
with mean pooling instead of a class token).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .digits import DigitsWorkload
from .tiny_gpt import CausalSelfAttention


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, causal=False)  # the GPT's attention, unmasked
        self.ln_2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.proj = nn.Linear(4 * width, width)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.proj(F.gelu(self.fc(self.ln_2(x))))


class ViT(nn.Module):
    """``forward(images (B, 8, 8)) -> logits (B, 10)``."""

    def __init__(self, width: int, depth: int, heads: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        tokens = (8 // patch) ** 2
        self.patch_embed = nn.Linear(patch * patch, width)
        self.pos = nn.Parameter(0.02 * torch.randn(tokens, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, 10)

    def forward(self, img: Tensor) -> Tensor:
        B, p = img.shape[0], self.patch
        # (B, 8, 8) -> (B, tokens, p·p): non-overlapping p×p patches in raster order
        x = img.unfold(1, p, p).unfold(2, p, p).reshape(B, -1, p * p)
        x = self.patch_embed(x) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x).mean(dim=1))


@dataclass
class ViTDigits(DigitsWorkload):
    """Small ViT on 8×8 digits.

    Knobs (plus ``batch_size`` and ``n_train``):
        width: token width (default 64; divisible by ``heads``).
        depth: transformer blocks (default 3).
        heads: attention heads (default 4).
        patch: patch side in pixels, a divisor of 8 (default 2, i.e. 16 tokens).
    """

    name = "vit_digits"
    description = "small vision transformer on sklearn digits (seed 003's ViT-vs-GPT contrast)"

    width_knobs = ("width",)

    width: int = 64
    depth: int = 3
    heads: int = 4
    patch: int = 2

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 1 or self.heads < 1 or self.width % self.heads:
            raise ValueError(f"vit_digits: width={self.width} must be a positive multiple of "
                             f"heads={self.heads}, depth={self.depth} >= 1")
        if self.patch not in (1, 2, 4, 8):
            raise ValueError(f"vit_digits: patch={self.patch} must divide 8 (1, 2, 4 or 8)")

    def build_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return ViT(self.width, self.depth, self.heads, self.patch)

    def routing(self) -> dict:
        return {"output": "head", "embeddings": "patch_embed"}
