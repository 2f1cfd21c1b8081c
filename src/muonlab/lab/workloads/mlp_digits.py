"""mlp_digits: a GELU MLP on scikit-learn's 8×8 digits, with the training-set size N as a knob.

Seed 000 (MiMuon) claims a generalization error of O(1/N) against Muon's O(1/(N κ^T)); the
experiment is a sweep over ``n_train`` reading ``gap/loss`` and ``gap/acc`` at the end of training::

    muonlab sweep --workload mlp_digits --optimizers muon,sgd --grid n_train=100,200,400,1400
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .digits import DigitsWorkload


@dataclass
class MLPDigits(DigitsWorkload):
    """MLP 64 → width → … → 10.

    Knobs (plus ``batch_size`` and ``n_train`` of :class:`DigitsWorkload`):
        width: hidden width (default 256).
        depth: hidden layers (default 2; the hidden-to-hidden matrices number depth − 1).
    """

    name = "mlp_digits"
    description = "GELU MLP on sklearn digits; n_train=N knob for generalization gaps (seed 000)"

    width_knobs = ("width",)

    width: int = 256
    depth: int = 2

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 1:
            raise ValueError(f"mlp_digits: width={self.width} and depth={self.depth} must be >= 1")

    def build_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(64, self.width), nn.GELU()]
        for _ in range(self.depth - 1):
            layers += [nn.Linear(self.width, self.width), nn.GELU()]
        model = nn.Sequential(*layers)
        model.add_module("head", nn.Linear(self.width, 10))
        return model
