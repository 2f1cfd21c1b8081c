"""The claims lab's building blocks: :class:`Claim`, :class:`ClaimResult`, :class:`Context`.

A claim is a quote from a seed document, a setup, budgets, and an ``experiment`` function that
composes the lab (workloads, :func:`muonlab.lab.sweep.sweep`, diagnostics) and returns its parts
as :class:`muonlab.lab.inference.Test` objects; :meth:`Context.finish` turns them into a verdict
with Holm's correction (:func:`muonlab.lab.inference.decide`). All statistics live in
:mod:`muonlab.lab.inference`; nothing here computes an interval.

**Tuning** (:meth:`Context.tune`): every arm gets its own log-spaced LR grid centred on its own
prior optimum, run on *tuning seeds* that are disjoint from the evaluation seeds (so the chosen lr
is not selected on the data that then judges it). When the best lr (lowest median final metric) is
on an edge, the grid is extended by one point past that edge, up to ``max_extend`` times; an arm
whose optimum is still on the edge is not *located* and every test that uses it is marked
untestable, which makes the claim inconclusive and says why.

**Replication**: every arm is then run at its tuned lr on the evaluation seeds (``seeds``, at
least 8 at the small budget). Runs live under ``<out>/runs`` (shared by all claims, so a point two
claims need trains once) and resume through the lab's runner; a checkpoint is written only at the
end of a run (checkpoints at every evaluation cost more than these runs). A diverged run counts
as making no progress: its final metric is its first evaluation's value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..lab import inference as inf
from ..lab.inference import INCONCLUSIVE, NOT_SUPPORTED, NOT_TESTED, SUPPORTED, VERDICTS, Test
from ..lab.records import read_json, read_jsonl, write_json
from ..lab.runner import RunConfig

MIN_SEEDS = 8           # evaluation seeds (or problem instances) per arm at the small budget
TUNE_SEED0 = 1000       # tuning seeds are TUNE_SEED0, TUNE_SEED0 + 1, ...: never evaluation seeds

Item = tuple  # (RunConfig, run directory, done summary) as returned by the lab's sweep


@dataclass
class ClaimResult:
    """What one claim's experiment measured and concluded.

    Attributes:
        numbers: headline numbers (JSON-serialisable).
        table: Markdown lines (the numbers with their spread over seeds).
        plots: paths of figures, relative to the docs file's directory.
        tests: the claim's parts (:class:`~muonlab.lab.inference.Test` as dicts), voted and
            reported, with raw and Holm-adjusted p-values and each part's verdict.
        rule: the pre-registered primary test and how the parts are combined, in words.
        verdict: one of :data:`~muonlab.lab.inference.VERDICTS`.
        why: which parts met or missed their test.
        tuning: per arm, the grid that was run, its best lr and whether the optimum was located.
        budget, seconds, seeds, run_seconds, n_runs: the budget that ran, wall-clock seconds of the
            call, evaluation seeds per arm, train + eval seconds summed over every run the claim used
            (its cost from scratch on one process), and the number of those runs.
    """

    numbers: dict[str, Any]
    table: list[str]
    plots: list[str]
    rule: str
    verdict: str
    why: str
    tests: list[dict] = field(default_factory=list)
    tuning: list[dict] = field(default_factory=list)
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
class Tuned:
    """One arm's LR search: the grid run, the median final metric per lr, the chosen lr."""

    arm: str
    lr: float
    grid: list[float]
    medians: list[float]
    located: bool
    extended: int
    runs: list = field(default_factory=list)
    plateau_located: bool = True
    flat: bool = False
    strategy: str = "grid"  # the lr search (muonlab.lab.search); grid: every lr of the grid

    def to_json(self) -> dict[str, Any]:
        out = {"arm": self.arm, "lr": self.lr, "grid": self.grid, "medians": self.medians,
               "located": self.located, "extended": self.extended, "plateau_located": self.plateau_located,
               "flat": self.flat}
        return out if self.strategy == "grid" else {**out, "strategy": self.strategy}  # grid: records as before

    def note(self) -> str:
        """Why tests using this arm cannot vote ('' when its optimum was located)."""
        if self.flat:
            return f"{self.arm}: every lr of {self.grid[0]:g}…{self.grid[-1]:g} scored the same (no optimum to locate)"
        if self.located:
            return ""
        return (f"{self.arm}'s best lr {self.lr:g} is on the edge of its grid "
                f"{self.grid[0]:g}…{self.grid[-1]:g} after {self.extended} extensions")

    def plateau_note(self) -> str:
        """Why a plateau measured on this arm's grid cannot vote ('' when it is interior)."""
        if not self.located or self.flat:
            return self.note()
        return "" if self.plateau_located else (f"{self.arm}'s LR plateau still touches an edge of "
                                                f"{self.grid[0]:g}…{self.grid[-1]:g}")


@dataclass
class Context:
    """What an experiment gets: where runs and figures go, the budget's settings, a logger."""

    out: Path            # the claims root: runs under out/"runs"
    fig_dir: Path        # where figures are written (next to docs/claims.md)
    fig_rel: str         # figures' path relative to the docs file
    budget: str
    cfg: dict[str, Any]  # the budget's settings (claim-specific keys)
    log: Callable[[str], None] = print
    run_seconds: dict[str, float] = field(default_factory=dict)  # run dir -> train + eval seconds
    tuning: list[Tuned] = field(default_factory=list)
    launcher: Any = None  # where the sweeps' points run (muonlab.lab.launch; None: serially, here)

    @property
    def seeds(self) -> list[int]:
        """Evaluation seeds 0..seeds−1."""
        return list(range(int(self.cfg.get("seeds", MIN_SEEDS))))

    @property
    def tune_seeds(self) -> list[int]:
        """Tuning seeds, disjoint from :attr:`seeds`."""
        return [TUNE_SEED0 + i for i in range(int(self.cfg.get("tune_seeds", 2)))]

    def sweep(self, workload: str, optimizers: Sequence[str], *, lrs: Sequence[float] | None = None,
              grid: dict[str, Sequence[Any]] | None = None, steps: int | None = None,
              knobs: dict[str, Any] | None = None, hparams: dict[str, Any] | None = None,
              seeds: Sequence[int] | None = None, **run: Any) -> list[Item]:
        """The lab's resumable :func:`~muonlab.lab.sweep.sweep` under ``out/runs``, sorted by seed, its
        points run by :attr:`launcher`; raises :class:`~muonlab.lab.sweep.SweepError` after the
        others finished when a point failed."""
        from ..lab.sweep import sweep

        steps = steps if steps is not None else int(self.cfg.get("steps", 0))
        run.setdefault("checkpoint_every", max(steps, 1) if steps else 10**9)
        # small budgets are sized (and their verdicts pinned) on CPU; full budgets take a GPU when present
        run.setdefault("device", self.cfg.get("device", "cpu" if self.budget == "small" else "auto"))
        base = RunConfig(workload, "", steps=steps, knobs=dict(knobs or {}), hparams=dict(hparams or {}), **run)
        res = sweep(workload, list(optimizers), self.out / "runs", seeds=list(seeds or self.seeds), lrs=lrs,
                    grid=grid, base=base, progress=False, log=self.log, launcher=self.launcher)
        for _, run_dir, summary in res:
            self.run_seconds[str(run_dir)] = summary.get("time/train_s", 0.0) + summary.get("time/eval_s", 0.0)
        return sorted(res, key=lambda it: it[0].seed)

    def tune(self, workload: str, optimizer: str, center: float, *, metric: str = "val/loss",
             ratio: float = 2.0, points: int = 5, max_extend: int = 6, arm: str | None = None,
             seeds: Sequence[int] | None = None, plateau_tol: float | None = None,
             score: Callable[[dict, Path], float] | None = None, strategy: str = "grid",
             **sweep_kw: Any) -> Tuned:
        """Search ``optimizer``'s lr on a log grid of ``points`` lrs (ratio ``ratio``) centred on
        ``center``, on the tuning seeds (or ``seeds``); extend past an edge while the best lr sits on
        it, and, with ``plateau_tol``, also while an edge's median is within ``plateau_tol``
        (relative) of the best, so an LR plateau measured on the grid is not cut by its edges.
        ``score(summary, run_dir)`` (lower is better) replaces the final ``metric`` when given
        (e.g. steps to a target).

        ``strategy`` is :func:`muonlab.lab.search.search`'s: ``"grid"`` (default, the above),
        ``"refine"`` (a coarse grid refined around the best to ``ratio``: fewer runs, same
        guarantee) or ``"optuna"``. The score of an lr is its median over the seeds; each round's
        new lrs run as one sweep. With ``"refine"``/``"optuna"`` the evaluated lrs (``Tuned.grid``)
        are not evenly spaced, so :func:`plateau_width`, which reads the step off the first two,
        needs ``"grid"``."""
        from ..lab.search import search

        if center <= 0 or ratio <= 1 or points < 3:
            raise ValueError(f"tune({optimizer!r}): center={center}, ratio={ratio}, points={points} need "
                             "center > 0, ratio > 1, points >= 3")
        seeds = list(seeds or self.tune_seeds)
        value = score or (lambda s, d: final(s, metric, d))
        sign = 1 if score else -1 if higher_is_better(metric) else 1
        med: dict[float, float] = {}

        def run(lrs: list[float]) -> list[float]:
            items = self.sweep(workload, [optimizer], lrs=lrs, seeds=seeds, **sweep_kw)
            for lr in lrs:
                med[lr] = float(np.median([value(s, d) for c, d, s in items if c.hparams["lr"] == lr]))
            return [sign * med[lr] for lr in lrs]

        res = search(lambda lr: run([lr])[0], center, strategy=strategy, ratio=ratio, points=points,
                     max_extend=max_extend, plateau_tol=plateau_tol, score_many=run)
        # every evaluated point again (finished, so read back, not trained) in the sweep's order
        items = self.sweep(workload, [optimizer], lrs=res.lrs, seeds=seeds, **sweep_kw)
        t = Tuned(arm or optimizer, res.best, res.lrs, [med[lr] for lr in res.lrs], res.located, res.extended,
                  items, plateau_located=res.plateau_interior, flat=res.flat, strategy=strategy)
        self.tuning.append(t)
        return t

    def evaluate(self, workload: str, optimizer: str, lr: float, **sweep_kw: Any) -> list[Item]:
        """``optimizer`` at ``lr`` on every evaluation seed."""
        hp = {**sweep_kw.pop("hparams", {}), "lr": lr}
        return self.sweep(workload, [optimizer], hparams=hp, **sweep_kw)

    def arm(self, workload: str, optimizer: str, center: float, *, metric: str = "val/loss",
            ratio: float = 2.0, points: int = 5, arm: str | None = None, strategy: str = "grid",
            **sweep_kw: Any) -> tuple[Tuned, list[Item]]:
        """:meth:`tune` (with the lr-search ``strategy``) then :meth:`evaluate` at the tuned lr."""
        t = self.tune(workload, optimizer, center, metric=metric, ratio=ratio, points=points, arm=arm,
                      strategy=strategy, **sweep_kw)
        return t, self.evaluate(workload, optimizer, t.lr, **sweep_kw)

    def finish(self, tests: Sequence[Test], *, table: list[str], rule: str, numbers: dict | None = None,
               plots: Sequence[str] = (), why: str = "") -> ClaimResult:
        """The claim's verdict (Holm over the voted parts) and its result."""
        verdict, tests = inf.decide(tests)
        text = "; ".join(t.describe() for t in tests)
        return ClaimResult(numbers=_jsonable(numbers or {}), table=table, plots=list(plots), rule=rule,
                           verdict=verdict, why=(why + " " if why else "") + text,
                           tests=[t.to_json() for t in tests],
                           tuning=[t.to_json() for t in self.tuning])


@dataclass
class Claim:
    """One claim of a seed document and how the lab tests it.

    Attributes:
        name: CLI name (``muonlab claims <name>``).
        number: its number in docs/claims.md.
        seed: the seed document (e.g. "000 MiMuon").
        quote: the claim, quoted from the seed.
        setup: what is run and why it is a faithful test, in words.
        budgets: ``{"small": {...}, "full": {...}}`` settings handed to ``experiment``; "small" runs
            in ≤ 15 minutes on 2 CPU cores with ≥ 8 seeds per arm, "full" is sized for one GPU for
            about ten minutes.
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
            fig_rel: str = "claims", log: Callable[[str], None] = print, launcher: Any = None,
            **override: Any) -> ClaimResult:
        """Run the experiment (resuming its runs; ``launcher``: where its sweeps' points run, see
        :mod:`muonlab.lab.launch`, default serially here), cache and return the result."""
        if budget not in self.budgets:
            raise ValueError(f"claim {self.name!r} has no budget {budget!r}; budgets: {', '.join(self.budgets)}")
        unknown = sorted(set(override) - set(self.budgets[budget]))
        if unknown:
            raise ValueError(f"claim {self.name!r} has no budget setting(s) {unknown}; settings: "
                             f"{', '.join(self.budgets[budget])}")
        out = Path(out)
        ctx = Context(out, Path(fig_dir), fig_rel, budget, {**self.budgets[budget], **override}, log,
                      launcher=launcher)
        t0 = time.perf_counter()
        result = self.experiment(ctx)
        result.budget, result.seconds = budget, time.perf_counter() - t0
        result.seeds = int(ctx.cfg.get("instances", len(ctx.seeds))) if "instances" in ctx.cfg and \
            "seeds" not in ctx.cfg else len(ctx.seeds)
        result.run_seconds = float(sum(ctx.run_seconds.values()))
        result.n_runs = len(ctx.run_seconds)
        write_json(self.result_path(out), result.to_json())
        return result

    def cached(self, out: str | Path) -> ClaimResult | None:
        path = self.result_path(Path(out))
        return ClaimResult.from_json(read_json(path)) if path.exists() else None


# ---- reading runs --------------------------------------------------------------------------------

def higher_is_better(metric: str) -> bool:
    return "acc" in metric


def rows_of(run_dir: Path) -> list[dict]:
    return read_jsonl(Path(run_dir) / "metrics.jsonl")


def final(summary: dict, metric: str, run_dir: Path | None = None) -> float:
    """A run's final ``metric``. A diverged (or non-finite) run counts as no progress: its value at
    the first evaluation when ``run_dir`` is given, else the worst value (+inf loss, 0 accuracy)."""
    v = summary.get(metric)
    if not summary.get("diverged") and v is not None and math.isfinite(v):
        return float(v)
    if run_dir is not None:
        first = next((r[metric] for r in rows_of(run_dir) if r.get(metric) is not None
                      and math.isfinite(r[metric])), None)
        if first is not None:
            return float(first)
    return 0.0 if higher_is_better(metric) else math.inf


def values(items: Sequence[Item], metric: str) -> list[float]:
    """Final ``metric`` of each run (in seed order), diverged runs as no progress."""
    return [final(s, metric, d) for _, d, s in items]


def steps_to_fraction(metric: str, fraction: float) -> Callable[[dict, Path], float]:
    """A tuning ``score``: the first evaluated step at which ``metric`` (a loss) is at most
    ``fraction`` of its first evaluation; a run that never gets there scores twice its length.
    For problems every lr fits to round-off (matrix sensing), final losses cannot rank lrs, but
    the time to fit can."""
    def score(summary: dict, run_dir: Path) -> float:
        rows = [r for r in rows_of(run_dir) if r.get(metric) is not None]
        if not rows or summary.get("diverged"):
            return math.inf
        target = fraction * rows[0][metric]
        hit = next((r["step"] for r in rows if math.isfinite(r[metric]) and r[metric] <= target), None)
        return float(hit) if hit is not None else 2.0 * rows[-1]["step"]
    return score


def diverged(items: Sequence[Item]) -> int:
    return sum(bool(s.get("diverged")) for _, _, s in items)


def group(results, key: Callable[[RunConfig], Any]) -> dict[Any, list[Item]]:
    out: dict[Any, list] = {}
    for item in results:
        out.setdefault(key(item[0]), []).append(item)
    return out


def first_step(rows: Sequence[dict], metric: str, target: float) -> int | None:
    """First evaluated step where ``metric`` reaches ``target`` (≤ for losses, ≥ for accuracies)."""
    from ..lab.stats import steps_to_target

    return steps_to_target(rows, metric, target)


def gated(test: Test, *tuned: Tuned, plateau: bool = False) -> Test:
    """``test`` unless one of the arms it compares was not located on its grid (with ``plateau``:
    or its LR plateau still touches an edge); then untestable, keeping its role."""
    notes = [n for n in ((t.plateau_note() if plateau else t.note()) for t in tuned) if n]
    if not notes:
        return test
    return dataclasses.replace(inf.untestable(test.name, "; ".join(notes), primary=test.primary, voted=test.voted),
                               interval=test.interval)


# ---- output --------------------------------------------------------------------------------------

def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def fmt_mean(values: Sequence[float], spec: str = ".3g") -> str:
    """Mean and t interval of finite ``values`` (``n/a`` when none)."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    return inf.mean_interval(v).fmt(spec) if v else "n/a"


def save_fig(fig, ctx: Context, name: str) -> str:
    """Save a matplotlib figure as ``<fig_dir>/<name>.png``; returns its path relative to the docs."""
    from ..lab.plots import _save

    _save(fig, ctx.fig_dir / f"{name}.png")
    return f"{ctx.fig_rel}/{name}.png"


def pyplot():
    from ..lab.plots import _pyplot

    return _pyplot()


def plateau_width(items: Sequence[Item], metric: str, tol: float, reference: float | None = None
                  ) -> dict[int, float]:
    """Per seed, the LR plateau in octaves: the contiguous run of grid lrs around the seed's best
    whose final ``metric`` is within a band of the best, log2(max/min) plus one grid step (a single
    point counts as one step: the grid's resolution). The band is ``tol·|reference|`` when a
    reference is given (compare arms with one absolute band, so a worse optimum does not earn a
    wider plateau), else ``tol·|best|``. Diverged runs are outside the plateau."""
    sign = -1 if higher_is_better(metric) else 1
    per: dict[int, dict[float, float]] = {}
    for cfg, d, s in items:
        per.setdefault(cfg.seed, {})[cfg.hparams["lr"]] = final(s, metric, d) if not s.get("diverged") else (
            -math.inf if sign < 0 else math.inf)
    out = {}
    for seed, by_lr in per.items():
        lrs = sorted(by_lr)
        i = min(range(len(lrs)), key=lambda k: sign * by_lr[lrs[k]])
        best = by_lr[lrs[i]]
        band = tol * abs(reference if reference is not None else best)

        def near(k: int) -> bool:
            return (by_lr[lrs[k]] <= best + band) if sign > 0 else (by_lr[lrs[k]] >= best - band)

        lo = hi = i
        while lo > 0 and near(lo - 1):
            lo -= 1
        while hi < len(lrs) - 1 and near(hi + 1):
            hi += 1
        step = math.log2(lrs[1] / lrs[0]) if len(lrs) > 1 else 1.0
        out[seed] = math.log2(lrs[hi] / lrs[lo]) + step
    return out


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread for the block, the previous setting restored afterwards.

    Monte-Carlo claims are many small tensor operations: on a loaded 2-core machine intra-op
    threads mostly hand work back and forth (measured up to ~100× slower), and one thread is as
    fast unloaded."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def _jsonable(x: Any) -> Any:
    if isinstance(x, inf.Interval):
        return x.to_json()
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


__all__ = ["Claim", "ClaimResult", "Context", "INCONCLUSIVE", "MIN_SEEDS", "NOT_SUPPORTED", "NOT_TESTED",
           "SUPPORTED", "Tuned", "VERDICTS", "final", "first_step", "fmt_mean", "gated", "group", "md_table", "one_thread", "plateau_width",
           "pyplot", "rows_of", "save_fig", "steps_to_fraction", "values"]
