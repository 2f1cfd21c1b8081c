"""Shared parts of the digits workloads: data, batches, cross-entropy loss and evaluation.

scikit-learn's bundled 8×8 digits need no download (:func:`muonlab.lab.data.digits`). Evaluation
reports the full training set as well as validation, so the generalization gap
(``gap/loss = val/loss − train/loss_full``, ``gap/acc``) can be read per run and plotted against the
training-set size ``n_train`` (seed 000: MiMuon's O(1/N) generalization claim).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..data import digits
from ..workload import Workload


def full_gradient_norm(model: nn.Module, X: Tensor, y: Tensor) -> float | None:
    """‖∇L(θ)‖₂ of the full-batch cross-entropy over every trainable parameter: the stationarity
    measure of nonconvex convergence bounds (seed 000's O(1/T^{1/4}) rate is on min_t ‖∇f(θ_t)‖).

    None in a multi-process run: a backward pass inside evaluation would run DDP's or FSDP2's
    gradient hooks and collectives and perturb the training that follows."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return None
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        grads = torch.autograd.grad(F.cross_entropy(model(X), y), params)
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))


@dataclass
class DigitsWorkload(Workload):
    """Base of mlp_digits, cnn_digits and vit_digits (subclasses define ``build_model``).

    Knobs:
        batch_size: images per step, drawn with replacement (default 128).
        n_train: training-set size N, 1..1400; 0 = all 1400 (default 0).
    """

    default_steps = 400
    eval_every = 25
    metric = "val/loss"

    batch_size: int = 128
    n_train: int = 0

    def setup(self, device: torch.device) -> None:
        self.device = device
        self.splits = digits(device, self.n_train)

    def get_batch(self, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        X, y = self.splits["train"]
        idx = torch.randint(len(X), (self.batch_size,), generator=gen).to(X.device)
        return X[idx], y[idx]

    def loss(self, model: nn.Module, batch) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        out = {}
        for split, key in (("train", "train_full"), ("val", "val")):
            X, y = self.splits[split]
            logits = model(X)  # the whole split at once: at most 1400 tiny images
            out[f"{key}/loss"] = F.cross_entropy(logits, y).item()
            out[f"{key}/acc"] = (logits.argmax(-1) == y).float().mean().item()
        grad_norm = full_gradient_norm(model, *self.splits["train"])
        if grad_norm is not None:
            out["train_full/grad_norm"] = grad_norm
        out["gap/loss"] = out["val/loss"] - out["train_full/loss"]
        out["gap/acc"] = out["train_full/acc"] - out["val/acc"]
        return out

    def routing(self) -> dict:
        return {"output": "head"}

    def info(self) -> dict:
        return {"n_train": len(self.splits["train"][0]), "n_val": len(self.splits["val"][0])}
