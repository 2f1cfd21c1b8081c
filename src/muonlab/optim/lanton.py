"""LANTON: Muon/Scion LMO steps with a per-layer learning rate set by that layer's gradient noise.

Hao, Gong, Xu, Wang, Liu, "Noise-adaptive layerwise learning rates" (LANTON, arXiv 2510.14009).
No code and no paper body were found; what is known [SECONDARY: abstract, a survey note
(Hiroki11x/Papers #457), an emergentmind topic page]: LANTON keeps the LMO direction of a
geometry-aware optimizer (Muon, D-Muon, Scion) and gives each layer its own time-varying lr from
an on-the-fly estimate of that layer's gradient noise, measured in the dual norm of the layer's
LMO norm; the quieter a layer, the larger its step. The update below is our reconstruction
[RECON; functional form GUESS]. Per matrix parameter ℓ of a param group, step t::

    D_ℓ ← G_ℓ − M_ℓ                                  one-sample noise proxy (M before this step)
    e_ℓ ← ‖D_ℓ‖_dual                                 dual norm of the LMO's norm, summed over the
                                                      matrices of a stacked (batch-view) parameter
    v_ℓ ← β₂v_ℓ + (1−β₂)e_ℓ²;  σ̂_ℓ = √(v_ℓ/(1−β₂^{t−1}))     from t = 2 (no M at t = 1)
    M_ℓ ← βM_ℓ + (1−β)G_ℓ;  X ← Nesterov look-ahead or M_ℓ  momentum_buffer (as Muon)
    W_ℓ ← (1 − ηλ)W_ℓ − η·f_ℓ·lmo(X)

with the layer factor ``f_ℓ`` (``normalize``):

* ``"min"`` (default): f_ℓ = (min_{ℓ'} σ̂_ℓ' / σ̂_ℓ)^p over the layers of the group: the quietest
  layer gets the base lr, noisier ones proportionally less;
* ``"mean"``: f_ℓ = (mean_{ℓ'} σ̂_ℓ' / σ̂_ℓ)^p;
* ``"bounded"``: f_ℓ = 1/√(1 + σ̂_ℓ²/c²) (``noise_scale`` c), no comparison across layers.

f_ℓ = 1 at step 1 and for a layer with no noise estimate yet. LMOs (``lmo``) and their dual norms:
``"spectral"``: lmo = s·polar(X) with the shape factor s = s(m, n) of ``adjust_lr_fn`` (default
``"spectral_norm"``, √(m/n): the RMS→RMS norm the paper uses for hidden matrices), dual s·‖D‖_*
(for the norm (1/s)‖·‖₂ the LMO is s·UVᵀ and the dual norm s‖·‖_*); ``"sign"`` (ℓ1→ℓ∞, Scion's
normalised ``Sign``): lmo = sign(X)/n, dual Σ|D_ij|/n. ‖D‖_* (``nuclear``): ``"ns"`` = ⟨D, O(D)⟩
with the group's orthogonalizer (one extra Newton–Schulz, cheap like the reported +4% overhead;
default), ``"svd"`` (exact singular values) or ``"frobenius"`` (the bound √min(m,n)·‖D‖_F).

Reduction (tested): when every layer's noise estimate is the same, f_ℓ = 1 and LANTON is Muon with
that shape factor. Behaviour (tested): a layer whose gradients carry extra noise gets its lr cut by
the ratio of the noise levels. Defaults [GUESS]: β₂ = 0.99, p = 1, c = 1, Muon's β = 0.95 with
Nesterov, lr 0.02, weight decay 0.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from ..matfn import to_matrix
from ..registry import OptimizerSpec, register
from . import hyper as H
from .rule import MatrixRule, orthogonalize_group, scalar
from .state import Slot
from .steps import (
    SHAPE_SCALES,
    apply_updates,
    gather_states,
    matrix_state_zeros,
    momentum_,
    scatter_states_,
    shape_scale,
)

NORMALIZE = ("min", "mean", "bounded")
LMOS = ("spectral", "sign")
NUCLEAR = ("ns", "svd", "frobenius")


def nuclear_norm(D: Tensor, method: str, group: dict | None = None) -> Tensor:
    """‖D‖_* per matrix of ``(B, m, n)`` (≥ float32): exact, ⟨D, orthogonalize(D)⟩, or √k·‖D‖_F."""
    work = torch.promote_types(D.dtype, torch.float32)
    Dw = D.to(work)
    if method == "svd":
        return torch.linalg.svdvals(Dw).sum(-1)
    if method == "frobenius":
        return math.sqrt(min(D.shape[-2:])) * torch.linalg.vector_norm(Dw, dim=(-2, -1))
    O = orthogonalize_group(D, group).to(work)
    return (Dw * O).sum(dim=(-2, -1))


def layer_factors(sigma: list[float | None], normalize: str, power: float, noise_scale: float) -> list[float]:
    """f_ℓ for the noise levels σ̂_ℓ of one group (None: no estimate yet → 1)."""
    known = [s for s in sigma if s is not None]
    if normalize == "bounded":
        return [1.0 if s is None else 1.0 / math.sqrt(1.0 + (s / noise_scale) ** 2) for s in sigma]
    if not known:
        return [1.0] * len(sigma)
    ref = min(known) if normalize == "min" else sum(known) / len(known)
    return [1.0 if (s is None or s <= 0) else (ref / s) ** power for s in sigma]


class LANTONRule(MatrixRule):
    """Muon with noise-adaptive layer-wise learning rates (see the module docstring)."""

    name = "lanton"
    hypers: ClassVar[dict[str, H.Hyper]] = {
        **MatrixRule.hypers,
        "lr": H.Hyper(0.02, "base learning rate η (the quietest layer's with normalize='min')", low=0.0),
        "momentum": H.MOMENTUM,
        "nesterov": H.NESTEROV,
        "momentum_form": H.MOMENTUM_FORM,
        "beta2": H.Hyper(0.99, "β₂ of the noise EMA [GUESS]", low=0.0, high=1.0, high_open=True),
        "normalize": H.Hyper("min", "layer factor: (min σ̂/σ̂_ℓ)^p, (mean σ̂/σ̂_ℓ)^p or 1/√(1+σ̂²/c²)",
                             kind="choice", choices=NORMALIZE),
        "power": H.Hyper(1.0, "exponent p of the noise ratio [GUESS]", low=0.0),
        "noise_scale": H.Hyper(1.0, "c of normalize='bounded' [GUESS]", low=0.0, low_open=True),
        "lmo": H.Hyper("spectral", "LMO: spectral (s·polar, dual s·‖·‖_*) or sign (sign/n, dual ‖·‖₁/n)",
                       kind="choice", choices=LMOS),
        "nuclear": H.Hyper("ns", "‖D‖_*: ns (⟨D, O(D)⟩), svd (exact) or frobenius (√k‖D‖_F bound)",
                           kind="choice", choices=NUCLEAR),
        "adjust_lr_fn": H.Hyper("spectral_norm", "shape factor s of the spectral LMO (RMS→RMS: √(m/n))",
                                kind="choice", choices=(None, *SHAPE_SCALES)),
    }
    state_spec: ClassVar[dict[str, Slot]] = {
        # matrix_fn reads M before this step's update (for D = G − M) and writes it.
        "momentum_buffer": Slot("param", matrix_phase=True),
        "noise_sq": Slot("matrix", matrix_phase=True, doc="EMA v of the squared dual-norm noise"),
    }

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        return {
            "momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format),
            "noise_sq": matrix_state_zeros(p, None, (), torch.promote_types(p.dtype, torch.float32)),
        }

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        return grad  # the matrix phase needs G and the old M (from the state)

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        _, m, n = X.shape
        M = gather_states(states, "momentum_buffer", (m, n))
        G = X.to(M.dtype)
        D = G - M
        if group["lmo"] == "sign":
            e = D.abs().to(torch.promote_types(D.dtype, torch.float32)).sum(dim=(-2, -1)) / n
        else:
            e = shape_scale(m, n, group["adjust_lr_fn"]) * nuclear_norm(D, group["nuclear"], group)
        Xin = momentum_(M, G, group["momentum"], nesterov=group["nesterov"], form=group["momentum_form"])
        if group["lmo"] == "sign":
            O = torch.sign(Xin) / n
        else:
            O = orthogonalize_group(Xin, group) * shape_scale(m, n, group["adjust_lr_fn"])
        scatter_states_(states, "momentum_buffer", M)
        v = gather_states(states, "noise_sq", ())
        e_param = e.reshape(len(states), -1).sum(-1).to(v.dtype)  # a stacked parameter: sum over it
        beta2 = group["beta2"]
        started = torch.tensor([int(st["step"].item()) > 1 for st in states], device=v.device)
        v = torch.where(started, beta2 * v + (1 - beta2) * e_param.square(), v)
        scatter_states_(states, "noise_sq", v)
        return O.to(X.dtype)

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        return O, scalar(group["lr"])  # the LMO's scale is in O; the layer factor comes in step

    def noise_levels(self, states: list[dict], group: dict) -> list[float | None]:
        """σ̂_ℓ of each parameter (None before its second step)."""
        out: list[float | None] = []
        for st in states:
            t = int(st["step"].item())
            v = st["noise_sq"]
            v = v.full_tensor() if hasattr(v, "full_tensor") else v
            out.append(None if t < 2 else math.sqrt(max(float(v), 0.0) / (1 - group["beta2"] ** (t - 1))))
        return out

    def step(self, params, grads, states, group, executor) -> None:
        view = group.get("matrix_view")
        Xs = [to_matrix(X, view) for X in self.pre_many(params, grads, states, group)]
        directions = executor.update_phase(self, params, Xs, states, group)
        factors = layer_factors(self.noise_levels(states, group), group["normalize"], group["power"],
                                group["noise_scale"])
        apply_updates(
            params,
            [U for U, _ in directions],
            [s * f for (_, s), f in zip(directions, factors)],
            lr=scalar(group["lr"]),
            weight_decay=group["weight_decay"],
            mode=group["weight_decay_mode"],
        )


def lanton_lr_factors(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """``{parameter name: f_ℓ}`` for the LANTON groups of ``optimizer`` (as the next step would use
    them, before that step's noise sample); names from ``param_names`` or ``group{g}.param{i}``."""
    out: dict[str, float] = {}
    for gi, group in enumerate(optimizer.param_groups):
        if group.get("algorithm") != "lanton":
            continue
        names = group.get("param_names")
        pairs = [(i, optimizer.state[p]) for i, p in enumerate(group["params"]) if optimizer.state.get(p)]
        rule = LANTONRule()
        sig = rule.noise_levels([st for _, st in pairs], group)
        f = layer_factors(sig, group["normalize"], group["power"], group["noise_scale"])
        for (i, _), fi in zip(pairs, f):
            out[names[i] if names else f"group{gi}.param{i}"] = fi
    return out


register(
    OptimizerSpec(
        name="lanton",
        rule=LANTONRule(),
        summary="Muon/Scion LMO step with a per-layer lr η·(min σ̂/σ̂_ℓ)^p, σ̂_ℓ an EMA of the dual norm "
        "of G − M (the layer's gradient noise)",
        recommended={"lr": 0.02},
        source="Hao, Gong, Xu, Wang, Liu, LANTON, arXiv 2510.14009 (abstract, survey notes)",
        certainty="RECON",
        state="1× + 1 scalar (momentum_buffer, noise_sq)",
        search_space={"lr": (1e-3, 1e-1)},
        configs={
            "mean_svd": {"normalize": "mean", "nuclear": "svd"},
            "bounded_sign": {"normalize": "bounded", "lmo": "sign", "lr": 0.01},
        },
    )
)
