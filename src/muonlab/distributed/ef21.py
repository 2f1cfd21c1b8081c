"""EF21-Muon with real workers: every rank of a process group is one worker (``torchrun``).

Each rank computes the gradient of its own data (the model is *not* wrapped in DDP: the workers'
gradients are what EF21 compresses), keeps its own worker state ``M_j, G_j``, and sends only its
compressed message ``R_j`` in compact form (top-k: values and indices; rank-k: the two factors).
:class:`EF21Executor` all-gathers those messages, one collective per dtype per param group; then
every rank runs the same server step on the same numbers, so the server state (G, and D for a
compressed downlink) and the model stay identical on every rank and no downlink message has to
travel. The result equals K = world-size workers simulated in one process
(:meth:`muonlab.optim.ef21_muon.EF21Muon.step_workers`) on the same data slices (tested).

Script::

    info = init_from_env()
    model = build_model()                                   # same seed on every rank; no DDP
    opt = muonlab.create_optimizer(model, "ef21_muon", executor=EF21Executor())
    for step in range(steps):
        x, y = shard_batch(global_batch(step))              # this worker's data
        loss_fn(model(x), y).backward()
        average_gradients(p for g in opt.param_groups if g["algorithm"] != "ef21_muon" for p in g["params"])
        opt.step(); opt.zero_grad()

Parameters outside ``ef21_muon`` groups (the AdamW side) get nothing from this executor: average
their gradients with :func:`average_gradients` (uncompressed), or they drift apart across ranks.
Each rank's ``state_dict`` holds its own worker's state: save one per rank.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from ..optim.executor import LocalExecutor
from .comm import Comm, DistributedError, resolve_timeout
from .launch import shard_batch


class EF21Executor(LocalExecutor):
    """Matrix work in this process; EF21 uplink messages exchanged across the ranks of a group.

    Args:
        process_group: the workers (default: the world).
        timeout: deadline of each collective (seconds or timedelta; default ``$MUONLAB_DIST_TIMEOUT``
            or 600 s).
        verify: check with one small ``all_gather`` per call that every rank sends messages of the
            same shapes and dtypes (a mismatch would otherwise corrupt or hang the collective).
        batch: as :class:`~muonlab.optim.LocalExecutor`.
    """

    def __init__(self, process_group=None, timeout: Any = None, *, verify: bool = True, batch: bool = True):
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("EF21Executor needs an initialized process group: call "
                               "muonlab.distributed.init_from_env() under torchrun first")
        super().__init__(batch=batch)
        self.process_group = process_group if process_group is not None else dist.group.WORLD
        self.timeout = resolve_timeout(timeout)
        self.verify = verify

    def __repr__(self) -> str:
        return (f"EF21Executor(workers={dist.get_world_size(self.process_group)}, "
                f"timeout={self.timeout.total_seconds():g}s)")

    def exchange_messages(self, messages: list[list[Tensor]]) -> list[list[Tensor]]:
        """Every worker's messages: ``messages[j]`` are this rank's local worker j's tensors; the result
        lists all workers, rank by rank (then local order), each with tensors of the same shapes."""
        comm = Comm(self.process_group, self.timeout, "EF21 uplink messages")
        layout = [(tuple(t.shape), t.dtype) for t in messages[0]] if messages else []
        if self.verify:
            desc = repr((len(messages), layout)).encode()
            h = int.from_bytes(hashlib.sha256(desc).digest()[:7], "little")
            every = comm.all_gather(torch.tensor([h], dtype=torch.int64, device=self._device(messages)),
                                    "checking that all workers send the same message shapes")
            if not bool((every == every[0]).all()):
                raise DistributedError(
                    f"rank {comm.rank}: the workers' EF21 messages differ in shape or dtype across ranks; every "
                    "rank must step the same ef21_muon parameters (all with gradients) and hyperparameters"
                )
        dtypes = sorted({dt for _, dt in layout}, key=str)
        gathered = {}
        for dt in dtypes:
            flat = torch.cat([t.reshape(-1) for worker in messages for t in worker if t.dtype == dt])
            gathered[dt] = comm.all_gather(flat, f"all-gathering {dt} messages")  # (world, numel)
        out = []
        for r in range(comm.world):
            cursor = {dt: 0 for dt in dtypes}
            for _ in range(len(messages)):
                worker = []
                for shape, dt in layout:
                    n = torch.Size(shape).numel()
                    worker.append(gathered[dt][r, cursor[dt]:cursor[dt] + n].view(shape))
                    cursor[dt] += n
                out.append(worker)
        return out

    @staticmethod
    def _device(messages) -> torch.device:
        for worker in messages:
            for t in worker:
                return t.device
        return torch.device("cpu")


def average_gradients(params: Iterable[Tensor], process_group=None) -> None:
    """All-reduce the gradients of ``params`` to their mean over the ranks (for the parameters that are
    not in an ``ef21_muon`` group, e.g. the AdamW side), one collective per parameter with a gradient."""
    world = dist.get_world_size(process_group)
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, group=process_group)
            p.grad.div_(world)




def worker_gradients(params: Sequence[Tensor], loss_fn: Callable[..., Tensor], batch: Any,
                     workers: int) -> list[list[Tensor | None]]:
    """Each worker's gradients: ``batch`` split along dim 0 into ``workers`` equal contiguous slices
    (:func:`muonlab.distributed.shard_batch`, the slice each rank gets), ``loss_fn(*slice)`` (or
    ``loss_fn(slice)`` for a tensor or dict batch) differentiated per slice. ``p.grad`` is left as
    it was. The result feeds :meth:`muonlab.EF21Muon.step_workers`."""
    params = list(params)
    saved = [p.grad for p in params]
    out = []
    try:
        for j in range(workers):
            for p in params:
                p.grad = None
            part = shard_batch(batch, j, workers)
            with torch.enable_grad():
                loss = loss_fn(*part) if isinstance(part, (tuple, list)) else loss_fn(part)
                loss.backward()
            out.append([None if p.grad is None else p.grad.detach().clone() for p in params])
    finally:
        for p, g in zip(params, saved):
            p.grad = g
    return out


__all__ = ["EF21Executor", "average_gradients", "worker_gradients"]
