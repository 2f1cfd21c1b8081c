"""Composable steps: the small pieces every update rule is built from.

Each function does one thing to tensors it is handed. Functions ending in ``_`` update a state
buffer in place (that is what optimizer state is for); none of them ever writes ``p.grad`` or the
parameter, except :func:`apply_update`, the single place where parameters change.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# ---- momentum -----------------------------------------------------------------------------------


def momentum_(buf: Tensor, grad: Tensor, beta: float, *, nesterov: bool, form: str = "ema") -> Tensor:
    """Update the momentum buffer in place and return the update input.

    ``form="ema"`` (Keller, torch.optim.Muon, NorMuon, AdaMuon)::

        M ← β M + (1−β) G;   input = (1−β) G + β M  if nesterov else M

    ``form="accumulate"`` (PyTorch SGD, Moonlight, Dion)::

        M ← β M + G;         input = G + β M        if nesterov else M

    With ``nesterov=False`` the returned tensor *is* the buffer; callers must not modify it.
    """
    if form == "ema":
        buf.lerp_(grad, 1 - beta)
        return grad.lerp(buf, beta) if nesterov else buf
    if form == "accumulate":
        buf.mul_(beta).add_(grad)
        return grad.add(buf, alpha=beta) if nesterov else buf
    raise ValueError(f"unknown momentum form {form!r}; choose 'ema' or 'accumulate'")


def can_foreach(*lists: list[Tensor]) -> bool:
    """Whether ``torch._foreach_*`` may replace a per-tensor loop: plain dense tensors (not
    DTensor shards, whose per-tensor ops carry sharding logic) on one device."""
    devices = set()
    for ts in lists:
        for t in ts:
            if type(t) not in (Tensor, torch.nn.Parameter) or t.is_sparse:
                return False
            devices.add(t.device)
    return len(devices) <= 1


def momentum_many_(
    bufs: list[Tensor], grads: list[Tensor], beta: float, *, nesterov: bool, form: str = "ema"
) -> list[Tensor]:
    """:func:`momentum_` for a list of parameters with one ``torch._foreach_*`` call per operation
    (the same per-element operations, so bitwise-equal results; tested). Falls back to the loop
    when the tensors cannot go through foreach."""
    if form != "ema" or not can_foreach(bufs, grads):
        return [momentum_(b, g, beta, nesterov=nesterov, form=form) for b, g in zip(bufs, grads)]
    torch._foreach_lerp_(bufs, grads, 1 - beta)
    return torch._foreach_lerp(grads, bufs, beta) if nesterov else list(bufs)


# ---- shape / lr scaling -------------------------------------------------------------------------

SHAPE_SCALES = ("original", "match_rms_adamw", "spectral_norm", "none")


def shape_scale(m: int, n: int, mode: str | None) -> float:
    """Multiplier of an orthogonalized ``m×n`` update (m = fan_out, n = fan_in).

    * ``"original"`` (Keller, torch default; ``None`` means this): ``√max(1, m/n)``.
    * ``"match_rms_adamw"`` (Moonlight): ``0.2·√max(m, n)``, update RMS ≈ 0.2 like AdamW's.
    * ``"spectral_norm"`` (Dion, Scion): ``√(m/n)``, unit RMS→RMS operator norm.
    * ``"none"``: 1.
    """
    if mode is None or mode == "original":
        return math.sqrt(max(1, m / n))
    if mode == "match_rms_adamw":
        return 0.2 * math.sqrt(max(m, n))
    if mode == "spectral_norm":
        return math.sqrt(m / n)
    if mode == "none":
        return 1.0
    raise ValueError(f"unknown shape scaling {mode!r}; choose one of {SHAPE_SCALES}")


# ---- Adam moments -------------------------------------------------------------------------------


def adam_moments_(exp_avg: Tensor, exp_avg_sq: Tensor, grad: Tensor, beta1: float, beta2: float) -> None:
    """``m ← β₁m + (1−β₁)g``;  ``v ← β₂v + (1−β₂)g²`` (torch.optim.AdamW's operation order)."""
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)


def adam_denominator(exp_avg_sq: Tensor, step: float, beta2: float | Tensor, eps: float) -> Tensor:
    """``√(v / (1−β₂ᵗ)) + ε``, computed as torch.optim.AdamW does (for bitwise parity; a tensor
    β₂ keeps the bias correction a tensor, as in torch)."""
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    return (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)


# ---- the parameter write ------------------------------------------------------------------------


def apply_update(
    p: Tensor,
    update: Tensor,
    step_size: float,
    *,
    lr: float,
    weight_decay: float,
    mode: str = "decoupled",
    denom: Tensor | None = None,
) -> None:
    """``W ← W − step_size · update`` (or ``update/denom``) with the group's weight decay.

    Weight decay uses the *unadjusted* ``lr`` (torch, Keller, Moonlight):

    * ``"decoupled"``: ``W ← (1 − lr·λ) W`` before the update;
    * ``"cautious"`` (Chen et al., arXiv 2510.12402; Dion's mask, equality included):
      ``W ← W − lr·λ·𝟙[U ⊙ W ≥ 0] ⊙ W`` with the pre-update W;
    * ``"coupled"``: nothing here; the shell already added ``λW`` to the gradient.
    """
    if weight_decay != 0:
        if mode == "decoupled":
            p.mul_(1 - lr * weight_decay)
        elif mode == "cautious":
            # denom > 0, so sign(update/denom) = sign(update).
            mask = (update * p >= 0).to(p.dtype)
            p.addcmul_(p, mask, value=-lr * weight_decay)
    if denom is None:
        if torch.compiler.is_compiling():
            # ``alpha`` must be a constant to the compiler: a scheduled lr would recompile each step.
            p.sub_(update * step_size)
        else:
            p.add_(update, alpha=-step_size)  # mixed dtypes round once, in p's dtype
    else:
        p.addcdiv_(update, denom, value=-step_size)


def apply_updates(
    params: list[Tensor],
    updates: list[Tensor],
    step_sizes: list[float],
    *,
    lr: float,
    weight_decay: float,
    mode: str = "decoupled",
) -> None:
    """:func:`apply_update` for many parameters: ``torch._foreach_*`` calls per distinct step size
    (same operations and rounding as the loop; tested bitwise) for decoupled/no weight decay;
    the loop otherwise (cautious decay, mixed dtypes, DTensor shards)."""
    same_dtype = all(u.dtype == p.dtype for p, u in zip(params, updates))
    cautious = mode == "cautious" and weight_decay != 0
    # Inside torch.compile the loop is what the compiler fuses, and grouping by step size would key
    # a dict on (symbolic) floats, which forces a recompilation for every new learning rate.
    if cautious or not same_dtype or torch.compiler.is_compiling() or not can_foreach(params, updates):
        for p, u, s in zip(params, updates, step_sizes):
            apply_update(p, u, s, lr=lr, weight_decay=weight_decay, mode=mode)
        return
    if weight_decay != 0 and mode == "decoupled":
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    by_size: dict[float, list[int]] = {}
    for i, s in enumerate(step_sizes):
        by_size.setdefault(s, []).append(i)
    for s, idx in by_size.items():
        torch._foreach_add_([params[i] for i in idx], [updates[i] for i in idx], alpha=-s)


# ---- per-matrix state in the batched matrix phase -----------------------------------------------
# A parameter seen with ``matrix_view="batch"`` is several matrices, so the ``(B, m, n)`` batch that
# ``MatrixRule.matrix_fn`` gets holds ``B = len(states) · k`` matrices. Per-matrix state (a row
# second moment, a scalar) is stored as ``(*lead, *tail)`` per parameter (``lead`` = the batch dims,
# empty otherwise) and travels through the batch with these two functions.


def matrix_state_zeros(p: Tensor, view: str | None, tail: tuple[int, ...] = (), dtype=None) -> Tensor:
    """Zeros of shape ``(*lead, *tail)``: one ``tail``-shaped slot per matrix of ``p`` under ``view``."""
    lead = tuple(p.shape[:-2]) if view == "batch" else ()
    # new_zeros: for an FSDP2 (DTensor) parameter, a DTensor replicated on its mesh, so code that
    # mixes it with the sharded gradient (AdaGO's ‖G‖²) stays correct: DTensor reduces as needed.
    return p.new_zeros((*lead, *tail), dtype=dtype or p.dtype)


def gather_states(states: list[dict], key: str, tail: tuple[int, ...]) -> Tensor:
    """``states[i][key]`` stacked as ``(B, *tail)``, aligned with the matrix batch (a new tensor)."""
    return torch.stack([st[key] for st in states]).reshape(-1, *tail)


def scatter_states_(states: list[dict], key: str, value: Tensor) -> None:
    """Write a ``(B, *tail)`` batch back into ``states[i][key]`` (inverse of :func:`gather_states`)."""
    for st, v in zip(states, value.reshape(len(states), -1).unbind(0)):
        st[key].copy_(v.view(st[key].shape))
