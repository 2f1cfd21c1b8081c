"""``muonlab bench orth``: orthogonalization time and GFLOP/s against this machine's matmul peak.

For each shape and dtype: the plain Newton–Schulz iteration, the Gram iteration, and (for a batch)
one batched call against a Python loop. GFLOP/s counts the FLOPs of the *plain* iteration
(T·(2·2r²c + 2r³) for an r×c wide matrix), so a faster algorithm shows as more "effective"
GFLOP/s; the peak is a square matmul of the same dtype measured in the same run.
"""

from __future__ import annotations

import statistics
import time

import torch

from ..matfn import newton_schulz, orthogonalize


def _time(fn, reps: int, min_seconds: float = 0.5) -> float:
    """Median of at least ``reps`` timed calls, and of more until ``min_seconds`` have passed (so
    millisecond-scale shapes get hundreds of samples, not five)."""
    fn()  # warm up
    ts = []
    start = time.perf_counter()
    while len(ts) < reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def matmul_peak(dtype: torch.dtype, n: int = 1024, reps: int = 5) -> float:
    """Measured GFLOP/s of an n×n×n matmul in ``dtype``."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return 2 * n**3 / _time(lambda: a @ b, reps) / 1e9


def ns_flops(r: int, c: int, steps: int = 5, batch: int = 1) -> float:
    r, c = min(r, c), max(r, c)
    return batch * steps * (4 * r * r * c + 2 * r**3)


def spread(O: torch.Tensor) -> tuple[float, float]:
    s = torch.linalg.svdvals(O.double().reshape(-1, *O.shape[-2:]))
    return s.min().item(), s.max().item()


DEFAULT_SHAPES = [(512, 512), (512, 2048), (768, 3072), (2304, 768), (48, 64, 64)]


def run(shapes=None, dtypes=("bfloat16", "float32"), reps: int = 5) -> list[dict]:
    rows = []
    for dname in dtypes:
        dtype = getattr(torch, dname)
        for shape in shapes or DEFAULT_SHAPES:
            # measured next to each row: on a shared host the machine's speed drifts over a run
            peak = matmul_peak(dtype)
            batch = shape[0] if len(shape) == 3 else 1
            m, n = shape[-2:]
            G = torch.randn(*shape)
            flops = ns_flops(m, n, batch=batch)
            variants = {
                "plain": lambda: newton_schulz(G, compute_dtype=dtype, gram=False),
                "gram": lambda: newton_schulz(G, compute_dtype=dtype, gram=True),
            }
            if batch > 1:
                variants["loop"] = lambda: [newton_schulz(G[i], compute_dtype=dtype, gram=False) for i in range(batch)]
            for vname, fn in variants.items():
                t = _time(fn, reps)
                out = fn()
                lo, hi = spread(torch.stack(out) if isinstance(out, list) else out)
                rows.append({"dtype": dname, "shape": "×".join(map(str, shape)), "variant": vname,
                             "ms": t * 1e3, "gflops": flops / t / 1e9, "peak_frac": flops / t / 1e9 / peak,
                             "sigma_min": lo, "sigma_max": hi, "peak_gflops": peak})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [f"Newton–Schulz (Keller, 5 steps), torch {torch.__version__}, {torch.get_num_threads()} threads",
             f"{'dtype':9} {'shape':12} {'variant':6} {'ms':>8} {'GFLOP/s':>8} {'of peak':>8} {'σ range':>16}"]
    for r in rows:
        lines.append(f"{r['dtype']:9} {r['shape']:12} {r['variant']:6} {r['ms']:8.2f} {r['gflops']:8.1f} "
                     f"{r['peak_frac']:8.0%} [{r['sigma_min']:.3f}, {r['sigma_max']:.3f}]")
    peaks: dict[str, list[float]] = {}
    for r in rows:
        peaks.setdefault(r["dtype"], []).append(r["peak_gflops"])
    lines.append("matmul peak (1024³, measured before each shape): " + ", ".join(
        f"{k} {min(v):.0f}–{max(v):.0f} GFLOP/s" for k, v in peaks.items()))
    return "\n".join(lines)


__all__ = ["run", "format_rows", "matmul_peak", "orthogonalize"]
