"""Plots for reports: one PNG per function, drawn from :mod:`.stats` tables.

``matplotlib`` is imported inside the functions only (through :func:`_pyplot`, with the
file-only Agg backend), so importing muonlab never needs it. Each config keeps one colour in
every plot of a report (:func:`colors`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .stats import AxisRow, Curve, Sensitivity, TargetRow, lower_is_better


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_curves(cs: Sequence[Curve], metric: str, path: str | Path, title: str = "",
                colors: dict[str, str] | None = None) -> Path:
    """Two panels, ``metric`` against step and against training seconds: mean ± std over seeds."""
    plt = _pyplot()
    colors = colors or colors(c.label for c in cs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for i, c in enumerate(cs):
        if not c.steps:
            continue
        mean, std = np.array(c.mean), np.array(c.std)
        for ax, x in zip(axes, (c.steps, c.train_s)):
            ax.plot(x, mean, color=colors[c.label], label=f"{c.label} (lr {c.lr:.3g}, {c.seeds} seeds)")
            ax.fill_between(x, mean - std, mean + std, color=colors[c.label], alpha=0.25, linewidth=0)
    # Leave out the evaluation at step 0 (the init loss, far above the rest) when choosing the
    # y range, so the differences that matter are visible; the bands stay inside it.
    finite = [m for c in cs for m in c.mean[min(1, len(c.mean) - 1):] if math.isfinite(m)]
    tops = [m + s for c in cs for m, s in zip(c.mean[1:], c.std[1:]) if math.isfinite(m + s)]
    bottoms = [m - s for c in cs for m, s in zip(c.mean[1:], c.std[1:]) if math.isfinite(m - s)]
    if finite:
        lo, hi = min(finite + bottoms), max(finite + tops)
        pad = 0.05 * (hi - lo or abs(hi) or 1.0)
        axes[0].set_ylim(lo - pad, hi + pad)
    _maybe_log_y(axes[0], finite)
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("training time (s, evaluation excluded)")
    axes[0].set_ylabel(metric)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title or f"{metric}: mean ± std over seeds, each optimizer at its best lr")
    fig.tight_layout()
    return _save(fig, path)


def plot_lr_sensitivity(sens: Sequence[Sensitivity], metric: str, path: str | Path, title: str = "",
                        colors: dict[str, str] | None = None) -> Path:
    """Final ``metric`` against lr (log axis): median over seeds, bars from min to max; × = diverged."""
    plt = _pyplot()
    colors = colors or colors(s.label for s in sens)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    finite = [v for s in sens for v in s.median if math.isfinite(v)]
    top = max(finite) if finite else 1.0
    for i, s in enumerate(sens):
        med, lo, hi = (np.array(v, dtype=float) for v in (s.median, s.low, s.high))
        ok = np.isfinite(med)
        x, med_ok = np.array(s.lrs)[ok], med[ok]
        # a diverged seed has no finite spread to draw: clip its bar at the median
        lo_ok = np.where(np.isfinite(lo[ok]), lo[ok], med_ok)
        hi_ok = np.where(np.isfinite(hi[ok]), hi[ok], med_ok)
        ax.errorbar(x, med_ok, yerr=[med_ok - lo_ok, hi_ok - med_ok], marker="o", capsize=3,
                    color=colors[s.label], label=s.label)
        if (~ok).any():
            ax.scatter(np.array(s.lrs)[~ok], [top] * int((~ok).sum()), marker="x", s=60, color=colors[s.label])
    ax.set_xscale("log")
    _maybe_log_y(ax, finite)
    ax.set_xlabel("learning rate (the method's groups)")
    ax.set_ylabel(f"final {metric}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title or "LR sensitivity: median over seeds, bars min–max, × diverged")
    fig.tight_layout()
    return _save(fig, path)


def plot_steps_to_target(rows: Sequence[TargetRow], metric: str, path: str | Path,
                         colors: dict[str, str] | None = None) -> Path:
    """Steps-to-target per config: each seed as a dot, the mean with its 95% bootstrap CI."""
    plt = _pyplot()
    colors = colors or colors(r.label for r in rows)
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.6))
    for i, r in enumerate(rows):
        got = [s for s in r.steps if s is not None]
        ax.scatter(got, [i] * len(got), color=colors[r.label], alpha=0.6, zorder=3)
        if math.isfinite(r.mean):
            lo, hi = r.ci if math.isfinite(r.ci[0]) else (r.mean, r.mean)
            ax.errorbar([r.mean], [i], xerr=[[r.mean - lo], [hi - r.mean]], fmt="D", color="k", capsize=4)
        if r.reached < len(r.steps):
            ax.annotate(f"{len(r.steps) - r.reached} seed(s) never reached", (0, i), fontsize=7,
                        xytext=(4, 6), textcoords="offset points")
    ax.set_yticks(range(len(rows)), [r.label for r in rows])
    target = rows[0].target if rows else math.nan
    ax.set_xlabel(f"steps until {metric} {'≤' if lower_is_better(metric) else '≥'} {target:.4g}")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3, axis="x")
    ax.set_title("steps to target: seeds (dots), mean and 95% bootstrap CI (diamond)")
    fig.tight_layout()
    return _save(fig, path)


def plot_axis(rows: Sequence[AxisRow], metric: str, path: str | Path) -> Path:
    """Best lr and best median metric against a numeric setting (LR transfer across width)."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for i, r in enumerate(rows):
        a.plot(r.values, r.best_lr, marker="o", color=f"C{i}", label=r.label)
        b.plot(r.values, r.median, marker="o", color=f"C{i}", label=r.label)
    key = rows[0].key if rows else ""
    a.set(xscale="log", yscale="log", xlabel=key, ylabel="best lr (median over seeds)")
    b.set(xscale="log", xlabel=key, ylabel=f"final {metric} at the best lr")
    for ax in (a, b):
        ax.grid(alpha=0.3, which="both")
    a.legend(fontsize=8)
    fig.suptitle(f"against {key}: a flat best-lr line means the lr transfers")
    fig.tight_layout()
    return _save(fig, path)


def plot_diagnostics(series: dict[str, dict[str, tuple[list[int], list[float]]]], path: str | Path) -> Path:
    """One panel per probe metric family, one line per config (averaged over params and seeds)."""
    plt = _pyplot()
    families = sorted({k for d in series.values() for k in d})
    cols = min(3, len(families))
    nrows = math.ceil(len(families) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    for j, fam in enumerate(families):
        ax = axes[j // cols][j % cols]
        for i, (lab, d) in enumerate(series.items()):
            if fam in d:
                ax.plot(*d[fam], color=f"C{i}", label=lab)
        ax.set_title(fam, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for j in range(len(families), nrows * cols):
        axes[j // cols][j % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("spectral diagnostics over training (mean over parameters and seeds)")
    fig.tight_layout()
    return _save(fig, path)


def colors(labels: Iterable[str]) -> dict[str, str]:
    """One colour per label, by sorted label, so a config has the same colour in every plot."""
    return {lab: f"C{i % 10}" for i, lab in enumerate(sorted(set(labels)))}


def _maybe_log_y(ax, values: Sequence[float]) -> None:
    """Log y axis when the values are positive and span more than two decades (e.g. a loss
    converging to 1e-12 in matrix sensing), where a linear axis would hide everything."""
    vals = [v for v in values if math.isfinite(v)]
    if vals and min(vals) > 0 and max(vals) / min(vals) > 100:
        ax.set_yscale("log")
        ax.autoscale(axis="y")


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
