"""Claims 17 and 25: two invariants of Muon's iterates that a small computation can check exactly.

* 17 ``convex_lipschitz_nonconvergence`` (seed 001's abstract of Parshakova, Khaled, Crawshaw,
  Garrigos, Gower, "Muon Does Not Converge on Convex Lipschitz Functions", arXiv 2605.08980):
  momentum-free Muon stalls at ``f ≥ ε|c| > 0`` on a convex Lipschitz function of 2×2 matrices
  for every step-size schedule, and error feedback restores convergence. The function and the
  error-feedback variant are **our own construction** (the paper's counterexample is not
  reproduced here); see :func:`convex_f`. The function, its subgradient oracle and the starting
  points are the lab workload :mod:`muonlab.lab.workloads.convex_lipschitz` (re-exported here).
* 25 ``decoupled_wd_spectral_norm`` (seed 004's entry on Chen, Li, Liu, "Muon Optimizes Under
  Spectral Norm Constraints", arXiv 2506.15054): with decoupled weight decay,
  ``W ← (1 − ηλ)W − η s O`` and ``‖O‖₂ ≤ κ`` imply ``‖W_t‖₂ ≤ max(‖W₀‖₂, sκ/λ)`` for all t
  (:func:`wd_spectral_bound`, proved there), checked on :class:`muonlab.Muon` training an MLP on
  scikit-learn's digits.

Both experiments are our own small computations (float64 torch for 17, float32 training for
25); every number they report is produced by the functions below.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..lab.inference import mean_interval, t_test
from ..lab.workloads.convex_lipschitz import (
    convex_f,
    convex_subgradient,
    initial_points,
)
from ..lab.workloads.convex_lipschitz import sign1 as _sign1
from .base import Claim, ClaimResult, Context, fmt_mean, md_table, pyplot, save_fig

# =================================================================================================
# Claim 17: a convex Lipschitz function on which momentum-free Muon cannot converge
# =================================================================================================

#: Step-size schedules ``η_t = scale · (t + 1)^(−power)`` of the grid, by name.
SCHEDULES: dict[str, tuple[float, float]] = {
    "0.1/√(t+1)": (0.1, 0.5),
    "0.5/(t+1)": (0.5, 1.0),
    "1e-3": (1e-3, 0.0),
    "1e-2": (1e-2, 0.0),
}
#: The schedule with Σ η_t = ∞ and η_t → 0 fast enough to matter in T steps (voted EF part).
DECAYING = "0.1/√(t+1)"
#: Relative lower-bound tolerance of part (a): float64 rounding over 10⁵ steps stays ≪ 1e-6.
ROUNDING = 1e-6
#: Part (b)'s tolerance: EF-Muon must reach f(W_T) below a tenth of Muon's floor ε|c|.
EF_TOL = 0.1


def polar2(M: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Exact polar factor, nuclear norm and rank of real 2×2 matrices ``M`` (shape ``(..., 2, 2)``).

    For ``M = U diag(σ₁, σ₂) Vᵀ`` with ``det M ≠ 0``, the cofactor matrix is
    ``cof(M) = det(M) M⁻ᵀ = sgn(det M) · U diag(σ₂, σ₁) Vᵀ``, hence::

        M + sgn(det M)·cof(M) = (σ₁ + σ₂) U Vᵀ,   σ₁ + σ₂ = ‖M + sgn(det M)·cof(M)‖_F / √2

    which gives ``polar(M) = U Vᵀ`` and ``‖M‖_* = σ₁ + σ₂`` without an SVD and *exactly* for a
    diagonal M (no rounding can create off-diagonal entries, which would flip the oracle's
    off-diagonal signs). Rank 1 (``det M = 0``): ``polar(M) = M / ‖M‖_F``, ``‖M‖_* = ‖M‖_F``.
    ``M = 0``: polar 0, nuclear norm 0, rank 0.

    Returns:
        ``(Q, nuclear, rank)`` with Q of M's shape and the others of shape ``M.shape[:-2]``.
    """
    a, b, c, d = M[..., 0, 0], M[..., 0, 1], M[..., 1, 0], M[..., 1, 1]
    det = a * d - b * c
    cof = torch.stack([torch.stack([d, -c], -1), torch.stack([-b, a], -1)], -2)
    S = M + _sign1(det)[..., None, None] * cof
    nuc2 = S.flatten(-2).norm(dim=-1) / math.sqrt(2)
    fro = M.flatten(-2).norm(dim=-1)
    rank1 = det == 0
    nuc = torch.where(rank1, fro, nuc2)
    Q = torch.where(rank1[..., None, None], M, S) / nuc.clamp_min(1e-300)[..., None, None]
    zero = fro == 0
    Q = torch.where(zero[..., None, None], torch.zeros_like(M), Q)
    rank = torch.where(zero, 0.0, torch.where(rank1, 1.0, 2.0)).to(M.dtype)
    return Q, nuc, rank


def step_sizes(scale: Tensor, power: Tensor, t: int) -> Tensor:
    """``η_t = scale · (t + 1)^(−power)`` elementwise (power 0.5: 1/√t, 1: 1/t, 0: constant)."""
    return scale * float(t + 1) ** (-power)


@dataclass
class Trajectories:
    """Batched runs of :func:`simulate`: per run, the final iterate, ``f(W_T)``, ``min_{1≤t≤T} f``
    and ``f`` at the recorded steps."""

    W: Tensor
    f_final: Tensor
    f_min: Tensor
    record_steps: list[int]
    f_record: Tensor  # (B, len(record_steps))


def simulate(W0: Tensor, eps: Tensor, scale: Tensor, power: Tensor, beta: Tensor, ef: Tensor,
             steps: int, record: Sequence[int] = ()) -> Trajectories:
    """Run Muon or EF-Muon on :func:`convex_f`, batched over the leading dimension (float64).

    Per run b (all arguments but ``steps`` have leading size B)::

        G_t = ∂f(W_t)  (convex_subgradient),   M_t = β M_{t−1} + (1 − β) G_t,   M_{−1} = 0
        Muon (ef = False):    W_{t+1} = W_t − η_t · polar(M_t)
        EF-Muon (ef = True):  P = η_t M_t + E_t;  Δ = (‖P‖_* / rank P) · polar(P)
                              W_{t+1} = W_t − Δ;   E_{t+1} = P − Δ,   E_0 = 0

    ``(‖P‖_*/rank P)·polar(P)`` is the multiple of ``polar(P)`` closest to P in Frobenius norm, so
    the error E keeps what the orthogonalized step dropped (an error-feedback form of our own; the
    paper's exact variant is not reproduced). β = 0 is momentum-free Muon (M_t = G_t).
    """
    W = W0.clone()
    M = torch.zeros_like(W)
    E = torch.zeros_like(W)
    b3, ef3 = beta[:, None, None], ef[:, None, None]
    f_min = torch.full(W.shape[:1], math.inf, dtype=W.dtype)
    rec = sorted(set(int(r) for r in record if 0 <= r <= steps))
    f_rec = torch.empty(W.shape[0], len(rec), dtype=W.dtype)
    j = 0
    if rec and rec[0] == 0:
        f_rec[:, 0] = convex_f(W, eps)
        j = 1
    for t in range(steps):
        M = b3 * M + (1 - b3) * convex_subgradient(W, eps)
        eta = step_sizes(scale, power, t)[:, None, None]
        P = eta * M + E
        Q, nuc, rank = polar2(torch.where(ef3, P, M))
        D = torch.where(ef3, (nuc / rank.clamp_min(1.0))[:, None, None] * Q, eta * Q)
        W = W - D
        E = torch.where(ef3, P - D, E)
        f = convex_f(W, eps)
        f_min = torch.minimum(f_min, f)
        if j < len(rec) and rec[j] == t + 1:
            f_rec[:, j] = f
            j += 1
    return Trajectories(W, convex_f(W, eps), f_min, rec, f_rec)


def _gmean(x: Sequence[float]) -> float:
    return float(np.exp(np.mean(np.log(np.maximum(np.asarray(x, float), 1e-300)))))


def convex_nonconvergence(ctx: Context) -> ClaimResult:
    c = ctx.cfg
    T, eps_grid, betas = int(c["steps"]), [float(e) for e in c["eps"]], [float(b) for b in c["betas"]]
    if not all(0 < e < 1 for e in eps_grid):
        raise ValueError(f"eps grid {eps_grid} must lie in (0, 1)")
    seeds = ctx.seeds
    starts = {s: initial_points(s, float(c["perturb"])) for s in seeds}
    variants = ("diagonal", "perturbed")
    cfgs = list(itertools.product(variants, betas, eps_grid, SCHEDULES, (False, True), seeds))
    W0 = torch.tensor(np.stack([starts[s][variants.index(v)] for v, *_, s in cfgs]), dtype=torch.float64)
    beta = torch.tensor([cf[1] for cf in cfgs], dtype=torch.float64)
    eps = torch.tensor([cf[2] for cf in cfgs], dtype=torch.float64)
    scale = torch.tensor([SCHEDULES[cf[3]][0] for cf in cfgs], dtype=torch.float64)
    power = torch.tensor([SCHEDULES[cf[3]][1] for cf in cfgs], dtype=torch.float64)
    ef = torch.tensor([cf[4] for cf in cfgs])
    record = np.unique(np.geomspace(1, T, 60).astype(int)).tolist()
    ctx.log(f"convex_lipschitz_nonconvergence: {len(cfgs)} runs × {T} steps (batched, float64)")
    tr = simulate(W0, eps, scale, power, beta, ef, T, record)

    gap0 = (W0[:, 0, 0] - W0[:, 1, 1]).abs()
    floor = eps * gap0                                   # ε|c|, Muon's provable floor
    rel_final = (tr.f_final / floor).numpy()
    rel_min = (tr.f_min / floor).numpy()
    gap_ratio = ((tr.W[:, 0, 0] - tr.W[:, 1, 1]) / (W0[:, 0, 0] - W0[:, 1, 1])).numpy()
    index = {cf: i for i, cf in enumerate(cfgs)}

    def per_seed(values, variant, beta, efon, schedules, epss, how=min):
        return [how(values[index[(variant, beta, e, sc, efon, s)]] for e in epss for sc in schedules)
                for s in seeds]

    # (a) primary: momentum-free Muon from diagonal starts, every ε and schedule.
    a_vals = per_seed(rel_min, "diagonal", 0.0, False, SCHEDULES, eps_grid)
    # (b) EF-Muon, same starts, the decaying schedule, the budget's ε (worst over them).
    ef_eps = [float(e) for e in c["ef_eps"]]
    b_vals = [math.log10(v) for v in per_seed(rel_final, "diagonal", 0.0, True, [DECAYING], ef_eps, max)]
    tests = [
        t_test("momentum-free Muon: min over ε, schedules and t ≤ T of f(W_t)/(ε·abs(c)) > 1 − 1e-6",
               mean_interval(a_vals), ">", 1 - ROUNDING, primary=True),
        t_test(f"EF-Muon, η_t = {DECAYING}, ε ∈ {ef_eps}: log10 f(W_T)/(ε·abs(c)) < log10 {EF_TOL:g}",
               mean_interval(b_vals), "<", math.log10(EF_TOL)),
    ]
    # reported parts
    inv = [math.log10(v) for v in per_seed(rel_final, "diagonal", 0.0, True, ["0.5/(t+1)"], ef_eps, max)]
    tests.append(t_test(f"reported: EF-Muon, η_t = 0.5/(t+1) (Σ η_t ~ log T), ε ∈ {ef_eps}: "
                        f"log10 f(W_T)/(ε·abs(c)) < log10 {EF_TOL:g}", mean_interval(inv), "<",
                        math.log10(EF_TOL), voted=False))
    for sc in ("1e-3", "1e-2"):
        v = [math.log10(x) for x in per_seed(rel_final, "diagonal", 0.0, True, [sc], ef_eps, max)]
        tests.append(t_test(f"reported: EF-Muon, constant η = {sc} (η_t ↛ 0), ε ∈ {ef_eps}: "
                            f"log10 f(W_T)/(ε·abs(c)) < log10 {EF_TOL:g}", mean_interval(v), "<",
                            math.log10(EF_TOL), voted=False))
    for beta in betas:
        if beta == 0:
            continue
        v = per_seed(rel_min, "diagonal", beta, False, SCHEDULES, eps_grid)
        tests.append(t_test(f"reported: Muon with EMA momentum β = {beta:g}: min f/(ε·abs(c)) > 1 − 1e-6 "
                            "(our instance is built for β = 0 only)", mean_interval(v), ">", 1 - ROUNDING,
                            voted=False))
    pv = per_seed(rel_min, "perturbed", 0.0, False, SCHEDULES, eps_grid)
    tests.append(t_test(f"reported: momentum-free Muon from W₀ with off-diagonal entries "
                        f"{float(c['perturb']):g}·N(0,1): min f/(ε·abs(c)) > 1 − 1e-6", mean_interval(pv), ">",
                        1 - ROUNDING, voted=False))

    # tables: geometric mean over seeds of f(W_T)/(ε|c|)
    def cell(variant, beta, sc, efon, e):
        vals = [rel_final[index[(variant, beta, e, sc, efon, s)]] for s in seeds]
        return f"{_gmean(vals):.2g}"

    header = ["β", "EF", "η_t"] + [f"ε = {e:g}" for e in eps_grid]
    rows = [[f"{b:g}", "on" if efon else "off", sc] + [cell("diagonal", b, sc, efon, e) for e in eps_grid]
            for b in betas for efon in (False, True) for sc in SCHEDULES]
    rows_p = [[f"{b:g}", "on" if efon else "off", sc] + [cell("perturbed", b, sc, efon, e) for e in eps_grid]
              for b in betas[:1] for efon in (False, True) for sc in SCHEDULES]
    table = (["Diagonal starts W₀ (c = W₁₁ − W₂₂ ≠ 0): geometric mean over replicates of f(W_T)/(ε|c|) "
              f"(T = {T}; ≥ 1 means Muon's floor was never crossed at the end):", ""]
             + md_table(header, rows)
             + ["", f"Perturbed starts (off-diagonal {float(c['perturb']):g}·N(0,1)), β = 0, same statistic:", ""]
             + md_table(header, rows_p)
             + ["", "Per replicate (β = 0, diagonal): min_t f/(ε|c|) of Muon = "
                + ", ".join(f"{v:.9f}" for v in a_vals)
                + f"; EF-Muon log10 f(W_T)/(ε|c|) at η_t = {DECAYING} = " + ", ".join(f"{v:.2f}" for v in b_vals)])

    plots = [save_fig(_plot_convex(tr, cfgs, seeds[0], eps_grid[0], floor), ctx, "convex_lipschitz_nonconvergence")]
    w_gap = per_seed(gap_ratio, "diagonal", 0.0, False, SCHEDULES, eps_grid)
    numbers = {"muon_min_rel_f": a_vals, "ef_log10_rel_f": b_vals, "ef_inv_log10_rel_f": inv,
               "perturbed_min_rel_f": pv, "muon_gap_ratio_min": w_gap, "steps": T, "runs": len(cfgs)}
    rule = ("primary (a): for momentum-free Muon from diagonal W₀, per replicate the minimum over ε ∈ "
            f"{eps_grid}, the four schedules and 1 ≤ t ≤ T of f(W_t)/(ε|c|) must exceed 1 − 1e-6 (one-sided t "
            "test; the proof says it is ≥ 1 exactly, so the replicates are equal up to rounding and the "
            "interval is degenerate: the test is a check of the invariant, and it fails if Muon gets "
            f"below its floor, e.g. converges); (b) EF-Muon from the same W₀ with η_t = {DECAYING}: mean "
            f"log10 f(W_T)/(ε|c|) < log10 {EF_TOL:g} for ε ∈ {ef_eps}; Holm over (a) and (b). The 1/t "
            "schedule, constant steps, momentum β > 0 and perturbed starts are reported, not voted")
    return ctx.finish(tests, table=table, rule=rule, numbers=numbers, plots=plots)


def _plot_convex(tr: Trajectories, cfgs, seed: int, eps: float, floor: Tensor):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    steps = np.asarray(tr.record_steps)
    for ax, efon in zip(axes, (False, True)):
        for sc in SCHEDULES:
            i = cfgs.index(("diagonal", 0.0, eps, sc, efon, seed))
            ax.loglog(steps, np.maximum(tr.f_record[i].numpy(), 1e-12), label=f"η_t = {sc}")
        ax.axhline(float(floor[i]), color="k", ls="--", lw=0.8, label="ε|c| (Muon's floor)")
        ax.set(xlabel="step t", title=("EF-Muon" if efon else "Muon") + f", β = 0, ε = {eps:g}")
    axes[0].set_ylabel("f(W_t)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


# =================================================================================================
# Claim 25: decoupled weight decay bounds Muon's spectral norm
# =================================================================================================

def ns_sup(coefficients: Sequence[float] = (3.4445, -4.775, 2.0315), steps: int = 5, grid: int = 400_001
           ) -> float:
    """``sup_{x ∈ [0, 1]} |p^{∘steps}(x)|`` for the odd quintic ``p(x) = a x + b x³ + c x⁵``.

    Newton–Schulz normalises the input to ``‖X₀‖_F ≤ 1`` (so every singular value is in [0, 1]) and
    maps each singular value through p, ``steps`` times; this supremum bounds ``‖O‖₂`` in exact
    arithmetic (Keller Jordan's coefficients, 5 steps: 1.2024, reached near x ≈ 0.004).
    Evaluated on a uniform grid in float64 (the function is smooth; the grid error is < 1e-6)."""
    a, b, c = coefficients
    x = np.linspace(0.0, 1.0, grid)
    y = x.copy()
    for _ in range(steps):
        y = a * y + b * y**3 + c * y**5
    return float(np.abs(y).max())


def decoupled_step(W: Tensor, O: Tensor, lr: float, weight_decay: float, scale: float) -> Tensor:
    """Muon's parameter write with decoupled weight decay: ``W ← (1 − ηλ) W − η s O``
    (:func:`muonlab.optim.steps.apply_update`: λ multiplies the *unadjusted* lr η; the shape
    factor s multiplies only the update)."""
    return (1 - lr * weight_decay) * W - lr * scale * O


def wd_spectral_bound(w0_norm: float, weight_decay: float, scale: float, kappa: float = 1.0) -> float:
    """``B = max(‖W₀‖₂, s κ / λ)``: a bound on ``‖W_t‖₂`` for every t under :func:`decoupled_step`.

    Claim: if ``0 < ηλ ≤ 1`` and ``‖O_t‖₂ ≤ κ`` for every t, then ``‖W_t‖₂ ≤ B`` for every t.

    Proof (induction on t). t = 0: ``‖W₀‖₂ ≤ B``. Step: if ``‖W_t‖₂ ≤ B``, the triangle
    inequality and homogeneity of the norm give
    ``‖W_{t+1}‖₂ ≤ (1 − ηλ)‖W_t‖₂ + η s ‖O_t‖₂ ≤ (1 − ηλ) B + η s κ ≤ (1 − ηλ) B + ηλ B = B``,
    using ``1 − ηλ ≥ 0`` and ``s κ ≤ λ B``. ∎ The step size may vary with t (each step only needs
    ``η_t λ ≤ 1``), and nothing is assumed about the direction O_t beyond its norm, so momentum,
    Nesterov and the gradient's value do not matter. Exact orthogonalization has κ = 1 (the bound
    ``max(‖W₀‖₂, s/λ)``); Newton–Schulz has κ = :func:`ns_sup` in exact arithmetic. The fixed
    point ``s κ/λ`` is the radius of the spectral-norm ball of the constrained problem of Chen, Li
    & Liu (arXiv 2506.15054). λ = 0 gives no bound (``inf``).
    """
    if weight_decay < 0 or scale <= 0 or kappa <= 0:
        raise ValueError(f"need λ ≥ 0, s > 0, κ > 0; got λ={weight_decay}, s={scale}, κ={kappa}")
    if weight_decay == 0:
        return math.inf
    return max(float(w0_norm), scale * kappa / weight_decay)


def _digits_mlp(seed: int, width: int, depth: int) -> torch.nn.Module:
    """GELU MLP 64 → width → … → 10 (the lab's mlp_digits architecture), seeded init."""
    from torch import nn

    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(64, width), nn.GELU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.GELU()]
    model = nn.Sequential(*layers)
    model.add_module("head", nn.Linear(width, 10))
    return model


@dataclass
class WDRun:
    """One training run: per Muon matrix its name, shape factor s, ``‖W₀‖₂`` and ``‖W_t‖₂`` for
    t = 1..T; the largest ``‖O_t‖₂`` of the orthogonalized direction; the final training loss."""

    names: list[str]
    scales: list[float]
    w0: list[float]
    norms: np.ndarray  # (T, n_matrices)
    kappa: float
    loss: float


def train_wd_run(seed: int, weight_decay: float, mode: str, *, lr: float, steps: int, width: int,
                 depth: int, batch: int, data, compute_dtype: str = "float32", kappa_every: int = 10,
                 orthogonalizer: str = "newton_schulz") -> WDRun:
    """Train the digits MLP with :func:`muonlab.create_optimizer` (Muon on the matrices it routes
    to Muon, AdamW elsewhere) and record every Muon matrix's spectral norm after every step.

    ``κ`` is measured without assuming how the library applies lr, shape factor or weight decay: the
    Muon input ``X_t = (1 − β) G_t + β M_t`` (Nesterov, EMA; rebuilt from the gradient and the
    optimizer's momentum buffer after the step) is orthogonalized again with the group's own
    settings (:func:`muonlab.optim.rule.orthogonalize_group`) and its spectral norm taken, every
    ``kappa_every`` steps (decoupled mode only; coupled mode changes the gradient the buffer saw).
    Newton–Schulz runs in ``compute_dtype`` (float32 by default: bf16 matrix products are slow on
    CPUs, and float32 keeps ‖O‖₂ at the exact-arithmetic supremum to ~1e-6)."""
    threads = torch.get_num_threads()
    if data[0].device.type == "cpu":
        torch.set_num_threads(1)  # these matrices are small: one thread is faster, and robust to a busy CPU
    try:
        return _train_wd(seed, weight_decay, mode, lr=lr, steps=steps, width=width, depth=depth, batch=batch,
                         data=data, compute_dtype=compute_dtype, kappa_every=kappa_every,
                         orthogonalizer=orthogonalizer)
    finally:
        torch.set_num_threads(threads)


def _train_wd(seed, weight_decay, mode, *, lr, steps, width, depth, batch, data, compute_dtype, kappa_every,
              orthogonalizer) -> WDRun:
    from torch import nn

    from ..optim.rule import orthogonalize_group
    from ..optim.steps import shape_scale
    from ..routing import create_optimizer

    Xtr, ytr = data
    model = _digits_mlp(seed, width, depth).to(Xtr.device)
    opt = create_optimizer(model, "muon", lr=lr, weight_decay=weight_decay, weight_decay_mode=mode,
                           compute_dtype=compute_dtype, orthogonalizer=orthogonalizer)
    groups = [g for g in opt.param_groups if g["algorithm"] == "muon"]
    mats = [(g, n, p) for g in groups for n, p in zip(g["param_names"], g["params"])]
    scales = [shape_scale(p.shape[0], p.shape[1], g.get("adjust_lr_fn")) for g, _, p in mats]
    with torch.no_grad():
        w0 = [float(torch.linalg.matrix_norm(p.double(), 2)) for _, _, p in mats]
    gen = torch.Generator().manual_seed(seed)
    norms = np.empty((steps, len(mats)))
    kappa = 0.0
    loss = math.nan
    for t in range(steps):
        idx = torch.randint(0, len(Xtr), (batch,), generator=gen).to(Xtr.device)
        out = nn.functional.cross_entropy(model(Xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        out.backward()
        opt.step()
        loss = float(out.detach())
        with torch.no_grad():
            if mode == "decoupled" and t % kappa_every == 0:
                for g, _, p in mats:
                    buf = opt.state[p]["momentum_buffer"]
                    X = p.grad.lerp(buf, g["momentum"]) if g["nesterov"] else buf
                    O = orthogonalize_group(X[None], g)[0]
                    kappa = max(kappa, float(torch.linalg.matrix_norm(O.double(), 2)))
            norms[t] = [float(torch.linalg.svdvals(p)[0]) for _, _, p in mats]
    return WDRun([n for _, n, _ in mats], scales, w0, norms, kappa, loss)


def bound_of(run: WDRun, weight_decay: float, kappa: float) -> float:
    """The largest of the run's per-matrix bounds :func:`wd_spectral_bound`."""
    return max(wd_spectral_bound(w0, weight_decay, s, kappa) for w0, s in zip(run.w0, run.scales))


#: Decoupled decay with the exact polar factor (``orthogonalizer="svd"``): κ = 1.
SVD_ARM = "decoupled, exact polar"


def max_bound_ratio(run: WDRun, weight_decay: float, kappa: float) -> tuple[float, float]:
    """``(max_{t ≥ 1, matrices} ‖W_t‖₂ / B, final ‖W_T‖₂ / B)`` with B of :func:`wd_spectral_bound`
    per matrix (the final value is the largest over the matrices)."""
    B = np.array([wd_spectral_bound(w0, weight_decay, s, kappa) for w0, s in zip(run.w0, run.scales)])
    r = run.norms / B[None, :]
    return float(r.max()), float(r[-1].max())


def wd_spectral_norm(ctx: Context) -> ClaimResult:
    c = ctx.cfg
    from ..lab.data import digits

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = digits(device)["train"]
    lams = [float(x) for x in c["weight_decays"]]
    kw = dict(lr=float(c["lr"]), steps=int(c["steps"]), width=int(c["width"]), depth=int(c["depth"]),
              batch=int(c["batch"]), data=data)
    if max(lams) * kw["lr"] > 1:
        raise ValueError(f"ηλ = {max(lams) * kw['lr']} > 1: the bound needs ηλ ≤ 1")
    kappa_poly = ns_sup()
    runs: dict[tuple[str, float], list[WDRun]] = {}
    # arm label -> (weight_decay_mode, orthogonalizer)
    how = {"decoupled": ("decoupled", "newton_schulz"), "none": ("decoupled", "newton_schulz"),
           "coupled": ("coupled", "newton_schulz"), SVD_ARM: ("decoupled", "svd")}
    svd_lams = [float(x) for x in c["svd"]]
    arms = [("decoupled", lam) for lam in lams] + [(SVD_ARM, lam) for lam in svd_lams] + \
        [("none", 0.0)] + [("coupled", float(lam)) for lam in c["coupled"]]
    for arm, lam in arms:
        ctx.log(f"decoupled_wd_spectral_norm: {arm} λ={lam:g}, {len(ctx.seeds)} seeds × {kw['steps']} steps")
        mode, orth = how[arm]
        runs[(arm, lam)] = [train_wd_run(s, lam, mode, orthogonalizer=orth, **kw) for s in ctx.seeds]
    n_seeds = len(ctx.seeds)
    # κ per seed and orthogonalizer: the larger of the exact-arithmetic sup (Newton–Schulz: ns_sup;
    # exact polar: 1) and the largest ‖O_t‖₂ measured in that seed's decoupled runs
    kappa_ns = [max([kappa_poly] + [runs[("decoupled", lam)][i].kappa for lam in lams]) for i in range(n_seeds)]
    kappa_svd = [max([1.0] + [runs[(SVD_ARM, lam)][i].kappa for lam in svd_lams]) for i in range(n_seeds)]

    def kappa_of(arm: str, i: int) -> float:
        return kappa_svd[i] if arm == SVD_ARM else kappa_ns[i]

    # every arm with λ > 0 (coupled too) is compared with the decoupled formula's bound for its λ
    ratio = {(arm, lam): [max_bound_ratio(r, lam, kappa_of(arm, i)) for i, r in enumerate(rs)]
             for (arm, lam), rs in runs.items() if lam > 0}
    prim = [max(ratio[("decoupled", lam)][i][0] for lam in lams) for i in range(n_seeds)]
    lam_ref = min(lams)
    ctrl = [max_bound_ratio(r, lam_ref, kappa_ns[i])[0] for i, r in enumerate(runs[("none", 0.0)])]
    tests = [
        t_test(f"decoupled λ ∈ {lams}: max over λ, matrices and 1 ≤ t ≤ T of ‖W_t‖₂ / max(‖W₀‖₂, sκ/λ) < 1",
               mean_interval(prim), "<", 1.0, primary=True),
        t_test(f"control without decay: max_t ‖W_t‖₂ / (λ = {lam_ref:g} bound) > 1 (the bound can fail)",
               mean_interval(ctrl), ">", 1.0),
    ]
    if svd_lams:
        v = [max(ratio[(SVD_ARM, lam)][i][0] for lam in svd_lams) for i in range(n_seeds)]
        tests.append(t_test(f"exact polar factor (κ = 1), λ ∈ {svd_lams}: max ratio to max(‖W₀‖₂, s/λ) < 1",
                            mean_interval(v), "<", 1.0))
    # λ whose bound is sκ/λ (not ‖W₀‖₂) for every matrix of every seed, with 5% to spare
    binding = [lam for lam in lams if all(s * kappa_poly / lam > 1.05 * w0 for r in runs[("decoupled", lam)]
                                          for w0, s in zip(r.w0, r.scales))]
    for lam in binding:
        fin = [ratio[("decoupled", lam)][i][1] for i in range(n_seeds)]
        tests.append(t_test(f"reported (b): λ = {lam:g} (sκ/λ binds): final ‖W_T‖₂ / bound > 0.75 (approached)",
                            mean_interval(fin), ">", 0.75, voted=False))
        ideal = [max_bound_ratio(r, lam, 1.0)[0] for r in runs[("decoupled", lam)]]
        tests.append(t_test(f"reported: Newton–Schulz, λ = {lam:g}: max_t ‖W_t‖₂ / max(‖W₀‖₂, s/λ) (the κ = 1 "
                            "bound) > 1 (Newton–Schulz's overshoot κ > 1 is needed in the bound)",
                            mean_interval(ideal), ">", 1.0, voted=False))
    for lam in c["coupled"]:
        v = [ratio[("coupled", float(lam))][i][0] for i in range(n_seeds)]
        tests.append(t_test(f"reported: COUPLED decay λ = {float(lam):g} (λW added to the gradient): max ratio to "
                            "the decoupled bound > 1", mean_interval(v), ">", 1.0, voted=False))

    rows = []
    for (arm, lam), rs in runs.items():
        n_final = [float(r.norms[-1].max()) for r in rs]
        n_max = [float(r.norms.max()) for r in rs]
        if lam > 0:
            rmax = [x[0] for x in ratio[(arm, lam)]]
            ideal = [max_bound_ratio(r, lam, 1.0)[0] for r in rs]
            bnd = f"{np.mean([bound_of(r, lam, kappa_of(arm, i)) for i, r in enumerate(rs)]):.3g}"
        else:
            rmax, bnd, ideal = ctrl, "none", [math.nan]
        rows.append([arm, f"{lam:g}", bnd, mean_interval(n_max).fmt(".3g"), mean_interval(n_final).fmt(".3g"),
                     mean_interval(rmax).fmt(".3g"), f"{max(rmax):.4f}", fmt_mean(ideal, ".3g"),
                     f"{np.mean([r.loss for r in rs]):.3f}"])
    r0 = runs[("decoupled", lams[0])][0]
    table = md_table(["decay", "λ", "bound max(‖W₀‖, sκ/λ) (largest matrix)", "max_t ‖W_t‖₂", "‖W_T‖₂",
                      "max_t ratio to bound", "largest over seeds", "same with κ = 1 (exact polar)",
                      "final train loss"], rows)
    mats = ", ".join(f"{n} (s = {s:.3g}, ‖W₀‖₂ = {w:.3f})" for n, s, w in zip(r0.names, r0.scales, r0.w0))
    kappa_seen = max(r.kappa for lam in lams for r in runs[("decoupled", lam)])
    kappa_seen_svd = max([r.kappa for lam in svd_lams for r in runs[(SVD_ARM, lam)]] or [math.nan])
    table += ["", f"Muon matrices: {mats} (seed 0). κ: sup of Keller's quintic after 5 steps = {kappa_poly:.4f}; "
              f"largest ‖O_t‖₂ measured in the runs = {kappa_seen:.4f} (exact polar: {kappa_seen_svd:.7f}). "
              f"The control row's ratio is to the λ = {lam_ref:g} bound."]
    plots = [save_fig(_plot_wd(runs, kappa_ns[0], kappa_svd[0], kw["lr"]), ctx, "decoupled_wd_spectral_norm")]
    numbers = {"max_ratio": prim, "control_ratio": ctrl, "kappa": kappa_ns, "kappa_svd": kappa_svd,
               "kappa_poly": kappa_poly,
               "lr": kw["lr"], "steps": kw["steps"]}
    rule = ("primary (a): per seed, the largest ‖W_t‖₂ / max(‖W₀‖₂, sκ/λ) over the decoupled-decay runs (every "
            f"λ ∈ {lams}, every Muon matrix, every step 1 ≤ t ≤ T) must be < 1 (one-sided t test); s is the "
            "library's shape factor √max(1, m/n), κ the larger of the Newton–Schulz supremum and the largest "
            "‖O_t‖₂ measured in the run. Voted control: the same training without decay must exceed the "
            f"λ = {lam_ref:g} bound (> 1), so the bound is not met trivially. Voted too: with the exact polar "
            "factor (orthogonalizer='svd', κ = 1) the ratio to max(‖W₀‖₂, s/λ) must be < 1. Holm over the three. "
            "(b) how close the norm comes to the bound at the end, the κ = 1 ratio of the Newton–Schulz runs, and "
            "coupled decay are reported")
    return ctx.finish(tests, table=table, rule=rule, numbers=numbers, plots=plots)


def _plot_wd(runs, kappa: float, kappa_svd: float, lr: float):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, ((mode, lam), rs) in enumerate(runs.items()):
        r = rs[0]
        ax.plot(np.arange(1, len(r.norms) + 1), r.norms.max(axis=1), color=colors[k % len(colors)],
                label=f"{mode} λ = {lam:g}")
        if mode in ("decoupled", SVD_ARM):
            kap = kappa_svd if mode == SVD_ARM else kappa
            b = bound_of(r, lam, kap)
            ax.axhline(b, color=colors[k % len(colors)], ls="--", lw=0.8)
    ax.set(xlabel="step", ylabel="largest ‖W_t‖₂ over Muon matrices", yscale="log",
           title=f"seed 0, lr {lr:g}; dashed: max(‖W₀‖₂, sκ/λ)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# =================================================================================================

CLAIMS = [
    Claim(
        "convex_lipschitz_nonconvergence", 17, "001 hyperparameter transfer",
        "We show that Muon does not converge on the class of convex and Lipschitz functions, regardless of "
        "the choice of learning rate schedule. We also show that error feedback restores convergence of Muon "
        "and all the non-Euclidean subgradient methods with momentum.",
        "Source: the abstract of Parshakova, Khaled, Crawshaw, Garrigos, Gower, \"Muon Does Not Converge on "
        "Convex Lipschitz Functions\" (arXiv 2605.08980), one of the abstracts in seed 001. The paper's "
        "counterexample was not available to us, so this is OUR OWN construction, not the paper's: "
        "f(W) = |W₁₁+W₂₂| + ε|W₁₁−W₂₂| + |W₁₂| + |W₂₁| on 2×2 matrices (convex, Lipschitz, f* = 0 at W = 0) "
        "with the subgradient oracle sign(0) := +1 on the diagonal terms. From a diagonal W₀ with "
        "c = W₁₁ − W₂₂ ≠ 0 the subgradient is diag(s + εt, s − εt) with both entries of sign s, its polar factor "
        "is s·I, so every momentum-free Muon step W ← W − η_t·polar(G) moves only W₁₁ + W₂₂: W₁₁ − W₂₂ = c "
        "forever and f(W_t) ≥ ε|c| for every schedule. Runs (float64 torch, exact 2×2 polar factor) cover "
        "β ∈ {0, 0.9, 0.95} (EMA momentum), ε ∈ {0.1, …, 0.001}, η_t ∈ {0.1/√(t+1), 0.5/(t+1), 1e-3, 1e-2} and "
        "error feedback off/on (EF-Muon: P = η_t M + E, Δ = (‖P‖_*/rank P)·polar(P), W ← W − Δ, E ← P − Δ, also "
        "our own form), from ≥ 8 random diagonal W₀ plus the same W₀ with a small random off-diagonal part "
        "(reported separately: the invariant holds only on the diagonal). EF-Muon moves W₁₁ − W₂₂ at a rate "
        "proportional to ε, so in T steps only ε = 0.1 is expected to converge and only it is voted; the "
        "smaller ε are in the table. The test can fail: if Muon converged, "
        "min_t f(W_t)/(ε|c|) would fall towards 0, and that is what EF-Muon's runs show on the same statistic. "
        "The part with momentum is reported only (our instance is built for β = 0; with β > 0 the diagonal "
        "momentum can change sign and Muon may converge).",
        {"small": {"seeds": 8, "steps": 20_000, "eps": [0.1, 0.03, 0.01, 0.003, 0.001],
                   "betas": [0.0, 0.9, 0.95], "ef_eps": [0.1], "perturb": 1e-3},
         "full": {"seeds": 16, "steps": 200_000, "eps": [0.1, 0.03, 0.01, 0.003, 0.001],
                  "betas": [0.0, 0.9, 0.95], "ef_eps": [0.1], "perturb": 1e-3}},
        convex_nonconvergence,
    ),
    Claim(
        "decoupled_wd_spectral_norm", 25, "004 awesome-list",
        "Shows that Muon's orthogonalization step implicitly solves min f(W) subject to ||W||_σ ≤ C (spectral "
        "norm constraint). Provides Lagrangian perspective: Muon performs implicit spectral regularization per "
        "layer, keeping weights within bounded spectral-norm regions.",
        "Source: seed 004's entry on Chen, Li, Liu, \"Muon Optimizes Under Spectral Norm Constraints\" (arXiv "
        "2506.15054). The mechanism behind the constraint is decoupled weight decay: muonlab's Muon writes "
        "W ← (1 − ηλ)W − η·s·O with s = √max(1, m/n) and λ multiplied by the unadjusted lr, so ‖O_t‖₂ ≤ κ "
        "implies ‖W_t‖₂ ≤ max(‖W₀‖₂, sκ/λ) for all t when ηλ ≤ 1 (a two-line induction, proved in "
        "wd_spectral_bound's docstring; C = sκ/λ). We train the lab's digits MLP (small budget 64 → 128 → 128 → "
        "10, GELU, minibatch 64) with muonlab.create_optimizer(\"muon\") (Nesterov, β = 0.95, Keller's "
        "Newton–Schulz run in float32 because bf16 matrix products are slow on CPUs) for several λ at a constant "
        "lr, record the spectral norm of every Muon matrix (the 128×64 input layer has s = √2) after every step, "
        "and take κ as the larger of the exact-arithmetic Newton–Schulz supremum (1.2024: Newton–Schulz "
        "overshoots 1 on small singular values) and the largest ‖O_t‖₂ measured by re-orthogonalizing the "
        "optimizer's own input (so the bound uses nothing about how the library applies lr, s or λ); one arm "
        "uses the exact polar factor (orthogonalizer=\"svd\", κ = 1, the bound max(‖W₀‖₂, s/λ)). The test "
        "can fail two ways: a library whose decay or scaling differs from the formula would break the primary "
        "part, and the voted control (the same runs without decay) must exceed the bound, which shows the "
        "dynamics do push the norm past it. Reported: how close the norm gets to sκ/λ, the ratio to the "
        "exact-polar bound max(‖W₀‖₂, s/λ) (κ = 1), and coupled decay (not a control that can exceed the bound "
        "here: λW dominates the orthogonalized gradient and shrinks the weights).",
        {"small": {"seeds": 8, "steps": 300, "lr": 0.05, "weight_decays": [0.5, 2.0], "svd": [0.5],
                   "coupled": [0.5], "width": 128, "depth": 2, "batch": 64},
         "full": {"seeds": 16, "steps": 800, "lr": 0.05, "weight_decays": [0.25, 0.5, 2.0], "svd": [0.5],
                  "coupled": [0.5], "width": 256, "depth": 3, "batch": 256}},
        wd_spectral_norm,
    ),
]
