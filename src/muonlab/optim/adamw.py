"""AdamW, the rule for embeddings, output heads, norms and biases (and a baseline).

Math (torch.optim.AdamW, identical operation order so results match bit for bit)::

    W ← (1 − η λ) W
    m ← β₁ m + (1−β₁) g;   v ← β₂ v + (1−β₂) g²
    v̂ ← max(v̂, v) if amsgrad else v
    W ← W − η/(1−β₁ᵗ) · m / (√(v̂/(1−β₂ᵗ)) + ε)

``maximize`` negates g (done by the shell, before any L2 term). Implementations: ``loop`` (the
readable reference, torch's single-tensor path), ``foreach`` (torch's multi-tensor path), ``fused``
(torch's fused kernel) and, with ``capturable=True`` or inside ``torch.compile``, the multi-tensor
path with the step counters and bias corrections kept as tensors (no host synchronisation, as
torch's capturable path).

Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (arXiv 1711.05101);
Reddi et al., "On the Convergence of Adam and Beyond" (amsgrad, ICLR 2018); torch.optim.AdamW.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor

from ..registry import OptimizerSpec, register
from . import hyper as H
from .rule import ElementwiseRule, scalar
from .shell import HybridOptimizer
from .state import PARAM, Slot
from .steps import adam_denominator, adam_moments_, apply_update


def _not_differentiable(value: Any) -> str | None:
    if value is False:
        return None
    if value is True:
        return ("differentiable=True (autograd through the optimizer step) is not supported by "
                "muonlab; use torch.optim.AdamW(differentiable=True)")
    return "expected True or False"


class AdamWRule(ElementwiseRule):
    name = "adamw"
    hypers = {
        "lr": H.LR,
        "betas": H.BETAS,
        "eps": H.ADAM_EPS,
        "weight_decay": H.Hyper(1e-2, "decoupled weight decay λ (torch default)", low=0.0),
        "amsgrad": H.Hyper(False, "keep the running maximum of v (AMSGrad)", kind="bool"),
        "maximize": H.MAXIMIZE,
        "foreach": H.Hyper(None, "torch's multi-tensor path (None: as impl says)", kind="bool", optional=True),
        "capturable": H.Hyper(False, "step counters on the parameter's device, no host sync (CUDA graphs)",
                              kind="bool"),
        "differentiable": H.Hyper(False, "autograd through the step: not supported", kind="any",
                                  check=_not_differentiable),
        "fused": H.Hyper(None, "torch's fused kernel (None: as impl says)", kind="bool", optional=True),
        "weight_decay_mode": H.WEIGHT_DECAY_MODE,
        "impl": H.Hyper(
            "auto", "loop (reference), foreach, fused (CPU kernel) or auto (fused on CPU, else foreach)",
            kind="choice", choices=("auto", "loop", "foreach", "fused"),
        ),
    }
    state_spec = {
        "exp_avg": PARAM,
        "exp_avg_sq": PARAM,
        "max_exp_avg_sq": Slot("param", doc="running maximum of exp_avg_sq (amsgrad only)"),
    }

    def check_group(self, group: dict, where: str) -> None:
        if group["fused"] and group["foreach"]:
            raise ValueError(f"{where}: invalid fused=True with foreach=True; choose one (as torch.optim.AdamW)")
        if group["fused"] and group["weight_decay_mode"] == "cautious":
            raise ValueError(f"{where}: invalid fused=True with weight_decay_mode='cautious'; torch's fused "
                             "kernel has no cautious decay (use fused=None)")

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        z = lambda: torch.zeros_like(p, memory_format=torch.preserve_format)  # noqa: E731
        st = {"exp_avg": z(), "exp_avg_sq": z()}
        if group["amsgrad"]:
            st["max_exp_avg_sq"] = z()
        return st

    def step(self, params, grads, states, group, executor) -> None:
        """Dispatch to the loop reference or a multi-tensor implementation (same results)."""
        impl = _resolve_impl(group)
        if group["capturable"] or impl == "fused" or torch.compiler.is_compiling():
            for st, p in zip(states, params):  # torch keeps these step counters on the device
                if st["step"].device != p.device:
                    st["step"] = st["step"].to(p.device)
        if group["amsgrad"]:
            for st in states:  # a checkpoint from amsgrad=False, resumed with amsgrad=True
                if "max_exp_avg_sq" not in st:
                    st["max_exp_avg_sq"] = torch.zeros_like(st["exp_avg_sq"])
        if impl == "loop" or group["weight_decay_mode"] == "cautious":
            return super().step(params, grads, states, group, executor)
        buckets: dict[tuple, list[int]] = {}
        for i, p in enumerate(params):
            buckets.setdefault((p.device, p.dtype), []).append(i)
        for (device, _), idx in buckets.items():
            ps, gs = [params[i] for i in idx], [_like_param(params[i], grads[i]) for i in idx]
            sts = [states[i] for i in idx]
            if group["capturable"] or torch.compiler.is_compiling():
                _multi_tensor_capturable(ps, gs, sts, group)
                continue
            # torch 2.13's fused CPU kernel is wrong when a gradient's strides differ from its
            # parameter's (e.g. a transposed view as grad): such buckets take the foreach path.
            aligned = all(g.stride() == p.stride() for p, g in zip(ps, gs))
            fused = aligned and (impl == "fused" or (impl == "auto" and device.type == "cpu"))
            _multi_tensor(ps, gs, sts, group, fused)

    def update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        # Tensor lr/betas stay 0-D tensors here, so the scalar arithmetic runs in their dtype,
        # exactly as in torch's single-tensor path.
        beta1, beta2 = (_zero_dim(b) for b in group["betas"])
        lr = _zero_dim(group["lr"])
        adam_moments_(state["exp_avg"], state["exp_avg_sq"], grad, beta1, beta2)
        step = state["step"].item()
        v = state["exp_avg_sq"]
        if group["amsgrad"]:
            torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        denom = adam_denominator(v, step, beta2, group["eps"])
        apply_update(
            p,
            state["exp_avg"],
            lr / (1 - beta1**step),
            lr=lr,
            weight_decay=group["weight_decay"],
            mode=group["weight_decay_mode"],
            denom=denom,
        )


def _zero_dim(x):
    """A 1-element tensor as a 0-D tensor (torch's ``_to_scalar``); numbers unchanged."""
    return x.reshape(()) if isinstance(x, Tensor) else x


def _resolve_impl(group: dict) -> str:
    """torch's ``fused``/``foreach`` flags win over ``impl`` (``foreach=False``: the loop)."""
    if group["fused"]:
        return "fused"
    if group["foreach"]:
        return "foreach"
    if group["foreach"] is False:
        return "loop"
    return group["impl"]


def _like_param(p: Tensor, g: Tensor) -> Tensor:
    """``g`` with ``p``'s memory layout when ``p`` is contiguous (a copy only if needed)."""
    return g.contiguous() if p.is_contiguous() and not g.is_contiguous() else g


def _decay(group: dict) -> float:
    # With weight_decay_mode="coupled" the shell already added λW to the gradients.
    return group["weight_decay"] if group["weight_decay_mode"] == "decoupled" else 0.0


def _multi_tensor(params, grads, states, group, fused: bool) -> None:
    """All parameters of one device/dtype at once: torch's fused kernel or its foreach sequence.

    Both reproduce torch.optim.AdamW(fused=True) / (foreach=True) bit for bit; the loop in
    :meth:`AdamWRule.update` is the readable reference they are tested against.
    """
    beta1, beta2 = (scalar(b) for b in group["betas"])
    lr = scalar(group["lr"])
    wd = _decay(group)
    amsgrad = group["amsgrad"]
    exp_avgs = [st["exp_avg"] for st in states]
    exp_avg_sqs = [st["exp_avg_sq"] for st in states]
    max_sqs = [st["max_exp_avg_sq"] for st in states] if amsgrad else []
    steps = [st["step"] for st in states]
    if fused:
        torch._fused_adamw_(
            params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps, amsgrad=amsgrad, lr=lr, beta1=beta1,
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
    if amsgrad:
        torch._foreach_maximum_(max_sqs, exp_avg_sqs)
        denom = torch._foreach_sqrt(max_sqs)
    else:
        denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, [(1 - beta2**k) ** 0.5 for k in t])
    torch._foreach_add_(denom, group["eps"])
    torch._foreach_addcdiv_(params, exp_avgs, denom, step_size)


def _multi_tensor_capturable(params, grads, states, group) -> None:
    """torch's capturable multi-tensor AdamW: bias corrections from the step tensors, on device.

    Used with ``capturable=True`` (CUDA graphs) and inside ``torch.compile`` (no ``.item()``, so
    no graph break and no recompilation as the step count grows). ``lr`` may be a tensor.
    """
    beta1, beta2 = (_zero_dim(b) for b in group["betas"])
    lr = _zero_dim(group["lr"])
    wd = _decay(group)
    exp_avgs = [st["exp_avg"] for st in states]
    exp_avg_sqs = [st["exp_avg_sq"] for st in states]
    steps = [st["step"] for st in states]
    if not isinstance(lr, Tensor):
        # A tensor, so a changing (scheduled) lr is data to a compiled step, not a constant
        # that forces a recompilation.
        lr = torch.ones((), dtype=steps[0].dtype, device=steps[0].device) * lr
    if wd != 0:
        torch._foreach_mul_(params, 1 - lr * wd)
    if isinstance(beta1, Tensor):
        for e, g in zip(exp_avgs, grads):
            e.lerp_(g, (1 - beta1).to(device=e.device, dtype=e.dtype))
    else:
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    if isinstance(beta2, Tensor):  # as torch: scale the gradient by the tensor, then addcmul with 1
        torch._foreach_addcmul_(exp_avg_sqs, torch._foreach_mul(grads, 1 - beta2), grads, 1.0)
    else:
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    bc1 = torch._foreach_pow(beta1, steps)
    bc2 = torch._foreach_pow(beta2, steps)
    torch._foreach_sub_(bc1, 1)
    torch._foreach_sub_(bc2, 1)
    torch._foreach_neg_(bc2)
    torch._foreach_div_(bc1, lr)
    torch._foreach_reciprocal_(bc1)  # −lr / (1 − β₁ᵗ)
    torch._foreach_sqrt_(bc2)
    if group["amsgrad"]:
        max_sqs = [st["max_exp_avg_sq"] for st in states]
        torch._foreach_maximum_(max_sqs, exp_avg_sqs)
        denom = torch._foreach_sqrt(max_sqs)
    else:
        denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bc2)
    torch._foreach_add_(denom, group["eps"])
    torch._foreach_div_(denom, bc1)
    torch._foreach_addcdiv_(params, exp_avgs, denom)


class AdamW(HybridOptimizer):
    """AdamW with torch.optim.AdamW's signature and results, plus ``weight_decay_mode``.

    Every torch argument is accepted with torch's meaning and default: ``amsgrad``, ``maximize``,
    ``foreach``, ``fused``, ``capturable``, tensor ``lr`` and ``betas``; each gives torch's
    result (bit for bit where torch's kernels are reused; tested). ``differentiable=True`` is
    rejected at construction (not supported).

    Args:
        params: parameters or param groups.
        lr: learning rate (default 1e-3), a float or a 1-element tensor.
        betas: (β₁, β₂) (default (0.9, 0.999)), floats or 1-element tensors.
        eps: denominator epsilon (default 1e-8).
        weight_decay: decoupled weight decay λ (default 0.01).
        amsgrad: use the running maximum of the second moment (default False).
        maximize: maximize the objective (default False).
        foreach / fused: torch's multi-tensor path / fused kernel; None (default): ``impl``.
        capturable: keep step counters on the parameter's device and never synchronise with the
            host (CUDA graphs; default False).
        differentiable: must be False.
        weight_decay_mode: "decoupled" (default), "coupled" (L2 in the gradient) or "cautious".
        impl: when ``foreach``/``fused`` are None: "auto" (default: torch's fused kernel on CPU,
            foreach elsewhere), "fused", "foreach" or "loop" (the readable reference).
        check_finite: raise on NaN/Inf gradients naming the parameter (default False).
        executor: see :class:`HybridOptimizer` (element-wise rules run in place anyway).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        weight_decay_mode: str = "decoupled",
        impl: str = "auto",
        check_finite: bool = False,
        executor: Any = None,
    ) -> None:
        super().__init__(
            params,
            "adamw",
            check_finite=check_finite,
            executor=executor,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            weight_decay_mode=weight_decay_mode,
            impl=impl,
        )


register(
    OptimizerSpec(
        name="adamw",
        configs={"amsgrad": {"amsgrad": True}, "loop": {"impl": "loop"}, "foreach_maximize": {"foreach": True, "maximize": True}},
        rule=AdamWRule(),
        summary="Adam with decoupled weight decay (torch.optim.AdamW, bit-identical)",
        recommended={"lr": 5e-3, "betas": (0.9, 0.95), "weight_decay": 0.0},
        source="Loshchilov & Hutter, arXiv 1711.05101; torch.optim.AdamW",
        certainty="EXACT",
        state="2× (exp_avg, exp_avg_sq); 3× with amsgrad",
        search_space={"lr": (1e-4, 1e-2)},
        invalid={"differentiable": True},
    )
)
