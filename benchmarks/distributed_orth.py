"""Benchmark: orthogonalization time per optimizer step with 1 and 2 ranks, same model.

The "orthogonalization time" is the wall time of the full-matrix phase of a step
(``executor.update_phase``: matrix_fn + post, plus, with 2 ranks, the gather/scatter and waiting for
the slowest owner), the slowest rank's, median over the timed steps. The whole ``opt.step()`` is
shown too, and the CPU time spent in ``matrix_fn`` (busiest rank, and summed over ranks): on a
machine shared with other work the wall times mostly show contention, the CPU times still show
how the work was split. Every configuration runs in fresh processes (gloo on CPU, a FileStore rendezvous):

    1 rank  × 1 thread   LocalExecutor
    1 rank  × 2 threads  LocalExecutor (the same 2 cores as the 2-rank runs)
    2 ranks × 1 thread   DDP-style replicas + DistributedExecutor
    2 ranks × 1 thread   FSDP2 (fully_shard, DTensor shards) + DistributedExecutor

    PYTHONPATH=src python3 benchmarks/distributed_orth.py          # gpt-6x512, bf16, 3 rounds × 5 steps
    PYTHONPATH=src python3 benchmarks/distributed_orth.py --paramset small-48x64 --steps 20

The parameter sets are :mod:`muonlab.bench.paramsets` (hidden matrices only go to Muon; the
gradients are fixed random tensors, identical on every rank, so only the optimizer is timed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import muonlab
from muonlab.bench.paramsets import PARAMSETS
from muonlab.distributed import DistributedExecutor
from muonlab.optim import LocalExecutor


def hidden_shapes(paramset: str) -> list[tuple[str, tuple]]:
    return [(n.replace(".", "_"), shape) for n, shape, role in PARAMSETS[paramset]() if role == "hidden"]


class Matrices(nn.Module):
    """Only the hidden matrices of a parameter set, one child module each (so fully_shard wraps each)."""

    def __init__(self, shapes):
        super().__init__()
        self.mats = nn.ModuleList()
        for _, shape in shapes:
            m = nn.Module()
            m.weight = nn.Parameter(torch.randn(shape) / shape[-1] ** 0.5)
            self.mats.append(m)


def _set_grads(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        full = torch.randn(p.shape, generator=g)
        if hasattr(p, "device_mesh"):  # FSDP2: this rank's shard of the same full gradient
            from torch.distributed.tensor import distribute_tensor

            p.grad = distribute_tensor(full, p.device_mesh, p.placements)
        else:
            p.grad = full


def _worker(rank: int, world: int, mode: str, threads: int, args: dict, store: str, out: str) -> None:
    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group("gloo", store=dist.FileStore(store, world), rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=600))
    torch.manual_seed(0)
    model = Matrices(hidden_shapes(args["paramset"]))
    if mode == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for m in model.mats:
            fully_shard(m)
        fully_shard(model)
    executor = DistributedExecutor(verify=args["verify"]) if world > 1 else LocalExecutor()
    spent = [0.0]
    inner = executor.update_phase

    def timed_update_phase(*a, **kw):
        t0 = time.perf_counter()
        try:
            return inner(*a, **kw)
        finally:
            spent[0] += time.perf_counter() - t0

    executor.update_phase = timed_update_phase
    rule = muonlab.get_spec("muon").rule  # this process's instance: time its matrix_fn calls
    computed = [0.0]  # CPU seconds of this process in matrix_fn: the work, whatever the contention
    matrix_fn = rule.matrix_fn

    def timed_matrix_fn(*a, **kw):
        t0 = time.process_time()
        try:
            return matrix_fn(*a, **kw)
        finally:
            computed[0] += time.process_time() - t0

    rule.matrix_fn = timed_matrix_fn
    opt = muonlab.HybridOptimizer(model.parameters(), "muon", executor=executor, lr=0.02,
                                  compute_dtype=args["dtype"])
    orth, total, compute, compute_sum = [], [], [], []
    for step in range(args["warmup"] + args["steps"]):
        _set_grads(model, seed=step)
        if world > 1:
            dist.barrier()
        spent[0] = computed[0] = 0.0
        t0 = time.perf_counter()
        opt.step()
        times = torch.tensor([spent[0], time.perf_counter() - t0, computed[0]], dtype=torch.float64)
        cpu_sum = times[2].clone()
        if world > 1:
            dist.all_reduce(times, op=dist.ReduceOp.MAX)  # the slowest rank sets the pace
            dist.all_reduce(cpu_sum)
        if step >= args["warmup"]:
            orth.append(times[0].item())
            total.append(times[1].item())
            compute.append(times[2].item())
            compute_sum.append(cpu_sum.item())
    if rank == 0:
        Path(out).write_text(json.dumps({"orth": orth, "total": total, "compute": compute,
                                         "compute_sum": compute_sum}))
    if world > 1:
        dist.barrier()  # nobody tears down the group while a peer still uses it
        dist.destroy_process_group()


CONFIGS = [  # (label, world, mode, threads per rank)
    ("1 rank × 1 thread", 1, "local", 1),
    ("1 rank × 2 threads", 1, "local", 2),
    ("2 ranks × 1 thread, DDP", 2, "ddp", 1),
    ("2 ranks × 1 thread, FSDP2", 2, "fsdp2", 1),
]


def run(args: dict) -> list[dict]:
    """``rounds`` rounds; each runs every configuration once, in a rotated order, so a change in
    the machine's load hits all of them alike. Medians are over all timed steps of all rounds."""
    res = {c[0]: {"orth": [], "total": [], "compute": [], "compute_sum": []} for c in CONFIGS}
    for r in range(args["rounds"]):
        for label, world, mode, threads in CONFIGS[r % len(CONFIGS):] + CONFIGS[:r % len(CONFIGS)]:
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "out.json")
                try:
                    mp.start_processes(_worker, args=(world, mode, threads, args, os.path.join(tmp, "store"),
                                                      out), nprocs=world, start_method="spawn")
                except mp.ProcessExitedException as e:
                    # Seen rarely on this machine: a rank aborts while the gloo group is torn down,
                    # after rank 0 wrote the complete timings. Keep those; fail without them.
                    if not Path(out).exists():
                        raise
                    print(f"note: {label}: {e} after the timings were written", file=sys.stderr)
                for k, v in json.loads(Path(out).read_text()).items():
                    res[label][k] += v
    return [{"config": label, **{k: statistics.median(v) for k, v in res[label].items()},
             "orth_min": min(res[label]["orth"])} for label, *_ in CONFIGS]


def format_rows(rows: list[dict], args: dict) -> str:
    shapes = hidden_shapes(args["paramset"])
    base = rows[0]["orth"]
    lines = [
        f"paramset {args['paramset']}: {len(shapes)} hidden matrices, Muon, compute_dtype "
        f"{args['dtype']}; medians of {args['rounds']} rounds × {args['steps']} steps (after "
        f"{args['warmup']} warm-up step per run); torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"load average {os.getloadavg()[0]:.1f} at the end",
        "",
        "| configuration | orthogonalization / step (s) | fastest step (s) | whole step (s) | "
        "speed-up vs 1×1 | matrix_fn CPU s, busiest rank | matrix_fn CPU s, all ranks |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['config']} | {r['orth']:.3f} | {r['orth_min']:.3f} | {r['total']:.3f} | "
                     f"{base / r['orth']:.2f}× | {r['compute']:.3f} | {r['compute_sum']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paramset", default="gpt-6x512", choices=sorted(PARAMSETS))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--no-verify", dest="verify", action="store_false",
                    help="skip the executor's per-step consistency check")
    args = vars(ap.parse_args())
    print(format_rows(run(args), args))


if __name__ == "__main__":
    main()
