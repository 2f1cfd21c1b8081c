"""Save and load model + optimizer with torch.distributed.checkpoint (DCP), any world size.

DCP writes each tensor once with its global shape, so a checkpoint written by N ranks (DDP
replicas or FSDP2 shards) loads into M ranks, or into one plain process, and back. The state dicts
come from ``torch.distributed.checkpoint.state_dict.get_state_dict``, keyed by parameter names, so
DDP, FSDP2 and unwrapped models read each other's checkpoints.

DCP needs *rank-symmetric* optimizer state (the same keys and shapes for a parameter on every
rank); :func:`check_state_symmetric` verifies that before saving (the failure mode of
microsoft/dion#18). The :class:`~muonlab.distributed.DistributedExecutor` keeps it so: state the
owner's ``matrix_fn``/``post`` change is copied to every rank.
"""

from __future__ import annotations

import contextlib
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _single() -> bool:
    """No process group: DCP reads and writes as one process."""
    return not (dist.is_available() and dist.is_initialized())


@contextlib.contextmanager
def _quiet_single_process():
    # DCP warns on every single-process save/load, which is a supported use here (resharding to 1).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def save(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, *,
         extra: dict[str, Any] | None = None) -> None:
    """Write ``model`` and ``optimizer`` (and picklable ``extra``, e.g. the data position) to the
    directory ``path``. Collective: call it on every rank."""
    if _distributed():
        check_state_symmetric(optimizer)
    msd, osd = get_state_dict(model, optimizer)
    with _quiet_single_process():
        dcp.save({"model": msd, "optim": osd, "extra": pickle.dumps(dict(extra or {}))},
                 checkpoint_id=str(path), no_dist=_single())


def load(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save` with any world size; returns its ``extra``.

    Build (and wrap) the model and the optimizer as for training first; the optimizer's param
    groups must match the saved ones. Collective: call it on every rank.
    """
    msd, osd = get_state_dict(model, optimizer)
    state = {"model": msd, "optim": osd, "extra": b""}
    with _quiet_single_process():
        dcp.load(state, checkpoint_id=str(path), no_dist=_single())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    return pickle.loads(state["extra"]) if state["extra"] else {}


def check_state_symmetric(optimizer: torch.optim.Optimizer, group=None) -> None:
    """Raise ValueError unless every rank holds the same optimizer-state keys and global shapes."""
    desc = []
    for gi, g in enumerate(optimizer.param_groups):
        for pi, p in enumerate(g["params"]):
            st = optimizer.state.get(p, {})
            desc.append((gi, pi, sorted((k, tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__)
                                        for k, v in st.items())))
    every: list = [None] * dist.get_world_size(group)
    dist.all_gather_object(every, desc, group=group)
    for r, other in enumerate(every):
        if other != every[0]:
            diff = next((a, b) for a, b in zip(every[0], other) if a != b) if len(other) == len(every[0]) else \
                (f"{len(every[0])} parameters", f"{len(other)} parameters")
            raise ValueError(
                f"optimizer state is not rank-symmetric: rank 0 has {diff[0]}, rank {r} has {diff[1]}; "
                "torch.distributed.checkpoint needs the same keys and shapes on every rank"
            )
