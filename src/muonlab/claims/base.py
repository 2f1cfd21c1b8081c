"""The claims lab's building blocks: :class:`Claim`, :class:`ClaimResult`, and the small statistics
every claim's verdict is computed from.

A claim is a quote from a seed document, a setup, budgets, and an ``experiment`` function that
composes the lab (workloads, :func:`muonlab.lab.sweep.sweep`, diagnostics) and returns numbers plus
a verdict computed by an explicit rule. Runs live under ``<out>/runs`` (shared by all claims, so a
point two claims need is trained once) and are resumable through the lab's runner; the claim's
result is cached as ``<out>/<name>/result.json``.

Verdicts are one of :data:`VERDICTS`. The rule that produced one is stated in the result
(``rule``) and the reason in ``why``; nothing is hard-coded.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..lab.records import read_json, read_jsonl, write_json
from ..lab.runner import RunConfig

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive at this scale"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)
N_BOOT = 10_000
MIN_SEEDS = 3


@dataclass
class ClaimResult:
    """What one claim's experiment measured and concluded.

    Attributes:
        numbers: headline numbers (JSON-serialisable), e.g. ``{"ratio_mean": 1.6, "ratio_ci": [..]}``.
        table: Markdown lines (a table of the numbers with their spread over seeds).
        plots: paths of figures, relative to the docs file's directory.
        rule: the statistical rule that produced the verdict, in words.
        verdict: one of :data:`VERDICTS`.
        why: one or two sentences: which numbers met or missed the rule.
        budget: the budget that ran; seconds: the wall-clock time of the call that produced it (runs
            already cached are not retrained); seeds: seeds per arm; run_seconds: training plus
            evaluation time summed over every run the claim used (what the budget costs from
            scratch on one process).
    """

    numbers: dict[str, Any]
    table: list[str]
    plots: list[str]
    rule: str
    verdict: str
    why: str
    budget: str = ""
    seconds: float = math.nan
    seeds: int = 0
    run_seconds: float = math.nan
    n_runs: int = 0

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ClaimResult":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


@dataclass
class Context:
    """What an experiment gets: where to put runs and figures, the budget's settings, a logger."""

    out: Path            # the claims root: runs under out/"runs"
    fig_dir: Path        # where figures are written (next to docs/claims.md)
    fig_rel: str         # figures' path relative to the docs file
    budget: str
    cfg: dict[str, Any]  # the budget's settings (claim-specific keys)
    log: Callable[[str], None] = print
    run_seconds: dict[str, float] = field(default_factory=dict)  # run dir -> train + eval seconds

    @property
    def seeds(self) -> list[int]:
        return list(range(int(self.cfg.get("seeds", 3))))

    def sweep(self, workload: str, optimizers: Sequence[str], *, lrs: Sequence[float] | None = None,
              grid: dict[str, Sequence[Any]] | None = None, steps: int | None = None,
              knobs: dict[str, Any] | None = None, hparams: dict[str, Any] | None = None,
              **run: Any) -> list[tuple[RunConfig, Path, dict]]:
        """The lab's resumable :func:`~muonlab.lab.sweep.sweep` under ``out/runs``, one seed per budget seed."""
        from ..lab.sweep import sweep

        base = RunConfig(workload, "", steps=steps if steps is not None else int(self.cfg.get("steps", 0)),
                         knobs=dict(knobs or {}), hparams=dict(hparams or {}), device="cpu", **run)
        res = sweep(workload, list(optimizers), self.out / "runs", seeds=self.seeds, lrs=lrs,
                    grid=grid, base=base, progress=False, log=self.log)
        for _, run_dir, summary in res:
            self.run_seconds[str(run_dir)] = summary.get("time/train_s", 0.0) + summary.get("time/eval_s", 0.0)
        return res


@dataclass
class Claim:
    """One claim of a seed document and how the lab tests it.

    Attributes:
        name: CLI name (``muonlab claims <name>``).
        number: its number in issue 9's list (1..13).
        seed: the seed document (e.g. "000 MiMuon").
        quote: the claim, quoted from the seed.
        setup: what is run, in words (workload, arms, metric, what "small" means).
        budgets: ``{"small": {...}, "full": {...}}`` settings handed to ``experiment``; "small" runs
            in ≤ 15 minutes on 2 CPU cores, "full" is meant for a GPU.
        experiment: ``(Context) -> ClaimResult``.
    """

    name: str
    number: int
    seed: str
    quote: str
    setup: str
    budgets: dict[str, dict[str, Any]]
    experiment: Callable[[Context], ClaimResult]

    def command(self, budget: str = "small") -> str:
        return f"muonlab claims {self.name} --budget {budget}"

    def result_path(self, out: Path) -> Path:
        return Path(out) / self.name / "result.json"

    def run(self, out: str | Path, budget: str = "small", *, fig_dir: str | Path = "docs/claims",
            fig_rel: str = "claims", log: Callable[[str], None] = print, **override: Any) -> ClaimResult:
        """Run the experiment (resuming its runs), cache and return the result."""
        if budget not in self.budgets:
            raise ValueError(f"claim {self.name!r} has no budget {budget!r}; budgets: {', '.join(self.budgets)}")
        unknown = sorted(set(override) - set(self.budgets[budget]))
        if unknown:
            raise ValueError(f"claim {self.name!r} has no budget setting(s) {unknown}; settings: "
                             f"{', '.join(self.budgets[budget])}")
        out = Path(out)
        ctx = Context(out, Path(fig_dir), fig_rel, budget, {**self.budgets[budget], **override}, log)
        t0 = time.perf_counter()
        result = self.experiment(ctx)
        result.budget, result.seconds, result.seeds = budget, time.perf_counter() - t0, len(ctx.seeds)
        result.run_seconds = float(sum(ctx.run_seconds.values()))
        result.n_runs = len(ctx.run_seconds)
        write_json(self.result_path(out), result.to_json())
        return result

    def cached(self, out: str | Path) -> ClaimResult | None:
        path = self.result_path(Path(out))
        return ClaimResult.from_json(read_json(path)) if path.exists() else None


# ---- statistics: pure functions ------------------------------------------------------------------

def mean_ci(values: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean with its 95% percentile-bootstrap CI (NaN CI below 2 values)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    if len(x) < 2:
        return (float(x.mean()), math.nan, math.nan)
    rng = np.random.default_rng(seed)
    m = x[rng.integers(0, len(x), (N_BOOT, len(x)))].mean(axis=1)
    return float(x.mean()), float(np.quantile(m, 0.025)), float(np.quantile(m, 0.975))


def diff_ci(a: Sequence[float], b: Sequence[float], seed: int = 0, *, paired: bool = False
            ) -> tuple[float, float, float]:
    """``mean(a) − mean(b)`` with a 95% bootstrap CI (each arm resampled; ``paired`` resamples
    the per-seed differences instead)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired:
        return mean_ci((xa - xb).tolist(), seed)
    if len(xa) < 2 or len(xb) < 2:
        return (float(xa.mean() - xb.mean()) if len(xa) and len(xb) else math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    da = xa[rng.integers(0, len(xa), (N_BOOT, len(xa)))].mean(axis=1)
    db = xb[rng.integers(0, len(xb), (N_BOOT, len(xb)))].mean(axis=1)
    d = da - db
    return float(xa.mean() - xb.mean()), float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))


def ratio_ci(a: Sequence[float], b: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    """``mean(a) / mean(b)`` with a 95% bootstrap CI (each arm resampled)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    r = float(xa.mean() / xb.mean())
    if len(xa) < 2 or len(xb) < 2:
        return (r, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    ra = xa[rng.integers(0, len(xa), (N_BOOT, len(xa)))].mean(axis=1)
    rb = xb[rng.integers(0, len(xb), (N_BOOT, len(xb)))].mean(axis=1)
    q = ra / rb
    return r, float(np.quantile(q, 0.025)), float(np.quantile(q, 0.975))


def loglog_slope(x: Sequence[float], ys: Sequence[Sequence[float]], seed: int = 0) -> tuple[float, float, float]:
    """Slope of ``log y`` on ``log x`` for the seed-mean curve, with a 95% CI from resampling seeds.

    ``ys[s][i]`` is seed s's value at ``x[i]``; values ≤ 0 are left out of a fit (log undefined).
    """
    x = np.log(np.asarray(x, dtype=float))
    Y = np.asarray(ys, dtype=float)

    def fit(mean_y: np.ndarray) -> float:
        ok = mean_y > 0
        if ok.sum() < 2:
            return math.nan
        return float(np.polyfit(x[ok], np.log(mean_y[ok]), 1)[0])

    slope = fit(Y.mean(axis=0))
    if len(Y) < 2:
        return slope, math.nan, math.nan
    rng = np.random.default_rng(seed)
    boots = np.array([fit(Y[rng.integers(0, len(Y), len(Y))].mean(axis=0)) for _ in range(2000)])
    boots = boots[np.isfinite(boots)]
    if len(boots) == 0:
        return slope, math.nan, math.nan
    return slope, float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def ci_verdict(ci: tuple[float, float, float], favourable: str, *, n: int = MIN_SEEDS,
               threshold: float = 0.0) -> str:
    """Verdict from a CI ``(estimate, lo, hi)`` against ``threshold``.

    ``favourable`` is ">" (the claim predicts values above the threshold) or "<". Supported when the
    whole CI is on the favourable side, not supported when the whole CI is on the other side,
    inconclusive when it straddles the threshold, is undefined, or fewer than 3 seeds ran.
    """
    _, lo, hi = ci
    if n < MIN_SEEDS or not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    above, below = lo > threshold, hi < threshold
    if favourable == ">":
        return SUPPORTED if above else NOT_SUPPORTED if below else INCONCLUSIVE
    if favourable == "<":
        return SUPPORTED if below else NOT_SUPPORTED if above else INCONCLUSIVE
    raise ValueError(f"favourable={favourable!r} must be '>' or '<'")


def combine(verdicts: Sequence[str]) -> str:
    """All parts supported → supported; any part not supported → not supported; else inconclusive."""
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if any(v == NOT_SUPPORTED for v in verdicts):
        return NOT_SUPPORTED
    return INCONCLUSIVE


def fmt_ci(ci: tuple[float, float, float], fmt: str = ".3g") -> str:
    """``1.59 [1.41, 1.77]``."""
    m, lo, hi = (0.0 if isinstance(v, float) and abs(v) < 1e-12 else v for v in ci)  # float noise → 0
    if not math.isfinite(lo):
        return f"{m:{fmt}}" if math.isfinite(m) else "n/a"
    return f"{m:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


# ---- reading sweep results -----------------------------------------------------------------------

def rows_of(run_dir: Path) -> list[dict]:
    return read_jsonl(Path(run_dir) / "metrics.jsonl")


def final(summary: dict, metric: str) -> float:
    """A run's final metric; a diverged run counts as +inf for losses and 0 for accuracies."""
    v = summary.get(metric)
    if summary.get("diverged") or v is None or not math.isfinite(v):
        return 0.0 if "acc" in metric else math.inf
    return float(v)


def group(results, key: Callable[[RunConfig], Any]) -> dict[Any, list[tuple[RunConfig, Path, dict]]]:
    out: dict[Any, list] = {}
    for item in results:
        out.setdefault(key(item[0]), []).append(item)
    return out


def best_lr(results, metric: str) -> dict[str, tuple[float, list[tuple[RunConfig, Path, dict]]]]:
    """Per optimizer: the lr with the best median final ``metric`` over seeds and its runs."""
    lower = "acc" not in metric
    out = {}
    for opt, items in group(results, lambda c: c.optimizer).items():
        by_lr = group(items, lambda c: c.hparams["lr"])
        med = {lr: float(np.median([final(s, metric) for _, _, s in its])) for lr, its in by_lr.items()}
        lr = min(med, key=lambda k: (med[k] if lower else -med[k], k))  # ties: the smaller lr
        out[opt] = (lr, by_lr[lr])
    return out


def first_step(rows: Sequence[dict], metric: str, target: float) -> int | None:
    """First evaluated step where ``metric`` reaches ``target`` (≤ for losses, ≥ for accuracies)."""
    from ..lab.stats import steps_to_target

    return steps_to_target(rows, metric, target)


def save_fig(fig, ctx: Context, name: str) -> str:
    """Save a matplotlib figure as ``<fig_dir>/<name>.png``; returns its path relative to the docs."""
    from ..lab.plots import _save

    _save(fig, ctx.fig_dir / f"{name}.png")
    return f"{ctx.fig_rel}/{name}.png"


def pyplot():
    from ..lab.plots import _pyplot

    return _pyplot()
