"""Benchmark: what the DistributedExecutor's consistency check costs per step, by ``verify`` policy.

Two gloo processes (1 torch thread each) step the hidden matrices of a parameter set with Muon,
DDP-style (plain replicated tensors, the same fixed gradients on every rank), through three
optimizers that differ only in ``DistributedExecutor(verify=...)``: ``True`` (every step),
``"auto"`` (the default: the first 3 steps, then every 100th, and on a change of the matrices) and
``False`` (never). Rounds are interleaved (True, auto, False, True, ...; each a block of
``--block`` steps after a barrier, timed on every rank, the slowest rank's time kept), so a change
in the machine's load hits the three alike. Reported, per run:

* per-step time of each policy (median over rounds) and its ratio to ``verify=False`` (the median
  of the per-round ratios, i.e. measured within one round);
* the time inside the check itself (``_Call._verify``, wall, mean per checked call on rank 0: its
  reductions, the ``all_gather`` and the wait for the other rank to arrive at it);
* how many checks each policy ran over the timed steps.

    PYTHONPATH=src python3 benchmarks/distributed_verify.py                      # small-48x64
    PYTHONPATH=src python3 benchmarks/distributed_verify.py --paramset gpt-6x512 --block 2

The parameter sets are :mod:`muonlab.bench.paramsets` (hidden matrices only). Runs are
independent when started as separate processes; the script prints one JSON line at the end so
several runs can be collected (``--json PATH`` writes it to a file too).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import muonlab
from muonlab.bench.paramsets import PARAMSETS
from muonlab.distributed import DistributedExecutor
from muonlab.distributed import executor as executor_module

POLICIES = (("True", True), ("auto", "auto"), ("False", False))


def _worker(rank: int, args: dict, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store, 2), rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=600))
    shapes = [shape for _, shape, role in PARAMSETS[args["paramset"]]() if role == "hidden"]
    g = torch.Generator().manual_seed(0)  # the same parameters and gradients on both ranks
    base = [torch.randn(s, generator=g) / s[-1] ** 0.5 for s in shapes]
    grads = [torch.randn(s, generator=g) for s in shapes]
    opts, params = {}, {}
    for label, policy in POLICIES:
        ps = [torch.nn.Parameter(b.clone()) for b in base]
        params[label] = ps
        opts[label] = muonlab.HybridOptimizer(ps, "muon", lr=0.02, compute_dtype=args["dtype"],
                                              executor=DistributedExecutor(verify=policy))
    checks = {label: [0, 0.0] for label, _ in POLICIES}  # (calls, seconds) inside _verify
    current = [None]
    original = executor_module._Call._verify

    def timed_verify(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return original(self, *a, **kw)
        finally:
            checks[current[0]][0] += 1
            checks[current[0]][1] += time.perf_counter() - t0

    executor_module._Call._verify = timed_verify
    times = {label: [] for label, _ in POLICIES}
    for r in range(args["warmup"] + args["rounds"]):
        if r == args["warmup"]:
            checks = {label: [0, 0.0] for label, _ in POLICIES}
        for label, _ in POLICIES:
            current[0] = label
            for p, gr in zip(params[label], grads):
                p.grad = gr
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(args["block"]):
                opts[label].step()
            dt = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
            dist.all_reduce(dt, op=dist.ReduceOp.MAX)  # the slowest rank sets the pace
            if r >= args["warmup"]:
                times[label].append(dt.item() / args["block"])
    if rank == 0:
        Path(out).write_text(json.dumps({"times": times, "checks": checks}))
    dist.barrier()  # nobody tears down the group while a peer still uses it
    dist.destroy_process_group()


def run(args: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        mp.start_processes(_worker, args=(args, os.path.join(tmp, "store"), out), nprocs=2, start_method="spawn")
        raw = json.loads(Path(out).read_text())
    times, checks = raw["times"], raw["checks"]
    rows = {}
    for label, _ in POLICIES:
        ratios = [a / b for a, b in zip(times[label], times["False"])]
        n, secs = checks[label]
        rows[label] = {"step_ms": 1e3 * statistics.median(times[label]),
                       "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                       "checks": n, "check_ms": 1e3 * secs / n if n else 0.0}
    return {"paramset": args["paramset"], "dtype": args["dtype"], "rounds": args["rounds"],
            "block": args["block"], "warmup": args["warmup"], "torch": torch.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_avg": os.getloadavg()[0], "cpus": os.cpu_count(), "rows": rows}


def format_result(res: dict) -> str:
    steps = res["rounds"] * res["block"]
    head = (f"paramset {res['paramset']}, Muon, {res['dtype']}, 2 gloo ranks × 1 thread; {res['rounds']} "
            f"interleaved rounds × {res['block']} steps after {res['warmup']} warm-up round(s); torch "
            f"{res['torch']}, {platform.processor() or platform.machine()}, {res['cpus']} CPUs, load "
            f"average {res['load_avg']:.1f} at the end; {res['date']}")
    cols = f"{'verify':7} {'step ms':>9} {'vs False':>9} {'per-round range':>16} {'checks':>11} {'ms/check':>9}"
    lines = [head, cols]
    for label, r in res["rows"].items():
        lines.append(f"{label:7} {r['step_ms']:9.2f} {r['ratio']:9.3f} "
                     f"{r['ratio_min']:7.3f}–{r['ratio_max']:.3f} {r['checks']:5d}/{steps:<5d} {r['check_ms']:9.3f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paramset", default="small-48x64", choices=sorted(PARAMSETS))
    ap.add_argument("--rounds", type=int, default=11, help="timed interleaved rounds (default 11)")
    ap.add_argument("--warmup", type=int, default=4, help="untimed rounds first (default 4)")
    ap.add_argument("--block", type=int, default=20, help="steps per policy per round (default 20)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--json", default=None, help="also write the result to this file")
    args = vars(ap.parse_args())
    for k in ("rounds", "block"):
        if args[k] < 1:
            ap.error(f"--{k}={args[k]} must be >= 1")
    if args["warmup"] < 0:
        ap.error(f"--warmup={args['warmup']} must be >= 0")
    res = run(args)
    print(format_result(res))
    line = json.dumps(res)
    print(line)
    if args["json"]:
        Path(args["json"]).write_text(line + "\n")


if __name__ == "__main__":
    main()
