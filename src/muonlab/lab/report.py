"""Reports: the runs under a directory → report.md with PNG plots, and a printed summary.

:func:`write_report` is the only function here that does I/O; the tables and statistics are pure
functions in :mod:`.stats` and the figures come from :mod:`.plots`. The report states its
significance rule (:data:`muonlab.lab.stats.SIGNIFICANCE_RULE`) next to every comparison.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from . import plots as plotting
from .records import Run, load_runs, write_atomic
from .stats import (SIGNIFICANCE_RULE, BestLR, auto_target, axis_table, best_lr_table, by_config, comparisons,
                    curves, diagnostics_series, headline_metric, lower_is_better, lr_sensitivity,
                    numeric_axes, target_table)


def _num(x: float, fmt: str = ".4g") -> str:
    return "diverged" if math.isinf(x) else ("n/a" if math.isnan(x) else format(x, fmt))


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def write_report(root: str | Path, out_dir: str | Path | None = None, *, metric: str | None = None,
                 target: float | dict[str, float] | None = None, baseline: str | None = None,
                 plots: bool = True) -> tuple[Path, str]:
    """Read every run under ``root`` and write ``report.md`` with PNG plots into ``out_dir``.

    Args:
        root: a run directory tree (from ``muonlab run``/``sweep``/``demo``).
        out_dir: where the report goes (default ``root/report``).
        metric: the metric to rank and plot (default: the workload's headline metric).
        target: steps-to-target threshold, one value for every workload or ``{workload: value}``;
            default :func:`muonlab.lab.stats.auto_target`.
        baseline: optimizer the others are compared with (default ``adamw`` when present, else
            the first optimizer by name).
        plots: draw the PNGs (default True).

    Returns:
        ``(path of report.md, printed summary text)``.
    """
    from ..routing import AUX_ALGORITHM

    runs = load_runs(root)
    finished = [r for r in runs if r.finished]
    if not finished:
        raise ValueError(f"no finished runs under {str(root)!r} ({len(runs)} unfinished)")
    out = Path(out_dir) if out_dir is not None else Path(root) / "report"
    metric = metric or headline_metric(finished)
    present = {m for r in finished for row in r.rows for m in row}
    if metric not in present:
        raise ValueError(f"metric {metric!r} is not in the records; available: {', '.join(sorted(present))}")
    best = best_lr_table(finished, metric)
    optimizers = sorted({r.optimizer for r in best})
    if baseline is not None and baseline not in optimizers:
        raise ValueError(f"baseline {baseline!r} has no finished runs; available: {', '.join(optimizers)}")
    baseline = baseline or (AUX_ALGORITHM if AUX_ALGORITHM in optimizers else optimizers[0])
    workloads = sorted({r.workload for r in best})
    if isinstance(target, dict) and set(target) - set(workloads):
        raise ValueError(f"target for unknown workload(s) {sorted(set(target) - set(workloads))}; "
                         f"the runs have: {', '.join(workloads)}")
    direction = "lower" if lower_is_better(metric) else "higher"

    md = ["# muonlab report", "",
          f"{len(finished)} finished run(s) under `{root}`"
          + (f" ({len(runs) - len(finished)} unfinished, left out)" if len(runs) > len(finished) else "")
          + f". Metric: `{metric}` ({direction} is better), taken at the last evaluation.", ""]
    summary = [f"muonlab report: {len(finished)} runs, metric {metric} ({direction} is better)"]
    for w in workloads:
        given = target.get(w) if isinstance(target, dict) else target
        rows = [r for r in best if r.workload == w]
        colors = plotting.colors(r.label for r in rows)
        md_w, sum_w = _best_lr_section(w, rows, metric)
        md += md_w + (_figures(w, finished, rows, metric, out, colors) if plots else [])
        tgt = given if given is not None else auto_target(best, w, metric)
        md_t, sum_t = _target_section(w, finished, rows, metric, tgt, given is None, baseline,
                                      out if plots else None, colors)
        md += md_t
        summary += sum_w + sum_t
        diag = diagnostics_series(finished, rows)
        if diag and plots:
            plotting.plot_diagnostics(diag, out / f"{w}_diagnostics.png")
            md += ["### Spectral diagnostics", "", f"![{w} diagnostics]({w}_diagnostics.png)", ""]
        md += _activation_section(w, finished, rows, out if plots else None)
    md += ["## Provenance", ""] + _provenance_lines(finished)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.md"
    write_atomic(path, "\n".join(md) + "\n")
    summary.append(f"\nreport: {path}")
    return path, "\n".join(summary)


def _best_lr_section(w: str, rows: Sequence[BestLR], metric: str) -> tuple[list[str], list[str]]:
    """The best-LR table of workload ``w``: Markdown lines and summary lines."""
    md = [f"## {w}", "", "### Best learning rate (by the median over seeds)", ""]
    md += _table(["config", "best lr", f"{metric} median", "min – max", "seeds", "diverged",
                  "train s (median)", "lrs tried"],
                 [[f"`{r.label}`", f"{r.lr:.3g}" + (" (edge of grid)" if r.at_edge else ""),
                   _num(r.median), f"{_num(r.low)} – {_num(r.high)}", str(r.seeds), str(r.diverged),
                   _num(r.train_s, ".1f"), ", ".join(f"{x:.3g}" for x in r.lrs)] for r in rows])
    summary = [f"\n{w}: best lr by median {metric} over seeds"]
    summary += [f"  {r.label:28s} lr={r.lr:<8.3g} {metric}={_num(r.median)} "
                f"[{_num(r.low)}, {_num(r.high)}] seeds={r.seeds}" for r in rows]
    return md, summary


def _figures(w: str, runs: Sequence[Run], rows: Sequence[BestLR], metric: str, out: Path,
             colors: dict[str, str]) -> list[str]:
    """Draw the curves, LR-sensitivity and axis plots of workload ``w``; their Markdown lines."""
    plotting.plot_curves(curves(runs, metric, rows), metric, out / f"{w}_curves.png", f"{w}: {metric}", colors)
    md = ["", "### Training curves", "", f"![{w} curves]({w}_curves.png)"]
    sens = [s for s in lr_sensitivity(runs, metric) if s.workload == w]
    if any(len(s.lrs) > 1 for s in sens):
        plotting.plot_lr_sensitivity(sens, metric, out / f"{w}_lr.png", colors=colors)
        md += ["", "### LR sensitivity", "", f"![{w} lr sensitivity]({w}_lr.png)"]
    for key in numeric_axes(rows, w):
        plotting.plot_axis(axis_table(rows, key), metric, out / f"{w}_{key}.png")
        md += ["", f"### Against `{key}`", "", f"![{w} {key}]({w}_{key}.png)"]
    return md


def _target_section(w: str, runs: Sequence[Run], rows: Sequence[BestLR], metric: str, target: float,
                    auto: bool, baseline: str, out: Path | None,
                    colors: dict[str, str]) -> tuple[list[str], list[str]]:
    """Steps-to-target table, comparisons with the baseline and the rule; plot when ``out``."""
    trows = target_table(runs, metric, rows, {w: target})
    sign = "≤" if lower_is_better(metric) else "≥"
    md = ["", f"### Steps to target: `{metric}` {sign} {_num(target)}"
          + (" (auto: the worst final value over the seeds of the best-LR configs, a level every "
             "one of them reaches)" if auto else ""), ""]
    md += _table(["config", "steps per seed", "reached", "mean [95% bootstrap CI]", "resolution"],
                 [[f"`{t.label}`", ", ".join("—" if s is None else str(s) for s in t.steps),
                   f"{t.reached}/{len(t.steps)}",
                   f"{_num(t.mean, '.0f')} [{_num(t.ci[0], '.0f')}, {_num(t.ci[1], '.0f')}]",
                   f"{t.eval_every} steps"] for t in trows])
    if out is not None and any(t.reached for t in trows):
        plotting.plot_steps_to_target(trows, metric, out / f"{w}_steps.png", colors)
        md += ["", f"![{w} steps to target]({w}_steps.png)"]
    summary = []
    comps = comparisons(trows, rows, baseline)
    if comps:
        md += ["", f"Against the baseline `{baseline}`:", ""]
        md += _table(["config", "baseline", "Δ mean steps", "95% CI of Δ", "Welch p", "verdict"],
                     [[f"`{c.label}`", f"`{c.baseline}`", _num(c.diff, "+.0f"),
                       f"[{_num(c.ci[0], '+.0f')}, {_num(c.ci[1], '+.0f')}]",
                       "n/a" if c.p_welch is None else f"{c.p_welch:.3g}", c.verdict] for c in comps])
        summary.append(f"  steps to {metric} {sign} {_num(target)} vs {baseline}:")
        summary += [f"    {c.label:26s} Δ={_num(c.diff, '+.0f')} steps, CI [{_num(c.ci[0], '+.0f')}, "
                    f"{_num(c.ci[1], '+.0f')}]: {c.verdict}" for c in comps]
    md += ["", f"Significance rule: {SIGNIFICANCE_RULE}", ""]
    return md, summary


#: Activation-spectrum statistics of the probe's layer records shown in the report (Spectral Lens).
ACTIVATION_STATS = ("rankme", "alpha_tail", "alpha_head", "top10")


def _activation_section(w: str, runs: Sequence[Run], rows: Sequence[BestLR], out: Path | None) -> list[str]:
    """Table (and plot when ``out``) of the probe's activation-spectrum records of workload ``w``
    (``SpectralProbe(..., activations=True)``): per best-LR config and layer, the statistics at
    the last sampled step, averaged over seeds; nothing when no run has such records."""
    groups = by_config(runs)
    table, series = [], {}
    for row in rows:
        # layer -> step -> the records' activation dicts (one per seed)
        acc: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for run in groups.get(row.config, {}).get(row.lr, []):
            for rec in run.probe:
                if isinstance(rec.get("activation"), dict) and "layer" in rec and "step" in rec:
                    acc[str(rec["layer"])][int(rec["step"])].append(rec["activation"])
        if not acc:
            continue

        def mean(recs: list[dict], key: str) -> float:
            vals = [r[key] for r in recs if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            return sum(vals) / len(vals) if vals else math.nan

        for layer in sorted(acc):
            last = max(acc[layer])
            table.append([f"`{row.label}`", f"`{layer}`", str(last)]
                         + [_num(mean(acc[layer][last], k)) for k in ACTIVATION_STATS]
                         + [str(len(acc[layer][last]))])
        steps = sorted({s for by_step in acc.values() for s in by_step})
        series[f"{w}: {row.label}"] = {
            f"activation/{k}": (steps, [mean([r for by_step in acc.values() for r in by_step.get(s, [])], k)
                                        for s in steps]) for k in ACTIVATION_STATS}
    if not table:
        return []
    intro = ("Covariance eigenvalues of each probed layer's activations at the last sampled step, mean over "
             "seeds: RankMe, the power-law exponent over ranks 30–150 (α tail) and 1–10 (α head), and the "
             "share of the trace in the 10 leading modes (n/a: the layer has fewer ranks than the window).")
    md = ["### Activation spectra (Spectral Lens, arXiv 2605.05683)", "", intro, ""]
    md += _table(["config", "layer", "step", "RankMe", "α tail", "α head", "top-10 share", "seeds"], table)
    if out is not None:
        plotting.plot_diagnostics(series, out / f"{w}_activations.png")
        md += ["", f"![{w} activation spectra]({w}_activations.png)"]
    return md + [""]


def _provenance_lines(runs: Sequence[Run]) -> list[str]:
    """Distinct software/machine combinations the runs came from."""
    seen: dict[tuple, int] = defaultdict(int)
    for r in runs:
        p = r.config.get("provenance", {})
        sha = p.get("git_sha", "")[:10] + ("+dirty" if p.get("git_dirty") else "")
        seen[(p.get("muonlab"), p.get("torch"), p.get("python"), sha or "n/a", p.get("hostname"),
              p.get("device_name", p.get("device")), p.get("torch_threads"))] += 1
    return _table(["muonlab", "torch", "python", "git", "host", "device", "threads", "runs"],
                  [[str(x) for x in k] + [str(n)] for k, n in sorted(seen.items(), key=str)])

