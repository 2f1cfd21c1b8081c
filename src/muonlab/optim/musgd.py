"""MuSGD (Ultralytics, YOLO26's default): a weighted sum of a Muon step and a momentum-SGD step.

Math (per matrix W ∈ R^{m×n}, gradient G; one momentum β and one Nesterov flag for both branches)::

    M ← βM + (1−β)G;   X ← (1−β)G + βM  if nesterov else M        momentum_buffer (Muon, EMA)
    O ← s(m, n)·orthogonalize(X)                                 Keller NS5, s = √max(1, m/n)
    W' ← W − η·w_muon·O                                          the Muon part: no weight decay
    G' ← G + λW'                                                 L2 at the weights *after* it
    S ← βS + G';       u ← G' + βS  if nesterov else S           momentum_buffer_SGD (accumulate)
    W ← W' − η·w_sgd·u

Weights (1, 0) give Muon without weight decay; (0, 1) give torch SGD with coupled (L2) weight decay
(the registered ``"sgd"`` rule). The order above, with the L2 term taken at W' rather than W, is the
code's (``MuSGD.step``); this file applies both parts in one write. ``weight_decay_mode="sgd_l2"``
(the default) is that rule; "decoupled", "coupled" and "cautious" are the library's usual modes
instead (for "coupled" both branches then see G + λW).

Defaults: the class's (lr 1e-3, momentum 0, no Nesterov, weight decay 0, w_muon = w_sgd = 0.5;
``MuSGD.__init__``). ``recommended`` (what ``create_optimizer`` uses) is what the YOLO26 trainer
passes: lr 0.01, momentum 0.9, Nesterov, w_muon 0.2, w_sgd 1.0 (``engine/trainer.py``
``build_optimizer``, "optimizer=auto"), with weight decay 5e-4 (YOLO's ``weight_decay``).
Differences from the code: a conv filter's shape factor uses the flattened ``(out, in·kh·kw)``
matrix (Keller's 4-D quirk uses kh/kw), and the NS normaliser is ``max(‖X‖_F, ε)``, not ``‖X‖_F + ε``.
Non-matrix parameters get AdamW through :func:`muonlab.create_optimizer` (Ultralytics: plain SGD).

Source: github ultralytics/ultralytics ``ultralytics/optim/muon.py`` (MuSGD) @ 079f842 and
``ultralytics/engine/trainer.py`` [EXACT code].
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..matfn import matrix_shape, to_matrix
from ..registry import OptimizerSpec, register
from . import hyper as H
from .muon import MuonRule
from .rule import scalar
from .steps import apply_update, momentum_, shape_scale
from .state import PARAM


class MuSGDRule(MuonRule):
    """Muon step and SGD step, weighted and summed (see the module docstring)."""

    name = "musgd"
    hypers = {
        **{k: h for k, h in MuonRule.hypers.items() if k != "momentum_form"},
        "lr": H.Hyper(1e-3, "learning rate η of both branches (class default)", low=0.0),
        "momentum": H.Hyper(0.0, "momentum β of both branches (class default 0)", low=0.0, high=1.0,
                            high_open=True),
        "nesterov": H.Hyper(False, "Nesterov look-ahead in both branches (class default)", kind="bool"),
        "weight_decay": H.Hyper(0.0, "weight decay λ (class default 0)", low=0.0),
        "weight_decay_mode": H.Hyper(
            "sgd_l2",
            "sgd_l2: L2 in the SGD branch at the post-Muon weights (Ultralytics); or the usual "
            "decoupled, coupled, cautious",
            kind="choice", choices=("sgd_l2", "decoupled", "coupled", "cautious"),
        ),
        "muon_weight": H.Hyper(0.5, "weight of the Muon step (class default; YOLO26 trainer 0.2)", low=0.0),
        "sgd_weight": H.Hyper(0.5, "weight of the SGD step (class default; YOLO26 trainer 1.0)", low=0.0),
    }
    # The matrix phase is Muon's; the SGD branch runs in step().
    state_spec = {"momentum_buffer": PARAM, "momentum_buffer_SGD": PARAM}

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        z = lambda: torch.zeros_like(p, memory_format=torch.preserve_format)  # noqa: E731
        return {"momentum_buffer": z(), "momentum_buffer_SGD": z()}

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        return momentum_(state["momentum_buffer"], grad, group["momentum"], nesterov=group["nesterov"],
                         form="ema")

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        """The Muon part as a direction per unit lr: ``w_muon·s(m, n)·O``."""
        m, n = matrix_shape(tuple(p.shape), group.get("matrix_view"))
        return O * (group["muon_weight"] * shape_scale(m, n, group["adjust_lr_fn"])), scalar(group["lr"])

    def step(self, params, grads, states, group, executor) -> None:
        # MatrixRule.step, plus the SGD branch, which needs the raw gradient after the matrix phase.
        view = group.get("matrix_view")
        Xs = [to_matrix(self.pre(p, g, st, group), view) for p, g, st in zip(params, grads, states)]
        muon_parts = executor.update_phase(self, params, Xs, states, group)
        lr, wd, mode = scalar(group["lr"]), group["weight_decay"], group["weight_decay_mode"]
        for p, g, st, (muon, _) in zip(params, grads, states, muon_parts):
            if mode == "sgd_l2" and wd != 0:
                g = g.add(p.add(muon, alpha=-lr), alpha=wd)  # λ·W' with W' = W − η·w_muon·s·O
            u = momentum_(st["momentum_buffer_SGD"], g, group["momentum"], nesterov=group["nesterov"],
                          form="accumulate")
            direction = muon.add(u, alpha=group["sgd_weight"])
            apply_update(p, direction, lr, lr=lr, weight_decay=0.0 if mode == "sgd_l2" else wd, mode=mode)

register(
    OptimizerSpec(
        name="musgd",
        rule=MuSGDRule(),
        summary="W ← W − η·(w_m·Muon(EMA momentum) + w_s·SGD(accumulate momentum, L2)), YOLO26's default",
        recommended={"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
                     "muon_weight": 0.2, "sgd_weight": 1.0},
        source="ultralytics/ultralytics optim/muon.py (MuSGD), engine/trainer.py (YOLO26 settings)",
        certainty="EXACT",
        state="2× (momentum_buffer, momentum_buffer_SGD)",
        search_space={"lr": (1e-3, 1e-1)},
    )
)
