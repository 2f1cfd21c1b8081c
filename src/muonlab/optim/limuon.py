"""LiMuon: Muon with STORM (variance-reduced) momentum, optionally kept as a randomized low-rank SVD.

Huang, Luo, Chen, "LiMuon: Light and Fast Muon Optimizer for Large Models" (arXiv 2509.14562; the
MiMuon authors). No authors' code or paper body was found; the rule below is the third-party
summary junaidaliop/zij ``canon/math/limuon.md`` [SECONDARY], with the choices it leaves open made
options [RECON/GUESS as marked]. Per matrix W ∈ R^{m×n}, step t::

    M_0 = g_0                                                       (momentum_init="gradient")
    M_t = g_t + (1−β)(M_{t−1} − g̃_{t−1})                            STORM, g_t = ∇f(W_t; ξ_t)
    W_{t+1} = (1 − ηλ) W_t − η·s(m, n)·U_t V_tᵀ,    U_t Σ_t V_tᵀ = SVD(M_t)

with ``g̃_{t−1} = ∇f(W_{t−1}; ξ_t)``: the gradient at the *previous* iterate on the *current*
minibatch. Writing μ = 1 − β (``momentum``, torch's convention: the weight of the old momentum)
and γ for the weight of the correction, the rule computes

    M_t = (1−μ)·g_t + μ·M_{t−1} + γ·μ·(g_t − g̃_{t−1})              momentum_buffer

so γ = 1 is STORM and γ = 0 is the EMA momentum of Muon (with ``momentum_init="zero"`` exactly
``muon`` with ``nesterov=False``, the SVD orthogonalizer and ``adjust_lr_fn="none"``: tested).

**Where g̃ comes from** (``storm``), the MARS-style design (Yuan et al., arXiv 2411.10438; github
AGI-Arena/MARS ``is_approx``):

* ``"approx"`` (default): g̃_{t−1} is the previous step's gradient g_{t−1} (``prev_grad``, one
  extra buffer), so one backward pass per step. Note that with γ = 1 this *collapses*: from
  M_0 = g_0, M_t − g_t = μ(M_{t−1} − g_{t−1}) = 0, i.e. no momentum at all (tested). So the
  approximate mode defaults to MARS's γ = 0.025 [GUESS for LiMuon; EXACT in MARS].
* ``"exact"``: two gradients per step, as the paper's algorithm needs. The rule keeps the previous
  iterate (``prev_param``); before each ``step()`` call :func:`previous_gradients` (or use
  :func:`storm_step`, which does the three calls)::

      loss = closure()                                   # ∇f(W_t; ξ_t) into .grad
      limuon.previous_gradients(opt, closure)            # ∇f(W_{t−1}; ξ_t) into the state
      opt.step()

  It swaps the LiMuon matrices back to ``W_{t−1}``, re-evaluates the closure on the same batch,
  stores the gradients and restores parameters and ``.grad``. Parameters of other groups (AdamW
  for embeddings, norms, biases) keep their current values during that evaluation (their rules do
  not keep the previous point): exact when every parameter is a LiMuon matrix, otherwise an
  approximation [RECON]. γ defaults to 1 (STORM). A step without the previous gradients raises.

**Memory-light variant** (``rank`` r̂ set): only a rank-r̂ randomized SVD
M̂_t = Û diag(Ŝ) V̂ᵀ is stored (r̂(m + n + 1) numbers instead of mn) and fed back into the
recursion, M_t = (1−μ)g_t + γμ(g_t − g̃) + μ·M̂_{t−1}; the update is Û V̂ᵀ of M_t
(``lowrank_update="truncated"``, default [RECON]) or the full polar factor of M_t ("full"). The
randomized SVD is the Halko–Martinsson–Tropp range finder with oversampling s = 5 that a
third-party port labels "Algorithm 2 of the LiMuon paper" [SECONDARY]: Ω ~ N(0,1)^{n×(r̂+s)},
Y = MΩ, Q = qr(Y), SVD of QᵀM, truncated to r̂ (``power_iters`` extra subspace iterations, 0 by
default). Ω is drawn from (``seed``, the parameter's key, step, matrix index): reproducible,
independent of batching, bitwise after a state_dict round trip. The variant saves the momentum
buffer only: ``prev_grad`` (and, in exact mode, ``prev_param``: the two-gradient algorithm needs
W_{t−1}) stay full size.

Defaults: the orthogonal factor from an SVD (``orthogonalizer="svd"``, as the paper; any Muon
orthogonalizer may be chosen), no shape factor (``adjust_lr_fn="none"``: W ← W − η UVᵀ), μ = 0.9
(β = 0.1) [GUESS: no published value found], lr 0.02 (``recommended``), weight decay 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..matfn import matrix_shape
from ..registry import OptimizerSpec, get_rule, register
from . import hyper as H
from .rule import (
    MATRIX_HYPERS,
    ORTHO_HYPERS,
    MatrixRule,
    orthogonalize_group,
)
from .seeding import param_key, seeded_generator
from .state import PARAM, Slot
from .steps import gather_states, matrix_state_zeros, scatter_states_

STORM_MODES = ("approx", "exact")
MOMENTUM_INITS = ("gradient", "zero")
LOWRANK_UPDATES = ("truncated", "full")
#: γ when ``gamma=None``: STORM's 1 for two gradients, MARS's 0.025 for the approximate form.
DEFAULT_GAMMA = {"exact": 1.0, "approx": 0.025}
#: Slot options of state that must stay in full precision under ``state_precision``.
_EXACT = {"quantize": False} if "quantize" in getattr(Slot, "__dataclass_fields__", {}) else {}


def randomized_svd(
    A: Tensor, rank: int, *, oversample: int = 5, power_iters: int = 0, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Rank-``rank`` randomized SVD ``A ≈ U diag(S) Vᵀ`` of one ``(m, n)`` matrix (Halko et al.).

    Ω ~ N(0, 1)^{n×k} with k = min(rank + oversample, m, n), drawn on the CPU from ``generator``
    (float64, then cast, so a draw does not depend on the device); Y = AΩ, re-orthonormalised
    around each of ``power_iters`` subspace iterations Y ← A(AᵀY); Q = qr(Y); the SVD of the small
    QᵀA gives U = QŨ, S, V. Returns ``U (m, r)``, ``S (r,)``, ``V (n, r)`` with r = min(rank, m, n),
    in A's dtype.
    """
    m, n = A.shape
    r = min(rank, m, n)
    k = min(rank + oversample, m, n)
    omega = torch.randn(n, k, generator=generator, dtype=torch.float64).to(A.device, A.dtype)
    Y = A @ omega
    for _ in range(power_iters):
        Y, _ = torch.linalg.qr(Y)
        Y = A @ (A.mT @ Y)
    Q, _ = torch.linalg.qr(Y)
    Ub, S, Vh = torch.linalg.svd(Q.mT @ A, full_matrices=False)
    return (Q @ Ub)[:, :r], S[:r], Vh[:r].mT


def _work_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


class LiMuonRule(MatrixRule):
    """LiMuon as a :class:`MatrixRule` (see the module docstring)."""

    name = "limuon"
    hypers: ClassVar[dict[str, H.Hyper]] = {
        **MATRIX_HYPERS,
        **ORTHO_HYPERS,
        "lr": H.Hyper(0.02, "learning rate η (none published; Muon's)", low=0.0),
        "momentum": H.Hyper(0.9, "μ = 1 − β: weight of the old momentum [GUESS]", low=0.0, high=1.0,
                            high_open=True),
        "gamma": H.Hyper(None, "weight γ of the STORM correction; None = 1 (exact) or 0.025 (approx)",
                         low=0.0, optional=True),
        "storm": H.Hyper("approx", "g̃: approx = last step's gradient; exact = ∇f(previous W; this "
                         "batch) via previous_gradients()", kind="choice", choices=STORM_MODES),
        "momentum_init": H.Hyper("gradient", "gradient: M_0 = g_0 (paper); zero: M starts at 0 (Muon)",
                                 kind="choice", choices=MOMENTUM_INITS),
        "rank": H.Hyper(None, "r̂ of the memory-light variant; None = full momentum", kind="int", low=1,
                        optional=True),
        "oversample": H.Hyper(5, "oversampling s of the randomized SVD", kind="int", low=0),
        "power_iters": H.Hyper(0, "subspace iterations of the randomized SVD", kind="int", low=0, high=100),
        "lowrank_update": H.Hyper("truncated", "memory-light update: ÛV̂ᵀ of the rank-r̂ SVD or the full "
                                  "polar factor of M", kind="choice", choices=LOWRANK_UPDATES),
        "seed": H.Hyper(0, "seed of the randomized SVD draws", kind="int", low=0),
        # The shared declarations with LiMuon's defaults (callables stay accepted as orthogonalizers).
        "orthogonalizer": replace(ORTHO_HYPERS["orthogonalizer"], default="svd"),
        "compute_dtype": replace(ORTHO_HYPERS["compute_dtype"], default="float32"),
        "adjust_lr_fn": replace(ORTHO_HYPERS["adjust_lr_fn"], default="none"),
    }
    state_spec: ClassVar[dict[str, Slot]] = {
        "momentum_buffer": PARAM,
        # Never stored quantized (state_precision): g − g̃ is a small difference of large gradients.
        "prev_grad": Slot("param", doc="approx: last gradient; exact: ∇f(previous W; this batch)", **_EXACT),
        "prev_param": Slot("param", doc="exact mode: the iterate before the last step", **_EXACT),
        "prev_grad_step": Slot("counter", doc="exact mode: the step prev_grad was computed for"),
        "draw_key": Slot("counter", doc="seeded draw key of this parameter"),
        "lowrank_U": Slot("matrix", matrix_phase=True, doc="Û (m×r̂) of the stored momentum"),
        "lowrank_S": Slot("matrix", matrix_phase=True, doc="Ŝ (r̂) of the stored momentum"),
        "lowrank_V": Slot("matrix", matrix_phase=True, doc="V̂ (n×r̂) of the stored momentum"),
    }

    def init_state(self, p: Tensor, group: dict) -> dict[str, Any]:
        z = lambda: torch.zeros_like(p, memory_format=torch.preserve_format)
        st: dict[str, Any] = {"prev_grad": z(), "draw_key": param_key(p, group)}
        if group["storm"] == "exact":
            st["prev_param"] = p.detach().clone(memory_format=torch.preserve_format)
            st["prev_grad_step"] = 0
        if group["rank"] is None:
            st["momentum_buffer"] = z()
        else:
            view = group.get("matrix_view")
            m, n = matrix_shape(tuple(p.shape), view)
            r = min(group["rank"], m, n)
            dtype = torch.promote_types(p.dtype, torch.float32)
            st["lowrank_U"] = matrix_state_zeros(p, view, (m, r), dtype)
            st["lowrank_S"] = matrix_state_zeros(p, view, (r,), dtype)
            st["lowrank_V"] = matrix_state_zeros(p, view, (n, r), dtype)
        return st

    def step(self, params, grads, states, group, executor) -> None:
        if group["rank"] is None:
            super().step(params, grads, states, group, executor)
        else:
            self._eager_step(params, grads, states, group, executor)

    @torch.compiler.disable
    def _eager_step(self, params, grads, states, group, executor) -> None:
        # The memory-light variant draws from seeded CPU generators per step: eager inside a
        # compiled optimizer step, so a scheduled lr does not recompile it.
        super().step(params, grads, states, group, executor)

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        """The element-wise part of the recursion: the full M_t, or (memory-light) everything but
        μ·M̂_{t−1}, which the matrix phase adds from the stored factors."""
        mu, step = group["momentum"], int(state["step"].item())
        exact = group["storm"] == "exact"
        gamma = group["gamma"] if group["gamma"] is not None else DEFAULT_GAMMA[group["storm"]]
        if exact:
            if "prev_param" not in state:  # switched to exact mode after the first step
                state["prev_param"] = p.detach().clone(memory_format=torch.preserve_format)
                state["prev_grad_step"] = 0
            if step > 1 and state["prev_grad_step"] != step:
                raise RuntimeError(
                    f"limuon: storm='exact' needs ∇f(previous W; this batch) before step {step}: call "
                    "muonlab.optim.limuon.previous_gradients(optimizer, closure) after the backward pass "
                    "(or use storm_step), or use storm='approx'"
                )
        first = step == 1
        g_tilde = state["prev_grad"]
        if first and (exact or group["momentum_init"] == "gradient"):
            g_tilde = grad  # no previous point: no correction
        # pre-step part P = (1−μ)g + γμ(g − g̃); full mode adds μM_{t−1} here.
        if group["rank"] is None:
            M = state["momentum_buffer"]
            if first and group["momentum_init"] == "gradient":
                M.copy_(grad)
            else:
                M.mul_(mu).add_(grad, alpha=1 - mu)
                if gamma != 0:
                    M.add_(grad - g_tilde, alpha=gamma * mu)
            out = M
        else:
            if first and group["momentum_init"] == "gradient":
                out = grad.clone()
            else:
                out = grad * (1 - mu)
                if gamma != 0:
                    out.add_(grad - g_tilde, alpha=gamma * mu)
        if exact:
            state["prev_param"].copy_(p)  # W_t: the previous iterate after this step
        else:
            state["prev_grad"].copy_(grad)
        return out

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        if group["rank"] is None:
            return orthogonalize_group(X, group)
        # memory-light: M_t = P + μ·Û Ŝ V̂ᵀ, then a fresh rank-r̂ randomized SVD of M_t.
        _, m, n = X.shape
        work = _work_dtype(X)
        r = states[0]["lowrank_S"].shape[-1]
        U = gather_states(states, "lowrank_U", (m, r)).to(work)
        S = gather_states(states, "lowrank_S", (r,)).to(work)
        V = gather_states(states, "lowrank_V", (n, r)).to(work)
        M = X.to(work) + group["momentum"] * (U * S[:, None, :]) @ V.mT
        per = X.size(0) // len(states)
        for i in range(X.size(0)):
            st = states[i // per]
            gen = seeded_generator(group["seed"], st["draw_key"], int(st["step"].item()), i % per)
            U[i], S[i], V[i] = randomized_svd(M[i], r, oversample=group["oversample"],
                                              power_iters=group["power_iters"], generator=gen)
        scatter_states_(states, "lowrank_U", U)
        scatter_states_(states, "lowrank_S", S)
        scatter_states_(states, "lowrank_V", V)
        if group["lowrank_update"] == "full":
            return orthogonalize_group(M.to(X.dtype), group)
        # Û V̂ᵀ, dropping directions the momentum does not have (σ at rounding level), as polar_svd does.
        keep = (S > max(m, n) * torch.finfo(work).eps * S[:, :1]).to(work)
        return ((U * keep[:, None, :]) @ V.mT).to(X.dtype)


def _limuon_targets(optimizer) -> list[tuple[dict, Tensor, dict]]:
    out = []
    for group in optimizer.param_groups:
        if not isinstance(get_rule(group["algorithm"]), LiMuonRule) or group["storm"] != "exact":
            continue
        for p in group["params"]:
            st = optimizer.state.get(p)
            if st and "prev_param" in st and p.grad is not None:
                out.append((group, p, st))
    return out


def previous_gradients(optimizer: torch.optim.Optimizer, closure: Callable[[], Any]) -> Any:
    """For ``storm="exact"``: store ∇f(W_{t−1}; ξ_t) of every LiMuon matrix in its state.

    Call it after this step's backward pass and before ``optimizer.step()``, with a ``closure``
    that zeroes the gradients, evaluates the loss on *the same batch* and calls ``backward()``.
    Parameters and ``.grad`` are restored afterwards (the closure's effect on other state, e.g.
    batch-norm statistics, is not undone). The gradient gets the same transformations the
    optimizer applies (``maximize`` negation, ``weight_decay_mode="coupled"``'s λW at W_{t−1}).
    Before a matrix's first step there is no previous point and nothing is done for it. Returns
    the closure's loss (None when there was nothing to do).
    """
    targets = _limuon_targets(optimizer)
    if not targets:
        return None
    params = [p for g in optimizer.param_groups for p in g["params"]]
    saved_grads = {id(p): (p.grad.clone() if p.grad is not None else None) for p in params}
    current = {}
    with torch.no_grad():
        for _, p, st in targets:
            current[id(p)] = p.detach().clone(memory_format=torch.preserve_format)
            p.copy_(st["prev_param"])
    try:
        with torch.enable_grad():
            loss = closure()
        with torch.no_grad():
            for group, p, st in targets:
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                if group.get("maximize", False):
                    g = -g
                if group["weight_decay_mode"] == "coupled" and group["weight_decay"] != 0:
                    g = g.add(st["prev_param"], alpha=group["weight_decay"])
                st["prev_grad"] = g.detach().clone(memory_format=torch.preserve_format)
                st["prev_grad_step"] = int(st["step"].item()) + 1
    finally:
        with torch.no_grad():
            for _, p, _ in targets:
                p.copy_(current[id(p)])
        for p in params:
            p.grad = saved_grads[id(p)]
    return loss


def storm_step(optimizer: torch.optim.Optimizer, closure: Callable[[], Any]) -> Any:
    """One exact-STORM step: ``closure()`` at W_t, :func:`previous_gradients` at W_{t−1} on the same
    batch, then ``optimizer.step()``. Returns the loss at W_t."""
    loss = closure()
    previous_gradients(optimizer, closure)
    optimizer.step()
    return loss


register(
    OptimizerSpec(
        name="limuon",
        rule=LiMuonRule(),
        summary="STORM momentum M = g + μ(M − g̃) (γ-weighted; g̃ the previous gradient, or the exact "
        "second gradient), W ← W − η·UVᵀ from an SVD; optional rank-r̂ randomized-SVD momentum",
        recommended={"lr": 0.02},
        source="Huang, Luo, Chen, LiMuon, arXiv 2509.14562, via junaidaliop/zij canon/math/limuon.md; "
        "approximate mode after MARS (arXiv 2411.10438)",
        certainty="SECONDARY",
        state="2× (momentum_buffer, prev_grad); exact: +1× (prev_param); rank r̂: r̂(m+n+1) instead "
        "of momentum_buffer",
        search_space={"lr": (1e-3, 1e-1)},
        configs={
            "low_rank": {"rank": 2},
            "low_rank_full_update": {"rank": 2, "lowrank_update": "full", "power_iters": 1},
            "zero_init_ema": {"momentum_init": "zero", "gamma": 0.0},
        },
    )
)
