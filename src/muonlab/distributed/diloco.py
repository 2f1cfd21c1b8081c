"""DiLoCo and MuLoCo: an outer Nesterov step on pseudo-gradients every H inner steps.

Math (one **round**; K workers, each with its own replica θ_k and its own inner optimizer state)::

    θ_k ← θ                                    every worker starts the round at the global θ
    H inner steps of InnerOpt on θ_k, on worker k's data      (inner state persists across rounds)
    Δ_k ← θ − θ_k                              pseudo-gradient; positive = direction of descent
    ĝ   ← (1/K) Σ_k Δ_k                        (= θ − mean_k θ_k)
    b   ← μ b + ĝ                              PyTorch SGD convention: dampening 0, b₁ = ĝ
    θ   ← θ − η_out (ĝ + μ b)   if nesterov    else θ − η_out b

With compression C (decompression D) and error feedback (per worker, per tensor; ρ = ``error_decay``)::

    e_k ← ρ e_k + Δ_k        ("faithful_double_lr": e_k ← ρ e_k + η_out Δ_k, see below)
    q_k ← C(e_k);  e_k ← e_k − D(q_k)          the residual e_k is what was not sent
    ĝ   ← (1/K) Σ_k D(q_k)                      ("requantize_after_reduce": ĝ ← D(C(ĝ)))

and without error feedback ``ĝ ← (1/K) Σ_k D(C(Δ_k))``.

Defaults, units and sources:

* :class:`DiLoCo` (Douillard et al., "DiLoCo: Distributed Low-Communication Training of Language
  Models", arXiv 2311.08105): ``outer_lr`` η_out = 0.7, ``outer_momentum`` μ = 0.9, Nesterov,
  ``sync_every`` H = 500 inner steps. The outer step is ``torch.optim.SGD(lr=η_out, momentum=μ,
  nesterov=True)`` applied to ĝ as a gradient (the form torchft/torchtitan use; tested against
  it). Certainty: EXACT for the outer step (torch's SGD), SECONDARY for the paper defaults
  (read from summaries of the paper, not its body).
* :class:`MuLoCo` (Thérien, Huang, Defazio, Rish, Belilovsky, "MuLoCo: Muon is a practical inner
  optimizer for DiLoCo", arXiv 2505.23725): DiLoCo with a Muon inner optimizer. Defaults are the
  authors' MuLoCo-1 package (github bentherien/muloco-1, ``muloco/pytorch/muloco.py`` @ 33cc333):
  η_out = 0.7, μ = 0.6, H = 30; the inner optimizer built by :func:`muloco_inner` is that
  package's Muon (below). The package writes the outer step as ``u ← μu + η_out Δ;
  θ ← θ_ref − μu − η_out Δ``, which is the SGD-Nesterov step above with ``u = η_out b`` (equal
  while η_out is constant; tested to rounding against a float64 transcription). EXACT.
* Compression and error feedback follow the authors' research code (github
  facebookresearch/MuLoCo, ``torchtitan/torchtitan/components/quantized_outer_sgd.py`` @ 475bbf4):
  top-k (k = max(1, ⌊ratio·numel⌋), ratio 0.1), statistical quantization (centre by the mean,
  ``scale = r·std/n_bins`` with the unbiased std and r = 6, codes clamped to [0, n_bins−1],
  per-bin-mean lookup table; 2 bits in their run config), linear min–max quantization, error
  decay ρ = 0.9 (their run configs; the class default there is 0.95), α = 1. Two quirks of that
  code are options, off by default: on the error-feedback path it puts ``η_out·Δ_k`` (not
  ``Δ_k``) into the error buffer and then steps SGD with η_out again (``faithful_double_lr``); it
  can quantize the average a second time (``requantize_after_reduce``). ``"rank_k"`` (best rank-r
  approximation by SVD, Eckart–Young; a contractive compressor as in EF21, arXiv 2106.05203) and
  ``"fp16"``/``"bf16"`` (OpenDiLoCo's FP16 all-reduce) are ours. EXACT for the authors' forms,
  RECON for the choice of defaults (natural form, no re-quantization, rank 4 is a GUESS).

Conventions:

* The wrapper covers every parameter of the inner optimizer's param groups. Outer state: the
  anchor θ (one copy of the parameters) and the momentum b (one copy), in the parameters' dtype
  (as the authors keep them); with compression and error feedback, one residual per compressed
  tensor on each worker. The inner optimizer's state is never reset between rounds.
* Tensors with fewer than 2 dimensions are compressed too unless ``skip_vectors=True``
  (torchtitan's ``skip_norm_quantization``); ``"rank_k"`` always sends them uncompressed.
* Under torchrun every rank is a worker: ``DiLoCo`` all-reduces (sums, then divides by K) the
  uncompressed pseudo-gradients, and all-gathers the compressed payloads, decompresses them and
  sums them in rank order, so that a run on K ranks equals :class:`DiLoCoSimulator` with K workers
  (tested to the bit for K = 2). Codes are sent one byte each (not bit-packed);
  ``last_sync["wire_bits"]`` counts the bits a bit-packed transport would send.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..optim.shell import HybridOptimizer
from .compression import (
    COMPRESSORS,
    Cast,
    Compressor,
    LinearQuant,
    RankK,
    StatisticalQuant,
    TopK,
    make_compressor,
)
from .launch import shard_batch

# ---- the arithmetic of a round (pure functions of tensors) --------------------------------------


def encode_(delta: Tensor, error: Tensor | None, comp: Compressor, *, decay: float, scale: float) -> tuple[Tensor, ...]:
    """One worker's payload for one tensor. With an error buffer: ``e ← ρe + scale·Δ``;
    ``q ← C(e)``; ``e ← e − D(q)`` (in place); without: ``q ← C(Δ)``."""
    if error is None:
        return comp.compress(delta)
    if decay != 1.0:
        error.mul_(decay)
    error.add_(delta, alpha=scale)
    payload = comp.compress(error)
    error.sub_(comp.decompress(payload, error))
    return payload


def mean_in_order(xs: Sequence[Tensor]) -> Tensor:
    """``(x₀ + x₁ + … + x_{K−1}) / K`` summed left to right (the order the all-gather path uses)."""
    acc = xs[0].clone()
    for x in xs[1:]:
        acc.add_(x)
    return acc.div_(len(xs))


def outer_sgd_(param: Tensor, buf: Tensor, grad: Tensor, *, lr: float, momentum: float, nesterov: bool) -> None:
    """torch.optim.SGD's step (dampening 0, no weight decay) with a zero-initialised buffer:
    ``b ← μb + g``; ``θ ← θ − η(g + μb)`` (Nesterov) or ``θ ← θ − ηb``."""
    buf.mul_(momentum).add_(grad)
    step = grad.add(buf, alpha=momentum) if nesterov else buf
    param.add_(step, alpha=-lr)


@dataclass(frozen=True)
class OuterConfig:
    """The outer loop's settings (validated; see :class:`DiLoCo` for their meaning)."""

    outer_lr: float = 0.7
    outer_momentum: float = 0.9
    sync_every: int = 500
    nesterov: bool = True
    error_feedback: bool = True
    error_decay: float = 0.9
    faithful_double_lr: bool = False
    requantize_after_reduce: bool = False
    skip_vectors: bool = False

    def __post_init__(self) -> None:
        def bad(name, why):
            raise ValueError(f"DiLoCo: invalid {name}={getattr(self, name)!r}; {why}")

        if not (isinstance(self.outer_lr, (int, float)) and math.isfinite(self.outer_lr) and self.outer_lr >= 0):
            bad("outer_lr", "expected a finite number >= 0")
        if not (isinstance(self.outer_momentum, (int, float)) and 0 <= self.outer_momentum < 1):
            bad("outer_momentum", "expected 0 <= outer_momentum < 1")
        if isinstance(self.sync_every, bool) or not isinstance(self.sync_every, int) or self.sync_every < 1:
            bad("sync_every", "expected an integer >= 1 (inner steps per round)")
        if not (isinstance(self.error_decay, (int, float)) and 0 <= self.error_decay <= 1):
            bad("error_decay", "expected 0 <= error_decay <= 1")
        for name in ("nesterov", "error_feedback", "faithful_double_lr", "requantize_after_reduce", "skip_vectors"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "expected True or False")


class _Outer:
    """What DiLoCo and the simulator share: the config, the compressor, which tensors are
    compressed, and the per-tensor steps of a round."""

    def __init__(self, cfg: OuterConfig, comp: Compressor | None, params: Sequence[Tensor]) -> None:
        self.cfg, self.comp = cfg, comp
        self.compressed = [comp is not None and comp.applies(p) and not (cfg.skip_vectors and p.ndim < 2)
                           for p in params]

    def new_errors(self, params: Sequence[Tensor]) -> list[Tensor | None]:
        use = self.cfg.error_feedback
        return [torch.zeros_like(p, memory_format=torch.contiguous_format) if c and use else None
                for p, c in zip(params, self.compressed)]

    def encode_(self, i: int, delta: Tensor, error: Tensor | None) -> tuple[Tensor, ...]:
        cfg = self.cfg
        scale = cfg.outer_lr if cfg.faithful_double_lr else 1.0
        return encode_(delta, error, self.comp, decay=cfg.error_decay, scale=scale)

    def finish_(self, i: int, anchor: Tensor, buf: Tensor, g: Tensor) -> None:
        """Optional re-quantization of the average, then the outer step on the anchor."""
        if self.compressed[i] and self.cfg.requantize_after_reduce:
            g = self.comp.decompress(self.comp.compress(g), g)
        outer_sgd_(anchor, buf, g, lr=self.cfg.outer_lr, momentum=self.cfg.outer_momentum,
                   nesterov=self.cfg.nesterov)

    def wire_bits(self, i: int, payload: tuple[Tensor, ...] | None, delta: Tensor) -> int:
        if payload is None:
            return delta.numel() * delta.element_size() * 8
        return self.comp.wire_bits(payload)


def _config(outer_lr, outer_momentum, sync_every, nesterov, compression, error_feedback, error_decay,
            compression_options, faithful_double_lr, requantize_after_reduce, skip_vectors):
    cfg = OuterConfig(outer_lr=outer_lr, outer_momentum=outer_momentum, sync_every=sync_every,
                      nesterov=nesterov, error_feedback=error_feedback, error_decay=error_decay,
                      faithful_double_lr=faithful_double_lr, requantize_after_reduce=requantize_after_reduce,
                      skip_vectors=skip_vectors)
    return cfg, make_compressor(compression, compression_options)


def _unique_params(groups: Sequence[dict]) -> list[Tensor]:
    seen, out = set(), []
    for g in groups:
        for p in g["params"]:
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def _copy_list_(dst: list[Tensor | None], src: Sequence[Tensor | None], what: str) -> None:
    if len(src) != len(dst):
        raise ValueError(f"load_state_dict: {what} has {len(src)} entries, expected {len(dst)}")
    for i, (d, s) in enumerate(zip(dst, src)):
        if (d is None) != (s is None):
            raise ValueError(f"load_state_dict: {what}[{i}] is {'missing' if s is None else 'unexpected'} "
                             "(was the checkpoint written with another compression or error_feedback?)")
        if d is not None:
            if d.shape != s.shape:
                raise ValueError(f"load_state_dict: {what}[{i}] has shape {tuple(s.shape)}, expected {tuple(d.shape)}")
            d.copy_(s)


# ---- DiLoCo: the wrapper used in a training loop -------------------------------------------------


class DiLoCo(torch.optim.Optimizer):
    """DiLoCo around any inner optimizer: ``step()`` is an inner step, and every ``sync_every``-th
    step also the outer step (see the module docstring for the math and sources).

    Args:
        inner_optimizer: any ``torch.optim.Optimizer`` (e.g. ``muonlab.create_optimizer(model,
            "muon")``). Its param groups are this optimizer's param groups (one LR scheduler
            schedules the inner lr; the outer lr stays constant, as in the papers).
        outer_lr: η_out (default 0.7).
        outer_momentum: μ (default 0.9; MuLoCo uses 0.6).
        sync_every: H, inner steps per round (default 500; MuLoCo 30).
        nesterov: Nesterov outer momentum (default True).
        compression: None (default), a name of :data:`COMPRESSORS` (``"top_k"``, ``"rank_k"``,
            ``"statistical"``, ``"linear"``, ``"fp16"``, ``"bf16"``) or a :class:`Compressor`.
        error_feedback: keep each worker's compression residual and add it to the next round's
            pseudo-gradient (default True; only with a compression).
        error_decay: ρ, the residual's decay per round (default 0.9, the authors' run configs).
        compression_options: options of a named compression (``{"ratio": 0.05}``, ``{"bits": 4}``).
        faithful_double_lr: the authors' code's form ``e ← ρe + η_out Δ`` (η_out then multiplies
            twice); default False (``e ← ρe + Δ``).
        requantize_after_reduce: quantize the average again before the outer step (their
            simulation of a reduce-scatter/all-gather transport); default False.
        skip_vectors: send tensors with < 2 dimensions uncompressed (default False).
        process_group: the workers' group. Default: the default process group when one is
            initialised with more than one rank (every rank a worker), else a single worker.
        local: True: a single worker even inside a process group.
        broadcast_init: with several ranks, copy rank 0's parameters to every rank at
            construction so all workers start the first round at the same θ (default True).

    ``state_dict()`` holds the inner optimizer's state dict and the outer state: counters, anchor,
    momentum and this worker's residuals (under torchrun each rank saves its own: the residuals
    differ across ranks). Hyperparameters come from the constructor, not from the checkpoint.
    After ``sync()`` the parameters equal the anchor; between syncs they are this worker's
    replica (evaluate the global model right after a sync, or call ``sync()``).

    Example::

        >>> inner = muonlab.create_optimizer(model, "muon", lr=0.02)
        >>> opt = DiLoCo(inner, outer_lr=0.7, outer_momentum=0.9, sync_every=30)
        >>> for x, y in data: loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
    """

    def __init__(
        self,
        inner_optimizer: torch.optim.Optimizer,
        outer_lr: float = 0.7,
        outer_momentum: float = 0.9,
        sync_every: int = 500,
        nesterov: bool = True,
        compression: str | Compressor | None = None,
        error_feedback: bool = True,
        error_decay: float = 0.9,
        *,
        compression_options: dict[str, Any] | None = None,
        faithful_double_lr: bool = False,
        requantize_after_reduce: bool = False,
        skip_vectors: bool = False,
        process_group: Any = None,
        local: bool = False,
        broadcast_init: bool = True,
    ) -> None:
        if not isinstance(inner_optimizer, torch.optim.Optimizer):
            raise TypeError(f"DiLoCo: inner_optimizer must be a torch.optim.Optimizer, got "
                            f"{type(inner_optimizer).__name__}")
        cfg, comp = _config(outer_lr, outer_momentum, sync_every, nesterov, compression, error_feedback,
                            error_decay, compression_options, faithful_double_lr, requantize_after_reduce,
                            skip_vectors)
        # Not Optimizer.__init__: the param groups (and lr schedules) are the inner optimizer's own.
        self.inner = inner_optimizer
        self.param_groups = inner_optimizer.param_groups
        self.defaults = inner_optimizer.defaults
        self.state = inner_optimizer.state
        self._init_hooks()

        self.group = None
        if not local and dist.is_available() and dist.is_initialized():
            group = process_group if process_group is not None else dist.group.WORLD
            if dist.get_world_size(group) > 1:
                self.group = group
        self.rank = dist.get_rank(self.group) if self.group is not None else 0
        self.world_size = dist.get_world_size(self.group) if self.group is not None else 1

        self._params = _unique_params(self.param_groups)
        if self.group is not None and broadcast_init:
            src = dist.get_global_rank(self.group, 0) if self.group is not dist.group.WORLD else 0
            with torch.no_grad():
                for p in self._params:
                    dist.broadcast(p.data, src=src, group=self.group)
        self.outer = _Outer(cfg, comp, self._params)
        self.anchor = [p.detach().clone() for p in self._params]
        self.momentum = [torch.zeros_like(p) for p in self._params]
        self.error = self.outer.new_errors(self._params)
        self.inner_steps = 0
        self.outer_steps = 0
        self.last_sync: dict[str, Any] = {}

    @property
    def config(self) -> OuterConfig:
        return self.outer.cfg

    @property
    def params(self) -> list[Tensor]:
        """The parameters in the order of ``anchor``, ``momentum`` and ``error``."""
        return list(self._params)

    @property
    def compressor(self) -> Compressor | None:
        return self.outer.comp

    def __repr__(self) -> str:
        c = self.config
        return (f"DiLoCo(outer_lr={c.outer_lr}, outer_momentum={c.outer_momentum}, sync_every={c.sync_every}, "
                f"nesterov={c.nesterov}, compression={self.compressor!r}, workers={self.world_size},\n"
                f"  inner={self.inner!r})")

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One inner step; after every ``sync_every``-th, the outer step (:meth:`sync`)."""
        loss = self.inner.step() if closure is None else self.inner.step(closure)
        self.inner_steps += 1
        if self.inner_steps % self.config.sync_every == 0:
            self.sync()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the inner optimizer; its parameters join the outer state (the current
        values become their anchor)."""
        self.inner.add_param_group(param_group)
        new = [p for p in _unique_params(self.param_groups) if all(p is not q for q in self._params)]
        comp = _Outer(self.config, self.compressor, new)
        self._params += new
        self.outer.compressed += comp.compressed
        self.anchor += [p.detach().clone() for p in new]
        self.momentum += [torch.zeros_like(p) for p in new]
        self.error += comp.new_errors(new)

    @torch.no_grad()
    def sync(self) -> None:
        """The outer step now: pseudo-gradients, (compression and) averaging over the workers,
        the outer SGD step on the anchor, and every parameter set to the new anchor."""
        K, bits = self.world_size, 0
        for i, p in enumerate(self._params):
            delta = self.anchor[i] - p
            if self.outer.compressed[i]:
                payload = self.outer.encode_(i, delta, self.error[i])
                bits += self.outer.wire_bits(i, payload, delta)
                comp = self.compressor
                if K == 1:
                    decoded = [comp.decompress(payload, delta)]
                else:
                    gathered = [[torch.empty_like(t) for _ in range(K)] for t in payload]
                    for out, t in zip(gathered, payload):
                        dist.all_gather(out, t.contiguous(), group=self.group)
                    decoded = [comp.decompress([g[r] for g in gathered], delta) for r in range(K)]
                g = mean_in_order(decoded)
            else:
                bits += self.outer.wire_bits(i, None, delta)
                if K > 1:
                    dist.all_reduce(delta, group=self.group)  # a sum; the mean is taken below
                g = delta.div_(K)
            self.outer.finish_(i, self.anchor[i], self.momentum[i], g)
            p.copy_(self.anchor[i])
        self.outer_steps += 1
        self.last_sync = {"outer_step": self.outer_steps, "inner_step": self.inner_steps, "wire_bits": bits}

    def state_dict(self) -> dict[str, Any]:
        return {
            "inner": self.inner.state_dict(),
            "outer": {
                "inner_steps": self.inner_steps,
                "outer_steps": self.outer_steps,
                "anchor": [t.clone() for t in self.anchor],
                "momentum": [t.clone() for t in self.momentum],
                "error": [None if t is None else t.clone() for t in self.error],
                "rank": self.rank,
                "world_size": self.world_size,
                "config": asdict(self.config),
                "compression": None if self.compressor is None else
                {"name": self.compressor.name, **self.compressor.options()},
            },
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        outer = state_dict["outer"]
        self.inner.load_state_dict(state_dict["inner"])
        with torch.no_grad():
            _copy_list_(self.anchor, outer["anchor"], "anchor")
            _copy_list_(self.momentum, outer["momentum"], "momentum")
            _copy_list_(self.error, outer["error"], "error")
        self.inner_steps = int(outer["inner_steps"])
        self.outer_steps = int(outer["outer_steps"])

    def __getstate__(self) -> dict[str, Any]:
        if self.group is not None:
            raise TypeError("a DiLoCo optimizer bound to a process group cannot be pickled; "
                            "save its state_dict() on each rank instead")
        # Like torch.optim.Optimizer: hooks and an LR scheduler's wrapper of ``step`` stay behind.
        return {k: v for k, v in self.__dict__.items() if k != "step" and not k.startswith("_optimizer_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Not Optimizer.__setstate__: it would write a "differentiable" key into the inner
        # optimizer's defaults (shared with this object).
        self.__dict__.update(state)
        self._init_hooks()

    def _init_hooks(self) -> None:
        for hooks in ("step_pre", "step_post", "state_dict_pre", "state_dict_post",
                      "load_state_dict_pre", "load_state_dict_post"):
            setattr(self, f"_optimizer_{hooks}_hooks", OrderedDict())
        self._patch_step_function()


# ---- MuLoCo --------------------------------------------------------------------------------------

#: The inner Muon of the MuLoCo-1 package (muloco/pytorch/muloco.py @ 33cc333): lr 0.02, momentum
#: μ = 0.95 accumulated (M ← μM + G), no Nesterov, You's 5-step table, bf16, update
#: ``√(fan_out/fan_in)·O`` ("spectral_norm"), weight decay 0.01 times the lr; AdamW for the rest
#: with the same lr, betas (0.9, 0.95), eps 1e-8, weight decay 0.01.
MULOCO_INNER = {
    "lr": 0.02,
    "momentum": 0.95,
    "momentum_form": "accumulate",
    "nesterov": False,
    "orthogonalizer": "you5",
    "adjust_lr_fn": "spectral_norm",
    "weight_decay": 0.01,
    "compute_dtype": "bfloat16",
}
MULOCO_ADAMW = {"betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.01}


def muloco_inner(model: nn.Module, *, adamw: dict[str, Any] | None = None, **muon: Any) -> HybridOptimizer:
    """The MuLoCo-1 package's inner optimizer for ``model`` (see :data:`MULOCO_INNER`).

    Routing as in the package's example trainer: parameters with ``ndim < 2`` or a name
    containing ``"emb"`` or ``"head"`` go to AdamW (same lr as Muon unless ``adamw`` sets one),
    2-D matrices to Muon, and larger tensors (conv filters) to Muon with ``matrix_view="flatten"``
    (the package instead treats the leading dimensions as a batch of matrices). ``muon`` and
    ``adamw`` override the defaults. Differences from the package: muonlab normalises by
    ``max(‖X‖_F, eps)`` (eps 1e-7) where it divides by ``‖X‖_F + 1e-8``.
    """
    hp = {**MULOCO_INNER, **muon}
    aux = {**MULOCO_ADAMW, "lr": hp["lr"], **(adamw or {})}
    mats, flat, others = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "emb" in name or "head" in name:
            others.append((name, p))
        elif p.ndim == 2:
            mats.append((name, p))
        else:
            flat.append((name, p))
    groups = []
    for params, extra in ((mats, {}), (flat, {"matrix_view": "flatten"})):
        if params:
            groups.append({"params": [p for _, p in params], "param_names": [n for n, _ in params],
                           "algorithm": "muon", **hp, **extra})
    if others:
        groups.append({"params": [p for _, p in others], "param_names": [n for n, _ in others],
                       "algorithm": "adamw", **aux})
    return HybridOptimizer(groups, "muon")


class MuLoCo(DiLoCo):
    """DiLoCo with MuLoCo-1's outer defaults: η_out = 0.7, μ = 0.6, Nesterov, H = 30 (bentherien/
    muloco-1 @ 33cc333; EXACT). The inner optimizer should be a Muon: :func:`muloco_inner` builds
    the package's one (or use :meth:`from_model`). For K > 1 workers the authors' torchtitan config
    uses η_out = 0.9, μ = 0.8 and inner Muon lr 0.044, μ 0.9 (facebookresearch/MuLoCo
    ``torchtitan/config/diloco/2x_4gpu_muloco.py``)."""

    def __init__(self, inner_optimizer: torch.optim.Optimizer, outer_lr: float = 0.7, outer_momentum: float = 0.6,
                 sync_every: int = 30, nesterov: bool = True, compression: str | Compressor | None = None,
                 error_feedback: bool = True, error_decay: float = 0.9, **kwargs: Any) -> None:
        super().__init__(inner_optimizer, outer_lr, outer_momentum, sync_every, nesterov, compression,
                         error_feedback, error_decay, **kwargs)

    @classmethod
    def from_model(cls, model: nn.Module, *, inner: dict[str, Any] | None = None, **outer: Any) -> MuLoCo:
        """``MuLoCo(muloco_inner(model, **inner), **outer)``."""
        return cls(muloco_inner(model, **(inner or {})), **outer)


# ---- K workers in one process -------------------------------------------------------------------


def _nuclear(t: Tensor) -> float:
    return float(torch.linalg.matrix_norm(t.reshape(t.shape[0], -1).double(), ord="nuc"))


class DiLoCoSimulator:
    """K DiLoCo workers in one process: ``model`` holds the global θ (the anchor); each worker has
    a deep copy of it (``replicas[k]``) and its own inner optimizer ``make_inner(replicas[k])``.

    A step: call ``backward()`` on each replica's loss (worker k on its share of the data, e.g.
    ``shard_batch(batch, k, K)``), then :meth:`step` (every worker's inner step; after every H-th,
    the outer step) and :meth:`zero_grad`; or :meth:`train_step` does all of it. The arithmetic is
    :class:`DiLoCo`'s, with worker k in the role of rank k, so K simulated workers equal K torchrun
    ranks. Deterministic: the workers run one after another in the order 0..K−1. Memory ≈ (K+2)×
    the parameters plus K inner states.

    ``diagnostics=True`` records, at each sync, the cosine between each worker's Δ_k and the mean
    Δ, and the ratio ‖Δ‖_* / mean_k ‖Δ_k‖_* summed over matrices ("interference": how much
    averaging shrinks the spectrum; MuLoCo, arXiv 2505.23725) in ``last_sync`` (SECONDARY).
    Other arguments are :class:`DiLoCo`'s.
    """

    def __init__(
        self,
        model: nn.Module,
        make_inner: Callable[[nn.Module], torch.optim.Optimizer],
        workers: int = 2,
        *,
        outer_lr: float = 0.7,
        outer_momentum: float = 0.9,
        sync_every: int = 500,
        nesterov: bool = True,
        compression: str | Compressor | None = None,
        error_feedback: bool = True,
        error_decay: float = 0.9,
        compression_options: dict[str, Any] | None = None,
        faithful_double_lr: bool = False,
        requantize_after_reduce: bool = False,
        skip_vectors: bool = False,
        diagnostics: bool = False,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"DiLoCoSimulator: invalid workers={workers!r}; expected an integer >= 1")
        cfg, comp = _config(outer_lr, outer_momentum, sync_every, nesterov, compression, error_feedback,
                            error_decay, compression_options, faithful_double_lr, requantize_after_reduce,
                            skip_vectors)
        self.model = model
        self.workers = workers
        self.replicas = [copy.deepcopy(model) for _ in range(workers)]
        self.inner = [make_inner(r) for r in self.replicas]
        self._global = [p for p in model.parameters() if p.requires_grad]
        self._local = [[p for p in r.parameters() if p.requires_grad] for r in self.replicas]
        self.outer = _Outer(cfg, comp, self._global)
        self.momentum = [torch.zeros_like(p) for p in self._global]
        self.error = [self.outer.new_errors(self._global) for _ in range(workers)]
        self.diagnostics = diagnostics
        self.inner_steps = 0
        self.outer_steps = 0
        self.last_sync: dict[str, Any] = {}

    @property
    def config(self) -> OuterConfig:
        return self.outer.cfg

    def step(self) -> None:
        for opt in self.inner:
            opt.step()
        self.inner_steps += 1
        if self.inner_steps % self.config.sync_every == 0:
            self.sync()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.inner:
            opt.zero_grad(set_to_none=set_to_none)

    def train_step(self, batch: Any, loss_fn: Callable[[nn.Module, Any], Tensor]) -> float:
        """Worker k trains on ``shard_batch(batch, k, K)`` (``loss_fn(replica, shard)``); returns the
        mean of the workers' losses."""
        losses = []
        for k, replica in enumerate(self.replicas):
            loss = loss_fn(replica, shard_batch(batch, k, self.workers))
            loss.backward()
            losses.append(float(loss.detach()))
        self.step()
        self.zero_grad()
        return sum(losses) / len(losses)

    @torch.no_grad()
    def sync(self) -> None:
        cos_num = [0.0] * self.workers
        cos_den = [0.0] * self.workers
        nuc_mean, nuc_workers, mean_sq, bits = 0.0, 0.0, 0.0, 0
        for i, anchor in enumerate(self._global):
            deltas = [anchor - local[i] for local in self._local]
            if self.diagnostics:
                raw = mean_in_order(deltas)
                mean_sq += float(raw.double().square().sum())
                for k, d in enumerate(deltas):
                    cos_num[k] += float((d.double() * raw.double()).sum())
                    cos_den[k] += float(d.double().square().sum())
                if anchor.ndim >= 2:
                    nuc_mean += _nuclear(raw)
                    nuc_workers += sum(_nuclear(d) for d in deltas) / self.workers
            if self.outer.compressed[i]:
                decoded = []
                for k, d in enumerate(deltas):
                    payload = self.outer.encode_(i, d, self.error[k][i])
                    bits += self.outer.wire_bits(i, payload, d)
                    decoded.append(self.outer.comp.decompress(payload, d))
            else:
                decoded = deltas
                bits += sum(self.outer.wire_bits(i, None, d) for d in deltas)
            g = mean_in_order(decoded)
            self.outer.finish_(i, anchor, self.momentum[i], g)
            for local in self._local:
                local[i].copy_(anchor)
        self.outer_steps += 1
        self.last_sync = {"outer_step": self.outer_steps, "inner_step": self.inner_steps,
                          "wire_bits": bits // self.workers}
        if self.diagnostics:
            norm = math.sqrt(mean_sq)
            self.last_sync["cosine"] = [n / (math.sqrt(d) * norm) if d > 0 and norm > 0 else float("nan")
                                        for n, d in zip(cos_num, cos_den)]
            self.last_sync["nuclear_ratio"] = nuc_mean / nuc_workers if nuc_workers > 0 else float("nan")

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bitwise: the global parameters, each worker's replica
        parameters, inner state and residuals, the outer momentum and the counters."""
        return {
            "inner_steps": self.inner_steps,
            "outer_steps": self.outer_steps,
            "global": [p.detach().clone() for p in self._global],
            "momentum": [t.clone() for t in self.momentum],
            "workers": [
                {"params": [p.detach().clone() for p in self._local[k]],
                 "inner": self.inner[k].state_dict(),
                 "error": [None if t is None else t.clone() for t in self.error[k]]}
                for k in range(self.workers)
            ],
            "config": asdict(self.config),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if len(state_dict["workers"]) != self.workers:
            raise ValueError(f"load_state_dict: the checkpoint has {len(state_dict['workers'])} workers, "
                             f"this simulator {self.workers}")
        with torch.no_grad():
            _copy_list_(self._global, state_dict["global"], "global")
            _copy_list_(self.momentum, state_dict["momentum"], "momentum")
            for k, w in enumerate(state_dict["workers"]):
                _copy_list_(self._local[k], w["params"], f"workers[{k}].params")
                _copy_list_(self.error[k], w["error"], f"workers[{k}].error")
        for k, w in enumerate(state_dict["workers"]):
            self.inner[k].load_state_dict(w["inner"])
        self.inner_steps = int(state_dict["inner_steps"])
        self.outer_steps = int(state_dict["outer_steps"])


__all__ = [
    "COMPRESSORS",
    "MULOCO_ADAMW",
    "MULOCO_INNER",
    "Cast",
    "Compressor",
    "DiLoCo",
    "DiLoCoSimulator",
    "LinearQuant",
    "MuLoCo",
    "OuterConfig",
    "RankK",
    "StatisticalQuant",
    "TopK",
    "encode_",
    "make_compressor",
    "mean_in_order",
    "muloco_inner",
    "outer_sgd_",
]
