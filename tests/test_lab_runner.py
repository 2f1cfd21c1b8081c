"""The runner and sweeps: records, schedule, resume after a kill, skipping finished points, atomicity."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import types

import pytest
import torch

from muonlab.lab import records
from muonlab.lab.records import load_run, read_jsonl, run_path, write_json
from muonlab.lab.runner import RunConfig, apply_setting, build_optimizers, lr_multiplier, pick_device, run_one
from muonlab.lab.sweep import SweepError, lr_grid, sweep, sweep_points
from muonlab.lab.workloads import make_workload
from muonlab.lab.workloads.mlp_digits import MLPDigits

# A small stochastic workload: batches are random, so a resumed run only matches when the data
# stream, the model, the optimizer state and the RNGs are all restored.
MLP = {"width": 16, "batch_size": 8, "n_train": 200}


def mlp_config(**kw) -> RunConfig:
    base = dict(workload="mlp_digits", optimizer="muon", steps=30, eval_every=10, knobs=dict(MLP))
    return RunConfig(**{**base, **kw})


class Killed(Exception):
    pass


def kill_after(monkeypatch, n_batches: int) -> dict:
    """Make training batch number n_batches + 1 raise, as if the process were killed mid-run.

    Returns the counter; setting its "limit" to math.inf disarms it.
    """
    calls = {"n": 0, "limit": n_batches}
    original = MLPDigits.get_batch

    def get_batch(self, gen):
        calls["n"] += 1
        if calls["n"] > calls["limit"]:
            raise Killed
        return original(self, gen)

    monkeypatch.setattr(MLPDigits, "get_batch", get_batch)
    return calls


def test_lr_multiplier_warmup_then_decay():
    steps = 100
    mults = [lr_multiplier(s, steps, 0.1, "cosine", 0.1) for s in range(steps)]
    assert mults[0] == pytest.approx(0.1) and mults[9] == pytest.approx(1.0)
    assert max(mults) == pytest.approx(1.0) and mults[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(mults[10:], mults[11:]))  # monotone decay
    assert lr_multiplier(99, steps, 0.0, "linear", 0.0) == pytest.approx(0.0)
    assert lr_multiplier(50, steps, 0.0, "constant", 0.1) == 1.0


def test_run_writes_records_with_provenance(tmp_path):
    cfg = mlp_config()
    summary = run_one(cfg, tmp_path / "r", progress=False)
    run = load_run(tmp_path / "r")
    assert run.finished and not summary["diverged"]
    assert [r["step"] for r in run.rows] == [0, 10, 20, 30]
    row = run.rows[-1]
    for key in ("train/loss", "val/loss", "val/acc", "gap/loss", "time/train_s", "time/eval_s", "lr_mult"):
        assert key in row
    assert run.rows[0]["train/loss"] is None  # nothing trained yet at step 0
    assert row["time/train_s"] > 0
    prov = run.config["provenance"]
    for key in ("muonlab", "torch", "python", "hostname", "device", "platform"):
        assert key in prov
    assert run.config["run"]["steps"] == 30 and run.config["workload"]["knobs"]["width"] == 16
    assert run.config["lr"] == 0.02  # the registry's recommended Muon lr, resolved
    assert {g["algorithm"] for g in run.config["optimizer_groups"]} == {"muon", "adamw"}
    assert not (tmp_path / "r" / "checkpoint.pt").exists()  # removed once done
    assert pick_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_schedule_scales_every_group_from_initial_lr(tmp_path, monkeypatch):
    from muonlab.optim.shell import HybridOptimizer

    cfg = mlp_config(steps=10, eval_every=10, warmup=0.5)
    wl = make_workload("mlp_digits", **MLP)
    base = [g["lr"] for g in build_optimizers(wl.build_model(0), cfg, wl)[0].param_groups]
    assert len(set(base)) == 2  # Muon's 0.02 and AdamW's 3e-4: both must follow the schedule
    seen = []
    original = HybridOptimizer.step

    def spy(self, *a, **k):
        seen.append([(g["lr"], g["initial_lr"]) for g in self.param_groups])
        return original(self, *a, **k)

    monkeypatch.setattr(HybridOptimizer, "step", spy)
    run_one(cfg, tmp_path / "s", progress=False)
    assert len(seen) == 10
    for step, groups in enumerate(seen):
        mult = lr_multiplier(step, 10, 0.5, "cosine", 0.1)
        assert sorted(i for _, i in groups) == sorted(base)  # initial_lr stays the base
        for lr, initial in groups:
            assert lr == pytest.approx(initial * mult)


def test_resume_after_kill_reproduces_the_uninterrupted_run(tmp_path, monkeypatch):
    straight = run_one(mlp_config(), tmp_path / "a", progress=False)
    rows_a = read_jsonl(tmp_path / "a" / "metrics.jsonl")

    kill_after(monkeypatch, 25)  # dies after the checkpoint at step 20
    with pytest.raises(Killed):
        run_one(mlp_config(), tmp_path / "b", progress=False)
    assert (tmp_path / "b" / "checkpoint.pt").exists() and not (tmp_path / "b" / "done").exists()
    measured = read_jsonl(tmp_path / "b" / "metrics.jsonl")
    assert [r["step"] for r in measured] == [0, 10, 20]  # kept on disk across the kill
    monkeypatch.undo()

    resumed = run_one(mlp_config(), tmp_path / "b", progress=False)
    rows_b = read_jsonl(tmp_path / "b" / "metrics.jsonl")
    assert resumed["resumed_at"] == [20]
    assert [r["step"] for r in rows_b] == [0, 10, 20, 30]
    for ra, rb in zip(rows_a, rows_b):
        for key in ("train/loss", "val/loss", "val/acc"):
            assert ra[key] == rb[key], (ra["step"], key)  # bit-identical
    assert straight["val/loss"] == resumed["val/loss"]


def test_sparser_checkpoints_remeasure_rows_after_the_last_one(tmp_path, monkeypatch):
    cfg = mlp_config(steps=40, checkpoint_every=20)
    rows_a = (run_one(cfg, tmp_path / "a", progress=False), read_jsonl(tmp_path / "a" / "metrics.jsonl"))[1]
    switch = kill_after(monkeypatch, 35)  # evaluated at 30, last checkpoint at 20
    with pytest.raises(Killed):
        run_one(cfg, tmp_path / "b", progress=False)
    assert [r["step"] for r in read_jsonl(tmp_path / "b" / "metrics.jsonl")] == [0, 10, 20, 30]
    switch["limit"] = math.inf
    assert run_one(cfg, tmp_path / "b", progress=False)["resumed_at"] == [20]
    assert read_jsonl(tmp_path / "b" / "metrics.jsonl") == [
        {**r, "time/train_s": b["time/train_s"], "time/eval_s": b["time/eval_s"]}
        for r, b in zip(rows_a, read_jsonl(tmp_path / "b" / "metrics.jsonl"))]


def test_finished_point_is_skipped(tmp_path, monkeypatch):
    first = run_one(mlp_config(steps=10), tmp_path / "r", progress=False)
    kill_after(monkeypatch, 0)  # any training would raise
    assert run_one(mlp_config(steps=10), tmp_path / "r", progress=False) == first


def test_killed_sweep_continues_and_skips_finished_points(tmp_path, monkeypatch):
    kw = dict(seeds=[0, 1], lrs=[0.01, 0.03], base=mlp_config(steps=10, eval_every=5))
    points = sweep_points("mlp_digits", ["muon"], **kw)
    assert len(points) == 4 and points[0].seed == 0 and points[-1].seed == 1

    kill_after(monkeypatch, 25)  # dies inside the third point (and the fourth, at its first batch)
    with pytest.raises(SweepError, match="2 of 4 sweep point") as info:
        sweep("mlp_digits", ["muon"], tmp_path, progress=False, **kw)
    assert "Killed" in str(info.value)
    monkeypatch.undo()
    dirs = [run_path(tmp_path, p.workload, p.optimizer, p.settings(), p.seed) for p in points]
    assert [(d / "done").exists() for d in dirs] == [True, True, False, False]
    stamps = [(d / "done").stat().st_mtime_ns for d in dirs[:2]]

    log = []
    results = sweep("mlp_digits", ["muon"], tmp_path, progress=False, log=log.append, **kw)
    assert len(results) == 4 and all((d / "done").exists() for d in dirs)
    assert [(d / "done").stat().st_mtime_ns for d in dirs[:2]] == stamps  # not retrained
    assert sum("skipped" in line for line in log) == 2
    assert load_run(dirs[2]).done["resumed_at"] == [5]


def test_records_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    records.write_jsonl(path, [{"step": 0}])

    def crash(src, dst):
        raise OSError("killed during replace")

    monkeypatch.setattr(records.os, "replace", crash)
    with pytest.raises(OSError):
        records.write_jsonl(path, [{"step": 0}, {"step": 1}])
    monkeypatch.undo()
    assert read_jsonl(path) == [{"step": 0}]  # the old file, whole
    assert os.listdir(tmp_path) == ["metrics.jsonl"]  # no temp file left behind
    write_json(tmp_path / "x.json", {"a": math.nan})
    assert math.isnan(json.loads((tmp_path / "x.json").read_text())["a"])


def test_divergence_is_recorded_not_raised(tmp_path):
    cfg = RunConfig("matrix_sensing", "sgd", steps=20, eval_every=10, hparams={"lr": 1e6})
    summary = run_one(cfg, tmp_path / "d", progress=False)
    assert summary["diverged"] and summary["step"] < 20
    assert (tmp_path / "d" / "done").exists()


def test_apply_setting_routes_keys():
    cfg = RunConfig("tiny_gpt", "muon")
    cfg = apply_setting(cfg, "lr", 0.01)
    cfg = apply_setting(cfg, "width", 64)
    cfg = apply_setting(cfg, "warmup", 0)
    cfg = apply_setting(cfg, "adamw.lr", 3e-3)
    cfg = apply_setting(cfg, "opt.width", 1)  # explicit prefix wins over the knob
    assert cfg.hparams == {"lr": 0.01, "width": 1} and cfg.knobs == {"width": 64}
    assert cfg.warmup == 0.0 and cfg.aux == {"lr": 3e-3}
    assert cfg.settings() == {"lr": 0.01, "width": 64, "adamw.lr": 3e-3, "steps": 600, "warmup": 0.0}
    with pytest.raises(ValueError, match="runner setting schedule=3 must be str"):
        apply_setting(cfg, "schedule", 3)
    with pytest.raises(ValueError, match="unknown runner setting 'nope'"):
        apply_setting(cfg, "run.nope", 1)


def test_unknown_optimizer_and_hyperparameter_fail_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"unknown optimizer 'nope'; available: .*muon"):
        run_one(mlp_config(optimizer="nope"), tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        run_one(mlp_config(hparams={"lrr": 0.1}), tmp_path / "y", progress=False)
    with pytest.raises(ValueError, match="schedule='cosin'"):
        run_one(mlp_config(schedule="cosin"), tmp_path / "z", progress=False)
    assert not (tmp_path / "x" / "done").exists()


def test_external_optimizer_by_import_path(tmp_path):
    wl = make_workload("mlp_digits", **MLP)
    model = wl.build_model(0)
    opts = build_optimizers(model, mlp_config(optimizer="torch.optim.SGD", hparams={"lr": 0.1}), wl)
    assert [type(o).__name__ for o in opts] == ["SGD", "HybridOptimizer"]
    assert all(p.ndim == 2 for g in opts[0].param_groups for p in g["params"])  # hidden matrices only
    opts = build_optimizers(model, mlp_config(optimizer="torch.optim.AdamW", hparams={"route": "all"}), wl)
    assert len(opts) == 1
    with pytest.raises(ValueError, match="cannot import 'nonexistent_pkg'"):
        build_optimizers(model, mlp_config(optimizer="nonexistent_pkg.Opt"), wl)
    with pytest.raises(ValueError, match="rejected hyperparameters"):
        build_optimizers(model, mlp_config(optimizer="torch.optim.SGD", hparams={"lr": 0.1, "bogus": 1}), wl)
    summary = run_one(mlp_config(optimizer="torch.optim.SGD", hparams={"lr": 0.1}, steps=10), tmp_path / "e",
                      progress=False)
    assert math.isfinite(summary["val/loss"])
    assert sweep_points("mlp_digits", ["torch.optim.SGD"], lr_points=3)[0].hparams["lr"] == pytest.approx(1e-4)


def test_lr_grid_is_log_spaced_and_readable():
    assert lr_grid(1e-3, 1e-1, 3) == [0.001, 0.01, 0.1]
    assert lr_grid(1e-4, 1e-2, 5) == [0.0001, 0.000316, 0.001, 0.00316, 0.01]
    with pytest.raises(ValueError):
        lr_grid(0.1, 0.01, 3)


def test_probe_is_integrated_when_diagnostics_exist(tmp_path, monkeypatch):
    class FakeProbe:  # muonlab.diagnostics.SpectralProbe's interface: steps 0-based from creation
        def __init__(self, model, optimizer, every):
            self.every, self.n, self.rows = every, 0, []
            self.handle = optimizer.register_step_post_hook(self._hook)

        def _hook(self, opt, args, kwargs):
            if self.n % self.every == 0:
                self.rows.append({"step": self.n, "param": "w", "weight": {"stable_rank": float(self.n)}})
            self.n += 1

        def records(self):
            return list(self.rows)

        def remove(self):
            self.handle.remove()

    fake = types.ModuleType("muonlab.diagnostics")
    fake.SpectralProbe = FakeProbe
    monkeypatch.setitem(sys.modules, "muonlab.diagnostics", fake)
    cfg = dataclasses.replace(mlp_config(), probe_every=5)
    switch = kill_after(monkeypatch, 25)
    with pytest.raises(Killed):
        run_one(cfg, tmp_path / "p", progress=False)
    switch["limit"] = math.inf
    run_one(cfg, tmp_path / "p", progress=False)
    steps = [r["step"] for r in read_jsonl(tmp_path / "p" / "probe.jsonl")]
    assert steps == [0, 5, 10, 15, 20, 25]  # rows after a resume are shifted to the run's steps
    rows = read_jsonl(tmp_path / "p" / "probe.jsonl")
    assert [r["weight"]["stable_rank"] for r in rows] == [0, 5, 10, 15, 0, 5]  # two probe lifetimes


def test_randomised_methods_get_the_run_seed():
    from muonlab.registry import available_optimizers, get_spec

    seeded = [n for n in available_optimizers() if "seed" in get_spec(n).rule.hypers]
    if not seeded:
        pytest.skip("no registered method declares a seed")
    wl = make_workload("mlp_digits", **MLP)
    cfg = mlp_config(optimizer=seeded[0], seed=3)
    (opt,) = build_optimizers(wl.build_model(0), cfg, wl)
    assert {g["seed"] for g in opt.param_groups if g["algorithm"] == seeded[0]} == {3}
    (opt,) = build_optimizers(wl.build_model(0), dataclasses.replace(cfg, hparams={"seed": 7}), wl)
    assert {g["seed"] for g in opt.param_groups if g["algorithm"] == seeded[0]} == {7}
