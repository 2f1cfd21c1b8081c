"""Per-arm learning-rate search: an arm's best lr with fewer runs than a full grid, same guarantees.

:func:`search` minimises ``score(lr)`` (lower is better; e.g. the median final loss over tuning
seeds, or minus an accuracy) over learning rates on a log scale and returns a
:class:`SearchResult`. Every strategy evaluates each lr at most once (results are cached by lr;
lrs are rounded to 3 significant digits, as :func:`muonlab.lab.sweep.lr_grid` does), treats a
non-finite score (NaN, ±inf: a diverged run) as +inf, breaks ties towards the smaller lr, and
stops with the same guarantee as the grid: the best lr is *interior* when an evaluated lr on each
side of it is at most one resolution step (``ratio``) away and scores no better.

Strategies:

- ``"grid"`` (the reference; what :meth:`muonlab.claims.base.Context.tune` always did): ``points``
  lrs ``ratio`` apart centred on ``center``; while the best lr is on an edge, one more lr past that
  edge, up to ``max_extend`` times.
- ``"refine"``: a coarse grid ``coarse`` apart (default ``max(ratio**2, 4)``) over at least the grid's
  span, extended past an edge by ``coarse`` like the grid; then, one lr per round, the geometric
  midpoint of the wider-than-``ratio`` gap next to the best lr (the side whose neighbour scores
  better first), until both of the best lr's gaps are at most ``ratio``. On quadratic-in-log-lr
  scores with and without noise it never ran more lrs than the grid at the same resolution and ran
  ~15% fewer at ratio 2, ~40% fewer at √2 and ~60% fewer at 2**(1/4) (docs/search.md). Its
  extensions step by ``coarse``, so ``max_extend`` reaches further than the grid's.
- ``"optuna"`` (extra ``pip install muonlab[optuna]``): ``trials`` lrs from Optuna's TPE sampler,
  seeded (``seed``) and sequential, so deterministic, over the grid's span; then extended and
  refined as ``"refine"`` so that the same guarantee holds. In one dimension it is not cheaper than
  ``"refine"``; it is there for users who want Optuna's samplers on their own score.

``"refine"`` and ``"optuna"`` evaluate only lrs on the lattice ``center·ratio**k`` (k an integer), so
no two evaluated lrs are closer than one resolution step and noise cannot rank near-duplicates.

With ``plateau_tol`` (relative), the search also extends while the lowest or highest evaluated lr
scores within ``plateau_tol·|best|`` of the best, so an LR plateau is not cut by the edges, and
(``"refine"``/``"optuna"``) refines the plateau's two boundaries to ``ratio``;
:attr:`SearchResult.plateau` is the contiguous run of lrs around the best within that band.

Example::

    res = search(lambda lr: (math.log(lr / 0.03)) ** 2, 0.01, strategy="refine")
    res.best, res.interior, res.evaluations   # 0.04, True, 6 (0.0025 0.01 0.04, 0.16 past the edge, 0.02 0.08)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

STRATEGIES = ("grid", "refine", "optuna")


@dataclass
class SearchResult:
    """What a search evaluated and found.

    Attributes:
        strategy: the strategy that ran.
        lrs: every evaluated lr, ascending (for ``"grid"``: the final grid).
        scores: the score at each of ``lrs`` (non-finite scores as +inf).
        order: the evaluated lrs in the order they were evaluated.
        best: the lr with the lowest score (ties: the smaller lr).
        interior: ``best`` has an evaluated lr on each side within one ``ratio`` step (the grid:
            ``best`` is not on an edge of the grid).
        flat: every evaluated lr scored the same: there is no optimum to locate.
        extended: rounds that added lrs past an edge (at most ``max_extend``).
        plateau: with ``plateau_tol``, the lowest and highest lr of the contiguous run around
            ``best`` scoring within ``plateau_tol·|best score|`` of it; else None.
        plateau_interior: neither the lowest nor the highest evaluated lr is within that band
            (``"refine"``/``"optuna"``: and the plateau's boundaries are resolved to ``ratio``);
            True without ``plateau_tol``.
        ratio: the resolution (a factor) the search ran at.
    """

    strategy: str
    lrs: list[float]
    scores: list[float]
    order: list[float]
    best: float
    interior: bool
    flat: bool
    extended: int
    ratio: float
    plateau: tuple[float, float] | None = None
    plateau_interior: bool = True

    @property
    def evaluations(self) -> int:
        """How many lrs were evaluated (each once)."""
        return len(self.order)

    @property
    def located(self) -> bool:
        """The optimum is interior and the scores are not all the same."""
        return self.interior and not self.flat

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "evaluations": self.evaluations, "located": self.located}


@dataclass
class _Evaluations:
    """The cache: each lr is scored once; a round's new lrs go to ``score_many`` together."""

    score: Callable[[float], float] | None
    score_many: Callable[[list[float]], Sequence[float]] | None
    max_evals: int
    values: dict[float, float] = field(default_factory=dict)
    order: list[float] = field(default_factory=list)

    def run(self, lrs: Sequence[float]) -> None:
        new = list(dict.fromkeys(lr for lr in lrs if lr not in self.values))
        if not new:
            return
        if len(self.order) + len(new) > self.max_evals:
            raise RuntimeError(f"lr search needs more than max_evals={self.max_evals} evaluations "
                               f"(evaluated {len(self.order)}, next {new})")
        got = list(self.score_many(new)) if self.score_many else [self.score(lr) for lr in new]
        if len(got) != len(new):
            raise ValueError(f"score_many returned {len(got)} scores for {len(new)} lrs {new}")
        for lr, v in zip(new, got):
            v = float(v)
            self.values[lr] = v if math.isfinite(v) else math.inf
        self.order += new

    def best(self, lrs: Sequence[float]) -> float:
        return min(lrs, key=lambda lr: (self.values[lr], lr))


def search(score: Callable[[float], float] | None, center: float, *, strategy: str = "grid", ratio: float = 2.0,
           points: int = 5, max_extend: int = 6, plateau_tol: float | None = None, coarse: float | None = None,
           trials: int | None = None, seed: int = 0,
           score_many: Callable[[list[float]], Sequence[float]] | None = None, max_evals: int = 200
           ) -> SearchResult:
    """Search the lr minimising ``score`` around ``center`` (see the module docstring).

    Args:
        score: ``lr -> float``, lower is better; NaN/±inf count as +inf (None when ``score_many``
            is given).
        center: the prior optimum (> 0): the first grid is centred on it.
        strategy: ``"grid"``, ``"refine"`` or ``"optuna"``.
        ratio: the resolution, a factor > 1 (default 2; ``"refine"``/``"optuna"``: >= 1.02 so
            neighbours stay distinct at 3 digits): the grid's step, and the largest gap
            ``"refine"``/``"optuna"`` leave on either side of the best lr.
        points: the grid's first points (>= 3); every strategy starts over (at least) the same span
            ``ratio**(points-1)`` (default 16×).
        max_extend: rounds that may add lrs past an edge (default 6).
        plateau_tol: also extend (and refine) until the LR plateau within this relative band of the
            best score is off the edges; None (default): optimum only.
        coarse: ``"refine"``/``"optuna"``'s coarse step and extension factor, rounded to a whole
            number of ``ratio`` steps (default ``max(ratio**2, 4)``).
        trials: ``"optuna"``'s sampler budget in new lrs before refining (default
            ``max(3, (points + 1) // 2)``: in one dimension the refinement does most of the work).
        seed: ``"optuna"``'s sampler seed (default 0).
        score_many: optional ``[lr] -> [score]``: each round's new lrs in one call (e.g. one sweep
            that runs them in parallel); ``score`` is then unused.
        max_evals: a bound on evaluations (default 200): a search that needs more raises.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"lr search strategy {strategy!r} is not one of {STRATEGIES}")
    if not (math.isfinite(center) and center > 0) or not ratio > 1 or points < 3:
        raise ValueError(f"lr search: center={center}, ratio={ratio}, points={points} need center > 0, "
                         "ratio > 1, points >= 3")
    if max_extend < 0 or (plateau_tol is not None and not plateau_tol >= 0):
        raise ValueError(f"lr search: max_extend={max_extend}, plateau_tol={plateau_tol} must be >= 0")
    if score is None and score_many is None:
        raise ValueError("lr search: give score or score_many")
    ev = _Evaluations(score, score_many, max_evals)
    if strategy == "grid":
        return _grid(ev, center, ratio, points, max_extend, plateau_tol)
    if ratio < 1.02:
        raise ValueError(f"lr search {strategy!r}: ratio={ratio} must be >= 1.02")
    if coarse is not None and not coarse > 1:
        raise ValueError(f"lr search: coarse={coarse} must be > 1")
    step = max(1, round(math.log(max(ratio**2, 4.0) if coarse is None else coarse) / math.log(ratio)))
    lattice = _Lattice(ev, center, ratio)
    reach = math.ceil((points - 1) / 2 - 1e-9)  # lattice steps from the centre the grid reaches
    if strategy == "refine":
        n = math.ceil(reach / step - 1e-9)
        lattice.run([j * step for j in range(-n, n + 1)])
    else:
        _optuna(lattice, reach, max(3, (points + 1) // 2) if trials is None else trials, seed)
    return _refine(lattice, strategy, step, max_extend, plateau_tol)


def _grid(ev: _Evaluations, center: float, ratio: float, points: int, max_extend: int,
          plateau_tol: float | None) -> SearchResult:
    """The full grid with edge extension: exactly the loop Context.tune has always run."""
    half = (points - 1) / 2
    grid = [_round(center * ratio ** (i - half)) for i in range(points)]
    extended = 0
    while True:
        ev.run(grid)
        s = ev.values
        best = ev.best(grid)
        edge = best in (grid[0], grid[-1])
        flat = len({s[lr] for lr in grid}) == 1  # e.g. every lr diverged or censored: nothing to locate
        lo_flat = hi_flat = False
        if plateau_tol is not None:
            lo_flat, hi_flat = (_within(s[lr], s[best], plateau_tol) for lr in (grid[0], grid[-1]))
        if flat or not (edge or lo_flat or hi_flat) or extended >= max_extend:
            break
        if best == grid[0] or lo_flat:
            grid = [_round(grid[0] / ratio)] + grid
        if best == grid[-1] or hi_flat:
            grid = grid + [_round(grid[-1] * ratio)]
        extended += 1
    plateau = _plateau(grid, s, best, plateau_tol) if plateau_tol is not None else None
    return SearchResult("grid", grid, [s[lr] for lr in grid], list(ev.order), best, not edge, flat, extended,
                        ratio, plateau, not (lo_flat or hi_flat))


@dataclass
class _Lattice:
    """lrs ``center·ratio**k`` (k an integer, rounded to 3 digits): refine and optuna evaluate only
    these, so no two lrs are closer than one resolution step (noise cannot rank near-duplicates)
    and a gap is resolved exactly when its ends are adjacent."""

    ev: _Evaluations
    center: float
    ratio: float
    ks: dict[int, float] = field(default_factory=dict)  # lattice index -> its score

    def lr(self, k: int) -> float:
        return _round(self.center * self.ratio**k)

    def run(self, ks: Sequence[int]) -> None:
        new = [k for k in dict.fromkeys(ks) if k not in self.ks]
        self.ev.run([self.lr(k) for k in new])
        self.ks.update({k: self.ev.values[self.lr(k)] for k in new})


def _refine(lat: _Lattice, strategy: str, step: int, max_extend: int, plateau_tol: float | None) -> SearchResult:
    """Extend past an edge by ``step`` lattice steps, then bisect the gaps wider than one step next
    to the best lr and, with ``plateau_tol``, at the plateau's boundaries; one lr per round."""
    s = lat.ks
    extended = 0
    while True:
        ks = sorted(s)
        best = min(ks, key=lambda k: (s[k], k))
        i = ks.index(best)
        flat = len(set(s.values())) == 1  # e.g. every lr diverged or censored: nothing to locate
        if flat:
            break
        low = best == ks[0] or (plateau_tol is not None and _within(s[ks[0]], s[best], plateau_tol))
        high = best == ks[-1] or (plateau_tol is not None and _within(s[ks[-1]], s[best], plateau_tol))
        if (low or high) and extended < max_extend:
            lat.run(([ks[0] - step] if low else []) + ([ks[-1] + step] if high else []))
            extended += 1
            continue
        if best in (ks[0], ks[-1]):
            break  # still on an edge with no extension left: not located, refining cannot help
        # the best lr's gaps, the side whose neighbour scores better first (the optimum is likelier there)
        gaps = sorted([(ks[i - 1], best, ks[i - 1]), (best, ks[i + 1], ks[i + 1])],
                      key=lambda g: (s[g[2]], g[0] - g[1], g[0]))
        if plateau_tol is not None:
            lo, hi = _plateau(ks, s, best, plateau_tol)
            j, m = ks.index(lo), ks.index(hi)
            gaps += [(ks[j - 1], lo, 0)] if j > 0 else []
            gaps += [(hi, ks[m + 1], 0)] if m + 1 < len(ks) else []
        gap = next((g for g in gaps if g[1] - g[0] > 1), None)
        if gap is None:
            break
        lat.run([(gap[0] + gap[1]) // 2])
    ks = sorted(s)
    i = ks.index(best)
    interior = 0 < i < len(ks) - 1 and ks[i + 1] - ks[i - 1] == 2
    plateau, plateau_interior = None, True
    if plateau_tol is not None:
        lo, hi = _plateau(ks, s, best, plateau_tol)
        j, m = ks.index(lo), ks.index(hi)
        plateau = (lat.lr(lo), lat.lr(hi))
        plateau_interior = (j > 0 and m + 1 < len(ks) and ks[j] - ks[j - 1] == 1 and ks[m + 1] - ks[m] == 1
                            and not _within(s[ks[0]], s[best], plateau_tol)
                            and not _within(s[ks[-1]], s[best], plateau_tol))
    return SearchResult(strategy, [lat.lr(k) for k in ks], [s[k] for k in ks], list(lat.ev.order), lat.lr(best),
                        interior, flat, extended, lat.ratio, plateau, plateau_interior)


def _optuna(lat: _Lattice, reach: int, trials: int, seed: int) -> None:
    """``trials`` new lattice lrs within ``reach`` steps of the centre from a seeded TPE sampler,
    one at a time (sequential, so the same seed gives the same lrs)."""
    if trials < 1:
        raise ValueError(f"lr search: trials={trials} must be >= 1")
    try:
        import optuna
    except ImportError as e:
        raise ImportError("the 'optuna' lr search needs Optuna: pip install muonlab[optuna]") from e
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per trial; the caller logs runs
    try:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, min(10, trials // 2)))
        study = optuna.create_study(direction="minimize", sampler=sampler)
        space = {"k": optuna.distributions.IntDistribution(-reach, reach)}
        start, asked = len(lat.ks), 0
        # a suggestion already scored costs no run; the lattice is small, so bound the asks
        while len(lat.ks) - start < min(trials, 2 * reach + 1) and asked < 20 * trials:
            trial = study.ask(space)
            asked += 1
            lat.run([trial.params["k"]])
            study.tell(trial, lat.ks[trial.params["k"]])
    finally:
        optuna.logging.set_verbosity(before)


def _within(v: float, best: float, tol: float) -> bool:
    """``v`` (lower is better) within ``tol`` (relative) of ``best``."""
    return v <= best + tol * abs(best)


def _plateau(lrs: Sequence[float], s: dict[float, float], best: float, tol: float) -> tuple[float, float]:
    """The lowest and highest lr of the contiguous run around ``best`` within the band."""
    lo = hi = list(lrs).index(best)
    while lo > 0 and _within(s[lrs[lo - 1]], s[best], tol):
        lo -= 1
    while hi + 1 < len(lrs) and _within(s[lrs[hi + 1]], s[best], tol):
        hi += 1
    return lrs[lo], lrs[hi]


def _round(x: float) -> float:
    return float(f"{x:.3g}")


__all__ = ["STRATEGIES", "SearchResult", "search"]
