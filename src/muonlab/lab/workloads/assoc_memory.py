"""assoc_memory: a linear associative memory with Gaussian embeddings and power-law key frequencies.

Workload of claims 15–16, our reconstruction of the setting of Kim, Nichani, Wu, Bietti and Lee,
"Sharp Capacity Scaling of Spectral Optimizers in Learning Associative Memory" (arXiv 2603.26554).
Only the abstract and the stated setting were available to us (no body, no code), so the model
below is a **reconstruction** [RECON] and the sizes are our choices [GUESS]:

* keys ``i ∈ [N]``, values ``j ∈ [M]`` (``M = N``), target map ``f`` (identity by default; the
  ``target="random"`` knob draws ``f(i)`` uniformly from ``[M]``);
* fixed (not trained) embeddings ``e_i, u_j ~ N(0, I_d/d)``, the columns of ``E ∈ R^{d×N}`` and
  ``U ∈ R^{d×M}``; Gaussian, not orthogonal, so ``N ≫ d`` associations can be stored;
* key frequencies ``p_i = i^{−α} / Σ_k k^{−α}`` (power law, default α = 1.5);
* the memory ``W ∈ R^{d×d}`` scores value ``j`` for key ``i`` as ``z_j(i) = u_jᵀ W e_i``; the loss
  is the multinomial logistic ("logistic regression") loss ``E_{i∼p}[−log softmax_j z(i) at f(i)]``;
* ``W₀ = 0`` by default (the paper analyses steps from zero); ``init_scale > 0`` draws
  ``W₀ ~ N(0, init_scale²)`` entries from the run's seed instead.

A minibatch of ``B`` keys drawn i.i.d. from ``p`` enters the gradient only through its empirical
frequencies ``c_i = (#copies of i)/B``::

    G = Σ_i c_i Σ_j (softmax_j z(i) − 1[j = f(i)]) u_j e_iᵀ = U (P − Y) diag(c) Eᵀ

The pure functions here are the model (embeddings, frequencies, the closed-form gradient, recovery
and its summaries); :mod:`muonlab.claims.memory` builds its one-step and few-step experiments on
them, and :class:`AssocMemory` exposes the same model to the lab's runner (``muonlab run``/``sweep``),
where any registered optimizer trains ``W`` by autograd on the same loss.

**Recovery**: key ``i`` is recovered when its target strictly beats every other value,
``u_{f(i)}ᵀ W e_i > max_{j≠f(i)} u_jᵀ W e_i`` (ties, e.g. at ``W = 0``, are not recoveries).
**Capacity** = number of recovered keys; **frequency-weighted error** = ``Σ_i p_i (1 − recovered(i))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..workload import Workload

# ---- the model as pure functions (shared with muonlab.claims.memory) ---------------------------------


def power_law(n: int, alpha: float) -> Tensor:
    """Key frequencies ``p_i = i^{−α} / Σ_{k≤n} k^{−α}`` for ``i = 1..n`` (float64, sums to 1)."""
    if n < 1 or alpha <= 0:
        raise ValueError(f"power_law needs n >= 1 and alpha > 0, got n={n}, alpha={alpha}")
    p = torch.arange(1, n + 1, dtype=torch.float64) ** (-float(alpha))
    return p / p.sum()


def embeddings(d: int, n_keys: int, n_values: int, seed: int) -> tuple[Tensor, Tensor]:
    """Key and value embeddings ``E ∈ R^{d×N}``, ``U ∈ R^{d×M}`` with i.i.d. ``N(0, 1/d)`` entries
    (so ``‖e_i‖ ≈ 1``), float64 on the CPU, deterministic in ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    e = torch.randn(d, n_keys, generator=g, dtype=torch.float64) / math.sqrt(d)
    u = torch.randn(d, n_values, generator=g, dtype=torch.float64) / math.sqrt(d)
    return e, u


def batch_frequencies(p: Tensor, batch: int, rng: np.random.Generator) -> Tensor:
    """Empirical frequencies ``c_i = (#copies of key i)/B`` of ``B`` keys drawn i.i.d. from ``p``
    (multinomial counts: the exact law of the i.i.d. batch, at O(N) cost)."""
    return torch.from_numpy(rng.multinomial(int(batch), p.numpy()) / float(batch))


def nested_frequencies(p: Tensor, batches: Sequence[int], rng: np.random.Generator) -> list[Tensor]:
    """Frequencies of the first ``B_1 < B_2 < …`` keys of one i.i.d. stream from ``p``: each batch
    contains the previous one (counts add multinomial increments), which couples the batch sizes
    and smooths an error-vs-batch curve without changing any single batch's law."""
    counts = np.zeros(len(p), dtype=np.int64)
    prev, out = 0, []
    for b in batches:
        if b < prev:
            raise ValueError(f"nested_frequencies needs increasing batch sizes, got {list(batches)}")
        counts = counts + rng.multinomial(int(b) - prev, p.numpy())
        prev = int(b)
        out.append(torch.from_numpy(counts / float(b)))
    return out


def gradient_at_zero(e: Tensor, u: Tensor, c: Tensor, f: Tensor | None = None) -> Tensor:
    """The loss gradient at ``W = 0`` for batch frequencies ``c``: all logits are 0, the softmax is
    uniform ``1/M``, so ``G = Σ_i c_i (ū − u_{f(i)}) e_iᵀ = ū (E c)ᵀ − U_f diag(c) Eᵀ``.
    Memory O(d·N), independent of the batch size."""
    uf = u if f is None else u[:, f]
    c = c.to(e)
    ubar = u.mean(dim=1, keepdim=True)
    return ubar @ (e @ c)[None, :] - (uf * c) @ e.T


def gradient(w: Tensor, e: Tensor, u: Tensor, c: Tensor, f: Tensor | None = None, chunk: int = 4096) -> Tensor:
    """The multinomial-logistic gradient ``G = U (P − Y) diag(c) Eᵀ`` at any ``W``, over the keys
    present in the batch (``c_i > 0``), in chunks of ``chunk`` keys: memory O(chunk·M)."""
    keys = torch.nonzero(c > 0).flatten()
    g = torch.zeros_like(w)
    uw = u.T @ w                                                  # M × d
    for s in range(0, len(keys), chunk):
        k = keys[s:s + chunk].to(e.device)
        ek = e[:, k]
        prob = torch.softmax(uw @ ek, dim=0)                      # M × K
        tgt = k if f is None else f[k]
        prob[tgt, torch.arange(len(k), device=e.device)] -= 1.0
        g += u @ (prob * c.to(e)[k]) @ ek.T
    return g


def recovered(w: Tensor, e: Tensor, u: Tensor, f: Tensor | None = None, *,
              dtype: torch.dtype = torch.float32, chunk: int = 2048) -> Tensor:
    """``recovered(i) = 1[u_{f(i)}ᵀ W e_i > max_{j≠f(i)} u_jᵀ W e_i]`` for every key (bool, length N).

    A strict argmax: ties (e.g. every key at ``W = 0``) are not recovered. Scores are computed as
    ``(Uᵀ W) E_chunk`` in ``dtype`` (float32 by default: a rounding-level tie flips a key only when
    its margin is ~1e-7 of the scores), in key chunks of ``chunk`` (memory O(chunk·M))."""
    n = e.shape[1]
    f = torch.arange(n, device=e.device) if f is None else f.to(e.device)
    a = (u.T @ w).to(dtype)                                       # M × d
    out = torch.empty(n, dtype=torch.bool, device=e.device)
    for s in range(0, n, chunk):
        sl = slice(s, min(s + chunk, n))
        sc = a @ e[:, sl].to(dtype)                               # M × chunk
        cols = torch.arange(sc.shape[1], device=e.device)
        tgt = sc[f[sl], cols].clone()
        sc[f[sl], cols] = -torch.inf
        out[sl] = tgt > sc.max(dim=0).values
    return out


def weighted_error(rec: Tensor, p: Tensor) -> float:
    """Frequency-weighted error ``Σ_i p_i (1 − recovered(i))`` (1 when nothing is recovered)."""
    return float((p * (~rec.cpu()).to(p.dtype)).sum())


def capacity(rec: Tensor) -> int:
    """Number of recovered keys."""
    return int(rec.sum())


def prefix_capacity(rec: Tensor) -> int:
    """Largest ``k`` such that keys ``1..k`` (the ``k`` most frequent) are all recovered."""
    miss = torch.nonzero(~rec.cpu()).flatten()
    return int(miss[0]) if len(miss) else len(rec)


def population_loss(w: Tensor, e: Tensor, u: Tensor, p: Tensor, f: Tensor | None = None, chunk: int = 2048) -> float:
    """``L(W) = Σ_i p_i · (−log softmax_j u_jᵀ W e_i at f(i))`` over every key (float64, chunked)."""
    n = e.shape[1]
    f = torch.arange(n, device=e.device) if f is None else f.to(e.device)
    a = w.to(e.dtype).T @ u                                       # d × M: logits of key i = e_iᵀ a
    total = 0.0
    for s in range(0, n, chunk):
        sl = slice(s, min(s + chunk, n))
        ce = F.cross_entropy(e[:, sl].T @ a, f[sl], reduction="none")
        total += float((p[sl].to(ce) * ce).sum())
    return total


# ---- the lab workload -----------------------------------------------------------------------------


class _Memory(nn.Module):
    """Holds the trainable ``W`` as ``W.weight`` (a bias-free ``d×d`` linear map: ``W(x) = x Wᵀ``)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.W = nn.Linear(d, d, bias=False)

    def forward(self, keys_embedded: Tensor, values: Tensor) -> Tensor:
        """Logits ``z_j(i) = u_jᵀ W e_i`` for the rows ``e_iᵀ`` of ``keys_embedded`` (K × M)."""
        return self.W(keys_embedded) @ values


@dataclass
class AssocMemory(Workload):
    """Linear associative memory (arXiv 2603.26554, our reconstruction): learn ``W`` so that
    ``argmax_j u_jᵀ W e_i = f(i)`` for keys drawn with power-law frequencies.

    Knobs:
        d: embedding dimension; ``W`` is ``d × d`` (default 64).
        keys_per_dim: ``N = M = keys_per_dim · d`` keys and values (default 16, so N ≫ d [GUESS]).
        alpha: power-law exponent of the key frequencies (default 1.5; the paper needs α > 1).
        batch_size: keys per training batch, drawn i.i.d. from ``p`` (default 256 [GUESS]).
        instance: seed of the embeddings (and of a random ``f``); the run's ``seed`` sets ``W₀``
            and the batches (default 0).
        target: ``"identity"`` (``f(i) = i``, default) or ``"random"`` (``f(i)`` uniform in [M]).
        init_scale: standard deviation of ``W₀``'s entries (default 0: ``W₀ = 0`` as analysed).

    Metrics: ``val/weighted_error`` (headline), ``val/capacity``, ``val/prefix_capacity``,
    ``val/recovered_frac`` and ``val/loss`` (the population loss, exact over all keys).
    """

    name = "assoc_memory"
    description = "linear associative memory, Gaussian embeddings, power-law keys (claims 15-16)"
    default_steps = 300
    eval_every = 25
    metric = "val/weighted_error"
    params_name: ClassVar[str] = "W.weight"

    d: int = 64
    keys_per_dim: int = 16
    alpha: float = 1.5
    batch_size: int = 256
    instance: int = 0
    target: str = "identity"
    init_scale: float = 0.0

    def __post_init__(self) -> None:
        if min(self.d, self.keys_per_dim, self.batch_size) < 1 or not self.alpha > 0:
            raise ValueError(f"assoc_memory: need d, keys_per_dim, batch_size >= 1 and alpha > 0; got d={self.d}, "
                             f"keys_per_dim={self.keys_per_dim}, batch_size={self.batch_size}, alpha={self.alpha}")
        if self.target not in ("identity", "random"):
            raise ValueError(f"assoc_memory: target={self.target!r} must be 'identity' or 'random'")
        if not self.init_scale >= 0:
            raise ValueError(f"assoc_memory: init_scale={self.init_scale} must be >= 0")

    @property
    def n_keys(self) -> int:
        return self.keys_per_dim * self.d

    def setup(self, device: torch.device) -> None:
        """``E``, ``U`` (float64, on ``device``), ``p`` (float64, CPU) and ``f`` (None for identity)."""
        self.device = device
        n = self.n_keys
        e, u = embeddings(self.d, n, n, self.instance)
        self.E, self.U, self.p = e.to(device), u.to(device), power_law(n, self.alpha)
        self.f = None
        if self.target == "random":
            g = torch.Generator().manual_seed(int(self.instance) + 1)  # independent of the embeddings
            self.f = torch.randint(0, n, (n,), generator=g).to(device)
        self._cast: dict[torch.dtype, tuple[Tensor, Tensor]] = {}

    def _embeddings(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        if dtype not in self._cast:  # E and U in the model's dtype, once
            self._cast[dtype] = (self.E.T.to(dtype).contiguous(), self.U.to(dtype))
        return self._cast[dtype]

    def build_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = _Memory(self.d)
        if self.init_scale > 0:
            nn.init.normal_(model.W.weight, std=self.init_scale)
        else:
            nn.init.zeros_(model.W.weight)
        return model

    def get_batch(self, gen: torch.Generator) -> Tensor:
        """``batch_size`` key indices drawn i.i.d. from ``p`` with ``gen``."""
        return torch.multinomial(self.p, self.batch_size, replacement=True, generator=gen).to(self.device)

    def loss(self, model: nn.Module, batch: Tensor) -> Tensor:
        """The minibatch loss ``Σ_i c_i · CE(z(i), f(i))``, computed once per distinct key (memory
        O(distinct keys · M)); equal to the mean cross-entropy over the ``B`` drawn keys."""
        keys, counts = torch.unique(batch, return_counts=True)
        Et, U = self._embeddings(model.W.weight.dtype)
        logits = model(Et[keys], U)
        tgt = keys if self.f is None else self.f[keys]
        ce = F.cross_entropy(logits, tgt, reduction="none")
        return (ce * counts.to(ce.dtype)).sum() / batch.numel()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        w = model.W.weight.detach().to(self.E.dtype)
        rec = recovered(w, self.E, self.U, self.f)
        return {"val/loss": population_loss(w, self.E, self.U, self.p, self.f),
                "val/weighted_error": weighted_error(rec, self.p),
                "val/capacity": float(capacity(rec)),
                "val/prefix_capacity": float(prefix_capacity(rec)),
                "val/recovered_frac": capacity(rec) / self.n_keys}

    def gradient(self, W: Tensor, batch: Tensor) -> Tensor:
        """The closed-form gradient of :meth:`loss` at ``W`` (float64), via :func:`gradient`."""
        c = torch.bincount(batch.cpu(), minlength=self.n_keys).to(torch.float64) / batch.numel()
        return gradient(W.to(self.E.dtype), self.E, self.U, c, self.f)

    def routing(self) -> dict:
        # W is the only parameter and the memory itself, not an output layer.
        return {"roles": {self.params_name: "hidden"}}

    def info(self) -> dict:
        return {"keys": self.n_keys, "values": self.n_keys}
