"""Declared hyperparameters: defaults, bounds and one uniform error message.

Every rule declares its hyperparameters as :class:`Hyper` objects. The optimizer shell fills param
groups from them and validates every group with them, so a bad value always fails at construction
(or at ``add_param_group``) with a message that names the value, the hyperparameter and the group.
The contract tests derive invalid inputs from the same declarations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

_MISSING = object()


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter of an update rule.

    Attributes:
        default: value used when neither the group nor the optimizer gives one.
        doc: one line, with units.
        low / high: numeric bounds (inclusive unless ``low_open`` / ``high_open``).
        choices: allowed values for categorical options.
        kind: ``"float"``, ``"int"``, ``"bool"``, ``"choice"``, ``"pair"`` (two floats, e.g. betas)
            or ``"any"`` (validated by ``check``).
        check: optional extra validator ``value -> error text or None``.
        optional: ``None`` is accepted (meaning "use the method's default").
        allow_callable: a ``"choice"`` that also accepts any callable (a user-supplied
            orthogonalizer ``X -> polar(X)`` where a method name is expected).
    """

    default: Any
    doc: str = ""
    kind: str = "float"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    check: Callable[[Any], str | None] | None = None
    optional: bool = False
    allow_callable: bool = False

    def describe(self) -> str:
        if self.kind == "choice":
            return f"one of {self.choices}" + (" or a callable" if self.allow_callable else "")
        if self.kind == "bool":
            return "True or False"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high}")
        noun = {"int": "an integer", "pair": "a pair of numbers"}.get(self.kind, "a number")
        return noun + (" " + " and ".join(parts) if parts else "")

    def _in_bounds(self, x: float) -> bool:
        if isinstance(x, float) and math.isnan(x):
            return False
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        if self.high is not None and (x >= self.high if self.high_open else x > self.high):
            return False
        return True

    def error(self, value: Any) -> str | None:
        """The reason ``value`` is invalid, or None when it is valid."""
        if value is None and self.optional:
            return None
        if self.kind == "choice":
            if self.allow_callable and callable(value):
                return None
            return None if value in self.choices else f"expected {self.describe()}"
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"expected {self.describe()}"
        if self.kind == "any":
            return self.check(value) if self.check else None
        if self.kind == "pair":
            try:
                a, b = (x.item() if isinstance(x, torch.Tensor) and x.numel() == 1 else x for x in value)
                ok = all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and self._in_bounds(x)
                    for x in (a, b)
                )
            except (TypeError, ValueError):
                ok = False
            return None if ok else f"expected {self.describe()}"
        if isinstance(value, torch.Tensor) and value.numel() == 1 and self.kind == "float":
            value = value.item()  # tensor lr, as torch.optim accepts
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected {self.describe()}"
        if self.kind == "int" and not isinstance(value, int):
            return f"expected {self.describe()}"
        if not self._in_bounds(value):
            return f"expected {self.describe()}"
        return self.check(value) if self.check else None


def validate(hypers: dict[str, Hyper], group: dict, where: str) -> None:
    """Raise ValueError for the first invalid hyperparameter in ``group``."""
    for name, h in hypers.items():
        value = group.get(name, _MISSING)
        if value is _MISSING:
            continue
        reason = h.error(value)
        if reason:
            raise ValueError(f"{where}: invalid {name}={value!r}; {reason}")


# ---- hyperparameters shared by many rules -------------------------------------------------------

LR = Hyper(1e-3, "learning rate (step size multiplier)", low=0.0)
WEIGHT_DECAY = Hyper(0.0, "weight decay coefficient λ (per unit lr)", low=0.0)
WEIGHT_DECAY_MODE = Hyper(
    "decoupled",
    "decoupled: W ← (1−ηλ)W; coupled: G ← G + λW (L2); cautious: decay only where sign(U)=sign(W)",
    kind="choice",
    choices=("decoupled", "coupled", "cautious"),
)
MOMENTUM = Hyper(0.95, "momentum coefficient β", low=0.0, high=1.0, high_open=True)
NESTEROV = Hyper(True, "use the Nesterov look-ahead as the update input", kind="bool")
MOMENTUM_FORM = Hyper(
    "ema",
    "ema: M ← βM + (1−β)G (torch/Keller); accumulate: M ← βM + G (SGD/Moonlight/Dion)",
    kind="choice",
    choices=("ema", "accumulate"),
)
EPS = Hyper(1e-7, "floor of the Frobenius normaliser before Newton–Schulz", low=0.0)
ADAM_EPS = Hyper(1e-8, "Adam denominator epsilon", low=0.0)
MAXIMIZE = Hyper(False, "maximize the objective (the gradient is negated before any L2 term)", kind="bool")
BETAS = Hyper((0.9, 0.999), "Adam (β₁, β₂)", kind="pair", low=0.0, high=1.0, high_open=True)
