"""SOAP: Adam run in the eigenbasis of Shampoo's preconditioner.

Vyas, Morwani, Zhao, Shapira, Brandfonbrener, Janson, Kakade, "SOAP: Improving and Stabilizing
Shampoo using Adam" (arXiv 2409.11321); official code github nikhilvyas/SOAP ``soap.py`` @ a1e5535
[EXACT]. Per matrix ``W ∈ R^{m×n}`` (L on the fan_out side, R on the fan_in side); t counts the
updates, the first call (t = 0) only builds the basis::

    first call:  L ← (1−β_s) G Gᵀ;  R ← (1−β_s) Gᵀ G;  Q_L, Q_R ← eigenvectors of L, R
                 (eigh of L + 1e-30·I, columns by descending eigenvalue);  NO update, no decay
    t ≥ 1:
        G' = Q_Lᵀ G Q_R                                   rotate
        m ← β₁m + (1−β₁)G                                 exp_avg (parameter space, see below)
        v ← β₂v + (1−β₂) G'⊙G'                            exp_avg_sq (rotated basis)
        N = Q_Lᵀ m Q_R / (√v + ε)                          ε added to the uncorrected √v
        W ← W − η·√(1−β₂ᵗ)/(1−β₁ᵗ) · Q_L N Q_Rᵀ;   W ← W − ηλW     (decay after the update)
        L ← β_s L + (1−β_s) G Gᵀ;  R ← β_s R + (1−β_s) Gᵀ G   statistics from the raw gradient
        if t mod f = 0 (refresh, one power iteration + QR per side):
            order = argsort(diag(Qᵀ L Q)) descending;  v permuted along that side's axis;
            Q ← qr(L Q[:, order]).Q

β_s = ``shampoo_beta`` (None: β₂). A side longer than ``max_precond_dim`` keeps the identity
(one-sided SOAP). ``block_size > 0`` cuts preconditioned sides into zero-padded blocks, each with its
own statistics, bases and Adam moment (Qiu et al., arXiv 2512.05620, §"Blocking"); ``v`` is then
stored per block, ``(blocks, bo, bi)``.

Where we differ from ``soap.py``, and why, each one reachable or bounded:

* ``m`` is kept in parameter space and rotated every step (kozistr's pytorch_optimizer does the
  same) instead of being stored rotated and rotated back and forth at each refresh: Q is
  orthogonal and fixed between refreshes, so the two are equal up to rounding (tested).
* ``soap.py`` decays after the update, ``W ← (1−ηλ)(W − s·N)``; muonlab's single parameter write
  decays first, so ``decay_after_update=True`` (default) scales the step by ``(1−ηλ)``, which gives
  the official result exactly (decoupled mode).
* ``basis_dtype``: ``soap.py`` computes eigh and the refresh in float32 (also for float64
  parameters); "auto" (default) uses float64 for float64 parameters and float32 otherwise, i.e. the
  official arithmetic for every non-float64 parameter; "float32" is ``soap.py``'s; "qr_float32" is
  pytorch_optimizer's (eigh in the parameter's dtype, QR in float32).
* Not reproduced: ``merge_dims``, ``precondition_1d`` (vectors go to AdamW through
  :func:`muonlab.create_optimizer`; >2-D parameters use ``matrix_view``) and ``normalize_grads``.

``spectral_norm`` (2512.05620 App. F): the direction Q_L N Q_Rᵀ is normalised to spectral norm
√(m/n) ("spectral", power iteration with a persistent vector) or unit RMS ("rms") and the step is
then η (the bias-correction factor drops out of a normalised direction).

Defaults (``soap.py``): ``lr 3e-3, betas (0.95, 0.95), shampoo_beta None (β₂), eps 1e-8,
weight_decay 0.01, precondition_frequency 10, max_precond_dim 10000``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from ..matfn import matrix_shape, to_matrix
from ..registry import OptimizerSpec, register
from . import hyper as H
from .rule import MATRIX_HYPERS, MatrixRule, scalar
from .shampoo import (
    BLOCK_HYPERS,
    SPECTRAL_HYPERS,
    BlockLayout,
    block_layout,
    init_spectral_vector,
    merge_blocks,
    per_matrix,
    power_iterations,
    spectral_normalize,
    split_blocks,
    work_dtype,
)
from .state import Slot
from .steps import apply_updates, gather_states, matrix_state_zeros, scatter_states_

BASIS_DTYPES = ("auto", "float32", "qr_float32")


def eigenbasis(P: Tensor) -> Tensor:
    """Eigenvectors of symmetric ``P (..., k, k)``, columns by descending eigenvalue (eigh of
    ``P + 1e-30·I`` as ``soap.py``)."""
    eye = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
    _, Q = torch.linalg.eigh(P + 1e-30 * eye)
    return Q.flip(-1)


def refresh_basis(P: Tensor, Q: Tensor, qr_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """One power iteration + QR (``soap.py``'s ``get_orthogonal_matrix_QR``) for ``(..., k, k)``
    statistics ``P`` and basis ``Q``: returns the new basis and the column order (by the estimated
    eigenvalues diag(QᵀPQ), descending) that the rotated second moment must follow."""
    PQ = P @ Q
    order = torch.argsort((Q * PQ).sum(-2), dim=-1, descending=True)
    PQ = PQ.gather(-1, order[..., None, :].expand_as(PQ))
    Q_new, _ = torch.linalg.qr(PQ.to(qr_dtype))
    return Q_new.to(Q.dtype), order


class SOAPRule(MatrixRule):
    """SOAP as a :class:`MatrixRule` (see the module docstring for the math)."""

    name = "soap"
    hypers: ClassVar[dict[str, H.Hyper]] = {
        **MATRIX_HYPERS,
        "lr": H.Hyper(3e-3, "learning rate η (soap.py default)", low=0.0),
        "weight_decay": H.Hyper(0.01, "decoupled weight decay λ (soap.py default)", low=0.0),
        "betas": H.Hyper((0.95, 0.95), "Adam (β₁, β₂) in the rotated basis (soap.py default)", kind="pair",
                         low=0.0, high=1.0, high_open=True),
        "shampoo_beta": H.Hyper(None, "EMA β_s of the statistics L, R; None = β₂", low=0.0, high=1.0,
                                high_open=True, optional=True),
        "eps": H.ADAM_EPS,
        "precondition_frequency": H.Hyper(10, "refresh the bases every f updates", kind="int", low=1),
        "correct_bias": H.Hyper(True, "step η·√(1−β₂ᵗ)/(1−β₁ᵗ) (False: η)", kind="bool"),
        "decay_after_update": H.Hyper(True, "decoupled decay of the updated weights, as soap.py "
                                      "(False: of the old weights, muonlab's usual order)", kind="bool"),
        "basis_dtype": H.Hyper("auto", "dtype of eigh/QR: auto (≥ float32, float64 for float64 params), "
                               "float32 (soap.py), qr_float32 (pytorch_optimizer)", kind="choice",
                               choices=BASIS_DTYPES),
        **BLOCK_HYPERS,
        **SPECTRAL_HYPERS,
    }
    state_spec: ClassVar[dict[str, Slot]] = {
        "exp_avg": Slot("param", matrix_phase=True, doc="first moment m, in parameter space"),
        "exp_avg_sq": Slot("matrix", matrix_phase=True, doc="second moment v in the rotated basis, per block"),
        "GG_L": Slot("matrix", matrix_phase=True, doc="left statistics (blocks, bo, bo)"),
        "GG_R": Slot("matrix", matrix_phase=True, doc="right statistics (blocks, bi, bi)"),
        "Q_L": Slot("matrix", matrix_phase=True, doc="left eigenbasis (blocks, bo, bo)"),
        "Q_R": Slot("matrix", matrix_phase=True, doc="right eigenbasis (blocks, bi, bi)"),
        "spectral_v": Slot("matrix", matrix_phase=True, doc="power-iteration vector (n,)"),
    }

    def layout(self, m: int, n: int, group: dict) -> BlockLayout:
        return block_layout(m, n, group["block_size"], group["max_precond_dim"])

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        view = group["matrix_view"]
        m, n = matrix_shape(tuple(p.shape), view)
        lay = self.layout(m, n, group)
        work = work_dtype(p.dtype)
        st = {
            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "exp_avg_sq": matrix_state_zeros(p, view, (lay.blocks, lay.bo, lay.bi), dtype=work),
        }
        for side, on, k in (("L", lay.left, lay.bo), ("R", lay.right, lay.bi)):
            if on:
                st[f"GG_{side}"] = matrix_state_zeros(p, view, (lay.blocks, k, k), dtype=work)
                st[f"Q_{side}"] = matrix_state_zeros(p, view, (lay.blocks, k, k), dtype=work)
        if group["spectral_norm"] == "spectral":
            st["spectral_v"] = init_spectral_vector(p, group, n)
        return st

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        if state["step"] > 1:  # the first call only builds the bases (soap.py)
            state["exp_avg"].lerp_(grad, 1 - group["betas"][0])
        if group["spectral_norm"] == "spectral" and "spectral_v" not in state:
            state["spectral_v"] = init_spectral_vector(p, group, matrix_shape(tuple(p.shape), group["matrix_view"])[1])
        return grad

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        work = work_dtype(X.dtype)
        B, m, n = X.shape
        lay = self.layout(m, n, group)
        beta2 = group["betas"][1]
        beta_s = beta2 if group["shampoo_beta"] is None else group["shampoo_beta"]
        t = per_matrix(states, B, X.device) - 1  # updates made so far, this one included
        first = t == 0
        sides = [s for s, on in (("L", lay.left), ("R", lay.right)) if on]
        blk = lambda k: (lay.blocks, k, k)
        dims = {"L": lay.bo, "R": lay.bi}
        Q = {s: gather_states(states, f"Q_{s}", blk(dims[s])).to(work) for s in sides}

        def rotate(Z: Tensor) -> Tensor:
            if "L" in Q:
                Z = Q["L"].mT @ Z
            return Z @ Q["R"] if "R" in Q else Z

        def back(Z: Tensor) -> Tensor:
            if "L" in Q:
                Z = Q["L"] @ Z
            return Z @ Q["R"].mT if "R" in Q else Z

        Gb = split_blocks(X.to(work), lay)
        v = gather_states(states, "exp_avg_sq", (lay.blocks, lay.bo, lay.bi)).to(work)
        g = rotate(Gb)
        v = torch.where(first[:, None, None, None], v, v * beta2 + (1 - beta2) * g.square())
        M = split_blocks(gather_states(states, "exp_avg", (m, n)).to(work), lay)
        U = merge_blocks(back(rotate(M) / (v.sqrt() + group["eps"])), lay)
        U = torch.where(first[:, None, None], torch.zeros_like(U), U)

        refresh = ~first & (t % group["precondition_frequency"] == 0)
        mode = group["basis_dtype"]
        eig_dtype = torch.float32 if mode == "float32" else work
        qr_dtype = torch.float32 if mode in ("float32", "qr_float32") else work
        for s in sides:
            outer = Gb @ Gb.mT if s == "L" else Gb.mT @ Gb
            P = gather_states(states, f"GG_{s}", blk(dims[s])).to(work).lerp_(outer, 1 - beta_s)
            scatter_states_(states, f"GG_{s}", P)
            Qs = Q[s]
            if bool(first.any()):
                Qs = torch.where(first[:, None, None, None], eigenbasis(P.to(eig_dtype)).to(work), Qs)
            if bool(refresh.any()):
                Q_new, order = refresh_basis(P.to(eig_dtype), Qs.to(eig_dtype), qr_dtype)
                axis = -2 if s == "L" else -1
                idx = order[..., :, None] if s == "L" else order[..., None, :]
                v = torch.where(refresh[:, None, None, None], v.gather(axis, idx.expand_as(v)), v)
                Qs = torch.where(refresh[:, None, None, None], Q_new.to(work), Qs)
            scatter_states_(states, f"Q_{s}", Qs)
        scatter_states_(states, "exp_avg_sq", v)
        return self._normalize(U, states, t, group).to(X.dtype)

    def _normalize(self, U: Tensor, states: list[dict], t: Tensor, group: dict) -> Tensor:
        mode = group["spectral_norm"]
        if mode != "spectral":
            return spectral_normalize(U, None, None, mode)[0]
        v = gather_states(states, "spectral_v", (U.shape[-1],)).to(U.dtype)
        iters = torch.tensor([0 if x == 0 else power_iterations(int(x)) for x in t.tolist()], device=U.device)
        U, v = spectral_normalize(U, v, iters, mode)
        scatter_states_(states, "spectral_v", v)
        return U

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        t = int(state["step"]) - 1
        if t == 0:
            return O, 0.0
        lr = scalar(group["lr"])
        beta1, beta2 = group["betas"]
        step = lr
        if group["correct_bias"] and group["spectral_norm"] == "none":
            step = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        if group["decay_after_update"] and group["weight_decay_mode"] == "decoupled":
            step *= 1 - lr * group["weight_decay"]
        return O, step

    def step(self, params, grads, states, group, executor) -> None:
        view = group.get("matrix_view")
        Xs = [to_matrix(X, view) for X in self.pre_many(params, grads, states, group)]
        directions = executor.update_phase(self, params, Xs, states, group)
        live = [i for i, st in enumerate(states) if int(st["step"]) > 1]  # the first call leaves W as is
        if live:
            apply_updates(
                [params[i] for i in live],
                [directions[i][0] for i in live],
                [directions[i][1] for i in live],
                lr=scalar(group["lr"]),
                weight_decay=group["weight_decay"],
                mode=group["weight_decay_mode"],
            )


register(
    OptimizerSpec(
        name="soap",
        rule=SOAPRule(),
        summary="Adam in the eigenbasis of Shampoo's L = E[GGᵀ], R = E[GᵀG] (refreshed every f steps by power "
        "iteration + QR): W ← W − η·√(1−β₂ᵗ)/(1−β₁ᵗ)·Q_L(rot(m)/(√v+ε))Q_Rᵀ; first step builds the basis only",
        recommended={"lr": 3e-3},
        source="Vyas et al., SOAP, arXiv 2409.11321; github nikhilvyas/SOAP soap.py @ a1e5535; blocking and "
        "spectral normalisation: Qiu et al., arXiv 2512.05620",
        certainty="EXACT",
        state="2× (exp_avg, exp_avg_sq) + 2(bo² + bi²) per block (GG_L, GG_R, Q_L, Q_R)",
        search_space={"lr": (3e-4, 3e-2)},
        configs={
            "blocked_freq2": {"block_size": 8, "precondition_frequency": 2},
            "spectral_norm": {"spectral_norm": "spectral", "precondition_frequency": 2},
            "one_sided": {"max_precond_dim": 12, "shampoo_beta": 0.9},
        },
    )
)
