"""Distributed training: the orthogonalization work of a step shared across ranks (DDP, FSDP2).

The only package of muonlab that imports ``torch.distributed``; algorithm files know nothing of
ranks. See docs/distributed.md.

    DistributedExecutor, auto_executor          where the full-matrix phase runs
    CollectiveTimeout, DistributedError         what a dead or hanging rank raises
    save_checkpoint, load_checkpoint            DCP, resharding across world sizes
    init_from_env, is_main, shard_batch, ...    torchrun helpers
    DiLoCo, MuLoCo, DiLoCoSimulator              local-SGD outer loop (docs/diloco.md)
    RingmasterSimulator, LMOServer, SGDServer    asynchronous workers simulated in one process
    EF21Executor                                 EF21-Muon with one worker per rank
"""

from __future__ import annotations

import torch.distributed as dist

from ..optim.executor import LocalExecutor
from .checkpoint import check_state_symmetric
from .checkpoint import load as load_checkpoint
from .checkpoint import save as save_checkpoint
from .comm import DEFAULT_TIMEOUT_S, TIMEOUT_ENV, CollectiveTimeout, DistributedError
from .diloco import DiLoCo, DiLoCoSimulator, MuLoCo, muloco_inner
from .ef21 import EF21Executor
from .executor import DistributedExecutor, assign_owners, matrix_cost
from .launch import (
    DistInfo,
    get_rank,
    get_world_size,
    init_from_env,
    is_main,
    reduce_mean,
    shard_batch,
    shutdown,
    wrap_model,
)
from .ringmaster import LMOServer, RingmasterSimulator, SGDServer


def auto_executor(process_group=None, **kwargs) -> LocalExecutor:
    """:class:`DistributedExecutor` when a process group with more than one rank is initialised,
    else :class:`~muonlab.optim.LocalExecutor`. ``kwargs`` go to the distributed one."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size(process_group) > 1:
        return DistributedExecutor(process_group, **kwargs)
    return LocalExecutor()


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "CollectiveTimeout",
    "DiLoCo",
    "DiLoCoSimulator",
    "DistInfo",
    "DistributedError",
    "DistributedExecutor",
    "EF21Executor",
    "LMOServer",
    "MuLoCo",
    "RingmasterSimulator",
    "SGDServer",
    "assign_owners",
    "auto_executor",
    "check_state_symmetric",
    "get_rank",
    "get_world_size",
    "init_from_env",
    "is_main",
    "load_checkpoint",
    "matrix_cost",
    "muloco_inner",
    "reduce_mean",
    "save_checkpoint",
    "shard_batch",
    "shutdown",
    "wrap_model",
]
