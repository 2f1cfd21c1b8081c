"""modular_arith: grokking on ``(a + b) mod P`` (claims lab, claim 12; seed 004's "Muon Optimizer
Accelerates Grokking" entry).

All ``P²`` pairs ``(a, b)`` are split once (fixed seed 0) into a training fraction ``train_frac``
and a validation rest. The model embeds ``a`` and ``b`` (one shared table), concatenates them and
applies a ReLU MLP with a linear head over the ``P`` residues. Training is **full batch**, so one
step is one epoch and "epochs to generalize" is the first evaluated step at which
``val/acc ≥ target`` (read with :func:`muonlab.lab.stats.steps_to_target`). Grokking (train
accuracy reaching 1 long before validation accuracy) needs weight decay; the claims lab sets it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..workload import Workload


class _ModMLP(nn.Module):
    def __init__(self, modulus: int, embed: int, width: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(modulus, embed)
        self.fc1 = nn.Linear(2 * embed, width)
        self.fc2 = nn.Linear(width, width)
        self.head = nn.Linear(width, modulus)

    def forward(self, ab: Tensor) -> Tensor:
        h = self.emb(ab).flatten(1)
        h = F.relu(self.fc1(h))
        h = F.relu(self.fc2(h))
        return self.head(h)


@dataclass
class ModularArith(Workload):
    """``(a + b) mod modulus`` with a fraction of all pairs as the training set.

    Knobs:
        modulus: P (default 47).
        train_frac: fraction of the P² pairs used for training (default 0.4).
        embed: embedding width (default 64).
        width: MLP hidden width (default 128).
    """

    name = "modular_arith"
    description = "(a+b) mod P, full batch on a fraction of pairs: grokking epochs (seed 004)"
    default_steps = 1500
    eval_every = 25
    metric = "val/acc"
    width_knobs = ("width",)  # the embedding stays fixed, like a vocabulary

    modulus: int = 47
    train_frac: float = 0.4
    embed: int = 64
    width: int = 128

    def __post_init__(self) -> None:
        if self.modulus < 2 or not 0 < self.train_frac < 1:
            raise ValueError(f"modular_arith: modulus={self.modulus} must be >= 2 and "
                             f"train_frac={self.train_frac} in (0, 1)")

    def setup(self, device: torch.device) -> None:
        self.device = device
        P = self.modulus
        a, b = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
        X = torch.stack([a.flatten(), b.flatten()], 1)
        y = (X[:, 0] + X[:, 1]) % P
        perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
        n = max(1, int(round(self.train_frac * len(X))))
        self.train = (X[perm[:n]].to(device), y[perm[:n]].to(device))
        self.val = (X[perm[n:]].to(device), y[perm[n:]].to(device))

    def build_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return _ModMLP(self.modulus, self.embed, self.width)

    def get_batch(self, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.train  # full batch: a step is an epoch

    def loss(self, model: nn.Module, batch) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        out = {}
        for split, (x, y) in (("train_full", self.train), ("val", self.val)):
            logits = model(x)
            out[f"{split}/loss"] = F.cross_entropy(logits, y).item()
            out[f"{split}/acc"] = (logits.argmax(-1) == y).float().mean().item()
        return out

    def routing(self) -> dict:
        return {"output": "head", "embeddings": "emb"}

    def info(self) -> dict:
        return {"n_train": len(self.train[0]), "n_val": len(self.val[0])}
