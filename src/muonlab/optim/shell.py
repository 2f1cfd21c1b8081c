"""The optimizer shell: the only ``torch.optim.Optimizer`` subclass muonlab needs.

Each param group names its update rule with an ``algorithm`` key ("muon", "adamw", ...), so one
optimizer (one ``state_dict``, one LR scheduler, one ``step()``) can send hidden matrices to a
spectral method and everything else to AdamW. The shell does the bookkeeping every rule shares:
filling and validating groups, lazy state, step counters, gradient checks, coupled weight decay,
parameter orientation and checkpoint compatibility; the rule does the math; the executor decides
where the full-matrix work runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from .. import registry
from . import hyper as H
from . import quant
from .executor import is_sharded, select_executor
from .state import (
    check_declared,
    complete_loaded_state,
    dequantize_states_,
    param_keys,
    quant_format,
    quantize_states_,
)

# Group keys that are not hyperparameters of any rule.
_GROUP_META = {"params", "param_names", "algorithm", "role", "initial_lr", "name"}
# Optimizer-wide settings kept in ``defaults`` that are not hyperparameters.
_WIDE_META = {"algorithm", "check_finite", "group_defaults"}


class _PerGroup:
    """``defaults["momentum"]`` of a mixed optimizer: each group keeps its own momentum.

    torch's momentum-cycling schedulers (OneCycleLR, CyclicLR with ``cycle_momentum=True``) look
    for ``momentum`` or ``betas`` in ``optimizer.defaults`` and then write that key into every
    group. A mixed optimizer advertises ``momentum``; groups whose rule has Adam's ``betas``
    instead read a written ``momentum`` as β₁ (see :meth:`HybridOptimizer.step`).
    """

    def __repr__(self) -> str:
        return "<per group>"

    def __reduce__(self):
        return "PER_GROUP"


PER_GROUP = _PerGroup()


_CALLABLE = "callable:"


def _callable_tag(fn) -> str:
    """How a callable hyperparameter is written in a state_dict."""
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{_CALLABLE}{getattr(fn, '__module__', None) or '?'}.{name}"


def _param_label(group: dict, i: int, p: Tensor) -> str:
    names = group.get("param_names")
    if names:
        return f"{names[i]!r} (shape {tuple(p.shape)})"
    return f"#{i} (shape {tuple(p.shape)})"


def _transposed(group: dict) -> bool:
    return group.get("matrix_view") == "transpose"


def _oriented(group: dict) -> tuple[dict, dict[int, Tensor] | None]:
    """The group as the rule sees it, and ``{id(param): the view the rule gets}``.

    A ``matrix_view="transpose"`` group is handed over as plain 2-D matrices ``Wᵀ`` (views: every
    in-place write reaches the parameter); its ``params`` list holds the same view objects, so
    rules that find a parameter in its group (seeded draws) see one consistent list.
    """
    if not _transposed(group):
        return group, None
    views = [p.mT for p in group["params"]]
    view_of = {id(p): v for p, v in zip(group["params"], views)}
    return {**group, "matrix_view": None, "params": views}, view_of


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
        executor: where the full-matrix phase runs. Default: :class:`LocalExecutor` (this process,
            batching same-shape matrices), also after ``init_process_group``; DTensor (FSDP2)
            parameters get ``muonlab.DistributedExecutor``. Pass ``muonlab.DistributedExecutor()``
            to share the work of DDP replicas (``create_optimizer`` does when given a DDP model).
        group_defaults: ``{algorithm: {hyperparameter: value}}`` for groups of that algorithm that
            do not set a value, also groups added later with ``add_param_group``
            (:func:`muonlab.create_optimizer` records the settings it used here).
        **defaults: hyperparameters applied to every group whose rule declares them.

    Hyperparameters are filled per group from (1) the group dict, (2) ``group_defaults`` of its
    algorithm, (3) ``**defaults`` (only keys the group's rule declares), (4) the rule's declared
    defaults, then validated: an invalid value raises ``ValueError`` naming it, the
    hyperparameter and the group. Extra unknown keys raise too, so typos are never swallowed.

    Quantized state: a group with ``state_precision="int8"`` (or ``"int4"``) keeps its rule's
    parameter-shaped state (momentum, Adam moments) block-wise quantized between steps (see
    :mod:`muonlab.optim.quant`); the rule runs unchanged on the dequantized tensors.

    Checkpoints: ``load_state_dict`` accepts torch.optim checkpoints (a ``torch.optim.Muon`` or
    ``AdamW`` state_dict loads into the matching groups: hyperparameters the checkpoint lacks keep
    this optimizer's values, state it lacks is created as at the first step) and older muonlab
    ones (a Python-number ``step``, hyperparameters added since).

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
        group_defaults: dict[str, dict[str, Any]] | None = None,
        **defaults: Any,
    ) -> None:
        registry.get_spec(algorithm)  # fail early on an unknown name
        if not isinstance(check_finite, bool):
            raise ValueError(f"invalid check_finite={check_finite!r}; expected True or False")  # noqa: TRY004
        group_defaults = {k: dict(v) for k, v in (group_defaults or {}).items()}
        for alg in group_defaults:
            try:
                registry.get_spec(alg)
            except ValueError as e:
                raise ValueError(f"group_defaults: {e}") from None
        super().__init__(params, dict(defaults, algorithm=algorithm, check_finite=check_finite,
                                      group_defaults=group_defaults))
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
        rules = [registry.get_rule(g["algorithm"]) for g in self.param_groups]
        if ("momentum" not in self.defaults and "betas" not in self.defaults
                and all(getattr(r, "momentum_is_beta", True) for r in rules if "momentum" in r.hypers)):
            # Lets momentum-cycling schedulers in; not when a rule's `momentum` means something
            # else (Scion's α = 1 − β), which a scheduler writing β values would silently break.
            self.defaults["momentum"] = PER_GROUP
        self.executor = select_executor([p for g in self.param_groups for p in g["params"]], executor)

    def __repr__(self) -> str:
        return super().__repr__().rstrip(")").rstrip() + f"\nexecutor: {self.executor!r}\n)"

    # ---- groups -------------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, filling and validating its hyperparameters for its rule.

        Values the group does not set come from ``group_defaults`` of its algorithm (so a group
        added after :func:`muonlab.create_optimizer` gets the settings create_optimizer gave its
        algorithm), the optimizer-wide kwargs, then the rule's defaults. Parameter names are
        optional even when the other groups carry them.
        """
        index = len(self.param_groups)
        algorithm = param_group.get("algorithm", self.defaults["algorithm"])
        where = f"{type(self).__name__} param group {index} (algorithm={algorithm!r})"
        if not isinstance(algorithm, str):
            raise ValueError(f"{where}: algorithm must be a registered name, got {algorithm!r}")  # noqa: TRY004
        try:
            rule = registry.get_rule(algorithm)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        renamed = self._align_names(param_group, index)
        # torch's own checks (tensor list, leaf tensors, names, disjoint groups), without letting it
        # copy optimizer-wide defaults that this group's rule does not understand.
        defaults, self.defaults = self.defaults, {}
        added = False
        try:
            try:
                super().add_param_group(param_group)
                added = True
            finally:
                self.defaults = defaults
            self._fill_and_check(param_group, rule, algorithm, where)
        except Exception:
            if added:
                self.param_groups.pop()
            for g in renamed:  # a rejected group leaves the others as they were
                g.pop("param_names", None)
            raise

    def _align_names(self, group: dict, index: int) -> list[dict]:
        """torch requires all groups or none to carry ``param_names``: name the side that lacks them.
        Returns the existing groups that were named (to undo if the new group is rejected)."""
        params = group.get("params")
        if isinstance(params, Tensor):
            group["params"] = params = [params]
        elif params is not None and not isinstance(params, (list, set)):
            group["params"] = params = list(params)
        if not self.param_groups or params is None or isinstance(params, set):
            return []
        named_new = "param_names" in group or any(isinstance(p, tuple) for p in params)
        named_old = "param_names" in self.param_groups[0]
        if named_old and not named_new:
            group["param_names"] = [f"param_groups[{index}].params[{i}]" for i in range(len(params))]
        elif named_new and not named_old:
            for gi, g in enumerate(self.param_groups):
                g["param_names"] = [f"param_groups[{gi}].params[{i}]" for i in range(len(g["params"]))]
            return list(self.param_groups)
        return []

    def _default_for(self, algorithm: str, name: str, h: H.Hyper) -> Any:
        per_alg = self.defaults.get("group_defaults", {}).get(algorithm, {})
        if name in per_alg:
            return per_alg[name]
        value = self.defaults.get(name, h.default)
        return h.default if value is PER_GROUP or name in _WIDE_META else value

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
                group[name] = self._default_for(algorithm, name, h)
        if hasattr(rule, "normalize_group"):
            rule.normalize_group(group)
        if isinstance(group.get("compute_dtype"), torch.dtype):
            group["compute_dtype"] = str(group["compute_dtype"]).removeprefix("torch.")
        if isinstance(group.get("ns_coefficients"), list):
            group["ns_coefficients"] = tuple(
                tuple(t) if isinstance(t, list) else t for t in group["ns_coefficients"]
            )
        H.validate(rule.hypers, group, where)
        if hasattr(rule, "check_group"):
            rule.check_group(group, where)
        for i, p in enumerate(group["params"]):
            rule.check_param(p, group, f"{where}: parameter {_param_label(group, i, p)}")
            if quant_format(group) is not None and is_sharded(p):
                # Block scales straddle FSDP2 shard boundaries; not implemented (yet).
                raise ValueError(
                    f"{where}: state_precision={group['state_precision']!r} is not supported for the "
                    f"DTensor (FSDP2) parameter {_param_label(group, i, p)}; use state_precision=None, "
                    "or DDP / one process"
                )

    def state_tensor(self, p: Tensor, key: str) -> Tensor | None:
        """The state entry ``key`` of ``p`` as a tensor of ``p``'s shape and dtype, dequantized when
        it is stored quantized (``state_precision``); None when ``p`` has no such entry. For readers
        such as :class:`muonlab.diagnostics.SpectralProbe`; the optimizer's state is not changed."""
        entry = self.state.get(p, {}).get(key)
        if isinstance(entry, dict) and quant.is_quantized(entry):
            return quant.dequantize(entry, p.shape, p.dtype)
        return entry if isinstance(entry, Tensor) else None

    # ---- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """torch's ``state_dict``; a callable hyperparameter (a user-supplied ``orthogonalizer``) is
        saved as its name ``"callable:module.qualname"``, not pickled, so the checkpoint still loads
        with ``torch.load(weights_only=True)``; :meth:`load_state_dict` takes the callable back from
        the optimizer it loads into."""
        sd = super().state_dict()
        sd["param_groups"] = [
            {k: (_callable_tag(v) if k != "params" and callable(v) else v) for k, v in g.items()}
            for g in sd["param_groups"]
        ]
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``, also for torch.optim and older muonlab checkpoints.

        Saved groups are matched to this optimizer's groups by position (as in torch); a key a
        saved group lacks (``algorithm`` and muonlab's options in a torch.optim checkpoint, a
        hyperparameter added since) keeps this optimizer's current value. State the checkpoint
        lacks is created as at the first step; a Python-number ``step`` becomes a tensor.
        """
        state_dict = dict(state_dict)
        saved_groups = state_dict.get("param_groups")
        if isinstance(saved_groups, list) and len(saved_groups) == len(self.param_groups):
            filled = []
            for index, (g, sg) in enumerate(zip(self.param_groups, saved_groups)):
                sg = dict(sg)
                for k, v in sg.items():  # callables were saved by name: take this optimizer's
                    if isinstance(v, str) and v.startswith(_CALLABLE):
                        if not (callable(g.get(k)) and _callable_tag(g[k]) == v):
                            raise ValueError(
                                f"{self._where(index, g)}: the checkpoint was saved with {k}={v[len(_CALLABLE):]} "
                                f"(a callable, saved by name); build the optimizer with that callable before "
                                f"load_state_dict (this one has {k}={g.get(k)!r})"
                            )
                        sg[k] = g[k]
                rule = registry.get_rule(sg.get("algorithm", g["algorithm"]))
                for k, v in g.items():  # not scheduler bookkeeping such as a cycled `momentum`
                    if k not in sg and k not in ("params", "param_names") and (k in rule.hypers or k in _GROUP_META):
                        sg[k] = v
                filled.append(sg)
            state_dict["param_groups"] = filled
        super().load_state_dict(state_dict)
        # torch casts every floating state tensor to the parameter's dtype; per-matrix state keeps
        # the dtype it was saved with (e.g. float32 scalars of bf16 parameters).
        ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        owned = [(p, g) for g in self.param_groups for p in g["params"]]
        for pid, (p, group) in zip(ids, owned):
            saved = state_dict["state"].get(pid)
            if saved and p in self.state:
                rule = registry.get_rule(group["algorithm"])
                fresh = lambda r=rule, p=p, g=group: self._init_state(r, p, g)
                complete_loaded_state(rule, self.state[p], fresh, saved)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if not hasattr(self, "executor"):  # unpickled or deep-copied: torch does not keep it
            self.executor = select_executor([p for g in self.param_groups for p in g["params"]])
        self.defaults.setdefault("group_defaults", {})
        for group in self.param_groups:
            algorithm = group.setdefault("algorithm", self.defaults.get("algorithm", "muon"))
            rule = registry.get_rule(algorithm)
            for name, h in rule.hypers.items():  # hyperparameters added since the checkpoint
                if name not in group:
                    group[name] = self._default_for(algorithm, name, h)
            for p in group["params"]:
                st = self.state.get(p)
                if st:
                    complete_loaded_state(rule, st, lambda p=p, g=group, r=rule: self._init_state(r, p, g))

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
                if "momentum" in group and "momentum" not in rule.hypers and "betas" in rule.hypers:
                    # A momentum-cycling scheduler wrote ``momentum``: for Adam-type rules it is β₁.
                    group["betas"] = (group.pop("momentum"), group["betas"][1])
                rgroup, view_of = _oriented(group)
                params, grads, states = self._collect(index, group, rule, rgroup, view_of)
                if params:
                    quantized = "state_precision" in group
                    if quantized:  # the rule sees float state; quantized entries are restored first
                        dequantize_states_(rule, params, states)
                    self._run(rule, params, grads, states, rgroup, view_of)
                    if quantized:
                        quantize_states_(rule, params, states, quant_format(group))
        return loss

    def _run(self, rule, params: list, grads: list, states: list, rgroup: dict, view_of) -> None:
        if view_of is None:
            rule.step(params, grads, states, rgroup, self.executor)
            return
        # (in, out) storage: the rule sees Wᵀ, Gᵀ and transposed views of parameter-shaped state,
        # so its math (shape factors, row/column norms, ranks) is the equivalent nn.Linear's.
        keys = param_keys(rule)
        views = [{k: (v.mT if k in keys and isinstance(v, Tensor) else v) for k, v in st.items()} for st in states]
        originals = [dict(v) for v in views]
        rule.step([view_of[id(p)] for p in params], [g.mT for g in grads], views, rgroup, self.executor)
        for st, view, orig in zip(states, views, originals):
            for k, v in view.items():
                if k in keys and isinstance(v, Tensor):
                    if v is not orig.get(k):  # the rule replaced the entry
                        st[k] = v.mT.contiguous()
                else:
                    st[k] = v

    def _init_state(self, rule, p: Tensor, group: dict, oriented=None) -> dict:
        """The rule's fresh state for ``p``, parameter-shaped entries in ``p``'s layout."""
        rgroup, view_of = oriented if oriented is not None else _oriented(group)
        if view_of is None:
            return rule.init_state(p, group)
        st = rule.init_state(view_of[id(p)], rgroup)
        for k in param_keys(rule):
            if isinstance(st.get(k), Tensor):
                st[k] = st[k].mT.contiguous()
        return st

    def _collect(self, index: int, group: dict, rule, rgroup: dict, view_of) -> tuple[list, list, list]:
        """Parameters with gradients, their (possibly weight-decayed) gradients and states."""
        params, grads, states = [], [], []
        check = self.defaults.get("check_finite", False)
        coupled = group.get("weight_decay_mode") == "coupled" and group.get("weight_decay", 0) != 0
        maximize = group.get("maximize", False)
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
                state.update(self._init_state(rule, p, group, (rgroup, view_of)))
                check_declared(rule, state, f"{self._where(index, group)}: parameter {_param_label(group, i, p)}")
            state["step"] += 1
            if maximize:
                g = -g  # torch's convention: negate first, then add any L2 term
            if coupled:
                g = g.add(p, alpha=group["weight_decay"])  # L2: a new tensor, p.grad untouched
            params.append(p)
            grads.append(g)
            states.append(state)
        return params, grads, states

    def _where(self, index: int, group: dict) -> str:
        return f"{type(self).__name__} param group {index} (algorithm={group['algorithm']!r})"
