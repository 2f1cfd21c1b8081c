"""Statistics for reports: pure functions from run records to tables (as AlgoPerf's ``scoring/``).

Everything here is a pure function of :class:`muonlab.lab.records.Run` objects: no I/O, no
globals, so each table can be tested from hand-made records. :mod:`.plots` draws them and
:mod:`.report` writes them into a Markdown report.

Vocabulary:

* a *config* is everything that defines a run except its lr and seed: workload, optimizer and
  the other settings (knobs, hyperparameters, steps). Its *label* is the optimizer plus the
  settings that vary between the configs of a workload (``muon width=256``);
* the *headline metric* is the workload's ``metric`` (``val/loss`` by default); lower is better
  unless its name contains ``acc``. A diverged run's final value counts as the worst possible;
* the *best lr* of a config is the one with the best **median** final metric over seeds (ties go
  to the smaller lr);
* *steps-to-target* is the first evaluated step at which the metric reaches the target, so its
  resolution is the run's ``eval_every``.

Statistics (stated in every report, :data:`SIGNIFICANCE_RULE`) come from
:mod:`muonlab.lab.inference`, the lab's one statistics layer: per config, the mean steps-to-target
over seeds with its Student-t 95% interval; between a config and the baseline, the difference of
means with Welch's interval and p-value. The difference is called significant only when every seed
of both arms reached the target, each arm has at least 3 seeds, and the interval excludes 0.
Following airbench and modded-nanogpt's records, results are distributions over seeds, not runs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from . import inference
from .records import Run, fmt_value

MIN_SEEDS = 3
SIGNIFICANCE_RULE = (
    f"A difference in steps-to-target is called significant when every seed of both configs "
    f"reached the target, each has at least {MIN_SEEDS} seeds, and the 95% Welch t interval of the "
    f"difference of mean steps excludes 0 (the two-sided Welch p-value is shown alongside). "
    f"Intervals are t intervals valid at a handful of seeds; a percentile bootstrap over so few values "
    f"is too short. One test per comparison; correct for the number of comparisons you read."
)

Config = tuple  # (workload, optimizer, ((setting, value text), ...)) — hashable


# ---- grouping --------------------------------------------------------------------------------

def lower_is_better(metric: str) -> bool:
    """True unless the metric is an accuracy (its name contains "acc")."""
    return "acc" not in metric


def headline_metric(runs: Sequence[Run]) -> str:
    """The workload's declared headline metric (``val/loss`` when the records do not say)."""
    for run in runs:
        metric = run.config.get("workload", {}).get("metric")
        if metric:
            return metric
    return "val/loss"


def run_lr(run: Run) -> float:
    """The method's resolved learning rate for this run."""
    return float(run.config.get("lr", run.config.get("settings", {}).get("lr", math.nan)))


def config_of(run: Run) -> Config:
    """``(workload, optimizer, other settings)``: the run's config without its lr and seed."""
    cfg = run.config["run"]
    others = tuple(sorted((k, fmt_value(v)) for k, v in run.config.get("settings", {}).items() if k != "lr"))
    return (cfg["workload"], cfg["optimizer"], others)


def varying_settings(configs: Iterable[Config]) -> list[str]:
    """Settings that tell apart configs of the same workload and optimizer (absent counts as a value).

    Settings that differ only between optimizers (``adamw.lr``, which only matrix methods have, or
    a method's own hyperparameter) are left out: the optimizer's name already tells those apart.
    """
    configs = list(configs)
    same_method: dict[tuple, list[Config]] = defaultdict(list)
    for c in configs:
        same_method[c[:2]].append(c)
    keys = sorted({k for c in configs for k, _ in c[2]})
    return [k for k in keys if any(len({dict(c[2]).get(k) for c in group}) > 1 for group in same_method.values())]


def label(config: Config, varying: Sequence[str]) -> str:
    """``optimizer`` plus the varying settings, e.g. ``muon width=256``."""
    settings = dict(config[2])
    extra = " ".join(f"{k}={settings[k]}" for k in varying if k in settings)
    return f"{config[1]} {extra}".strip()


def final_value(run: Run, metric: str) -> float:
    """The metric at the run's last evaluation; ±inf (the worst) for a diverged or missing value."""
    v = run.final(metric)
    if run.done and run.done.get("diverged") or not math.isfinite(v):
        return math.inf if lower_is_better(metric) else -math.inf
    return v


def by_config(runs: Sequence[Run]) -> dict[Config, dict[float, list[Run]]]:
    """``{config: {lr: [runs over seeds]}}`` for the finished runs."""
    out: dict[Config, dict[float, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.finished:
            out[config_of(run)][run_lr(run)].append(run)
    return {c: dict(v) for c, v in out.items()}


# ---- tables ----------------------------------------------------------------------------------

@dataclass
class BestLR:
    """One row of the best-LR table."""

    workload: str
    optimizer: str
    label: str
    config: Config
    lr: float
    median: float
    low: float
    high: float
    seeds: int
    diverged: int
    train_s: float
    lrs: list[float] = field(default_factory=list)

    @property
    def at_edge(self) -> bool:
        """True when the best lr is the smallest or largest tried: the grid may be too narrow."""
        return len(self.lrs) > 1 and self.lr in (min(self.lrs), max(self.lrs))


def best_lr_table(runs: Sequence[Run], metric: str) -> list[BestLR]:
    """Per config, the lr with the best median final ``metric`` over seeds; sorted by workload
    then by that median (best first)."""
    groups = by_config(runs)
    rows = []
    for workload in sorted({c[0] for c in groups}):
        configs = [c for c in groups if c[0] == workload]
        varying = varying_settings(configs)
        for config in configs:
            per_lr = groups[config]
            sign = 1 if lower_is_better(metric) else -1
            stats = {lr: np.median([final_value(r, metric) for r in rs]) for lr, rs in per_lr.items()}
            best = min(sorted(stats), key=lambda lr: sign * stats[lr])
            values = [final_value(r, metric) for r in per_lr[best]]
            rows.append(BestLR(workload, config[1], label(config, varying), config, best,
                               float(stats[best]), float(min(values)), float(max(values)), len(values),
                               sum(bool(r.done.get("diverged")) for r in per_lr[best]),
                               float(np.median([r.done.get("time/train_s", math.nan) for r in per_lr[best]])),
                               sorted(per_lr)))
    sign = 1 if lower_is_better(metric) else -1
    return sorted(rows, key=lambda r: (r.workload, sign * r.median, r.label))


@dataclass
class Sensitivity:
    """Final metric against lr for one config: median and min–max over seeds."""

    workload: str
    label: str
    lrs: list[float]
    median: list[float]
    low: list[float]
    high: list[float]
    diverged: list[int]


def lr_sensitivity(runs: Sequence[Run], metric: str) -> list[Sensitivity]:
    """LR-sensitivity curves, one per config, lrs ascending (diverged points are ±inf)."""
    groups = by_config(runs)
    out = []
    for workload in sorted({c[0] for c in groups}):
        configs = sorted(c for c in groups if c[0] == workload)
        varying = varying_settings(configs)
        for config in configs:
            lrs = sorted(groups[config])
            vals = [[final_value(r, metric) for r in groups[config][lr]] for lr in lrs]
            out.append(Sensitivity(workload, label(config, varying), lrs,
                                   [float(np.median(v)) for v in vals], [float(min(v)) for v in vals],
                                   [float(max(v)) for v in vals],
                                   [sum(not math.isfinite(x) for x in v) for v in vals]))
    return out


@dataclass
class Curve:
    """Mean ± standard deviation of a metric over seeds, at the steps every seed evaluated."""

    workload: str
    label: str
    lr: float
    steps: list[int]
    train_s: list[float]
    mean: list[float]
    std: list[float]
    seeds: int


def curves(runs: Sequence[Run], metric: str, best: Sequence[BestLR]) -> list[Curve]:
    """The metric over training for each config at its best lr (``best`` from :func:`best_lr_table`)."""
    groups = by_config(runs)
    out = []
    for row in best:
        seeds = groups[row.config][row.lr]
        series = [{r["step"]: r for r in run.rows if r.get(metric) is not None} for run in seeds]
        steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
        values = np.array([[s[k][metric] for k in steps] for s in series], dtype=float)
        times = np.array([[s[k].get("time/train_s", math.nan) for k in steps] for s in series], dtype=float)
        out.append(Curve(row.workload, row.label, row.lr, steps,
                         np.mean(times, axis=0).tolist() if steps else [],
                         np.mean(values, axis=0).tolist() if steps else [],
                         np.std(values, axis=0).tolist() if steps else [], len(seeds)))
    return out


# ---- steps to target ---------------------------------------------------------------------------

def steps_to_target(rows: Sequence[dict], metric: str, target: float) -> int | None:
    """First evaluated step whose ``metric`` reaches ``target`` (≤ for losses, ≥ for accuracies)."""
    lower = lower_is_better(metric)
    for row in rows:
        v = row.get(metric)
        if v is not None and math.isfinite(v) and (v <= target if lower else v >= target):
            return int(row["step"])
    return None


def auto_target(best: Sequence[BestLR], workload: str, metric: str) -> float:
    """Default target of a workload: the worst final value over every seed of its best-LR configs,
    i.e. the best level that every seed of every config reaches, so that all can be compared
    (diverged seeds are left out of this choice)."""
    lower = lower_is_better(metric)
    vals = [r.high if lower else r.low for r in best if r.workload == workload]
    vals = [v for v in vals if math.isfinite(v)]
    if not vals:
        return math.nan
    return max(vals) if lower else min(vals)


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Student-t 95% interval of the mean of ``values`` (NaNs when fewer than 2), from
    :mod:`muonlab.lab.inference`, the lab's one statistics layer."""
    iv = inference.mean_interval(values)
    return (iv.lo, iv.hi)


@dataclass
class Comparison:
    """Steps-to-target of ``label`` against ``baseline``, with the significance verdict."""

    label: str
    baseline: str
    diff: float
    ci: tuple[float, float]
    p_welch: float | None
    significant: bool
    verdict: str


def compare_steps(a: Sequence[int | None], b: Sequence[int | None], label: str = "a",
                  baseline: str = "b") -> Comparison:
    """Apply :data:`SIGNIFICANCE_RULE` to steps-to-target ``a`` (one per seed) against ``b``."""
    if any(s is None for s in a) or any(s is None for s in b):
        return Comparison(label, baseline, math.nan, (math.nan, math.nan), None, False,
                          "no claim: not every seed reached the target")
    iv = inference.welch_interval(a, b)
    test = inference.t_test("a − b", iv, "!=")
    p = test.p_for if math.isfinite(test.p_for) else None
    if len(a) < MIN_SEEDS or len(b) < MIN_SEEDS:
        return Comparison(label, baseline, iv.estimate, (iv.lo, iv.hi), p, False,
                          f"no claim: fewer than {MIN_SEEDS} seeds")
    significant = iv.lo > 0 or iv.hi < 0
    if not significant:
        verdict = "not significant"
    else:
        verdict = "significantly fewer steps" if iv.estimate < 0 else "significantly more steps"
    return Comparison(label, baseline, iv.estimate, (iv.lo, iv.hi), p, significant, verdict)


@dataclass
class TargetRow:
    """Steps-to-target of one config at its best lr."""

    workload: str
    label: str
    lr: float
    target: float
    steps: list[int | None]
    mean: float
    ci: tuple[float, float]
    eval_every: int

    @property
    def reached(self) -> int:
        return sum(s is not None for s in self.steps)


def target_table(runs: Sequence[Run], metric: str, best: Sequence[BestLR],
                 targets: dict[str, float]) -> list[TargetRow]:
    """Steps-to-target per best-LR config; ``targets`` maps workload → target value."""
    groups = by_config(runs)
    out = []
    for row in best:
        target = targets.get(row.workload, math.nan)
        seeds = groups[row.config][row.lr]
        steps = [steps_to_target(r.rows, metric, target) for r in seeds]
        got = [s for s in steps if s is not None]
        every = int(seeds[0].config["run"].get("eval_every", 0))
        out.append(TargetRow(row.workload, row.label, row.lr, target, steps,
                             float(np.mean(got)) if got else math.nan,
                             mean_ci(got) if len(got) == len(steps) else (math.nan, math.nan), every))
    return out


# ---- diagnostics -----------------------------------------------------------------------------

# Probe statistics shown by default when present (muonlab.diagnostics record keys, see spectrum.py):
# the flattening of the weights' spectrum, the update's shape, the gradient's gap κ and how well
# the update follows the gradient.
DIAGNOSTICS = ("weight/stable_rank", "weight/spectral_entropy", "update/stable_rank",
               "grad/min_gap_relative", "pairwise/grad_update_alignment", "pairwise/update_polar_error")


def _flatten(rec: dict, prefix: str = "") -> dict[str, Any]:
    """``{"weight": {"stable_rank": 3}}`` → ``{"weight/stable_rank": 3}``."""
    out = {}
    for k, v in rec.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def diagnostics_series(runs: Sequence[Run], best: Sequence[BestLR], max_series: int = 6,
                       prefer: Sequence[str] = DIAGNOSTICS) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """Probe statistics over steps per best-LR config: ``{label: {statistic: (steps, values)}}``.

    Accepts the records of :class:`muonlab.diagnostics.SpectralProbe` (one per step and parameter,
    statistics nested by target: ``{"step", "param", "weight": {"stable_rank": ...}, ...}``), wide
    rows (``{"step": 100, "spectral/stable_rank/<param>": 3.1}``) and long rows (``{"step", "param",
    "metric"|"name", "value"}``). Values are averaged over parameters and seeds at each step, per
    statistic (a wide key without its parameter part). The ``prefer`` statistics that are present
    are shown, else the ``max_series`` with the most points.
    """
    groups = by_config(runs)
    out: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for row in best:
        acc: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for run in groups[row.config][row.lr]:
            for rec in run.probe:
                step = rec.get("step")
                if step is None:
                    continue
                if "value" in rec and ("metric" in rec or "name" in rec):
                    items = [(str(rec.get("metric", rec.get("name"))), rec["value"])]
                else:
                    items = [(k, v) for k, v in _flatten(rec).items() if k not in ("step", "group")]
                for key, v in items:
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                        family = "/".join(key.split("/")[:2]) if key.count("/") >= 2 else key
                        acc[family][int(step)].append(float(v))
        if acc:
            keep = [k for k in prefer if k in acc] or sorted(acc, key=lambda k: -len(acc[k]))[:max_series]
            out[f"{row.workload}: {row.label}"] = {
                k: (sorted(acc[k]), [float(np.mean(acc[k][s])) for s in sorted(acc[k])]) for k in keep}
    return out


# ---- axes other than lr (width for LR transfer, n_train for generalization) ------------------------

@dataclass
class AxisRow:
    """Best lr and best median metric against one numeric setting, for one optimizer."""

    workload: str
    label: str
    key: str
    values: list[float]
    best_lr: list[float]
    median: list[float]


def axis_table(best: Sequence[BestLR], key: str) -> list[AxisRow]:
    """For a numeric setting ``key`` that varies (e.g. ``width``): per optimizer (and the other
    settings), the best lr and its median metric at each value; the LR-transfer view of seed 001."""
    series: dict[tuple, list[tuple[float, float, float]]] = defaultdict(list)
    for row in best:
        settings = dict(row.config[2])
        if key not in settings:
            continue
        try:
            x = float(settings[key])
        except ValueError:
            return []
        rest = tuple((k, v) for k, v in row.config[2] if k != key)
        series[(row.workload, row.optimizer, rest)].append((x, row.lr, row.median))
    out = []
    varying = varying_settings(row.config for row in best)
    for (workload, optimizer, rest), pts in series.items():
        extra = " ".join(f"{k}={v}" for k, v in rest if k in varying)
        pts = sorted(pts)
        out.append(AxisRow(workload, f"{optimizer} {extra}".strip(), key, [p[0] for p in pts],
                           [p[1] for p in pts], [p[2] for p in pts]))
    return out


def numeric_axes(best: Sequence[BestLR], workload: str) -> list[str]:
    """Settings other than lr that vary across the workload's configs and are all numbers."""
    configs = [r.config for r in best if r.workload == workload]
    keys = []
    for k in varying_settings(configs):
        vals = {dict(c[2]).get(k) for c in configs}
        try:
            if None not in vals and len(vals) > 1 and all(math.isfinite(float(v)) for v in vals):
                keys.append(k)
        except ValueError:
            continue
    return keys


def comparisons(targets: Sequence[TargetRow], best: Sequence[BestLR], baseline: str) -> list[Comparison]:
    """Each config against the ``baseline`` optimizer's config with the same varying settings
    (e.g. the same width), by :func:`compare_steps`."""
    info = {(r.workload, r.label): r for r in best}
    out = []
    for t in targets:
        row = info[(t.workload, t.label)]
        if row.optimizer == baseline:
            continue
        varying = varying_settings(r.config for r in best if r.workload == t.workload)

        def key(config: Config) -> tuple:
            return tuple(dict(config[2]).get(k) for k in varying)

        base = next((b for b in targets if b.workload == t.workload
                     and info[(b.workload, b.label)].optimizer == baseline
                     and key(info[(b.workload, b.label)].config) == key(row.config)), None)
        if base is not None:
            out.append(compare_steps(t.steps, base.steps, t.label, base.label))
    return out
