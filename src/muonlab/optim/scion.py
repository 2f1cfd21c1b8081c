"""Scion: momentum, then the linear minimization oracle (LMO) of a per-layer norm ball.

Pethick et al., "Training Deep Learning Models with Norm-Constrained LMOs" (arXiv 2502.07529); code
github.com/LIONS-EPFL/scion ``scion.py`` @ a86f93e [EXACT]. Per parameter, with the group's norm,
radius ρ (``scale``), step γ (``lr``) and ``momentum`` α (Scion's convention: α = 1 − β, the
weight of the *new* gradient; α = 1 means no momentum)::

    M ← (1−α) M + α G                             momentum_buffer
    D ← ρ · lmo(M)                                lmo returned without its minus sign
    constrained (default):  W ← (1−γ) W − γ D     a Frank–Wolfe step: W stays in the ball of radius ρ
    unconstrained:          W ← W − γ D

``lmo`` per ``norm`` (``normalized=None`` takes Scion's default for that norm, shown first):

============  ===============================================================  ==================
norm          lmo(g) for g ∈ R^{d_out×d_in}                                     intended for
============  ===============================================================  ==================
"spectral"    orthogonalize(g)·√(d_out/d_in) (normalized=False: ·√d_out;       hidden matrices
              ``spectral_max``: max(1, ·))
"auto"        ≥3-D with matrix_view="flatten": orthogonalize(reshape)·√(out/in)  CNNs, everything
              /∏k (SpectralConv); 2-D: "spectral"; 0-/1-D: "bias_rms"
"sign"        sign(g)/d_in (normalized=False: sign(g))                          output head
"col_norm"    each column / its RMS ‖g_:,j‖/√d_out (normalized=True: RMS·d_in)  embeddings/input
"row_norm"    each row / (‖g_i,:‖·√d_in) (normalized=False: / ‖g_i,:‖)          alternative in/out
"bias_rms"    g / RMS(g)                                                        biases and gains
============  ===============================================================  ==================

``transpose=True`` applies col/row_norm to ``gᵀ`` (a ``(vocab, d)`` embedding). The row/column/RMS
normalisers add ε = 1e-8, as Scion does. The constrained update is decoupled weight decay with
λ = 1 through the core :func:`~muonlab.optim.steps.apply_update` (``weight_decay_mode="cautious"``
makes it cautious); it replaces weight decay, so ``weight_decay`` must stay 0 when constrained.
With exact orthogonalization the spectral iterates obey ``‖W_{t+1}‖ ≤ (1−γ)‖W_t‖ + γρs``: the ball
``‖W‖ ≤ ρs`` is invariant and a constant gradient has the fixed point ``W* = −ρ·lmo(G)``,
reached as ``W_t − W* = (1−γ)ᵗ (W₀ − W*)`` (tested).

Defaults are the ``Scion`` class's (lr 1e-3, momentum 1.0, norm "Auto", scale 1.0, constrained);
the README recommends momentum 0.1. Routing: :func:`muonlab.create_optimizer` sends hidden
matrices to Scion (``"spectral"``/``"auto"``) and the rest to AdamW; :func:`scion_param_groups`
gives every parameter Scion's own geometry instead (output → sign, embeddings → column norm,
vectors → bias RMS). Not reproduced: ``Scion.init()`` (norm-matched initialisation) and
``ScionLight`` (the momentum kept in ``p.grad``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..matfn import matrix_shape
from ..registry import OptimizerSpec, register
from . import hyper as H
from .rule import MATRIX_HYPERS, ORTHO_HYPERS, MatrixRule, orthogonalize_group, scalar
from .steps import apply_update, momentum_
from .state import PARAM

NORMS = ("auto", "spectral", "sign", "col_norm", "row_norm", "bias_rms")
#: Scion's ``normalized`` default for each norm class (Spectral, Sign, ColNorm, RowNorm).
_NORMALIZED = {"auto": True, "spectral": True, "sign": True, "col_norm": False, "row_norm": True,
               "bias_rms": False}
_LMO_EPS = 1e-8  # scion.py: ColNorm, RowNorm, BiasRMS


def _bias_rms(g: Tensor) -> Tensor:
    return g / (g.pow(2).mean().sqrt() + _LMO_EPS)


class ScionRule(MatrixRule):
    """Scion as a :class:`MatrixRule`; 0-/1-D parameters (norm "auto"/"bias_rms") are stepped
    element-wise (see the module docstring for the math)."""

    momentum_is_beta = False  # Scion's `momentum` is α = 1 − β
    name = "scion"
    hypers = {
        **MATRIX_HYPERS,
        **{k: h for k, h in ORTHO_HYPERS.items() if k != "adjust_lr_fn"},  # Scion scales per norm
        "norm": H.Hyper("auto", "the LMO geometry of this group", kind="choice", choices=NORMS),
        "scale": H.Hyper(1.0, "radius ρ of the norm ball (the update is ρ·lmo)", low=0.0, low_open=True),
        "momentum": H.Hyper(1.0, "α = 1 − β: weight of the new gradient (1 = no momentum)", low=0.0,
                            high=1.0, low_open=True),
        "constrained": H.Hyper(True, "W ← (1−γ)W − γD (True) or W ← W − γD", kind="bool"),
        "normalized": H.Hyper(None, "Scion's per-norm `normalized` flag; None = that norm's default",
                              kind="bool", optional=True),
        "spectral_max": H.Hyper(False, "spectral scale max(1, √(d_out/d_in)) (Scion's input layer)",
                                kind="bool"),
        "transpose": H.Hyper(False, "col/row_norm on the transpose ((vocab, d) embeddings)", kind="bool"),
    }
    state_spec = {"momentum_buffer": PARAM}  # matrix_fn and post use no state

    def check_param(self, p: Tensor, group: dict, where: str) -> None:
        if p.ndim < 2:
            if group["norm"] not in ("auto", "bias_rms"):
                raise ValueError(
                    f"{where} has shape {tuple(p.shape)}: Scion's norm={group['norm']!r} needs a "
                    "matrix; use norm='bias_rms' (or 'auto') for 0-D/1-D parameters"
                )
        else:
            super().check_param(p, group, where)
        if group["constrained"] and (group["weight_decay"] != 0 or group["weight_decay_mode"] == "coupled"):
            raise ValueError(
                f"{where}: constrained=True already decays W ← (1−lr)W; use weight_decay=0 and a "
                "'decoupled' or 'cautious' weight_decay_mode, or constrained=False"
            )

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        return momentum_(state["momentum_buffer"], grad, 1 - group["momentum"], nesterov=False)

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        norm = group["norm"]
        if norm in ("auto", "spectral"):
            return orthogonalize_group(X, group)  # shape factor in post (it needs conv kernels)
        normalized = _normalized(group)
        Y = X.to(torch.float64 if X.dtype == torch.float64 else torch.float32)
        if norm == "sign":
            Y = Y.sign() / Y.size(-1) if normalized else Y.sign()
            return Y.to(X.dtype)
        if group["transpose"]:
            Y = Y.mT
        if norm == "col_norm":
            rms = Y.norm(dim=-2, keepdim=True) / math.sqrt(Y.size(-2))
            Y = Y / (rms * Y.size(-1) + _LMO_EPS if normalized else rms + _LMO_EPS)
        elif norm == "row_norm":
            rms = Y.norm(dim=-1, keepdim=True)
            Y = Y / (rms * math.sqrt(Y.size(-1)) + _LMO_EPS if normalized else rms + _LMO_EPS)
        else:  # bias_rms on a matrix: Scion's BiasRMS reduces over dim 0, i.e. per column
            Y = Y / (Y.pow(2).mean(dim=-2, keepdim=True).sqrt() + _LMO_EPS)
        if group["transpose"]:
            Y = Y.mT
        return Y.to(X.dtype)

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        step = scalar(group["lr"]) * group["scale"]
        if group["norm"] in ("auto", "spectral"):
            step *= spectral_scale(tuple(p.shape), group)
        return O, step

    def step(self, params, grads, states, group, executor) -> None:
        if group["constrained"]:  # (1−γ)W: decoupled (or cautious) weight decay with λ = 1
            mode = "cautious" if group["weight_decay_mode"] == "cautious" else "decoupled"
            group = {**group, "weight_decay": 1.0, "weight_decay_mode": mode}
        mats = [i for i, p in enumerate(params) if p.ndim >= 2]
        if mats:
            pick = lambda xs: [xs[i] for i in mats]  # noqa: E731
            super().step(pick(params), pick(grads), pick(states), group, executor)
        lr = scalar(group["lr"])
        for p, g, st in zip(params, grads, states):
            if p.ndim < 2:
                D = _bias_rms(self.pre(p, g, st, group))
                apply_update(p, D, lr * group["scale"], lr=lr, weight_decay=group["weight_decay"],
                             mode=group["weight_decay_mode"])


def _normalized(group: dict) -> bool:
    return _NORMALIZED[group["norm"]] if group["normalized"] is None else group["normalized"]


def spectral_scale(shape: tuple[int, ...], group: dict) -> float:
    """Scion's factor of the orthogonalized update: Spectral (2-D, "batch" view) or SpectralConv."""
    if group["matrix_view"] == "flatten" and len(shape) > 2:  # SpectralConv: √(out/in)/∏k
        return math.sqrt(shape[0] / shape[1]) / math.prod(shape[2:])
    m, n = matrix_shape(shape, group["matrix_view"])
    s = math.sqrt(m / n) if _normalized(group) else math.sqrt(m)
    return max(1.0, s) if group["spectral_max"] else s


#: Default geometry per routing role (Scion README / examples): a GUESS where Scion gives none.
ROLE_NORMS: dict[str, dict[str, Any]] = {
    "hidden": {"norm": "spectral"},
    "conv": {"norm": "auto", "matrix_view": "flatten"},
    "other": {"norm": "auto", "matrix_view": "flatten"},
    "embedding": {"norm": "col_norm", "transpose": True},  # ColNorm(transpose=True) for (vocab, d)
    "output": {"norm": "sign"},  # Sign(normalized=True): sign/d_in
    "vector": {"norm": "bias_rms"},
}


register(
    OptimizerSpec(
        name="scion",
        configs={"sign": {"norm": "sign"}, "col_norm": {"norm": "col_norm"}, "row_norm": {"norm": "row_norm"}, "spectral_unconstrained": {"norm": "spectral", "constrained": False}},
        rule=ScionRule(),
        summary="M ← (1−α)M + αG; W ← (1−γ)W − γρ·lmo(M) for the group's norm ball (spectral, sign, "
        "col/row norm, bias RMS, auto)",
        recommended={"lr": 0.02, "momentum": 0.1},
        aux={"lr": 5e-3},  # docs/defaults.md: the digits MLP's loss 1.03 with the side at 3e-4, 0.23 at 5e-3
        source="Pethick et al., arXiv 2502.07529; github LIONS-EPFL/scion scion.py",
        certainty="EXACT",
        state="1× (momentum_buffer)",
        search_space={"lr": (1e-3, 0.3)},
    )
)
