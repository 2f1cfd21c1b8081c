"""``muonlab bench orth``: orthogonalization time and GFLOP/s against this machine's matmul peak.

For each shape and dtype: the plain Newton–Schulz iteration, the Gram iteration, and (for a batch)
one batched call against a Python loop; optionally each also through ``torch.compile``
(``ns_compile``) and, in bf16, the other packages' iterations (:mod:`muonlab.bench.anchors`). GFLOP/s counts the FLOPs of the *plain* iteration
(T·(2·2r²c + 2r³) for an r×c wide matrix), so a faster algorithm shows as more "effective"
GFLOP/s; the peak is a square matmul of the same dtype measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from functools import partial

import torch

from ..matfn import newton_schulz, orthogonalize


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, reps: int, min_seconds: float = 0.5, device: torch.device | None = None) -> float:
    """Median of at least ``reps`` timed calls, and of more until ``min_seconds`` have passed (so
    millisecond-scale shapes get hundreds of samples, not five). On CUDA every call is waited for."""
    device = device or torch.device("cpu")
    fn()  # warm up
    _sync(device)
    ts = []
    start = time.perf_counter()
    while len(ts) < reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def matmul_peak(dtype: torch.dtype, n: int = 1024, reps: int = 5, device: str | torch.device = "cpu",
                min_seconds: float = 0.5) -> float:
    """Measured GFLOP/s of an n×n×n matmul in ``dtype`` on ``device``."""
    device = torch.device(device)
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    return 2 * n**3 / _time(lambda: a @ b, reps, min_seconds, device) / 1e9


def ns_flops(r: int, c: int, steps: int = 5, batch: int = 1) -> float:
    r, c = min(r, c), max(r, c)
    return batch * steps * (4 * r * r * c + 2 * r**3)


def spread(O: torch.Tensor) -> tuple[float, float]:
    s = torch.linalg.svdvals(O.double().cpu().reshape(-1, *O.shape[-2:]))
    return s.min().item(), s.max().item()


DEFAULT_SHAPES = [(512, 512), (512, 2048), (768, 3072), (2304, 768), (48, 64, 64)]


def _variants(G: torch.Tensor, dtype: torch.dtype, compile_modes, anchors) -> dict:
    """Name → zero-argument callable for one input; skipped ones as name → reason (a str)."""
    batch = G.shape[0] if G.ndim == 3 else 1
    out: dict = {}
    for compiled in compile_modes:
        tag = "+compile" if compiled else ""
        out["plain" + tag] = partial(newton_schulz, G, compute_dtype=dtype, gram=False, compile=compiled)
        out["gram" + tag] = partial(newton_schulz, G, compute_dtype=dtype, gram=True, compile=compiled)
        if batch > 1:
            out["loop" + tag] = partial(_loop, G, dtype, compiled)
    if anchors and dtype == torch.bfloat16:  # the anchors' iterations are bf16 by construction
        from .anchors import orthogonalizers

        for name, load in orthogonalizers().items():
            if name == "torch.optim.Muon" and batch > 1:
                out[name] = "2-D matrices only"
                continue
            try:
                out[name] = partial(load(), G)
            except ImportError as e:
                out[name] = str(e)
    return out


def _loop(G: torch.Tensor, dtype: torch.dtype, compiled: bool) -> list[torch.Tensor]:
    return [newton_schulz(G[i], compute_dtype=dtype, gram=False, compile=compiled) for i in range(G.shape[0])]


def run(shapes=None, dtypes=("bfloat16", "float32"), reps: int = 5, *, device: str | torch.device = "cpu",
        compile_modes=(False,), anchors: bool = False, min_seconds: float = 0.5) -> list[dict]:
    """One row per (dtype, shape, variant): ms, GFLOP/s, share of the matmul peak, σ range.

    Variants: muonlab's plain and Gram iterations (and a per-matrix loop for a batch), once per
    entry of ``compile_modes`` (``True`` adds ``+compile`` rows: ``ns_compile``; the first call,
    which compiles, is the untimed warm-up); with ``anchors``, each other package's bf16
    Newton–Schulz (:func:`muonlab.bench.anchors.orthogonalizers`) in the bfloat16 rows, or a
    ``skipped`` row saying why not. ``min_seconds``: least time spent timing each row.
    """
    device = torch.device(device)
    rows = []
    for dname in dtypes:
        dtype = getattr(torch, dname)
        for shape in shapes or DEFAULT_SHAPES:
            # measured next to each row: on a shared host the machine's speed drifts over a run
            peak = matmul_peak(dtype, device=device, min_seconds=min_seconds)
            batch = shape[0] if len(shape) == 3 else 1
            m, n = shape[-2:]
            G = torch.randn(*shape, device=device)
            flops = ns_flops(m, n, batch=batch)
            for vname, fn in _variants(G, dtype, compile_modes, anchors).items():
                row = {"dtype": dname, "shape": "×".join(map(str, shape)), "variant": vname}
                if isinstance(fn, str):
                    rows.append({**row, "skipped": fn})
                    continue
                try:
                    t = _time(fn, reps, min_seconds, device)
                except Exception as e:  # noqa: BLE001 -- an anchor that cannot take this input
                    rows.append({**row, "skipped": f"{type(e).__name__}: {e}".splitlines()[0][:120]})
                    continue
                out = fn()
                lo, hi = spread(torch.stack(out) if isinstance(out, list) else out)
                rows.append({**row, "ms": t * 1e3, "gflops": flops / t / 1e9, "peak_frac": flops / t / 1e9 / peak,
                             "sigma_min": lo, "sigma_max": hi, "peak_gflops": peak})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [f"Newton–Schulz (5 steps), torch {torch.__version__}, {torch.get_num_threads()} threads",
             f"{'dtype':9} {'shape':12} {'variant':20} {'ms':>8} {'GFLOP/s':>8} {'of peak':>8} {'σ range':>16}"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['dtype']:9} {r['shape']:12} {r['variant']:20} skipped ({r['skipped']})")
            continue
        lines.append(f"{r['dtype']:9} {r['shape']:12} {r['variant']:20} {r['ms']:8.2f} {r['gflops']:8.1f} "
                     f"{r['peak_frac']:8.0%} [{r['sigma_min']:.3f}, {r['sigma_max']:.3f}]")
    peaks: dict[str, list[float]] = {}
    for r in rows:
        if "peak_gflops" in r:
            peaks.setdefault(r["dtype"], []).append(r["peak_gflops"])
    lines.append("matmul peak (1024³, measured before each shape): " + ", ".join(
        f"{k} {min(v):.0f}–{max(v):.0f} GFLOP/s" for k, v in peaks.items()))
    return "\n".join(lines)


__all__ = ["format_rows", "matmul_peak", "orthogonalize", "run"]
