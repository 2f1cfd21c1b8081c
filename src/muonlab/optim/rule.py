"""Update rules: the math of one algorithm, with no optimizer bookkeeping.

A rule is a stateless object (its hyperparameters live in the param group, its tensors in the
optimizer state), so one instance serves every group and every optimizer. There are two kinds:

* :class:`ElementwiseRule` (AdamW, SGD): ``update`` works on one parameter at a time;
* :class:`MatrixRule` (Muon and its family) splits a step into three phases so that batching and
  distributed execution stay out of the algorithm files::

      pre     per parameter, element-wise (momentum): may run on a parameter shard
      matrix  on the full ``(m, n)`` matrix, batched as ``(B, m, n)``: the executor decides where
      post    per parameter: scaling; returns the direction and its step size

  The optimizer shell then calls :func:`~muonlab.optim.steps.apply_update`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..matfn import METHODS, VIEWS, matrix_shape, orthogonalize, to_matrix
from ..matfn.coefficients import as_table
from ..matfn.views import check_view
from . import hyper as H
from .state import Slot
from .steps import SHAPE_SCALES, apply_updates, shape_scale

COMPUTE_DTYPES = ("bfloat16", "float16", "float32", "float64")


def _check_coefficients(value: Any) -> str | None:
    if value is None:
        return None
    try:
        as_table(value)
    except (ValueError, TypeError) as e:
        return str(e)
    return None


# Storage precision of a rule's parameter-shaped state (momentum, Adam moments) between steps; the
# shell (de)quantizes around the rule's step (muonlab.optim.state, muonlab.optim.quant). Any rule that
# declares these gets it; every matrix rule does through MATRIX_HYPERS.
STATE_HYPERS: dict[str, H.Hyper] = {
    "state_precision": H.Hyper(
        None,
        "storage of parameter-shaped state between steps: None/'float32' = the rule's own tensors; "
        "'int8' = 1 byte + 4/block per element (8-bit Muon, arXiv 2509.23106); 'int4' = ½ byte + 4/block (RECON)",
        kind="choice", choices=(None, "float32", "int8", "int4"),
    ),
    "state_quant_map": H.Hyper(
        None, "code map of quantized state: linear (absmax, round(L·x/s)) or dynamic (bitsandbytes' "
        "dynamic-tree code book); None = linear for int8 (the 8-bit Muon paper), dynamic for int4 (Li et al.)",
        kind="choice", choices=(None, "linear", "dynamic"),
    ),
    "state_block_size": H.Hyper(
        None, "elements per absmax scale of quantized state; None = 2048 for int8, 128 for int4",
        kind="int", low=1, optional=True,
    ),
}

# Hyperparameters shared by every matrix rule.
MATRIX_HYPERS: dict[str, H.Hyper] = {
    "lr": H.LR,
    "weight_decay": H.WEIGHT_DECAY,
    "weight_decay_mode": H.WEIGHT_DECAY_MODE,
    "matrix_view": H.Hyper(None, "how a >2-D parameter is seen as a matrix", kind="choice", choices=VIEWS),
    **STATE_HYPERS,
}

# Hyperparameters of rules that orthogonalize with :func:`muonlab.orthogonalize`.
ORTHO_HYPERS: dict[str, H.Hyper] = {
    "orthogonalizer": H.Hyper(
        "newton_schulz",
        "orthogonalization method: a name, or any callable X -> polar(X) (one (m, n) matrix at a time, "
        "or the (B, m, n) stack if it has the attribute batched=True)",
        kind="choice", choices=METHODS, allow_callable=True,
    ),
    "ns_coefficients": H.Hyper(
        None,
        "Newton–Schulz table name, (a, b, c) triple or per-step list; None = the method's own",
        kind="any",
        check=_check_coefficients,
    ),
    "ns_steps": H.Hyper(
        None, "Newton–Schulz steps; None = the method's own (5)", kind="int", low=0, high=100,
        high_open=True, optional=True,
    ),
    "eps": H.EPS,
    "ns_gram": H.Hyper(
        None, "iterate on the Gram matrix (same polynomial, fewer FLOPs); None = when it pays (c ≥ 2r, batch·r²·c ≥ 2^25); False = torch's exact operations",
        kind="bool", optional=True,
    ),
    "ns_compile": H.Hyper(False, "run the Newton–Schulz loop through torch.compile", kind="bool"),
    "compute_dtype": H.Hyper(
        "bfloat16", "dtype of the iteration; None = the update's dtype", kind="choice",
        choices=COMPUTE_DTYPES + (None,),
    ),
    "adjust_lr_fn": H.Hyper(
        None, "shape scaling of the update; None = 'original'", kind="choice",
        choices=(None,) + SHAPE_SCALES,
    ),
}


def scalar(x) -> float:
    """A hyperparameter as a Python number (torch.optim accepts 1-element tensor lrs)."""
    return x.item() if isinstance(x, Tensor) else x


def compute_dtype(group: dict) -> torch.dtype | None:
    name = group.get("compute_dtype")
    return getattr(torch, name) if name else None


def orthogonalize_group(X: Tensor, group: dict) -> Tensor:
    """Orthogonalize ``X`` with the group's orthogonalizer settings."""
    return orthogonalize(
        X,
        group["orthogonalizer"],
        steps=group["ns_steps"],
        coefficients=group["ns_coefficients"],
        eps=group["eps"],
        compute_dtype=compute_dtype(group),
        gram=group.get("ns_gram"),
        compile=group.get("ns_compile", False),
    )


class Rule:
    """Base class. Subclasses set ``name``, ``hypers`` and implement the math."""

    name: ClassVar[str]
    hypers: ClassVar[dict[str, H.Hyper]]
    #: True for rules that need (views of) matrices.
    matrix: ClassVar[bool] = False
    #: Whether a ``momentum`` hyperparameter is a β (torch's convention), so momentum-cycling
    #: schedulers (OneCycleLR, CyclicLR) may write β values into it.
    momentum_is_beta: ClassVar[bool] = True
    #: Every state entry :meth:`init_state` (or a later phase) creates, besides the shell's
    #: ``step``: ``{key: Slot(kind, matrix_phase)}`` (see :mod:`muonlab.optim.state`).
    state_spec: ClassVar[dict[str, Slot]] = {}

    def check_param(self, p: Tensor, group: dict, where: str) -> None:
        """Raise ValueError if ``p`` cannot be optimized by this rule under ``group``."""

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        return {}

    def step(self, params, grads, states, group, executor) -> None:  # pragma: no cover
        raise NotImplementedError


class ElementwiseRule(Rule):
    """A rule that updates each parameter independently (AdamW, SGD)."""

    def update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        """Compute the direction and call ``apply_update`` for one parameter."""
        raise NotImplementedError

    def step(self, params, grads, states, group, executor) -> None:
        for p, g, st in zip(params, grads, states):
            self.update(p, g, st, group)


class MatrixRule(Rule):
    """A rule built from the pre → matrix → post phases (see module docstring)."""

    matrix = True
    hypers = {**MATRIX_HYPERS, **ORTHO_HYPERS}
    #: Whether ``matrix_fn`` may receive several same-shape matrices stacked as ``(B, m, n)``.
    batchable: ClassVar[bool] = True

    def check_param(self, p: Tensor, group: dict, where: str) -> None:
        check_view(tuple(p.shape), group.get("matrix_view"), where)

    def pre(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> Tensor:
        """Element-wise part (momentum). Returns a tensor of ``p``'s shape; must not modify grad."""
        return grad

    def pre_many(self, params: list[Tensor], grads: list[Tensor], states: list[dict], group: dict) -> list[Tensor]:
        """:meth:`pre` for all parameters of a group (rules may override with foreach calls that
        give the same results)."""
        return [self.pre(p, g, st, group) for p, g, st in zip(params, grads, states)]

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        """Full-matrix part on ``X`` of shape ``(B, m, n)`` (``states`` aligned with the batch)."""
        return orthogonalize_group(X, group)

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        """Return ``(direction, step_size)``; default: the shape-scaled lr."""
        m, n = matrix_shape(tuple(p.shape), group.get("matrix_view"))
        return O, scalar(group["lr"]) * shape_scale(m, n, group.get("adjust_lr_fn"))

    def step(self, params, grads, states, group, executor) -> None:
        view = group.get("matrix_view")
        Xs = [to_matrix(X, view) for X in self.pre_many(params, grads, states, group)]
        directions = executor.update_phase(self, params, Xs, states, group)
        apply_updates(
            params,
            [U for U, _ in directions],
            [step_size for _, step_size in directions],
            lr=scalar(group["lr"]),
            weight_decay=group["weight_decay"],
            mode=group["weight_decay_mode"],
        )


def preset(rule_cls: type[Rule], name: str, doc: str, **defaults: Any) -> Rule:
    """A rule that is ``rule_cls`` with other declared defaults, registered under ``name``.

    Presets (e.g. Moonlight's Muon settings) stay one line and share all of the rule's code.
    """
    unknown = set(defaults) - set(rule_cls.hypers)
    if unknown:
        raise ValueError(f"preset {name!r}: {sorted(unknown)} are not hyperparameters of {rule_cls.name!r}")
    hypers = {k: (replace(h, default=defaults[k]) if k in defaults else h) for k, h in rule_cls.hypers.items()}
    cls = type(f"{rule_cls.__name__}_{name}", (rule_cls,), {"name": name, "hypers": hypers, "__doc__": doc})
    return cls()
