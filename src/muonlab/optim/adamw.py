"""AdamW, the rule for embeddings, output heads, norms and biases (and a baseline).

Math (torch.optim.AdamW, identical operation order so results match bit for bit)::

    W ← (1 − η λ) W
    m ← β₁ m + (1−β₁) g;   v ← β₂ v + (1−β₂) g²
    W ← W − η/(1−β₁ᵗ) · m / (√(v/(1−β₂ᵗ)) + ε)

Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (arXiv 1711.05101).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor

from ..registry import OptimizerSpec, register
from . import hyper as H
from .rule import ElementwiseRule, scalar
from .shell import HybridOptimizer
from .steps import adam_denominator, adam_moments_, apply_update
from .state import PARAM


class AdamWRule(ElementwiseRule):
    name = "adamw"
    hypers = {
        "lr": H.LR,
        "betas": H.BETAS,
        "eps": H.ADAM_EPS,
        "weight_decay": H.Hyper(1e-2, "decoupled weight decay λ (torch default)", low=0.0),
        "weight_decay_mode": H.WEIGHT_DECAY_MODE,
        "impl": H.Hyper(
            "auto", "loop (reference), foreach, fused (CPU kernel) or auto (fused on CPU, else foreach)",
            kind="choice", choices=("auto", "loop", "foreach", "fused"),
        ),
    }
    state_spec = {"exp_avg": PARAM, "exp_avg_sq": PARAM, "max_exp_avg_sq": PARAM}

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        return {
            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
        }

    def step(self, params, grads, states, group, executor) -> None:
        """Dispatch to the loop reference or a multi-tensor implementation (same results)."""
        impl = group["impl"]
        if impl == "loop" or group["weight_decay_mode"] == "cautious":
            return super().step(params, grads, states, group, executor)
        buckets: dict[tuple, list[int]] = {}
        for i, p in enumerate(params):
            buckets.setdefault((p.device, p.dtype), []).append(i)
        for (device, _), idx in buckets.items():
            ps, gs = [params[i] for i in idx], [_like_param(params[i], grads[i]) for i in idx]
            # torch 2.13's fused CPU kernel is wrong when a gradient's strides differ from its
            # parameter's (e.g. a transposed view as grad): such buckets take the foreach path.
            aligned = all(g.stride() == p.stride() for p, g in zip(ps, gs))
            fused = aligned and (impl == "fused" or (impl == "auto" and device.type == "cpu"))
            _multi_tensor(ps, gs, [states[i] for i in idx], group, fused)

    def update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        beta1, beta2 = group["betas"]
        lr = scalar(group["lr"])
        adam_moments_(state["exp_avg"], state["exp_avg_sq"], grad, beta1, beta2)
        step = state["step"].item()
        denom = adam_denominator(state["exp_avg_sq"], step, beta2, group["eps"])
        apply_update(
            p,
            state["exp_avg"],
            lr / (1 - beta1**step),
            lr=lr,
            weight_decay=group["weight_decay"],
            mode=group["weight_decay_mode"],
            denom=denom,
        )


def _like_param(p: Tensor, g: Tensor) -> Tensor:
    """``g`` with ``p``'s memory layout when ``p`` is contiguous (a copy only if needed)."""
    return g.contiguous() if p.is_contiguous() and not g.is_contiguous() else g


def _multi_tensor(params, grads, states, group, fused: bool) -> None:
    """All parameters of one device/dtype at once: torch's fused kernel or its foreach sequence.

    Both reproduce torch.optim.AdamW(fused=True) / (foreach=True) bit for bit; the loop in
    :meth:`AdamWRule.update` is the readable reference they are tested against. With
    ``weight_decay_mode="coupled"`` the shell already added λW to the gradients, so the decoupled
    decay here is 0.
    """
    beta1, beta2 = group["betas"]
    lr = scalar(group["lr"])
    wd = group["weight_decay"] if group["weight_decay_mode"] == "decoupled" else 0.0
    exp_avgs = [st["exp_avg"] for st in states]
    exp_avg_sqs = [st["exp_avg_sq"] for st in states]
    steps = [st["step"] for st in states]
    if fused:
        torch._fused_adamw_(
            params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=lr, beta1=beta1,
            beta2=beta2, weight_decay=wd, eps=group["eps"], maximize=False,
        )
        return
    if wd != 0:
        torch._foreach_mul_(params, 1 - lr * wd)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    t = [st.item() for st in steps]
    step_size = [(lr / (1 - beta1**k)) * -1 for k in t]
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, [(1 - beta2**k) ** 0.5 for k in t])
    torch._foreach_add_(denom, group["eps"])
    torch._foreach_addcdiv_(params, exp_avgs, denom, step_size)


class AdamW(HybridOptimizer):
    """AdamW with torch.optim.AdamW's arguments and results, plus ``weight_decay_mode``.

    Args:
        params: parameters or param groups.
        lr: learning rate (default 1e-3).
        betas: (β₁, β₂) (default (0.9, 0.999)).
        eps: denominator epsilon (default 1e-8).
        weight_decay: decoupled weight decay λ (default 0.01).
        weight_decay_mode: "decoupled" (default), "coupled" (L2 in the gradient) or "cautious".
        impl: "auto" (default: torch's fused kernel on CPU, foreach elsewhere), "fused",
            "foreach" or "loop" (the readable reference); all give torch's results.
        check_finite: raise on NaN/Inf gradients naming the parameter (default False).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        weight_decay_mode: str = "decoupled",
        impl: str = "auto",
        check_finite: bool = False,
        executor: Any = None,
    ) -> None:
        super().__init__(
            params,
            "adamw",
            impl=impl,
            check_finite=check_finite,
            executor=executor,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            weight_decay_mode=weight_decay_mode,
        )


register(
    OptimizerSpec(
        name="adamw",
        rule=AdamWRule(),
        summary="Adam with decoupled weight decay (torch.optim.AdamW, bit-identical)",
        recommended={"lr": 3e-4, "betas": (0.9, 0.95), "weight_decay": 0.0},
        source="Loshchilov & Hutter, arXiv 1711.05101; torch.optim.AdamW",
        certainty="EXACT",
        state="2× (exp_avg, exp_avg_sq)",
        search_space={"lr": (1e-4, 1e-2)},
    )
)
