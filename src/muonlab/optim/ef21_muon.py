"""EF21-Muon: Muon's step on an error-feedback estimate of the workers' momenta, with contractive
compression of the messages in both directions.

Gruntkowska et al., "Error Feedback for Muon and Friends" (arXiv 2510.00643) [SECONDARY: the
algorithm as a third-party math page, junaidaliop/zij ``canon/math/ef21muon.md``, states it; the
paper body was not available]. EF21 itself: Richtárik, Sokolov, Fatkhullin, arXiv 2106.05203.

Math, per matrix ``W ∈ R^{m×n}`` and round, with ``K`` workers ``j`` whose gradients ``g_j`` are
taken at the workers' model ``W``::

    worker j:  M_j ← μ M_j + (1−μ) g_j                      momentum_buffer   (paper: β = 1 − μ)
               R_j = C_up(M_j − G_j);  G_j ← G_j + R_j;  send R_j              ef_estimate
    server:    G ← G + (1/K) Σ_j R_j                         server_estimate   (K = 1: G is G_1)
               O = orthogonalize(G)                          ≈ polar(G) = −LMO(G)
      downlink "identity" (default):   W ← (1 − ηλ) W − η·s(m, n)·O
      downlink compressed:             T = D − η·s(m, n)·O;  S = C_down(T);  D ← T − S
                                       W ← (1 − ηλ) W + S;  broadcast S      downlink_error

The paper's server keeps its own model ``X`` (``X⁺ = X − t·polar(G)``, ``S = C(X⁺ − W)``,
``W ← W + S``); we keep ``D = X − W`` instead, the same recursion (``X⁺ − W = D − t·O``) without a
second copy of W in the server's step. ``t = η·s(m, n)`` with Muon's shape factor ``s``
(``adjust_lr_fn``, default √max(1, m/n)).

Compressors (:mod:`muonlab.optim.compressors`): ``identity``, ``top_k`` (α = k/(mn)) and ``rank_k``
(α = r/min(m, n)), each matrix separately, ``k`` or ``r`` = ⌈ratio·size⌉.

Choices the source leaves open (all selectable):

* initial state ``M_j = G_j = G = D = 0`` [GUESS], so step 1 sends ``C((1−μ)g_j)``;
* weight decay (not in the paper) is decoupled and acts on the workers' model W, uncompressed
  (every worker can apply it itself) [GUESS]; with the identity downlink it is Muon's;
* no Nesterov look-ahead (the paper's recursion); EMA momentum as above.

Defaults: ``momentum`` μ = 0.95 (Muon's), ``uplink="top_k"`` with ``uplink_ratio=0.25``,
``downlink="identity"`` [GUESS: the paper's experimental settings were not available]; lr 0.02
and weight decay 0.01 from ``recommended`` (Muon's).

Reduction (tested): with identity compressors ``G_j = M_j`` and ``G = (1/K) Σ_j M_j``, the EMA of
the mean gradient, so EF21-Muon is Muon (EMA momentum μ, ``nesterov=False``) on the mean gradient
of the K workers, to rounding.

Workers:

* ``create_optimizer(model, "ef21_muon")`` / ``step()``: one worker (K = 1) whose gradient is
  ``p.grad``. Under DDP or FSDP2 (``DistributedExecutor``) the replicas form that one worker; the
  compression runs where the executor puts the full matrix.
* :class:`EF21Muon` with ``workers=K`` and :meth:`EF21Muon.step_workers`: K workers simulated in
  one process (e.g. one per slice of the batch, :func:`muonlab.distributed.ef21.worker_gradients`). Worker state has shape
  ``(K, *p.shape)``; the server's G is ``server_estimate``; everything is in ``state_dict``.
* ``torchrun``: ``executor=muonlab.distributed.ef21.EF21Executor()``; every rank is a worker with
  its own gradient (no DDP), its compressed messages are all-gathered in their compact form, and
  every rank runs the same server step (so no downlink message has to travel: all ranks hold the
  same G, D and W).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..matfn import matrix_shape, to_matrix
from ..registry import OptimizerSpec, register
from . import hyper as H
from .compressors import COMPRESSORS, decode, encode
from .executor import is_sharded
from .rule import MatrixRule, orthogonalize_group, scalar
from .shell import HybridOptimizer
from .state import Slot
from .steps import (
    apply_updates,
    gather_states,
    momentum_many_,
    scatter_states_,
    shape_scale,
)

_RATIO = {"low": 0.0, "high": 1.0, "low_open": True}


class _Uplink:
    """One worker's EF21 uplink ``R = C(M − G_j); G_j ← G_j + R`` as a matrix phase, so that an
    executor runs it where the full matrix is (FSDP2 shards cannot be compressed piecewise)."""

    name = "ef21_muon/uplink"
    batchable = True
    state_spec: ClassVar[dict[str, Slot]] = {"ef_estimate": Slot("param", matrix_phase=True)}

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        m, n = X.shape[-2:]
        G = gather_states(states, "ef_estimate", (m, n))
        kind = group["uplink"]
        R = decode(encode(X - G, kind, group["uplink_ratio"]), kind, tuple(X.shape), X.dtype)
        scatter_states_(states, "ef_estimate", G + R)
        return R


_UPLINK = _Uplink()


class EF21MuonRule(MatrixRule):
    """EF21-Muon as a :class:`MatrixRule` (see the module docstring for the math)."""

    name = "ef21_muon"
    hypers: ClassVar[dict[str, H.Hyper]] = {
        **MatrixRule.hypers,
        "momentum": H.Hyper(0.95, "μ: M_j ← μM_j + (1−μ)g_j (the paper's β is 1 − μ)", low=0.0, high=1.0,
                            high_open=True),
        "uplink": H.Hyper("top_k", "workers' compressor C_up of R_j = C_up(M_j − G_j)", kind="choice",
                          choices=COMPRESSORS),
        "uplink_ratio": H.Hyper(0.25, "kept fraction of C_up: entries (top_k) or rank (rank_k)", **_RATIO),
        "downlink": H.Hyper("identity", "server's compressor C_down of the model shift S", kind="choice",
                            choices=COMPRESSORS),
        "downlink_ratio": H.Hyper(0.25, "kept fraction of C_down", **_RATIO),
        "workers": H.Hyper(1, "workers simulated in this process (K > 1: EF21Muon.step_workers)", kind="int",
                           low=1, high=4096),
    }
    # The EF21 sums (G_j, G, D) stay exact under state_precision="int8": G must remain the mean of
    # the G_j that the messages built, which rounding each buffer on its own would break.
    state_spec: ClassVar[dict[str, Slot]] = {
        "momentum_buffer": Slot("param", doc="M_j; (workers, *p.shape) when workers > 1"),
        "ef_estimate": Slot("param", quantize=False,
                            doc="G_j, the worker's EF21 estimate; (workers, *p.shape) when workers > 1"),
        "server_estimate": Slot("param", quantize=False,
                                doc="G = G⁰ + Σ_t mean_j R_j; only with more than one worker in all"),
        "downlink_error": Slot("param", matrix_phase=True, quantize=False,
                               doc="D = X − W; only with a compressed downlink"),
    }

    def init_state(self, p: Tensor, group: dict) -> dict[str, Tensor]:
        K = group["workers"]
        if K == 1:
            z = lambda: torch.zeros_like(p, memory_format=torch.contiguous_format)
        else:
            z = lambda: p.new_zeros((K, *p.shape))
        st = {"momentum_buffer": z(), "ef_estimate": z()}
        if K > 1:
            st["server_estimate"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        if group["downlink"] != "identity":
            st["downlink_error"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        return st

    # ---- one round ------------------------------------------------------------------------------

    def step(self, params, grads, states, group, executor) -> None:
        K = group["workers"]
        for p, g in zip(params, grads):
            expected = tuple(p.shape) if K == 1 else (K, *p.shape)
            if tuple(g.shape) != expected:
                raise ValueError(
                    f"ef21_muon: a group with workers={K} needs one gradient per worker, shape {expected}, "
                    f"got {tuple(g.shape)}" + ("; call EF21Muon.step_workers(...)" if K > 1 else "")
                )
        momentum_many_([st["momentum_buffer"] for st in states], grads, group["momentum"], nesterov=False,
                       form="ema")
        exchange = getattr(executor, "exchange_messages", None)
        if (K > 1 or exchange is not None) and any(is_sharded(p) for p in params):
            raise NotImplementedError(
                "ef21_muon: simulated workers (workers > 1) and EF21Executor need whole matrices on each "
                "process; DTensor (FSDP2) parameters are supported with one worker (workers=1, DistributedExecutor)"
            )
        view = group["matrix_view"]
        if K == 1 and exchange is None:
            # One worker (or DDP/FSDP2 replicas acting as one): its estimate is the server's.
            if group["uplink"] == "identity":
                for st in states:
                    st["ef_estimate"].add_(st["momentum_buffer"] - st["ef_estimate"])
            else:
                executor.matrix_phase(_UPLINK, [to_matrix(st["momentum_buffer"], view) for st in states],
                                      states, group)
            server = [st["ef_estimate"] for st in states]
        else:
            server = self._workers_and_server(params, states, group, exchange)
        directions = executor.update_phase(self, params, [to_matrix(G, view) for G in server], states, group)
        apply_updates(
            params,
            [U for U, _ in directions],
            [s for _, s in directions],
            lr=scalar(group["lr"]),
            weight_decay=group["weight_decay"],
            mode=group["weight_decay_mode"],
        )

    def _workers_and_server(self, params, states, group, exchange) -> list[Tensor]:
        """K local workers' uplinks, the exchange of their messages (torchrun: every rank's), and
        the server's ``G ← G + mean_j R_j``. Returns the server estimates, one per parameter."""
        K, view = group["workers"], group["matrix_view"]
        kind, ratio = group["uplink"], group["uplink_ratio"]
        shapes = [(-1, *matrix_shape(tuple(p.shape), view)) for p in params]  # (B, m, n) per parameter
        local: list[list[Tensor]] = [[] for _ in range(K)]  # per local worker: message tensors, in order
        counts: list[int] = []
        for st, shape in zip(states, shapes):
            Ms = st["momentum_buffer"].reshape(K, *shape)  # (K, B, m, n); K = 1: a p-shaped buffer
            Gs = st["ef_estimate"].reshape(K, *shape)
            new = []
            for j in range(K):
                M, G = Ms[j], Gs[j]
                msg = encode(M - G, kind, ratio)
                new.append(G + decode(msg, kind, tuple(G.shape), G.dtype))
                local[j].extend(msg)
                if j == 0:
                    counts.append(len(msg))
            est = st["ef_estimate"]
            est.copy_(torch.stack(new).reshape(est.shape))
        every = exchange(local) if exchange is not None else local
        total = len(every)
        server = []
        offset = 0
        for st, shape, c in zip(states, shapes, counts):
            G = st.get("server_estimate")
            if total == 1:
                G = st["ef_estimate"]  # one worker in all: its estimate is the server's
            else:
                if G is None:
                    G = self._new_server_estimate(st)
                full = tuple(G.reshape(shape).shape)
                acc = None
                for msgs in every:  # in worker order, so every rank sums the same way
                    R = decode(tuple(msgs[offset:offset + c]), kind, full, G.dtype)
                    acc = R if acc is None else acc + R
                G.add_((acc / total).reshape(G.shape))
            server.append(G)
            offset += c
        return server

    @staticmethod
    def _new_server_estimate(st: dict) -> Tensor:
        if st["step"].item() > 1:
            raise RuntimeError(
                "ef21_muon: this state has no server estimate G (it was created for one worker); the "
                "number of workers cannot change after the first step"
            )
        G = torch.zeros_like(st["momentum_buffer"], memory_format=torch.contiguous_format)  # one local worker
        st["server_estimate"] = G
        return G

    # ---- the server's step, in the matrix phase ---------------------------------------------------

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        O = orthogonalize_group(X, group)
        if group["downlink"] == "identity":
            return O
        m, n = X.shape[-2:]
        t = scalar(group["lr"]) * shape_scale(m, n, group["adjust_lr_fn"])
        D = gather_states(states, "downlink_error", (m, n))
        work = torch.promote_types(D.dtype, torch.float32)
        T = D.to(work) - t * O.to(work)
        kind = group["downlink"]
        S = decode(encode(T, kind, group["downlink_ratio"]), kind, tuple(T.shape), work)
        scatter_states_(states, "downlink_error", T - S)
        return -S  # W ← W − (−S)

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        if group["downlink"] == "identity":
            return super().post(p, O, state, group)
        return O, 1.0  # the shift S already holds η·s(m, n)


# ---- K workers in one process --------------------------------------------------------------------


class EF21Muon(HybridOptimizer):
    """EF21-Muon with K workers simulated in one process (or one worker: plain ``step()``).

    Args:
        params: matrices (>= 2-D with ``matrix_view``), or param groups; a group may name another
            algorithm (it then gets the workers' mean gradient in :meth:`step_workers`).
        lr: η (default 0.02). momentum: μ (default 0.95; the paper's β = 1 − μ).
        weight_decay: decoupled λ on the workers' model (default 0).
        workers: K (default 1). With K > 1, call :meth:`step_workers` instead of ``step``.
        uplink / uplink_ratio: workers' compressor and its kept fraction ("top_k", 0.25).
        downlink / downlink_ratio: server's compressor ("identity", 0.25).
        **kwargs: other ``ef21_muon`` hyperparameters (orthogonalizer, ns_steps, compute_dtype,
            adjust_lr_fn, matrix_view, weight_decay_mode, ...) and ``check_finite``/``executor``.

    Example::

        >>> opt = EF21Muon(hidden_matrices, workers=4, uplink="rank_k", uplink_ratio=0.1)
        >>> grads = muonlab.distributed.ef21.worker_gradients(hidden_matrices, lambda xb, yb: loss(model(xb), yb), (x, y), 4)
        >>> opt.step_workers(grads)
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.02,
        momentum: float = 0.95,
        weight_decay: float = 0.0,
        *,
        workers: int = 1,
        uplink: str = "top_k",
        uplink_ratio: float = 0.25,
        downlink: str = "identity",
        downlink_ratio: float = 0.25,
        check_finite: bool = False,
        executor: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(params, "ef21_muon", check_finite=check_finite, executor=executor, lr=lr,
                         momentum=momentum, weight_decay=weight_decay, workers=workers, uplink=uplink,
                         uplink_ratio=uplink_ratio, downlink=downlink, downlink_ratio=downlink_ratio, **kwargs)
        self._worker_grads: dict[int, Tensor] | None = None

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._worker_grads = None

    @torch.no_grad()
    def step_workers(self, worker_grads: Sequence[Sequence[Tensor | None]]) -> None:
        """One round with one gradient list per worker.

        ``worker_grads[j][i]`` is worker j's gradient of the i-th parameter of the optimizer (in
        ``param_groups`` order; ``None`` where no worker has one). ``ef21_muon`` groups get the K
        gradients, other groups (AdamW for biases, ...) their mean. The parameters' ``.grad`` are
        left as they were.
        """
        params = [p for g in self.param_groups for p in g["params"]]
        K = len(worker_grads)
        if K == 0 or any(len(w) != len(params) for w in worker_grads):
            raise ValueError(f"step_workers: need one list of {len(params)} gradients per worker, got "
                             f"{[len(w) for w in worker_grads]}")
        for group in self.param_groups:
            if group["algorithm"] == "ef21_muon" and group["workers"] != K:
                raise ValueError(f"step_workers: {K} workers given for a group with workers={group['workers']}")
        stacks: dict[int, Tensor] = {}
        saved = {id(p): p.grad for p in params}
        try:
            for i, p in enumerate(params):
                gs = [w[i] for w in worker_grads]
                if all(g is None for g in gs):
                    p.grad = None
                    continue
                if any(g is None or tuple(g.shape) != tuple(p.shape) for g in gs):
                    raise ValueError(f"step_workers: parameter {i} (shape {tuple(p.shape)}) needs a gradient "
                                     "of its shape from every worker or from none")
                stack = torch.stack([g.to(p.dtype) for g in gs])
                stacks[id(p)] = stack
                p.grad = stack.mean(0)
            self._worker_grads = stacks
            self.step()
        finally:
            self._worker_grads = None
            for p in params:
                p.grad = saved[id(p)]

    def _collect(self, index: int, group: dict, rule, rgroup: dict, view_of) -> tuple[list, list, list]:
        params, grads, states = super()._collect(index, group, rule, rgroup, view_of)
        if self._worker_grads is None or group["algorithm"] != "ef21_muon" or group["workers"] == 1:
            return params, grads, states
        stacked = []
        for p in params:
            g = self._worker_grads[id(p)]
            if self.defaults.get("check_finite") and not bool(torch.isfinite(g).all()):
                raise FloatingPointError(f"{self._where(index, group)}: non-finite worker gradient (NaN or Inf) "
                                         f"in a parameter of shape {tuple(p.shape)}")
            if group["weight_decay_mode"] == "coupled" and group["weight_decay"] != 0:
                g = g + group["weight_decay"] * p  # L2 on every worker's gradient, as the shell does
            stacked.append(g)
        return params, stacked, states


register(
    OptimizerSpec(
        name="ef21_muon",
        rule=EF21MuonRule(),
        configs={
            "identity": {"uplink": "identity"},
            "rank_k": {"uplink": "rank_k", "uplink_ratio": 0.5},
            "bidirectional": {"uplink": "top_k", "downlink": "top_k"},
        },
        summary="EF21 error feedback: G_j += C(M_j − G_j), G += mean_j C(·); W ← W − η·s(m,n)·polar(G) "
        "(top-k / rank-k compressors, optional compressed downlink)",
        recommended={"lr": 0.02, "weight_decay": 0.01},
        source="Gruntkowska et al., Error Feedback for Muon and Friends, arXiv 2510.00643 (via junaidaliop/zij "
        "canon/math/ef21muon.md); EF21: Richtárik et al., arXiv 2106.05203",
        certainty="SECONDARY",
        state="2× (momentum_buffer, ef_estimate) per worker; +1× server_estimate with > 1 worker, "
        "+1× downlink_error with a compressed downlink",
        search_space={"lr": (1e-3, 1e-1)},
    )
)


__all__ = ["EF21Muon", "EF21MuonRule"]
