"""Muon: momentum, then the orthogonal polar factor of the momentum, shape-scaled.

Math (per hidden matrix W ∈ R^{m×n}, gradient G; EMA form, the default)::

    M ← β M + (1−β) G                                  momentum_buffer
    X ← (1−β) G + β M   if nesterov else M
    O ← orthogonalize(X)          ≈ U Vᵀ for X = U Σ Vᵀ (Newton–Schulz, 5 steps, bf16)
    W ← (1 − η λ) W                                    decoupled, with the *unadjusted* lr
    W ← W − η · s(m, n) · O       s = √max(1, m/n) ("original")

References:
    Keller Jordan, "Muon: An optimizer for hidden layers in neural networks" (2024),
    kellerjordan.github.io/posts/muon, github.com/KellerJordan/Muon (muon.py @ 857d1ad);
    torch.optim.Muon (torch/optim/_muon.py), whose arguments and defaults this class takes;
    Liu et al., "Muon is Scalable for LLM Training" (arXiv 2502.16982) for "match_rms_adamw".
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor

from ..registry import OptimizerSpec, register
from . import hyper as H
from .rule import MatrixRule, preset
from .shell import HybridOptimizer
from .steps import momentum_, momentum_many_
from .state import PARAM


#: torch.optim.Muon's default ``ns_coefficients`` (Keller Jordan's quintic).
TORCH_NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)


class MuonRule(MatrixRule):
    """The Muon update as a :class:`MatrixRule` (see the module docstring for the math)."""

    name = "muon"
    hypers = {
        **MatrixRule.hypers,
        "weight_decay": H.Hyper(0.1, "decoupled weight decay λ (torch.optim.Muon default)", low=0.0),
        "momentum": H.MOMENTUM,
        "nesterov": H.NESTEROV,
        "momentum_form": H.MOMENTUM_FORM,
    }
    state_spec = {"momentum_buffer": PARAM}

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def pre_many(self, params, grads, states, group) -> list[Tensor]:
        if type(self).pre is not MuonRule.pre:  # a subclass with its own element-wise phase
            return super().pre_many(params, grads, states, group)
        bufs = [st["momentum_buffer"] for st in states]
        return momentum_many_(bufs, grads, group["momentum"], nesterov=group["nesterov"], form=group["momentum_form"])

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        return momentum_(
            state["momentum_buffer"],
            grad,
            group["momentum"],
            nesterov=group["nesterov"],
            form=group["momentum_form"],
        )


class Muon(HybridOptimizer):
    """Muon as a drop-in for ``torch.optim.Muon`` (same arguments, defaults and results).

    With ``ns_gram=False`` it reproduces torch.optim.Muon's parameters bit for bit (the same
    operations in the same order); by default large elongated matrices take the cheaper Gram
    iteration of the same polynomial (within bf16 rounding of torch, tested ≤ 1e-3). Unlike torch 2.13 it
    never normalises a momentum buffer in place (torch corrupts the buffer for bf16 parameters
    with ``nesterov=False``).

    Args:
        params: parameters or param groups. Matrices only (>= 2-D with ``matrix_view``); send
            embeddings, the output head, norms and biases to AdamW (:func:`muonlab.create_optimizer`
            does this for a whole model).
        lr: learning rate, in units of spectral norm per update for "original" scaling
            (default 1e-3, torch's; Keller recommends 0.02).
        weight_decay: decoupled weight decay λ, multiplied by the unadjusted lr (default 0.1).
        momentum: β (default 0.95).
        nesterov: use the Nesterov look-ahead (default True).
        ns_coefficients: Newton–Schulz ``(a, b, c)``, a per-step list, or a table name; default
            torch's (Keller's (3.4445, −4.775, 2.0315)). With another ``orthogonalizer``, leaving
            this and ``ns_steps`` at their defaults selects that method's own table and steps.
        eps: floor of the Frobenius normaliser (default 1e-7).
        ns_steps: iterations (default 5, torch's).
        adjust_lr_fn: shape scaling: None/"original" √max(1, m/n); "match_rms_adamw"
            0.2·√max(m, n); "spectral_norm" √(m/n); "none".
        orthogonalizer: "newton_schulz", "you5", "you6", "polar_express" or "svd".
        momentum_form: "ema" (torch/Keller) or "accumulate" (M ← βM + G; Moonlight, Dion).
        compute_dtype: dtype of the iteration, "bfloat16" (default), "float32", ... or None.
        ns_gram: iterate on the small Gram matrix ``XXᵀ`` (the same polynomial with fewer FLOPs,
            restarted as :func:`muonlab.matfn.polar.gram_restart_steps` says to stay as accurate
            as the plain iteration). None (default): for matrices whose long side is >= 2× the
            short one and large enough to gain (``batch·r²·c >= 2^25``; 0.72× the
            orthogonalization time at 4:1 in bf16 on a 2-core CPU, median of three runs); results then differ from torch's by
            bf16 rounding only. False: torch.optim.Muon's exact operations (bitwise-identical
            parameters). True: always.
        ns_compile: run the Newton–Schulz loop through ``torch.compile`` (default False).
        matrix_view: None (2-D only), "flatten" (conv filters) or "batch" (stacked matrices).
        weight_decay_mode: "decoupled" (default), "coupled" (L2) or "cautious".
        check_finite: raise on NaN/Inf gradients, naming the parameter (default False).
        executor: where the matrix phase runs (default: this process, batched by shape).

    Example::

        >>> opt = muonlab.Muon(hidden_matrices, lr=0.02, weight_decay=0.01)
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = TORCH_NS_COEFFICIENTS,
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        *,
        orthogonalizer: str = "newton_schulz",
        momentum_form: str = "ema",
        compute_dtype: str | torch.dtype | None = "bfloat16",
        ns_gram: bool | None = None,
        ns_compile: bool = False,
        matrix_view: str | None = None,
        weight_decay_mode: str = "decoupled",
        check_finite: bool = False,
        executor: Any = None,
    ) -> None:
        if orthogonalizer != "newton_schulz" and ns_coefficients == TORCH_NS_COEFFICIENTS and ns_steps == 5:
            # torch's defaults describe Keller's iteration; another orthogonalizer keeps its own table.
            ns_coefficients, ns_steps = None, None
        super().__init__(
            params,
            "muon",
            check_finite=check_finite,
            executor=executor,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
            orthogonalizer=orthogonalizer,
            momentum_form=momentum_form,
            compute_dtype=compute_dtype,
            ns_gram=ns_gram,
            ns_compile=ns_compile,
            matrix_view=matrix_view,
            weight_decay_mode=weight_decay_mode,
        )


register(
    OptimizerSpec(
        name="muon",
        configs={"polar_express": {"orthogonalizer": "polar_express"}, "moonlight_scaling": {"adjust_lr_fn": "match_rms_adamw"}},
        rule=MuonRule(),
        summary="W ← W − η·s(m,n)·NS5(Nesterov-EMA momentum), polar factor by Newton–Schulz",
        recommended={"lr": 0.02, "weight_decay": 0.01},
        source="Keller Jordan, kellerjordan.github.io/posts/muon; torch.optim.Muon",
        certainty="EXACT",
        state="1× (momentum_buffer)",
        search_space={"lr": (1e-3, 1e-1)},
    )
)

register(
    OptimizerSpec(
        name="moonlight",
        rule=preset(
            MuonRule,
            "moonlight",
            "Muon with Moonlight's settings: accumulate momentum, 0.2·√max(m,n) scaling, wd 0.1.",
            momentum_form="accumulate",
            adjust_lr_fn="match_rms_adamw",
            weight_decay=0.1,
        ),
        summary="Muon preset: accumulate momentum, update RMS 0.2·√max(m,n) to reuse AdamW's lr/wd",
        recommended={"lr": 1e-2},
        source="Liu et al., Muon is Scalable for LLM Training, arXiv 2502.16982 (toy_train.py)",
        certainty="EXACT",
        state="1× (momentum_buffer)",
        search_space={"lr": (1e-4, 3e-2)},
    )
)
