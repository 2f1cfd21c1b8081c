"""``muonlab bench step``: full optimizer step time, muonlab against the anchors, side by side.

Every contender gets its own copy of the same parameters and gradients. Rounds are interleaved
(A B C A B C ...) in one process so machine noise hits all of them alike; we report the median,
the interquartile range and the ratio of medians to the baseline (torch.optim.Muon + fused
AdamW), plus the orthogonalization quality of each contender's first update on the largest
hidden matrix (σ_max/σ_min of the applied update, 1.0 = exactly orthogonal, and the sine of its
angle to the exact polar factor, 0 = exact), so speed is never bought with accuracy silently.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from . import paramsets

Contender = Callable[[list], list[torch.optim.Optimizer]]


def _split(params):
    hidden = [p for _, p, r in params if r == "hidden"]
    other = [p for _, p, r in params if r != "hidden"]
    return hidden, other


def _torch_muon(params):
    hidden, other = _split(params)
    if any(p.ndim != 2 for p in hidden):
        raise RuntimeError("torch.optim.Muon takes 2-D parameters only")
    return [torch.optim.Muon(hidden, lr=0.02, weight_decay=0.0)] + _adamw(other)


def _adamw(other):
    """The anchors' element-wise side: torch's fused AdamW (none when there is nothing to route)."""
    return [torch.optim.AdamW(other, lr=3e-4, betas=(0.9, 0.95), weight_decay=0.0, fused=True)] if other else []


def _muonlab(**muon_kw):
    def build(params):
        import muonlab

        hidden, other = _split(params)
        view = "flatten" if any(p.ndim > 2 for p in hidden) else None
        executor = muon_kw.pop("executor", None)
        groups = [dict(params=hidden, algorithm="muon", lr=0.02, weight_decay=0.0, matrix_view=view, **muon_kw)]
        if other:
            groups.append({"params": other, "algorithm": "adamw", "lr": 3e-4, "betas": (0.9, 0.95),
                           "weight_decay": 0.0})
        return [muonlab.HybridOptimizer(groups, executor=executor)]
    return build


def _heavyball(params):
    from .anchors import heavyball_eager

    heavyball = heavyball_eager()  # eager: compiling takes 20-50 s per shape on CPU, minutes on a GPU
    hidden, other = _split(params)
    return [heavyball.Muon(hidden, lr=0.02)] + _adamw(other)


def _pytorch_optimizer(params):
    import pytorch_optimizer

    hidden, other = _split(params)
    # pytorch_optimizer 4.x routes by a `use_muon` flag per group (its own AdamW for the rest).
    groups = [{"params": hidden, "use_muon": True}] + ([{"params": other, "use_muon": False}] if other else [])
    return [pytorch_optimizer.Muon(groups, lr=0.02)]


def _emerging(params):
    """NVIDIA Emerging-Optimizers 0.3 Muon (its default "quintic" table, 5 steps) + torch's AdamW.

    0.3.0 declares Python >= 3.12 (install: docs/benchmarks.md); on 3.11 it is imported through
    :func:`muonlab.bench.anchors.import_emerging_optimizers`, which supplies what it lacks."""
    from .anchors import import_emerging_optimizers

    Muon = import_emerging_optimizers().Muon
    hidden, other = _split(params)
    return [Muon(hidden, lr=0.02, weight_decay=0.0, nesterov=True)] + _adamw(other)


CONTENDERS: dict[str, Contender] = {
    "torch.optim.Muon+AdamW": _torch_muon,
    "muonlab": _muonlab(),
    "muonlab(ns_gram=False)": _muonlab(ns_gram=False),
    "muonlab(polar_express_4)": _muonlab(orthogonalizer="polar_express_4"),
    "muonlab(no batching)": None,  # filled below (needs the executor class)
    "heavyball.Muon+AdamW": _heavyball,
    "pytorch_optimizer.Muon+AdamW": _pytorch_optimizer,
    "emerging_optimizers.Muon+AdamW": _emerging,
}


def _no_batch(params):
    from ..optim.executor import LocalExecutor

    return _muonlab(executor=LocalExecutor(batch=False))(params)


CONTENDERS["muonlab(no batching)"] = _no_batch

#: Contenders run only when named (``names=``): compiling takes 10–50 s per shape on a CPU.
EXTRA_CONTENDERS: dict[str, Contender] = {
    "muonlab(ns_compile=True)": _muonlab(ns_compile=True),
    "muonlab(polar_express_4, ns_compile=True)": _muonlab(orthogonalizer="polar_express_4", ns_compile=True),
}


def _copy(params, device=None):
    out = []
    for name, p, role in params:
        q = torch.nn.Parameter(p.detach().to(device, copy=True))
        q.grad = p.grad.to(device, copy=True)
        out.append((name, q, role))
    return out


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a host timer measures it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _accuracy(before: torch.Tensor, after: torch.Tensor, grad: torch.Tensor) -> tuple[float, float]:
    """(σ_max/σ_min of the applied update, sine of its angle to the exact polar factor of the
    gradient). At the first step every contender's momentum is a multiple of the gradient, so
    ``polar(grad)`` is what each one approximates; the sine is scale-free (0 = exact)."""
    from ..matfn import polar_svd

    delta = (before - after.detach()).reshape(before.shape[0], -1).double().cpu()
    s = torch.linalg.svdvals(delta)
    target = polar_svd(grad.reshape(delta.shape).double().cpu())
    cos = (delta * target).sum() / (delta.norm() * target.norm()).clamp_min(1e-300)
    return (s.max() / s.min().clamp_min(1e-30)).item(), (1 - cos.clamp(-1, 1) ** 2).sqrt().item()


def run(paramset: str = "gpt-6x512", rounds: int = 5, warmup: int = 1, names: list[str] | None = None,
        threads: int | None = None, device: str | torch.device = "cpu") -> list[dict]:
    """Time one optimizer step per contender per round; return one summary row per contender.

    ``names``: contenders of :data:`CONTENDERS` or :data:`EXTRA_CONTENDERS` (default: all of
    :data:`CONTENDERS`); the first one that runs is the ratio's baseline. Each contender's first
    step (untimed) measures its accuracy and, on CUDA, ``peak_mib``: the most memory allocated
    during that step beyond what was allocated before it (state buffers included), MiB.
    """
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device)
    known = {**CONTENDERS, **EXTRA_CONTENDERS}
    names = names or list(CONTENDERS)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown contender(s) {unknown}; choose from {list(known)}")
    base = paramsets.build(paramset)
    target = max((i for i, (_, p, r) in enumerate(base) if r == "hidden"), key=lambda i: base[i][1].numel())
    live, times, quality, peaks, skipped = {}, {}, {}, {}, {}
    for name in names:
        params = _copy(base, device)
        grads = [p.grad.clone() for _, p, _ in params]
        p_t = params[target][1]
        before = p_t.detach().clone()
        try:
            opts = known[name](params)
            _sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                start_mem = torch.cuda.memory_allocated(device)
            for o in opts:
                o.step()
            _sync(device)
        except Exception as e:  # noqa: BLE001 -- an anchor that is not installed or cannot take this set
            skipped[name] = f"{type(e).__name__}: {e}".splitlines()[0][:120]
            continue
        if device.type == "cuda":
            peaks[name] = (torch.cuda.max_memory_allocated(device) - start_mem) / 2**20
        quality[name] = _accuracy(before, p_t, grads[target])
        live[name] = (params, opts, grads)
        times[name] = []
    if not live:
        raise RuntimeError(f"no contender could step {paramset!r}: {skipped}")
    for r in range(warmup + rounds):
        for name, (params, opts, grads) in live.items():
            for (_, p, _), g in zip(params, grads):
                p.grad = g  # some anchors consume p.grad (HeavyBall clears it)
            _sync(device)
            t0 = time.perf_counter()
            for o in opts:
                o.step()
            _sync(device)
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt)
    base_name = names[0] if names[0] in live else next(iter(live))
    base_med = statistics.median(times[base_name])
    rows = []
    for name in live:
        t = sorted(times[name])
        q1, q3 = t[len(t) // 4], t[(3 * len(t)) // 4]
        med = statistics.median(t)
        rows.append({"contender": name, "median_s": med, "iqr_s": q3 - q1, "ratio": med / base_med,
                     "sigma_ratio": quality[name][0], "polar_sin": quality[name][1],
                     "peak_mib": peaks.get(name)})
    for name, why in skipped.items():
        rows.append({"contender": name, "skipped": why})
    return rows


def format_rows(rows: list[dict], paramset: str, rounds: int) -> str:
    lines = [(f"step time on {paramset}, median of {rounds} interleaved rounds, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads"),
             f"{'contender':32} {'median s':>9} {'IQR s':>7} {'ratio':>6} {'σmax/σmin':>10} {'sin∠polar':>10}"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['contender']:32} skipped ({r['skipped']})")
        else:
            lines.append(f"{r['contender']:32} {r['median_s']:9.4f} {r['iqr_s']:7.4f} {r['ratio']:6.2f} "
                         f"{r['sigma_ratio']:10.3f} {r['polar_sin']:10.4f}")
    return "\n".join(lines)
