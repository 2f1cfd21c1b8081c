"""Shampoo: Kronecker-factored preconditioning of the momentum, per (block of a) matrix.

Gupta, Koren, Singer, "Shampoo: Preconditioned Stochastic Tensor Optimization" (arXiv 1802.09568);
Anil et al., "Scalable Second Order Optimization for Deep Learning" (arXiv 2002.09018); the form
below is the baseline of Qiu, Chen, Phan, Lei, Wilson, "Hyperparameter Transfer for Matrix-
Preconditioned Optimizers" (arXiv 2512.05620, App. A), github charliezchen/scaling-matrix-
preconditioning ``optax_optim/_shampoo.py`` @ 5a02d4f (eigh route) [EXACT]. Per matrix
``W ∈ R^{m×n}`` (m = fan_out = rows, "left"; n = fan_in, "right"), step t = 1, 2, ...::

    L ← β₂L + (1−β₂) G Gᵀ;   R ← β₂R + (1−β₂) Gᵀ G         L₀ = R₀ = ε·I     (statistics="ema")
    L ← L + G Gᵀ;            R ← R + Gᵀ G                                      (statistics="sum")
    L̂ = L/(1−β₂ᵗ),  R̂ = R/(1−β₂ᵗ)                          (bias_correction, "ema" only)
    at t = 1, 1+f, 1+2f, ... (f = precondition_frequency):
        P_L = (L̂ + ε_r I)^(−e_L),  P_R = (R̂ + ε_r I)^(−e_R)   eigh, eigenvalues clamped ≥ ε_r
    M ← β₁M + (1−β₁)G;   M̂ = M/(1−β₁ᵗ)                       exp_avg (the momentum is preconditioned)
    S = P_L · M̂ · P_R
    graft (grafting="adam", "Adam#Shampoo"): ν ← β₂ν + (1−β₂)G⊙G;  A = M̂/(√ν̂ + ε_a);
        S ← ‖A‖_F/(‖S‖_F + ε_g) · S                         (per whole matrix, not per block)
    spectral_norm="spectral" (§ App. F of 2512.05620): S ← S·√(m/n)/(σ̂ + 1e-10), σ̂ from power
        iteration with a persistent vector (5 iterations during the first 50 steps, then 1);
        "rms": S ← S/(RMS(S) + 1e-10)
    W ← (1 − ηλ)W − η·S

``ε_r`` is the ridge: ``matrix_eps`` (absolute), ``matrix_eps·λ_max(L̂)`` with ``relative_eps``,
or 0 with ``ridge=False`` (Gupta et al.'s original, where ε enters only through L₀ = εI).
``e_L = e_R = 1/4`` is the original Shampoo ("Shampoo" in 2512.05620); ``(1/2, 1/2)`` is "Shampoo2".

Blocking (2512.05620 §"Blocking"; ``block_size > 0``): each side longer than ``block_size`` is cut
into blocks of ``block_size`` (the last one zero-padded), and every block gets its own L, R, P_L,
P_R. Zero padding is exact for Shampoo (a padded block is the direct sum of the real block and a
zero block). A side longer than ``max_precond_dim`` is not preconditioned (its factor is the
identity and it is one block along that side: one-sided Shampoo).

Defaults: ``betas (0.9, 0.95)`` (the paper's width study), ``matrix_eps 1e-6`` and
``adam_eps = graft_eps = 1e-8`` (``scale_by_shampoo`` defaults), ``precondition_frequency 1`` (the
width study; its FineWeb runs use 10), no blocking, ``max_precond_dim 10000``. The paper's default
inverse root is Google's coupled Newton iteration; we use its eigh route (same matrix function).

Reaching pytorch_optimizer's ``Shampoo`` (kozistr, 4.1.0, momentum 0): ``statistics="sum",
ridge=False, bias_correction=False, betas=(0, ·)`` (tested to rounding in float64).

Vectors go to AdamW through :func:`muonlab.create_optimizer`. All statistics and roots are kept in
≥ float32 (float64 for float64 parameters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..matfn import matrix_shape
from ..registry import OptimizerSpec, register
from . import hyper as H
from .rule import MATRIX_HYPERS, MatrixRule, scalar
from .seeding import param_key, seeded_generator
from .state import Slot
from .steps import gather_states, matrix_state_zeros, scatter_states_

SPECTRAL_NORMS = ("none", "spectral", "rms")

# ---- small pure functions shared with SOAP -------------------------------------------------------


@dataclass(frozen=True)
class BlockLayout:
    """How an ``m×n`` matrix is cut into ``rows × cols`` blocks of ``bo × bi`` (zero-padded).

    ``left``/``right``: whether the row (fan_out) / column (fan_in) side is preconditioned.
    """

    m: int
    n: int
    rows: int
    cols: int
    bo: int
    bi: int
    left: bool
    right: bool

    @property
    def blocks(self) -> int:
        return self.rows * self.cols


def block_layout(m: int, n: int, block_size: int, max_precond_dim: int) -> BlockLayout:
    """The blocking of 2512.05620's code: a preconditioned side longer than ``block_size`` (> 0)
    is cut into ``⌈d/block_size⌉`` blocks; a side longer than ``max_precond_dim`` is not
    preconditioned and stays one block."""
    left, right = m <= max_precond_dim, n <= max_precond_dim

    def side(d: int, pre: bool) -> tuple[int, int]:
        if block_size > 0 and pre and d > block_size:
            return math.ceil(d / block_size), block_size
        return 1, d

    (rows, bo), (cols, bi) = side(m, left), side(n, right)
    return BlockLayout(m, n, rows, cols, bo, bi, left, right)


def split_blocks(X: Tensor, lay: BlockLayout) -> Tensor:
    """``(B, m, n) → (B, rows·cols, bo, bi)``, row-major over blocks, zero-padded."""
    B = X.shape[0]
    pad_r, pad_c = lay.rows * lay.bo - lay.m, lay.cols * lay.bi - lay.n
    if pad_r or pad_c:
        X = F.pad(X, (0, pad_c, 0, pad_r))
    X = X.reshape(B, lay.rows, lay.bo, lay.cols, lay.bi).permute(0, 1, 3, 2, 4)
    return X.reshape(B, lay.blocks, lay.bo, lay.bi)


def merge_blocks(Y: Tensor, lay: BlockLayout) -> Tensor:
    """Inverse of :func:`split_blocks` (the padding is dropped)."""
    B = Y.shape[0]
    Y = Y.reshape(B, lay.rows, lay.cols, lay.bo, lay.bi).permute(0, 1, 3, 2, 4)
    Y = Y.reshape(B, lay.rows * lay.bo, lay.cols * lay.bi)
    return Y[:, : lay.m, : lay.n]


def inverse_root(A: Tensor, exponent: float, ridge: float, *, relative: bool = False) -> Tensor:
    """``(A + ε_r I)^(−exponent)`` of symmetric PSD matrices ``(..., k, k)`` by eigh, eigenvalues
    clamped at ``ε_r`` (the eigh route of 2512.05620's ``_inv_root_eigh``). ``relative``:
    ``ε_r = ridge·λ_max(A)`` (Google's ``rel_eps``). With ``ridge = 0`` the clamp is at the
    smallest positive normal number."""
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    if relative:
        r = ridge * torch.linalg.eigvalsh(A).amax(-1).clamp_min(0)[..., None, None]
    else:
        r = torch.full(A.shape[:-2] + (1, 1), ridge, dtype=A.dtype, device=A.device)
    evals, evecs = torch.linalg.eigh(A + r * eye)
    floor = torch.clamp_min(r[..., 0], torch.finfo(A.dtype).tiny)
    powered = torch.maximum(evals, floor).pow(-exponent)
    return (evecs * powered[..., None, :]) @ evecs.mT


def power_iterations(step: int) -> int:
    """2512.05620 ``norm_by_spect``: 5 power iterations during the first 50 updates, then 1."""
    return 5 if step <= 50 else 1


def spectral_normalize(A: Tensor, v: Tensor | None, iters: Tensor | None, mode: str) -> tuple[Tensor, Tensor | None]:
    """Explicit spectral normalisation of directions ``A (B, m, n)`` (2512.05620 App. F,
    ``utils.py::norm_by_spect``).

    ``"spectral"``: ``A·√(m/n)/(σ̂ + 1e-10)`` where σ̂ = ‖A v‖ from ``iters[b]`` power iterations
    on the persistent unit vectors ``v (B, n)`` (y = Av, σ̂ = ‖y‖, z = Aᵀy, v ← z/(‖z‖ + 1e-10),
    kept only if its norm exceeds 0.5). ``"rms"``: ``A/(RMS(A) + 1e-10)`` (embeddings, one-hot
    inputs). Returns the normalised directions and the new ``v``.
    """
    if mode == "none":
        return A, v
    if mode == "rms":
        rms = A.square().mean(dim=(-2, -1), keepdim=True).sqrt()
        return A / (rms + 1e-10), v
    assert v is not None and iters is not None
    m, n = A.shape[-2:]
    sigma = torch.zeros(A.shape[0], dtype=A.dtype, device=A.device)
    for i in range(int(iters.max())):
        active = iters > i
        y = (A @ v[..., None])[..., 0]
        s = y.norm(dim=-1)
        z = (A.mT @ y[..., None])[..., 0]
        v_new = z / (z.norm(dim=-1, keepdim=True) + 1e-10)
        keep = active & (v_new.norm(dim=-1) > 0.5)
        v = torch.where(keep[:, None], v_new, v)
        sigma = torch.where(active, s, sigma)
    return A * (math.sqrt(m / n) / (sigma + 1e-10))[:, None, None], v


def per_matrix(states: list[dict], batch: int, device) -> Tensor:
    """The step counter of each matrix of the ``(batch, m, n)`` stack (float64)."""
    t = torch.tensor([float(st["step"]) for st in states], dtype=torch.float64)
    return t.repeat_interleave(batch // len(states)).to(device)


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of the preconditioner arithmetic: float64 for float64 parameters, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def init_spectral_vector(p: Tensor, group: dict, n: int) -> Tensor:
    """The power-iteration vector of every matrix of ``p``: normal, unit norm, seeded by
    (``seed``, the parameter's key) so runs and resumes are reproducible."""
    v = matrix_state_zeros(p, group.get("matrix_view"), (n,), dtype=work_dtype(p.dtype))
    gen = seeded_generator(group["seed"], param_key(p, group))
    draw = torch.randn(v.shape, generator=gen, dtype=torch.float64)
    v.copy_(draw / draw.norm(dim=-1, keepdim=True))
    return v


SPECTRAL_HYPERS: dict[str, H.Hyper] = {
    "spectral_norm": H.Hyper(
        "none", "explicit normalisation of the direction: none; spectral (√(m/n)/σ̂, power iteration); "
        "rms (1/RMS, for embeddings)", kind="choice", choices=SPECTRAL_NORMS,
    ),
    "seed": H.Hyper(0, "seed of the power-iteration vector (spectral_norm='spectral')", kind="int", low=0),
}

BLOCK_HYPERS: dict[str, H.Hyper] = {
    "block_size": H.Hyper(0, "cut preconditioned sides longer than this into blocks; 0 = no blocking",
                          kind="int", low=0),
    "max_precond_dim": H.Hyper(10000, "sides longer than this are not preconditioned (identity)",
                               kind="int", low=1),
}


# ---- the rule -----------------------------------------------------------------------------------


class ShampooRule(MatrixRule):
    """Shampoo as a :class:`MatrixRule` (see the module docstring for the math)."""

    name = "shampoo"
    hypers: ClassVar[dict[str, H.Hyper]] = {
        **MATRIX_HYPERS,
        "lr": H.Hyper(1e-3, "learning rate η", low=0.0),
        "betas": H.Hyper((0.9, 0.95), "(β₁ momentum, β₂ statistics and graft second moment)", kind="pair",
                         low=0.0, high=1.0, high_open=True),
        "exponents": H.Hyper((0.25, 0.25), "(e_L, e_R): P_L = L̂^(−e_L) (fan_out side), P_R = R̂^(−e_R)",
                             kind="pair", low=0.0, high=1.0),
        "matrix_eps": H.Hyper(1e-6, "ε: L₀ = R₀ = εI and the ridge ε·I added before the root", low=0.0),
        "ridge": H.Hyper(True, "add the ridge before the root (False: Gupta et al., ε only in L₀)", kind="bool"),
        "relative_eps": H.Hyper(False, "ridge = matrix_eps·λ_max (Google's rel_eps)", kind="bool"),
        "statistics": H.Hyper("ema", "ema: L ← β₂L + (1−β₂)GGᵀ; sum: L ← L + GGᵀ (Gupta et al.)",
                              kind="choice", choices=("ema", "sum")),
        "bias_correction": H.Hyper(True, "divide M by 1−β₁ᵗ and (ema) L, R, ν by 1−β₂ᵗ", kind="bool"),
        "precondition_frequency": H.Hyper(1, "recompute the roots at steps 1, 1+f, 1+2f, ...", kind="int",
                                          low=1),
        "grafting": H.Hyper("none", "none, or adam: the update gets Adam's Frobenius norm (Adam#Shampoo)",
                            kind="choice", choices=("none", "adam")),
        "adam_eps": H.Hyper(1e-8, "ε of the grafted Adam direction M̂/(√ν̂ + ε)", low=0.0),
        "graft_eps": H.Hyper(1e-8, "ε of the graft ratio ‖A‖/(‖S‖ + ε)", low=0.0),
        **BLOCK_HYPERS,
        **SPECTRAL_HYPERS,
    }
    state_spec: ClassVar[dict[str, Slot]] = {
        "exp_avg": Slot("param", matrix_phase=True, doc="momentum M (read by the matrix phase)"),
        "exp_avg_sq": Slot("param", matrix_phase=True, doc="graft second moment ν (grafting='adam')"),
        "L": Slot("matrix", matrix_phase=True, doc="left statistics per block (blocks, bo, bo)"),
        "R": Slot("matrix", matrix_phase=True, doc="right statistics per block (blocks, bi, bi)"),
        "PL": Slot("matrix", matrix_phase=True, doc="L̂^(−e_L) per block"),
        "PR": Slot("matrix", matrix_phase=True, doc="R̂^(−e_R) per block"),
        "spectral_v": Slot("matrix", matrix_phase=True, doc="power-iteration vector (n,)"),
    }

    def layout(self, m: int, n: int, group: dict) -> BlockLayout:
        return block_layout(m, n, group["block_size"], group["max_precond_dim"])

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        view = group["matrix_view"]
        m, n = matrix_shape(tuple(p.shape), view)
        lay = self.layout(m, n, group)
        work = work_dtype(p.dtype)
        st = {"exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format)}
        if group["grafting"] == "adam":
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        for key, pkey, on, k in (("L", "PL", lay.left, lay.bo), ("R", "PR", lay.right, lay.bi)):
            if on:
                eye = torch.eye(k, dtype=work, device=p.device)
                st[key] = matrix_state_zeros(p, view, (lay.blocks, k, k), dtype=work).add_(group["matrix_eps"] * eye)
                st[pkey] = matrix_state_zeros(p, view, (lay.blocks, k, k), dtype=work)
        if group["spectral_norm"] == "spectral":
            st["spectral_v"] = init_spectral_vector(p, group, n)
        return st

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        beta1, beta2 = group["betas"]
        state["exp_avg"].lerp_(grad, 1 - beta1)
        if group["grafting"] == "adam":
            if "exp_avg_sq" not in state:  # grafting switched on after the state was created
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if group["spectral_norm"] == "spectral" and "spectral_v" not in state:
            state["spectral_v"] = init_spectral_vector(p, group, matrix_shape(tuple(p.shape), group["matrix_view"])[1])
        return grad  # the statistics need G itself; M is read from the state

    def _factor(self, G: Tensor, states: list[dict], key: str, pkey: str, right: bool, exponent: float,
                t: Tensor, group: dict) -> Tensor:
        """Update one side's statistics and return its (possibly refreshed) inverse root."""
        beta2 = group["betas"][1]
        tail = tuple(states[0][key].shape[-3:])
        S = gather_states(states, key, tail).to(G.dtype)
        outer = G.mT @ G if right else G @ G.mT
        if group["statistics"] == "ema":
            S.mul_(beta2).add_(outer, alpha=1 - beta2)
        else:
            S.add_(outer)
        scatter_states_(states, key, S)
        P = gather_states(states, pkey, tail).to(G.dtype)
        refresh = ((t - 1) % group["precondition_frequency"] == 0)
        if bool(refresh.any()):
            S_hat = S
            if group["statistics"] == "ema" and group["bias_correction"]:
                S_hat = S / (1 - beta2**t).to(S.dtype)[:, None, None, None]
            ridge = group["matrix_eps"] if group["ridge"] else 0.0
            fresh = inverse_root(S_hat, exponent, ridge, relative=group["relative_eps"])
            P = torch.where(refresh[:, None, None, None], fresh, P)
            scatter_states_(states, pkey, P)
        return P

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        work = work_dtype(X.dtype)
        B, m, n = X.shape
        lay = self.layout(m, n, group)
        beta1, beta2 = group["betas"]
        e_left, e_right = group["exponents"]
        t = per_matrix(states, B, X.device)
        Gb = split_blocks(X.to(work), lay)
        M = gather_states(states, "exp_avg", (m, n)).to(work)
        if group["bias_correction"]:
            M = M / (1 - beta1**t).to(work)[:, None, None]
        S = split_blocks(M, lay)
        if lay.left:
            S = self._factor(Gb, states, "L", "PL", False, e_left, t, group) @ S
        if lay.right:
            S = S @ self._factor(Gb, states, "R", "PR", True, e_right, t, group)
        S = merge_blocks(S, lay)
        if group["grafting"] == "adam":
            nu = gather_states(states, "exp_avg_sq", (m, n)).to(work)
            if group["bias_correction"]:
                nu = nu / (1 - beta2**t).to(work)[:, None, None]
            A = M / (nu.sqrt() + group["adam_eps"])
            fro = lambda Z: torch.linalg.vector_norm(Z, dim=(-2, -1), keepdim=True)
            S = S * (fro(A) / (fro(S) + group["graft_eps"]))
        S = self._normalize(S, states, t, group)
        return S.to(X.dtype)

    def _normalize(self, S: Tensor, states: list[dict], t: Tensor, group: dict) -> Tensor:
        mode = group["spectral_norm"]
        if mode != "spectral":
            return spectral_normalize(S, None, None, mode)[0]
        n = S.shape[-1]
        v = gather_states(states, "spectral_v", (n,)).to(S.dtype)
        iters = torch.tensor([power_iterations(int(x)) for x in t.tolist()], device=S.device)
        S, v = spectral_normalize(S, v, iters, mode)
        scatter_states_(states, "spectral_v", v)
        return S

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        return O, scalar(group["lr"])


register(
    OptimizerSpec(
        name="shampoo",
        rule=ShampooRule(),
        summary="S = L̂^(−e_L)·M̂·R̂^(−e_R) with EMA Kronecker statistics L = E[GGᵀ], R = E[GᵀG] (eigh roots, "
        "ridge ε); optional blocking, Adam grafting, spectral normalisation; W ← W − η·S",
        recommended={"lr": 3e-2},  # halves both MLP losses of the contract with margin (1e-2: 0.09, 0.29)
        source="Gupta et al., arXiv 1802.09568; Anil et al., arXiv 2002.09018; Qiu et al., arXiv 2512.05620 "
        "(App. A), github charliezchen/scaling-matrix-preconditioning optax_optim/_shampoo.py @ 5a02d4f",
        certainty="EXACT",
        state="1× (exp_avg) [+1× exp_avg_sq with grafting] + 2(bo² + bi²) per block (L, R, P_L, P_R)",
        search_space={"lr": (1e-3, 1e-1)},
        configs={
            "shampoo2_grafted": {"exponents": (0.5, 0.5), "grafting": "adam"},
            "blocked_freq3": {"block_size": 8, "precondition_frequency": 3},
            "spectral_norm": {"spectral_norm": "spectral"},
            "gupta_sum": {"statistics": "sum", "ridge": False, "bias_correction": False, "betas": (0.0, 0.95)},
        },
    )
)
