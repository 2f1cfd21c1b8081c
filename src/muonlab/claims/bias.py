"""Claim 18 ``implicit_bias_margin``: the margin an optimizer maximises depends on its norm.

On linearly separable data, normalized steepest descent with respect to a norm ‖·‖ (with momentum
and a decaying step size) converges in direction to a KKT point of the max-margin problem for that
norm: the spectral norm for Muon, the entrywise ℓ∞ norm for Signum (and Adam without ε), the
Frobenius (ℓ2) norm for normalized momentum GD (Gronich & Vardi, arXiv 2602.16340; for multiclass
linear models and spectral descent, Fan, Schmidt & Thrampoulidis, arXiv 2502.04664).

The experiment is our own: a multiclass linear classifier W ∈ R^{k×d} on separable synthetic
data, trained with each optimizer under cross-entropy; for each norm N the trained W's normalized
margin ``γ(W)/‖W‖_N`` is divided by the norm's optimum ``γ*_N`` (computed with CVXPY), a ratio in
(−∞, 1] that reaches 1 exactly on the max-margin direction for N.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from ..lab.inference import mean_interval, paired_interval, t_test
from .base import Claim, ClaimResult, Context, Tuned, fmt_mean, gated, md_table, pyplot, save_fig

#: The norms compared: spectral ‖W‖₂ (largest singular value), entrywise max |W_ij|, Frobenius.
NORMS = ("spectral", "linf", "fro")
NORM_LABEL = {"spectral": "spectral ‖W‖₂", "linf": "entrywise ℓ∞ (largest abs entry)", "fro": "Frobenius ‖W‖_F"}
#: Each optimizer's own norm (its steepest-descent geometry).
OWN_NORM = {"muon": "spectral", "signum": "linf", "gd": "fro", "adam": "linf"}
OPTIMIZERS = ("muon", "signum", "gd", "adam")


def separable_data(seed: int, classes: int, dim: int, points: int) -> tuple[np.ndarray, np.ndarray]:
    """A separable multiclass dataset: ``x_i ~ N(0, I_d)``, ``y_i = argmax_c (W_teacher x_i)_c`` with a
    Gaussian teacher ``W_teacher ∈ R^{k×d}`` (separable by construction). Redrawn (same generator)
    until every class occurs."""
    rng = np.random.default_rng(seed)
    while True:
        teacher = rng.standard_normal((classes, dim))
        X = rng.standard_normal((points, dim))
        y = np.argmax(X @ teacher.T, axis=1)
        if len(np.unique(y)) == classes:
            return X, y


def margins(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Multiclass margin ``γ(W) = min_i min_{c ≠ y_i} (W x_i)_{y_i} − (W x_i)_c``.

    ``W``: ``(..., k, d)``; ``X``: ``(n, d)`` or ``(..., n, d)``; ``y``: ``(n,)`` or ``(..., n)``
    (leading dimensions broadcast). Positive iff W separates the data."""
    Z = np.einsum("...kd,...nd->...nk", W, X)
    yb = np.broadcast_to(y, Z.shape[:-1])[..., None]
    D = np.take_along_axis(Z, yb, -1) - Z
    np.put_along_axis(D, yb, np.inf, -1)
    return D.min(axis=(-1, -2))


def norm_of(W: np.ndarray, norm: str) -> np.ndarray:
    """``‖W‖`` over the last two axes for ``norm`` in :data:`NORMS`."""
    if norm == "spectral":
        return np.linalg.svd(W, compute_uv=False)[..., 0]
    if norm == "linf":
        return np.abs(W).max(axis=(-2, -1))
    if norm == "fro":
        return np.sqrt((W**2).sum(axis=(-2, -1)))
    raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")


def max_margin(X: np.ndarray, y: np.ndarray, classes: int, norm: str) -> tuple[float, np.ndarray]:
    """The largest normalized margin ``γ*_N = max_{W ≠ 0} γ(W)/‖W‖_N`` and a maximiser, by CVXPY.

    Solved as the convex program ``min ‖W‖_N s.t. (W x_i)_{y_i} − (W x_i)_c ≥ 1 ∀ i, c ≠ y_i``
    (γ is 1-homogeneous, so ``γ* = 1/min‖W‖``): an SDP for the spectral norm, an LP for ℓ∞, an
    SOCP for Frobenius, all solved by Clarabel. The returned value is re-evaluated exactly from the solver's W,
    ``γ(W_sol)/‖W_sol‖_N`` (numpy), so it is an attained value: the ratio of any trained W to it is
    ≤ 1 up to the solver's suboptimality.

    Raises ImportError naming the extra when CVXPY is missing."""
    try:
        import cvxpy as cp
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("implicit_bias_margin needs CVXPY for the max-margin solutions: "
                          "pip install 'muonlab[sensing]'") from e
    n, d = X.shape
    W = cp.Variable((classes, d))
    Z = W @ X.T                                           # (k, n)
    rows = np.arange(n)
    cons = []
    for c in range(classes):
        idx = rows[y != c]
        if len(idx):
            # (W x_i)_{y_i} − (W x_i)_c ≥ 1: pick the y_i-th row entry of column i with a 0/1 mask
            onehot = np.zeros((classes, len(idx)))
            onehot[y[idx], np.arange(len(idx))] = 1.0
            zy = cp.sum(cp.multiply(onehot, Z[:, idx]), axis=0)
            cons.append(zy - Z[c, idx] >= 1)
    objective = {"spectral": lambda: cp.sigma_max(W), "linf": lambda: cp.max(cp.abs(W)),
                 "fro": lambda: cp.norm(W, "fro")}[norm]()
    prob = cp.Problem(cp.Minimize(objective), cons)
    with warnings.catch_warnings():
        # "optimal_inaccurate" (Clarabel stopping ~1e-8 from its tolerance on a few SDPs) is
        # harmless here: the value returned is re-evaluated exactly from the solver's W below.
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")
        prob.solve(solver="CLARABEL")
    if W.value is None or prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"max-margin problem ({norm}) failed: status {prob.status}")
    Wv = np.asarray(W.value)
    return float(margins(Wv, X, y) / norm_of(Wv, norm)), Wv


def ce_grad(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of the mean cross-entropy ``(1/n) Σ_i −log softmax(W x_i)_{y_i}``, batched:
    ``W`` (B, k, d), ``X`` (B, n, d), ``y`` (B, n) → ``(1/n) Σ_i (softmax(W x_i) − e_{y_i}) x_iᵀ``.
    (Softmax is shifted by its max, so huge margins underflow to an exactly zero gradient, never NaN.)"""
    Z = np.einsum("bkd,bnd->bnk", W, X)
    Z -= Z.max(axis=-1, keepdims=True)
    P = np.exp(Z)
    P /= P.sum(axis=-1, keepdims=True)
    np.put_along_axis(P, y[..., None], np.take_along_axis(P, y[..., None], -1) - 1.0, -1)
    return np.einsum("bnk,bnd->bkd", P, X) / X.shape[1]


def steepest_direction(M: np.ndarray, optimizer: str) -> np.ndarray:
    """The unit-norm steepest-descent direction for ``M`` (batched over the first axis):

    * ``"muon"``: ``polar(M) = U Vᵀ`` (exact, by SVD; Muon's Newton–Schulz approximates it) — the
      maximiser of ⟨M, D⟩ over ‖D‖₂ ≤ 1;
    * ``"signum"``: ``sign(M)`` — the maximiser over max|D_ij| ≤ 1;
    * ``"gd"``: ``M / ‖M‖_F`` — the maximiser over ‖D‖_F ≤ 1 (normalized GD).
    """
    if optimizer == "muon":
        U, _, Vt = np.linalg.svd(M, full_matrices=False)
        return U @ Vt
    if optimizer == "signum":
        return np.sign(M)
    if optimizer == "gd":
        f = np.sqrt((M**2).sum(axis=(-2, -1), keepdims=True))
        return M / np.maximum(f, 1e-300)
    raise ValueError(f"no steepest direction for {optimizer!r}")


def train(X: np.ndarray, y: np.ndarray, optimizer: str, lrs: np.ndarray, steps: int, *,
          beta: float = 0.9, beta2: float = 0.99, power: float = 0.5) -> np.ndarray:
    """Train ``W₀ = 0`` with ``optimizer`` for ``steps`` full-batch steps, batched: ``X`` (B, n, d),
    ``y`` (B, n), ``lrs`` (B,) (one run per row). Returns the final W, (B, k, d).

    Step t (from 0): ``G = ∇L(W)``, ``M ← β M + (1 − β) G``, ``W ← W − η_t D`` with
    ``η_t = lr · (t + 1)^(−power)`` (decaying, Σ η_t = ∞) and D = :func:`steepest_direction` of M for
    Muon, Signum and GD (so every step has norm η_t in the optimizer's own norm), and for ``"adam"``
    ``D = m̂ / √v̂`` (bias-corrected, β₂ = ``beta2``, no ε: the scale-free form whose bias is ℓ∞)."""
    B, n, d = X.shape
    k = int(y.max()) + 1
    W = np.zeros((B, k, d))
    M = np.zeros_like(W)
    V = np.zeros_like(W)
    lrs = np.asarray(lrs, dtype=float)[:, None, None]
    for t in range(steps):
        G = ce_grad(W, X, y)
        M = beta * M + (1 - beta) * G
        if optimizer == "adam":
            V = beta2 * V + (1 - beta2) * G * G
            den = np.sqrt(V / (1 - beta2 ** (t + 1)))
            D = np.divide(M / (1 - beta ** (t + 1)), den, out=np.zeros_like(M), where=den > 0)
        else:
            D = steepest_direction(M, optimizer)
        W = W - lrs * (t + 1) ** (-power) * D
    return W


def margin_ratios(W: np.ndarray, X: np.ndarray, y: np.ndarray, optimum: dict[str, float]) -> dict[str, np.ndarray]:
    """``{norm: γ(W)/‖W‖_N / γ*_N}`` for each norm (batched over W's leading axes)."""
    g = margins(W, X, y)
    return {nm: g / norm_of(W, nm) / optimum[nm] for nm in optimum}


def _stack(datasets: Sequence[tuple[np.ndarray, np.ndarray]], reps: int = 1) -> tuple[np.ndarray, np.ndarray]:
    X = np.stack([x for x, _ in datasets for _ in range(reps)])
    y = np.stack([t for _, t in datasets for _ in range(reps)])
    return X, y


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def tune_lr(opt: str, datasets, optima, steps: int, center: float, *, ratio: float = 3.0, points: int = 5,
            max_extend: int = 3) -> Tuned:
    """The lr (η₀) that maximises the median own-norm ratio over the tuning datasets, on a log grid
    centred on ``center``; extended past an edge while the best lr sits on it (≤ ``max_extend``)."""
    own = OWN_NORM[opt]
    half = (points - 1) / 2
    grid = [_round(center * ratio ** (i - half)) for i in range(points)]
    score: dict[float, float] = {}
    extended = 0
    while True:
        new = [lr for lr in grid if lr not in score]
        if new:
            X, y = _stack(datasets, len(new))
            lrs = np.array([lr for _ in datasets for lr in new])
            W = train(X, y, opt, lrs, steps)
            r = np.array([margin_ratios(W[i], X[i], y[i], optima[i // len(new)])[own] for i in range(len(W))])
            for j, lr in enumerate(new):
                score[lr] = float(np.median(r[j::len(new)]))
        best = max(grid, key=lambda lr: (score[lr], -lr))
        edge = best in (grid[0], grid[-1])
        if not edge or extended >= max_extend:
            break
        grid = [_round(grid[0] / ratio)] + grid if best == grid[0] else grid + [_round(grid[-1] * ratio)]
        extended += 1
    return Tuned(opt, best, grid, [score[lr] for lr in grid], not edge, extended)


def implicit_bias(ctx: Context) -> ClaimResult:
    c = ctx.cfg
    k, d, n, T = int(c["classes"]), int(c["dim"]), int(c["points"]), int(c["steps"])
    optimizers = [o for o in OPTIMIZERS if o in c["optimizers"]]
    seeds = ctx.seeds
    tune_seeds = ctx.tune_seeds

    def prepare(s):
        X, y = separable_data(s, k, d, n)
        return X, y, {nm: max_margin(X, y, k, nm)[0] for nm in NORMS}

    ctx.log(f"implicit_bias_margin: max-margin solutions for {len(seeds) + len(tune_seeds)} datasets")
    evald = [prepare(s) for s in seeds]
    tuned_d = [prepare(s) for s in tune_seeds]
    tuned: dict[str, Tuned] = {}
    ratios: dict[str, dict[str, np.ndarray]] = {}
    for opt in optimizers:
        ctx.log(f"implicit_bias_margin: tuning {opt} ({T} steps)")
        tuned[opt] = tune_lr(opt, [(X, y) for X, y, _ in tuned_d], [o for *_, o in tuned_d], T,
                             float(c["lr_center"][opt]))
        ctx.tuning.append(tuned[opt])
        X, y = _stack([(X, y) for X, y, _ in evald])
        W = train(X, y, opt, np.full(len(seeds), tuned[opt].lr), T)
        per = [margin_ratios(W[i], X[i], y[i], evald[i][2]) for i in range(len(seeds))]
        ratios[opt] = {nm: np.array([float(p[nm]) for p in per]) for nm in NORMS}
    top = max(float(ratios[o][nm].max()) for o in ratios for nm in NORMS)
    if top > 1 + 1e-4:
        raise RuntimeError(f"a trained W beats a CVXPY optimum (ratio {top:.6f} > 1): solver failure")

    def own_vs_rest(opt: str) -> tuple[np.ndarray, np.ndarray]:
        nm = OWN_NORM[opt]
        rest = [o for o in ("muon", "signum", "gd") if o != opt]
        return ratios[opt][nm], np.max([ratios[o][nm] for o in rest], axis=0)

    tests = []
    for opt, primary in (("muon", True), ("signum", False), ("gd", False)):
        a, b = own_vs_rest(opt)
        others = " and ".join(o for o in ("muon", "signum", "gd") if o != opt)
        test = t_test(f"{OWN_NORM[opt]} margin ratio: {opt} − max({others}) > 0 (paired over datasets)",
                      paired_interval(a, b), ">", primary=primary)
        rest = [tuned[o] for o in ("muon", "signum", "gd")]
        tests.append(gated(test, *rest))
    if "adam" in ratios:
        tests.append(gated(t_test("reported: ℓ∞ margin ratio: adam − muon > 0 (Adam without ε maximises ℓ∞)",
                                  paired_interval(ratios["adam"]["linf"], ratios["muon"]["linf"]), ">",
                                  voted=False), tuned["adam"], tuned["muon"]))
    for opt in optimizers:
        tests.append(t_test(f"reported: {opt}'s own-norm ({OWN_NORM[opt]}) ratio > 0.9 (near its max margin)",
                            mean_interval(ratios[opt][OWN_NORM[opt]]), ">", 0.9, voted=False))

    rows = [[opt, f"{tuned[opt].lr:g}" + ("" if tuned[opt].located else " (edge)")]
            + [("**" if OWN_NORM[opt] == nm else "") + fmt_mean(ratios[opt][nm], ".3f")
               + ("**" if OWN_NORM[opt] == nm else "") for nm in NORMS] for opt in optimizers]
    table = md_table(["optimizer", "η₀ (tuned)"] + [f"{NORM_LABEL[nm]} margin ratio" for nm in NORMS], rows)
    table += ["", f"Ratio = γ(W_T)/‖W_T‖_N ÷ γ*_N, mean [95% t interval] over {len(seeds)} datasets (k = {k}, d = {d}, "
              f"n = {n}, {T} steps, η_t = η₀/√(t+1), momentum 0.9); bold: the optimizer's own norm. "
              "Optima γ*: spectral " + fmt_mean([e[2]['spectral'] for e in evald], ".3g") + ", ℓ∞ "
              + fmt_mean([e[2]['linf'] for e in evald], ".3g") + ", Frobenius "
              + fmt_mean([e[2]['fro'] for e in evald], ".3g") + "."]
    plots = [save_fig(_plot_bias(ratios, optimizers), ctx, "implicit_bias_margin")]
    numbers = {opt: {nm: ratios[opt][nm].tolist() for nm in NORMS} for opt in optimizers}
    numbers["lr"] = {opt: tuned[opt].lr for opt in optimizers}
    rule = ("primary: Muon's spectral-norm margin ratio minus the larger of Signum's and GD's, paired over datasets, "
            "> 0 (one-sided t test); voted parts: Signum's ℓ∞ ratio − max(Muon's, GD's) > 0 and GD's Frobenius ratio − "
            "max(Muon's, Signum's) > 0; Holm over the three. Each optimizer's η₀ is tuned on separate datasets for its "
            "own norm's ratio (a part is untestable if a tuned η₀ sits on its grid's edge). Adam and the absolute "
            "levels are reported")
    return ctx.finish(tests, table=table, rule=rule, numbers=numbers, plots=plots)


def _plot_bias(ratios, optimizers):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    width = 0.8 / len(optimizers)
    for j, opt in enumerate(optimizers):
        means = [float(np.mean(ratios[opt][nm])) for nm in NORMS]
        ax.bar(np.arange(len(NORMS)) + (j - (len(optimizers) - 1) / 2) * width, means, width, label=opt)
        for i, nm in enumerate(NORMS):
            ax.scatter(np.full(len(ratios[opt][nm]), i + (j - (len(optimizers) - 1) / 2) * width),
                       ratios[opt][nm], s=6, color="k", zorder=3)
    ax.set_xticks(range(len(NORMS)), [NORM_LABEL[nm] for nm in NORMS], fontsize=8)
    ax.set(ylabel="normalized margin / max-margin", ylim=(min(0.0, ax.get_ylim()[0]), 1.02))
    ax.axhline(1.0, color="k", lw=0.7)
    ax.legend(fontsize=7, ncol=len(optimizers), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return fig


CLAIMS = [
    Claim(
        "implicit_bias_margin", 18, "001 hyperparameter transfer",
        "We then show that for smooth homogeneous models, momentum steepest descent algorithms like Muon "
        "(spectral norm), MomentumGD ($\\ell_2$ norm), and Signum ($\\ell_\\infty$ norm) are approximate steepest "
        "descent trajectories under a decaying learning rate schedule, proving that these algorithms too have a "
        "bias towards KKT points of the corresponding margin maximization problem. [...] Our experiments "
        "corroborate the theory and show that the identity of the margin maximized depends on the choice of "
        "optimizer.",
        "Source: the abstract of Gronich & Vardi, \"The Implicit Bias of Adam and Muon on Smooth Homogeneous "
        "Neural Networks\" (arXiv 2602.16340), one of the abstracts in seed 001; seed 004 lists the multiclass "
        "separable case (Fan, Schmidt & Thrampoulidis, \"Implicit Bias of Spectral Descent and Muon on "
        "Multiclass Separable Data\", arXiv 2502.04664: \"Analyzes the implicit bias of spectral descent methods "
        "(including Muon) on separable multiclass data.\"). A linear multiclass classifier (a 1-homogeneous "
        "smooth model) W ∈ R^{k×d} on separable synthetic data "
        "(Gaussian inputs labelled by a random teacher; one dataset per seed), trained from W = 0 with cross-entropy "
        "and full-batch steps W ← W − η_t·D, η_t = η₀/√(t+1), EMA momentum 0.9, where D is the unit steepest-descent "
        "direction of the momentum in the optimizer's norm: Muon = exact polar factor (spectral), Signum = sign "
        "(entrywise ℓ∞), momentum GD normalized in Frobenius norm (ℓ2); Adam without ε is reported. For each "
        "trained W and each norm N we compute the normalized margin γ(W)/‖W‖_N divided by the norm's optimum γ*_N "
        "(CVXPY: SDP/LP/SOCP), a ratio ≤ 1 that is 1 only on that norm's max-margin direction. The claim predicts a "
        "diagonal pattern: each optimizer leads on its own norm. It can fail: the three max-margin directions "
        "differ on these datasets, so if the optimizers converged to the same direction (or Muon's bias were not "
        "spectral) the paired differences would be ≤ 0. Each η₀ is tuned per optimizer on separate datasets "
        "(own-norm ratio, log grid with edge extension). Finite training only approaches the limit, so ratios "
        "below 1 are expected; the comparisons are between optimizers at the same horizon.",
        {"small": {"seeds": 8, "tune_seeds": 2, "classes": 5, "dim": 20, "points": 40, "steps": 20_000,
                   "optimizers": list(OPTIMIZERS),
                   "lr_center": {"muon": 0.3, "signum": 0.03, "gd": 0.3, "adam": 0.1}},
         "full": {"seeds": 16, "tune_seeds": 3, "classes": 10, "dim": 50, "points": 100, "steps": 50_000,
                  "optimizers": list(OPTIMIZERS),
                  "lr_center": {"muon": 0.3, "signum": 0.03, "gd": 0.3, "adam": 0.1}}},
        implicit_bias,
    ),
]
