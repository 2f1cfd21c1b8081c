"""Named parameter sets for step benchmarks: the shapes of real models, with random gradients.

Each set is a list of ``(name, shape, role)``; role "hidden" goes to the matrix method (conv
filters flattened), everything else to AdamW, as :func:`muonlab.create_optimizer` would route it.
"""

from __future__ import annotations

import torch


def _gpt(layers: int, width: int, vocab: int = 50257, ctx: int = 1024) -> list[tuple[str, tuple, str]]:
    # GPT-2 layout (Radford et al. 2019; nanoGPT model.py): fused qkv, 4× MLP, tied head.
    out = [("wte", (vocab, width), "embedding"), ("wpe", (ctx, width), "embedding")]
    for i in range(layers):
        p = f"h.{i}."
        out += [
            (p + "ln_1.weight", (width,), "vector"), (p + "ln_1.bias", (width,), "vector"),
            (p + "attn.c_attn.weight", (3 * width, width), "hidden"), (p + "attn.c_attn.bias", (3 * width,), "vector"),
            (p + "attn.c_proj.weight", (width, width), "hidden"), (p + "attn.c_proj.bias", (width,), "vector"),
            (p + "ln_2.weight", (width,), "vector"), (p + "ln_2.bias", (width,), "vector"),
            (p + "mlp.c_fc.weight", (4 * width, width), "hidden"), (p + "mlp.c_fc.bias", (4 * width,), "vector"),
            (p + "mlp.c_proj.weight", (width, 4 * width), "hidden"), (p + "mlp.c_proj.bias", (width,), "vector"),
        ]
    out += [("ln_f.weight", (width,), "vector"), ("ln_f.bias", (width,), "vector")]
    return out


def _cnn() -> list[tuple[str, tuple, str]]:
    # ResNet-18 conv shapes (He et al. 2016) on CIFAR: 3×3 convs, widths 64→512, 10-way head.
    out = [("conv1.weight", (64, 3, 3, 3), "input")]
    cin = 64
    for stage, w in enumerate((64, 128, 256, 512)):
        for blk in range(2):
            p = f"layer{stage}.{blk}."
            out += [(p + "conv1.weight", (w, cin, 3, 3), "hidden"), (p + "bn1.weight", (w,), "vector"),
                    (p + "bn1.bias", (w,), "vector"), (p + "conv2.weight", (w, w, 3, 3), "hidden"),
                    (p + "bn2.weight", (w,), "vector"), (p + "bn2.bias", (w,), "vector")]
            if cin != w:
                out.append((p + "downsample.weight", (w, cin, 1, 1), "hidden"))
            cin = w
    out += [("fc.weight", (10, 512), "output"), ("fc.bias", (10,), "vector")]
    return out


def _small_mats() -> list[tuple[str, tuple, str]]:
    # 48 same-shape 64×64 matrices: where batching pays most.
    return [(f"m{i}", (64, 64), "hidden") for i in range(48)]


PARAMSETS = {
    "gpt2-small": lambda: _gpt(12, 768),
    "gpt-6x512": lambda: _gpt(6, 512),
    "resnet18": _cnn,
    "small-48x64": _small_mats,
    # Seconds on a CPU: the layout of gpt-6x512 (embeddings, vectors, all four matrix shapes) at width 32.
    "gpt-tiny": lambda: _gpt(2, 32, vocab=96, ctx=16),
}


def build(name: str, seed: int = 0) -> list[tuple[str, torch.nn.Parameter, str]]:
    """Parameters (with ``.grad`` set) for the set ``name``."""
    if name not in PARAMSETS:
        raise ValueError(f"unknown parameter set {name!r}; choose one of {sorted(PARAMSETS)}")
    g = torch.Generator().manual_seed(seed)
    out = []
    for pname, shape, role in PARAMSETS[name]():
        p = torch.nn.Parameter(torch.randn(shape, generator=g) * 0.02)
        p.grad = torch.randn(shape, generator=g) * 0.01
        out.append((pname, p, role))
    return out
