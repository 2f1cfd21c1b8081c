"""Sweeps: a log-spaced LR grid × seeds × optimizers (× any other grid), resumable.

Every point is one run directory (:func:`muonlab.lab.records.run_path`); a point whose directory
holds ``done`` is skipped and a point with a checkpoint resumes, so rerunning a killed sweep with
the same arguments continues where it stopped and loses nothing already measured. All points are
validated (workload knobs, optimizer names and hyperparameters) before the first one trains.
Points run one after another in this process, or side by side in local processes, on Ray or on
Slurm (:mod:`.launch`): the same records, bitwise, at the same thread count.

Example (LR transfer across width, seed 001)::

    sweep("tiny_gpt", ["adamw", "muon"], "runs/transfer", seeds=[0, 1, 2], lr_points=5,
          grid={"width": [64, 128, 256]}, base=RunConfig("tiny_gpt", "", steps=300))
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .external import default_lr, is_import_path
from .launch import (
    Launcher,
    Started,
    Task,
    clear_failure,
    make_launcher,
    record_failure,
)
from .launch_progress import SweepProgress
from .records import read_json, run_path
from .runner import RunConfig, apply_setting, check_config


def lr_grid(low: float, high: float, points: int) -> list[float]:
    """``points`` log-spaced learning rates from ``low`` to ``high``, rounded to 3 significant digits.

    Rounding keeps directory names and tables readable (0.00316 rather than 0.0031622776...).
    """
    if points < 1:
        raise ValueError(f"lr points={points} must be >= 1")
    if not 0 < low <= high:
        raise ValueError(f"lr range ({low}, {high}) must satisfy 0 < low <= high")
    if points == 1:
        return [float(f"{math.sqrt(low * high):.3g}")]
    ratio = (high / low) ** (1 / (points - 1))
    return [float(f"{low * ratio**i:.3g}") for i in range(points)]


def default_lr_range(optimizer: str) -> tuple[float, float]:
    """The LR sweep range of ``optimizer``: the registry's ``search_space["lr"]``, else 10× either
    side of its recommended (or, for an import path, its class's default) lr."""
    if is_import_path(optimizer):
        lr = default_lr(optimizer)
        if lr is None:
            raise ValueError(f"optimizer {optimizer!r} has no default lr; pass --lrs or --lr-range")
        return lr / 10, lr * 10
    from ..registry import get_spec

    spec = get_spec(optimizer)
    if "lr" in spec.search_space:
        low, high = spec.search_space["lr"]
        return float(low), float(high)
    lr = spec.recommended.get("lr", spec.rule.hypers["lr"].default)
    return lr / 10, lr * 10


def sweep_points(workload: str, optimizers: Sequence[str], *, seeds: Sequence[int] = (0,),
                 lrs: Sequence[float] | None = None, lr_points: int = 5,
                 lr_range: tuple[float, float] | None = None, grid: dict[str, Sequence[Any]] | None = None,
                 base: RunConfig | None = None) -> list[RunConfig]:
    """Every point of the sweep, seeds outermost so a partial sweep already covers every config.

    Args:
        workload: workload name.
        optimizers: registry names and/or import paths.
        seeds: seeds per point (default (0,)).
        lrs: explicit learning rates for every optimizer; default: ``lr_grid`` over
            ``lr_range`` (or each optimizer's :func:`default_lr_range`) with ``lr_points`` points.
            An ``lr`` already in ``base.hparams`` fixes the lr instead (no LR axis).
        grid: other axes, ``{setting: [values]}`` with keys as for ``--set`` (e.g. ``width``).
        base: shared settings (knobs, hparams, aux, runner fields); workload/optimizer/seed are
            filled in per point.
    """
    if not optimizers:
        raise ValueError("no optimizers given")
    if not seeds:
        raise ValueError("no seeds given")
    base = dataclasses.replace(base or RunConfig(workload, ""), workload=workload)
    if "lr" in base.hparams and lrs:
        raise ValueError(f"lr={base.hparams['lr']} is set and lrs={list(lrs)} given: choose one")
    axes = list((grid or {}).items())
    points = []
    for seed in seeds:
        for opt in optimizers:
            if "lr" in base.hparams:
                opt_lrs = [base.hparams["lr"]]
            elif lrs:
                opt_lrs = list(lrs)
            else:
                opt_lrs = lr_grid(*(lr_range or default_lr_range(opt)), lr_points)
            for combo in itertools.product(*(values for _, values in axes)):
                cfg = dataclasses.replace(base, optimizer=opt, seed=seed)
                for (key, _), value in zip(axes, combo):
                    cfg = apply_setting(cfg, key, value)
                for lr in opt_lrs:
                    points.append(dataclasses.replace(cfg, hparams={**cfg.hparams, "lr": lr}))
    return points


class SweepError(RuntimeError):
    """Some points of a sweep failed; the others finished.

    Attributes:
        failures: ``[(config, run_dir, reason)]`` of the failed points (each also has a ``failed``
            file in its run directory).
        results: ``[(config, run_dir, done summary)]`` of the points that finished, in sweep order.
    """

    def __init__(self, failures: list[tuple[RunConfig, Path, str]], results: list[tuple[RunConfig, Path, dict]]):
        self.failures, self.results = failures, results
        lines = [f"  {d}: {reason}" for _, d, reason in failures]
        super().__init__(f"{len(failures)} of {len(failures) + len(results)} sweep point(s) failed "
                         "(rerun the same command to retry them):\n" + "\n".join(lines))


def sweep(workload: str, optimizers: Sequence[str], out: str | Path, *, seeds: Sequence[int] = (0,),
          lrs: Sequence[float] | None = None, lr_points: int = 5,
          lr_range: tuple[float, float] | None = None, grid: dict[str, Sequence[Any]] | None = None,
          base: RunConfig | None = None, progress: bool = True,
          log: Callable[[str], None] | None = None, launcher: Launcher | str | None = None,
          progress_interval: float = 30.0) -> list[tuple[RunConfig, Path, dict]]:
    """Run every point of the sweep under ``out`` (arguments as :func:`sweep_points`).

    Finished points are skipped, interrupted ones resume (from their checkpoints), failed ones
    are tried again: the run directories are the whole state, whichever launcher ran them.

    Args:
        launcher: where points run: a :class:`~.launch.Launcher` (e.g.
            ``make_launcher("local", jobs=4)``), a name of :data:`~.launch.LAUNCHERS`, or None
            (serial, in this process).
        progress: one progress display over the sweep on stderr (:mod:`.launch_progress`: a bar
            on a terminal, a line every ``progress_interval`` seconds otherwise); serially, also
            each run's own bar.
        log: receives one line per point (the CLI passes ``print``; the library prints nothing
            by itself).

    Every point runs with a fixed torch thread count, recorded in its config.json: its
    ``threads`` setting, else the launcher's ``threads``, else this process's count (what a serial
    sweep uses); a point that already started keeps the count it started with. So the records of
    a point are bitwise the same under every launcher at the same count.

    Returns:
        ``[(config, run_dir, done summary)]`` for every point, in sweep order.

    Raises:
        SweepError: after every other point ended, when some points failed (a worker raised or
            died), under every launcher; each has a ``failed`` file with the reason and traceback
            in its run directory.
    """
    points = sweep_points(workload, optimizers, seeds=seeds, lrs=lrs, lr_points=lr_points,
                          lr_range=lr_range, grid=grid, base=base)
    checked: set[str] = set()
    for cfg in points:  # fail before training anything: one check per distinct config
        key = repr(dataclasses.replace(cfg, seed=0, hparams={**cfg.hparams, "lr": 0}))
        if key not in checked:
            check_config(cfg)
            checked.add(key)
    if launcher is None or isinstance(launcher, str):
        launcher = make_launcher(launcher or "serial")
    launcher.check()
    launcher.prepare(Path(out), progress)
    say = log or (lambda _msg: None)
    default_threads = launcher.threads or torch.get_num_threads()
    results: dict[int, tuple[RunConfig, Path, dict]] = {}
    tasks = []
    for i, cfg in enumerate(points):
        run_dir = run_path(out, cfg.workload, cfg.optimizer, cfg.settings(), cfg.seed)
        if (run_dir / "done").exists():
            results[i] = (cfg, run_dir, read_json(run_dir / "done"))
            say(f"{_head(i, points)}: done already, skipped")
            continue
        clear_failure(run_dir)  # this attempt decides
        threads = cfg.threads or default_threads
        started = _started_threads(run_dir)
        if started and started != threads:  # a resumed run must continue as it began
            say(f"note: {run_dir} started with {started} threads and keeps them (asked: {threads})")
            threads = started
        tasks.append(Task(i, dataclasses.replace(cfg, threads=threads), run_dir))
    if tasks:
        for note in launcher.notes(max(t.cfg.threads for t in tasks)):
            say(f"note: {note}")
    bar = SweepProgress(len(points), len(results), enabled=progress and bool(tasks), interval=progress_interval)
    failures, t_start = [], {}
    try:
        for event in launcher.run(tasks):
            task = event.task
            if isinstance(event, Started):
                t_start[task.index] = time.perf_counter()
                bar.started()
                continue
            seconds = time.perf_counter() - t_start.get(task.index, time.perf_counter())
            bar.ended(event.error is None)
            if event.error is not None:
                record_failure(task.run_dir, event.error, launcher=launcher.name, overwrite=False)
                failures.append((points[task.index], task.run_dir, event.error))
                bar.write(say, f"{_head(task.index, points)}: FAILED: {event.error} -> {task.run_dir}")
                continue
            summary = event.summary
            results[task.index] = (points[task.index], task.run_dir, summary)
            metric = next((k for k in ("val/loss", "val/acc") if k in summary), None)
            result = "diverged" if summary["diverged"] else (
                f"{metric}={summary[metric]:.4g}" if metric else "finished")
            bar.write(say, f"{_head(task.index, points)}: {result} ({seconds:.1f} s) -> {task.run_dir}")
    finally:
        bar.close()
    ordered = [results[i] for i in sorted(results)]
    if failures:
        raise SweepError(failures, ordered)
    return ordered


def _head(i: int, points: list[RunConfig]) -> str:
    cfg = points[i]
    return f"[{i + 1}/{len(points)}] {cfg.optimizer} lr={cfg.hparams['lr']:.3g} seed={cfg.seed}"


def _started_threads(run_dir: Path) -> int:
    """The thread count an unfinished run started with (0 when it has not started)."""
    try:
        return int(read_json(run_dir / "config.json")["run"].get("threads") or 0)
    except (FileNotFoundError, KeyError, TypeError, ValueError):
        return 0
