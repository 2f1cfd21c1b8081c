"""Spectral-power optimizers: momentum SGD or Adam, with the update replaced by ``U Σᵖ Vᵀ``.

"Delving into Muon and Beyond" (Qi, Chen, Ye, He, Xiao; arXiv 2602.04669, seed 002; code
github.com/Ocram7/BeyondMuon @ 56dd187) sees Muon as the p = 0 end of ``Ψ_p(O) = U Σᵖ Vᵀ`` and
applies Ψ_p to two bases [EXACT, their ``sgdw_ns.py`` / ``adamw_ns.py``]::

    base="momentum" (SGDW_NS)                    base="adam" (AdamW_NS)
    W ← (1 − ηλ) W                               W ← (1 − ηλ) W
    M ← μ M + G     (torch SGD, no Nesterov)     m ← β₁m + (1−β₁)G;  v ← β₂v + (1−β₂)G²
    U ← M                                        U ← (m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)
    W ← W − η · s_p(m, n) · Ψ_p(U)               W ← W − η · s_p(m, n) · Ψ_p(U)

with ``s_0 = √max(1, m/n)`` (Keller's factor) and ``s_p = 1`` for p > 0 (BeyondMuon applies no
factor there). Ψ_p comes from :func:`muonlab.matfn.spectral_power`:

* p = 0: the group's orthogonalizer (default Keller's Newton–Schulz quintic run for 15 steps in
  bf16: BeyondMuon reuses its ``ns_iters = 15`` knob), i.e. exactly Muon's ``orthogonalize``.
* p = 1/2, 1/4: the coupled Newton iteration on the small Gram matrix, ``power_iters = 15`` steps
  per root, ridge ``1e-4·tr/k`` (BeyondMuon's values), regularised by ``regularization``:

  - ``"homogeneous"`` (the default): the update is scaled to unit Frobenius norm first, the
    relative ridge ``1e-4·tr(A)/k`` goes on ``A`` only, and BeyondMuon's absolute ``+1e-6`` is
    replaced by the rounding floor ``4ε‖A‖_F`` (see :mod:`muonlab.matfn.power`).
  - ``"beyondmuon"``: BeyondMuon's exact formula: the update at its own scale and
    ``(1e-6 + 1e-4·tr(M)/k)·I`` added to both matrices whose root is taken, ``M = A`` and
    ``M = A^{-1/2}`` (tested against a float64 for-loop of their ``spectral_ns.py``).

  Why "homogeneous" is the default: it is exactly homogeneous, ``Ψ_p(cU) = cᵖΨ_p(U)``, so the
  transform does not depend on the scale of the update. BeyondMuon's absolute 1e-6 does: for
  gradient-scale inputs (``base="momentum"``, Gram eigenvalues ≲ 1e-6) it dominates the ridge and
  pulls the result toward ``(1e-6)^{-1/4}·U Σ Vᵀ`` (a scaled copy of the input), away from
  ``U Σᵖ Vᵀ`` (77% off for entries ≈ 1e-5, tested). And its second ridge, ``1e-4·tr(A^{-1/2})/k``, is set by the *smallest*
  singular values, which dominate ``A^{-1/2}``: it lifts the largest outputs by about
  ``½·1e-4·σ_max·mean_i(1/σ_i)`` (0.1% for a geometric spectrum of condition number 1e2, 0.5%
  when most σ_i sit at σ_max/100; tested), where the homogeneous form keeps the top singular
  values within 1e-5. For Adam updates (entries ≈ 1, BeyondMuon's AdamS) the two agree to a few
  1e-4 after 20 steps (tested). Choose "beyondmuon" to reproduce BeyondMuon's runs exactly.
* other p: eigendecomposition of the small Gram matrix ("eigh"); p = 1: the identity.

Defaults (arXiv 2602.04669): ``p = 1/2`` and ``base = "adam"`` (the paper's finding: RMS-normalised
inputs are more stable than first moments; "AdamS"), ``betas = (0.9, 0.95)`` (their train.py),
``adam_eps = 1e-8``, ``momentum = 0.9`` (accumulate, no Nesterov), ``weight_decay = 0`` (all their
configs), ``lr = 1e-2`` (their best AdamS lr on GPT-2 124M). Their best lrs differ by orders of
magnitude between variants (:data:`BEYONDMUON_LR`), so set ``lr`` whenever you change ``p`` or
``base``. Not reproduced: BeyondMuon's split of packed QKV matrices into three blocks (use
``matrix_view="batch"`` on a reshaped parameter for that), and its routing of *every* ≥2-D tensor
(embeddings and head included) to the matrix optimizer — muonlab routes those to AdamW unless told
otherwise (``create_optimizer(..., roles=...)``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..matfn import matrix_shape
from ..matfn.power import NEWTON_POWERS, POWER_METHODS, REGULARIZATIONS, spectral_power
from ..registry import OptimizerSpec, register
from . import hyper as H
from .rule import MatrixRule, orthogonalize_group, scalar
from .state import PARAM
from .steps import SHAPE_SCALES, adam_denominator, adam_moments_, momentum_, shape_scale

#: BeyondMuon's best matrix lrs for GPT-2 124M on OpenWebText (config/gpt-124M-NS/*.py) [EXACT],
#: keyed by (base, p). A starting point for a sweep, not a transferable default.
BEYONDMUON_LR = {
    ("adam", 1.0): 4e-3, ("adam", 0.5): 1e-2, ("adam", 0.25): 2e-2, ("adam", 0.0): 7e-3,
    ("momentum", 1.0): 5.0, ("momentum", 0.5): 0.2, ("momentum", 0.25): 4e-2, ("momentum", 0.0): 7e-3,
}


class SpectralPowerRule(MatrixRule):
    """``W ← W − η·s_p·Ψ_p(base update)`` (see the module docstring for the math and defaults).

    Example::

        >>> opt = muonlab.create_optimizer(model, "spectral_power")                 # AdamS
        >>> opt = muonlab.create_optimizer(model, "spectral_power", base="momentum", p=0.25,
        ...                                lr=BEYONDMUON_LR[("momentum", 0.25)])    # mSGDQ
    """

    name = "spectral_power"
    hypers = {
        **MatrixRule.hypers,
        "lr": H.Hyper(1e-2, "learning rate η (BeyondMuon's best AdamS lr)", low=0.0),
        "p": H.Hyper(0.5, "spectral power: 0 = polar factor (Muon), 1 = the base update", low=0.0, high=1.0),
        "base": H.Hyper("adam", "update Ψ_p is applied to: Adam's RMS-normalised step or SGD momentum",
                        kind="choice", choices=("adam", "momentum")),
        "momentum": H.Hyper(0.9, "momentum μ of base='momentum'", low=0.0, high=1.0, high_open=True),
        "nesterov": H.Hyper(False, "Nesterov look-ahead for base='momentum' (BeyondMuon: off)", kind="bool"),
        "momentum_form": H.Hyper("accumulate", "accumulate (torch SGD, BeyondMuon) or ema", kind="choice",
                                 choices=("accumulate", "ema")),
        "betas": H.Hyper((0.9, 0.95), "Adam (β₁, β₂) of base='adam'", kind="pair", low=0.0, high=1.0,
                         high_open=True),
        "adam_eps": H.Hyper(1e-8, "Adam denominator ε of base='adam'", low=0.0),
        "power_method": H.Hyper("auto", "spectral_power route for 0 < p < 1", kind="choice",
                                choices=POWER_METHODS),
        "power_iters": H.Hyper(15, "coupled-Newton steps per root (BeyondMuon: 15)", kind="int", low=1,
                               high=100),
        "ridge": H.Hyper(1e-4, "relative Gram ridge δ = ridge·tr(A)/k (BeyondMuon: 1e-4)", low=0.0),
        "regularization": H.Hyper("homogeneous", "homogeneous: unit-scale input, ridge on A only; beyondmuon: "
                                  "BeyondMuon's (1e-6 + ridge·tr/k)·I on A and on A^(-1/2)", kind="choice",
                                  choices=REGULARIZATIONS),
        "power_dtype": H.Hyper("float32", "dtype of the Gram routes; None = the update's", kind="choice",
                               choices=("float32", "float64", None)),
        "ns_steps": H.Hyper(15, "Newton–Schulz steps for p = 0 (BeyondMuon: 15)", kind="int", low=0,
                            high=100, high_open=True, optional=True),
        "adjust_lr_fn": H.Hyper(None, "shape scaling; None = √max(1, m/n) for p = 0, none for p > 0",
                                kind="choice", choices=(None,) + SHAPE_SCALES),
    }
    # By base: the first, or the other two. matrix_fn and post use no state: pre hands them the
    # finished update.
    state_spec = {"momentum_buffer": PARAM, "exp_avg": PARAM, "exp_avg_sq": PARAM}

    def check_param(self, p: Tensor, group: dict, where: str) -> None:
        super().check_param(p, group, where)
        if group["power_method"] == "newton" and group["p"] not in (0, 0.25, 0.5, 1):
            raise ValueError(
                f"{where}: power_method='newton' supports p in (0, 0.25, 0.5, 1), got p={group['p']!r}; "
                "use power_method='auto' or 'eigh'"
            )
        p = group["p"]
        if group["regularization"] == "beyondmuon" and 0 < p < 1 and (
            p not in NEWTON_POWERS or group["power_method"] not in ("auto", "newton")
        ):
            raise ValueError(
                f"{where}: regularization='beyondmuon' is BeyondMuon's coupled-Newton iteration: it needs p in "
                f"{NEWTON_POWERS} with power_method 'auto' or 'newton', got p={p!r}, "
                f"power_method={group['power_method']!r}"
            )

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        z = lambda: torch.zeros_like(p, memory_format=torch.preserve_format)  # noqa: E731
        if group["base"] == "momentum":
            return {"momentum_buffer": z()}
        return {"exp_avg": z(), "exp_avg_sq": z()}

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        if group["base"] == "momentum":
            return momentum_(state["momentum_buffer"], grad, group["momentum"],
                             nesterov=group["nesterov"], form=group["momentum_form"])
        beta1, beta2 = group["betas"]
        adam_moments_(state["exp_avg"], state["exp_avg_sq"], grad, beta1, beta2)
        step = state["step"].item()
        denom = adam_denominator(state["exp_avg_sq"], step, beta2, group["adam_eps"])
        return (state["exp_avg"] / (1 - beta1**step)).div_(denom)  # a new tensor, not the state

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        p = float(group["p"])
        if p == 0:
            return orthogonalize_group(X, group)  # the very same call Muon makes
        dt = group["power_dtype"]
        return spectral_power(
            X, p, group["power_method"], iters=group["power_iters"], ridge=group["ridge"],
            compute_dtype=getattr(torch, dt) if dt else None, regularization=group["regularization"],
        )

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        m, n = matrix_shape(tuple(p.shape), group.get("matrix_view"))
        mode = group["adjust_lr_fn"] or ("original" if group["p"] == 0 else "none")
        return O, scalar(group["lr"]) * shape_scale(m, n, mode)


register(
    OptimizerSpec(
        name="spectral_power",
        configs={"momentum_base": {"base": "momentum"}, "quarter": {"p": 0.25},
                 "beyondmuon_ridge": {"regularization": "beyondmuon"}},
        rule=SpectralPowerRule(),
        summary="W ← W − η·U Σᵖ Vᵀ of the Adam (default) or momentum-SGD update; p = 0 is Muon",
        recommended={"lr": 2e-2},
        source="Qi et al., Delving into Muon and Beyond, arXiv 2602.04669; github Ocram7/BeyondMuon",
        certainty="EXACT",
        state="2× (exp_avg, exp_avg_sq) for base='adam'; 1× (momentum_buffer) for base='momentum'",
        search_space={"lr": (1e-3, 1e-1)},
    )
)
