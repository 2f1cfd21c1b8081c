"""Claims 15 and 16: one step of Muon vs SGD on a linear associative memory (arXiv 2603.26554).

Kim, Nichani, Wu, Bietti and Lee, "Sharp Capacity Scaling of Spectral Optimizers in Learning
Associative Memory" (arXiv 2603.26554), analyse one (and a few) steps of Muon and SGD on a linear
associative memory with Gaussian embeddings and power-law key frequencies. The paper's body and
code were not available to us; the workload below is **our reconstruction** from its abstract and
stated setting (Gaussian key/value embeddings so that N ≫ d associations can be stored, a
multinomial logistic loss, power-law frequencies). Sizes and thresholds are our choices.

**Model** (the lab workload :mod:`muonlab.lab.workloads.assoc_memory`; this module re-exports
its pure functions and builds on them). Keys ``i ∈ [N]``, values ``j ∈ [M]`` (``M = N``), target
map ``f`` (identity by default). Embeddings ``e_i, u_j ~ N(0, I_d/d)`` are fixed columns of
``E ∈ R^{d×N}`` and ``U ∈ R^{d×M}``. Key frequencies ``p_i ∝ i^{−α}``. The memory ``W ∈ R^{d×d}`` scores value ``j``
for key ``i`` as ``z_j(i) = u_jᵀ W e_i``; the loss is ``E_{i∼p}[−log softmax_j z(i) at f(i)]``.
A minibatch of ``B`` keys drawn i.i.d. from ``p`` enters the gradient only through its empirical
frequencies ``c_i = (#copies of i)/B``, so

    G = Σ_i c_i Σ_j (softmax_j z(i) − 1[j = f(i)]) u_j e_iᵀ = U (P − Y) diag(c) Eᵀ,

and at ``W₀ = 0`` (uniform softmax) ``G = ū (E c)ᵀ − U_f diag(c) Eᵀ`` with ``ū`` the mean value
embedding. Batches are drawn as multinomial counts, which is exactly the law of i.i.d. draws and
costs O(N) whatever ``B`` is; the gradient at a general ``W`` needs the logits of the distinct
keys of the batch only (memory O(min(B, N)·M)), and recovery is scored in key chunks (memory
O(chunk·M)).

**Updates** from ``W₀ = 0``: SGD ``W₁ = −η G``; Muon ``W₁ = −η polar(G)``; the exact polar
factor is computed by an SVD (:func:`polar`). **Recovery**: key ``i`` is recovered when its target
strictly beats every other value, ``u_{f(i)}ᵀ W e_i > max_{j≠f(i)} u_jᵀ W e_i`` (ties, e.g. at
``W = 0``, count as not recovered). **Capacity** = number of recovered keys;
**frequency-weighted error** = ``Σ_i p_i (1 − recovered(i))``.

**η does not matter after one step.** ``W₁ = −η Φ(G)`` with ``Φ`` the identity (SGD) or the polar
map (Muon), so every score is ``η`` times an η-free score and ``argmax_j`` is unchanged by any
``η > 0``: recovery, capacity and the weighted error after one step from ``W₀ = 0`` are the same
for every step size (the loss is not). One-step comparisons therefore need no step-size tuning;
multi-step runs do, and get a per-optimizer grid (:func:`tune_step_size`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np
import torch

from ..lab.inference import (paired_interval, ratio_interval, slope_interval, t_test,
                             untestable)
from ..lab.workloads.assoc_memory import (AssocMemory, batch_frequencies, capacity, embeddings,  # noqa: F401
                                          gradient, gradient_at_zero, nested_frequencies, power_law,
                                          prefix_capacity, recovered, weighted_error)
from .base import (Claim, ClaimResult, Context, TUNE_SEED0, Tuned, fmt_mean, gated, md_table, one_thread, pyplot,
                   save_fig)

PAPER = "arXiv 2603.26554"
SEED_DOC = "001 hyperparameter transfer"


# ---- update maps (the model itself is the lab workload ``assoc_memory``) ---------------------------

def _svd(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD of ``g`` and the mask of its numerically nonzero singular values
    (``σ > max(m, n)·eps·σ_max``, numpy's ``matrix_rank`` convention)."""
    uu, s, vh = torch.linalg.svd(g, full_matrices=False)
    tol = max(g.shape) * torch.finfo(g.dtype).eps * (s.max() if s.numel() else 0.0)
    return uu, s, vh, s > tol


def polar(g: torch.Tensor) -> torch.Tensor:
    """The polar factor of ``G = Σ_k σ_k a_k b_kᵀ``: ``Σ_{σ_k > tol} a_k b_kᵀ`` (exact, by an SVD).

    For rank-deficient ``G`` (fewer distinct keys in the batch than ``d``) the null space of ``G``
    is mapped to zero: the result is the partial isometry ``G (GᵀG)^{+1/2}`` (Moore–Penrose
    pseudo-inverse square root), the ``λ → 0`` limit of the regularized map
    ``G (GᵀG + λ²I)^{−1/2}`` analysed in arXiv 2603.26554. This is unique (no arbitrary
    completion of the orthogonal factor) and treats numerically-zero singular values (below
    ``max(m, n)·eps·σ_max``) as zero. ``polar(0) = 0``."""
    return spectral_power(g, 0.0)


def spectral_power(g: torch.Tensor, s: float) -> torch.Tensor:
    """``Σ_{σ_k > tol} σ_k^s a_k b_kᵀ``: ``s = 1`` is ``G`` (SGD), ``s = 0`` the polar factor
    (Muon), ``0 < s < 1`` interpolates (a dose-response check between the two)."""
    if not torch.any(g != 0):
        return torch.zeros_like(g)
    uu, sig, vh, keep = _svd(g)
    scale = torch.where(keep, sig.clamp_min(torch.finfo(g.dtype).tiny) ** float(s), torch.zeros_like(sig))
    return (uu * scale) @ vh


def identity_map(g: torch.Tensor) -> torch.Tensor:
    """SGD's update direction, ``G`` itself."""
    return g


MAPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"SGD": identity_map, "Muon": polar}


def one_step(e: torch.Tensor, u: torch.Tensor, c: torch.Tensor, update: Callable[[torch.Tensor], torch.Tensor],
             f: torch.Tensor | None = None, eta: float = 1.0) -> torch.Tensor:
    """``W₁ = −η Φ(G(W₀ = 0))``. Its recovery does not depend on ``η > 0`` (module docstring)."""
    return -eta * update(gradient_at_zero(e, u, c, f))


# ---- critical batch size ----------------------------------------------------------------------

def normalized_gap(err: Sequence[float], err_inf: float, err0: float = 1.0) -> np.ndarray:
    """Remaining gap ``r(B) = (err(B) − err_∞) / (err₀ − err_∞)``: 1 at the untrained memory
    (``err₀ = 1``, the same for every method), 0 at the method's own infinite-batch error ``err_∞``.
    Normalizing each method by its own limit makes the critical batch insensitive to how low that
    limit is (a relative tolerance on ``err_∞`` would demand more of the method with the lower
    limit)."""
    if not err0 > err_inf:
        raise ValueError(f"normalized_gap needs err0 > err_inf, got {err0} and {err_inf}")
    return (np.asarray(err, dtype=float) - err_inf) / (err0 - err_inf)


def critical_batch(batches: Sequence[int], r: Sequence[float], x: float) -> tuple[float, str]:
    """The critical batch size: the smallest ``B`` from which the remaining gap ``r`` stays ≤ ``x``.

    On the grid ``B_0 < … < B_K``, let ``k`` be the first index with ``r(B_{k'}) ≤ x`` for every
    ``k' ≥ k`` (a later excursion above ``x`` resets it, so a noise dip cannot end the search
    early). Between ``B_{k−1}`` (above ``x``) and ``B_k`` the crossing is interpolated linearly
    in ``log B``. Returns ``(B_crit, censored)`` with ``censored`` "" (crossed inside the grid),
    "low" (already ≤ x at ``B_0``; ``B_crit = B_0``) or "high" (still above ``x`` at ``B_K``;
    ``B_crit = B_K`` is a lower bound)."""
    b = np.asarray(batches, dtype=float)
    r = np.asarray(r, dtype=float)
    if len(b) != len(r) or len(b) < 2 or np.any(np.diff(b) <= 0):
        raise ValueError("critical_batch needs >= 2 increasing batch sizes with one r each")
    above = np.flatnonzero(r > x)
    if len(above) == 0:
        return float(b[0]), "low"
    k = int(above[-1]) + 1
    if k == len(b):
        return float(b[-1]), "high"
    lb0, lb1 = math.log(b[k - 1]), math.log(b[k])
    frac = (r[k - 1] - x) / (r[k - 1] - r[k])
    return float(math.exp(lb0 + frac * (lb1 - lb0))), ""


def critical_batch_abs(batches: Sequence[int], err: Sequence[float], err_inf: float, eps: float
                       ) -> tuple[float, str]:
    """Critical batch with an absolute tolerance: the smallest ``B`` from which
    ``err(B) − err_∞ ≤ eps`` (same rule and interpolation as :func:`critical_batch`)."""
    return critical_batch(batches, np.asarray(err, dtype=float) - err_inf, eps)


# ---- multi-step runs and step-size tuning ------------------------------------------------------

def log_steps(steps: int) -> list[int]:
    """``1, 2, 4, …`` up to ``steps`` (and ``steps`` itself): the steps at which recovery is logged."""
    out = [1 << k for k in range(int(math.log2(steps)) + 1)]
    return out if out[-1] == steps else out + [steps]


def multi_step(e: torch.Tensor, u: torch.Tensor, p: torch.Tensor, update: Callable[[torch.Tensor], torch.Tensor],
               eta: float, batch: int, steps: int, rng: np.random.Generator,
               f: torch.Tensor | None = None) -> list[float]:
    """``steps`` steps ``W ← W − η Φ(G(W; fresh batch))`` from ``W₀ = 0`` (no momentum); returns
    the frequency-weighted error at :func:`log_steps`. A non-finite ``W`` (divergence) counts as
    recovering nothing (error 1) from then on."""
    w = torch.zeros(e.shape[0], e.shape[0], dtype=e.dtype, device=e.device)
    at, out, dead = set(log_steps(steps)), [], False
    for t in range(1, steps + 1):
        c = batch_frequencies(p, batch, rng).to(e.device)
        if not dead:
            w = w - eta * update(gradient(w, e, u, c, f))
            dead = not bool(torch.isfinite(w).all())
        if t in at:
            out.append(1.0 if dead else weighted_error(recovered(w, e, u, f), p))
    return out


def tune_step_size(objective: Callable[[float], float], center: float, *, ratio: float = 4.0,
                   points: int = 5, max_extend: int = 4) -> tuple[float, list[float], list[float], bool, int]:
    """Minimize ``objective(η)`` on a log grid of ``points`` values (ratio ``ratio``) centred on
    ``center``; while the best η is on an edge, add one point past that edge (at most
    ``max_extend`` times). Ties go to the smaller η. Returns ``(best, grid, values, located,
    extensions)``; ``located`` is False when the best η is still on an edge."""
    half = (points - 1) / 2
    grid = [center * ratio ** (i - half) for i in range(points)]
    vals = {eta: objective(eta) for eta in grid}
    extended = 0
    while True:
        best = min(grid, key=lambda v: (vals[v], v))
        edge = best in (grid[0], grid[-1])
        if not edge or extended >= max_extend:
            break
        new = grid[0] / ratio if best == grid[0] else grid[-1] * ratio
        vals[new] = objective(new)
        grid = sorted(grid + [new])
        extended += 1
    return best, grid, [vals[v] for v in grid], not edge, extended


# ---- running on this machine -----------------------------------------------------------------------

def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _instance(d: int, keys_per_dim: int, alpha: float, seed: int, dev: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    wl = AssocMemory(d=d, keys_per_dim=keys_per_dim, alpha=alpha, instance=seed)
    wl.setup(dev)
    return wl.E, wl.U, wl.p


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def _reported(test):
    return dataclasses.replace(test, voted=False)


# ---- claim 15: capacity ------------------------------------------------------------------------------

def capacity_experiment(ctx: Context) -> ClaimResult:
    """One-step capacity of Muon vs SGD over d (N = keys_per_dim·d), plus a reported multi-step run."""
    with one_thread():
        return _capacity(ctx)


def _capacity(ctx: Context) -> ClaimResult:
    c = ctx.cfg
    dims = [int(v) for v in c["dims"]]
    kpd, alpha, batch = int(c["keys_per_dim"]), float(c["alpha"]), 2 ** int(c["log2_batch"])
    dev = _device()
    cap = {m: np.zeros((len(ctx.seeds), len(dims))) for m in MAPS}
    pre = {m: np.zeros((len(ctx.seeds), len(dims))) for m in MAPS}
    err = {m: np.zeros((len(ctx.seeds), len(dims))) for m in MAPS}
    for si, seed in enumerate(ctx.seeds):
        for di, d in enumerate(dims):
            e, u, p = _instance(d, kpd, alpha, seed * 7919 + d, dev)
            cb = batch_frequencies(p, batch, _rng(seed, d, 15)).to(dev)
            for m, fn in MAPS.items():
                rec = recovered(one_step(e, u, cb, fn), e, u)
                cap[m][si, di], pre[m][si, di] = capacity(rec), prefix_capacity(rec)
                err[m][si, di] = weighted_error(rec, p)
        ctx.log(f"seed {seed}: capacity SGD {cap['SGD'][si].tolist()}, Muon {cap['Muon'][si].tolist()}")
    logd = np.log(dims)
    tests = []
    top = len(dims) - 1
    if (cap["SGD"][:, top] > 0).all():
        tests.append(t_test(f"recovered keys Muon/SGD at d={dims[top]} > 2",
                            ratio_interval(cap["Muon"][:, top], cap["SGD"][:, top], paired=True), ">", 2.0,
                            primary=True))
    else:
        tests.append(untestable(f"recovered keys Muon/SGD at d={dims[top]} > 2",
                                "SGD recovered no key on some seed (a ratio needs positive counts)", primary=True))
    slopes = {}
    if len(dims) >= 2 and all((cap[m] > 0).all() for m in MAPS):
        slopes = {m: [float(np.polyfit(logd, np.log(cap[m][si]), 1)[0]) for si in range(len(ctx.seeds))]
                  for m in MAPS}
        tests.append(t_test("capacity exponent (slope of log capacity on log d) Muon − SGD > 0",
                            paired_interval(slopes["Muon"], slopes["SGD"]), ">"))
    else:
        tests.append(untestable("capacity exponent Muon − SGD > 0", "needs >= 2 dims and positive capacities"))
    tests.append(t_test(f"weighted error SGD/Muon at d={dims[top]} > 1 (reported)",
                        ratio_interval(err["SGD"][:, top], np.maximum(err["Muon"][:, top], 1e-12), paired=True),
                        ">", 1.0, voted=False))
    rows = [[m, d, fmt_mean(cap[m][:, di]), fmt_mean(pre[m][:, di]), fmt_mean(err[m][:, di], ".3f")]
            for di, d in enumerate(dims) for m in MAPS]
    table = md_table(["method", "d (N = %d d)" % kpd, "recovered keys", "all of keys 1..k recovered: k",
                      "frequency-weighted error"], rows)
    numbers: dict = {"dims": dims, "keys_per_dim": kpd, "alpha": alpha, "batch": batch,
                     "capacity": {m: cap[m].tolist() for m in MAPS},
                     "weighted_error": {m: err[m].tolist() for m in MAPS}}
    if slopes:
        for m in MAPS:
            pooled = slope_interval(np.tile(logd, len(ctx.seeds)), np.log(cap[m]).ravel())
            numbers[f"capacity_exponent_{m}"] = pooled
            table.append("")
            table.append(f"{m}: capacity ∝ d^k with k = {pooled.fmt()} (pooled OLS over seeds and d)")

    ms_tests, ms_rows, ms_curves, steps_logged = _multi_step_part(ctx, dev)
    tests += ms_tests
    if ms_rows:
        table += [""] + md_table(["method (multi-step, d = %d)" % int(c["ms_dim"]), "tuned η"]
                                 + [f"error at t={t}" for t in steps_logged], ms_rows)
    numbers["multi_step"] = {"steps": steps_logged, "error": ms_curves}

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for m, col in zip(MAPS, ("C0", "C3")):
        axes[0].loglog(np.tile(dims, (len(ctx.seeds), 1)).T, cap[m].T, ".", color=col, alpha=0.4)
        axes[0].loglog(dims, np.exp(np.log(cap[m]).mean(0)), "o-", color=col, label=m)
        if ms_curves.get(m):
            arr = np.asarray(ms_curves[m])
            axes[1].loglog(steps_logged, arr.mean(0), "o-", color=col, label=m)
    axes[0].set_xticks(dims, [str(d) for d in dims])
    axes[0].minorticks_off()
    axes[0].set(xlabel="d", ylabel="recovered keys (one step)",
                title=f"N = {kpd}d, α = {alpha}, B = 2^{c['log2_batch']}")
    axes[1].set(xlabel="step t", ylabel="frequency-weighted error", title="multi-step, tuned η")
    for a in axes:
        a.legend()
    fig.tight_layout()
    plots = [save_fig(fig, ctx, "assoc_memory_capacity")]
    rule = ("primary: paired geometric-mean ratio of recovered keys Muon/SGD at the largest d > 2 "
            "(\"significantly exceeds\"); voted: per-seed slope of log capacity on log d larger for Muon "
            "(paired t); Holm over the voted parts. Weighted error and the multi-step comparison are reported.")
    return ctx.finish(tests, table=table, rule=rule, numbers=numbers, plots=plots)


def _multi_step_part(ctx: Context, dev: torch.device):
    """Reported: SGD vs Muon for a few steps, η tuned per optimizer (final error, tuning seeds)."""
    c = ctx.cfg
    d, kpd, alpha = int(c["ms_dim"]), int(c["keys_per_dim"]), float(c["alpha"])
    batch, steps = int(c["ms_batch"]), int(c["ms_steps"])
    tune_seeds = [TUNE_SEED0 + i for i in range(int(c["tune_seeds"]))]
    centers = {"SGD": float(c["ms_sgd_eta"]), "Muon": float(c["ms_muon_eta"])}
    insts = {s: _instance(d, kpd, alpha, s * 7919 + d, dev) for s in tune_seeds + list(ctx.seeds)}

    def run(m: str, eta: float, seed: int) -> list[float]:
        e, u, p = insts[seed]
        return multi_step(e, u, p, MAPS[m], eta, batch, steps, _rng(seed, d, 151))

    tuned, curves = {}, {}
    for m in MAPS:
        best, grid, vals, located, ext = tune_step_size(
            lambda eta: float(np.median([run(m, eta, s)[-1] for s in tune_seeds])), centers[m],
            ratio=float(c["ms_ratio"]), points=5)
        tuned[m] = Tuned(f"{m} (multi-step)", best, grid, vals, located, ext)
        ctx.tuning.append(tuned[m])
        curves[m] = [run(m, best, s) for s in ctx.seeds]
        ctx.log(f"multi-step {m}: η = {best:.3g} ({'located' if located else 'on the grid edge'})")
    logged = log_steps(steps)
    early = min(range(len(logged)), key=lambda i: abs(logged[i] - max(2, steps // 16)))
    a, b = np.asarray(curves["Muon"]), np.asarray(curves["SGD"])
    late = slice(max(len(logged) - 3, 1), len(logged))
    lt = np.log(logged[late])
    # margin: half the rate at which the mass of never-sampled keys decays, (t·B)^{-(1-1/α)}
    rate_margin = 0.5 * (1.0 - 1.0 / alpha)
    slope = {m: [float(np.polyfit(lt, np.log(np.maximum(np.asarray(curves[m])[si, late], 1e-6)), 1)[0])
                 for si in range(len(ctx.seeds))] for m in MAPS}
    tests = [
        t_test(f"multi-step: error Muon − SGD at t={logged[early]} < 0 (faster initial recovery)",
               paired_interval(a[:, early], b[:, early]), "<"),
        t_test(f"multi-step: error Muon/SGD at t={steps} within ×1.5 (comparable late error)",
               ratio_interval(np.maximum(a[:, -1], 1e-6), np.maximum(b[:, -1], 1e-6), paired=True),
               "equivalent", 1.0, 1.5),
        t_test(f"multi-step: late log-log rate (t ≥ {logged[late.start]}) Muon − SGD within ±{rate_margin:.2g}",
               paired_interval(slope["Muon"], slope["SGD"]), "equivalent", 0.0, rate_margin),
    ]
    tests = [_reported(gated(t, tuned["SGD"], tuned["Muon"])) for t in tests]
    rows = [[m, f"{tuned[m].lr:.3g}"] + [fmt_mean(np.asarray(curves[m])[:, i], ".3f") for i in range(len(logged))]
            for m in MAPS]
    return tests, rows, {m: curves[m] for m in MAPS}, logged


# ---- claim 16: critical batch size -------------------------------------------------------------------

# arms of claim 16 as spectral exponents s (Φ(G) = Σ σ^s a bᵀ); None is G itself (no SVD)
BATCH_ARMS: dict[str, float | None] = {"SGD": None, "Muon": 0.0, "σ^½ map": 0.5,
                                       "control: identity via the Muon path": 1.0}


def spectral_maps(g: torch.Tensor, exponents: dict[str, float | None]) -> dict[str, torch.Tensor]:
    """:func:`spectral_power` of ``g`` for several exponents from one SVD (``None``: ``g`` itself)."""
    out = {k: g for k, v in exponents.items() if v is None}
    if len(out) == len(exponents):
        return out
    if not torch.any(g != 0):
        return {k: torch.zeros_like(g) if v is not None else g for k, v in exponents.items()}
    uu, sig, vh, keep = _svd(g)
    sig = sig.clamp_min(torch.finfo(g.dtype).tiny)
    for k, v in exponents.items():
        if v is not None:
            out[k] = (uu * torch.where(keep, sig ** float(v), torch.zeros_like(sig))) @ vh
    return out


def critical_batch_experiment(ctx: Context) -> ClaimResult:
    """One-step weighted error vs B for each update map, and each map's critical batch size."""
    with one_thread():
        return _critical(ctx)


def _critical(ctx: Context) -> ClaimResult:
    c = ctx.cfg
    d, kpd, alpha = int(c["dim"]), int(c["keys_per_dim"]), float(c["alpha"])
    lo, hi = (int(v) for v in c["log2_batches"])
    batches = [2 ** k for k in range(lo, hi + 1)]
    draws, x = int(c["draws"]), float(c["gap"])
    dev = _device()
    names = list(BATCH_ARMS)
    ns = len(ctx.seeds)
    curve = {m: np.zeros((ns, len(batches))) for m in names}
    limit = {m: np.zeros(ns) for m in names}
    for si, seed in enumerate(ctx.seeds):
        e, u, p = _instance(d, kpd, alpha, seed * 7919 + d, dev)
        g_inf = gradient_at_zero(e, u, p.to(dev))
        for m, w in spectral_maps(g_inf, BATCH_ARMS).items():
            limit[m][si] = weighted_error(recovered(-w, e, u), p)
        for r in range(draws):
            for bi, cb in enumerate(nested_frequencies(p, batches, _rng(seed, d, 16, r))):
                g = gradient_at_zero(e, u, cb.to(dev))
                for m, w in spectral_maps(g, BATCH_ARMS).items():
                    curve[m][si, bi] += weighted_error(recovered(-w, e, u), p) / draws
        ctx.log(f"seed {seed}: err_inf SGD {limit['SGD'][si]:.3f}, Muon {limit['Muon'][si]:.3f}")

    def crit(m: str, xx: float) -> tuple[np.ndarray, list[str]]:
        res = [critical_batch(batches, normalized_gap(curve[m][si], limit[m][si]), xx) for si in range(ns)]
        return np.array([v for v, _ in res]), [w for _, w in res]

    def ratio_test(num: str, den: str, xx: float, name: str, *, primary=False, voted=True):
        bn, cn = crit(num, xx)
        bd, cd = crit(den, xx)
        # censoring: a numerator lower bound ("high") only shrinks the ratio (conservative); a
        # denominator lower bound or a numerator stuck at the grid floor would inflate it.
        bad = [i for i in range(ns) if cd[i] == "high" or cn[i] == "low"]
        if bad:
            return untestable(name, f"{len(bad)} seed(s) censored on the anti-conservative side "
                              f"(widen log2_batches)", primary=primary)
        return t_test(name, ratio_interval(bn, bd, paired=True), ">", 1.0, primary=primary, voted=voted)

    tests = [ratio_test("Muon", "SGD", x, f"B_crit(Muon)/B_crit(SGD) > 1 (gap ≤ {x:g})", primary=True)]
    for xx in (x / 2, 2 * x):
        tests.append(_reported(ratio_test("Muon", "SGD", xx, f"robustness: B_crit ratio Muon/SGD > 1 at gap ≤ {xx:g}")))
    eps = float(c["abs_tol"])
    ab = {m: [critical_batch_abs(batches, curve[m][si], limit[m][si], eps) for si in range(ns)]
          for m in ("Muon", "SGD")}
    if any(w == "high" for _, w in ab["SGD"]) or any(w == "low" for _, w in ab["Muon"]):
        tests.append(_reported(untestable(f"robustness: absolute tolerance {eps:g}", "censored")))
    else:
        tests.append(t_test(f"robustness: B_crit ratio Muon/SGD > 1 with absolute tolerance err − err_∞ ≤ {eps:g}",
                            ratio_interval([v for v, _ in ab["Muon"]], [v for v, _ in ab["SGD"]], paired=True),
                            ">", 1.0, voted=False))
    tests.append(_reported(ratio_test("σ^½ map", "SGD", x, "dose-response: B_crit(σ^½ map)/B_crit(SGD) > 1")))
    tests.append(_reported(ratio_test("Muon", "σ^½ map", x, "dose-response: B_crit(Muon)/B_crit(σ^½ map) > 1")))
    bc, _ = crit("control: identity via the Muon path", x)
    bs, _ = crit("SGD", x)
    tests.append(t_test("control: B_crit(identity via the Muon path)/B_crit(SGD) equivalent to 1 (×1.1)",
                        ratio_interval(bc, bs, paired=True), "equivalent", 1.0, 1.1, voted=False))

    rows = []
    for m in names:
        bm, cm = crit(m, x)
        rows.append([m, fmt_mean(limit[m], ".3f"), fmt_mean(curve[m][:, 0], ".3f"), fmt_mean(curve[m][:, -1], ".3f"),
                     f"{float(np.exp(np.mean(np.log(bm)))):.3g}", f"{min(bm):.3g}–{max(bm):.3g}",
                     sum(w == "high" for w in cm)])
    table = md_table(["update map", "err at B = ∞", f"err at B = {batches[0]}", f"err at B = {batches[-1]}",
                      f"B_crit (gap ≤ {x:g}), geometric mean", "range over seeds", "seeds censored high"], rows)
    numbers = {"dim": d, "keys": kpd * d, "alpha": alpha, "batches": batches, "gap": x,
               "error": {m: curve[m].tolist() for m in names}, "error_inf": {m: limit[m].tolist() for m in names},
               "b_crit": {m: crit(m, x)[0].tolist() for m in names}}

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for m, col in zip(names[:3], ("C0", "C3", "C2")):
        axes[0].semilogx(batches, curve[m].mean(0), "o-", color=col, label=m, ms=3)
        axes[0].axhline(limit[m].mean(), color=col, ls=":", lw=0.8)
        gap = np.array([normalized_gap(curve[m][si], limit[m][si]) for si in range(ns)])
        axes[1].loglog(batches, np.maximum(gap.mean(0), 1e-4), "o-", color=col, label=m, ms=3)
    axes[1].axhline(x, color="k", lw=0.8, ls="--", label=f"gap = {x:g}")
    axes[0].set(xlabel="batch size B", ylabel="frequency-weighted error (one step)",
                title=f"d = {d}, N = {kpd * d}, α = {alpha}; dotted: B = ∞")
    axes[1].set(xlabel="batch size B", ylabel="remaining gap r(B) (mean; ≤ 0 shown at 1e-4)")
    for a in axes:
        a.legend(fontsize=7)
    fig.tight_layout()
    plots = [save_fig(fig, ctx, "assoc_memory_critical_batch")]
    rule = (f"primary: paired geometric-mean ratio B_crit(Muon)/B_crit(SGD) > 1, where B_crit is the smallest B "
            f"from which the remaining gap r(B) = (err(B) − err_∞)/(1 − err_∞) stays ≤ {x:g} (log-interpolated); "
            "robustness to the tolerance, an absolute-tolerance definition, a σ^½ dose-response arm and an identity "
            "control (must equal SGD) are reported.")
    return ctx.finish(tests, table=table, rule=rule, numbers=numbers, plots=plots)


# ---- registry -------------------------------------------------------------------------------------

_QUOTE_CAPACITY = ("Our main result sharply characterizes the recovery rates of one step of Muon and SGD on the "
                   "logistic regression loss under a power law frequency distribution. We show that the storage "
                   "capacity of Muon significantly exceeds that of SGD […] Muon achieves a substantially faster "
                   "initial recovery rate than SGD, while both methods eventually converge to the "
                   "information-theoretic limit at comparable speeds.")
_QUOTE_BATCH = "moreover Muon saturates at a larger critical batch size."

CLAIMS = [
    Claim("assoc_memory_capacity", 15, SEED_DOC, _QUOTE_CAPACITY,
          f"Our reconstruction of the workload of {PAPER} (Kim, Nichani, Wu, Bietti, Lee): linear associative "
          "memory W ∈ R^{d×d}, Gaussian key/value embeddings N(0, I/d), N = 16d keys (so N ≫ d), frequencies "
          "p_i ∝ i^{-1.5}, multinomial logistic loss, W₀ = 0; one step of SGD (W₁ = −ηG) and of Muon "
          "(W₁ = −η polar(G), exact SVD) from the same batch of 2^20 keys (2^24 at the full budget); key i is "
          "recovered when its value "
          "strictly wins the argmax. Recovery after one step does not depend on η (argmax is invariant to "
          "scaling W), so no tuning is needed. Each seed is one independent instance (embeddings + batch) per d, "
          "shared by both methods (paired). Primary: recovered keys Muon/SGD > 2 at the largest d; voted: the "
          "capacity exponent (slope of log capacity on log d) is larger for Muon. Both can fail: if the polar map "
          "did not amplify the tail associations the ratio would be ≈ 1 and the exponents equal. Reported: the "
          "weighted error, and a few-step run (fresh batches, η tuned per optimizer on a grid extended past an "
          "edge optimum by the median final weighted error on tuning seeds disjoint from the evaluation seeds) "
          "for the 'faster initial / comparable late' statement, which the "
          "paper derives under a thresholded-gradient approximation that we do not reproduce.",
          {"small": {"seeds": 8, "dims": [32, 64, 128], "keys_per_dim": 16, "alpha": 1.5, "log2_batch": 20,
                     "ms_dim": 64, "ms_batch": 256, "ms_steps": 128, "ms_sgd_eta": 256.0, "ms_muon_eta": 16.0,
                     "ms_ratio": 4.0, "tune_seeds": 2},
           "full": {"seeds": 16, "dims": [64, 128, 256, 512, 1024], "keys_per_dim": 16, "alpha": 1.5,
                    "log2_batch": 24, "ms_dim": 128, "ms_batch": 1024, "ms_steps": 256, "ms_sgd_eta": 256.0,
                    "ms_muon_eta": 16.0, "ms_ratio": 4.0, "tune_seeds": 3}},
          capacity_experiment),
    Claim("assoc_memory_critical_batch", 16, SEED_DOC, _QUOTE_BATCH,
          f"Workload of claim 15 ({PAPER}, our reconstruction) at one d (128; 512 at the full budget). For "
          "B = 2^0 … 2^14 (… 2^20 at the full budget; one nested i.i.d. "
          "stream per draw, averaged over draws) the one-step frequency-weighted error err(B) of SGD and Muon, and "
          "err_∞ from the population gradient (B = ∞). Critical batch size: the smallest B from which the remaining "
          "gap r(B) = (err(B) − err_∞)/(1 − err_∞) stays ≤ 0.1, interpolated in log B. Both methods start from the "
          "same untrained error 1 and each is measured against its own limit, so a lower limit (Muon's) is not "
          "penalised by a stricter tolerance. Primary: paired geometric-mean ratio B_crit(Muon)/B_crit(SGD) > 1; it "
          "fails if Muon reaches its own limit as early as SGD does. Controls: the identity map sent through the "
          "SVD path must reproduce SGD's B_crit; a σ^½ map (between SGD and Muon) should fall between them; the "
          "tolerance (0.05, 0.2) and an absolute tolerance (0.01) are varied. Censoring on the side that would "
          "inflate the ratio makes the test untestable.",
          {"small": {"seeds": 8, "dim": 128, "keys_per_dim": 16, "alpha": 1.5, "log2_batches": [0, 14],
                     "draws": 3, "gap": 0.1, "abs_tol": 0.01},
           "full": {"seeds": 16, "dim": 512, "keys_per_dim": 16, "alpha": 1.5, "log2_batches": [0, 20],
                    "draws": 8, "gap": 0.1, "abs_tol": 0.01}},
          critical_batch_experiment),
]
