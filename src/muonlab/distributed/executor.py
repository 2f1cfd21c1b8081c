"""DistributedExecutor: the full-matrix work of a step, shared across ranks.

Every matrix of a param group gets one *owner* rank, chosen greedily by cost ``B·m·n·min(m, n)``
(largest first, to the least-loaded rank; loads carry over between groups). Per call:

1. ``pre`` (momentum) has already run where each parameter's shard lives (the rule's ``step``).
2. **gather** (FSDP2 only): every rank sends its shard of each matrix input, and of the sharded
   state entries the rule declares ``matrix_phase`` in ``state_spec``, to the owner (one ``all_to_all`` per
   dtype; shards may be uneven or empty, ``torch.chunk`` sizes like DTensor's ``Shard``).
3. **compute**: each owner runs ``matrix_fn`` on its full matrices, batched by shape, then ``post``.
4. **header**: one small ``all_reduce`` of ``(step_size, dtype, error, bytes)`` per matrix, so a
   rank whose rule raised makes every rank raise instead of leaving them waiting.
5. **scatter**: the owner sends each rank its part of the direction ``U`` (all of it for replicated
   DDP parameters, its shard for FSDP2) and of the declared state, plus any changed non-tensor
   state (MiMuon's counters) pickled, so the optimizer state is the same on every rank.

``apply_update`` then runs on each rank's shard. Rules never see ranks; every collective waits at
most ``timeout`` (see :mod:`muonlab.distributed.comm`).
"""

from __future__ import annotations

import copy
import hashlib
import math
import pickle
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor.experimental import implicit_replication

from ..matfn import from_matrix
from ..optim.executor import LocalExecutor, run_batch
from ..optim.state import matrix_phase_keys
from .comm import (
    CollectiveTimeout,
    Comm,
    DistributedError,
    Layout,
    layout_of,
    like,
    local,
    region,
    region_shape,
    resolve_timeout,
)

_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.uint8)
_BLOB = "__objects__"  # pseudo state key of the pickled non-tensor state


def matrix_cost(shape: tuple[int, ...]) -> float:
    """Flops-like cost of orthogonalizing a ``(..., m, n)`` stack: ``B·m·n·min(m, n)``."""
    *batch, m, n = shape
    return float(math.prod(batch) * m * n * min(m, n))


def assign_owners(costs: list[float], world: int, loads: list[float] | None = None) -> tuple[list[int], list[float]]:
    """Greedy longest-processing-time assignment: ``(owner of each item, loads after)``.

    Deterministic (ties go to the lower index and the lower rank), so every rank computes the same
    owners from the same shapes without communicating.
    """
    loads = list(loads) if loads is not None else [0.0] * world
    owners = [0] * len(costs)
    for j in sorted(range(len(costs)), key=lambda j: (-costs[j], j)):
        r = min(range(world), key=lambda r: (loads[r], r))
        owners[j] = r
        loads[r] += costs[j]
    return owners, loads


class DistributedExecutor(LocalExecutor):
    """Share the full-matrix phase across the ranks of a process group (DDP or FSDP2).

    Args:
        process_group: group of the replicated (non-DTensor) parameters; default the world. For
            DTensor parameters the group of their 1-D device mesh is used.
        timeout: deadline of each collective, seconds or timedelta; default ``$MUONLAB_DIST_TIMEOUT``
            or 600 s. A rank that hangs or dies makes the others raise :class:`CollectiveTimeout` or
            :class:`DistributedError` instead of waiting forever.
        batch: batch same-shape matrices on their owner (as :class:`LocalExecutor`).
        verify: when to check, with one tiny ``all_gather``, that all ranks step the same
            matrices and that replicated matrices are equal across ranks (catches a model that is
            not wrapped in DDP, skipped gradient syncs and torn collectives; costs two reductions
            per replicated matrix, one collective and one host sync). ``"auto"`` (default): on the
            first ``verify_first`` calls of each param group, then on every ``verify_every``-th,
            and on any call whose matrices (shapes, dtypes, shardings, state layout) differ from
            that group's previous call (a new param group, ``add_param_group``, a parameter that
            gained or lost its gradient). ``True``: every call. ``False``: never.
        verify_first: calls of each param group checked at the start under ``"auto"`` (default 3).
        verify_every: period, in calls of a param group, of the later checks under ``"auto"``
            (default 100; a divergence that starts later is reported at most this many steps late).

    Example::

        >>> dist.init_process_group("nccl")
        >>> model = DDP(model)            # or fully_shard(model)
        >>> opt = muonlab.create_optimizer(model, "muon", executor=DistributedExecutor())
    """

    def __init__(self, process_group=None, timeout: Any = None, *, batch: bool = True,
                 verify: bool | str = "auto", verify_first: int = 3, verify_every: int = 100):
        if not (isinstance(verify, bool) or verify == "auto"):
            raise ValueError(f"DistributedExecutor(verify={verify!r}): use True, False or 'auto'")
        for name, value, low in (("verify_first", verify_first, 0), ("verify_every", verify_every, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"DistributedExecutor({name}={value!r}): must be an integer >= {low}")
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "DistributedExecutor needs an initialized process group: call "
                "muonlab.distributed.init_from_env() or torch.distributed.init_process_group() "
                "first, or use muonlab.optim.LocalExecutor"
            )
        super().__init__(batch=batch)
        self.process_group = process_group if process_group is not None else dist.group.WORLD
        self.timeout = resolve_timeout(timeout)
        self.verify = verify
        self.verify_first, self.verify_every = verify_first, verify_every
        self._loads: dict[tuple[int, ...], list[float]] = {}
        # Per call site (param group × process group × rule): calls so far and the matrices' layout at the
        # last call. Every rank steps the same groups in the same order, so the decision to check,
        # made locally from these, is the same on every rank without communicating.
        self._calls: dict[tuple[int, int, str], list] = {}

    def __repr__(self) -> str:
        verify = (f"'auto' (first {self.verify_first}, every {self.verify_every})" if self.verify == "auto"
                  else self.verify)
        return (f"DistributedExecutor(world={dist.get_world_size(self.process_group)}, "
                f"timeout={self.timeout.total_seconds():g}s, verify={verify})")

    def should_verify(self, group: dict, pg, layout: tuple) -> str | None:
        """Why this call of ``group`` on process group ``pg`` runs the consistency check, or None.

        The reason is ``"always"`` (``verify=True``), ``"changed"`` (the first call, or ``layout``
        differs from the site's previous call), ``"first"`` or ``"periodic"``. ``layout`` describes
        the call's matrices, ``layout[0]`` being the rule's name (a rule may make two calls per step,
        as ef21_muon does: each is its own call site).
        """
        if self.verify != "auto":
            return "always" if self.verify else None
        entry = self._calls.setdefault((id(group), id(pg), layout[0]), [0, None])
        entry[0] += 1
        changed, entry[1] = layout != entry[1], layout
        if changed:
            return "changed"
        if entry[0] <= self.verify_first:
            return "first"
        return "periodic" if entry[0] % self.verify_every == 0 else None

    def step_context(self):
        """The whole ``step()`` treats plain tensors as replicated across DTensor meshes.

        Per-matrix state (NorMuon's row moment, Dion's Q, AdaGO's scalars) is a plain tensor that
        every rank holds whole; under FSDP2 a rule's element-wise code may combine it with sharded
        DTensors (AdaGO's ``pre`` adds ‖G‖² to a plain scalar), which DTensor then reduces.
        """
        return implicit_replication()

    def matrix_phase(self, rule, Xs: list[Tensor], states: list[dict], group: dict) -> list[Tensor]:
        """``matrix_fn`` results, each laid out like its input (a shard for DTensor inputs)."""
        return [O for O, _ in self._run(rule, None, Xs, states, group)]

    def update_phase(self, rule, params, Xs, states, group) -> list[tuple[Tensor, float]]:
        """``(direction, step_size)`` per parameter, the direction laid out like the parameter."""
        return self._run(rule, params, Xs, states, group)

    # ---- one call -------------------------------------------------------------------------------

    def _run(self, rule, params, Xs, states, group) -> list:
        results: list = [None] * len(Xs)
        by_group: dict[int, list[int]] = {}
        layouts = [layout_of(X, self.process_group) for X in Xs]
        for i, lay in enumerate(layouts):
            by_group.setdefault(id(lay.group), []).append(i)
        for idx in by_group.values():
            _Call(self, rule, params, Xs, states, group, idx, layouts).run(results)
        return results

    def _owners(self, pg, costs: list[float]) -> list[int]:
        key = tuple(dist.get_process_group_ranks(pg))
        owners, loads = assign_owners(costs, len(key), self._loads.get(key))
        low = min(loads)
        self._loads[key] = [x - low for x in loads]
        return owners


class _Call:
    """The matrices of one param group that share one process group, through steps 2–5."""

    def __init__(self, ex: DistributedExecutor, rule, params, Xs, states, group, idx, layouts):
        self.ex, self.rule, self.group, self.idx = ex, rule, group, idx
        self.params = [params[i] for i in idx] if params is not None else None
        self.Xs = [Xs[i] for i in idx]
        self.states = [states[i] for i in idx]
        self.x_lay: list[Layout] = [layouts[i] for i in idx]
        self.comm = Comm(self.x_lay[0].group, ex.timeout,
                         f"matrix phase of param group algorithm={group.get('algorithm', rule.name)!r}")
        self.keys = [matrix_phase_keys(rule, st) for st in self.states]
        if self.params is not None:
            self.out_lay = [layout_of(p, self.comm.group) for p in self.params]
            for p, lay in zip(self.params, self.out_lay):
                if lay.group is not self.comm.group and lay.sharded:
                    raise NotImplementedError(f"parameter of shape {tuple(p.shape)} and its update input "
                                              "live on different process groups")
        else:
            self.out_lay = self.x_lay
        self.owners = ex._owners(self.comm.group, [matrix_cost(tuple(X.shape)) for X in self.Xs])
        self.device = local(self.Xs[0]).device

    def layout(self) -> tuple:
        """What ``"auto"`` compares between calls: each matrix's shape, dtype, sharding and state layout."""
        return (self.rule.name, tuple(
            (tuple(X.shape), X.dtype, lay.shard_dim, tuple((k, tuple(st[k].shape), st[k].dtype) for k in keys))
            for X, lay, st, keys in zip(self.Xs, self.x_lay, self.states, self.keys)))

    def run(self, results: list) -> None:
        reason = self.ex.should_verify(self.group, self.comm.group, self.layout())
        if reason is not None:
            self._verify(reason)
        full_in = self._gather()
        outs, blobs, error = self._compute(full_in)
        header = self._header(outs, blobs, error)
        for j, part in self._scatter(outs, blobs, header).items():
            results[self.idx[j]] = part

    # step 1½: every rank steps the same matrices; replicas are equal.
    def _verify(self, reason: str = "always") -> None:
        desc = repr((self.rule.name, self.owners, [
            (tuple(X.shape), str(X.dtype), lay.shard_dim,
             [(k, tuple(st[k].shape), str(st[k].dtype)) for k in keys])
            for X, lay, st, keys in zip(self.Xs, self.x_lay, self.states, self.keys)]))
        h = int.from_bytes(hashlib.sha256(desc.encode()).digest()[:8], "little") >> 1
        s1 = s2 = torch.zeros((), dtype=torch.float64, device=self.device)
        for j, (X, lay) in enumerate(zip(self.Xs, self.x_lay)):
            tensors = ([local(X)] if not lay.sharded else []) + [
                local(self.states[j][k]) for k in self.keys[j]
                if not layout_of(self.states[j][k], self.comm.group).sharded]
            for t in tensors:
                w = 1.0 + j / len(self.Xs)
                s1 = s1 + w * t.sum(dtype=torch.float64)
                s2 = s2 + w * t.abs().sum(dtype=torch.float64)
        mine = torch.stack([torch.tensor(float((h >> (21 * b)) & 0x1FFFFF), dtype=torch.float64,
                                         device=self.device) for b in range(3)] + [s1, s2])
        try:
            every = self.comm.all_gather(mine, "checking that all ranks step the same matrices").cpu()
        except CollectiveTimeout as e:
            if reason != "changed":
                raise
            # Under "auto" a rank checks when its own matrices changed; ranks whose matrices did not
            # change went on to the next collective, so this wait is the mismatch itself.
            raise CollectiveTimeout(
                f"{e}. This rank's matrices differ from its previous step's, so it checked them; ranks "
                "whose matrices did not change skipped the check: the ranks probably step different "
                "parameters (a gradient on some ranks only). verify=True names such a mismatch at once."
            ) from e
        if not bool((every[:, :3] == every[0, :3]).all()):
            bad = [r for r in range(self.comm.world) if not bool((every[r, :3] == every[0, :3]).all())]
            raise DistributedError(
                f"rank {self.comm.rank}: ranks {bad} step different matrices than rank 0 in "
                f"{self.comm.context} (shapes, dtypes, shardings or state differ). Every rank must "
                "call step() on the same parameters, all with gradients, and rank-symmetric state."
            )
        sums = every[:, 3]
        scale = every[:, 4].max().item()
        finite = torch.isfinite(sums)
        if bool(finite.any()) and (not bool(finite.all()) or (sums - sums[0]).abs().max().item() > 1e-6 * scale):
            raise DistributedError(
                f"rank {self.comm.rank}: the replicated matrices of {self.comm.context} differ across "
                f"ranks (checksums {[f'{x:.10g}' for x in sums.tolist()]}). Their gradients are not "
                "synchronised: wrap the model in DDP (or fully_shard it), do not step inside "
                "no_sync(), or pass executor=muonlab.optim.LocalExecutor() to train each rank's "
                "copy on its own."
            )

    # step 2: shards of the inputs to their owners.
    def _gather(self) -> dict[tuple[int, str | None], Tensor]:
        entries = []  # (j, key, tensor, layout); key None = the matrix input X
        for j, (X, lay) in enumerate(zip(self.Xs, self.x_lay)):
            entries.append((j, None, X, lay))
            for k in self.keys[j]:
                entries.append((j, k, self.states[j][k], layout_of(self.states[j][k], self.comm.group)))
        me, W = self.comm.rank, self.comm.world
        full: dict[tuple[int, str | None], Tensor] = {}
        for j, k, t, lay in entries:
            if self.owners[j] == me and not lay.sharded:
                full[(j, k)] = local(t)
        sharded = [e for e in entries if e[3].sharded]
        for dtype in sorted({e[2].dtype for e in sharded}, key=str):
            ents = [e for e in sharded if e[2].dtype == dtype]
            sends = [[local(t) for j, _, t, _ in ents if self.owners[j] == s != me] for s in range(W)]
            mine = [e for e in ents if self.owners[e[0]] == me]
            recv = [0 if s == me else sum(region_shape(t.shape, lay, s).numel() for _, _, t, lay in mine)
                    for s in range(W)]
            got = self.comm.exchange(sends, recv, dtype, self.device, "gathering matrix shards to their owners")
            cursor = [0] * W
            for j, k, t, lay in mine:
                pieces = []
                for s in range(W):
                    if s == me:
                        pieces.append(local(t))
                        continue
                    shape = region_shape(t.shape, lay, s)
                    pieces.append(got[s][cursor[s]:cursor[s] + shape.numel()].view(shape))
                    cursor[s] += shape.numel()
                full[(j, k)] = torch.cat(pieces, dim=lay.shard_dim)
        return full

    # step 3: the owner's matrix_fn and post, on full tensors.
    def _compute(self, full_in):
        me = self.comm.rank
        owned = [j for j in range(len(self.Xs)) if self.owners[j] == me]
        outs: dict[int, tuple[Tensor, float]] = {}
        blobs: dict[int, bytes] = {}
        self.fstates = fstates = {}
        try:
            before = {}
            for j in owned:
                fs = dict(self.states[j])
                fs.update({k: full_in[(j, k)] for k in self.keys[j]})
                fstates[j] = fs
                before[j] = {k: copy.deepcopy(v) for k, v in fs.items() if k != "step" and not isinstance(v, Tensor)}
            Xfull = [full_in[(j, None)] for j in owned]
            for bucket in self.ex.buckets(self.rule, Xfull):
                Os = run_batch(self.rule, [Xfull[b] for b in bucket], [fstates[owned[b]] for b in bucket], self.group)
                for b, O in zip(bucket, Os):
                    outs[owned[b]] = (O, 0.0)
            for j in owned:
                outs[j] = self._post(j, outs[j][0], fstates[j])
                blobs[j] = self._sync_objects(j, fstates[j], before[j])
        except Exception as e:  # reported to every rank through the header, then re-raised
            return outs, blobs, e
        return outs, blobs, None

    def _post(self, j: int, O: Tensor, fs: dict) -> tuple[Tensor, float]:
        if self.params is None:
            shape = self.Xs[j].shape
            U, step = O, 0.0
        else:
            p = self.params[j]
            shape = p.shape
            U, step = self.rule.post(p, from_matrix(O, p.shape), fs, self.group)
        if not isinstance(U, Tensor) or U.shape != shape or U.dtype not in _DTYPES:
            raise ValueError(f"{self.rule.name}: the full-matrix phase returned "
                             f"{getattr(U, 'shape', type(U))} ({getattr(U, 'dtype', '')}) for a "
                             f"parameter of shape {tuple(shape)}")
        for k in self.keys[j]:
            new, old = fs[k], self.states[j][k]
            if not isinstance(new, Tensor) or new.shape != old.shape:
                raise ValueError(f"{self.rule.name}: state[{k!r}] changed from shape {tuple(old.shape)} to "
                                 f"{getattr(new, 'shape', type(new))} in matrix_fn/post; create state with "
                                 "its final shape in init_state")
        return U, float(step)

    def _sync_objects(self, j: int, fs: dict, before: dict) -> bytes:
        """Pickled non-tensor state that the owner's matrix_fn/post set, changed or deleted."""
        st = self.states[j]
        changed = {}
        for k, v in fs.items():
            if k == "step" or k in self.keys[j] or (k in st and isinstance(st[k], Tensor)):
                continue
            try:
                same = k in before and bool(before[k] == v)
            except Exception:
                same = False
            if not same:
                changed[k] = v
        deleted = [k for k in st if k not in fs]
        if not changed and not deleted:
            return b""
        return pickle.dumps({"set": changed, "del": deleted})

    # step 4: step sizes, output dtypes and errors of every matrix, to every rank.
    def _header(self, outs, blobs, error) -> Tensor:
        n = len(self.Xs)
        header = torch.zeros((n, 4), dtype=torch.float64)
        for j in range(n):
            if self.owners[j] != self.comm.rank:
                continue
            if error is not None:
                header[j, 2] = 1.0
            else:
                U, step = outs[j]
                header[j, 0], header[j, 1], header[j, 3] = step, _DTYPES.index(U.dtype), len(blobs[j])
        header = self.comm.all_reduce_sum(header.to(self.device), "sharing step sizes").cpu()
        failed = [j for j in range(n) if header[j, 2] > 0]
        if error is not None:
            raise error
        if failed:
            ranks = sorted({self.owners[j] for j in failed})
            raise DistributedError(
                f"rank {self.comm.rank}: rank(s) {ranks} raised in {self.comm.context} (matrices of "
                f"shape {[tuple(self.Xs[j].shape) for j in failed][:4]}); see their traceback"
            )
        return header

    # step 5: each rank's part of the results and of the state, from the owners.
    def _scatter(self, outs, blobs, header) -> dict[int, Any]:
        me, W = self.comm.rank, self.comm.world
        entries = []  # (j, key, full tensor on the owner or None, layout, shape, dtype)
        for j in range(len(self.Xs)):
            own = self.owners[j] == me
            out_shape = self.params[j].shape if self.params is not None else self.Xs[j].shape
            entries.append((j, None, outs[j][0] if own else None, self.out_lay[j], out_shape,
                            _DTYPES[int(header[j, 1])]))
            for k in self.keys[j]:
                t = self.states[j][k]
                lay = layout_of(t, self.comm.group)
                entries.append((j, k, self.fstates[j][k] if own else None, lay, t.shape, t.dtype))
            if header[j, 3] > 0:
                blob = (torch.frombuffer(bytearray(blobs[j]), dtype=torch.uint8).to(self.device)
                        if own else None)
                entries.append((j, _BLOB, blob, Layout(self.comm.group), torch.Size([int(header[j, 3])]),
                                torch.uint8))
        parts: dict[tuple[int, str | None], Tensor] = {}
        for dtype in sorted({e[5] for e in entries}, key=str):
            ents = [e for e in entries if e[5] == dtype]
            sends = [[region(full, lay, s) for j, _, full, lay, _, _ in ents if self.owners[j] == me and s != me]
                     for s in range(W)]
            recv = [0 if s == me else sum(region_shape(shape, lay, me).numel()
                                          for j, _, _, lay, shape, _ in ents if self.owners[j] == s)
                    for s in range(W)]
            got = self.comm.exchange(sends, recv, dtype, self.device, "sending results to every rank")
            cursor = [0] * W
            for j, k, full, lay, shape, _ in ents:
                s = self.owners[j]
                if s == me:
                    parts[(j, k)] = region(full, lay, me)
                    continue
                rshape = region_shape(shape, lay, me)
                parts[(j, k)] = got[s][cursor[s]:cursor[s] + rshape.numel()].view(rshape)
                cursor[s] += rshape.numel()
        return self._write_back(parts, header)

    def _write_back(self, parts, header) -> dict[int, Any]:
        results = {}
        for j in range(len(self.Xs)):
            for k in self.keys[j]:
                dst, src = local(self.states[j][k]), parts[(j, k)]
                if src.data_ptr() != dst.data_ptr() or src.shape != dst.shape:
                    dst.copy_(src)
            if (j, _BLOB) in parts:
                objs = pickle.loads(parts[(j, _BLOB)].cpu().numpy().tobytes())
                self.states[j].update(objs["set"])
                for k in objs["del"]:
                    self.states[j].pop(k, None)
            U = parts[(j, None)]
            lay = self.out_lay[j]
            if lay.mesh is not None:
                ref = self.params[j] if self.params is not None else self.Xs[j]
                U = like(U.contiguous() if lay.shard_dim else U, lay, ref.shape, ref.stride())
            results[j] = (U, float(header[j, 0]))
        return results
