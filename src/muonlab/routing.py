"""Routing: one optimizer for a whole model, each parameter sent to the right rule by its role.

Spectral methods are for *hidden* weight matrices. Embeddings, the output head (also when tied to
the embedding), norm gains and biases go to AdamW (Keller Jordan's Muon README; Dion's README warns
that ``p.ndim == 2`` alone is not enough: embeddings and heads are 2-D too). Roles come from
module types, tied weights and a declared or detected output layer, never from ``ndim`` alone:

=============  =================================================================  ============
role           what                                                               default rule
=============  =================================================================  ============
``hidden``     weights of ``nn.Linear``, RNN/LSTM/GRU and attention in-projections  the method
``conv``       conv filters (seen as ``(out, in·∏k)`` matrices)                     the method
``embedding``  ``nn.Embedding``/``EmbeddingBag`` weights, a model's input embedding   AdamW
``output``     the output layer's weight (declared, HF ``get_output_embeddings`` or    AdamW
               the last ``nn.Linear``/conv registered)
``vector``     0-D/1-D parameters: biases, norm gains, scalars                        AdamW
``other``      >= 2-D parameters of any other module (e.g. a raw positional table)  AdamW
=============  =================================================================  ============
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from enum import Enum
from typing import Any, Iterable

import torch
from torch import nn

from . import registry
from .optim.scion import ROLE_NORMS
from .optim.shell import HybridOptimizer

AUX_ALGORITHM = "adamw"


class Role(str, Enum):
    HIDDEN = "hidden"
    CONV = "conv"
    EMBEDDING = "embedding"
    OUTPUT = "output"
    VECTOR = "vector"
    OTHER = "other"


MATRIX_ROLES = (Role.HIDDEN, Role.CONV)

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_RNN = (nn.RNNBase,)
_EMBED = (nn.Embedding, nn.EmbeddingBag)


# Name segments that wrappers insert: torch.compile (``_orig_mod``), DDP/DataParallel (``module``),
# FSDP1 and activation checkpointing. Routing matches patterns against names without them, so a
# pattern or ``output=`` works the same on a wrapped and an unwrapped model.
_WRAPPER_SEGMENTS = ("_orig_mod", "module", "_fsdp_wrapped_module", "_checkpoint_wrapped_module")


def canonical_name(name: str, model: nn.Module | None = None) -> str:
    """``name`` without the segments wrappers add (``_orig_mod.``, DDP's ``module.``, ...).

    With ``model``, only the prefixes its wrapper chain adds are removed (a submodule that happens
    to be called ``module`` keeps its name); without, every wrapper segment is dropped.
    """
    if model is None:
        return ".".join(part for part in name.split(".") if part not in _WRAPPER_SEGMENTS)
    for attr in _wrapper_chain(model):
        if name.startswith(attr + "."):
            name = name[len(attr) + 1:]
    return name.replace("._checkpoint_wrapped_module", "").replace("._fsdp_wrapped_module", "")


def _wrapper_chain(model: nn.Module) -> list[str]:
    """Attribute names from ``model`` down to the user's model (``["module", "_orig_mod"]``, ...)."""
    chain = []
    while True:
        for attr in ("_orig_mod", "module", "_fsdp_wrapped_module"):
            inner = getattr(model, attr, None)
            if isinstance(inner, nn.Module) and _is_wrapper(model, attr):
                chain.append(attr)
                model = inner
                break
        else:
            return chain


def _is_wrapper(model: nn.Module, attr: str) -> bool:
    if attr == "_orig_mod":
        return type(model).__name__ == "OptimizedModule"
    if attr == "module":
        return isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel))
    return type(model).__name__ == "FullyShardedDataParallel"


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside torch.compile / DDP / DataParallel / FSDP1 wrappers."""
    for attr in _wrapper_chain(model):
        model = getattr(model, attr)
    return model


def _named_trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{canonical name: parameter}`` of the trainable parameters, tied weights once."""
    return {canonical_name(n, model): p for n, p in model.named_parameters() if p.requires_grad}


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(name == p or fnmatch.fnmatchcase(name, p) or name.startswith(p + ".") for p in patterns)


def _as_list(x: str | Iterable[str] | None) -> list[str]:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


def _owner_modules(model: nn.Module) -> dict[int, tuple[str, nn.Module, str]]:
    """id(param) -> (module name, module, attribute) for the first module that registers it."""
    owners: dict[int, tuple[str, nn.Module, str]] = {}
    for mname, module in model.named_modules(remove_duplicate=False):
        for attr, p in module.named_parameters(recurse=False):
            owners.setdefault(id(p), (mname, module, attr))
    return owners


def _detect_output(model: nn.Module, trainable: dict[str, torch.Tensor]) -> tuple[set[int], str]:
    """ids of output-layer weights and a note saying how they were found."""
    model = unwrap(model)
    get_out = getattr(model, "get_output_embeddings", None)
    if callable(get_out):
        try:
            head = get_out()
        except (NotImplementedError, AttributeError):
            head = None
        if head is not None and getattr(head, "weight", None) is not None:
            return {id(head.weight)}, "output layer from get_output_embeddings()"
    last = None
    for mname, module in model.named_modules():
        if isinstance(module, (nn.Linear,) + _CONV) and module.weight.requires_grad:
            last = (mname, module)
    if last is None:
        return set(), "no output layer found"
    return {id(last[1].weight)}, f"output layer {last[0]!r} detected as the last Linear/conv module"


def _is_hf_conv1d(module) -> bool:
    # By name, so transformers stays optional; through the MRO, because FSDP2's fully_shard swaps
    # the class for a subclass named "FSDPConv1D".
    return any(c.__name__ == "Conv1D" for c in type(module).__mro__) and not isinstance(module, _CONV)


def matrix_views(model: nn.Module) -> dict[str, str]:
    """``{canonical name: matrix_view}`` for parameters that need a view to be seen as the
    ``(fan_out, fan_in)`` matrix: conv filters ``"flatten"``, Hugging Face ``Conv1D`` weights
    (stored ``(in, out)``) ``"transpose"``."""
    views: dict[str, str] = {}
    owners = _owner_modules(model)
    for name, p in _named_trainable(model).items():
        _, module, attr = owners.get(id(p), ("", None, ""))
        if attr != "weight":
            continue
        if isinstance(module, _CONV):
            views[name] = "flatten"
        elif _is_hf_conv1d(module) and p.ndim == 2:
            views[name] = "transpose"
    return views


def classify(
    model: nn.Module,
    *,
    output: str | Iterable[str] | None = None,
    embeddings: str | Iterable[str] | None = None,
    roles: dict[str, str | Role] | None = None,
) -> tuple[dict[str, Role], list[str]]:
    """Assign a :class:`Role` to every trainable parameter of ``model``.

    Args:
        model: the model.
        output: module or parameter name(s)/patterns of the output layer. Default: the model's
            ``get_output_embeddings()`` (Hugging Face), else the last ``nn.Linear``/conv module.
        embeddings: extra module or parameter name(s)/patterns to treat as embeddings.
        roles: explicit ``{name pattern: role}`` overrides, applied last.

    Returns:
        ``(roles, notes)``: ``{parameter name: Role}`` in ``named_parameters`` order (tied weights
        once, under their first name) and notes on how ambiguous choices were made. Names are
        those of the unwrapped model (without torch.compile's ``_orig_mod.`` or DDP's
        ``module.``), and patterns match them, so routing is the same for a wrapped model.
    """
    named = _named_trainable(model)
    owners = _owner_modules(model)
    notes: list[str] = []

    embed_ids = {id(m.weight) for m in model.modules() if isinstance(m, _EMBED)}
    get_in = getattr(unwrap(model), "get_input_embeddings", None)
    if callable(get_in):
        try:
            emb = get_in()
            if emb is not None and getattr(emb, "weight", None) is not None:
                embed_ids.add(id(emb.weight))
        except (NotImplementedError, AttributeError):
            pass
    embed_ids |= {id(p) for n, p in named.items() if _matches(n, _as_list(embeddings))}

    out_patterns = _as_list(output)
    if out_patterns:
        out_ids = {id(p) for n, p in named.items() if _matches(n, out_patterns) and p.ndim >= 2}
        if not out_ids:
            raise ValueError(
                f"output={output!r} matches no >= 2-D trainable parameter; names look like "
                f"{list(named)[:6]}"
            )
        notes.append(f"output layer declared: {output!r}")
    else:
        out_ids, note = _detect_output(model, named)
        notes.append(note + " (pass output=... to override)")

    result: dict[str, Role] = {}
    for name, p in named.items():
        _, module, attr = owners.get(id(p), ("", None, ""))
        if id(p) in embed_ids:
            role = Role.EMBEDDING
            if id(p) in out_ids:
                notes.append(f"{name!r} is an embedding tied to the output layer")
        elif id(p) in out_ids:
            role = Role.OUTPUT
        elif p.ndim < 2:
            role = Role.VECTOR
        elif isinstance(module, nn.Linear) and attr == "weight":
            role = Role.HIDDEN
        elif isinstance(module, _CONV) and attr == "weight":
            role = Role.CONV
        elif isinstance(module, _RNN) and attr.startswith("weight"):
            role = Role.HIDDEN
        elif isinstance(module, nn.MultiheadAttention) and attr.endswith("proj_weight"):
            role = Role.HIDDEN
        elif _is_hf_conv1d(module) and attr == "weight" and p.ndim == 2:
            role = Role.HIDDEN  # transformers' GPT-2 Conv1D: a Linear stored as (in, out)
        else:
            role = Role.OTHER
        result[name] = role
    for pattern, r in (roles or {}).items():
        hits = [n for n in result if _matches(n, [pattern])]
        if not hits:
            raise ValueError(f"roles: pattern {pattern!r} matches no trainable parameter")
        for n in hits:
            result[n] = Role(r)
    others = [n for n, r in result.items() if r == Role.OTHER]
    if others:
        notes.append(f"{len(others)} >= 2-D parameter(s) of unrecognised modules sent to AdamW: "
                     f"{others[:4]}{' ...' if len(others) > 4 else ''} (use roles= to change)")
    return result, notes


def create_optimizer(
    model: nn.Module,
    name: str = "muon",
    *,
    adamw: dict[str, Any] | None = None,
    output: str | Iterable[str] | None = None,
    embeddings: str | Iterable[str] | None = None,
    roles: dict[str, str | Role] | None = None,
    overrides: dict[str, str | dict[str, Any]] | None = None,
    check_finite: bool = False,
    executor: Any = None,
    summary: bool = False,
    **hparams: Any,
) -> HybridOptimizer:
    """Build ONE optimizer for ``model``: hidden matrices → ``name``, everything else → AdamW.

    Args:
        model: any ``nn.Module`` (nanoGPT-style, CNN, Hugging Face causal LM, ...).
        name: a registered optimizer (:func:`available_optimizers`). An element-wise method
            (``"adamw"``, ``"sgd"``) gets every parameter.
        adamw: hyperparameters of the AdamW groups, on top of ``registry.AUX_DEFAULTS``
            (``lr=7e-4, betas=(0.9, 0.95), weight_decay=0``, from the sweep in docs/defaults.md)
            and the method's own ``aux`` (Scion: ``lr=5e-3``).
        output / embeddings / roles: see :func:`classify`.
        overrides: ``{parameter-name pattern: algorithm name or {hyperparameter: value}}``; a dict
            may hold ``"algorithm"``. Later patterns win.
        check_finite: passed to :class:`HybridOptimizer`.
        executor: where the matrix work runs. Default: this process (:class:`LocalExecutor`),
            except for a model wrapped in ``DistributedDataParallel`` (the owner ranks of
            :class:`muonlab.DistributedExecutor` share the work; pass the wrapped model) and
            DTensor (FSDP2) parameters. An optimizer over a plain model never joins collectives,
            also after ``init_process_group``: a side optimizer stepped on one rank is safe.
        summary: print the routing table.
        **hparams: hyperparameters of the ``name`` groups, on top of the registry's
            recommended defaults for ``name`` (e.g. Muon: ``lr=0.02, weight_decay=0.01``).

    Returns:
        A :class:`HybridOptimizer` whose groups carry ``algorithm``, ``role`` and
        ``param_names``. Every trainable parameter is in exactly one group (checked).
    """
    spec = registry.get_spec(name)
    role_of, notes = classify(model, output=output, embeddings=embeddings, roles=roles)
    named = _named_trainable(model)
    views = matrix_views(model)

    base_main = {**spec.recommended, **hparams}
    base_aux = {**registry.AUX_DEFAULTS, **spec.aux, **(adamw or {})}
    group_defaults = {AUX_ALGORITHM: dict(base_aux), name: dict(base_main)}
    buckets: dict[tuple, dict[str, Any]] = {}
    for pname, role in role_of.items():
        if spec.matrix and role in MATRIX_ROLES:
            algorithm, hp = name, dict(base_main)
        elif spec.matrix:
            algorithm, hp = AUX_ALGORITHM, dict(base_aux)
        else:
            algorithm, hp = name, dict(base_main)
        for pattern, ov in (overrides or {}).items():
            if _matches(pname, [pattern]):
                ov = {"algorithm": ov} if isinstance(ov, str) else dict(ov)
                new_alg = ov.pop("algorithm", algorithm)
                if new_alg != algorithm:
                    algorithm = new_alg
                    hp = dict(registry.get_spec(new_alg).recommended)
                    group_defaults.setdefault(new_alg, dict(hp))
                hp.update(ov)
        if pname in views and registry.get_spec(algorithm).matrix:
            hp.setdefault("matrix_view", views[pname])
        key = (role.value, algorithm, tuple(sorted((k, repr(v)) for k, v in hp.items())))
        g = buckets.setdefault(key, {"params": [], "param_names": [], "algorithm": algorithm,
                                     "role": role.value, **hp})
        g["params"].append(named[pname])
        g["param_names"].append(pname)
    for pattern in overrides or {}:
        if not any(_matches(n, [pattern]) for n in named):
            raise ValueError(f"overrides: pattern {pattern!r} matches no trainable parameter")

    if executor is None and isinstance(model, nn.parallel.DistributedDataParallel):
        from .distributed import DistributedExecutor  # the model says its replicas are shared

        executor = DistributedExecutor(model.process_group)
    opt = HybridOptimizer(list(buckets.values()), algorithm=name, check_finite=check_finite,
                          executor=executor, group_defaults=group_defaults)
    check_coverage(model, opt)
    opt.routing_notes = notes  # type: ignore[attr-defined]
    if summary:
        print(routing_summary(opt))
    return opt


def scion_param_groups(
    model: nn.Module,
    *,
    lr: float = 2**-6,
    momentum: float = 0.1,
    scale: float = 1.0,
    output_scale: float | None = None,
    role_norms: dict[str, dict[str, Any]] | None = None,
    **classify_kwargs: Any,
) -> list[dict[str, Any]]:
    """Param groups giving *every* parameter of ``model`` a Scion geometry, by routing role.

    Roles come from :func:`muonlab.classify` (``classify_kwargs``: ``output=``, ``embeddings=``,
    ``roles=``). Defaults (:data:`ROLE_NORMS`): hidden → spectral, conv/other → auto (SpectralConv),
    embedding → col_norm on the transpose, output → sign (ℓ∞ ball, radius ``output_scale``,
    default ``60·scale`` as in Scion's nanoGPT setup: blocks 50, head 3000), vector → bias_rms.
    ``lr = 2⁻⁶`` and ``momentum = 0.1`` are the README's MLP/GPT values.

    Example::

        >>> opt = muonlab.HybridOptimizer(scion_param_groups(model))
    """
    roles, _ = classify(model, **classify_kwargs)
    norms = {**ROLE_NORMS, **(role_norms or {})}
    named = _named_trainable(model)
    views = matrix_views(model)
    groups: dict[tuple, dict[str, Any]] = {}
    for pname, role in roles.items():
        view = views.get(pname) if norms[role.value].get("norm") in ("spectral", "auto", None) else None
        key = (role.value, view)
        g = groups.setdefault(key, {
            "params": [], "param_names": [], "algorithm": "scion", "role": role.value, "lr": lr,
            "momentum": momentum, **norms[role.value],
            "scale": (60.0 * scale if output_scale is None else output_scale) if role.value == "output" else scale,
        })
        if view == "transpose":  # HF Conv1D: stored (in, out)
            g["matrix_view"] = view
        g["params"].append(named[pname])
        g["param_names"].append(pname)
    return list(groups.values())


def check_coverage(model: nn.Module, optimizers: torch.optim.Optimizer | Iterable[torch.optim.Optimizer]) -> None:
    """Raise ValueError unless every trainable parameter of ``model`` is optimized exactly once."""
    opts = [optimizers] if isinstance(optimizers, torch.optim.Optimizer) else list(optimizers)
    count: dict[int, int] = defaultdict(int)
    for opt in opts:
        for group in opt.param_groups:
            for p in group["params"]:
                count[id(p)] += 1
    named = _named_trainable(model)
    missing = [n for n, p in named.items() if count[id(p)] == 0]
    twice = [n for n, p in named.items() if count[id(p)] > 1]
    foreign = set(count) - {id(p) for p in model.parameters()}
    problems = []
    if missing:
        problems.append(f"not optimized: {missing}")
    if twice:
        problems.append(f"in more than one group: {twice}")
    if foreign:
        problems.append(f"{len(foreign)} optimized tensor(s) are not parameters of the model")
    if problems:
        raise ValueError("parameter coverage check failed: " + "; ".join(problems))


def routing_summary(opt: torch.optim.Optimizer) -> str:
    """A readable table: role, tensors, parameters, algorithm and lr of each group."""
    rows = [("group", "role", "tensors", "params", "algorithm", "lr")]
    total = 0
    for i, g in enumerate(opt.param_groups):
        n = sum(p.numel() for p in g["params"])
        total += n
        rows.append((str(i), str(g.get("role", "-")), str(len(g["params"])), f"{n:,}",
                     str(g.get("algorithm", type(opt).__name__)), f"{float(g['lr']):.3g}"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"total trainable parameters: {total:,}")
    lines.append(f"executor: {getattr(opt, 'executor', None)!r}")
    lines.extend(f"note: {n}" for n in getattr(opt, "routing_notes", []))
    return "\n".join(lines)
