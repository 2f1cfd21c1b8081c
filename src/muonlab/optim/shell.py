"""The optimizer shell: the only ``torch.optim.Optimizer`` subclass muonlab needs.

Each param group names its update rule with an ``algorithm`` key ("muon", "adamw", ...), so one
optimizer (one ``state_dict``, one LR scheduler, one ``step()``) can send hidden matrices to a
spectral method and everything else to AdamW. The shell does the bookkeeping every rule shares:
filling and validating groups, lazy state, step counters, gradient checks, coupled weight decay;
the rule does the math; the executor decides where the full-matrix work runs.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from .. import registry
from . import hyper as H
from .executor import LocalExecutor

# Group keys that are not hyperparameters of any rule.
_GROUP_META = {"params", "param_names", "algorithm", "role", "initial_lr", "name"}


def _param_label(group: dict, i: int, p: Tensor) -> str:
    names = group.get("param_names")
    if names:
        return f"{names[i]!r} (shape {tuple(p.shape)})"
    return f"#{i} (shape {tuple(p.shape)})"


def _default_executor():
    """LocalExecutor; muonlab.distributed's executor when a process group is initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        from ..distributed import auto_executor  # lazy: the only package that uses torch.distributed

        return auto_executor()
    return LocalExecutor()


class HybridOptimizer(torch.optim.Optimizer):
    """One optimizer whose param groups may each use a different registered rule.

    Args:
        params: an iterable of tensors, of ``(name, tensor)`` pairs, or of param-group dicts
            (as for any ``torch.optim`` optimizer). A group may set ``algorithm``.
        algorithm: rule for groups that do not name one (default ``"muon"``); see
            :func:`muonlab.available_optimizers`.
        check_finite: when True, every step checks each gradient and raises
            ``FloatingPointError`` naming the parameter if one is NaN/Inf. Off by default because
            the check forces a device synchronisation.
        executor: where the full-matrix phase runs. Default: :class:`LocalExecutor` (batches
            same-shape matrices), or ``muonlab.distributed.DistributedExecutor`` when a process
            group of several ranks is initialised (create the optimizer after that).
        **defaults: hyperparameters applied to every group whose rule declares them.

    Hyperparameters are filled per group from (1) the group dict, (2) ``**defaults`` (only keys
    the group's rule declares), (3) the rule's declared defaults, then validated: an invalid value
    raises ``ValueError`` naming it, the hyperparameter and the group. Extra unknown keys raise
    too, so typos are never swallowed.

    Example::

        >>> opt = muonlab.HybridOptimizer([
        ...     {"params": hidden, "algorithm": "muon", "lr": 0.02},
        ...     {"params": others, "algorithm": "adamw", "lr": 3e-4, "betas": (0.9, 0.95)},
        ... ])
    """

    def __init__(
        self,
        params: Iterable,
        algorithm: str = "muon",
        *,
        check_finite: bool = False,
        executor: Any = None,
        **defaults: Any,
    ) -> None:
        registry.get_spec(algorithm)  # fail early on an unknown name
        if not isinstance(check_finite, bool):
            raise ValueError(f"invalid check_finite={check_finite!r}; expected True or False")
        self.executor = executor if executor is not None else _default_executor()
        super().__init__(params, dict(defaults, algorithm=algorithm, check_finite=check_finite))
        # An optimizer-wide hyperparameter must mean something to at least one group's rule.
        known = set(registry.get_rule(algorithm).hypers)
        for g in self.param_groups:
            known |= set(registry.get_rule(g["algorithm"]).hypers)
        unknown = set(defaults) - known
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: unknown hyperparameter(s) {sorted(unknown)}; the rules in "
                f"use accept {sorted(known)}"
            )

    # ---- groups -------------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, filling and validating its hyperparameters for its rule."""
        index = len(self.param_groups)
        algorithm = param_group.get("algorithm", self.defaults["algorithm"])
        where = f"{type(self).__name__} param group {index} (algorithm={algorithm!r})"
        if not isinstance(algorithm, str):
            raise ValueError(f"{where}: algorithm must be a registered name, got {algorithm!r}")
        try:
            rule = registry.get_rule(algorithm)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        # torch's own checks (tensor list, leaf tensors, names, disjoint groups), without letting it
        # copy optimizer-wide defaults that this group's rule does not understand.
        defaults, self.defaults = self.defaults, {}
        try:
            super().add_param_group(param_group)
        finally:
            self.defaults = defaults
        try:
            self._fill_and_check(param_group, rule, algorithm, where)
        except Exception:
            self.param_groups.pop()
            raise

    def _fill_and_check(self, group: dict, rule, algorithm: str, where: str) -> None:
        group["algorithm"] = algorithm
        unknown = set(group) - set(rule.hypers) - _GROUP_META
        if unknown:
            raise ValueError(
                f"{where}: unknown hyperparameter(s) {sorted(unknown)}; {algorithm!r} accepts "
                f"{sorted(rule.hypers)}"
            )
        for name, h in rule.hypers.items():
            if name not in group:
                group[name] = self.defaults.get(name, h.default)
        if isinstance(group.get("compute_dtype"), torch.dtype):
            group["compute_dtype"] = str(group["compute_dtype"]).removeprefix("torch.")
        if isinstance(group.get("ns_coefficients"), list):
            group["ns_coefficients"] = tuple(
                tuple(t) if isinstance(t, list) else t for t in group["ns_coefficients"]
            )
        H.validate(rule.hypers, group, where)
        for i, p in enumerate(group["params"]):
            rule.check_param(p, group, f"{where}: parameter {_param_label(group, i, p)}")

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if not hasattr(self, "executor"):
            self.executor = LocalExecutor()

    # ---- step ---------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """Perform one optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with self.executor.step_context():
            for index, group in enumerate(self.param_groups):
                rule = registry.get_rule(group["algorithm"])
                params, grads, states = self._collect(index, group, rule)
                if params:
                    rule.step(params, grads, states, group, self.executor)
        return loss

    def _collect(self, index: int, group: dict, rule) -> tuple[list, list, list]:
        """Parameters with gradients, their (possibly weight-decayed) gradients and states."""
        params, grads, states = [], [], []
        check = self.defaults.get("check_finite", False)
        coupled = group.get("weight_decay_mode") == "coupled" and group.get("weight_decay", 0) != 0
        for i, p in enumerate(group["params"]):
            g = p.grad
            if g is None:
                continue
            if g.is_sparse:
                raise RuntimeError(
                    f"{self._where(index, group)}: parameter {_param_label(group, i, p)} has a "
                    "sparse gradient; muonlab optimizers need dense gradients (use "
                    "torch.optim.SparseAdam for sparse embeddings)"
                )
            if p.is_complex() or g.is_complex():
                raise RuntimeError(
                    f"{self._where(index, group)}: parameter {_param_label(group, i, p)} is "
                    "complex; muonlab optimizers support real parameters only"
                )
            if check and not bool(torch.isfinite(g).all()):
                raise FloatingPointError(
                    f"{self._where(index, group)}: non-finite gradient (NaN or Inf) in parameter "
                    f"{_param_label(group, i, p)}"
                )
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0)
                state.update(rule.init_state(p, group))
            state["step"] += 1
            if coupled:
                g = g.add(p, alpha=group["weight_decay"])  # L2: a new tensor, p.grad untouched
            params.append(p)
            grads.append(g)
            states.append(state)
        return params, grads, states

    def _where(self, index: int, group: dict) -> str:
        return f"{type(self).__name__} param group {index} (algorithm={group['algorithm']!r})"
