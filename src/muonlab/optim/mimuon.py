"""MiMuon ("Mixed Muon"): per matrix and step, either a Muon step or a momentum-SGD step.

Huang, Luo, Chen, "MiMuon: Mixed Muon Optimizer with Improved Generalization for Large Models"
(arXiv 2605.19619, seed 000). The abstract says MiMuon "cautiously" uses orthogonalization and is
"a hybrid of Muon and momentum-based SGD"; the paper body and code could not be read, so the exact
rule is unknown (only the abstract and junaidaliop/zij ``canon/math/mimuon.md`` were found).
Every candidate is selectable with ``rule=``::

    M ← μ M + (1−μ) G                  (EMA; the authors' M ← β_H G + (1−β_H) M with β_H = 1 − μ)
    X ← M   (or the Nesterov look-ahead if nesterov=True)
    D ← s(m,n)·polar(X)       if the rule orthogonalizes this matrix at this step   (Muon branch)
        c·X                   otherwise                                             (SGD branch)
    W ← (1 − ηλ) W − η D      (s = √max(1, m/n) by default; c = sgd_lr_scale)

``rule`` (source and certainty):

* ``"gap"`` [SECONDARY: a third-party math page, junaidaliop/zij ``canon/math/mimuon.md``; the
  only description of the paper's Algorithm 2 found]: orthogonalize when the minimum gap between
  consecutive nonzero singular values of X, ``κ = min_i (σ_i − σ_{i+1})`` over
  ``σ_i > rank_rtol·σ₁``, satisfies ``κ ≥ τ``; else SGD. ``gap_mode`` measures κ in absolute units
  (the faithful reading) or relative to ``σ₁`` or ``‖X‖_F`` (scale-free, [RECON]); ``gap_top_k``
  restricts the gap to the top k singular values [RECON]. κ comes from the eigenvalues of the
  small-side Gram matrix in float64 (one ``k×k`` eigvalsh, no SVD), refreshed every ``gap_every``
  steps (the decision in between reuses the last κ). A matrix with fewer than two nonzero
  singular values has no gap: κ = +∞ (orthogonalize), except that ``τ = ∞`` always means SGD.
* ``"bernoulli"`` [RECON; the seed's *simulated* author rebuttal: "orthogonalization with
  probability p", whose stability argument takes a convex combination of the two branches]:
  orthogonalize with probability ``ortho_prob``. Draws are a hash of (``seed``, step, the
  parameter's key, matrix index), not a stateful generator: reproducible, independent of batching
  and order, and bitwise identical after a ``state_dict`` round trip. The key is the CRC-32 of the
  parameter's name when the group has ``param_names`` (as :func:`muonlab.create_optimizer` sets),
  else its position in the group.
* ``"periodic"`` [RECON]: orthogonalize at steps 1, 1 + k, 1 + 2k, ... (``period = k``).
* ``"blend"`` [EXACT for Ultralytics MuSGD (YOLO26's default optimizer), RECON as MiMuon]: every
  step ``D = (1−α)·s·polar(X) + α·c·X`` with ``α = blend`` (MuSGD: 0.5/0.5). Unlike MuSGD this
  uses one momentum buffer, not a Nesterov-EMA one for Muon plus an accumulate one for SGD.

**Default: ``rule="bernoulli"``, ``ortho_prob=0.5``.** The faithful gap rule is not a usable
default: no τ was published, and for large noisy matrices the minimum consecutive gap is at
random-matrix level spacing (≈ σ/k, shrinking with size), so an absolute τ picks SGD almost always
and any fixed τ makes the orthogonalized fraction depend on layer size and gradient scale
(our analysis of the zij page's gap rule). Bernoulli mixing is the other reading the seed gives, needs no singular
values (cost ≤ Muon), and fixes the orthogonalized fraction (≈ ortho_prob) so runs are comparable.

Scales: the Muon branch moves ``η·s`` in spectral norm, the SGD branch ``η·c·‖X‖``, with X at
gradient scale (EMA form). With one η (the faithful ``c = 1``) the SGD steps are usually far
smaller than the Muon steps (about 0.5% of one on mlp_digits), so MiMuon then behaves like Muon
skipping some of its steps; ``sgd_lr_scale`` sets their ratio [RECON], and
``sgd_step="rms_matched"`` rescales each SGD-branch matrix to the Frobenius norm of the Muon branch,
``s·√min(m, n)``, so both branches move comparable steps (the direction stays the momentum's). In accumulate form
(``momentum_form="accumulate"``) X is ``1/(1−μ)`` times larger.

Diagnostics: per parameter, ``state["ortho_steps"]`` (matrix-steps that took the Muon branch),
``state["matrix_steps"]`` (all matrix-steps) and, for ``"gap"``, ``state["gap"]`` (the last κ of
each matrix, in ``gap_mode`` units). They are plain Python numbers, because torch casts every
state tensor but ``step`` to the parameter's dtype on load (a bf16 count stops being exact at 256).
:func:`orthogonalized_fraction` reads them; :func:`min_singular_gap` is κ as a pure function.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..matfn.power import gram_singular_values
from ..registry import OptimizerSpec, register
from . import hyper as H
from .seeding import counter_uniform, param_key
from .rule import MatrixRule, orthogonalize_group, scalar
from .steps import momentum_, shape_scale
from .state import PARAM, Slot

RULES = ("gap", "bernoulli", "periodic", "blend")
GAP_MODES = ("absolute", "relative_to_sigma1", "relative_to_fro")
SGD_STEPS = ("faithful", "rms_matched")

# A counter-based uniform draw (see .seeding); kept under this name for MiMuon's docs and tests.
bernoulli_uniform = counter_uniform


def min_singular_gap(
    X: Tensor, mode: str = "absolute", rank_rtol: float | None = None, top_k: int | None = None
) -> Tensor:
    """κ = min over consecutive nonzero singular values of ``σ_i − σ_{i+1}``, per matrix (float64).

    Args:
        X: ``(..., m, n)``.
        mode: "absolute", "relative_to_sigma1" (κ/σ₁) or "relative_to_fro" (κ/‖X‖_F).
        rank_rtol: σ_i counts as nonzero when ``σ_i > rank_rtol·σ₁`` (default ``max(m, n)·ε_fp32``).
        top_k: only the gaps among the top ``top_k`` singular values.

    Returns:
        ``(...)`` float64 tensor; ``+inf`` where fewer than two singular values are nonzero.
    """
    if mode not in GAP_MODES:
        raise ValueError(f"unknown gap mode {mode!r}; choose one of {GAP_MODES}")
    S = gram_singular_values(X)  # descending, float64, no SVD
    if rank_rtol is None:
        rank_rtol = max(X.shape[-2:]) * torch.finfo(torch.float32).eps
    valid = S[..., 1:] > rank_rtol * S[..., :1]  # gap i is valid when σ_{i+1} is nonzero
    if top_k is not None:
        valid[..., max(top_k - 1, 0):] = False
    gaps = torch.where(valid, S[..., :-1] - S[..., 1:], torch.full_like(S[..., 1:], math.inf))
    kappa = gaps.amin(-1) if gaps.size(-1) else S.new_full(S.shape[:-1], math.inf)
    if mode == "relative_to_sigma1":
        kappa = kappa / S[..., 0].clamp_min(torch.finfo(S.dtype).tiny)
    elif mode == "relative_to_fro":
        kappa = kappa / S.norm(dim=-1).clamp_min(torch.finfo(S.dtype).tiny)
    return kappa


class MiMuonRule(MatrixRule):
    """MiMuon as a :class:`MatrixRule`; the branch is chosen per matrix in :meth:`matrix_fn`.

    Example::

        >>> opt = muonlab.create_optimizer(model, "mimuon")               # Bernoulli, p = 0.5
        >>> opt = muonlab.create_optimizer(model, "mimuon", rule="gap", gap_mode="relative_to_sigma1",
        ...                                gap_top_k=8, tau=3e-3, gap_every=10)
        >>> ...  # train
        >>> orthogonalized_fraction(opt)                                  # {"blocks.0.attn.w": 0.48, ...}
    """

    name = "mimuon"
    hypers = {
        **MatrixRule.hypers,
        "lr": H.Hyper(0.02, "learning rate η of both branches (Keller's Muon lr; none published)", low=0.0),
        "momentum": H.MOMENTUM,
        "nesterov": H.Hyper(False, "Nesterov look-ahead (not in the relayed algorithm)", kind="bool"),
        "momentum_form": H.MOMENTUM_FORM,
        "rule": H.Hyper("bernoulli", "when to orthogonalize: " + ", ".join(RULES), kind="choice",
                        choices=RULES),
        "tau": H.Hyper(1e-3, "gap threshold τ, in gap_mode units (none published; GUESS)", low=0.0),
        "gap_mode": H.Hyper("absolute", "units of κ and τ", kind="choice", choices=GAP_MODES),
        "gap_every": H.Hyper(1, "recompute κ every this many steps", kind="int", low=1),
        "gap_top_k": H.Hyper(None, "gap over the top k singular values only; None = all", kind="int",
                             low=2, optional=True),
        "rank_rtol": H.Hyper(None, "σ_i is nonzero when σ_i > rank_rtol·σ₁; None = max(m,n)·ε_fp32",
                             low=0.0, optional=True),
        "ortho_prob": H.Hyper(0.5, "probability of the Muon branch (rule='bernoulli')", low=0.0, high=1.0),
        "seed": H.Hyper(0, "seed of the Bernoulli draws", kind="int", low=0),
        "period": H.Hyper(2, "orthogonalize every period-th step (rule='periodic')", kind="int", low=1),
        "blend": H.Hyper(0.5, "weight α of the SGD branch (rule='blend'; MuSGD: 0.5)", low=0.0, high=1.0),
        "sgd_lr_scale": H.Hyper(1.0, "SGD-branch step = η·sgd_lr_scale·M (1 = faithful)", low=0.0),
        "sgd_step": H.Hyper("faithful", "SGD-branch size: 'faithful' (η·c·X) or 'rms_matched' (η·c·X rescaled "
                            "to the Muon branch's RMS)", kind="choice", choices=SGD_STEPS),
    }
    # matrix_fn reads and writes only plain-number state (counters, draw key) and the last κ, which
    # distributed executors copy back to every rank; no tensor state is needed whole on the owner.
    state_spec = {
        "momentum_buffer": PARAM,
        "draw_key": Slot("counter", doc="seeded draw key of this parameter"),
        "ortho_steps": Slot("counter", matrix_phase=True, doc="matrix-steps that took the Muon branch"),
        "matrix_steps": Slot("counter", matrix_phase=True, doc="all matrix-steps"),
        "gap": Slot("matrix", doc="last κ per matrix (rule='gap'); set by matrix_fn, sent back pickled"),
    }

    def init_state(self, p: Tensor, group: dict) -> dict:
        key = param_key(p, group)
        return {
            "momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format),
            "draw_key": key,
            "ortho_steps": 0,
            "matrix_steps": 0,
        }

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        return momentum_(state["momentum_buffer"], grad, group["momentum"],
                         nesterov=group["nesterov"], form=group["momentum_form"])

    def _decide(self, X: Tensor, states: list[dict], group: dict) -> list[bool]:
        """Muon branch or not, for each of the B matrices of X (``B // len(states)`` per state)."""
        per = X.size(0) // len(states)
        rule = group["rule"]
        steps = [int(st["step"].item()) for st in states]
        if rule == "bernoulli":
            seed, prob = group["seed"], group["ortho_prob"]
            return [bernoulli_uniform(seed, steps[i // per], states[i // per]["draw_key"], i % per) < prob
                    for i in range(X.size(0))]
        if rule == "periodic":
            return [(steps[i // per] - 1) % group["period"] == 0 for i in range(X.size(0))]
        if rule == "blend":
            return [group["blend"] < 1.0] * X.size(0)
        # rule == "gap": refresh κ at steps 1, 1 + gap_every, ... (per state, so the result does not
        # depend on which parameters were batched together).
        stale = [(s - 1) % group["gap_every"] == 0 or len(st.get("gap", ())) != per
                 for s, st in zip(steps, states)]
        if any(stale):
            kappa = min_singular_gap(X, group["gap_mode"], group["rank_rtol"], group["gap_top_k"]).tolist()
            for j, st in enumerate(states):
                if stale[j]:
                    st["gap"] = kappa[j * per:(j + 1) * per]
        tau = group["tau"]
        return [tau < math.inf and states[i // per]["gap"][i % per] >= tau for i in range(X.size(0))]

    @torch.compiler.disable
    def step(self, params, grads, states, group, executor) -> None:
        # Eager inside a compiled optimizer step: which branch each matrix takes depends on data (κ) or on per-step draws;
        # traced, it would recompile for every new pattern and scheduled lr.
        super().step(params, grads, states, group, executor)

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        ortho = self._decide(X, states, group)
        per = X.size(0) // len(states)
        for j, st in enumerate(states):
            st["ortho_steps"] += sum(ortho[j * per:(j + 1) * per])
            st["matrix_steps"] += per
        s = shape_scale(X.size(-2), X.size(-1), group["adjust_lr_fn"])
        c = group["sgd_lr_scale"]
        if group["rule"] == "blend":
            alpha = group["blend"]
            D = X * (alpha * c)  # a new tensor: X may be the momentum buffer itself
            if group["sgd_step"] == "rms_matched":
                D.mul_(_rms_match(X, s))
            if alpha < 1.0:
                D.add_(orthogonalize_group(X, group), alpha=(1 - alpha) * s)
            return D
        if all(ortho):
            return orthogonalize_group(X, group).mul_(s)
        D = X * c if group["sgd_step"] == "faithful" else X * (c * _rms_match(X, s))  # a new tensor
        idx = [i for i, o in enumerate(ortho) if o]
        if idx:
            rows = torch.tensor(idx, device=X.device)
            D[rows] = orthogonalize_group(X[rows], group).mul_(s).to(D.dtype)
        return D

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        return O, scalar(group["lr"])  # the branch scales are already in O


def _rms_match(X: Tensor, s: float) -> Tensor:
    """Per matrix, the factor that gives ``X`` the Frobenius norm of ``s·polar(X)``, s·√min(m, n)
    (full rank assumed), shaped to broadcast over the batch (a zero matrix keeps factor 0)."""
    norm = X.flatten(1).norm(dim=1).clamp_min(torch.finfo(X.dtype).tiny)
    target = s * math.sqrt(min(X.size(-2), X.size(-1)))
    return (target / norm).view(-1, *([1] * (X.dim() - 1))).to(X.dtype)


def orthogonalized_fraction(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """``{parameter name: fraction of its matrix-steps that took the Muon branch}``.

    Covers every parameter whose state has MiMuon's counters (so groups of other rules are
    skipped, and parameters that never stepped are absent). Names come from the group's
    ``param_names``; without them a parameter is called ``"group{g}.param{i}"``.
    """
    out: dict[str, float] = {}
    for g, group in enumerate(optimizer.param_groups):
        names = group.get("param_names")
        for i, p in enumerate(group["params"]):
            st = optimizer.state.get(p, {})
            if st.get("matrix_steps"):
                out[names[i] if names else f"group{g}.param{i}"] = st["ortho_steps"] / st["matrix_steps"]
    return out


register(
    OptimizerSpec(
        name="mimuon",
        configs={"gap": {"rule": "gap", "tau": 1e-3, "gap_mode": "relative_to_sigma1"}, "periodic": {"rule": "periodic"}, "blend": {"rule": "blend"}},
        rule=MiMuonRule(),
        summary="per matrix and step: Muon (polar of momentum) or momentum SGD; rule= gap | "
                "bernoulli (default, p=0.5) | periodic | blend",
        recommended={"lr": 0.03, "weight_decay": 0.01},
        source="Huang, Luo, Chen, arXiv 2605.19619 (abstract); rule via junaidaliop/zij mimuon.md",
        certainty="RECON",
        state="1× (momentum_buffer) + counters",
        search_space={"lr": (1e-3, 1e-1)},
    )
)
