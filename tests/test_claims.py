"""The claims lab (issue 9): registry, statistics and verdict rules, rendering, a tiny smoke run.

The small budgets themselves run under the opt-in ``slow`` marker (``pytest -m slow
tests/test_claims.py``): each takes up to 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from muonlab.claims import CLAIMS, VERDICTS, get_claim
from muonlab.claims.base import (INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim, ClaimResult, ci_verdict, combine,
                                 diff_ci, loglog_slope, mean_ci, ratio_ci)
from muonlab.claims.render import existing_sections, render
from muonlab.claims.sensing import atsr

# ---- registry ------------------------------------------------------------------------------------


def test_all_thirteen_claims_registered():
    assert sorted(c.number for c in CLAIMS.values()) == list(range(1, 14))
    for c in CLAIMS.values():
        assert len(c.quote) > 30 and len(c.setup) > 30, c.name
        assert {"small", "full"} <= set(c.budgets), c.name
        assert c.budgets["small"].get("seeds", 3) >= 3, c.name
        assert c.command() == f"muonlab claims {c.name} --budget small"
        assert c.seed[:3] in {"000", "001", "002", "003", "004"}


def test_get_claim_by_name_and_number():
    assert get_claim("5").name == "sensing_flattening"
    assert get_claim("kappa_small").number == 2
    with pytest.raises(ValueError, match="unknown claim"):
        get_claim("nope")


# ---- statistics and verdict rules ----------------------------------------------------------------


def test_ci_verdict_rules():
    assert ci_verdict((1.0, 0.5, 1.5), ">") == SUPPORTED
    assert ci_verdict((-1.0, -1.5, -0.5), ">") == NOT_SUPPORTED
    assert ci_verdict((0.1, -0.5, 0.7), ">") == INCONCLUSIVE
    assert ci_verdict((-1.0, -1.5, -0.5), "<") == SUPPORTED
    assert ci_verdict((1.6, 1.5, 1.7), ">", threshold=1.0) == SUPPORTED
    assert ci_verdict((1.0, 0.5, 1.5), ">", n=2) == INCONCLUSIVE  # fewer than 3 seeds
    assert ci_verdict((1.0, math.nan, math.nan), ">") == INCONCLUSIVE


def test_combine():
    assert combine([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert combine([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([INCONCLUSIVE, NOT_SUPPORTED]) == NOT_SUPPORTED


def test_bootstrap_cis_on_synthetic_data():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.1, 10), rng.normal(0.0, 0.1, 10)
    m, lo, hi = diff_ci(a, b)
    assert lo < m < hi and lo > 0.8 and hi < 1.2
    m, lo, hi = mean_ci([1.0, 1.0, 1.0])
    assert (m, lo, hi) == (1.0, 1.0, 1.0)
    r, lo, hi = ratio_ci([2.0, 2.1, 1.9], [1.0, 1.05, 0.95])
    assert abs(r - 2.0) < 1e-9 and lo < 2.0 < hi
    # a clean 1/N law has slope −1 and a tight CI
    Ns = [100, 200, 400, 800]
    ys = [[s / n for n in Ns] for s in (1.0, 1.1, 0.9)]
    slope, lo, hi = loglog_slope(Ns, ys)
    assert abs(slope + 1) < 1e-9 and abs(lo + 1) < 1e-6 and abs(hi + 1) < 1e-6


def test_best_lr_direction_follows_the_metric():
    from pathlib import Path

    from muonlab.claims.base import best_lr
    from muonlab.lab.runner import RunConfig

    res = [(RunConfig("w", "muon", seed=s, hparams={"lr": lr}), Path("."), {"val/acc": acc, "val/loss": 1 - acc})
           for s in range(3) for lr, acc in ((0.01, 0.5), (0.02, 0.9), (0.04, 0.7))]
    assert best_lr(res, "val/acc")["muon"][0] == 0.02
    assert best_lr(res, "val/loss")["muon"][0] == 0.02
    diverged = [(c, p, {**s, "diverged": True}) if c.hparams["lr"] == 0.02 else (c, p, s) for c, p, s in res]
    assert best_lr(diverged, "val/loss")["muon"][0] == 0.04


def test_atsr_reading():
    rows = [{"step": s, "val/align_0": min(1, s / 10), "val/align_1": min(1, s / 40)} for s in range(0, 101, 5)]
    value, missing = atsr(rows, 2)
    assert missing == 0 and value == pytest.approx(40 / 10)
    rows = [{"step": s, "val/align_0": 1.0, "val/align_1": 0.0} for s in range(5, 101, 5)]
    value, missing = atsr(rows, 2)
    assert missing == 1 and value == pytest.approx(100 / 5)  # censored at the last step


def test_claim_result_rejects_unknown_verdict():
    with pytest.raises(ValueError):
        ClaimResult({}, [], [], "rule", "maybe", "why")
    assert set(VERDICTS) == {SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE}


# ---- rendering -----------------------------------------------------------------------------------


def _fake(name: str, number: int, verdict_from: float) -> Claim:
    def experiment(ctx):
        ci = (verdict_from, verdict_from - 0.1, verdict_from + 0.1)
        return ClaimResult({"d": ci}, ["| a | b |", "|---|---|", "| 1 | 2 |"], [], "CI above 0",
                           ci_verdict(ci, ">"), f"d = {verdict_from}")

    return Claim(name, number, "003 test", "a quoted claim from a seed document", "a setup " * 5,
                 {"small": {"seeds": 3}, "full": {"seeds": 5}}, experiment)


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
               "--set", "instances=3", "steps=300"])
    assert rc == 0
    text = docs.read_text()
    assert "**Verdict:**" in text and "sensing_flattening" in text
    assert text.count("not run yet") >= 12
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
    assert result.verdict in VERDICTS
    assert result.seconds < 15 * 60
    assert claim.cached(tmp_path / "out") is not None
