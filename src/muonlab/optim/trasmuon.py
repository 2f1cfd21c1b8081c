"""TrasMuon: NorMuon-style row normalisation, RMS calibration and an energy trust region on columns.

Math of the default ``variant="v2.1"`` (the authors' released optimizer, PyPI ``trasmuon-pytorch``
0.1.0, ``trasmuon/optimizer.py``, "TrasMuon Optimizer (v2.1)" [EXACT code]); per matrix
W ∈ R^{m×n} at step t = 1, 2, ...::

    M ← β₁M + (1−β₁)G                                       momentum_buffer (EMA, no Nesterov)
    O ← orthogonalize(M)                                    You's 5-step quintic ("you5")
    r ← β₂r + (1−β₂)·mean_j(O ⊙ O)                          row_second_moment (m×1, no correction)
    O_b ← diag(1/(√r + ε))·O
    s ← ρ_u·√(mn)/(‖O_b‖_F + 1e-12)                         RMS calibration, before the gate
    E_j ← Σ_i M_ij²                                         column (input-feature) energy
    E_q ← the q-quantile of E (q = ½: the lower median, k = ⌊qn + ½⌋-th smallest)
    E_ref ← E_q at t = 1, else β_E·E_ref + (1−β_E)·E_q     energy_ref (no bias correction)
    ρ_j ← E_j/(E_ref + ε_E)
    c_j ← clip(1/(1 + α·log(1 + ρ_j)), c_min, 1) where ρ_j > κ, else 1        trust region
    c̄ ← γ·c̄ + (1−γ)·c   only when t = 1 or t ≡ 0 (mod k)    gate_ema (starts at 1)
    S ← S + η²;  C ← C + η²·c_prev;  c_avg ← C/(S + 1e-12)  schedule-free average of the
                                                            factors used before (c_prev starts at 1)
    c_used ← (1−μ)·c̄ + μ·c_avg;  c_prev ← c_used           gate_last
    W ← (1 − ηλ)W − η·s·(O_b ⊙ c_used)                      c_used broadcast over rows

Columns are not gated at all (c_used = 1) when n < n_min. v2.1 defaults: ρ_u = 0.2 (update RMS
before the gate), α = 1, c_min = 0.7, κ = 3, γ = 0.9, k = 4, μ = 0.3, n_min = 8, q = ½,
β₁ = β₂ = 0.95, β_E = 0.99, ε = 1e-8, ε_E = 1e-12, weight decay 0; the release's Newton–Schulz uses
You's 5-step coefficients in bf16 (our default orthogonalizer "you5", bf16). v2.1 options not
reproduced, at their defaults: ``warmup_steps=0``, ``gamma_source="lr"`` (the η² weights),
``col_gate_use="m"`` (energy of the momentum); its S0/τ schedule-free bookkeeping only feeds
diagnostics and is left out; its non-matrix AdamW fallback is muonlab's usual AdamW routing. The
η of the η² weights is the group's lr at each step (a scheduler changes it).

``variant="summary"`` is muonlab's earlier reading of the paper (SECONDARY: zij
``canon/math/trasmuon.md``, which matches the abstract's "global RMS calibration and energy-based
trust-region clipping"); it differs from v2.1 in four formulas::

    O ← orthogonalize(M / (‖M‖_F/√(mn) + ε))            RMS-normalised input
    O_b ← diag((r + ε)^{-1/2})·O;   s ← ρ_u·√(mn)/(‖O_b‖_F + ε)
    E_ref ← β_E·E_ref + (1−β_E)·E_q from 0, used bias-corrected: E_ref/(1 − β_Eᵗ)
    ε_E = ε

and in the defaults of the knobs that are ``None`` (= "the variant's own"): ρ_u = 1 (unit RMS),
c_min = 0.1 [GUESS], κ = 0 (every column damped), γ = 0 and k = 1 (no smoothing), μ = 0 (no
schedule-free mixing), n_min = 1 (always gated). ``variant="summary", orthogonalizer=
"newton_schulz"`` is exactly muonlab's TrasMuon before v2.1 became the default (a registered config).

With ``damping = 0`` the gate is 1 and the summary variant is NorMuon's paper form at update RMS 1
instead of 0.2 (tested); the v2.1 variant is then NorMuon's paper form with ε outside the root.

Source: Cheng et al., "TrasMuon", arXiv 2602.13498; PyPI trasmuon-pytorch 0.1.0
``trasmuon/optimizer.py`` (v2.1) [EXACT code; parity at float64 in tests/parity/].
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from ..matfn import matrix_shape
from ..registry import OptimizerSpec, register
from . import hyper as H
from .rule import MATRIX_HYPERS, ORTHO_HYPERS, MatrixRule, orthogonalize_group, scalar
from .state import PARAM, Slot
from .steps import gather_states, matrix_state_zeros, momentum_, scatter_states_

VARIANTS = ("v2.1", "summary")

#: The defaults of the knobs a group leaves ``None``, per variant (see the module docstring).
#: ``energy_eps=None`` in "summary" means the group's ``norm_eps``.
VARIANT_DEFAULTS: dict[str, dict[str, float | int | None]] = {
    "v2.1": dict(update_rms=0.2, min_damping=0.7, energy_threshold=3.0, gate_ema=0.9, gate_every=4,
                 gate_min_cols=8, sf_mix=0.3, energy_eps=1e-12),
    "summary": dict(update_rms=1.0, min_damping=0.1, energy_threshold=0.0, gate_ema=0.0, gate_every=1,
                    gate_min_cols=1, sf_mix=0.0, energy_eps=None),
}

# v2.1's fixed 1e-12 in the calibration denominator and the schedule-free average.
_TINY = 1e-12


def _unit(doc: str, default: float | None, optional: bool = False) -> H.Hyper:
    return H.Hyper(default, doc, low=0.0, high=1.0, high_open=True, optional=optional)


def knob(group: dict, name: str):
    """The group's value of ``name``, or its variant's default when the group leaves it None."""
    value = group[name]
    if value is None:
        value = VARIANT_DEFAULTS[group["variant"]][name]
    if value is None and name == "energy_eps":
        value = group["norm_eps"]
    return value


def quantile_kth(x: Tensor, q: float) -> Tensor:
    """The ``k = clamp(⌊q·n + ½⌋, 1, n)``-th smallest entry along the last dim (v2.1's quantile;
    for q = ½ it is ``torch.median``'s lower median)."""
    n = x.size(-1)
    k = max(1, min(n, int(q * n + 0.5)))
    return x.kthvalue(k, dim=-1).values


def column_gate(ratio: Tensor, alpha: float, c_min: float, threshold: float) -> Tensor:
    """Trust-region factors ``clip(1/(1 + α·log(1+ρ)), c_min, 1)`` where ``ρ > threshold``, else 1."""
    c = (1 / (1 + alpha * torch.log1p(ratio))).clamp(c_min, 1)
    return torch.where(ratio > threshold, c, torch.ones_like(c))


class TrasMuonRule(MatrixRule):
    """Row-normalised, RMS-calibrated Muon with per-column energy damping (see the module docstring)."""

    name = "trasmuon"
    hypers = {
        **MATRIX_HYPERS,
        **{k: h for k, h in ORTHO_HYPERS.items() if k != "adjust_lr_fn"},
        "orthogonalizer": replace(ORTHO_HYPERS["orthogonalizer"], default="you5",
                                  doc="orthogonalization method (v2.1: You's 5-step quintic)"),
        "variant": H.Hyper("v2.1", "v2.1: the authors' release (default); summary: muonlab's earlier "
                           "reading of the paper [SECONDARY]", kind="choice", choices=VARIANTS),
        "weight_decay": H.Hyper(0.0, "decoupled weight decay λ", low=0.0),
        "momentum": _unit("EMA coefficient β₁ of the momentum", 0.95),
        "beta2": _unit("EMA coefficient β₂ of the row second moment", 0.95),
        "energy_beta": _unit("EMA coefficient β_E of the reference column energy", 0.99),
        "energy_quantile": H.Hyper(0.5, "q of the reference energy E_q (0.5: the lower median)",
                                   low=0.0, low_open=True, high=1.0),
        "damping": H.Hyper(1.0, "α of the trust region c = 1/(1 + α·log(1+ρ)); 0 = off", low=0.0),
        "min_damping": H.Hyper(None, "c_min, lower clip of the column factors; None = variant's "
                               "(v2.1 0.7, summary 0.1 [GUESS])", low=0.0, high=1.0, optional=True),
        "energy_threshold": H.Hyper(None, "κ: damp only columns with E_j/E_ref > κ; None = variant's "
                                    "(v2.1 3, summary 0 = all)", low=0.0, optional=True),
        "gate_ema": _unit("γ of the EMA of the column factors; None = variant's (v2.1 0.9, summary 0)",
                          None, optional=True),
        "gate_every": H.Hyper(None, "k: the factor EMA moves at t = 1 and every k-th step; None = "
                              "variant's (v2.1 4, summary 1)", kind="int", low=1, optional=True),
        "gate_min_cols": H.Hyper(None, "n_min: matrices with fewer columns are not gated; None = "
                                 "variant's (v2.1 8, summary 1)", kind="int", low=0, optional=True),
        "sf_mix": H.Hyper(None, "μ: weight of the lr²-weighted average of past factors; None = "
                          "variant's (v2.1 0.3, summary 0)", low=0.0, high=1.0, optional=True),
        "update_rms": H.Hyper(None, "ρ_u: update RMS before the gate, per unit lr; None = variant's "
                              "(v2.1 0.2, summary 1)", low=0.0, low_open=True, optional=True),
        "norm_eps": H.Hyper(1e-8, "ε of the row normalisation (and, summary, of the other norms)", low=0.0),
        "energy_eps": H.Hyper(None, "ε_E of the energy ratio; None = variant's (v2.1 1e-12, summary "
                              "norm_eps)", low=0.0, optional=True),
    }
    state_spec = {
        "momentum_buffer": PARAM,
        "row_second_moment": Slot("matrix", matrix_phase=True, doc="r, m×1"),
        "energy_ref": Slot("matrix", matrix_phase=True, doc="E_ref, a scalar"),
        "gate_ema": Slot("matrix", matrix_phase=True, doc="c̄, n column factors (start at 1)"),
        "gate_last": Slot("matrix", matrix_phase=True, doc="c_prev, the factors used last step"),
        "gate_sum": Slot("matrix", matrix_phase=True, doc="C = Σ η²·c_prev, n entries"),
        "lr_sq_sum": Slot("matrix", matrix_phase=True, doc="S = Σ η², a scalar"),
    }

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        view = group.get("matrix_view")
        m, n = matrix_shape(tuple(p.shape), view)
        # Per-matrix scalars and column factors stay at least float32 for a bf16 parameter.
        dt = torch.promote_types(p.dtype, torch.float32)
        return {
            "momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format),
            "row_second_moment": matrix_state_zeros(p, view, (m, 1)),
            "energy_ref": matrix_state_zeros(p, view, dtype=dt),
            "gate_ema": matrix_state_zeros(p, view, (n,), dtype=dt).fill_(1),
            "gate_last": matrix_state_zeros(p, view, (n,), dtype=dt).fill_(1),
            "gate_sum": matrix_state_zeros(p, view, (n,), dtype=dt),
            "lr_sq_sum": matrix_state_zeros(p, view, dtype=dt),
        }

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        return momentum_(state["momentum_buffer"], grad, group["momentum"], nesterov=False, form="ema")

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        B, m, n = X.shape
        v21 = group["variant"] == "v2.1"
        eps = group["norm_eps"]
        M = X.to(torch.promote_types(X.dtype, torch.float32))
        fro = lambda A: torch.linalg.vector_norm(A, dim=(-2, -1), keepdim=True)  # noqa: E731
        # Each matrix's own step count (a batch-view parameter contributes B/len(states) matrices).
        t = torch.stack([st["step"] for st in states]).repeat_interleave(B // len(states))
        t = t.to(device=M.device, dtype=M.dtype)

        O = orthogonalize_group(M if v21 else M / (fro(M) / math.sqrt(m * n) + eps), group).to(M.dtype)
        r = gather_states(states, "row_second_moment", (m, 1)).to(M.dtype)
        r.lerp_(O.square().mean(-1, keepdim=True), 1 - group["beta2"])
        scatter_states_(states, "row_second_moment", r)
        Ob = O * (1 / (r.sqrt() + eps) if v21 else (r + eps).rsqrt())
        scale = knob(group, "update_rms") * math.sqrt(m * n) / (fro(Ob) + (_TINY if v21 else eps))

        # The energy reference: the first step's quantile, then an EMA (v2.1), or a bias-corrected
        # EMA from 0 (summary).
        energy = M.square().sum(-2)  # (B, n)
        e_q = quantile_kth(energy, group["energy_quantile"])
        beta_e = group["energy_beta"]
        e_ref = gather_states(states, "energy_ref", ()).to(M.dtype)
        if v21:
            e_ref = torch.where(t == 1, e_q, beta_e * e_ref + (1 - beta_e) * e_q)
            e_hat = e_ref
        else:
            e_ref = e_ref.lerp(e_q, 1 - beta_e)
            e_hat = e_ref / (1 - beta_e**t)
        scatter_states_(states, "energy_ref", e_ref)

        # The schedule-free average of the factors used so far, weighted by lr² (a past step's
        # factors enter at the next step, as in v2.1).
        lr_sq = scalar(group["lr"]) ** 2
        c_prev = gather_states(states, "gate_last", (n,)).to(M.dtype)
        s_sum = gather_states(states, "lr_sq_sum", ()).to(M.dtype) + lr_sq
        c_sum = gather_states(states, "gate_sum", (n,)).to(M.dtype) + lr_sq * c_prev
        scatter_states_(states, "lr_sq_sum", s_sum)
        scatter_states_(states, "gate_sum", c_sum)

        if n >= knob(group, "gate_min_cols"):
            c = column_gate(energy / (e_hat[:, None] + knob(group, "energy_eps")), group["damping"],
                            knob(group, "min_damping"), knob(group, "energy_threshold"))
            every, g = knob(group, "gate_every"), knob(group, "gate_ema")
            moves = ((t == 1) | (torch.remainder(t, every) == 0))[:, None]
            c_bar = gather_states(states, "gate_ema", (n,)).to(M.dtype)
            c_bar = torch.where(moves, g * c_bar + (1 - g) * c, c_bar)
            scatter_states_(states, "gate_ema", c_bar)
            c_avg = torch.where(s_sum[:, None] > 0, c_sum / (s_sum[:, None] + _TINY), torch.ones_like(c_sum))
            mu = knob(group, "sf_mix")
            c_used = (1 - mu) * c_bar + mu * c_avg
        else:
            c_used = torch.ones_like(c_prev)
        scatter_states_(states, "gate_last", c_used)

        return (Ob * (scale * c_used[:, None, :])).to(X.dtype)

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        return O, scalar(group["lr"])  # the RMS calibration in matrix_fn is the whole scaling


register(
    OptimizerSpec(
        name="trasmuon",
        rule=TrasMuonRule(),
        summary="row-normalised Muon at RMS 0.2, high-energy columns damped to ≥ 0.7 by a smoothed "
                "1/(1+α·log(1+E_j/E_ref)) (v2.1)",
        # 5× the lr tuned for the unit-RMS summary variant (docs/defaults.md: 2e-3): v2.1's update
        # RMS is 0.2, so this keeps the step size.
        recommended={"lr": 1e-2},
        source="Cheng et al., TrasMuon, arXiv 2602.13498; PyPI trasmuon-pytorch 0.1.0 trasmuon/optimizer.py (v2.1)",
        certainty="EXACT",
        state="1× + m + 3n + 2 per matrix (momentum_buffer, row_second_moment m×1, energy_ref, "
              "gate_ema/gate_last/gate_sum n each, lr_sq_sum)",
        search_space={"lr": (5e-4, 5e-2)},
        configs={"summary": {"variant": "summary", "orthogonalizer": "newton_schulz"},
                 "v21_every_step": {"gate_every": 1, "sf_mix": 0.0, "energy_threshold": 0.0}},
    )
)
