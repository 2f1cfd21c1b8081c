"""Helpers for scripts started by ``torchrun --nproc_per_node=N`` (or run as one plain process).

A training script (the lab runner, for example) does::

    info = init_from_env()                 # no-op without torchrun; sets the collective deadline
    model = wrap_model(build_model(), "ddp")  # or "fsdp2"; returns the model unchanged in 1 process
    opt = muonlab.create_optimizer(model, "muon")   # picks DistributedExecutor by itself
    for step in range(steps):
        x, y = shard_batch(get_global_batch(gen))   # same generator seed on every rank
        loss = loss_fn(model(x), y); loss.backward(); opt.step(); opt.zero_grad()
        if is_main(): write_record(step, reduce_mean(loss.item()))
    shutdown()
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .comm import TIMEOUT_ENV, resolve_timeout


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, its ``local_rank`` and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_from_env(backend: str | None = None, *, timeout: Any = None, device: str | None = None) -> DistInfo:
    """Initialise the default process group from torchrun's environment, if there is one.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and torchrun's rendezvous variables). Without
    them, or with ``WORLD_SIZE=1``, nothing is initialised and a single-process :class:`DistInfo` is
    returned, so one script serves both cases.

    Args:
        backend: ``"nccl"`` when CUDA is available, else ``"gloo"`` (default).
        timeout: deadline of every collective of the process group (DDP/FSDP2 syncs, checkpoint
            I/O): seconds or timedelta; default ``$MUONLAB_DIST_TIMEOUT`` or 600 s. A rank that hangs
            makes the others fail after this long instead of waiting forever.
        device: ``"cuda"`` or ``"cpu"``; default CUDA (``cuda:LOCAL_RANK``) when available.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device == "cuda"
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"),
                                timeout=resolve_timeout(timeout), device_id=dev if use_cuda else None)
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank, world, local_rank, dev)


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, and in a single process: the rank that writes records and checkpoints' logs."""
    return get_rank() == 0


def shard_batch(batch: Any, rank: int | None = None, world_size: int | None = None) -> Any:
    """This rank's contiguous slice (along dim 0) of a *global* batch.

    ``batch`` is a tensor or a tuple/list/dict of tensors with the same leading size. Every rank
    draws the same global batch (same generator seed) and keeps its slice, so the mean gradient that
    DDP/FSDP2 average over ranks equals the single-process gradient of the global batch. The size
    must be divisible by the world size (uneven slices would weigh samples unequally).
    """
    r = get_rank() if rank is None else rank
    w = get_world_size() if world_size is None else world_size
    if w == 1:
        return batch
    if isinstance(batch, torch.Tensor):
        n = batch.shape[0]
        if n % w:
            raise ValueError(f"global batch size {n} is not divisible by the world size {w}; "
                             "use a multiple so every rank gets an equal share")
        return batch[r * (n // w):(r + 1) * (n // w)]
    if isinstance(batch, dict):
        return {k: shard_batch(v, r, w) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard_batch(v, r, w) for v in batch)
    raise TypeError(f"shard_batch: cannot slice a {type(batch).__name__}; pass tensors or "
                    "tuples/lists/dicts of tensors")


def wrap_model(model: nn.Module, strategy: str = "ddp") -> nn.Module:
    """``model`` made data-parallel: ``"ddp"`` (DistributedDataParallel), ``"fsdp2"`` (``fully_shard``
    on every child module with parameters, then on the root) or ``"none"``; unchanged in one process."""
    if strategy not in ("ddp", "fsdp2", "none"):
        raise ValueError(f"unknown strategy {strategy!r}; choose 'ddp', 'fsdp2' or 'none'")
    if strategy == "none" or get_world_size() == 1:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        dev = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    from torch.distributed.fsdp import fully_shard

    for child in model.children():
        if any(True for _ in child.parameters()):
            fully_shard(child)
    fully_shard(model)
    return model


def reduce_mean(value: float) -> float:
    """Mean of ``value`` over ranks (e.g. the loss to record on rank 0); ``value`` in one process."""
    if get_world_size() == 1:
        return float(value)
    backend = dist.get_backend()
    t = torch.tensor([float(value)], dtype=torch.float64,
                     device="cuda" if backend == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.item() / get_world_size()


def shutdown() -> None:
    """Destroy the default process group if one is initialised, after every rank got here (gloo
    aborts a rank whose peer tears the group down while it is still working)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


__all__ = ["DistInfo", "TIMEOUT_ENV", "get_rank", "get_world_size", "init_from_env", "is_main",
           "reduce_mean", "shard_batch", "shutdown", "wrap_model"]
