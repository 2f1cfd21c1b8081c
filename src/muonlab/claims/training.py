"""Claims 4, 7, 8, 9, 11, 12, 13: training comparisons on the lab's small workloads.

* 4 ``spectral_power_stability`` (seed 002): ``spectral_power`` with p ∈ {0, 1/4, 1/2, 1} on a
  momentum (first-moment) vs an Adam (RMS-normalized) base, plus AdamW. *Stability* is read as
  LR robustness: the fraction of the LR grid whose final val/loss is within 25% of the arm's best
  (a diverged run is outside). Second part: p = 0 on the momentum base (Muon) against AdamW at
  their best LRs.
* 7 ``gpt_stable_rank`` (seed 003): tiny_gpt, Muon vs AdamW over an LR grid: final stable rank of
  the hidden matrices (SpectralProbe), width of the LR plateau, best-LR val/loss.
* 8 ``vit_reversal`` (seed 003): the same comparison on vit_digits; the claim is AdamW winning.
* 9 ``steps_to_target`` (seed 001): steps to a val/loss target, AdamW/Muon, both LR-swept
  (reuses claim 7's runs).
* 11 ``lr_transfer_width`` (seed 001): Muon's best LR at three widths of mlp_digits.
* 12 ``grokking`` (seed 004): epochs (full-batch steps) until modular_arith's val/acc ≥ 0.9.
* 13 ``imbalanced_minority`` (seed 004): minority-class recall early in training on
  imbalanced_digits, Muon vs AdamW and SGD at their best LRs.
"""

from __future__ import annotations

import math

import numpy as np

from .base import (INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim, ClaimResult, Context, best_lr, ci_verdict,
                   combine, diff_ci, final, first_step, fmt_ci, group, md_table, mean_ci, pyplot, ratio_ci,
                   rows_of, save_fig)
from ..lab.records import read_jsonl


def _good_fraction(items, metric: str, tol: float) -> dict[int, float]:
    """Per seed: fraction of the arm's LRs whose final metric is within ``tol`` of the arm's best median."""
    by_lr = group(items, lambda c: c.hparams["lr"])
    med = {lr: float(np.median([final(s, metric) for _, _, s in its])) for lr, its in by_lr.items()}
    best = min(med.values())
    out: dict[int, list[bool]] = {}
    for cfg, _, s in items:
        out.setdefault(cfg.seed, []).append(final(s, metric) <= (1 + tol) * best)
    return {sd: float(np.mean(v)) for sd, v in out.items()}


def spectral_power(ctx: Context) -> ClaimResult:
    c = ctx.cfg
    metric = "val/loss"
    frac: dict[tuple[str, float], dict[int, float]] = {}
    best_vals: dict[str, list[float]] = {}
    res = ctx.sweep("mlp_digits", ["adamw"], lrs=c["adamw_lrs"], knobs={"width": c["width"]})
    adamw_lr, adamw_its = best_lr(res, metric)["adamw"]
    for base in ("momentum", "adam"):
        for p in c["ps"]:
            # the non-matrix parameters (biases, head) use AdamW at AdamW's best lr in every arm
            res = ctx.sweep("mlp_digits", ["spectral_power"], lrs=c["lrs"], knobs={"width": c["width"]},
                            hparams={"p": p, "base": base}, aux={"lr": adamw_lr})
            frac[(base, p)] = _good_fraction(res, metric, c["tol"])
            if p == 0 and base == "momentum":
                lr, its = best_lr(res, metric)["spectral_power"]
                best_vals["p=0 momentum (Muon)"] = [final(s, metric) for _, _, s in its]
    best_vals["adamw"] = [final(s, metric) for _, _, s in adamw_its]
    seeds = ctx.seeds
    # (a) per (p, seed): adam-base minus momentum-base good-LR fraction, paired
    diffs = [frac[("adam", p)][sd] - frac[("momentum", p)][sd] for p in c["ps"] for sd in seeds]
    d_a = mean_ci(diffs)
    v_a = ci_verdict(d_a, ">", n=len(seeds))
    # (b) Muon is "not consistently better" than Adam: contradicted only if Muon's best is clearly lower.
    d_b = diff_ci(best_vals["p=0 momentum (Muon)"], best_vals["adamw"])
    v_b = NOT_SUPPORTED if ci_verdict(d_b, "<", n=len(seeds)) == SUPPORTED else SUPPORTED
    verdict = combine([v_a, v_b])
    rows = [[f"p={p:g}", fmt_ci(mean_ci(list(frac[("momentum", p)].values()))),
             fmt_ci(mean_ci(list(frac[("adam", p)].values())))] for p in c["ps"]]
    table = md_table(["exponent", "good-LR fraction, momentum base", "good-LR fraction, Adam base"], rows)
    table += [""] + md_table(["arm at best lr", "final val/loss"],
                             [[k, fmt_ci(mean_ci(v))] for k, v in best_vals.items()])
    why = (f"(a) Adam − momentum good-LR fraction over p and seeds = {fmt_ci(d_a)} → {v_a}; "
           f"(b) Muon − AdamW best val/loss = {fmt_ci(d_b)} → 'Muon not consistently better' {v_b}.")
    return ClaimResult(numbers={"good_fraction_diff_adam_minus_momentum": d_a, "muon_minus_adamw_val_loss": d_b},
                       table=table, plots=[], verdict=verdict, why=why,
                       rule=("(a) Stability = fraction of the LR grid whose final val/loss is within "
                             f"{c['tol']:.0%} of the "
                             "arm's best median (diverged = outside); supported when the 95% bootstrap CI of the "
                             "Adam-base − momentum-base fraction, paired over p and seed, is above 0. (b) supported "
                             "unless the CI of Muon − AdamW best-LR val/loss is entirely below 0. Both parts must "
                             "hold."))


def _stable_rank(run_dir) -> float:
    recs = read_jsonl(run_dir / "probe.jsonl")
    if not recs:
        return math.nan
    last = max(r["step"] for r in recs)
    vals = [r["weight"]["stable_rank"] for r in recs if r["step"] == last and r.get("weight")]
    return float(np.mean(vals)) if vals else math.nan


def _plateau(items, metric: str, tol: float) -> dict[int, int]:
    """Per seed: number of grid LRs whose final metric is within ``tol`` (relative) of that seed's best."""
    per: dict[int, list[float]] = {}
    for cfg, _, s in items:
        per.setdefault(cfg.seed, []).append(final(s, metric))
    return {sd: int(sum(v <= (1 + tol) * min(vs) for v in vs)) for sd, vs in per.items()}


def _vs_adamw(ctx: Context, workload: str, others: tuple[str, ...] = ("muon",), metric: str = "val/loss",
              **run) -> dict[str, list]:
    """AdamW LR-swept first; then each other optimizer LR-swept with its auxiliary AdamW groups
    (embeddings, head, gains) at AdamW's best lr, so the comparison is about the hidden matrices and
    neither arm's non-matrix parameters are left at an untuned lr."""
    c = ctx.cfg
    out = {"adamw": ctx.sweep(workload, ["adamw"], lrs=c["adamw_lrs"], knobs=c["knobs"], **run)}
    aux_lr = best_lr(out["adamw"], metric)["adamw"][0]
    from ..registry import get_spec

    for o in others:
        aux = {"lr": aux_lr} if get_spec(o).matrix else {}
        out[o] = ctx.sweep(workload, [o], lrs=c[f"{o}_lrs"], knobs=c["knobs"], aux=aux, **run)
    return out


def _gpt_runs(ctx: Context):
    return _vs_adamw(ctx, "tiny_gpt", probe_every=ctx.cfg["probe_every"])


def gpt_stable_rank(ctx: Context) -> ClaimResult:
    c = ctx.cfg
    metric = "val/loss"
    res = _gpt_runs(ctx)
    best = {o: best_lr(r, metric)[o] for o, r in res.items()}
    sr = {o: [_stable_rank(d) for _, d, _ in best[o][1]] for o in res}
    d_sr = diff_ci(sr["muon"], sr["adamw"])
    v_sr = ci_verdict(d_sr, ">", n=len(sr["muon"]))
    pl = {o: _plateau(res[o], metric, c["tol"]) for o in res}
    d_pl = diff_ci(list(pl["muon"].values()), list(pl["adamw"].values()))
    v_pl = ci_verdict(d_pl, ">", n=len(pl["muon"]))
    vl = {o: [final(s, metric) for _, _, s in best[o][1]] for o in res}
    d_vl = diff_ci(vl["muon"], vl["adamw"])
    v_vl = ci_verdict(d_vl, "<", n=len(vl["muon"]))
    verdict = combine([v_sr, v_pl, v_vl])
    rows = [[o, best[o][0], fmt_ci(mean_ci(sr[o])), fmt_ci(mean_ci(list(pl[o].values()))), fmt_ci(mean_ci(vl[o]))]
            for o in ("muon", "adamw")]
    table = md_table(["optimizer", "best lr", "final stable rank (mean over hidden matrices)",
                      f"LRs within {c['tol']:.0%} of best (of {len(c['muon_lrs'])})", "best-LR val/loss"], rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for o, r in res.items():
        by = group(r, lambda cf: cf.hparams["lr"])
        lrs = sorted(by)
        ax.plot(lrs, [np.median([final(s, metric) for _, _, s in by[lr]]) for lr in lrs], "o-", label=o)
    ax.set(xscale="log", xlabel="lr", ylabel="final val/loss (median over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    plots = [save_fig(fig, ctx, "gpt_lr_sweep")]
    why = (f"stable rank Muon − AdamW {fmt_ci(d_sr)} → {v_sr}; plateau width Muon − AdamW {fmt_ci(d_pl)} → {v_pl}; "
           f"val/loss Muon − AdamW {fmt_ci(d_vl)} → {v_vl}.")
    return ClaimResult(numbers={"stable_rank_diff": d_sr, "plateau_diff": d_pl, "val_loss_diff": d_vl},
                       table=table, plots=plots, verdict=verdict, why=why,
                       rule=("Three parts, all must hold (any part's CI on the wrong side → not supported): "
                             "(a) 95% bootstrap CI of Muon − AdamW final mean stable rank of the hidden matrices at "
                             "the best lr above 0; (b) CI of Muon − AdamW per-seed count of grid LRs within "
                             f"{c['tol']:.0%} of that seed's best val/loss above 0 (both grids: same size and ratio "
                             "2); "
                             "(c) CI of Muon − AdamW best-LR val/loss below 0."))


def steps_to_target(ctx: Context) -> ClaimResult:
    metric = "val/loss"
    res = _gpt_runs(ctx)
    best = {o: best_lr(r, metric)[o] for o, r in res.items()}
    target = max(final(s, metric) for o in best for _, _, s in best[o][1])
    steps = {o: [first_step(rows_of(d), metric, target) for _, d, _ in best[o][1]] for o in best}
    if any(v is None for vs in steps.values() for v in vs) or not math.isfinite(target):
        return ClaimResult({"target": target, "steps": steps}, [], [], "", INCONCLUSIVE,
                           "not every seed reached the target")
    r = ratio_ci(steps["adamw"], steps["muon"])
    verdict = ci_verdict(r, ">", n=len(steps["muon"]), threshold=1.0)
    rows = [[o, best[o][0], fmt_ci(mean_ci(steps[o]))] for o in ("muon", "adamw")]
    table = md_table(["optimizer", "best lr", f"steps to val/loss ≤ {target:.4g}"], rows)
    why = f"AdamW/Muon steps-to-target = {fmt_ci(r)} (seed 001: ≈1.4× at 190M–1.4B)."
    return ClaimResult(numbers={"ratio_adamw_over_muon": r, "target": target, "steps": steps}, table=table,
                       plots=[], verdict=verdict, why=why,
                       rule=("Both optimizers LR-swept (grid ratio 2); each at its best lr (median final val/loss); "
                             "target = the worst final val/loss among those seeds, so every seed reaches it; "
                             "supported when the 95% bootstrap CI of mean steps AdamW/Muon is above 1, not supported "
                             "when below 1. The 1.4× magnitude is compared, not voted."))


def vit_reversal(ctx: Context) -> ClaimResult:
    metric = "val/loss"
    best = {o: best_lr(r, metric)[o] for o, r in _vs_adamw(ctx, "vit_digits").items()}
    vl = {o: [final(s, metric) for _, _, s in best[o][1]] for o in best}
    acc = {o: [s.get("val/acc", math.nan) for _, _, s in best[o][1]] for o in best}
    d = diff_ci(vl["muon"], vl["adamw"])
    verdict = ci_verdict(d, ">", n=len(vl["muon"]))
    table = md_table(["optimizer", "best lr", "val/loss", "val/acc"],
                     [[o, best[o][0], fmt_ci(mean_ci(vl[o])), fmt_ci(mean_ci(acc[o]))] for o in best])
    return ClaimResult(numbers={"val_loss_muon_minus_adamw": d}, table=table, plots=[], verdict=verdict,
                       why=f"Muon − AdamW best-LR val/loss = {fmt_ci(d)} (the reversal predicts > 0).",
                       rule=("Each optimizer at its best lr (median final val/loss) of its grid; supported when "
                             "the 95% "
                             "bootstrap CI of Muon − AdamW val/loss is above 0 (AdamW better), not supported when "
                             "below."))


def lr_transfer(ctx: Context) -> ClaimResult:
    c = ctx.cfg
    metric = "val/loss"
    widths = list(c["widths"])
    best_per_seed: dict[int, dict[int, float]] = {}
    med_best = {}
    for w in widths:
        res = ctx.sweep("mlp_digits", ["muon"], lrs=c["lrs"], knobs={"width": w})
        med_best[w] = best_lr(res, metric)["muon"][0]
        for sd, its in group(res, lambda cf: cf.seed).items():
            lr = min(its, key=lambda it: (final(it[2], metric), it[0].hparams["lr"]))[0].hparams["lr"]
            best_per_seed.setdefault(sd, {})[w] = lr
    seeds = sorted(best_per_seed)
    x = np.log2(widths)
    slopes = [float(np.polyfit(x, np.log2([best_per_seed[sd][w] for w in widths]), 1)[0]) for sd in seeds]
    ci = mean_ci(slopes)
    _, lo, hi = ci
    tol = c["tol"]
    at_edge = any(best_per_seed[sd][w] in (min(c["lrs"]), max(c["lrs"])) for sd in seeds for w in widths)
    if len(seeds) < 3 or not math.isfinite(lo) or at_edge:
        verdict = INCONCLUSIVE  # an optimum on the grid's edge is not located
    else:
        inside, outside = -tol <= lo and hi <= tol, lo > tol or hi < -tol
        verdict = SUPPORTED if inside else NOT_SUPPORTED if outside else INCONCLUSIVE
    table = md_table(["width", "best lr (median over seeds)", "per-seed best lrs"],
                     [[w, med_best[w], ", ".join(f"{best_per_seed[sd][w]:g}" for sd in seeds)] for w in widths])
    why = (f"slope of log2(best lr) on log2(width) = {fmt_ci(ci)} against ±{tol}. Only the LR part is tested; "
           "the 1/width weight-decay part is not run at this budget.")
    return ClaimResult(numbers={"slope": ci, "best_lr": med_best}, table=table, plots=[], verdict=verdict, why=why,
                       rule=(f"Per seed, OLS slope of log2(best lr) on log2(width); transfer supported when the 95% "
                             f"bootstrap CI of the slope lies within ±{tol} (best lr drifts < 2^{tol}× per doubling), "
                             f"not supported when it lies entirely outside, inconclusive otherwise or when any best lr "
                             "sits on the "
                             f"grid's edge. Muon's update is "
                             "spectrally normalized (shape-scaled), which is its µP-style LR scaling."))


def grokking(ctx: Context) -> ClaimResult:
    c = ctx.cfg
    metric, target = "val/acc", c["target"]
    steps = {}
    finals = {}
    for o in ("muon", "adamw"):
        aux = {"lr": c["adamw_lr"], "weight_decay": c["adamw_wd"]} if o == "muon" else {}  # embeddings, head
        res = ctx.sweep("modular_arith", [o], hparams={"lr": c[f"{o}_lr"], "weight_decay": c[f"{o}_wd"]},
                        knobs=c["knobs"], warmup=0.0, schedule="constant", aux=aux)
        steps[o] = [first_step(rows_of(d), metric, target) for _, d, _ in res]
        finals[o] = [s.get(metric, math.nan) for _, _, s in res]
    n_steps = int(c["steps"])
    # A seed that never generalizes is censored at the budget: its epochs count as n_steps (a lower bound).
    cens = {o: [v if v is not None else n_steps for v in vs] for o, vs in steps.items()}
    reached = {o: sum(v is not None for v in vs) for o, vs in steps.items()}
    d = diff_ci(cens["muon"], cens["adamw"])
    if reached["muon"] == 0 and reached["adamw"] == 0:
        verdict = INCONCLUSIVE
        why = f"no seed of either optimizer reached val/acc ≥ {target} within {n_steps} epochs."
    else:
        verdict = ci_verdict(d, "<", n=len(cens["muon"]))
        if verdict == NOT_SUPPORTED and reached["adamw"] < len(cens["adamw"]):
            verdict = INCONCLUSIVE  # AdamW's censored epochs are only lower bounds
        why = f"Muon − AdamW epochs to val/acc ≥ {target} (censored at {n_steps}) = {fmt_ci(d)}."
    table = md_table(["optimizer", "epochs to generalize (per seed; — = not within budget)", "final val/acc"],
                     [[o, ", ".join(str(v) if v is not None else "—" for v in steps[o]), fmt_ci(mean_ci(finals[o]))]
                      for o in steps])
    return ClaimResult(numbers={"epochs": steps, "diff_muon_minus_adamw": d}, table=table, plots=[],
                       verdict=verdict, why=why,
                       rule=(f"Epochs = full-batch steps until val/acc ≥ {target}; seeds that never get there are "
                             f"censored at the budget. Supported when the 95% bootstrap CI of Muon − AdamW epochs is "
                             "below 0; not supported when above 0 with every AdamW seed uncensored; else "
                             "inconclusive."))


def imbalanced(ctx: Context) -> ClaimResult:
    c = ctx.cfg
    metric = "val/balanced_acc"
    early: dict[str, list[float]] = {}
    finals: dict[str, list[float]] = {}
    curves = {}
    runs = _vs_adamw(ctx, "imbalanced_digits", ("muon", "sgd"), metric)
    for o in ("muon", "adamw", "sgd"):
        lr, its = best_lr(runs[o], metric)[o]
        horizon = c["early_frac"] * int(c["steps"])
        early[o], finals[o], cs = [], [], []
        for _, d, s in its:
            rows = [r for r in rows_of(d) if "val/minority_acc" in r]
            window = [r["val/minority_acc"] for r in rows if 0 < r["step"] <= horizon] or \
                [r["val/minority_acc"] for r in rows if r["step"] > 0][:1]  # at least the first evaluation
            early[o].append(float(np.mean(window)))
            finals[o].append(s["val/minority_acc"])
            cs.append([(r["step"], r["val/minority_acc"]) for r in rows])
        curves[o] = (lr, cs)
    d_adam = diff_ci(early["muon"], early["adamw"])
    d_sgd = diff_ci(early["muon"], early["sgd"])
    v = [ci_verdict(d_adam, ">", n=len(early["muon"])), ci_verdict(d_sgd, ">", n=len(early["muon"]))]
    verdict = combine(v)
    table = md_table(["optimizer", "best lr", f"minority recall, mean over first {c['early_frac']:.0%} of steps",
                      "final minority recall"],
                     [[o, curves[o][0], fmt_ci(mean_ci(early[o])), fmt_ci(mean_ci(finals[o]))] for o in early])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for o, (lr, cs) in curves.items():
        st = [s for s, _ in cs[0]]
        ax.plot(st, np.mean([[v for _, v in cc] for cc in cs], axis=0), label=f"{o} lr={lr:g}")
    ax.set(xlabel="step", ylabel="minority-class recall (val)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    plots = [save_fig(fig, ctx, "imbalanced_minority")]
    why = f"early minority recall Muon − AdamW = {fmt_ci(d_adam)} → {v[0]}; Muon − SGD = {fmt_ci(d_sgd)} → {v[1]}."
    return ClaimResult(numbers={"early_minority_muon_minus_adamw": d_adam, "early_minority_muon_minus_sgd": d_sgd},
                       table=table, plots=plots, verdict=verdict, why=why,
                       rule=("Each optimizer at its best lr (median final balanced accuracy) of its grid; 'learns "
                             "minority classes earlier' = mean validation recall of the minority classes over the "
                             f"evaluations in the first {c['early_frac']:.0%} of training. Supported when the 95% "
                             "bootstrap "
                             "CI of Muon − AdamW and of Muon − SGD are both above 0; any below 0 → not supported."))


GPT_SMALL = {"seeds": 3, "steps": 200, "knobs": {"width": 64, "depth": 2, "batch_size": 16}, "probe_every": 50,
             "muon_lrs": [0.005, 0.01, 0.02, 0.04, 0.08], "adamw_lrs": [0.0005, 0.001, 0.002, 0.004, 0.008],
             "tol": 0.02}
GPT_FULL = {"seeds": 3, "steps": 3000, "knobs": {"width": 256, "depth": 6, "batch_size": 64}, "probe_every": 250,
            "muon_lrs": [0.0025, 0.005, 0.01, 0.02, 0.04, 0.08], "adamw_lrs": [2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3],
            "tol": 0.02}

CLAIMS = [
    Claim("spectral_power_stability", 4, "002 spectral power",
          "we find that RMS-normalized updates yield more stable optimization than first-moment updates. Moreover, "
          "while spectral compression provides strong stabilization benefits under first-moment updates, the Muon "
          "update (p = 0) does not consistently outperform Adam.",
          "mlp_digits (width 128), 200 steps; spectral_power with p ∈ {0, 1/4, 1/2, 1} × base ∈ {momentum, adam}, lr ∈ "
          "{0.003, 0.01, 0.03, 0.1} (biases and head: AdamW at AdamW's best lr); AdamW lr ∈ {3e-4, 1e-3, 3e-3, 1e-2}; "
          "3 seeds.",
          {"small": {"seeds": 3, "steps": 200, "width": 128, "ps": [0.0, 0.25, 0.5, 1.0],
                     "lrs": [0.003, 0.01, 0.03, 0.1],
                     "adamw_lrs": [3e-4, 1e-3, 3e-3, 1e-2], "tol": 0.25},
           "full": {"seeds": 5, "steps": 2000, "width": 512, "ps": [0.0, 0.25, 0.5, 1.0],
                    "lrs": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3], "adamw_lrs": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
                    "tol": 0.25}},
          spectral_power),
    Claim("gpt_stable_rank", 7, "003 spectral dynamics",
          "In small NanoGPT pretraining, Muon preserves stable rank, has a broad learning-rate plateau, and improves "
          "validation loss relative to AdamW",
          "tiny_gpt (width 64, depth 2, batch 16, context 64, embedded corpus), 200 steps, Muon lr ∈ {0.005 … 0.08} "
          "and "
          "AdamW lr ∈ {0.0005 … 0.008} (5 points, ratio 2); Muon's AdamW groups (embeddings, head, gains) use AdamW's "
          "best lr; 3 seeds, SpectralProbe every 50 steps: stable rank is read at the last probe (step 150).",
          {"small": GPT_SMALL, "full": GPT_FULL}, gpt_stable_rank),
    Claim("vit_reversal", 8, "003 spectral dynamics",
          "in a matched small-ViT control, the ranking reverses.",
          "vit_digits (width 32, depth 2; 8×8 digits, not CIFAR-10), 300 steps, Muon lr ∈ {0.005, 0.01, 0.02, 0.04}, "
          "AdamW lr ∈ {0.001, 0.002, 0.004, 0.008}; Muon's AdamW groups use AdamW's best lr; 3 seeds.",
          {"small": {"seeds": 3, "steps": 300, "knobs": {"width": 32, "depth": 2},
                     "muon_lrs": [0.005, 0.01, 0.02, 0.04], "adamw_lrs": [0.001, 0.002, 0.004, 0.008]},
           "full": {"seeds": 5, "steps": 3000, "knobs": {"width": 128, "depth": 6},
                    "muon_lrs": [0.0025, 0.005, 0.01, 0.02, 0.04, 0.08],
                    "adamw_lrs": [2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3]}}, vit_reversal),
    Claim("steps_to_target", 9, "001 hyperparameter transfer",
          "Applying these scaling rules, we show Muon, SOAP and Shampoo consistently achieve near 1.4× speedup over "
          "AdamW for training Llama-architecture language models of sizes ranging from 190M to 1.4B",
          "claim 7's tiny_gpt runs (both optimizers LR-swept, 3 seeds): steps to a shared val/loss target at each "
          "optimizer's best lr.", {"small": GPT_SMALL, "full": GPT_FULL}, steps_to_target),
    Claim("lr_transfer_width", 11, "001 hyperparameter transfer",
          "We find that scaling the learning rate according to µP improves transfer […] For compute-optimal scaling, "
          "we find scaling independent weight decay as 1/width is nearly optimal across optimizers.",
          "mlp_digits at widths {64, 128, 256}, Muon (spectrally normalized, shape-scaled update) lr ∈ "
          "{0.005, 0.01, 0.02, 0.04, 0.08}, 200 steps, 3 seeds. The 1/width weight-decay part is not run at the "
          "small budget.",
          {"small": {"seeds": 3, "steps": 200, "widths": [64, 128, 256], "lrs": [0.005, 0.01, 0.02, 0.04, 0.08],
                     "tol": 0.5},
           "full": {"seeds": 5, "steps": 2000, "widths": [128, 256, 512, 1024],
                    "lrs": [0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16], "tol": 0.5}}, lr_transfer),
    Claim("grokking", 12, "004 awesome-list",
          "Muon Optimizer Accelerates Grokking […] Finds Muon significantly accelerates the transition from "
          "memorization to generalization compared to AdamW, reducing mean grokking epochs substantially",
          "modular_arith ((a+b) mod 31, 70% of pairs for training, embed 64, width 128), full batch, constant lr, 3000 "
          "epochs; "
          "Muon lr 0.02, weight decay 1.0 (embeddings and head: AdamW lr 3e-3, weight decay 1.0); AdamW lr 3e-3, "
          "weight decay 1.0; one hand-set configuration per optimizer (no LR/WD sweep at this budget; with Muon weight "
          "decay 0.1 no run generalized within 3000 epochs); 3 seeds; epochs to val/acc ≥ 0.9.",
          {"small": {"seeds": 3, "steps": 3000, "knobs": {"modulus": 31, "train_frac": 0.7}, "target": 0.9,
                     "muon_lr": 0.02, "muon_wd": 1.0, "adamw_lr": 3e-3, "adamw_wd": 1.0},
           "full": {"seeds": 5, "steps": 20000, "knobs": {"modulus": 97, "train_frac": 0.5}, "target": 0.9,
                    "muon_lr": 0.02, "muon_wd": 1.0, "adamw_lr": 3e-3, "adamw_wd": 1.0}}, grokking),
    Claim("imbalanced_minority", 13, "004 awesome-list",
          "Demonstrates that Muon/Shampoo learn all principal components at similar rates, unlike GD/Adam which "
          "prioritize dominant (majority-class) features first. On imbalanced datasets, Muon achieved 5%+ higher "
          "balanced accuracy by learning minority-class features earlier in training.",
          "imbalanced_digits (classes 5–9 keep 10% of their images; MLP width 128), 200 steps, batch 128; Muon lr ∈ "
          "{0.01, 0.02, 0.05} (its head at AdamW's best lr), AdamW lr ∈ {1e-3, 3e-3, 1e-2}, SGD (momentum 0.9) lr ∈ "
          "{0.03, 0.1, 0.3}; 3 seeds; "
          "minority recall over the first 30% of steps.",
          {"small": {"seeds": 3, "steps": 200, "knobs": {"width": 128}, "early_frac": 0.3,
                     "muon_lrs": [0.01, 0.02, 0.05], "adamw_lrs": [1e-3, 3e-3, 1e-2], "sgd_lrs": [0.03, 0.1, 0.3]},
           "full": {"seeds": 5, "steps": 1000, "knobs": {"width": 512, "minority_frac": 0.05}, "early_frac": 0.3,
                    "muon_lrs": [0.005, 0.01, 0.02, 0.05, 0.1], "adamw_lrs": [3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
                    "sgd_lrs": [0.01, 0.03, 0.1, 0.3, 1.0]}}, imbalanced),
]
