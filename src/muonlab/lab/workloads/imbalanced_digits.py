"""imbalanced_digits: class-imbalanced 8×8 digits with per-class and balanced accuracy (claims lab,
claim 13; seed 004's "How Muon's Spectral Design Benefits Generalization: A Study on Imbalanced
Data" entry).

The training pool of :func:`muonlab.lab.data.digits` keeps every image of the majority classes
``0..n_major−1`` and only a fraction ``minority_frac`` of each minority class (the first ones in
the fixed permutation, so the subset is deterministic). Validation stays balanced. Metrics:
``val/acc``, ``val/balanced_acc`` (mean of per-class recalls), ``val/minority_acc`` (mean recall
over the minority classes), ``val/majority_acc``. The headline metric is ``val/balanced_acc``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .digits import DigitsWorkload


@dataclass
class ImbalancedDigits(DigitsWorkload):
    """GELU MLP 64 → width → width → 10 on digits with minority classes subsampled.

    Knobs (plus ``batch_size`` of :class:`DigitsWorkload`; ``n_train`` is not used):
        minority_frac: fraction of each minority class kept (default 0.1).
        n_major: classes 0..n_major−1 are the majority (default 5).
        width: hidden width (default 128).
    """

    name = "imbalanced_digits"
    description = "class-imbalanced digits MLP with balanced / minority accuracy (seed 004)"
    default_steps = 300
    eval_every = 10
    metric = "val/balanced_acc"

    width_knobs = ("width",)

    minority_frac: float = 0.1
    n_major: int = 5
    width: int = 128

    def __post_init__(self) -> None:
        if not 0 < self.minority_frac <= 1 or not 1 <= self.n_major <= 9:
            raise ValueError(f"imbalanced_digits: minority_frac={self.minority_frac} must be in (0, 1] "
                             f"and n_major={self.n_major} in 1..9")

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        X, y = self.splits["train"]
        keep = torch.zeros(len(y), dtype=torch.bool)
        for c in range(10):
            idx = (y.cpu() == c).nonzero().flatten()
            k = len(idx) if c < self.n_major else max(1, int(round(self.minority_frac * len(idx))))
            keep[idx[:k]] = True
        keep = keep.to(X.device)
        self.splits["train"] = (X[keep], y[keep])

    def build_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, self.width), nn.GELU(),
                              nn.Linear(self.width, self.width), nn.GELU())
        model.add_module("head", nn.Linear(self.width, 10))
        return model

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        out = super().evaluate(model)
        X, y = self.splits["val"]
        pred = model(X).argmax(-1)
        recall = [((pred == c) & (y == c)).sum().item() / max(1, (y == c).sum().item()) for c in range(10)]
        out["val/balanced_acc"] = sum(recall) / 10
        out["val/minority_acc"] = sum(recall[self.n_major:]) / (10 - self.n_major)
        out["val/majority_acc"] = sum(recall[:self.n_major]) / self.n_major
        return out
