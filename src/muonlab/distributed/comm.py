"""Collectives with a deadline, and where each rank's piece of a tensor lies.

Every collective of :class:`~muonlab.distributed.DistributedExecutor` goes through
:meth:`Comm.wait`, which waits at most ``timeout`` and turns the backend's error into a
:class:`CollectiveTimeout` (a rank hangs) or :class:`DistributedError` (a rank died) that says which
step phase failed and how to change the deadline. Nothing here knows about optimizers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor, Replicate, Shard

#: Environment variable read when no timeout is passed (seconds, a float).
TIMEOUT_ENV = "MUONLAB_DIST_TIMEOUT"
#: Default deadline of one collective, in seconds. It must exceed the longest full-matrix work of
#: one param group on one rank (non-owners wait for the owners), hence minutes, not seconds.
DEFAULT_TIMEOUT_S = 600.0


class DistributedError(RuntimeError):
    """A collective of the optimizer step failed (a peer died, or ranks disagree)."""


class CollectiveTimeout(DistributedError):
    """A collective of the optimizer step did not complete in time (a peer hangs or died)."""


def resolve_timeout(timeout: float | timedelta | None) -> timedelta:
    """``timeout`` as a timedelta; ``None`` reads ``$MUONLAB_DIST_TIMEOUT`` (seconds), else 600 s."""
    if timeout is None:
        raw = os.environ.get(TIMEOUT_ENV)
        try:
            timeout = float(raw) if raw else DEFAULT_TIMEOUT_S
        except ValueError:
            raise ValueError(f"${TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if isinstance(timeout, (int, float)):
        timeout = timedelta(seconds=float(timeout))
    if not isinstance(timeout, timedelta) or timeout.total_seconds() <= 0:
        raise ValueError(f"timeout must be a positive number of seconds or a timedelta, got {timeout!r}")
    return timeout


# ---- layouts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """How one logical tensor is held by the ranks of ``group``.

    ``shard_dim is None``: every rank holds all of it (DDP replicas, plain tensors, ``Replicate``).
    Otherwise rank ``r`` holds chunk ``r`` along ``shard_dim`` with ``torch.chunk`` sizes, the rule of
    DTensor's ``Shard`` and of FSDP2: uneven, and empty on the last ranks when the dim is short.
    """

    group: object
    shard_dim: int | None = None
    mesh: object = None
    placements: tuple = ()

    @property
    def sharded(self) -> bool:
        return self.shard_dim is not None


def layout_of(t: Tensor, default_group) -> Layout:
    """The :class:`Layout` of ``t``: plain tensors are replicas over ``default_group``."""
    if not isinstance(t, DTensor):
        return Layout(default_group)
    mesh, placements = t.device_mesh, tuple(t.placements)
    if mesh.ndim != 1:
        raise NotImplementedError(
            f"DTensor on a {mesh.ndim}-D device mesh {tuple(mesh.shape)} (HSDP or tensor parallel) is "
            "not supported by muonlab's DistributedExecutor yet; use a 1-D mesh (plain fully_shard)"
        )
    (pl,) = placements
    if isinstance(pl, Replicate):
        return Layout(mesh.get_group(), None, mesh, placements)
    if type(pl) is Shard:  # not _StridedShard and friends
        return Layout(mesh.get_group(), pl.dim, mesh, placements)
    raise NotImplementedError(f"DTensor placement {pl} is not supported (only Shard(d) and Replicate)")


def chunk_range(size: int, world: int, rank: int) -> tuple[int, int]:
    """``(start, length)`` of chunk ``rank`` of ``size`` rows split ``torch.chunk``-style (may be empty)."""
    per = -(-size // world) if size else 0
    start = min(rank * per, size)
    return start, max(0, min(size, start + per) - start)


def region_shape(shape: torch.Size, layout: Layout, rank: int) -> torch.Size:
    """Shape of the part of a tensor of global ``shape`` that ``rank`` holds."""
    if not layout.sharded:
        return torch.Size(shape)
    out = list(shape)
    out[layout.shard_dim] = chunk_range(shape[layout.shard_dim], dist.get_world_size(layout.group), rank)[1]
    return torch.Size(out)


def region(full: Tensor, layout: Layout, rank: int) -> Tensor:
    """The part of ``full`` that ``rank`` holds (the whole tensor for a replicated layout)."""
    if not layout.sharded:
        return full
    d = layout.shard_dim
    start, length = chunk_range(full.shape[d], dist.get_world_size(layout.group), rank)
    return full.narrow(d, start, length)


def local(t: Tensor) -> Tensor:
    """This rank's tensor: the local shard of a DTensor, ``t`` itself otherwise."""
    return t.to_local() if isinstance(t, DTensor) else t


def like(local_part: Tensor, layout: Layout, shape: torch.Size, stride: tuple) -> Tensor:
    """Wrap this rank's part as a tensor of ``layout`` (a DTensor when the layout has a mesh)."""
    if layout.mesh is None:
        return local_part
    return DTensor.from_local(local_part, layout.mesh, layout.placements, run_check=False,
                              shape=shape, stride=stride)


# ---- collectives --------------------------------------------------------------------------------


class Comm:
    """One process group plus a deadline; every collective waits through :meth:`wait`."""

    def __init__(self, group, timeout: timedelta, context: str = ""):
        self.group = group
        self.timeout = timeout
        self.context = context
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)

    def wait(self, work, what: str) -> None:
        try:
            work.wait(timeout=self.timeout)
        except RuntimeError as e:
            where = (f"rank {self.rank} of {self.world}: {what}"
                     f"{' (' + self.context + ')' if self.context else ''}")
            if "timed out" in str(e).lower() or "timeout" in str(e).lower():
                raise CollectiveTimeout(
                    f"{where} did not complete within {self.timeout.total_seconds():g} s: another rank "
                    "is hanging, died, or is not running the same optimizer step. The process group "
                    "is unusable now; end the job. Deadline: DistributedExecutor(timeout=...) or "
                    f"${TIMEOUT_ENV} (seconds). Backend error: {e}"
                ) from e
            raise DistributedError(
                f"{where} failed: a peer rank probably died (look at the other ranks' logs). The "
                f"process group is unusable now; end the job. Backend error: {e}"
            ) from e

    def all_gather(self, t: Tensor, what: str) -> Tensor:
        """``(world, *t.shape)``: every rank's ``t`` (same shape on every rank)."""
        out = torch.empty((self.world * t.numel(),), dtype=t.dtype, device=t.device)
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # torch < 2.12
        self.wait(gather(out, t.reshape(-1).contiguous(), group=self.group, async_op=True), what)
        return out.view(self.world, *t.shape)

    def all_reduce_sum(self, t: Tensor, what: str) -> Tensor:
        self.wait(dist.all_reduce(t, group=self.group, async_op=True), what)
        return t

    def exchange(self, sends: list[list[Tensor]], recv_numels: list[int], dtype: torch.dtype,
                 device: torch.device, what: str) -> list[Tensor]:
        """All-to-all: ``sends[s]`` (tensors, flattened in order) go to rank ``s``; returns the flat
        tensor received from each rank, whose sizes the caller knows (``recv_numels``)."""
        flat = [t.reshape(-1).to(dtype) for lst in sends for t in lst]
        inp = torch.cat(flat) if flat else torch.empty(0, dtype=dtype, device=device)
        out = torch.empty(sum(recv_numels), dtype=dtype, device=device)
        splits = [sum(t.numel() for t in lst) for lst in sends]
        self.wait(dist.all_to_all_single(out, inp, recv_numels, splits, group=self.group, async_op=True),
                  what)
        return list(out.split(recv_numels))
