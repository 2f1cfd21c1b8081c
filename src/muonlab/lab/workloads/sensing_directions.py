"""sensing_directions: matrix sensing that also records how far each true direction is learned
(claims lab, claim 10: seed 003's ATSR under coupled vs decoupled weight decay).

Same problem as :mod:`.matrix_sensing`; :meth:`evaluate` adds, for each singular triple
``(u*_i, σ*_i, v*_i)`` of ``W*``, the aligned fraction ``val/align_i = u*_iᵀ W v*_i / σ*_i``. The
acquisition time ``t_i`` of direction i is the first evaluated step with ``align_i ≥ 0.9`` and
**ATSR = max_i t_i / min_i t_i** (lower = more concurrent acquisition). This definition is *our
reading* (a GUESS): the paper (arXiv 2606.08388) gives only the name and the figure's
behaviour. A rank-4 truth with σ* spread over [1, 3] is the default so there are several
directions to acquire.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .matrix_sensing import MatrixSensing


@dataclass
class SensingDirections(MatrixSensing):
    """Matrix sensing with per-direction alignment metrics (knobs as matrix_sensing; rank 4, d 60)."""

    name = "sensing_directions"
    description = "matrix sensing + per-direction acquisition (ATSR, our reading; seed 003)"
    default_steps = 600
    eval_every = 5

    p: int = 10
    n: int = 10
    d: int = 60
    rank: int = 4

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        U, S, Vh = torch.linalg.svd(self.W_star.double())
        r = self.rank
        self.U_star, self.S_star, self.V_star = U[:, :r].float(), S[:r].float(), Vh[:r].T.float()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        out = super().evaluate(model)
        W = model.W.weight.detach()
        aligned = ((self.U_star.T @ W) * self.V_star.T).sum(1) / self.S_star
        out.update({f"val/align_{i}": float(a) for i, a in enumerate(aligned)})
        return out
