"""Executors decide *where and how* the full-matrix phase of a :class:`MatrixRule` runs.

The local executor stacks same-shape *small* matrices into one ``(B, m, n)`` batch (one batched
Newton–Schulz call instead of B small ones: 18× faster for 48 × 64×64 in bf16 on 2 CPU cores,
median of three runs, 17.8–18.8×; docs/benchmarks.md). Large
matrices run one by one: measured here, stacking costs 4–23% from 512×512 up (the copy and a
slower batched GEMM), so batching stops at :data:`BATCH_MAX_NUMEL` (see docs/benchmarks.md). Distributed executors (``muonlab.distributed``) implement the same method
and assign each matrix to an owner rank; rules never see ranks.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Any, Callable

import torch
from torch import Tensor

from ..matfn import from_matrix


# Batched vs looped Newton–Schulz, 2-core CPU, bf16 (batched/looped time): 64×64 0.14, 64×576 0.47,
# 128×1152 0.79, 256×2304 0.97, 512×512 1.04, 768×768 1.23, 512×2048 1.14, 768×3072 1.13.
BATCH_MAX_NUMEL = 2**18


def is_sharded(t: Tensor) -> bool:
    """Whether ``t`` is a DTensor (FSDP2, tensor parallel), without importing torch.distributed."""
    return hasattr(t, "device_mesh") and hasattr(t, "placements")


#: Builds the executor for DTensor parameters, ``factory(params) -> executor``. ``muonlab`` installs
#: one from :mod:`muonlab.distributed` (a package above this one, so this module cannot import it).
sharded_executor_factory: Callable[[list[Tensor]], Any] | None = None


def select_executor(params: list[Tensor], executor: Any = None) -> Any:
    """The executor an optimizer over ``params`` uses when none is given.

    Matrix work is shared across ranks only where the parameters say they are shared: DTensor
    parameters (FSDP2) get the distributed executor; plain tensors always step in this process,
    also after ``init_process_group``, so an optimizer stepped on one rank only (an EMA or
    evaluation copy) never waits for the others. DDP replicas share the work when the optimizer is
    built from the wrapped model (:func:`muonlab.create_optimizer` does that) or with an explicit
    ``executor=muonlab.DistributedExecutor()``.
    """
    if executor is not None:
        return executor
    if any(is_sharded(p) for p in params):
        if sharded_executor_factory is None:
            raise RuntimeError(
                "DTensor (FSDP2) parameters need muonlab.distributed's executor: import muonlab "
                "(not only muonlab.optim) or pass executor=muonlab.DistributedExecutor()"
            )
        return sharded_executor_factory(params)
    return LocalExecutor()


class LocalExecutor:
    """Run the matrix phase in this process.

    Args:
        batch: stack same-shape, same-dtype matrices of a param group into one call (default
            True). Rules with ``batchable = False`` always get one matrix at a time.
        max_numel: only matrices with fewer than this many entries are stacked (default
            :data:`BATCH_MAX_NUMEL` = 2¹⁸); larger ones gain nothing from batching.
    """

    def __init__(self, batch: bool = True, max_numel: int = BATCH_MAX_NUMEL):
        self.batch = batch
        self.max_numel = max_numel

    def __repr__(self) -> str:
        return f"LocalExecutor(batch={self.batch}, max_numel={self.max_numel})"

    def buckets(self, rule, Xs: list[Tensor]) -> list[list[int]]:
        """Indices of ``Xs`` grouped into batches that one ``matrix_fn`` call can take."""
        if not (self.batch and rule.batchable):
            return [[i] for i in range(len(Xs))]
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, X in enumerate(Xs):
            small = X.shape[-2] * X.shape[-1] < self.max_numel
            groups[(tuple(X.shape), X.dtype, X.device) if small else ("single", i)].append(i)
        return list(groups.values())

    def matrix_phase(self, rule, Xs: list[Tensor], states: list[dict], group: dict) -> list[Tensor]:
        out: list[Tensor | None] = [None] * len(Xs)
        for idx in self.buckets(rule, Xs):
            batch = run_batch(rule, [Xs[i] for i in idx], [states[i] for i in idx], group)
            for j, i in enumerate(idx):
                out[i] = batch[j]
        return out  # type: ignore[return-value]

    def step_context(self):
        """Context the shell runs ``step()`` in: nothing here (DistributedExecutor: DTensor rules)."""
        return contextlib.nullcontext()

    def update_phase(self, rule, params, Xs, states, group) -> list[tuple[Tensor, float]]:
        """``matrix_phase``, then ``rule.post`` per parameter: its ``(direction, step_size)``.

        ``post`` is part of the full-matrix work (NorMuon and AdaMuon take Frobenius norms of O),
        so distributed executors run it where ``matrix_fn`` ran.
        """
        Os = self.matrix_phase(rule, Xs, states, group)
        return [rule.post(p, from_matrix(O, p.shape), st, group) for p, O, st in zip(params, Os, states)]


def run_batch(rule, Xs: list[Tensor], states: list[dict], group: dict) -> list[Tensor]:
    """Call ``rule.matrix_fn`` on a stack of same-shape matrices; return the unstacked results.

    A 2-D matrix becomes a batch of one (a view, no copy); a ``(..., m, n)`` parameter seen with
    ``matrix_view="batch"`` is flattened to ``(B, m, n)``.
    """
    if len(Xs) == 1:
        X = Xs[0]
        stacked = X.reshape(-1, *X.shape[-2:])
        return [rule.matrix_fn(stacked, states, group).reshape(X.shape)]
    shape = Xs[0].shape
    stacked = torch.stack(Xs).reshape(-1, *shape[-2:])
    O = rule.matrix_fn(stacked, states, group).reshape(len(Xs), *shape)
    return list(O.unbind(0))
