"""MARS: a scaled STORM-type gradient correction before the update: MARS-M (Muon) and MARS-AdamW.

Correction (both rules; β = the momentum coefficient, γ = ``gamma``)::

    c ← g + γ·β/(1−β)·(g − g̃)                  g̃ = last_grad
    c ← c / ‖c‖_F   if ‖c‖_F > 1                 per-tensor clip to norm 1 (``clip_c``)
    m ← β m + (1−β) c

* approximate MARS (``is_approx=True``, the default): g̃ is the previous step's raw gradient
  ``∇f(x_{t−1}; ξ_{t−1})``, kept in ``last_grad`` (zero at step 1, so c₁ = (1 + γβ/(1−β))·g₁).
* exact MARS (``is_approx=False``): g̃ = ``∇f(x_{t−1}; ξ_t)``, the *current* batch at the previous
  iterate, a second backward pass per step. The rule never overwrites ``last_grad`` then; the
  training loop hands g̃ over with :func:`store_reference_grads` before ``step()``. The authors'
  docstring loop for this mode is muddled, so the driver is our reconstruction [RECON]:

      keep x_{t−1};  load x_{t−1}, backward on ξ_t, store_reference_grads(opt)
      load x_t,      backward on ξ_t, opt.step()

``mars_m`` (MARS-M, ``MARS_M/optimizers/mars_m.py``): Muon on the corrected momentum::

    O ← NS5(m)                     Keller's quintic, 5 steps, bf16, X/(‖X‖_F + 1e-7)
    W ← (1 − ηλ)W − η·0.2·√max(m, n)·O        Moonlight's scale (adjust_lr_fn="match_rms_adamw")

  Defaults (the class's): ``lr 1e-3, weight_decay 0.1, momentum 0.95, ns_steps 5, gamma 0.025``,
  EMA momentum without Nesterov. The code's ``clip_c=False`` argument is never read (it always
  clips); here ``clip_c`` works and defaults to True, what the code does. With γ = 0 and no clip,
  MARS-M is Muon with EMA momentum, no Nesterov and Moonlight's scale (tested bitwise), and the
  unclipped approximate momentum equals the memory-light ``MARS_M_Efficient`` form
  ``buf ← μ buf + (1−γ)(1−μ)/μ·g, m = γg + μ buf`` (tested).

``mars_adamw`` (MARS, ``MARS/optimizers/mars.py``): the class's three ``mars_type``\\ s::

    adamw:    v ← β₂v + (1−β₂) c⊙c             (the second moment of c, not of g)
              W ← (1 − ηλ)W − η·m / ((√v/√(1−β₂ᵗ) + ε)·(1−β₁ᵗ))
    lion:     W ← (1 − ηλ)W − η·sign(m)
    shampoo:  W ← (1 − ηλ)W − η·√max(1, m/n)·NS5(m/(1−β₁))    (ε is NS5's normaliser floor)

  Defaults (the class's): ``lr 3e-3, betas (0.95, 0.99), eps 1e-8, weight_decay 0, gamma 0.025,
  amsgrad False``. It is a separate rule from MARS-M in the authors' code (another class, other
  hyperparameters and defaults), hence a second registered name. ``denominator="pytorch_optimizer"``
  gives kozistr's pytorch_optimizer 4.1.0 ``MARS`` form ``(√(v + 1e-15) + ε)/√(1−β₂ᵗ)·(1−β₁ᵗ)``,
  which is the one difference between the two for ``mars_type="adamw"`` (tested to float64
  rounding); with γ = 0 and no clip it is AdamW (tested).

Not reproduced (routing): the code's 1-D path (``optimize_1d=False``: an inner AdamW with
``betas_1d (0.9, 0.95)``, ``lr_1d`` and ``weight_decay_1d 0.1``) and MARS-M's inner AdamW for
embeddings and heads: :func:`muonlab.create_optimizer` sends those parameters to AdamW (pass
``adamw={"weight_decay": 0.1}`` for the code's 1-D decay). The MARS trainer also sends the 2-D
embedding and head through MARS; route them with ``overrides`` if wanted. The decoupled decay
``(1 − ηλ)W − ηU`` equals the code's ``W − η(λW + U)`` (both use the pre-update W).

Sources: Yuan, Liu, Wu, Zhou, Gu, "MARS: Unleashing the Power of Variance Reduction for Training
Large Models", arXiv 2411.10438; Liu, Yuan, Gu, "MARS-M", arXiv 2510.21800; github AGI-Arena/MARS
``MARS/optimizers/mars.py``, ``MARS_M/optimizers/mars_m.py``, ``mars_m_efficient.py`` @ 4831e28
[EXACT; the exact-mode driver RECON].
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ..matfn import matrix_shape
from ..registry import OptimizerSpec, get_rule, register
from . import hyper as H
from .muon import MuonRule
from .rule import MATRIX_HYPERS, ORTHO_HYPERS, MatrixRule, scalar
from .state import PARAM, Slot
from .steps import SHAPE_SCALES, apply_updates, momentum_, shape_scale

MARS_TYPES = ("adamw", "lion", "shampoo")
DENOMINATORS = ("mars", "pytorch_optimizer")
#: pytorch_optimizer adds this under the square root of v (``apply_ams_bound``'s ``exp_avg_sq_eps``).
PYTORCH_OPTIMIZER_V_EPS = 1e-15

GAMMA = H.Hyper(0.025, "γ: strength of the gradient correction (0 = no correction)", low=0.0)
CLIP_C = H.Hyper(True, "clip the corrected gradient c to Frobenius norm ≤ 1 (the code always does)", kind="bool")
IS_APPROX = H.Hyper(True, "approximate MARS (g̃ = previous gradient); False: exact, g̃ given by "
                    "store_reference_grads", kind="bool")


def mars_correction(grad: Tensor, last_grad: Tensor, beta: float, gamma: float, clip: bool) -> Tensor:
    """``c = g + γβ/(1−β)(g − g̃)``, divided by ``max(‖c‖_F, 1)`` when ``clip`` (a new tensor).

    ``max(‖c‖, 1)`` is the code's ``if ‖c‖ > 1: c /= ‖c‖`` without a host synchronisation (and
    c/1 = c exactly); the norm is over the whole tensor, as in the code.
    """
    c = (grad - last_grad).mul_(gamma * (beta / (1.0 - beta))).add_(grad)
    if clip:
        c = c / torch.linalg.vector_norm(c).clamp_min(1.0)
    return c


def _correct(grad: Tensor, state: dict, beta: float, group: dict) -> Tensor:
    c = mars_correction(grad, state["last_grad"], beta, group["gamma"], group["clip_c"])
    if group["is_approx"]:
        state["last_grad"].copy_(grad)  # the raw gradient, not c
    return c


class MarsMRule(MuonRule):
    """MARS-M: Muon on the MARS-corrected EMA momentum (see the module docstring)."""

    name = "mars_m"
    hypers: ClassVar[dict[str, H.Hyper]] = {
        **MuonRule.hypers,
        "lr": H.Hyper(1e-3, "learning rate η (MARS_M class default)", low=0.0),
        "weight_decay": H.Hyper(0.1, "decoupled weight decay λ (MARS_M class default)", low=0.0),
        "nesterov": H.Hyper(False, "Nesterov look-ahead (MARS-M: plain EMA momentum)", kind="bool"),
        "adjust_lr_fn": H.Hyper("match_rms_adamw", "shape scaling (MARS-M: Moonlight's 0.2·√max(m,n))",
                                kind="choice", choices=(None,) + SHAPE_SCALES),
        "gamma": GAMMA,
        "clip_c": CLIP_C,
        "is_approx": IS_APPROX,
    }
    state_spec: ClassVar[dict[str, Slot]] = {"momentum_buffer": PARAM, "last_grad": PARAM}

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        return {**super().init_state(p, group), "last_grad": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        c = _correct(grad, state, group["momentum"], group)
        return momentum_(state["momentum_buffer"], c, group["momentum"], nesterov=group["nesterov"],
                         form=group["momentum_form"])


class MarsAdamWRule(MatrixRule):
    """MARS (``mars_type`` adamw / lion / shampoo) on matrices (see the module docstring)."""

    name = "mars_adamw"
    hypers: ClassVar[dict[str, H.Hyper]] = {
        **MATRIX_HYPERS,
        **ORTHO_HYPERS,
        "lr": H.Hyper(3e-3, "learning rate η (MARS class default)", low=0.0),
        "weight_decay": H.Hyper(0.0, "decoupled weight decay λ (MARS class default)", low=0.0),
        "betas": H.Hyper((0.95, 0.99), "(β₁, β₂): momentum of c and second moment of c", kind="pair",
                         low=0.0, high=1.0, high_open=True),
        "eps": H.Hyper(1e-8, "Adam ε; for mars_type='shampoo' the NS normaliser floor (as the code)", low=0.0),
        "amsgrad": H.Hyper(False, "keep the running maximum of v (AMSGrad)", kind="bool"),
        "mars_type": H.Hyper("adamw", "update on the corrected momentum: adamw, lion (sign) or shampoo (NS5)",
                             kind="choice", choices=MARS_TYPES),
        "denominator": H.Hyper("mars", "mars: (√v/√(1−β₂ᵗ) + ε)(1−β₁ᵗ) (the code, torch AdamW); "
                               "pytorch_optimizer: (√(v+1e-15) + ε)/√(1−β₂ᵗ)·(1−β₁ᵗ)",
                               kind="choice", choices=DENOMINATORS),
        "gamma": GAMMA,
        "clip_c": CLIP_C,
        "is_approx": IS_APPROX,
    }
    state_spec: ClassVar[dict[str, Slot]] = {
        "exp_avg": PARAM,
        "exp_avg_sq": Slot("param", doc="mars_type='adamw' only"),
        "max_exp_avg_sq": Slot("param", doc="amsgrad only"),
        "last_grad": PARAM,
    }

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        z = lambda: torch.zeros_like(p, memory_format=torch.preserve_format)
        st = {"exp_avg": z(), "last_grad": z()}
        if group["mars_type"] == "adamw":
            st["exp_avg_sq"] = z()
            if group["amsgrad"]:
                st["max_exp_avg_sq"] = z()
        return st

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        beta1, beta2 = (scalar(b) for b in group["betas"])
        c = _correct(grad, state, beta1, group)
        m = state["exp_avg"].mul_(beta1).add_(c, alpha=1.0 - beta1)
        kind = group["mars_type"]
        if kind == "lion":
            return m.sign()
        if kind == "shampoo":
            return m.mul(1.0 / (1.0 - beta1))
        for key in ("exp_avg_sq",) + (("max_exp_avg_sq",) if group["amsgrad"] else ()):
            if key not in state:  # a state made under another mars_type / amsgrad
                state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
        v = state["exp_avg_sq"].mul_(beta2).addcmul_(c, c, value=1.0 - beta2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        t = state["step"].item()
        bc1, bc2 = 1.0 - beta1**t, 1.0 - beta2**t
        if group["denominator"] == "mars":
            denom = v.sqrt().mul(1.0 / bc2**0.5).add(group["eps"]).mul(bc1)
        else:
            denom = v.add(PYTORCH_OPTIMIZER_V_EPS).sqrt().add(group["eps"]).div(bc2**0.5).mul(bc1)
        return m.div(denom)

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        m, n = matrix_shape(tuple(p.shape), group.get("matrix_view"))
        return O, scalar(group["lr"]) * shape_scale(m, n, group["adjust_lr_fn"])

    def step(self, params, grads, states, group, executor) -> None:
        if group["mars_type"] == "shampoo":  # the only type with a full-matrix phase
            return super().step(params, grads, states, group, executor)
        lr = scalar(group["lr"])
        updates = [self.pre(p, g, st, group) for p, g, st in zip(params, grads, states)]
        apply_updates(params, updates, [lr] * len(params), lr=lr, weight_decay=group["weight_decay"],
                      mode=group["weight_decay_mode"])


@torch.no_grad()
def store_reference_grads(optimizer) -> int:
    """Exact MARS: take each parameter's current ``.grad`` as g̃ = ∇f(x_{t−1}; ξ_t) of the next step.

    For the groups of ``optimizer`` (a :class:`muonlab.HybridOptimizer`) whose rule is a MARS rule
    with ``is_approx=False``: copies ``p.grad`` (negated under ``maximize``, plus λ·p under coupled
    weight decay, as the step treats g) into ``state["last_grad"]``, creating the state if the
    parameter has not stepped yet. Call it after the backward pass at the previous iterate x_{t−1}
    on the current batch, then restore x_t, recompute the gradient and call ``step()``. Returns the
    number of parameters updated.
    """
    count = 0
    for group in optimizer.param_groups:
        rule = get_rule(group["algorithm"])
        if not isinstance(rule, (MarsMRule, MarsAdamWRule)) or group["is_approx"]:
            continue
        for p in group["params"]:
            if p.grad is None:
                continue
            state = optimizer.state[p]
            if not state:
                state["step"] = torch.tensor(0.0)
                state.update(optimizer._init_state(rule, p, group))
            g = -p.grad if group.get("maximize", False) else p.grad
            if group["weight_decay_mode"] == "coupled" and group["weight_decay"] != 0:
                g = g.add(p, alpha=group["weight_decay"])
            state["last_grad"].copy_(g)
            count += 1
    return count


register(
    OptimizerSpec(
        name="mars_m",
        configs={"no_clip": {"clip_c": False}, "exact": {"is_approx": False}},
        rule=MarsMRule(),
        summary="MARS-M: c = g + γβ/(1−β)(g − g_prev), clipped to ‖c‖ ≤ 1; M ← βM + (1−β)c; "
        "W ← (1−ηλ)W − η·0.2√max(m,n)·NS5(M)",
        recommended={"lr": 6e-3, "weight_decay": 0.01},  # MARS_M/config GPT-2 small
        source="Liu, Yuan, Gu, MARS-M, arXiv 2510.21800; github AGI-Arena/MARS MARS_M/optimizers/mars_m.py @ 4831e28",
        certainty="EXACT",
        state="2× (momentum_buffer, last_grad)",
        search_space={"lr": (1e-3, 3e-2)},
    )
)

register(
    OptimizerSpec(
        name="mars_adamw",
        configs={"lion": {"mars_type": "lion", "lr": 3e-4}, "shampoo": {"mars_type": "shampoo", "lr": 0.02},
                 "amsgrad": {"amsgrad": True}, "pytorch_optimizer": {"denominator": "pytorch_optimizer"}},
        rule=MarsAdamWRule(),
        summary="MARS: c = g + γβ₁/(1−β₁)(g − g_prev), clipped to ‖c‖ ≤ 1; AdamW on c (v of c⊙c); "
        "mars_type lion (sign m) or shampoo (NS5(m)·√max(1,m/n))",
        recommended={"lr": 6e-3, "weight_decay": 0.01},  # config/train_gpt2_small_mars.py
        source="Yuan et al., MARS, arXiv 2411.10438; github AGI-Arena/MARS MARS/optimizers/mars.py @ 4831e28",
        certainty="EXACT",
        state="3× (exp_avg, exp_avg_sq, last_grad); lion/shampoo 2×",
        search_space={"lr": (1e-4, 1e-2)},
    )
)
