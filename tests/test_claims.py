"""The claims lab: registry, tuning and reading runs, rendering, a tiny smoke run through the CLI.

Statistics are tested in tests/test_inference.py. The small budgets run under the opt-in ``slow``
marker (``pytest -m slow tests/test_claims.py``); one of them checks that two claims give the
same verdict when rerun from scratch.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from muonlab.claims import CLAIMS, VERDICTS, get_claim
from muonlab.claims.base import (MIN_SEEDS, Claim, ClaimResult, Context, final, plateau_width, steps_to_fraction)
from muonlab.claims.render import existing_sections, render
from muonlab.claims.sensing import acquisition, atsr
from muonlab.lab import inference as inf
from muonlab.lab.runner import RunConfig

# ---- registry ------------------------------------------------------------------------------------


def test_at_least_23_claims_with_enough_seeds():
    assert len(CLAIMS) >= 23
    numbers = [c.number for c in CLAIMS.values()]
    assert len(set(numbers)) == len(numbers)
    for c in CLAIMS.values():
        assert len(c.quote) > 30 and len(c.setup) > 30, c.name
        assert {"small", "full"} <= set(c.budgets), c.name
        small = c.budgets["small"]
        assert max(small.get("seeds", 0), small.get("instances", 0)) >= MIN_SEEDS, c.name
        assert c.command() == f"muonlab claims {c.name} --budget small"
        assert c.seed[:3] in {"000", "001", "002", "003", "004"}


def test_get_claim_by_name_and_number():
    assert get_claim("5").name == "sensing_flattening"
    assert get_claim("kappa_small").number == 2
    with pytest.raises(ValueError, match="unknown claim"):
        get_claim("nope")


def test_claim_result_rejects_unknown_verdict():
    with pytest.raises(ValueError):
        ClaimResult({}, [], [], "rule", "maybe", "why")
    assert inf.NOT_TESTED in VERDICTS


# ---- reading runs and tuning ---------------------------------------------------------------------


def _write_run(root: Path, lr: float, seed: int, losses: list[float], diverged: bool = False):
    from muonlab.lab.records import write_json, write_jsonl

    d = root / f"lr={lr}" / f"seed={seed}"
    d.mkdir(parents=True)
    write_jsonl(d / "metrics.jsonl", [{"step": 10 * i, "val/loss": v} for i, v in enumerate(losses)])
    summary = {"val/loss": losses[-1], "diverged": diverged}
    write_json(d / "done", summary)
    return RunConfig("w", "muon", seed=seed, hparams={"lr": lr}), d, summary


def test_diverged_run_counts_as_no_progress(tmp_path):
    cfg, d, s = _write_run(tmp_path, 0.1, 0, [2.0, 1.0, float("nan")], diverged=True)
    assert final(s, "val/loss", d) == 2.0          # its first evaluation
    assert final(s, "val/loss") == math.inf        # without its records: the worst value
    assert final({"val/acc": float("nan"), "diverged": True}, "val/acc") == 0.0


def test_plateau_width_in_octaves(tmp_path):
    items = []
    for seed in range(2):
        for lr, v in ((0.01, 2.0), (0.02, 1.1), (0.04, 1.0), (0.08, 1.2), (0.16, 3.0)):
            items.append(_write_run(tmp_path, lr, seed, [4.0, v]))
    w = plateau_width(items, "val/loss", 0.25)
    assert w == {0: pytest.approx(3.0), 1: pytest.approx(3.0)}  # 0.02..0.08 = 2 octaves, + one grid step


def test_steps_to_fraction_score(tmp_path):
    _, d, s = _write_run(tmp_path, 0.1, 0, [1.0, 0.5, 1e-5, 1e-6])
    assert steps_to_fraction("val/loss", 1e-4)(s, d) == 20.0
    _, d, s = _write_run(tmp_path, 0.2, 0, [1.0, 0.5])
    assert steps_to_fraction("val/loss", 1e-4)(s, d) == 20.0  # never: twice the run's length


def test_tune_extends_the_grid_past_an_edge(tmp_path, monkeypatch):
    """A synthetic loss with its optimum at lr = 0.5 far right of the centre: the grid grows
    until the optimum is interior; with no room left the arm is marked not located."""
    ctx = Context(tmp_path, tmp_path, "figs", "small", {"seeds": 8, "tune_seeds": 2}, log=lambda _: None)

    def fake_sweep(workload, optimizers, *, lrs=None, seeds=None, **kw):
        return [(RunConfig("w", "muon", seed=s, hparams={"lr": lr}), tmp_path,
                 {"val/loss": (math.log2(lr / 0.5)) ** 2 + 0.01 * s}) for lr in lrs for s in seeds]

    monkeypatch.setattr(ctx, "sweep", fake_sweep)
    t = ctx.tune("w", "muon", 0.02, ratio=2.0, points=5)
    assert t.located and t.lr in t.grid and t.grid[0] < t.lr < t.grid[-1]
    assert abs(math.log2(t.lr / 0.5)) <= 0.5 and t.extended >= 3  # within half a grid step
    stuck = ctx.tune("w", "muon", 1e-6, ratio=2.0, points=3, max_extend=2)
    assert not stuck.located and "edge" in stuck.note()
    from muonlab.claims.base import gated

    test = gated(inf.t_test("x", inf.mean_interval([1.0, 2.0, 3.0]), ">"), stuck)
    assert inf.decide([test])[0] == inf.INCONCLUSIVE and "edge" in test.note


def test_acquisition_reading():
    rows = [{"step": s, "val/align_0": min(1, s / 10), "val/align_1": min(1, s / 40)} for s in range(0, 101, 5)]
    times, aligns = acquisition(rows, 2, 0.9)
    assert times == [10, 40] and atsr(times) == pytest.approx(40 / 10) and aligns == [1.0, 1.0]
    rows = [{"step": s, "val/align_0": 1.0, "val/align_1": 0.3} for s in range(5, 101, 5)]
    times, aligns = acquisition(rows, 2, 0.9)
    assert times == [5, None] and math.isnan(atsr(times)) and min(aligns) == 0.3  # censored: no fake time


# ---- rendering -----------------------------------------------------------------------------------


def _fake(name: str, number: int, effect: float) -> Claim:
    def experiment(ctx):
        x = [effect + 0.01 * k for k in range(8)]
        return ctx.finish([inf.t_test("effect > 0", inf.mean_interval(x), ">", primary=True)],
                          table=["| a | b |", "|---|---|", "| 1 | 2 |"], rule="t test above 0")

    return Claim(name, number, "003 test", "a quoted claim from a seed document", "a setup " * 5,
                 {"small": {"seeds": 8}, "full": {"seeds": 16}}, experiment)


def test_render_merges_and_marks_unrun(tmp_path):
    a, b = _fake("alpha", 1, 1.0), _fake("beta", 2, -1.0)
    docs = tmp_path / "docs" / "claims.md"
    out_a, out_b = tmp_path / "out_a", tmp_path / "out_b"
    a.run(out_a, "small", fig_dir=tmp_path / "figs", log=lambda _: None)
    text = render([a, b], out_a, docs)
    assert "**Verdict:** supported" in text and "**Status:** not run yet." in text
    assert "muonlab claims beta --budget small" in text
    # Running only beta into another out dir keeps alpha's section (merge), and adds beta's verdict.
    b.run(out_b, "small", fig_dir=tmp_path / "figs", log=lambda _: None)
    text = render([a, b], out_b, docs)
    sections = existing_sections(text)
    assert "**Verdict:** supported" in sections["alpha"]
    assert "**Verdict:** not supported" in sections["beta"]
    assert "| 1 | [`alpha`]" in text and "supported | small |" in text
    assert "effect > 0" in sections["alpha"] and "Holm" in sections["alpha"]


# ---- new workloads -------------------------------------------------------------------------------


@pytest.mark.parametrize("name,knobs", [("modular_arith", {"modulus": 11}), ("imbalanced_digits", {"width": 16}),
                                        ("sensing_directions", {"d": 30})])
def test_new_workloads_train_one_step(name, knobs):
    pytest.importorskip("sklearn") if name == "imbalanced_digits" else None
    from muonlab.lab.workloads import make_workload

    wl = make_workload(name, **knobs)
    wl.setup(torch.device("cpu"))
    model = wl.build_model(0)
    loss = wl.loss(model, wl.get_batch(torch.Generator().manual_seed(0)))
    loss.backward()
    with torch.no_grad():
        metrics = wl.evaluate(model)
    assert math.isfinite(loss.item()) and wl.metric in metrics


def test_imbalanced_digits_is_imbalanced():
    pytest.importorskip("sklearn")
    from muonlab.lab.workloads import make_workload

    wl = make_workload("imbalanced_digits", minority_frac=0.1)
    wl.setup(torch.device("cpu"))
    counts = torch.bincount(wl.splits["train"][1], minlength=10)
    assert counts[:5].min() > 5 * counts[5:].max()


# ---- smoke: a real claim at a tiny budget, through the CLI --------------------------------------


def test_cli_smoke_sensing_flattening(tmp_path, capsys):
    pytest.importorskip("cvxpy")
    pytest.importorskip("matplotlib")
    from muonlab.cli import main

    docs = tmp_path / "docs" / "claims.md"
    rc = main(["claims", "sensing_flattening", "--out", str(tmp_path / "out"), "--docs", str(docs),
               "--set", "instances=3", "steps=300", "tune_seeds=1"])
    assert rc == 0
    text = docs.read_text()
    assert "**Verdict:**" in text and "sensing_flattening" in text
    assert text.count("not run yet") >= 22
    assert (tmp_path / "docs" / "claims" / "sensing_flattening.png").exists()
    # cached: --list reports it without running
    main(["claims", "--list", "5", "--out", str(tmp_path / "out")])
    assert "sensing_flattening" in capsys.readouterr().out


def test_cli_unknown_claim_is_one_line_error(capsys):
    from muonlab.cli import main

    assert main(["claims", "nope", "--out", "/nonexistent"]) == 2
    assert "unknown claim" in capsys.readouterr().err


# ---- the small budgets (opt-in) ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CLAIMS))
def test_small_budget(name, tmp_path):
    claim = CLAIMS[name]
    result = claim.run(tmp_path / "out", "small", fig_dir=tmp_path / "figs", log=lambda _: None)
    assert result.verdict in VERDICTS and result.tests
    assert claim.cached(tmp_path / "out") is not None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["momentum_noise_factor", "norm_matched_gd"])
def test_verdict_is_the_same_on_a_rerun_from_scratch(name, tmp_path):
    claim = CLAIMS[name]
    first = claim.run(tmp_path / "a", "small", fig_dir=tmp_path / "figs", log=lambda _: None)
    second = claim.run(tmp_path / "b", "small", fig_dir=tmp_path / "figs", log=lambda _: None)
    assert first.verdict == second.verdict
    assert [t["interval"]["estimate"] for t in first.tests] == pytest.approx(
        [t["interval"]["estimate"] for t in second.tests], rel=1e-6, nan_ok=True)
