"""Ringmaster ASGD and Ringmaster LMO: n asynchronous workers simulated in one process.

The rule (per arriving gradient ``g = ∇f(x_{k−δ}; ξ)``, computed by worker i at the iterate of
version ``k − δ``; ``k`` counts the server's accepted updates)::

    if δ < R_k:                        accepted
        Ringmaster ASGD:   x ← x − γ_k g
        Ringmaster LMO:    m ← (1 − α_k) m + α_k g ;   x ← x + η_k · lmo(m)
        k ← k + 1
    else:                              discarded (too stale)
    worker i restarts at the current x

``lmo(y) ∈ argmin_{‖u‖≤1} ⟨y, u⟩``: for a matrix ``−s(m, n)·polar(y)`` (Muon's, with the library's
shape scale ``s``; polar by :func:`muonlab.matfn.orthogonalize`); for tensors with < 2 dimensions
``−sign(y)`` (ℓ∞ ball, default), ``−y/‖y‖₂`` (ℓ2 ball) or ``−y/(√v̂ + ε)`` (an AdamW-like step fed
by the same accepted gradients, for hybrid models).

Sources and certainty:

* Ringmaster ASGD: Maranjyan, Tyurin, Richtárik, "Ringmaster ASGD: The First Asynchronous SGD with
  Optimal Time Complexity", ICML 2025, arXiv 2501.16168 — asynchronous SGD that ignores gradients
  whose delay reaches the threshold R. SECONDARY (abstract, OpenReview TL;DR); the acceptance test
  ``δ < R`` (R = 1: only fresh gradients; R = ∞: plain ASGD) is our reading.
* Ringmaster LMO: Sadiev, Maranjyan, Ilin, Richtárik, arXiv 2605.18174 — the same delay threshold
  with a momentum LMO (Muon/Scion-style) server step, under (L0, L1)-smoothness. SECONDARY
  (abstract and a third-party summary). Its parameter-agnostic variant (decreasing steps, growing
  thresholds) is given only by its existence: :func:`parameter_agnostic` returns placeholder
  schedules ``η_k = η₀(k+1)^{−3/4}``, ``α_k = (k+1)^{−1/2}``, ``R_k = ⌈R₀(k+1)^{1/2}⌉`` — GUESS.
  The vector LMOs and the "adam" option are RECON.
* The simulator is ours (RECON): an event queue keyed by ``(finish_time, worker)`` (ties go to the
  lower worker id). A worker computes its gradient when its job *starts* and delivers it at
  ``start + τ``; this equals computing it at the stored stale iterate, with n stored gradients
  instead of R stored iterates. Job times come from a :class:`TimeModel`; every random draw (job
  times, each job's data seed) comes from ``seed``, so a run is reproducible.

Baselines in the same harness: ``mode="sync"`` (each round waits for all n workers, averages their n
gradients, ``T += max_i τ_i``, one server step), ``threshold=math.inf`` (plain ASGD) and
``threshold=1`` (only gradients computed at the current iterate).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..matfn import orthogonalize
from ..optim.steps import shape_scale

# ---- compute-time models ------------------------------------------------------------------------


class TimeModel:
    """Time a worker's job takes: ``draw(worker, rng) -> seconds`` (``rng``: numpy Generator)."""

    n: int

    def draw(self, worker: int, rng: np.random.Generator) -> float:
        raise NotImplementedError


@dataclass
class FixedTimes(TimeModel):
    """Worker i always takes ``taus[i]``."""

    taus: Sequence[float]

    def __post_init__(self) -> None:
        self.taus = [float(t) for t in self.taus]
        if not self.taus or any(not (t >= 0 and math.isfinite(t)) for t in self.taus):
            raise ValueError(f"FixedTimes: invalid taus={self.taus!r}; expected finite times >= 0")
        self.n = len(self.taus)

    def draw(self, worker: int, rng: np.random.Generator) -> float:
        return self.taus[worker]


@dataclass
class ExponentialTimes(TimeModel):
    """Worker i's job time ~ Exp(mean ``means[i]``), redrawn for every job."""

    means: Sequence[float]

    def __post_init__(self) -> None:
        self.means = [float(t) for t in self.means]
        if not self.means or any(not (t > 0 and math.isfinite(t)) for t in self.means):
            raise ValueError(f"ExponentialTimes: invalid means={self.means!r}; expected finite means > 0")
        self.n = len(self.means)

    def draw(self, worker: int, rng: np.random.Generator) -> float:
        return float(rng.exponential(self.means[worker]))


def heterogeneous_times(n: int, s: float = 0.5, *, base: float = 1.0, random: bool = False) -> TimeModel:
    """``τ_i = base·i^s`` for workers i = 1..n (s = 0: homogeneous; s = 1: linear spread), fixed or
    as exponential means."""
    taus = [base * (i + 1) ** s for i in range(n)]
    return ExponentialTimes(taus) if random else FixedTimes(taus)


# ---- server rules -------------------------------------------------------------------------------


def _schedule(value: float | Callable[[int], float], name: str) -> Callable[[int], float]:
    if callable(value):
        return value
    if not (isinstance(value, (int, float)) and value >= 0):
        raise ValueError(f"invalid {name}={value!r}; expected a number >= 0 or a function of k")
    return lambda k: value


class ServerRule:
    """How the server applies an accepted gradient. ``apply_(params, grads, k)`` updates the
    parameters (and the rule's state) in place; ``k`` is the number of updates before this one."""

    def apply_(self, params: list[Tensor], grads: list[Tensor], k: int) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class SGDServer(ServerRule):
    """Ringmaster ASGD's step ``x ← x − γ_k g`` (``lr``: γ, a number or a function of k)."""

    def __init__(self, lr: float | Callable[[int], float] = 0.1) -> None:
        self.lr = _schedule(lr, "lr")

    def apply_(self, params, grads, k):
        lr = self.lr(k)
        for p, g in zip(params, grads):
            p.add_(g, alpha=-lr)


def lmo(m: Tensor, *, orthogonalizer: str = "newton_schulz", adjust_lr_fn: str | None = "original",
        vector: str = "sign", v_hat: Tensor | None = None, eps: float = 1e-8,
        compute_dtype: torch.dtype | None = torch.bfloat16) -> Tensor:
    """A minimiser of ``⟨m, u⟩`` over the unit ball of the layer's norm (see the module docstring).
    Matrices (and tensors with more dimensions, flattened to ``shape[0] × rest``): ``−s·polar(m)``."""
    if m.ndim >= 2:
        mat = m.reshape(m.shape[0], -1)
        o = orthogonalize(mat, orthogonalizer, compute_dtype=compute_dtype)
        return o.mul_(-shape_scale(mat.shape[0], mat.shape[1], adjust_lr_fn)).reshape(m.shape)
    if vector == "sign":
        return -torch.sign(m)
    if vector == "l2":
        n = torch.linalg.vector_norm(m)
        return -m / n if n > 0 else torch.zeros_like(m)
    if vector == "adam":
        if v_hat is None:
            raise ValueError("lmo: vector='adam' needs v_hat")
        return -m / (v_hat.sqrt() + eps)
    raise ValueError(f"unknown vector LMO {vector!r}; choose 'sign', 'l2' or 'adam'")


class LMOServer(ServerRule):
    """Ringmaster LMO's step ``m ← (1−α_k)m + α_k g;  x ← x + η_k·lmo(m)``.

    Args:
        lr: η (radius of the LMO step), a number or a function of k (default 0.02).
        alpha: α ∈ (0, 1], the weight on the new gradient (default 0.1, i.e. momentum 0.9).
        orthogonalizer: polar factor method for matrices (default "newton_schulz"; "svd" exact).
        adjust_lr_fn: shape scale of matrix LMOs (default "original", Muon's √max(1, m/n)).
        vector: LMO of tensors with < 2 dimensions: "sign" (default), "l2" or "adam" (RECON).
        beta2, eps: the "adam" option's second-moment EMA (0.95) and ε (1e-8).
        compute_dtype: dtype of the Newton–Schulz iteration (default bf16; None: the tensor's).
    """

    def __init__(self, lr: float | Callable[[int], float] = 0.02, alpha: float | Callable[[int], float] = 0.1, *,
                 orthogonalizer: str = "newton_schulz", adjust_lr_fn: str | None = "original",
                 vector: str = "sign", beta2: float = 0.95, eps: float = 1e-8,
                 compute_dtype: torch.dtype | None = torch.bfloat16) -> None:
        self.lr = _schedule(lr, "lr")
        self.alpha = _schedule(alpha, "alpha")
        if vector not in ("sign", "l2", "adam"):
            raise ValueError(f"LMOServer: unknown vector={vector!r}; choose 'sign', 'l2' or 'adam'")
        self.orthogonalizer, self.adjust_lr_fn, self.vector = orthogonalizer, adjust_lr_fn, vector
        self.beta2, self.eps, self.compute_dtype = beta2, eps, compute_dtype
        self.m: list[Tensor] | None = None
        self.v: list[Tensor | None] | None = None
        self.t = 0

    def apply_(self, params, grads, k):
        if self.m is None:
            self.m = [torch.zeros_like(p) for p in params]
            self.v = [torch.zeros_like(p) if p.ndim < 2 and self.vector == "adam" else None for p in params]
        a, lr = self.alpha(k), self.lr(k)
        if not 0 < a <= 1:
            raise ValueError(f"LMOServer: alpha={a!r} at k={k}; expected 0 < alpha <= 1")
        self.t += 1
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m.lerp_(g, a)
            v_hat = None
            if v is not None:
                v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
                v_hat = v / (1 - self.beta2**self.t)
            u = lmo(m, orthogonalizer=self.orthogonalizer, adjust_lr_fn=self.adjust_lr_fn, vector=self.vector,
                    v_hat=v_hat, eps=self.eps, compute_dtype=self.compute_dtype)
            p.add_(u.to(p.dtype), alpha=lr)

    def state_dict(self):
        return {"m": self.m, "v": self.v, "t": self.t}

    def load_state_dict(self, state):
        self.m, self.v, self.t = state["m"], state["v"], state["t"]


def parameter_agnostic(lr0: float, threshold0: float = 1.0) -> dict[str, Callable[[int], float]]:
    """Placeholder schedules of the parameter-agnostic Ringmaster LMO [GUESS]:
    ``lr(k) = lr0·(k+1)^{−3/4}``, ``alpha(k) = (k+1)^{−1/2}``, ``threshold(k) = ⌈R₀(k+1)^{1/2}⌉``."""
    return {
        "lr": lambda k: lr0 * (k + 1) ** -0.75,
        "alpha": lambda k: (k + 1) ** -0.5,
        "threshold": lambda k: math.ceil(threshold0 * (k + 1) ** 0.5),
    }


# ---- the simulator ------------------------------------------------------------------------------


@dataclass
class Arrival:
    """One delivered gradient: when, from whom, computed at which version, how stale, and the
    version after the server processed it."""

    time: float
    worker: int
    start_version: int
    delay: int
    accepted: bool
    version: int
    seed: int


@dataclass
class RingmasterLog:
    """What a run recorded. ``staleness``: delay → count over all arrivals;
    ``accepted_staleness``: the same for accepted ones; ``losses``: ``(time, version, loss)``."""

    arrivals: list[Arrival] = field(default_factory=list)
    losses: list[tuple[float, int, float]] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(a.accepted for a in self.arrivals)

    @property
    def discarded(self) -> int:
        return sum(not a.accepted for a in self.arrivals)

    @property
    def staleness(self) -> Counter:
        return Counter(a.delay for a in self.arrivals)

    @property
    def accepted_staleness(self) -> Counter:
        return Counter(a.delay for a in self.arrivals if a.accepted)


GradFn = Callable[[list[Tensor], torch.Generator, int], Sequence[Tensor]]


class RingmasterSimulator:
    """n asynchronous workers, one server, simulated time; see the module docstring for the rule.

    Args:
        params: the iterate x (tensors updated in place; e.g. ``list(model.parameters())``).
        grad_fn: ``grad_fn(params, generator, worker) -> gradients`` (one per parameter): a
            stochastic gradient at ``params`` with its data drawn from ``generator`` (a
            ``torch.Generator`` seeded per job). It must not modify ``params``; the result is copied.
        times: a :class:`TimeModel` (its ``n`` is the number of workers) or a list of fixed times.
        threshold: R, a number (``math.inf``: plain ASGD) or a function of k; a gradient of delay δ
            is applied iff ``δ < R_k`` (default ``math.inf``).
        server: a :class:`ServerRule` (default ``LMOServer()``; ``SGDServer(lr)`` is Ringmaster ASGD).
        mode: ``"async"`` (default) or ``"sync"`` (the synchronous baseline).
        seed: every random draw derives from it.
        loss_fn: ``loss_fn(params) -> float`` recorded at the start and every ``eval_every``
            accepted updates (optional).
    """

    def __init__(self, params: Sequence[Tensor], grad_fn: GradFn, times: TimeModel | Sequence[float], *,
                 threshold: float | Callable[[int], float] = math.inf, server: ServerRule | None = None,
                 mode: str = "async", seed: int = 0, loss_fn: Callable[[list[Tensor]], float] | None = None,
                 eval_every: int = 1) -> None:
        self.params = list(params)
        self.grad_fn = grad_fn
        self.times = times if isinstance(times, TimeModel) else FixedTimes(times)
        if callable(threshold):
            self.threshold = threshold
        elif isinstance(threshold, (int, float)) and threshold >= 1:
            self.threshold = lambda k: threshold
        else:
            raise ValueError(f"RingmasterSimulator: invalid threshold={threshold!r}; expected R >= 1 "
                             "(math.inf for plain ASGD) or a function of k")
        if mode not in ("async", "sync"):
            raise ValueError(f"RingmasterSimulator: unknown mode={mode!r}; choose 'async' or 'sync'")
        if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
            raise ValueError(f"RingmasterSimulator: invalid eval_every={eval_every!r}; expected an integer >= 1")
        self.server = server if server is not None else LMOServer()
        self.mode, self.seed, self.loss_fn, self.eval_every = mode, seed, loss_fn, eval_every
        time_seq, job_seq = np.random.SeedSequence(seed).spawn(2)
        self._time_rng = np.random.default_rng(time_seq)
        self._job_rng = np.random.default_rng(job_seq)
        self.n = self.times.n
        self.k = 0          # accepted updates (the server's version)
        self.time = 0.0     # simulated clock
        self.log = RingmasterLog()
        self._queue: list[tuple[float, int, int, int, list[Tensor]]] = []
        self._started = False

    # one job: draw its data seed and time, compute its gradient at the current iterate
    def _start_job(self, worker: int, now: float) -> tuple[float, int, int, int, list[Tensor]]:
        seed = int(self._job_rng.integers(2**62))
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            grads = [g.detach().clone() for g in self.grad_fn([p.detach() for p in self.params], gen, worker)]
        if len(grads) != len(self.params):
            raise ValueError(f"grad_fn returned {len(grads)} gradients for {len(self.params)} parameters")
        return now + self.times.draw(worker, self._time_rng), worker, self.k, seed, grads

    def _record_loss(self) -> None:
        if self.loss_fn is not None and self.k % self.eval_every == 0:
            with torch.no_grad():
                self.log.losses.append((self.time, self.k, float(self.loss_fn(self.params))))

    @torch.no_grad()
    def _apply(self, grads: list[Tensor]) -> None:
        self.server.apply_(self.params, grads, self.k)
        self.k += 1
        self._record_loss()

    def run(self, *, max_updates: int | None = None, max_time: float | None = None,
            max_arrivals: int | None = None) -> RingmasterLog:
        """Advance until one limit is reached: ``max_updates`` accepted updates (in total),
        simulated time ``max_time`` (no arrival after it is processed), or ``max_arrivals``
        further gradient deliveries. Can be called again to continue."""
        if max_updates is None and max_time is None and max_arrivals is None:
            raise ValueError("run: give max_updates, max_time or max_arrivals")
        if not self._started:
            self._started = True
            self._record_loss()
            if self.mode == "async":
                for w in range(self.n):
                    job = self._start_job(w, 0.0)
                    heapq.heappush(self._queue, job)
        arrived = 0
        while True:
            if max_updates is not None and self.k >= max_updates:
                break
            if max_arrivals is not None and arrived >= max_arrivals:
                break
            if self.mode == "sync":
                jobs = [self._start_job(w, self.time) for w in range(self.n)]
                finish = max(j[0] for j in jobs)
                if max_time is not None and finish > max_time:
                    break
                self.time = finish
                for _, w, start, seed, _ in jobs:
                    self.log.arrivals.append(Arrival(finish, w, start, 0, True, self.k + 1, seed))
                mean = [torch.stack([j[4][i] for j in jobs]).mean(0) for i in range(len(self.params))]
                self._apply(mean)
                arrived += self.n
                continue
            finish, w, start, seed, grads = self._queue[0]
            if max_time is not None and finish > max_time:
                break
            heapq.heappop(self._queue)
            self.time = finish
            delay = self.k - start
            accepted = delay < self.threshold(self.k)
            if accepted:
                self._apply(grads)
            self.log.arrivals.append(Arrival(finish, w, start, delay, accepted, self.k, seed))
            heapq.heappush(self._queue, self._start_job(w, self.time))
            arrived += 1
        return self.log


__all__ = [
    "Arrival",
    "ExponentialTimes",
    "FixedTimes",
    "LMOServer",
    "RingmasterLog",
    "RingmasterSimulator",
    "SGDServer",
    "ServerRule",
    "TimeModel",
    "heterogeneous_times",
    "lmo",
    "parameter_agnostic",
]
