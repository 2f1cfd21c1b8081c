"""Per-arm lr search (muonlab.lab.search) on synthetic scores, and Context.tune on top of it.

The scores are quadratic in log2 lr (optionally with noise that is a fixed function of the lr, like
a mean over fixed tuning seeds), flat plateaus, optima far outside the first range, and a diverging
region scoring inf/NaN. "refine" must find what "grid" finds, to the same resolution, with fewer
evaluations; "grid" through Context.tune must give exactly what the old tune loop gave."""

from __future__ import annotations

import math

import numpy as np
import pytest

from muonlab.claims.base import Context, Tuned, final, higher_is_better
from muonlab.lab.runner import RunConfig
from muonlab.lab.search import STRATEGIES, search


def quad(opt: float, noise: float = 0.0):
    """(log2 lr/opt)², plus noise that is fixed per lr (a mean over fixed seeds is)."""
    def f(lr: float) -> float:
        rng = np.random.default_rng([7, round(math.log(lr) * 1e6) % 2**31])
        return math.log2(lr / opt) ** 2 + noise * rng.standard_normal()
    return f


def counted(f):
    calls: dict[float, int] = {}

    def g(lr: float) -> float:
        calls[lr] = calls.get(lr, 0) + 1
        return f(lr)
    return g, calls


def octaves(a: float, b: float) -> float:
    return abs(math.log2(a / b))


def check_located(res, opt: float, ratio: float, slack: float = 0.0) -> None:
    """Best interior (an evaluated, not better lr on each side within one step) and within the
    resolution of the true optimum."""
    assert res.located and res.interior and not res.flat
    i = res.lrs.index(res.best)
    assert 0 < i < len(res.lrs) - 1
    for j in (i - 1, i + 1):
        assert res.scores[j] >= res.scores[i]
        assert octaves(res.lrs[j], res.best) <= math.log2(ratio) + 0.02
    assert octaves(res.best, opt) <= math.log2(ratio) / 2 + 0.02 + slack


# (resolution, grid points over the same 16x span)
RESOLUTIONS = [(2.0, 5), (2**0.5, 9), (2**0.25, 17)]


@pytest.mark.parametrize("ratio,points", RESOLUTIONS)
@pytest.mark.parametrize("opt", [0.0031, 0.02, 0.027, 0.09])
def test_refine_finds_the_quadratic_optimum_with_fewer_runs(ratio, points, opt):
    grid = search(quad(opt), 0.02, strategy="grid", ratio=ratio, points=points)
    f, calls = counted(quad(opt))
    ref = search(f, 0.02, strategy="refine", ratio=ratio, points=points)
    check_located(grid, opt, ratio)
    check_located(ref, opt, ratio)
    assert set(calls.values()) == {1} and len(calls) == ref.evaluations == len(ref.lrs)  # no lr twice
    assert ref.evaluations <= grid.evaluations
    if ratio < 2:
        assert ref.evaluations < grid.evaluations


def test_refine_evaluation_counts_pinned():
    """The counts for one centred optimum: the grid runs 5 / 9 / 17 lrs, refine 5 / 7 / 9."""
    counts = [(search(quad(0.02), 0.02, strategy=s, ratio=r, points=p).evaluations) for r, p in RESOLUTIONS
              for s in ("grid", "refine")]
    assert counts == [5, 5, 9, 7, 17, 9]


@pytest.mark.parametrize("ratio,points", RESOLUTIONS[:2])
def test_noisy_scores_refine_stays_within_a_step_and_cheaper_overall(ratio, points):
    tot = {"grid": 0, "refine": 0}
    for opt in np.geomspace(0.02 / 20, 0.02 * 20, 13):
        for s in tot:
            res = search(quad(opt, noise=0.1), 0.02, strategy=s, ratio=ratio, points=points)
            tot[s] += res.evaluations
            check_located(res, opt, ratio, slack=math.log2(ratio) / 2)  # noise may cost one step
    assert tot["refine"] < 0.9 * tot["grid"], tot


@pytest.mark.parametrize("opt", [0.02 * 40, 0.02 / 40])
def test_optimum_beyond_the_first_range_on_either_side(opt):
    grid = search(quad(opt), 0.02, strategy="grid")
    ref = search(quad(opt), 0.02, strategy="refine")
    check_located(grid, opt, 2.0)
    check_located(ref, opt, 2.0)
    assert grid.extended >= 3 and ref.extended >= 2
    assert ref.evaluations < grid.evaluations, (ref.evaluations, grid.evaluations)


def test_out_of_reach_optimum_is_not_located():
    for s in ("grid", "refine"):
        res = search(quad(1e-9), 0.02, strategy=s, max_extend=2)
        assert res.extended == 2 and not res.interior and not res.located
        assert res.best == res.lrs[0]


@pytest.mark.parametrize("bad", [math.inf, math.nan, -math.inf])
def test_diverging_region_above_a_cliff(bad):
    """Loss falls towards lr = 0.3 but every lr above 0.05 diverges: the best is just below the cliff."""
    def f(lr):
        return bad if lr > 0.05 else math.log2(lr / 0.3) ** 2

    for s in ("grid", "refine"):
        res = search(f, 0.02, strategy=s)
        assert res.located and res.best <= 0.05 and octaves(res.best, 0.05) <= 1.0 + 0.02
        assert math.inf in res.scores and not any(math.isnan(v) for v in res.scores)
        i = res.lrs.index(res.best)
        assert res.scores[i + 1] == math.inf and octaves(res.lrs[i + 1], res.best) <= 1.0 + 0.02


def test_everything_diverged_is_flat_not_located():
    for s in ("grid", "refine"):
        res = search(lambda lr: math.nan, 0.02, strategy=s)
        assert res.flat and not res.located and res.extended == 0 and res.evaluations <= 5


def plateau_on(a: float, b: float):
    """1.0 on [a, b], rising a unit per octave outside."""
    return lambda lr: 1.0 + max(0.0, math.log2(a / lr), math.log2(lr / b))


plateau = plateau_on(0.01, 0.1)


@pytest.mark.parametrize("ratio,points", RESOLUTIONS[:2])
@pytest.mark.parametrize("a,b", [(0.01, 0.1), (0.001, 0.05)])
def test_flat_plateau_estimate_as_good_as_the_grid(ratio, points, a, b):
    grid = search(plateau_on(a, b), 0.03, strategy="grid", plateau_tol=0.05, ratio=ratio, points=points)
    f, calls = counted(plateau_on(a, b))
    ref = search(f, 0.03, strategy="refine", plateau_tol=0.05, ratio=ratio, points=points)
    for res in (grid, ref):
        assert res.located and res.plateau_interior
        lo, hi = res.plateau
        assert a <= lo * 2**0.05 and octaves(lo, a) <= math.log2(ratio) + 0.02  # each edge within a step
        assert hi <= b * 2**0.05 and octaves(hi, b) <= math.log2(ratio) + 0.02
        assert res.best == lo  # ties go to the smaller lr
        assert res.scores[0] > 1.05 and res.scores[-1] > 1.05  # the plateau is off both edges
    assert set(calls.values()) == {1}
    assert ref.evaluations <= grid.evaluations
    if (a, ratio) == (0.001, 2**0.5):  # a plateau reaching past the first range, at a fine resolution
        assert (ref.evaluations, grid.evaluations) == (11, 15)


def test_plateau_wider_than_every_evaluated_lr_is_flat():
    for s in ("grid", "refine"):
        res = search(plateau_on(1e-4, 10.0), 0.03, strategy=s, plateau_tol=0.05)
        assert res.flat and not res.located and not res.plateau_interior


def test_score_many_gets_each_round_at_once():
    rounds = []

    def many(lrs):
        rounds.append(list(lrs))
        return [quad(0.3)(lr) for lr in lrs]

    res = search(None, 0.02, strategy="grid", score_many=many)
    assert rounds[0] == [0.005, 0.01, 0.02, 0.04, 0.08] and all(len(r) == 1 for r in rounds[1:])
    assert [lr for r in rounds for lr in r] == res.order
    rounds.clear()
    ref = search(None, 0.02, strategy="refine", score_many=many)
    assert rounds[0] == [0.005, 0.02, 0.08] and sorted(lr for r in rounds for lr in r) == ref.lrs


def test_bad_input_names_the_value():
    with pytest.raises(ValueError, match="'bisect'"):
        search(quad(0.02), 0.02, strategy="bisect")
    with pytest.raises(ValueError, match="ratio=1.0"):
        search(quad(0.02), 0.02, ratio=1.0)
    with pytest.raises(ValueError, match="center=-1"):
        search(quad(0.02), -1, strategy="refine")
    with pytest.raises(ValueError, match="returned 1 scores for 3"):
        search(None, 0.02, strategy="refine", score_many=lambda lrs: [1.0])
    with pytest.raises(RuntimeError, match="max_evals=4"):
        search(quad(0.02), 0.02, max_evals=4)
    assert STRATEGIES == ("grid", "refine", "optuna")


def test_optuna_missing_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"muonlab\[optuna\]"):
        search(quad(0.02), 0.02, strategy="optuna")


def test_optuna_is_deterministic_and_located():
    pytest.importorskip("optuna")
    for opt in (0.02, 0.3):
        a = search(quad(opt, noise=0.05), 0.02, strategy="optuna", seed=3, trials=4)
        b = search(quad(opt, noise=0.05), 0.02, strategy="optuna", seed=3, trials=4)
        assert a.order == b.order and a.scores == b.scores and a.best == b.best
        check_located(a, opt, 2.0, slack=0.5)
        assert len(set(a.order)) == a.evaluations
    seeds = {tuple(search(quad(0.02), 0.02, strategy="optuna", seed=s, ratio=2**0.5, points=17,
                          trials=6).order[:6]) for s in range(3)}
    assert len(seeds) > 1  # the seed drives the sampler


# ---- Context.tune --------------------------------------------------------------------------------


def _old_tune(ctx, workload, optimizer, center, *, metric="val/loss", ratio=2.0, points=5, max_extend=6,
              arm=None, seeds=None, plateau_tol=None, score=None, **sweep_kw):
    """Context.tune as it was before lr search strategies (the reference for strategy="grid")."""
    def within(v, best, tol, sign):
        return v <= best + tol * abs(best) if sign > 0 else v >= best - tol * abs(best)

    def rnd(x):
        return float(f"{x:.3g}")

    half = (points - 1) / 2
    grid = [rnd(center * ratio ** (i - half)) for i in range(points)]
    extended = 0
    while True:
        items = ctx.sweep(workload, [optimizer], lrs=grid, seeds=list(seeds or ctx.tune_seeds), **sweep_kw)
        value = score or (lambda s, d: final(s, metric, d))
        med = {lr: float(np.median([value(s, d) for c, d, s in items if c.hparams["lr"] == lr])) for lr in grid}
        sign = 1 if score else -1 if higher_is_better(metric) else 1
        best = min(grid, key=lambda lr: (sign * med[lr], lr))
        edge = best in (grid[0], grid[-1])
        flat = len(set(med.values())) == 1
        lo_flat = hi_flat = False
        if plateau_tol is not None:
            near = [lr for lr in grid if within(med[lr], med[best], plateau_tol, sign)]
            lo_flat, hi_flat = grid[0] in near, grid[-1] in near
        if flat or not (edge or lo_flat or hi_flat) or extended >= max_extend:
            break
        if best == grid[0] or lo_flat:
            grid = [rnd(grid[0] / ratio)] + grid
        if best == grid[-1] or hi_flat:
            grid = grid + [rnd(grid[-1] * ratio)]
        extended += 1
    return Tuned(arm or optimizer, best, grid, [med[lr] for lr in grid], not edge and not flat, extended, items,
                 plateau_located=not (lo_flat or hi_flat), flat=flat)


def _ctx(tmp_path, loss, trained=None):
    """A Context whose sweep returns synthetic summaries ``loss(lr, seed)`` (no training); it
    records each (lr, seed) it would have trained, a repeat being read back as a finished run."""
    ctx = Context(tmp_path, tmp_path, "figs", "small", {"seeds": 8, "tune_seeds": 3}, log=lambda _: None)
    done = set()

    def fake_sweep(workload, optimizers, *, lrs=None, seeds=None, **kw):
        out = []
        for s in seeds:
            for lr in lrs:
                if (lr, s) not in done and trained is not None:
                    trained.append((lr, s))
                done.add((lr, s))
                out.append((RunConfig("w", optimizers[0], seed=s, hparams={"lr": lr}), tmp_path, loss(lr, s)))
        return out

    ctx.sweep = fake_sweep
    return ctx


CASES = [
    ("right of the grid", lambda lr, s: {"val/loss": math.log2(lr / 0.5) ** 2 + 0.01 * s}, {}),
    ("stuck", lambda lr, s: {"val/loss": math.log2(lr / 1e-9) ** 2}, {"max_extend": 2, "points": 3}),
    ("plateau", lambda lr, s: {"val/loss": plateau(lr) + 0.001 * s}, {"plateau_tol": 0.05, "center": 0.03}),
    ("accuracy", lambda lr, s: {"val/acc": 1 - 0.1 * math.log2(lr / 0.004) ** 2}, {"metric": "val/acc"}),
    ("diverged", lambda lr, s: {"val/loss": math.inf if lr > 0.03 else 1 / lr, "diverged": lr > 0.03}, {}),
    ("all diverged", lambda lr, s: {"val/loss": math.nan, "diverged": True}, {}),
    ("score", lambda lr, s: {"val/loss": 1.0, "steps": abs(math.log2(lr / 0.011)) + s},
     {"score": lambda summary, d: summary["steps"]}),
]


@pytest.mark.parametrize("name,loss,kw", CASES, ids=[c[0] for c in CASES])
def test_tune_grid_reproduces_the_old_tune_exactly(tmp_path, name, loss, kw):
    kw = {"center": 0.02, **kw}
    center = kw.pop("center")
    new = _ctx(tmp_path, loss).tune("w", "muon", center, **kw)
    old = _old_tune(_ctx(tmp_path, loss), "w", "muon", center, **kw)
    assert new == old  # every field: lr, grid, medians, located, extended, runs (in order), plateau, flat
    assert new.to_json() == old.to_json() and "strategy" not in new.to_json()


def test_tune_refine_fewer_runs_each_trained_once(tmp_path):
    loss = CASES[0][1]
    grid_runs, ref_runs = [], []
    g = _ctx(tmp_path, loss, grid_runs).tune("w", "muon", 0.02)
    r = _ctx(tmp_path, loss, ref_runs).tune("w", "muon", 0.02, strategy="refine")
    assert r.located and g.located and octaves(r.lr, 0.5) <= 0.5 and r.lr == g.lr
    assert len(set(ref_runs)) == len(ref_runs) == 3 * len(r.grid) < len(grid_runs)
    assert sorted({it[0].hparams["lr"] for it in r.runs}) == r.grid and len(r.runs) == 3 * len(r.grid)
    assert r.to_json()["strategy"] == "refine" and r.medians == [float(np.median(
        [loss(lr, s)["val/loss"] for s in (1000, 1001, 1002)])) for lr in r.grid]
