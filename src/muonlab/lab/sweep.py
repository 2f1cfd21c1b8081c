"""Sweeps: a log-spaced LR grid × seeds × optimizers (× any other grid), resumable.

Every point is one run directory (:func:`muonlab.lab.records.run_path`); a point whose directory
holds ``done`` is skipped and a point with a checkpoint resumes, so rerunning a killed sweep with
the same arguments continues where it stopped and loses nothing already measured. All points are
validated (workload knobs, optimizer names and hyperparameters) before the first one trains.

Example (LR transfer across width, seed 001)::

    sweep("tiny_gpt", ["adamw", "muon"], "runs/transfer", seeds=[0, 1, 2], lr_points=5,
          grid={"width": [64, 128, 256]}, base=RunConfig("tiny_gpt", "", steps=300))
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .external import default_lr, is_import_path
from .records import run_path
from .runner import RunConfig, apply_setting, check_config, run_one


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


def sweep(workload: str, optimizers: Sequence[str], out: str | Path, *, seeds: Sequence[int] = (0,),
          lrs: Sequence[float] | None = None, lr_points: int = 5,
          lr_range: tuple[float, float] | None = None, grid: dict[str, Sequence[Any]] | None = None,
          base: RunConfig | None = None, progress: bool = True,
          log: Callable[[str], None] | None = None) -> list[tuple[RunConfig, Path, dict]]:
    """Run every point of the sweep under ``out`` (arguments as :func:`sweep_points`).

    Finished points are skipped, interrupted ones resume. ``log`` receives one line per point
    (the CLI passes ``print``; the library prints nothing by itself).

    Returns:
        ``[(config, run_dir, done summary)]`` for every point, in sweep order.
    """
    points = sweep_points(workload, optimizers, seeds=seeds, lrs=lrs, lr_points=lr_points,
                          lr_range=lr_range, grid=grid, base=base)
    checked: set[str] = set()
    for cfg in points:  # fail before training anything: one check per distinct config
        key = repr(dataclasses.replace(cfg, seed=0, hparams={**cfg.hparams, "lr": 0}))
        if key not in checked:
            check_config(cfg)
            checked.add(key)
    say = log or (lambda _msg: None)
    results = []
    for i, cfg in enumerate(points, 1):
        run_dir = run_path(out, cfg.workload, cfg.optimizer, cfg.settings(), cfg.seed)
        head = f"[{i}/{len(points)}] {cfg.optimizer} lr={cfg.hparams['lr']:.3g} seed={cfg.seed}"
        if (run_dir / "done").exists():
            summary = run_one(cfg, run_dir, progress=False)
            say(f"{head}: done already, skipped")
        else:
            t0 = time.perf_counter()
            summary = run_one(cfg, run_dir, progress=progress)
            metric = next((k for k in ("val/loss", "val/acc") if k in summary), None)
            result = "diverged" if summary["diverged"] else (
                f"{metric}={summary[metric]:.4g}" if metric else "finished")
            say(f"{head}: {result} ({time.perf_counter() - t0:.1f} s) -> {run_dir}")
        results.append((cfg, run_dir, summary))
    return results
