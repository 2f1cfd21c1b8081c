"""µP in the lab: ``parametrization="mup"`` runs train with the per-layer lrs of
:func:`muonlab.transfer.mup_overrides` relative to the workload at ``mup_base_width``."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch

from muonlab.lab import report
from muonlab.lab.cli_support import add_run_arguments, base_config
from muonlab.lab.records import load_run, read_json, read_jsonl, run_path
from muonlab.lab.runner import (
    RunConfig,
    apply_setting,
    build_optimizers,
    check_config,
    run_one,
)
from muonlab.lab.sweep import sweep
from muonlab.lab.workloads import make_workload
from muonlab.transfer import mup_overrides

MLP = {"batch_size": 8, "n_train": 200}
GPT = {"width": 16, "depth": 1, "heads": 2, "context": 16, "batch_size": 4, "eval_batches": 1}


def mup(workload: str = "mlp_digits", optimizer: str = "muon", base: int = 8, **knobs) -> RunConfig:
    return RunConfig(workload, optimizer, knobs=knobs, hparams={"lr": 0.02}, parametrization="mup",
                     mup_base_width=base)


def test_settable_with_set_and_named_in_the_directory_only_when_mup():
    p = argparse.ArgumentParser()
    add_run_arguments(p)
    args = p.parse_args(["--workload", "mlp_digits", "--set", "parametrization=mup", "mup_base_width=64"])
    cfg = base_config(args, "muon")
    assert (cfg.parametrization, cfg.mup_base_width) == ("mup", 64)
    assert cfg.knobs == {} and cfg.hparams == {}  # runner fields, not knobs or hyperparameters
    assert cfg.settings()["parametrization"] == "mup" and cfg.settings()["mup_base_width"] == 64
    sp = RunConfig("mlp_digits", "muon")
    assert not {"parametrization", "mup_base_width"} & set(sp.settings())
    # Under SP the base width changes nothing, so it names no directory of its own.
    assert apply_setting(sp, "mup_base_width", 64).settings() == sp.settings()
    dirs = {run_path("r", "mlp_digits", "muon", c.settings(), 0) for c in (sp, cfg)}
    assert len(dirs) == 2
    with pytest.raises(ValueError, match="mup_base_width='64' must be int"):
        apply_setting(sp, "mup_base_width", "64")


@pytest.mark.parametrize("optimizer", ["muon", "adamw"])
def test_groups_carry_exactly_the_mup_lrs(optimizer):
    cfg = mup(optimizer=optimizer, width=32, **MLP)
    if optimizer == "muon":
        cfg = dataclasses.replace(cfg, aux={"lr": 1e-3})  # the AdamW groups' lr scales too
    wl = make_workload("mlp_digits", width=32, **MLP)
    model = wl.build_model(0)
    (opt,) = build_optimizers(model, cfg, wl)
    base = make_workload("mlp_digits", width=8, **MLP).build_model(0)
    want = mup_overrides(model, optimizer, base=base, adamw=cfg.aux or None, output="head", lr=0.02)
    got = {n: g["lr"] for g in opt.param_groups for n in g["param_names"]}
    assert got == {n: ov["lr"] for n, ov in want.items()}
    assert len(set(got.values())) >= 2  # width 32 over base 8: the lrs really differ per layer
    if optimizer == "muon":  # input layer (32, 64): √(r_out/r_in) = 2; readout on AdamW: 1/r_in = 1/4
        assert got["1.weight"] == pytest.approx(0.04) and got["head.weight"] == pytest.approx(1e-3 / 4)
    else:
        assert got["3.weight"] == pytest.approx(0.02 / 4) and got["1.weight"] == pytest.approx(0.02)


def _rows(run_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in read_jsonl(run_dir / "metrics.jsonl")]


@pytest.mark.parametrize("workload, knobs, width", [("mlp_digits", MLP | {"width": 16}, 16),
                                                     ("tiny_gpt", GPT, 16)])
def test_at_the_base_width_mup_is_sp_bitwise(tmp_path, workload, knobs, width):
    sp = RunConfig(workload, "muon", steps=6, eval_every=3, knobs=knobs, hparams={"lr": 0.02}, device="cpu")
    mu = dataclasses.replace(sp, parametrization="mup", mup_base_width=width)
    a = run_one(sp, tmp_path / "sp", progress=False)
    b = run_one(mu, tmp_path / "mup", progress=False)
    assert _rows(tmp_path / "sp") == _rows(tmp_path / "mup")  # float equality: bitwise the same losses
    assert a["val/loss"] == b["val/loss"] and len(_rows(tmp_path / "sp")) == 3
    rec = read_json(tmp_path / "mup" / "config.json")
    assert rec["settings"]["parametrization"] == "mup" and rec["lr"] == 0.02


def test_a_two_width_two_lr_mup_sweep_runs_and_reports(tmp_path):
    base = RunConfig("mlp_digits", "", steps=8, eval_every=4, knobs=dict(MLP), parametrization="mup",
                     mup_base_width=8, device="cpu")
    results = sweep("mlp_digits", ["muon"], tmp_path, lrs=[0.01, 0.05], grid={"width": [8, 16]}, base=base,
                    progress=False)
    assert len(results) == 4 and len({d for _, d, _ in results}) == 4
    for cfg, run_dir, summary in results:
        assert not summary["diverged"] and "mup_base_width=8" in str(run_dir)
        run = load_run(run_dir)
        assert run.config["lr"] == cfg.hparams["lr"]  # the base lr, the axis lr transfer is read on
        lr, r = cfg.hparams["lr"], cfg.knobs["width"] / 8
        muon = sorted(g["lr"] for g in run.config["optimizer_groups"] if g["algorithm"] == "muon")
        # the input layer (width, 64) gets √r, the hidden (width, width) layer 1 (in one group at r = 1)
        assert muon == pytest.approx(sorted({lr, lr * r**0.5}))
    path, text = report.write_report(tmp_path, tmp_path / "rep", plots=False)
    md = path.read_text()
    assert "best lr by median val/loss" in text
    assert "width=8" in md and "width=16" in md


@pytest.mark.parametrize("cfg, message", [
    (mup("matrix_sensing"), "workload 'matrix_sensing' declares no width knob"),
    (mup(optimizer="sgd"), "optimizer 'sgd' is a method with no µP rule; .*adamw, muon, shampoo, soap"),
    (mup(optimizer="torch.optim.SGD"), "'torch.optim.SGD' is an import path with no µP rule"),
    (mup(base=12, width=32), "mup_base_width=12 does not divide width=32 of workload 'mlp_digits'"),
    (mup(base=0), r"needs mup_base_width > 0 .*got mup_base_width=0"),
    (mup(base=-8), "mup_base_width=-8 must be >= 0"),
    (dataclasses.replace(mup(), parametrization="mu-p"), "parametrization='mu-p' is not valid; choose one of sp, mup"),
    (mup("tiny_gpt", base=2, width=32), "mup_base_width=2: the base model of 'tiny_gpt' is not valid: .*heads=4"),
])
def test_clear_errors(cfg, message):
    with pytest.raises(ValueError, match=message):
        check_config(cfg, build=False)
    wl = make_workload(cfg.workload, **cfg.knobs)
    with pytest.raises(ValueError, match=message):  # also when the optimizers are built directly
        build_optimizers(wl.build_model(0), cfg, wl)


def test_the_base_model_leaves_the_global_rng_alone():
    cfg = mup(width=32, **MLP)
    wl = make_workload("mlp_digits", width=32, **MLP)
    model = wl.build_model(0)
    state = torch.get_rng_state()
    build_optimizers(model, cfg, wl)  # builds the base model, whose build_model reseeds
    assert torch.equal(torch.get_rng_state(), state)
