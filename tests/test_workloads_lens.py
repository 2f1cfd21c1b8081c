"""The lab workloads assoc_memory (arXiv 2603.26554, our reconstruction) and convex_lipschitz (our
counterexample for arXiv 2605.08980): the workload contract, agreement with the claims' closed
forms, runs through ``muonlab run``/``sweep``, and the lab report's activation-spectrum section."""

from __future__ import annotations

import json
import math

import pytest
import torch

import muonlab
from muonlab.claims import convex as cvx
from muonlab.claims import memory as mem
from muonlab.cli import main
from muonlab.diagnostics import spectrum_summary
from muonlab.lab import workloads as W
from muonlab.lab.records import load_runs
from muonlab.lab.report import write_report
from muonlab.lab.workload import knob_types
from muonlab.lab.workloads.assoc_memory import AssocMemory
from muonlab.lab.workloads.convex_lipschitz import ConvexLipschitz, convex_loss
from muonlab.routing import MATRIX_ROLES, classify

D = torch.float64
#: Small knobs; init_scale > 0 so that different seeds give different models.
SMALL = {"assoc_memory": {"d": 8, "keys_per_dim": 4, "batch_size": 32, "init_scale": 0.01},
         "convex_lipschitz": {}}


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    """The workloads in the lab's registry (a no-op once lab/workloads/__init__.py lists them)."""
    for cls in (AssocMemory, ConvexLipschitz):
        if cls.name not in W.WORKLOADS:
            monkeypatch.setitem(W.WORKLOADS, cls.name, cls)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_workload_contract(name):
    wl = W.make_workload(name, **SMALL[name])
    wl.setup(torch.device("cpu"))
    model = wl.build_model(seed=0)
    for p, q in zip(model.parameters(), wl.build_model(seed=0).parameters()):
        assert torch.equal(p, q)
    assert any(not torch.equal(p, r) for p, r in zip(model.parameters(), wl.build_model(seed=1).parameters()))
    loss = wl.loss(model, wl.get_batch(torch.Generator().manual_seed(0)))
    assert loss.ndim == 0 and math.isfinite(loss.item())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        metrics = wl.evaluate(model)
    assert wl.metric in metrics and all(math.isfinite(v) for v in metrics.values())
    assert set(wl.knobs()) == set(knob_types(type(wl)))
    roles, _ = classify(model, **wl.routing())
    assert roles == {"W.weight": muonlab.Role.HIDDEN} and set(roles.values()) <= set(MATRIX_ROLES)
    opt = muonlab.create_optimizer(model, "muon", **wl.routing())
    assert {g["algorithm"] for g in opt.param_groups} == {"muon"}


def test_bad_knobs_are_clear_errors():
    with pytest.raises(ValueError, match="target"):
        W.make_workload("assoc_memory", target="shuffled")
    with pytest.raises(ValueError, match="alpha"):
        W.make_workload("assoc_memory", alpha=0)
    with pytest.raises(ValueError, match="epsilon"):
        W.make_workload("convex_lipschitz", epsilon=1.5)


# ---- assoc_memory against the claims' closed forms -----------------------------------------------

def _memory(**knobs):
    wl = AssocMemory(**{"d": 6, "keys_per_dim": 4, **knobs})
    wl.setup(torch.device("cpu"))
    return wl


def test_claims_build_their_instance_from_the_workload():
    wl = _memory(d=8, instance=123)
    e, u, p = mem._instance(8, 4, 1.5, 123, torch.device("cpu"))
    assert torch.equal(e, wl.E) and torch.equal(u, wl.U) and torch.equal(p, wl.p)
    e2, u2 = mem.embeddings(8, 32, 32, 123)
    assert torch.equal(e, e2) and torch.equal(u, u2)
    from muonlab.lab.workloads import (
        assoc_memory as am,  # the claims re-export the workload's functions
    )
    assert mem.recovered is am.recovered and mem.power_law is am.power_law and mem.gradient is am.gradient


@pytest.mark.parametrize("target", ["identity", "random"])
def test_autograd_gradient_of_the_loss_is_the_closed_form(target):
    wl = _memory(target=target, batch_size=40, instance=2)
    model = wl.build_model(0).double()
    with torch.no_grad():
        model.W.weight.copy_(0.7 * torch.randn(6, 6, generator=torch.Generator().manual_seed(1), dtype=D))
    batch = wl.get_batch(torch.Generator().manual_seed(3))
    loss = wl.loss(model, batch)
    value = float(loss.detach())
    # the loss is the mean cross-entropy over the drawn keys (repeats included)
    logits = (wl.U.T @ model.W.weight @ wl.E[:, batch]).T
    tgt = batch if wl.f is None else wl.f[batch]
    with torch.no_grad():
        assert value == pytest.approx(float(torch.nn.functional.cross_entropy(logits, tgt)), rel=1e-12)
    loss.backward()
    assert torch.allclose(model.W.weight.grad, wl.gradient(model.W.weight.detach(), batch), atol=1e-12)
    c = torch.bincount(batch, minlength=24).to(D) / len(batch)
    assert torch.allclose(model.W.weight.grad, mem.gradient(model.W.weight.detach(), wl.E, wl.U, c, wl.f), atol=1e-12)


def test_one_muon_step_from_zero_reproduces_the_claims_one_step():
    wl = _memory(d=16, instance=7, batch_size=512)
    model = wl.build_model(0).double()               # W₀ = 0 (init_scale 0)
    assert torch.equal(model.W.weight, torch.zeros(16, 16, dtype=D))
    batch = wl.get_batch(torch.Generator().manual_seed(0))
    wl.loss(model, batch).backward()
    c = torch.bincount(batch, minlength=64).to(D) / len(batch)
    G0 = mem.gradient_at_zero(wl.E, wl.U, c)
    assert torch.allclose(model.W.weight.grad, G0, atol=1e-12)
    with torch.no_grad():
        model.W.weight -= 0.3 * mem.polar(model.W.weight.grad)
    ref = mem.recovered(mem.one_step(wl.E, wl.U, c, mem.polar), wl.E, wl.U)
    metrics = wl.evaluate(model)
    assert metrics["val/capacity"] == mem.capacity(ref)
    assert metrics["val/weighted_error"] == pytest.approx(mem.weighted_error(ref, wl.p))
    assert wl.evaluate(wl.build_model(0))["val/weighted_error"] == pytest.approx(1.0)  # ties at W = 0


def test_population_loss_at_zero_is_log_m():
    wl = _memory()
    assert wl.evaluate(wl.build_model(0))["val/loss"] == pytest.approx(math.log(24), rel=1e-12)


def test_muon_training_recovers_keys():
    wl = _memory(d=16, keys_per_dim=2, batch_size=256)
    model = wl.build_model(0)
    opt = muonlab.create_optimizer(model, "muon", lr=0.5, weight_decay=0.0, **wl.routing())
    g = torch.Generator().manual_seed(0)
    start = wl.evaluate(model)["val/weighted_error"]
    for _ in range(10):
        wl.loss(model, wl.get_batch(g)).backward()
        opt.step()
        opt.zero_grad()
    end = wl.evaluate(model)
    assert start == pytest.approx(1.0) and end["val/weighted_error"] < 0.5 and end["val/capacity"] > 0


# ---- convex_lipschitz -------------------------------------------------------------------------------

def test_backward_is_the_subgradient_oracle_including_kinks():
    for W0 in ([[1.0, 0.0], [0.0, -1.0]], [[0.5, -2.0], [0.0, 0.3]], [[0.0, 0.0], [0.0, 0.0]]):
        Wt = torch.tensor(W0, dtype=D, requires_grad=True)
        convex_loss(Wt, 0.2).backward()
        assert torch.equal(Wt.grad, cvx.convex_subgradient(Wt.detach(), 0.2))
    # the first start is a kink of |W₁₁ + W₂₂|: the oracle takes sign(0) = +1, plain autograd takes 0
    plain = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=D, requires_grad=True)
    cvx.convex_f(plain, 0.2).backward()
    assert float(plain.grad[0, 0]) == pytest.approx(0.2) and float(cvx.convex_subgradient(plain.detach(), 0.2)[0, 0]) == 1.2


def test_start_points_are_the_claims_starts():
    wl = ConvexLipschitz()
    for seed in (0, 5):
        model = wl.build_model(seed)
        diag, _ = cvx.initial_points(seed, 0.0)
        assert torch.allclose(model.W.weight.double(), torch.from_numpy(diag), atol=1e-7)
        assert float(model.c0) == pytest.approx(diag[0, 0] - diag[1, 1], rel=1e-6)
    pert = ConvexLipschitz(perturb=1e-3).build_model(3).W.weight
    assert 0 < abs(float(pert[0, 1].detach())) < 0.01


def test_momentum_free_muon_keeps_the_gap_and_stalls():
    """Through the library's Muon (exact polar factor, no momentum, no decay): W₁₁ − W₂₂ stays at c
    and f stays ≥ ε|c| at every step, as the claims' float64 simulation shows."""
    wl = ConvexLipschitz(epsilon=0.1)
    model = wl.build_model(2).double()
    opt = muonlab.create_optimizer(model, "muon", lr=0.05, momentum=0.0, weight_decay=0.0,
                                   orthogonalizer="svd", **wl.routing())
    for _ in range(200):
        wl.loss(model, None).backward()
        opt.step()
        opt.zero_grad()
        m = wl.evaluate(model)
        assert m["val/rel_f"] >= 1 - 1e-9 and m["val/gap_ratio"] == pytest.approx(1.0, abs=1e-12)
    assert m["val/offdiag"] == 0.0
    # the claims' simulation from the same start, same η, gives the same iterate
    tr = cvx.simulate(model.W.weight.new_tensor(cvx.initial_points(2, 0.0)[1])[None],
                      torch.tensor([0.1], dtype=D), torch.tensor([0.05], dtype=D), torch.tensor([0.0], dtype=D),
                      torch.tensor([0.0], dtype=D), torch.tensor([False]), steps=200)
    assert torch.allclose(model.W.weight.detach(), tr.W[0], atol=1e-12)


# ---- through the CLI ---------------------------------------------------------------------------------

def test_muonlab_run_and_sweep_then_report(tmp_path, capsys):
    argv = ["run", "--workload", "convex_lipschitz", "--optimizer", "muon", "--steps", "20", "--out",
            str(tmp_path / "c"), "--quiet", "--set", "eval_every=10", "epsilon=0.05", "lr=0.01"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("finished: convex_lipschitz muon seed=0, 20 steps")
    (run,) = load_runs(tmp_path / "c")
    assert run.finished and run.config["workload"]["knobs"]["epsilon"] == 0.05
    assert "val/rel_f" in run.rows[-1]

    root = tmp_path / "m"
    argv = ["sweep", "--workload", "assoc_memory", "--optimizers", "muon,adamw", "--lrs", "0.05",
            "--seeds", "1", "--steps", "6", "--out", str(root), "--quiet", "--probe-every", "3",
            "--set", "eval_every=3", "d=8", "keys_per_dim=4", "batch_size=16"]
    assert main(argv) == 0
    assert "sweep finished: 2 point(s)" in capsys.readouterr().out
    runs = load_runs(root)
    assert len(runs) == 2 and all(r.finished for r in runs)
    # activation records as SpectralProbe(activations=True) writes them, appended to each run's probe
    for r in runs:
        ev = torch.linspace(2.0, 0.1, 8, dtype=D)
        recs = [{"step": s, "layer": "W", "activation": {**spectrum_summary(ev * (1 + s)), "samples": 16, "width": 8}}
                for s in (0, 3)]
        with open(r.path / "probe.jsonl", "a") as fh:
            for rec in recs:
                rec["activation"] = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                                     for k, v in rec["activation"].items()}
                fh.write(json.dumps(rec, allow_nan=False) + "\n")
    path, summary = write_report(root)
    md = path.read_text()
    assert "### Activation spectra" in md and "| `W` | 3 |" in md
    assert (path.parent / "assoc_memory_activations.png").exists()
    assert "assoc_memory" in summary


def test_report_without_activation_records_has_no_section(tmp_path, capsys):
    argv = ["run", "--workload", "assoc_memory", "--optimizer", "muon", "--steps", "2", "--out", str(tmp_path),
            "--quiet", "--set", "eval_every=1", "d=4", "keys_per_dim=2", "batch_size=8"]
    assert main(argv) == 0
    path, _ = write_report(tmp_path, plots=False)
    assert "Activation spectra" not in path.read_text()
