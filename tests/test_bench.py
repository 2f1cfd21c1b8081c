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


# ---- muonlab bench gpu: the prepared GPU suite, tried on a CPU with --smoke ------------------------


def _tables(text: str) -> list[list[str]]:
    """Markdown tables of ``text``: each a list of its lines (header, rule, rows)."""
    tables, cur = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def test_gpu_suite_smoke_on_cpu_appends_a_dated_section(tmp_path, capsys):
    import datetime
    import json

    from muonlab.bench import gpu
    from muonlab.cli import main

    out, js = tmp_path / "benchmarks.md", tmp_path / "rows.json"
    out.write_text("# Benchmarks\n\nearlier sections\n")
    rc = main(["bench", "gpu", "--device", "cpu", "--smoke", "--no-compile", "--out", str(out), "--json", str(js)])
    assert rc == 0
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nearlier sections\n\n## Smoke run of `muonlab bench gpu` on cpu")
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    section = text.split("earlier sections\n\n", 1)[1]
    assert section in capsys.readouterr().out  # printed too
    assert today in section and f"torch {torch.__version__}" in section
    assert "`muonlab bench gpu --device cpu --smoke --no-compile`" in section
    tables = _tables(section)
    assert len(tables) == 3  # step (one parameter set in smoke), orthogonalization, training
    for table in tables:
        assert set(table[1]) <= {"|", "-"} and len(table) > 2
        assert {line.count("|") for line in table} == {table[0].count("|")}, table  # well-formed rows
    res = json.loads(js.read_text())
    rows = res["step"]["gpt-tiny"]
    assert [r["contender"] for r in rows if "skipped" not in r][:2] == ["torch.optim.Muon+AdamW", "muonlab"]
    assert {r["contender"] for r in rows} == set(gpu.BASE_CONTENDERS)  # each ran or says why not
    for r in rows:
        if "skipped" not in r:
            assert r["median_s"] > 0 and 0 <= r["polar_sin"] < 1 and r["peak_mib"] is None  # no CUDA
            assert f"| {r['contender']} |" in section
    variants = {r["variant"] for r in res["orth"]}
    assert {"plain", "gram", "loop"} <= variants and not any("+compile" in v for v in variants)
    train = res["train"]
    assert [r["config"] for r in train] == ["muon", "polar_express_4", "adamw"]
    assert all(0 < r["val_loss"] < 10 and not r["diverged"] for r in train)


def test_gpu_suite_notes_what_it_skips(monkeypatch):
    """A missing anchor and a spent time budget are notes in the section, not failures."""
    from muonlab.bench import anchors, gpu

    def missing():
        raise ImportError("heavyball is not installed (pip install heavyball)")

    real = anchors.orthogonalizers
    monkeypatch.setattr(anchors, "orthogonalizers", lambda: {**real(), "heavyball": missing})
    res = gpu.run("cpu", smoke=True, compile=False, budget_s=1e-9, log=lambda msg: None)
    assert res["step"] == {} and res["train"] == []
    notes = "\n".join(res["notes"])
    assert "step on gpt-tiny: skipped" in notes and "training muon seed 0: skipped" in notes
    assert "orthogonalization of 32×96, heavyball: skipped (heavyball is not installed" in notes
    assert "3×16×16, torch.optim.Muon: skipped (2-D matrices only)" in notes
    section = gpu.format_section(res)
    assert "* Note: step on gpt-tiny: skipped" in section and "**Optimizer step" not in section


def test_gpu_suite_refuses_a_missing_cuda_device_and_a_missing_folder(tmp_path, capsys):
    from muonlab.cli import main

    assert main(["bench", "gpu", "--device", "cpu", "--smoke", "--out", str(tmp_path / "nowhere" / "b.md")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["bench", "gpu", "--device", "gpu0", "--out", "-"]) == 2
    assert "'gpu0' is not a torch device" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["bench", "gpu", "--out", "-"]) == 2
        assert "--device cpu --smoke" in capsys.readouterr().err


def test_emerging_optimizers_loader_leaves_typing_as_it_was():
    import typing

    pytest.importorskip("emerging_optimizers")
    from muonlab.bench import anchors

    had = hasattr(typing, "override")
    mod = anchors.import_emerging_optimizers()
    assert hasattr(mod, "Muon") and hasattr(typing, "override") == had
    O = anchors.orthogonalizers()["emerging_optimizers"]()(torch.randn(8, 12))
    s = torch.linalg.svdvals(O.double())
    assert O.shape == (8, 12) and 0.5 < s.min() <= s.max() < 1.3


@pytest.mark.slow
def test_gpu_suite_smoke_with_ns_compile(tmp_path):
    """The same smoke run with ns_compile on (torch.compile on a CPU: tens of seconds)."""
    from muonlab.bench import gpu

    res = gpu.run("cpu", smoke=True, compile=True, log=lambda msg: None)
    names = {r["contender"] for r in res["step"]["gpt-tiny"] if "skipped" not in r}
    assert set(gpu.COMPILED_CONTENDERS) <= names
    assert {"plain+compile", "gram+compile", "loop+compile"} <= {r["variant"] for r in res["orth"]}
    assert "muonlab(ns_compile=True)" in gpu.format_section(res)
