"""tiny_gpt: a nanoGPT-style decoder-only transformer, byte-level, on any text file.

The model is nanoGPT's ``model.py`` (Karpathy, github.com/karpathy/nanoGPT) cut to the bone:
pre-LayerNorm blocks of causal self-attention and a 4× GELU MLP, learned positional embeddings,
no biases, no dropout. The head is *untied* from the embedding, as in modded-nanogpt, so the
hidden matrices (attention and MLP) are exactly the parameters a Muon-family method gets while the
embeddings and head go to AdamW (routing declared in :meth:`TinyGPT.routing`).

Defaults (width 128, depth 4, context 64, batch 32, vocabulary 256 bytes; ~0.85 M parameters)
train to a clearly falling validation loss in a couple of minutes on 2 CPU cores. Width and depth
are knobs, so ``--grid width=64,128,256`` studies learning-rate transfer across width (seed 001).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..data import ByteCorpus
from ..workload import Workload, fixed_eval_generator

VOCAB = 256  # bytes


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection; ``causal=False`` for vision tokens."""

    def __init__(self, width: int, heads: int, causal: bool = True) -> None:
        super().__init__()
        self.heads, self.causal = heads, causal
        self.c_attn = nn.Linear(width, 3 * width, bias=False)
        self.c_proj = nn.Linear(width, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width, bias=False)
        self.c_proj = nn.Linear(4 * width, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, bias=False)
        self.attn = CausalSelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, bias=False)
        self.mlp = MLP(width)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Byte-level GPT: ``forward(idx (B, T) int64) -> logits (B, T, 256)``."""

    def __init__(self, width: int, depth: int, heads: int, context: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(VOCAB, width)
        self.wpe = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width, bias=False)
        self.lm_head = nn.Linear(width, VOCAB, bias=False)
        # nanoGPT's init: N(0, 0.02), residual projections scaled by 1/sqrt(2·depth) (GPT-2 paper).
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * depth))

    def forward(self, idx: Tensor) -> Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


@dataclass
class TinyGPT(Workload):
    """nanoGPT-style byte-level LM.

    Knobs:
        data: corpus, "embedded" (default, no network), "tinyshakespeare" or a file path.
        width: embedding width d_model (default 128; must be divisible by ``heads``).
        depth: number of transformer blocks (default 4).
        heads: attention heads (default 4).
        context: sequence length in bytes (default 64).
        batch_size: sequences per step (default 32, i.e. 2048 tokens per step).
        eval_batches: validation batches per evaluation (default 8, fixed across evaluations).
    """

    name = "tiny_gpt"
    description = "nanoGPT-style byte-level decoder LM on a text file (--data PATH)"
    default_steps = 600
    eval_every = 50
    metric = "val/loss"
    width_knobs = ("width",)  # heads fixed: the head dimension grows with width

    data: str = "embedded"
    width: int = 128
    depth: int = 4
    heads: int = 4
    context: int = 64
    batch_size: int = 32
    eval_batches: int = 8

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"tiny_gpt: width={self.width} is not divisible by heads={self.heads}")
        for k in ("width", "depth", "heads", "context", "batch_size", "eval_batches"):
            if getattr(self, k) < 1:
                raise ValueError(f"tiny_gpt: {k}={getattr(self, k)} must be >= 1")

    def setup(self, device: torch.device) -> None:
        self.device = device
        self.corpus = ByteCorpus(self.data, self.context).to(device)
        # The eval set is drawn once, so every evaluation of every run sees the same windows.
        g = fixed_eval_generator()
        self.eval_set = [self.corpus.get_batch("val", self.batch_size, g) for _ in range(self.eval_batches)]

    def build_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return GPT(self.width, self.depth, self.heads, self.context)

    def get_batch(self, gen: torch.Generator):
        return self.corpus.get_batch("train", self.batch_size, gen)

    def loss(self, model: nn.Module, batch) -> Tensor:
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits.view(-1, VOCAB), y.reshape(-1))

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        losses = [self.loss(model, b).item() for b in self.eval_set]
        val = sum(losses) / len(losses)
        return {"val/loss": val, "val/bpb": val / math.log(2)}  # bits per byte, the corpus-free unit

    def routing(self) -> dict:
        return {"output": "lm_head"}

    def info(self) -> dict:
        return self.corpus.info()
