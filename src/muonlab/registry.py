"""The one registry: every optimizer muonlab knows, by name.

It drives :func:`muonlab.create_optimizer`, the contract tests, the benchmarks and the CLI. A rule
module registers itself at import time with :func:`register`; adding an optimizer is one entry.
This module imports nothing from muonlab: :mod:`muonlab.optim` imports every method module (so
the registry is full once ``muonlab`` is imported), and the dependency points one way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .optim.rule import Rule


@dataclass(frozen=True)
class OptimizerSpec:
    """What the registry knows about one method.

    Attributes:
        name: registry key, also the ``algorithm`` value of param groups.
        rule: the update rule instance.
        summary: one-line rule, shown by ``muonlab list`` and in docs.
        recommended: hyperparameters :func:`create_optimizer` uses for the groups this method
            gets (on top of the rule's declared defaults), chosen so a small model trains as is.
        source: where the rule comes from (paper / code).
        certainty: EXACT, EXACT-2, SECONDARY, RECON or GUESS (defined in docs/methods.md).
        state: optimizer memory per parameter, in parameter-sized buffers (e.g. "1× (momentum)").
        search_space: default LR sweep range ``{"lr": (low, high)}`` for the lab.
        invalid: extra invalid hyperparameter examples ``{name: value}`` for the contract tests.
        test_overrides: hyperparameters the contract tests add (e.g. a fixed seed).
        aux: hyperparameters of the AdamW groups (embeddings, head, norms, biases) that
            :func:`create_optimizer` builds next to this method, on top of :data:`AUX_DEFAULTS`.
        configs: named non-default configurations ``{name: {hyperparameter: value}}`` that the
            contract tests run besides the defaults (momentum forms, views, modes, ...).
    """

    name: str
    rule: "Rule"
    summary: str
    recommended: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    certainty: str = "EXACT"
    state: str = ""
    search_space: dict[str, tuple[float, float]] = field(default_factory=dict)
    invalid: dict[str, Any] = field(default_factory=dict)
    test_overrides: dict[str, Any] = field(default_factory=dict)
    aux: dict[str, Any] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def matrix(self) -> bool:
        """True when the method works on matrices (its non-matrix params go to AdamW)."""
        return self.rule.matrix


#: The AdamW side of :func:`muonlab.create_optimizer` (embeddings, output head, norms, biases) next
#: to a matrix method, unless the method's spec says otherwise (``aux``). From the recorded sweep in
#: docs/defaults.md: Muon's AdamW side is flat in validation loss up to 7e-4 on the digits MLP and
#: gets worse above it, while the regression MLP prefers larger; 7e-4 is the largest flat value.
AUX_DEFAULTS: dict[str, Any] = {"lr": 7e-4, "betas": (0.9, 0.95), "weight_decay": 0.0}

_REGISTRY: dict[str, OptimizerSpec] = {}


def register(spec: OptimizerSpec) -> OptimizerSpec:
    """Add ``spec``; a name can be registered once."""
    if spec.name in _REGISTRY:
        raise ValueError(f"optimizer {spec.name!r} is already registered")
    if getattr(spec.rule, "name", None) != spec.name:
        raise ValueError(f"spec {spec.name!r} holds a rule named {spec.rule.name!r}")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> OptimizerSpec:
    """The spec registered under ``name``; ValueError listing the choices otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown optimizer {name!r}; available: {', '.join(sorted(_REGISTRY))}"
        ) from None


def get_rule(name: str) -> "Rule":
    return get_spec(name).rule


def available_optimizers() -> list[str]:
    """Names of all registered optimizers, sorted."""
    return sorted(_REGISTRY)


def all_specs() -> list[OptimizerSpec]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
