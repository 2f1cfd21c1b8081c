"""cnn_digits: a small convolutional net on scikit-learn's 8×8 digits.

The seed's YOLO26m experiments are convolutional; here the conv filters (``out × in × 3 × 3``) go
through the matrix methods as ``(out, in·9)`` matrices (routing role ``conv``), the classifier head
and biases through AdamW, as in airbench's Muon runs (Keller Jordan, airbench94_muon).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .digits import DigitsWorkload


@dataclass
class CNNDigits(DigitsWorkload):
    """``depth`` 3×3 conv + GELU layers of ``width`` channels, global average pool, linear head.

    Knobs (plus ``batch_size`` and ``n_train``):
        width: channels per conv layer (default 32).
        depth: conv layers (default 3).
    """

    name = "cnn_digits"
    description = "small CNN on sklearn digits; conv filters go to the matrix methods"

    width_knobs = ("width",)

    width: int = 32
    depth: int = 3

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 1:
            raise ValueError(f"cnn_digits: width={self.width} and depth={self.depth} must be >= 1")

    def build_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        layers: list[nn.Module] = [nn.Unflatten(1, (1, 8))]  # (B, 8, 8) -> (B, 1, 8, 8)
        channels = 1
        for _ in range(self.depth):
            layers += [nn.Conv2d(channels, self.width, 3, padding=1), nn.GELU()]
            channels = self.width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        model = nn.Sequential(*layers)
        model.add_module("head", nn.Linear(self.width, 10))
        return model
