"""The benchmark commands run and report what they claim (no timing is asserted: benchmarks are not tests)."""

from __future__ import annotations

import pytest
import torch

from muonlab.bench import orth, paramsets, step
from muonlab.matfn import polar_svd


def test_accuracy_columns_are_exact_for_an_exact_polar_update():
    g = torch.randn(24, 40, dtype=torch.float64)
    before = torch.randn(24, 40, dtype=torch.float64)
    after = before - 0.02 * polar_svd(g)
    spread, sine = step._accuracy(before, after, g)
    assert spread == pytest.approx(1.0, abs=1e-9)
    assert sine == pytest.approx(0.0, abs=1e-6)
    spread, sine = step._accuracy(before, before - 0.02 * g, g)  # the raw gradient is not orthogonal
    assert spread > 1.5 and 0.05 < sine < 1


def test_step_bench_runs_contenders_side_by_side_and_reports_accuracy():
    names = ["torch.optim.Muon+AdamW", "muonlab", "muonlab(ns_gram=False)"]
    rows = step.run("small-48x64", rounds=2, warmup=0, names=names)
    assert [r["contender"] for r in rows] == names
    assert rows[0]["ratio"] == 1.0
    for r in rows:
        assert r["median_s"] > 0 and 0 < r["polar_sin"] < 1
        # same polynomial, same dtype: the same orthogonality up to bf16 rounding
        assert r["sigma_ratio"] == pytest.approx(rows[0]["sigma_ratio"], rel=2e-2)
    text = step.format_rows(rows, "small-48x64", 2)
    assert all(n in text for n in names) and "sin∠polar" in text


def test_step_bench_rejects_unknown_contenders_and_skips_unusable_anchors(monkeypatch):
    with pytest.raises(ValueError, match="no-such"):
        step.run("small-48x64", rounds=1, names=["no-such"])
    # a small conv set: torch.optim.Muon cannot take 4-D parameters, muonlab flattens them
    conv = [("conv", (8, 4, 3, 3), "hidden"), ("fc", (10, 8), "output"), ("fc.bias", (10,), "vector")]
    monkeypatch.setitem(paramsets.PARAMSETS, "tiny-conv", lambda: conv)
    rows = step.run("tiny-conv", rounds=1, warmup=0, names=["muonlab", "torch.optim.Muon+AdamW"])
    assert rows[0]["contender"] == "muonlab" and rows[0]["ratio"] == 1.0
    assert "2-D" in rows[-1]["skipped"]


def test_orth_bench_rows_cover_plain_gram_and_loop():
    rows = orth.run(shapes=[(32, 96), (3, 16, 16)], dtypes=("float32",), reps=1)
    assert {(r["shape"], r["variant"]) for r in rows} == {
        ("32×96", "plain"), ("32×96", "gram"), ("3×16×16", "plain"), ("3×16×16", "gram"), ("3×16×16", "loop")}
    for r in rows:
        assert 0.5 < r["sigma_min"] <= r["sigma_max"] < 1.25 or r["shape"] == "3×16×16"
        assert r["gflops"] > 0 and r["peak_gflops"] > 0
    assert "matmul peak" in orth.format_rows(rows)
