"""Claims 14, 22, 23: the geometry of Muon's update — frames, nuclear norms and spectra.

* 22 ``frame_alignment`` (seed 003, Beneventano, Abdelmoneum, Poggio, arXiv 2606.08388, Figure 7):
  during Muon training on matrix sensing, the top-k singular subspaces of the weight W and of the
  full-batch gradient G stay aligned, ``‖sin Θ‖_F < 0.1`` after the transient. Measured by the
  workload's ``val/sin_theta`` (see :func:`frame_sin_theta` for the definition and k).
* 23 ``sensing_large_instance`` (seed 003, Figure 3 left): on a large underdetermined instance
  (p = n = 50, d = 20) Muon's nuclear norm stays a non-diminishing factor above the CVXPY minimum
  (the seed: 20.3 vs 14.1, 1.44×, one instance; here 8 instances).
* 14 ``freon_kaon_spectra`` (Shumaylov et al., "Muon is Not That Special: Random or Inverted Spectra
  Work Just as Well", arXiv 2605.11181, listed in seed 001): Kaon (Muon's singular vectors with
  pseudo-random singular values) and Freon at q < 1 (Muon's singular vectors with an *inverted*
  spectrum) match Muon once each is tuned. Tested by TOST on the best-lr validation loss, with a
  tuned SGD control that the margin must separate from Muon.

The sensing claims replicate over problem instances (A, W*): instance i is trained from init
seed i, and tuning uses instances and seeds ≥ 1000 (:data:`muonlab.claims.base.TUNE_SEED0`), never
the evaluation ones. Every experiment runs torch single-threaded (:func:`~muonlab.claims.base.one_thread`):
on 2 busy shared cores, torch's default thread pool made these tiny runs an order of magnitude slower.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Sequence

import numpy as np

from ..lab import inference as inf
from ..lab.inference import mean_interval, ratio_interval, t_test, untestable
from .base import (TUNE_SEED0, Claim, ClaimResult, Context, Tuned, final, fmt_mean, gated, md_table, one_thread,
                   pyplot, rows_of, save_fig, values)

# ---- math ---------------------------------------------------------------------------------------


def sin_theta(U: np.ndarray, V: np.ndarray) -> float:
    """``‖sin Θ(U, V)‖_F`` between the column spaces of two orthonormal ``p × k`` bases.

    The principal angles θ₁..θ_k between span(U) and span(V) have ``cos θᵢ`` = the singular values
    of ``UᵀV``, so ``‖sin Θ‖_F² = Σ sin² θᵢ = k − ‖UᵀV‖_F² = ‖(I − UUᵀ) V‖_F²`` (Davis & Kahan
    1970; Yu, Wang & Samworth, arXiv 1405.0680). It is 0 for the same subspace and √k for
    orthogonal ones. Rounding can push ``k − ‖UᵀV‖_F²`` slightly below 0; it is clamped.
    """
    U, V = np.asarray(U, dtype=float), np.asarray(V, dtype=float)
    if U.shape != V.shape or U.ndim != 2:
        raise ValueError(f"sin_theta needs two p×k bases of one shape, got {U.shape} and {V.shape}")
    k = U.shape[1]
    return math.sqrt(max(k - float(np.sum((U.T @ V) ** 2)), 0.0))


def frame_sin_theta(W: np.ndarray, G: np.ndarray, k: int) -> tuple[float, float, float]:
    """``(left, right, max)`` frame misalignment of W and G: :func:`sin_theta` between the top-k
    left singular subspaces of W and G, the same for the right ones, and the larger of the two.

    This is the reading of seed 003's ``‖sin Θ‖_F`` (arXiv 2606.08388, Figure 7) that the
    matrix_sensing workload reports as ``val/sin_theta`` (there with G the full-batch gradient and
    ``k = rank(W*)``); it is written here again, in numpy, so the tests can check the workload.
    The top-k subspace is well defined only when ``σ_k > σ_{k+1}``.
    """
    W, G = np.asarray(W, dtype=float), np.asarray(G, dtype=float)
    Uw, _, Vwt = np.linalg.svd(W, full_matrices=False)
    Ug, _, Vgt = np.linalg.svd(G, full_matrices=False)
    left = sin_theta(Uw[:, :k], Ug[:, :k])
    right = sin_theta(Vwt[:k].T, Vgt[:k].T)
    return left, right, max(left, right)


def unrelated_level(k: int, p: int) -> float:
    """``√(k − k²/p)``: the root-mean-square ``‖sin Θ‖_F`` between a fixed k-dimensional subspace
    of R^p and a uniformly random one.

    For V with Haar-random orthonormal columns vⱼ, ``E‖Uᵀvⱼ‖² = k/p``, so ``E‖UᵀV‖_F² = k²/p`` and
    ``E‖sin Θ‖_F² = k − k²/p``. A measured misalignment at this level means the two frames are no
    more aligned than unrelated subspaces."""
    if not 1 <= k <= p:
        raise ValueError(f"need 1 <= k <= p, got k={k}, p={p}")
    return math.sqrt(k - k * k / p)


def phase(rows: Sequence[dict], metric: str, steps: int, lo: float, hi: float, worst: float) -> list[float]:
    """Values of ``metric`` at the evaluations with ``lo·steps < step ≤ hi·steps``.

    A non-finite value counts as ``worst``; a run that stopped before the phase (diverged) gives
    ``[worst]``, so a diverged run is never silently dropped."""
    out = [r.get(metric) for r in rows if lo * steps < r["step"] <= hi * steps]
    out = [worst if v is None or not math.isfinite(v) else float(v) for v in out]
    return out or [worst]


def value_at(rows: Sequence[dict], metric: str, step: float) -> float:
    """``metric`` at the evaluation nearest to ``step`` (NaN when there is none)."""
    have = [r for r in rows if r.get(metric) is not None]
    if not have:
        return math.nan
    return float(min(have, key=lambda r: (abs(r["step"] - step), r["step"]))[metric])


# ---- shared helpers ----------------------------------------------------------------------------

def reported(test: inf.Test) -> inf.Test:
    """``test`` as a reported-only part (also after :func:`gated` made it untestable)."""
    return dataclasses.replace(test, voted=False)


def center_lr(optimizer: str) -> float:
    """The registry's recommended lr of ``optimizer`` (else its rule's default): the centre of its grid."""
    from ..registry import get_spec

    spec = get_spec(optimizer)
    return float(spec.recommended.get("lr", spec.rule.hypers["lr"].default))


def tune_instances(ctx: Context) -> list[int]:
    """Problem instances the sensing lr is tuned on: ≥ TUNE_SEED0, disjoint from evaluation ones."""
    return [TUNE_SEED0 + j for j in range(int(ctx.cfg.get("tune_instances", 2)))]


def sensing_arm(ctx: Context, optimizer: str, center: float, knobs: dict, hparams: dict, run: dict,
                arm: str, tune_steps: int | None = None) -> tuple[Tuned, list]:
    """Tune ``optimizer`` on the tuning instances (for ``tune_steps`` steps, default the run's),
    then run instance i from init seed i at the tuned lr for every evaluation seed i (one sweep
    point per instance)."""
    t = ctx.tune("matrix_sensing", optimizer, center, knobs=knobs, grid={"instance": tune_instances(ctx)},
                 hparams=hparams, arm=arm, **{**run, "steps": tune_steps or run["steps"]})
    items = []
    for i in ctx.seeds:
        items += ctx.evaluate("matrix_sensing", optimizer, t.lr, knobs={**knobs, "instance": i}, seeds=[i],
                              hparams=hparams, **run)
    return t, items


def _fmt(x: float, spec: str = ".3g") -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:{spec}}"


# ---- claim 22: frame alignment -------------------------------------------------------------------

SIN_THETA_BOUND = 0.1  # the seed's "< 0.1"


def frame_alignment_claim(ctx: Context) -> ClaimResult:
    c = ctx.cfg
    p, steps, k = int(c["p"]), int(c["steps"]), int(c["rank"])
    run = {"steps": steps, "warmup": 0.0, "eval_every": int(c["eval_every"])}
    worst = math.sqrt(k)
    level = unrelated_level(k, p)
    tests, rows, numbers, curves = [], [], {}, {}
    with one_thread():
        for d in c["ds"]:
            knobs = {"p": p, "n": p, "d": int(d), "rank": k}
            arms = {
                "muon": sensing_arm(ctx, "muon", c["muon_lr"], knobs, {"weight_decay": 0.0}, run, f"muon d={d}"),
                "gd": sensing_arm(ctx, "sgd", c["gd_lr"], knobs, {"momentum": 0.0}, run, f"gd d={d}"),
            }
            per: dict[str, dict[str, list[float]]] = {}
            for name, (tuned, items) in arms.items():
                runs = [rows_of(run_dir) for _, run_dir, _ in items]
                post = [phase(r, "val/sin_theta", steps, 0.5, 1.0, worst) for r in runs]
                per[name] = {
                    "post_max": [max(v) for v in post],
                    "post_mean": [float(np.mean(v)) for v in post],
                    "pre_mean": [float(np.mean(phase(r, "val/sin_theta", steps, 0.0, 0.5, worst))) for r in runs],
                    "left": [float(np.mean(phase(r, "val/sin_theta_left", steps, 0.5, 1.0, worst))) for r in runs],
                    "right": [float(np.mean(phase(r, "val/sin_theta_right", steps, 0.5, 1.0, worst))) for r in runs],
                    "gap_w": [float(np.mean(phase(r, "val/frame_gap_w", steps, 0.5, 1.0, 0.0))) for r in runs],
                    "loss": values(items, "val/loss"),
                }
                curves[(name, d)] = _mean_curve(runs, "val/sin_theta")
                rows.append([f"d={d}", name, f"{tuned.lr:g}" + ("" if tuned.located else " (edge)"),
                             fmt_mean(per[name]["post_max"]), fmt_mean(per[name]["post_mean"]),
                             fmt_mean(per[name]["left"]), fmt_mean(per[name]["right"]),
                             fmt_mean(per[name]["pre_mean"]), fmt_mean(per[name]["gap_w"], ".2g"),
                             _fmt(float(np.median(per[name]["loss"])), ".2g")])
            tm, tg = arms["muon"][0], arms["gd"][0]
            tests.append(gated(t_test(
                f"d={d}: Muon's post-transient max ‖sinΘ‖_F (mean over instances) < {SIN_THETA_BOUND}",
                mean_interval(per["muon"]["post_max"]), "<", SIN_THETA_BOUND, primary=d == c["ds"][0]), tm))
            tests.append(reported(gated(t_test(
                f"d={d}: GD control, post-transient max ‖sinΘ‖_F < {SIN_THETA_BOUND}",
                mean_interval(per["gd"]["post_max"]), "<", SIN_THETA_BOUND, voted=False), tg)))
            tests.append(reported(gated(t_test(
                f"d={d}: Muon, first half of training (transient), mean ‖sinΘ‖_F < {SIN_THETA_BOUND}",
                mean_interval(per["muon"]["pre_mean"]), "<", SIN_THETA_BOUND, voted=False), tm)))
            numbers[f"d={d}"] = {a: {key: mean_interval(v) for key, v in per[a].items()} for a in per}
            numbers[f"d={d}"]["lr"] = {a: arms[a][0].lr for a in arms}
            if c.get("sensitivity_k"):
                ks = int(c["sensitivity_k"])
                items = []
                for i in ctx.seeds:  # the same runs' settings, only the metric's k differs
                    items += ctx.evaluate("matrix_sensing", "muon", tm.lr, knobs={**knobs, "instance": i,
                                                                                  "frame_k": ks},
                                          seeds=[i], hparams={"weight_decay": 0.0}, **run)
                pm = [max(phase(rows_of(rd), "val/sin_theta", steps, 0.5, 1.0, math.sqrt(ks))) for _, rd, _ in items]
                numbers[f"d={d}"][f"muon_post_max_k{ks}"] = mean_interval(pm)
                tests.append(reported(gated(t_test(
                    f"d={d}: sensitivity, k = {ks}: Muon's post-transient max ‖sinΘ‖_F < {SIN_THETA_BOUND}",
                    mean_interval(pm), "<", SIN_THETA_BOUND, voted=False), tm)))
    numbers["unrelated_subspace_level"] = level
    table = md_table(["config", "arm", "tuned lr", "post-transient max ‖sinΘ‖_F", "post-transient mean",
                      "left (mean)", "right (mean)", "first-half mean", "W's gap (σ_k−σ_k+1)/σ₁",
                      "final loss (median)"], rows)
    table += ["", f"Unrelated subspaces (k = {k} in R^{p}) give ‖sinΘ‖_F ≈ √(k − k²/p) = {level:.3f}."]
    plots = [_frame_plot(ctx, curves, c["ds"], steps, level)]
    rule = (f"Reading: ‖sinΘ‖_F = √(k − ‖U_Wᵀ U_G‖_F²) between the top-k left singular subspaces of W and of the "
            f"full-batch gradient G, likewise for the right ones, the larger of the two; k = rank(W*) = {k}; "
            f"post-transient = evaluations in the second half of training. Primary (d = {c['ds'][0]}) and voted "
            f"parts (one per d ∈ {list(c['ds'])}): one-sided t test that the mean over instances of each "
            f"instance's post-transient maximum is below {SIN_THETA_BOUND}; Holm over the {len(c['ds'])} parts. "
            "Reported only: the same for plain GD (tuned; once it has converged to float32 round-off its "
            "gradient is rounding noise, so its frame is not meaningful), Muon's first half of training, and k = "
            f"{c.get('sensitivity_k') or '—'} instead of rank(W*).")
    return ctx.finish(tests, table=table, rule=rule, numbers=numbers, plots=plots)


def _mean_curve(runs: Sequence[Sequence[dict]], metric: str) -> tuple[list[int], list[float]]:
    """Mean of ``metric`` over runs at each evaluated step that every run has."""
    common = sorted(set.intersection(*[{r["step"] for r in rs if r.get(metric) is not None} for rs in runs]))
    mean = [float(np.mean([next(r[metric] for r in rs if r["step"] == s) for rs in runs])) for s in common]
    return common, mean


def _frame_plot(ctx: Context, curves: dict, ds: Sequence[int], steps: int, level: float) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(ds), figsize=(3.4 * len(ds), 3.0), sharey=True, squeeze=False)
    for ax, d in zip(axes[0], ds):
        for name, style in (("muon", "-"), ("gd", "--")):
            x, y = curves[(name, d)]
            ax.plot(x, y, style, label=name)
        ax.axhline(SIN_THETA_BOUND, color="k", lw=0.8, label="seed: 0.1")
        ax.axhline(level, color="gray", ls=":", lw=0.8, label="unrelated subspaces")
        ax.axvline(steps / 2, color="gray", lw=0.5)
        ax.set(title=f"d = {d}", xlabel="step")
    axes[0][0].set_ylabel("‖sin Θ‖_F (mean over instances)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save_fig(fig, ctx, "frame_alignment")


# ---- claim 23: the large instance ---------------------------------------------------------------

GAP_THRESHOLD = 1.1     # "does not reach the minimum": a gap of more than 10%
NON_DIMINISHING = 0.95  # the end/middle ratio must not fall below this
SEED_RATIO, SEED_RATIO_MARGIN = 1.44, 0.2


def large_instance(ctx: Context) -> ClaimResult:
    from ..lab.workloads import make_workload

    c = ctx.cfg
    steps = int(c["steps"])
    knobs = {"p": int(c["p"]), "n": int(c["p"]), "d": int(c["d"]), "rank": int(c["rank"])}
    # A constant lr, tuned on runs of half the length: the first half of every evaluation run is a
    # tuning-length run (the fit is reached by mid-training), the second half asks whether continued
    # training at the same lr shrinks the gap.
    run = {"steps": steps, "warmup": 0.0, "eval_every": int(c["eval_every"]), "schedule": "constant"}
    with one_thread():
        import torch

        # The CVXPY minimum, solved (and timed) once per instance; the runs reuse the workload's cache.
        mins, solve_s, star = [], [], []
        for i in ctx.seeds:
            wl = make_workload("matrix_sensing", **knobs, instance=i)
            t0 = time.perf_counter()
            wl.setup(torch.device("cpu"))
            solve_s.append(time.perf_counter() - t0)
            mins.append(wl.nuc_min)
            star.append(wl.info()["nuclear_norm_star"])
        if any(m is None for m in mins):
            test = untestable("‖W_Muon‖*/CVXPY minimum > 1.1", "CVXPY is not installed (pip install muonlab[sensing])",
                              primary=True)
            return ctx.finish([test], table=[], rule="needs CVXPY for the nuclear-norm minimum")
        tm, muon = sensing_arm(ctx, "muon", c["muon_lr"], knobs, {"weight_decay": 0.0}, run, "muon", steps // 2)
        tg, gd = sensing_arm(ctx, "sgd", c["gd_lr"], knobs, {"momentum": 0.0}, run, "gd", steps // 2)
    arms = {"muon": muon, "gd": gd}
    per = {}
    for name, items in arms.items():
        runs = [rows_of(rd) for _, rd, _ in items]
        per[name] = {
            "norm": [final(s, "val/nuclear_norm", rd) for _, rd, s in items],
            "end": [value_at(r, "val/nuc_ratio", steps) for r in runs],
            "mid": [value_at(r, "val/nuc_ratio", steps / 2) for r in runs],
            "loss": values(items, "val/loss"),
            "loss0": [value_at(r, "val/loss", 0) for r in runs],
            "curves": [([r["step"] for r in rs], [r["val/nuc_ratio"] for r in rs]) for rs in runs],
        }
    m = per["muon"]
    gap = ratio_interval(m["norm"], mins, paired=True)
    drift = ratio_interval(m["end"], m["mid"], paired=True)
    tests = [
        gated(t_test(f"‖W_Muon‖*/CVXPY minimum > {GAP_THRESHOLD} (geometric mean over instances)", gap, ">",
                     GAP_THRESHOLD, primary=True), tm),
        gated(t_test(f"non-diminishing: ratio at the end / at mid-training > {NON_DIMINISHING}", drift, ">",
                     NON_DIMINISHING), tm),
        reported(gated(t_test("ratio at the end and at mid-training equivalent within ×/÷1.05", drift,
                              "equivalent", 1.0, 1.05, voted=False), tm)),
        reported(gated(t_test(f"the ratio is {SEED_RATIO} ± {SEED_RATIO_MARGIN} (the seed's instance)",
                              mean_interval(m["end"]), "equivalent", SEED_RATIO, SEED_RATIO_MARGIN, voted=False),
                       tm)),
        reported(gated(t_test(f"GD control: ‖W_GD‖*/CVXPY minimum > {GAP_THRESHOLD}",
                              ratio_interval(per["gd"]["norm"], mins, paired=True), ">", GAP_THRESHOLD,
                              voted=False), tg)),
        reported(gated(t_test("Muon's nuclear norm / GD's (paired by instance) > 1",
                              ratio_interval(m["norm"], per["gd"]["norm"], paired=True), ">", 1.0, voted=False),
                       tm, tg)),
    ]
    rows = []
    for name, t in (("muon", tm), ("gd", tg)):
        v = per[name]
        rows.append([name, f"{t.lr:g}" + ("" if t.located else " (edge)"), fmt_mean(v["end"]), fmt_mean(v["mid"]),
                     f"{min(v['end']):.3g}–{max(v['end']):.3g}", fmt_mean(v["norm"]),
                     _fmt(float(np.median(v["loss"])), ".2g"), _fmt(float(np.median(v["loss0"])), ".2g")])
    table = md_table(["arm", "tuned lr", "‖W‖*/min at the end", "at mid-training", "range", "‖W‖* at the end",
                      "final loss (median)", "initial loss (median)"], rows)
    table += ["", f"CVXPY minimum ‖X‖*: {fmt_mean(mins)} (mean over instances; ‖W*‖* = {np.mean(star):.3g}); "
                  f"solve time {np.mean(solve_s):.2f} s per instance (max {max(solve_s):.2f} s)."]
    numbers = {"muon_gap_ratio": gap, "muon_end_over_mid": drift, "nuc_min": mean_interval(mins),
               "muon_ratio_mean": mean_interval(m["end"]), "gd_ratio_mean": mean_interval(per["gd"]["end"]),
               "cvxpy_seconds_mean": float(np.mean(solve_s)), "cvxpy_seconds_max": float(max(solve_s)),
               "lr": {"muon": tm.lr, "gd": tg.lr}}
    plots = [_large_plot(ctx, per, steps)]
    rule = (f"Primary: the geometric-mean ratio ‖W_Muon‖*/(CVXPY minimum) over instances, t interval of the mean "
            f"log-ratio, one-sided > {GAP_THRESHOLD} (any interpolating W has a ratio ≥ 1, so the claim's content "
            f"is a material gap; the seed's family gaps are 1.29–2.02×). Voted: non-diminishing — the paired ratio "
            f"(ratio at the last evaluation)/(ratio at mid-training) > {NON_DIMINISHING}, one-sided. Holm over the "
            f"two. Reported: TOST of end/middle within ×/÷1.05, the ratio vs the seed's {SEED_RATIO} ± "
            f"{SEED_RATIO_MARGIN}, and plain GD (tuned) as a control.")
    return ctx.finish(tests, table=table, rule=rule, numbers=numbers, plots=plots)


def _large_plot(ctx: Context, per: dict, steps: int) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, color in (("muon", "C0"), ("gd", "C1")):
        for j, (x, y) in enumerate(per[name]["curves"]):
            ax.plot(x, y, color=color, lw=0.8, alpha=0.7, label=name if j == 0 else None)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(SEED_RATIO, color="gray", ls="--", lw=0.8, label=f"seed: {SEED_RATIO}×")
    ax.axvline(steps / 2, color="gray", lw=0.5)
    ax.set(xlabel="step", ylabel="‖W‖* / CVXPY minimum", ylim=(0, None))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_fig(fig, ctx, "sensing_large_instance")


# ---- claim 14: random and inverted spectra -------------------------------------------------------

def freon_kaon(ctx: Context) -> ClaimResult:
    c = ctx.cfg
    margin, control = float(c["margin"]), str(c["control"])
    arm_specs = {"muon": ("muon", {}), **{k: (v["optimizer"], dict(v.get("hparams", {})))
                                          for k, v in c["variants"].items()},
                 control: (control, {})}
    variants = list(c["variants"])
    tests, rows, numbers, tuning_curves = [], [], {}, {}
    first = next(iter(c["workloads"]))
    with one_thread():
        for wl, w in c["workloads"].items():
            run = {"steps": int(w["steps"]), "knobs": dict(w.get("knobs", {})),
                   "eval_every": int(w.get("eval_every", 0))}
            tuned, vals, accs = {}, {}, {}
            for arm, (opt, hp) in arm_specs.items():
                tuned[arm], items = ctx.arm(wl, opt, center_lr(opt), hparams=hp, arm=f"{arm} on {wl}", **run)
                vals[arm], accs[arm] = values(items, "val/loss"), values(items, "val/acc")
                tuning_curves[(wl, arm)] = (tuned[arm].grid, tuned[arm].medians)
            ctrl = t_test(f"{wl}: control {control}/Muon final val loss within ×/÷{margin:g} (must fail)",
                          ratio_interval(vals[control], vals["muon"], paired=True), "equivalent", 1.0, margin,
                          voted=False)
            ctrl = reported(gated(ctrl, tuned[control], tuned["muon"]))
            separated = math.isfinite(ctrl.p_against) and ctrl.p_against < inf.ALPHA_ONE_SIDED
            for v in variants:
                t = gated(t_test(f"{wl}: {v}/Muon final val loss within ×/÷{margin:g} (TOST)",
                                 ratio_interval(vals[v], vals["muon"], paired=True), "equivalent", 1.0, margin,
                                 primary=(wl == first and v == variants[0])), tuned[v], tuned["muon"])
                if not separated and not t.note:
                    t = dataclasses.replace(untestable(
                        t.name, f"the margin does not separate the {control} control from Muon on {wl} (control "
                        f"{ctrl.interval.fmt()}), so equivalence there would not discriminate", primary=t.primary),
                        interval=t.interval)
                tests.append(t)
            tests.append(ctrl)
            for arm in arm_specs:
                ratio = "—" if arm == "muon" else ratio_interval(vals[arm], vals["muon"], paired=True).fmt()
                rows.append([wl, arm, f"{tuned[arm].lr:g}" + ("" if tuned[arm].located else " (edge)"),
                             f"{tuned[arm].grid[0]:g}…{tuned[arm].grid[-1]:g}", fmt_mean(vals[arm], ".4g"), ratio,
                             fmt_mean(accs[arm], ".4g")])
            numbers[wl] = {arm: {"lr": tuned[arm].lr, "val_loss": mean_interval(vals[arm]),
                                 "ratio_to_muon": None if arm == "muon" else
                                 ratio_interval(vals[arm], vals["muon"], paired=True)} for arm in arm_specs}
            numbers[wl]["control_separated"] = separated
    table = md_table(["workload", "arm", "tuned lr", "grid", "final val loss", "ratio to Muon (paired)",
                      "final val acc"], rows)
    plots = [_spectra_plot(ctx, tuning_curves, list(c["workloads"]), list(arm_specs))]
    names = ", ".join(f"{k} = {o}{' ' + str(h) if h else ''}" for k, (o, h) in arm_specs.items())
    rule = (f"Arms: {names}; each tuned on its own lr grid (ratio 2, 5 points centred on its registry lr, extended "
            f"past an edge) on tuning seeds, then run on the evaluation seeds. Primary ({variants[0]} on {first}) and "
            f"voted parts (each variant × workload): TOST that the paired geometric-mean ratio of final val loss, "
            f"variant/Muon, lies within ×/÷{margin:g}; Holm over them. Margin: ±{100 * (margin - 1):.0f}% of Muon's "
            f"loss — the seed-to-seed spread of final val loss here is several percent, so 2% cannot be resolved at "
            f"8 seeds, while the tuned baselines differ from Muon by far more. Control: the same TOST for {control} "
            f"(reported) must come out *not* equivalent (its interval outside the margin); on a workload where it "
            f"does not, that workload's variant parts are untestable.")
    return ctx.finish(tests, table=table, rule=rule, numbers=numbers, plots=plots)


def _spectra_plot(ctx: Context, curves: dict, workloads: list[str], arms: list[str]) -> str:
    from matplotlib.ticker import NullFormatter

    plt = pyplot()
    fig, axes = plt.subplots(1, len(workloads), figsize=(4.2 * len(workloads), 3.2), squeeze=False)
    for ax, wl in zip(axes[0], workloads):
        for arm in arms:
            grid, med = curves[(wl, arm)]
            x = np.asarray(grid) / grid[int(np.argmin(med))]
            ax.plot(x, med, "o-", label=arm, ms=3)
        ax.set(xscale="log", yscale="log", title=wl, xlabel="lr / arm's tuned lr", ylabel="median final val loss")
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return save_fig(fig, ctx, "freon_kaon_spectra")


# ---- registration --------------------------------------------------------------------------------

FRAME_SMALL = {"seeds": 8, "tune_seeds": 2, "tune_instances": 2, "p": 10, "rank": 2, "ds": [10, 20, 50],
               "steps": 1000, "eval_every": 25, "muon_lr": 0.002, "gd_lr": 0.05, "sensitivity_k": 1}
FRAME_FULL = {**FRAME_SMALL, "seeds": 16, "steps": 3000, "eval_every": 50}

LARGE_SMALL = {"seeds": 8, "tune_seeds": 2, "tune_instances": 1, "p": 50, "d": 20, "rank": 2, "steps": 2000,
               "eval_every": 50, "muon_lr": 2e-4, "gd_lr": 0.004}
LARGE_FULL = {**LARGE_SMALL, "seeds": 16, "tune_instances": 2, "steps": 10000, "eval_every": 250}

SPECTRA_SMALL = {
    "seeds": 8, "tune_seeds": 2, "margin": 1.1, "control": "sgd",
    "variants": {"kaon": {"optimizer": "kaon", "hparams": {"spectrum": "chaotic"}},
                 "freon": {"optimizer": "freon", "hparams": {"q": 0.5}}},
    "workloads": {"mlp_digits": {"knobs": {"width": 128}, "steps": 300, "eval_every": 300},
                  "cnn_digits": {"knobs": {"width": 32}, "steps": 150, "eval_every": 150}},
}
SPECTRA_FULL = {
    **SPECTRA_SMALL, "seeds": 16,
    "workloads": {"mlp_digits": {"knobs": {"width": 256}, "steps": 1000, "eval_every": 100},
                  "cnn_digits": {"knobs": {"width": 64}, "steps": 500, "eval_every": 100}},
}

CLAIMS = [
    Claim("freon_kaon_spectra", 14, "001 hyperparameter transfer",
          "Muon is Not That Special: Random or Inverted Spectra Work Just as Well […] we introduce Kaon, an absurd "
          "optimizer that replaces singular values with random noise. Despite lacking any coherent geometric "
          "structure, Kaon matches Muon's performance",
          "mlp_digits (width 128, 300 steps) and cnn_digits (width 32, 150 steps; conv filters as matrices). Arms: "
          "Muon; Kaon (Muon's momentum singular vectors, pseudo-random singular values from the chaotic map, the "
          "paper's matmul-only realisation); Freon at q = 0.5 (σ ↦ σ^{q−1}: the *inverted* spectrum, small "
          "directions get the largest steps); momentum SGD as the control. Each arm is tuned on its own lr grid "
          "(ratio 2, 5 points centred on its registry lr, auto-extended) on 2 tuning seeds and run on 8 evaluation "
          "seeds; biases and heads use the lab's AdamW defaults in every matrix arm. The test can fail both ways: "
          "a variant whose tuned loss is more than 10% off Muon's is refuted, and the SGD control must come out "
          "outside the same margin, otherwise the margin is too lax to mean anything.",
          {"small": SPECTRA_SMALL, "full": SPECTRA_FULL}, freon_kaon),
    Claim("frame_alignment", 22, "003 spectral dynamics",
          "Frame alignment ∥ sin Θ∥F during Muon training across configurations (d ∈ {10, 20, 50}, 10 seeds "
          "each). Misalignment remains < 0.1 post-transient.",
          "matrix_sensing with p = n = 10 (the seed does not give p for these runs; 10 keeps every d "
          "underdetermined), rank(W*) = 2, d ∈ {10, 20, 50} measurements, 1000 full-batch steps, cosine lr "
          "without warmup, Muon without weight decay; lr tuned per d (val/loss, 2 tuning instances × 2 seeds), "
          "8 evaluation instances per d. ‖sinΘ‖_F (our reading, Davis–Kahan/Yu–Wang–Samworth) between the top-k "
          "singular subspaces of W and of the full-batch gradient, k = rank(W*), left and right, the larger taken; "
          "evaluated every 25 steps; post-transient = the second half of training. It can fail: unrelated "
          "subspaces give √(k − k²/p) ≈ 1.26, and plain GD (tuned) and Muon's first half are reported beside it.",
          {"small": FRAME_SMALL, "full": FRAME_FULL}, frame_alignment_claim),
    Claim("sensing_large_instance", 23, "003 spectral dynamics",
          "Left: large instance (p=50, d=20); Muon stabilizes at ∥WMuon∥∗ ≈ 20.3 vs. CVXPY minimum 14.1 (1.44×, "
          "non-diminishing).",
          "matrix_sensing with p = n = 50, d = 20 measurements (underdetermined), rank(W*) = 2 with σ* in [1, 3] "
          "(the seed's rank and scale are not given, so its absolute norms are not comparable; ratios are), W₀ = "
          "1e-3·N(0, 1), 2000 full-batch steps at a constant lr (no warmup), Muon without weight decay. The lr is "
          "tuned (final val/loss) on separate instances with runs of *half* the length, so every evaluation run "
          "has fitted the measurements by mid-training at its tuned lr and its second half is continued "
          "training at the same lr. The seed shows one instance; here 8 instances, each with its CVXPY minimum "
          "(solved once per instance and timed). A ratio ≥ 1 is automatic for any interpolating W, so the primary "
          "test asks for a gap above 10%; 'non-diminishing' compares the ratio at the end with mid-training and "
          "fails if it fell by more than 5%. Plain GD (tuned the same way) is reported as a control.",
          {"small": LARGE_SMALL, "full": LARGE_FULL}, large_instance),
]
