"""Optimizers from outside muonlab, named by import path (``torch.optim.AdamW``, ``heavyball.SOAP``).

So the seeds' comparisons with Shampoo/SOAP run without re-implementing them: any
``torch.optim.Optimizer`` subclass importable by its dotted path is a valid ``--optimizer``.
Routing follows muonlab's rule for matrix methods by default (``route="hidden"``): the external
class gets the hidden matrices and conv filters, and AdamW (with ``registry.AUX_DEFAULTS``, the
side ``create_optimizer`` uses, overridable as ``adamw.<key>``) gets embeddings, head, norms and
biases.
``route="all"`` hands every parameter to the external class. Hyperparameters are passed to the
class as keyword arguments; a wrong one raises ValueError naming it.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch
from torch import nn

ROUTES = ("hidden", "all")


def is_import_path(name: str) -> bool:
    """True for ``package.module.Class`` names (registry names never contain a dot)."""
    return "." in name


def load_class(path: str) -> type[torch.optim.Optimizer]:
    """The optimizer class at ``path``; ValueError if it cannot be imported or is not one."""
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"optimizer {path!r}: cannot import {module_name!r} ({e}); "
                         f"is it installed? (pip install {module_name.split('.')[0]})") from None
    cls = getattr(module, attr, None)
    if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"optimizer {path!r}: {attr!r} in {module_name!r} is not a torch.optim.Optimizer class")
    return cls


def default_lr(path: str) -> float | None:
    """The class's default ``lr`` (None when it has no numeric default)."""
    param = inspect.signature(load_class(path).__init__).parameters.get("lr")
    if param is None or not isinstance(param.default, (int, float)) or isinstance(param.default, bool):
        return None
    return float(param.default)


def build_external(model: nn.Module, path: str, hparams: dict[str, Any], aux: dict[str, Any],
                   routing: dict[str, Any]) -> list[torch.optim.Optimizer]:
    """Optimizers for ``model``: ``[cls(hidden matrices, **hparams), AdamW(rest)]`` or ``[cls(all)]``.

    Args:
        model: the model.
        path: import path of a ``torch.optim.Optimizer`` subclass.
        hparams: keyword arguments for the class; ``route`` ("hidden" default, or "all") is taken
            out first.
        aux: AdamW hyperparameters for the non-matrix parameters (on top of
            ``registry.AUX_DEFAULTS``, the AdamW side ``create_optimizer`` uses).
        routing: role hints for :func:`muonlab.routing.classify` (the workload's ``routing()``).
    """
    from ..optim.shell import HybridOptimizer
    from ..registry import AUX_DEFAULTS
    from ..routing import AUX_ALGORITHM, MATRIX_ROLES, canonical_name, check_coverage, classify

    cls = load_class(path)
    hparams = dict(hparams)
    route = hparams.pop("route", "hidden")
    if route not in ROUTES:
        raise ValueError(f"route={route!r} is not valid; choose one of {', '.join(ROUTES)}")

    def make(params: list, **kw: Any) -> torch.optim.Optimizer:
        try:
            return cls(params, **kw)
        except TypeError as e:  # an unknown keyword: say which class refused it
            raise ValueError(f"optimizer {path!r} rejected hyperparameters {sorted(kw)}: {e}") from None

    # Names as classify gives them: without DDP's "module." or torch.compile's "_orig_mod.".
    named = {canonical_name(n, model): p for n, p in model.named_parameters() if p.requires_grad}
    if route == "all":
        opts = [make(list(named.values()), **hparams)]
    else:
        roles, _ = classify(model, **routing)
        hidden = [named[n] for n, r in roles.items() if r in MATRIX_ROLES]
        rest = [named[n] for n, r in roles.items() if r not in MATRIX_ROLES]
        if not hidden:
            raise ValueError(f"optimizer {path!r} with route='hidden': the model has no hidden "
                             "matrices; use route=all")
        opts = [make(hidden, **hparams)]
        if rest:
            adamw = {**AUX_DEFAULTS, **aux}
            opts.append(HybridOptimizer([{"params": rest, "algorithm": AUX_ALGORITHM, **adamw}],
                                        algorithm=AUX_ALGORITHM))
    check_coverage(model, opts)
    return opts
