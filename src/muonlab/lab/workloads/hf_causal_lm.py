"""hf_causal_lm: any Hugging Face ``transformers`` causal LM, built from a config, on a text file.

Seed 000's MiMuon experiments train Qwen3-0.6B; this workload builds the same *architecture*
(``model_type="qwen3"``: GQA attention with q/k RMSNorm, SwiGLU MLP, RoPE, untied head) at small
width from a config (no weights are downloaded), byte-level on the same corpora as ``tiny_gpt``.
Any other ``model_type`` that ``AutoConfig.for_model`` knows works too (``arch=llama``,
``arch=gpt2``, ...); the knobs use the common config names and ``config={...}`` passes anything
else. Routing uses the model's ``get_input_embeddings``/``get_output_embeddings``, so the embedding
and the head go to AdamW and every attention/MLP projection to the matrix method.

Needs ``transformers`` (``pip install muonlab[hf]``); it is imported only when the model is built.
The shape of Qwen3-0.6B for reference: width 1024, depth 28, 16 heads, 8 KV heads, head_dim 128,
MLP 3072, vocabulary 151,936.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..data import ByteCorpus
from ..workload import Workload, fixed_eval_generator

VOCAB = 256  # bytes


def build_config(arch: str, width: int, depth: int, heads: int, kv_heads: int, context: int,
                 extra: dict[str, Any]):
    """A ``transformers`` config of type ``arch`` at the given size, byte vocabulary, untied head."""
    try:
        from transformers import AutoConfig
    except ImportError:
        raise ValueError("workload hf_causal_lm needs transformers: pip install 'muonlab[hf]'") from None
    sizes = dict(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads,
                 num_key_value_heads=kv_heads, head_dim=width // heads,
                 intermediate_size=3 * width,  # Qwen3-0.6B's ratio (3072 / 1024)
                 max_position_embeddings=context, vocab_size=VOCAB, tie_word_embeddings=False)
    try:
        return AutoConfig.for_model(arch, **{**sizes, **extra})
    except ValueError:
        # transformers lists every model_type it knows (hundreds); name a few causal LMs instead.
        raise ValueError(f"hf_causal_lm: arch={arch!r} is not a transformers model_type; causal LMs "
                         "include qwen3, llama, mistral, gemma, gpt2, gpt_neox") from None


@dataclass
class HFCausalLM(Workload):
    """A ``transformers`` causal LM from a config, byte-level.

    Knobs:
        arch: ``model_type`` for ``AutoConfig.for_model`` (default "qwen3").
        data: corpus, "embedded" (default), "tinyshakespeare" or a file path.
        width: hidden size (default 128).
        depth: decoder layers (default 2).
        heads: attention heads (default 4); head_dim = width // heads.
        kv_heads: key/value heads for GQA (default 2).
        context: sequence length in bytes (default 64).
        batch_size: sequences per step (default 16).
        eval_batches: fixed validation batches per evaluation (default 4).
        config: extra config fields, e.g. ``{"rope_theta": 1e4}`` (default none).
    """

    name = "hf_causal_lm"
    description = "Hugging Face causal LM from a config (default Qwen3 architecture, small width)"
    default_steps = 300
    eval_every = 50
    metric = "val/loss"
    width_knobs = ("width",)  # heads fixed: the head dimension grows with width

    arch: str = "qwen3"
    data: str = "embedded"
    width: int = 128
    depth: int = 2
    heads: int = 4
    kv_heads: int = 2
    context: int = 64
    batch_size: int = 16
    eval_batches: int = 4
    config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.width % self.heads or self.heads % self.kv_heads:
            raise ValueError(f"hf_causal_lm: width={self.width} must be divisible by heads="
                             f"{self.heads}, and heads by kv_heads={self.kv_heads}")

    def setup(self, device: torch.device) -> None:
        self.device = device
        self.corpus = ByteCorpus(self.data, self.context).to(device)
        g = fixed_eval_generator()
        self.eval_set = [self.corpus.get_batch("val", self.batch_size, g) for _ in range(self.eval_batches)]

    def build_model(self, seed: int) -> nn.Module:
        from transformers import AutoModelForCausalLM

        cfg = build_config(self.arch, self.width, self.depth, self.heads, self.kv_heads,
                           self.context, self.config)
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)

    def get_batch(self, gen: torch.Generator):
        return self.corpus.get_batch("train", self.batch_size, gen)

    def loss(self, model: nn.Module, batch) -> Tensor:
        x, y = batch
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        val = sum(self.loss(model, b).item() for b in self.eval_set) / len(self.eval_set)
        return {"val/loss": val, "val/bpb": val / math.log(2)}

    def info(self) -> dict:
        import transformers

        return {**self.corpus.info(), "transformers": transformers.__version__}
