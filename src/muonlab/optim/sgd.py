"""Momentum SGD, element-wise (the reference the spectral family reduces to at p = 1).

Math (``momentum_form="accumulate"``, torch.optim.SGD with dampening 0, the default)::

    G ← G + λ W                              ("coupled" weight decay, torch.optim.SGD's)
    M ← μ M + G;   X ← G + μ M if nesterov else M;   W ← W − η X

``momentum_form="ema"`` uses ``M ← μM + (1−μ)G`` instead.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import OptimizerSpec, register
from . import hyper as H
from .rule import ElementwiseRule, scalar
from .steps import apply_update, momentum_
from .state import PARAM


class SGDRule(ElementwiseRule):
    name = "sgd"
    hypers = {
        "lr": H.Hyper(1e-2, "learning rate", low=0.0),
        "momentum": H.Hyper(0.9, "momentum μ", low=0.0, high=1.0, high_open=True),
        "nesterov": H.Hyper(False, "Nesterov look-ahead", kind="bool"),
        "momentum_form": H.Hyper("accumulate", "accumulate (torch SGD) or ema", kind="choice",
                                 choices=("accumulate", "ema")),
        "weight_decay": H.WEIGHT_DECAY,
        "weight_decay_mode": H.Hyper("coupled", "coupled (torch SGD's L2), decoupled or cautious",
                                     kind="choice", choices=("decoupled", "coupled", "cautious")),
    }
    state_spec = {"momentum_buffer": PARAM}

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        lr = scalar(group["lr"])
        X = momentum_(state["momentum_buffer"], grad, group["momentum"],
                      nesterov=group["nesterov"], form=group["momentum_form"])
        apply_update(p, X, lr, lr=lr, weight_decay=group["weight_decay"],
                     mode=group["weight_decay_mode"])


register(
    OptimizerSpec(
        name="sgd",
        configs={"nesterov": {"nesterov": True}},
        rule=SGDRule(),
        summary="momentum SGD (torch.optim.SGD semantics), the p = 1 end of the spectral family",
        recommended={"lr": 0.3, "momentum": 0.9},
        source="torch.optim.SGD",
        certainty="EXACT",
        state="1× (momentum_buffer)",
        search_space={"lr": (1e-3, 1.0)},
    )
)
