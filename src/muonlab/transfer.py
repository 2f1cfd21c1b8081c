"""Width transfer: per-layer µP learning-rate (and ε, weight-decay) multipliers for a whole model.

Qiu, Chen, Phan, Lei, Wilson, "Hyperparameter Transfer for Matrix-Preconditioned Optimizers"
(arXiv 2512.05620); rules from the authors' code, github charliezchen/scaling-matrix-preconditioning
``train.py::assign_lr`` and ``optax_optim/*.py`` @ 5a02d4f, and the paper's Table 2 [EXACT unless
marked]. A layer with fan-in ``d_in`` and fan-out ``d_out`` in the model and ``d_in,0``, ``d_out,0`` in
a *base* model (where the learning rate ``η_base`` was tuned) has ratios ``r_in = d_in/d_in,0``,
``r_out = d_out/d_out,0``, ``r_L = L/L_0`` (depth; 1 for embedding and readout) and, for blocked
preconditioners, block-count ratios ``r_nb = n_blk/n_blk,0`` per side. Its learning rate is
``η_base × mult``:

==============================================  ===================================================
optimizer (the layer's rule)                    mult
==============================================  ===================================================
AdamW (also every AdamW layer next to a         ``1/r_in``
matrix method: embeddings, readout, vectors)
Muon                                            ``(r_out/r_in)^½`` (hidden 1, embedding √r, readout 1/√r)
Shampoo, exponents ``e_L``, ``e_R``             ``r_L^(1−2E) (r_out/r_in)^(1−E) (r_nb,in r_nb,out)^(−E)``,
(E = sum over the preconditioned sides)         E = ½ for Shampoo (¼, ¼), 1 for "Shampoo2" (½, ½)
Shampoo with Adam grafting                      ``1/r_in`` (grafting transfers Adam's scaling)
SOAP, both sides preconditioned                 ``(r_out/r_in)^½ (r_nb,in r_nb,out)^(−½)``
SOAP, only the input (fan_in, R) side           ``(r_in r_nb,in)^(−½)``
SOAP, only the output (fan_out, L) side         ``(r_out/r_nb,out)^½ / r_in``
any of them with ``spectral_norm="spectral"``   ``1`` (the normalisation fixes the scale)
==============================================  ===================================================

Muon's own shape factor ``s(m, n)`` (``adjust_lr_fn``; "original" is ``√max(1, m/n)``) is divided
out relative to the base layer, so the step is ``η_base·s(m₀, n₀)·(r_out/r_in)^½``: at the base width
nothing changes, and across widths ``‖ΔW‖₂ ∝ √(d_out/d_in)``, the spectral condition the transfer
rests on (tested). Moonlight's RMS matching (``adjust_lr_fn="match_rms_adamw"``) is a different
convention that the paper rejects (App. G); it is refused here.

ε scaling (``scale_eps=True``; §"Scaling of ε" of the paper's code, relative to the base model):
AdamW ``ε/(r_out r_L)``; Muon's Newton–Schulz normaliser ``ε·√(r_in/r_out)/r_L``; Shampoo's ridge
``ε·(r_in/r_out)/(r_L² r_nb,in r_nb,out)`` (none with ``relative_eps``), with grafting the Adam ε
``/(r_out r_L)`` and the graft ε ``·√(r_out/r_in)/mult_Shampoo``; SOAP ``ε·r_b,out^(δ_L/2)
r_b,in^(δ_R/2)/(r_L r_out)`` (δ = 1 for a preconditioned side, r_b the block-size ratio; from the
paper's Table 2, not checked against its code [EXACT-2]). The batch-size factors of the code are
not applied (pass a changed ε yourself when the batch changes).

Independent weight decay (``wd_times_width=c``, ``width=D``): every ≥ 2-D parameter gets
``λ = c/D`` applied as ``W ← W − s(t)·λW`` (not multiplied by the per-layer lr, but by the
schedule): muonlab's decoupled decay multiplies by the group's lr, so the override is
``weight_decay = λ/lr_layer``, which an lr scheduler then scales by s(t) exactly as the paper does.

Use::

    overrides = muonlab.transfer.mup_overrides(model, "shampoo", base=base_model, lr=3e-2)
    opt = muonlab.create_optimizer(model, "shampoo", overrides=overrides, lr=3e-2)
    # or, the same in one call:
    opt = muonlab.transfer.mup_optimizer(model, "shampoo", base=base_model, lr=3e-2)

``base`` is the model at the base width (or ``{parameter name: shape}``); ``base_width`` and
``width`` instead treat every dimension that is a multiple of ``width`` as growing with it [GUESS:
a convenience; a fixed dimension that happens to be such a multiple is scaled too, so prefer ``base``].
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import registry
from .optim.shampoo import block_layout
from .optim.steps import shape_scale
from .routing import (
    AUX_ALGORITHM,
    MATRIX_ROLES,
    Role,
    _named_trainable,
    classify,
    create_optimizer,
    matrix_views,
)

#: Methods with a µP rule (the rows of the table above).
SUPPORTED = ("adamw", "muon", "shampoo", "soap")
_PRECONDITIONED = ("shampoo", "soap")


def lr_multiplier(
    optimizer: str,
    r_in: float,
    r_out: float,
    *,
    r_depth: float = 1.0,
    r_nb_in: float = 1.0,
    r_nb_out: float = 1.0,
    exponents: tuple[float, float] = (0.25, 0.25),
    left: bool = True,
    right: bool = True,
    grafting: bool = False,
    spectral_norm: bool = False,
) -> float:
    """The µP learning-rate multiplier of one layer (the module table; ``left``/``right``: whether
    the fan_out / fan_in side is preconditioned)."""
    if optimizer not in SUPPORTED:
        raise ValueError(f"no µP rule for {optimizer!r}; choose one of {SUPPORTED}")
    if spectral_norm:
        return 1.0
    if optimizer == "adamw" or (optimizer == "shampoo" and grafting):
        return 1.0 / r_in
    if optimizer == "muon":
        return math.sqrt(r_out / r_in)
    if optimizer == "shampoo":
        E = exponents[0] * left + exponents[1] * right
        return r_depth ** (1 - 2 * E) * (r_out / r_in) ** (1 - E) * (r_nb_in * r_nb_out) ** (-E)
    if left and right:
        return math.sqrt(r_out / r_in) / math.sqrt(r_nb_in * r_nb_out)
    if right:
        return 1.0 / math.sqrt(r_in * r_nb_in)
    if left:
        return math.sqrt(r_out / r_nb_out) / r_in
    return 1.0 / r_in  # SOAP with no preconditioned side is Adam


def eps_multipliers(
    optimizer: str,
    r_in: float,
    r_out: float,
    *,
    r_depth: float = 1.0,
    r_nb_in: float = 1.0,
    r_nb_out: float = 1.0,
    r_b_in: float = 1.0,
    r_b_out: float = 1.0,
    exponents: tuple[float, float] = (0.25, 0.25),
    left: bool = True,
    right: bool = True,
    grafting: bool = False,
    relative_eps: bool = False,
) -> dict[str, float]:
    """``{hyperparameter: multiplier}`` of the ε's of one layer (module docstring, "ε scaling")."""
    if optimizer == "adamw":
        return {"eps": 1.0 / (r_out * r_depth)}
    if optimizer == "muon":
        return {"eps": math.sqrt(r_in / r_out) / r_depth}
    if optimizer == "shampoo":
        out = {} if relative_eps else {"matrix_eps": (r_in / r_out) / (r_depth**2 * r_nb_in * r_nb_out)}
        if grafting:
            mult = lr_multiplier("shampoo", r_in, r_out, r_depth=r_depth, r_nb_in=r_nb_in, r_nb_out=r_nb_out,
                                 exponents=exponents, left=left, right=right)
            out["adam_eps"] = 1.0 / (r_out * r_depth)
            out["graft_eps"] = math.sqrt(r_out / r_in) / mult
        return out
    if optimizer == "soap":
        return {"eps": r_b_out ** (0.5 * left) * r_b_in ** (0.5 * right) / (r_depth * r_out)}
    raise ValueError(f"no µP rule for {optimizer!r}; choose one of {SUPPORTED}")


@dataclass(frozen=True)
class LayerScaling:
    """The µP scaling of one parameter (what :func:`layer_scalings` returns)."""

    name: str
    role: str
    algorithm: str
    d_in: int
    d_out: int
    d_in_base: int
    d_out_base: int
    r_depth: float
    r_nb_in: float = 1.0
    r_nb_out: float = 1.0
    left: bool = False
    right: bool = False
    lr_mult: float = 1.0
    eps_mult: dict[str, float] = field(default_factory=dict)

    @property
    def r_in(self) -> float:
        return self.d_in / self.d_in_base

    @property
    def r_out(self) -> float:
        return self.d_out / self.d_out_base


def _fans(shape: tuple[int, ...], role: Role, view: str | None) -> tuple[int, int]:
    """``(d_in, d_out)`` of a parameter: embeddings ``(vocab, width)`` take a one-hot input of size
    vocab; vectors have fan-in 1; Hugging Face ``Conv1D`` stores ``(in, out)``."""
    if len(shape) < 2:
        return 1, math.prod(shape)
    if role == Role.EMBEDDING:
        return shape[0], math.prod(shape[1:])
    if view == "transpose":
        return shape[0], shape[1]
    return math.prod(shape[1:]), shape[0]


def _base_shapes(
    model: nn.Module, base: nn.Module | Mapping[str, Iterable[int]] | None, base_width: int | None,
    width: int | None,
) -> dict[str, tuple[int, ...]]:
    named = _named_trainable(model)
    if base is not None:
        if isinstance(base, nn.Module):
            shapes = {n: tuple(p.shape) for n, p in _named_trainable(base).items()}
        else:
            shapes = {n: tuple(s) for n, s in base.items()}
        missing = sorted(set(named) - set(shapes))
        if missing:
            raise ValueError(f"base: no shape for {missing[:6]}{' ...' if len(missing) > 6 else ''}")
        for n, p in named.items():
            if len(shapes[n]) != p.ndim:
                raise ValueError(f"base: {n!r} has shape {shapes[n]} in the base and {tuple(p.shape)} here")
        return shapes
    if base_width is None or width is None:
        raise ValueError("give base= (the model at the base width, or its shapes) or both base_width= and width=")
    if base_width <= 0 or width <= 0:
        raise ValueError(f"base_width and width must be positive, got {base_width} and {width}")

    def scale(d: int) -> int:
        if d % width:
            return d  # a fixed dimension (vocabulary, inputs, classes)
        b = d * base_width / width
        if b != int(b):
            raise ValueError(f"dimension {d} scaled to base width {base_width} is not an integer ({b})")
        return int(b)

    return {n: tuple(scale(d) for d in p.shape) for n, p in named.items()}


def _hyper_values(name: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """The values a ``name`` group gets in create_optimizer: declared defaults < recommended < given."""
    spec = registry.get_spec(name)
    return {**{k: h.default for k, h in spec.rule.hypers.items()}, **spec.recommended, **hparams}


def _aux_values(name: str, adamw: dict[str, Any] | None) -> dict[str, Any]:
    rule = registry.get_rule(AUX_ALGORITHM)
    return {**{k: h.default for k, h in rule.hypers.items()}, **registry.AUX_DEFAULTS,
            **registry.get_spec(name).aux, **(adamw or {})}


def layer_scalings(
    model: nn.Module,
    name: str = "muon",
    *,
    base: nn.Module | Mapping[str, Iterable[int]] | None = None,
    base_width: int | None = None,
    width: int | None = None,
    depth_ratio: float = 1.0,
    all_matrices: bool = False,
    adamw: dict[str, Any] | None = None,
    output: str | Iterable[str] | None = None,
    embeddings: str | Iterable[str] | None = None,
    roles: dict[str, str | Role] | None = None,
    **hparams: Any,
) -> list[LayerScaling]:
    """The µP scaling of every trainable parameter of ``model`` under ``create_optimizer(model, name,
    **hparams)`` (see :func:`mup_overrides` for the arguments)."""
    if name not in SUPPORTED:
        raise ValueError(f"no µP rule for {name!r}; choose one of {SUPPORTED}")
    spec = registry.get_spec(name)
    main = _hyper_values(name, hparams)
    if name == "muon" and main.get("adjust_lr_fn") == "match_rms_adamw":
        raise ValueError("adjust_lr_fn='match_rms_adamw' (RMS matching) and µP transfer are exclusive "
                         "conventions (arXiv 2512.05620, App. G); use None/'original', 'spectral_norm' or 'none'")
    role_of, _ = classify(model, output=output, embeddings=embeddings, roles=roles)
    views = matrix_views(model)
    named = _named_trainable(model)
    base_shapes = _base_shapes(model, base, base_width, width)
    out = []
    for pname, role in role_of.items():
        p = named[pname]
        if not spec.matrix or role in MATRIX_ROLES or (all_matrices and role in (Role.EMBEDDING, Role.OUTPUT)):
            algorithm = name
        else:
            algorithm = AUX_ALGORITHM
        view = views.get(pname)
        d_in, d_out = _fans(tuple(p.shape), role, view)
        d_in0, d_out0 = _fans(base_shapes[pname], role, view)
        r_depth = depth_ratio if role in MATRIX_ROLES else 1.0
        hp = main if algorithm == name else {}
        kw: dict[str, Any] = {"r_depth": r_depth}
        left = right = False
        r_b_in = r_b_out = 1.0
        if algorithm in _PRECONDITIONED:
            lay = block_layout(d_out, d_in, hp["block_size"], hp["max_precond_dim"])
            lay0 = block_layout(d_out0, d_in0, hp["block_size"], hp["max_precond_dim"])
            left, right = lay.left, lay.right
            kw.update(r_nb_in=lay.cols / lay0.cols, r_nb_out=lay.rows / lay0.rows, left=left, right=right)
            r_b_in, r_b_out = lay.bi / lay0.bi, lay.bo / lay0.bo
        grafting = algorithm == "shampoo" and hp.get("grafting") == "adam"
        if algorithm == "shampoo":
            kw["exponents"] = tuple(hp["exponents"])
        r_in, r_out = d_in / d_in0, d_out / d_out0
        mult = lr_multiplier(algorithm, r_in, r_out, grafting=grafting,
                             spectral_norm=hp.get("spectral_norm", "none") != "none", **kw)
        if algorithm == "muon":  # divide Muon's own shape factor out, relative to the base layer
            fn = hp.get("adjust_lr_fn")
            mult *= shape_scale(d_out0, d_in0, fn) / shape_scale(d_out, d_in, fn)
        eps_kw = {k: v for k, v in kw.items() if k != "exponents"} if algorithm != "shampoo" else dict(kw)
        eps = eps_multipliers(algorithm, r_in, r_out, grafting=grafting, r_b_in=r_b_in, r_b_out=r_b_out,
                              relative_eps=bool(hp.get("relative_eps", False)), **eps_kw)
        out.append(LayerScaling(pname, role.value, algorithm, d_in, d_out, d_in0, d_out0, r_depth,
                                kw.get("r_nb_in", 1.0), kw.get("r_nb_out", 1.0), left, right, mult, eps))
    return out


def mup_overrides(
    model: nn.Module,
    name: str = "muon",
    *,
    base: nn.Module | Mapping[str, Iterable[int]] | None = None,
    base_width: int | None = None,
    width: int | None = None,
    depth_ratio: float = 1.0,
    all_matrices: bool = False,
    scale_eps: bool = False,
    wd_times_width: float | None = None,
    adamw: dict[str, Any] | None = None,
    output: str | Iterable[str] | None = None,
    embeddings: str | Iterable[str] | None = None,
    roles: dict[str, str | Role] | None = None,
    **hparams: Any,
) -> dict[str, dict[str, Any]]:
    """Per-parameter ``overrides=`` for :func:`muonlab.create_optimizer` that apply µP.

    Args:
        model: the model to train (at its width).
        name: ``"muon"``, ``"shampoo"``, ``"soap"`` or ``"adamw"``.
        base: the same architecture at the base width (where the lrs were tuned), or
            ``{parameter name: shape}``; alternatively ``base_width`` and ``width``.
        depth_ratio: ``L/L_0`` for hidden layers (only Shampoo's lr and the ε's depend on it).
        all_matrices: also send the embedding and output matrices to ``name`` (the paper's setting;
            an embedding ``(vocab, width)`` is seen transposed, as ``(fan_out, fan_in)``). Default:
            they stay on AdamW, with AdamW's µP multiplier.
        scale_eps: scale the ε's with width (module docstring).
        wd_times_width: ``c`` of the independent weight decay ``λ = c/width`` of every ≥ 2-D
            parameter (needs ``width``); None leaves weight decay as it is.
        adamw, output, embeddings, roles: as for :func:`muonlab.create_optimizer`.
        **hparams: the hyperparameters of the ``name`` groups, exactly as given to
            ``create_optimizer`` (``lr`` is the base lr ``η_base``; ``block_size``, ``exponents``,
            ``grafting``, ``spectral_norm``, ``adjust_lr_fn`` ... change the multipliers).

    Returns:
        ``{parameter name: {"lr": η_base·mult, ...}}`` for every trainable parameter.
    """
    scalings = layer_scalings(model, name, base=base, base_width=base_width, width=width, depth_ratio=depth_ratio,
                              all_matrices=all_matrices, adamw=adamw, output=output, embeddings=embeddings,
                              roles=roles, **hparams)
    if wd_times_width is not None and width is None:
        raise ValueError("wd_times_width needs width= (the model width D of λ = c/D)")
    main, aux = _hyper_values(name, hparams), _aux_values(name, adamw)
    views = matrix_views(model)
    overrides: dict[str, dict[str, Any]] = {}
    for s in scalings:
        values = main if s.algorithm == name else aux
        ov: dict[str, Any] = {}
        if s.algorithm == name and name != AUX_ALGORITHM and s.role not in (r.value for r in MATRIX_ROLES) \
                and registry.get_spec(name).matrix:
            ov.update({"algorithm": name, **hparams})  # embedding/readout sent to the method
            if s.role == Role.EMBEDDING.value and views.get(s.name) != "transpose":
                ov["matrix_view"] = "transpose"  # (vocab, width) seen as (fan_out, fan_in)
                if values.get("spectral_norm") == "spectral":
                    ov["spectral_norm"] = "rms"  # one-hot inputs: RMS normalisation (paper App. F)
        lr = float(values["lr"]) * s.lr_mult
        ov["lr"] = lr
        if scale_eps:
            for key, m in s.eps_mult.items():
                ov[key] = float(values[key]) * m
        if wd_times_width is not None and len(_named_trainable(model)[s.name].shape) >= 2:
            if lr <= 0:
                raise ValueError(f"{s.name!r}: independent weight decay needs a positive lr, got {lr}")
            ov["weight_decay"] = wd_times_width / width / lr
        overrides[s.name] = ov
    return overrides


def mup_optimizer(
    model: nn.Module,
    name: str = "muon",
    *,
    base: nn.Module | Mapping[str, Iterable[int]] | None = None,
    base_width: int | None = None,
    width: int | None = None,
    depth_ratio: float = 1.0,
    all_matrices: bool = False,
    scale_eps: bool = False,
    wd_times_width: float | None = None,
    adamw: dict[str, Any] | None = None,
    output: str | Iterable[str] | None = None,
    embeddings: str | Iterable[str] | None = None,
    roles: dict[str, str | Role] | None = None,
    **hparams: Any,
) -> torch.optim.Optimizer:
    """``create_optimizer(model, name, overrides=mup_overrides(...), **hparams)``: one µP optimizer."""
    ov = mup_overrides(model, name, base=base, base_width=base_width, width=width, depth_ratio=depth_ratio,
                       all_matrices=all_matrices, scale_eps=scale_eps, wd_times_width=wd_times_width,
                       adamw=adamw, output=output, embeddings=embeddings, roles=roles, **hparams)
    return create_optimizer(model, name, adamw=adamw, output=output, embeddings=embeddings, roles=roles,
                            overrides=ov, **hparams)
