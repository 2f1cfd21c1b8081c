"""Benchmark: what SpectralProbe(every=100) costs in training time on the lab's tiny GPT.

One training run is cut into blocks of ``every`` steps. Blocks alternate between A (no probe) and
B (a probe with ``every=N`` attached for the block, so it samples exactly once, at the block's first
step, which is its steady-state duty cycle). Pairs alternate their order (AB, BA, AB, ...), so
drifts in machine load hit both arms alike, and the two blocks of a pair run seconds apart. For
each pair the script prints the overhead ``t_B / t_A − 1`` in wall time and in process CPU time,
then the medians. It also prints the time the probe spent inside its hooks (``probe.seconds``),
which is the cost the probe adds directly.

CPU time is the number to trust on a shared machine. Other processes stretch wall time by tens of
percent but barely change the CPU seconds this process uses, provided it runs one thread
(``--threads 1``; with several OpenMP threads, spin-waiting under contention counts as CPU).

    OMP_NUM_THREADS=1 PYTHONPATH=src python3 benchmarks/probe_overhead.py --threads 1
    PYTHONPATH=src python3 benchmarks/probe_overhead.py --pairs 12 --every 100

The model is ``muonlab.lab.workloads.tiny_gpt`` at its default knobs (width 128, depth 4,
context 64, batch 32), trained with ``create_optimizer(model, "muon")``. If the lab is not
installed, a stand-in GPT of the same shape on random tokens is used, and the output says so.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

import muonlab
from muonlab.diagnostics import SpectralProbe


# ---- workload -------------------------------------------------------------------------------


def lab_workload():
    """(build_model(seed), get_batch(gen), loss(model, batch), routing kwargs, label)."""
    try:
        from muonlab.lab.workloads.tiny_gpt import TinyGPT
    except ImportError:
        return fallback_workload()
    wl = TinyGPT()
    wl.setup(torch.device("cpu"))
    return wl.build_model, wl.get_batch, wl.loss, wl.routing(), "muonlab.lab tiny_gpt (default knobs)"


def fallback_workload():
    # Same shape as tiny_gpt's defaults; nn.TransformerEncoderLayer with a causal mask stands in
    # for the nanoGPT block. Random tokens: the cost of a step does not depend on the data.
    V, C, D, L, B = 256, 64, 128, 4, 32

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, D), nn.Embedding(C, D)
            layer = nn.TransformerEncoderLayer(D, 4, 4 * D, dropout=0.0, batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, L)
            self.lm_head = nn.Linear(D, V, bias=False)

        def forward(self, idx):
            mask = nn.Transformer.generate_square_subsequent_mask(idx.shape[1])
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            return self.lm_head(self.blocks(x, mask=mask, is_causal=True))

    def build(seed):
        torch.manual_seed(seed)
        return GPT()

    def batch(gen):
        x = torch.randint(0, V, (B, C + 1), generator=gen)
        return x[:, :-1], x[:, 1:]

    def loss(model, b):
        return F.cross_entropy(model(b[0]).reshape(-1, V), b[1].reshape(-1))

    return build, batch, loss, {"output": "lm_head"}, "stand-in GPT (muonlab.lab not found)"


# ---- timed blocks ---------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=8, help="A/B block pairs (default 8)")
    ap.add_argument("--every", type=int, default=100, help="probe interval = block length in steps (default 100)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    build, get_batch, loss_fn, routing, label = lab_workload()
    model = build(0)
    opt = muonlab.create_optimizer(model, "muon", **routing)
    gen = torch.Generator().manual_seed(0)

    def block(probe_every: int | None) -> tuple[float, float, float]:
        """``every`` training steps; (wall s, process CPU s, s inside probe hooks)."""
        probe = SpectralProbe(model, opt, every=probe_every) if probe_every else None
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.every):
            loss = loss_fn(model, get_batch(gen))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if probe is None:
            return wall, cpu, 0.0
        probe.remove()
        return wall, cpu, probe.seconds

    print(f"probe overhead benchmark  {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"  model: {label}; optimizer: muonlab.create_optimizer(model, 'muon')")
    print(f"  torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{platform.processor() or platform.machine()}, python {platform.python_version()}")
    n_mat = sum(1 for p in model.parameters() if p.ndim >= 2)
    print(f"  {args.pairs} interleaved A/B pairs of {args.every}-step blocks; B samples {n_mat} matrices once")
    block(None)  # warm-up: allocator, kernels, the first touch of the data

    wall_oh, cpu_oh, hook_share, hook_ms = [], [], [], []
    for i in range(args.pairs):
        order = "AB" if i % 2 == 0 else "BA"
        res = {arm: block(None if arm == "A" else args.every) for arm in order}
        (wa, ca, _), (wb, cb, hook) = res["A"], res["B"]
        wall_oh.append(100.0 * (wb / wa - 1.0))
        cpu_oh.append(100.0 * (cb / ca - 1.0))
        hook_share.append(100.0 * hook / wb)
        hook_ms.append(1e3 * hook)
        print(f"  pair {i + 1:2d} ({order}): wall {wa:6.2f} -> {wb:6.2f} s ({wall_oh[-1]:+6.2f}%)   "
              f"cpu {ca:6.2f} -> {cb:6.2f} s ({cpu_oh[-1]:+6.2f}%)   in hooks {1e3 * hook:4.0f} ms "
              f"({hook_share[-1]:.2f}%)")
    for name, xs in (("CPU time ", cpu_oh), ("wall time", wall_oh)):
        print(f"median overhead, {name}: {statistics.median(xs):+.2f}%  (min {min(xs):+.2f}%, max {max(xs):+.2f}%)")
    print(f"median time inside probe hooks: {statistics.median(hook_share):.2f}% of training time "
          f"({statistics.median(hook_ms):.0f} ms per sampled step, every={args.every})")


if __name__ == "__main__":
    main()
