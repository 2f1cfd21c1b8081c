"""Reports: the pure functions on hand-made records, and a full report from a real small sweep."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from muonlab.lab import report, stats as R
from muonlab.lab.records import Run
from muonlab.lab.runner import RunConfig
from muonlab.lab.sweep import sweep


def fake_run(optimizer: str, lr: float, seed: int, finals: list[float], *, every: int = 10,
             diverged: bool = False, settings: dict | None = None, workload: str = "w",
             probe: list[dict] | None = None) -> Run:
    """A finished run whose metric takes the values ``finals`` at steps 0, every, 2·every, ..."""
    rows = [{"step": i * every, "val/loss": v, "time/train_s": float(i)} for i, v in enumerate(finals)]
    config = {"run": {"workload": workload, "optimizer": optimizer, "seed": seed, "eval_every": every},
              "settings": {"lr": lr, "steps": every * (len(finals) - 1), **(settings or {})}, "lr": lr,
              "workload": {"metric": "val/loss"}}
    return Run(Path(f"/x/{optimizer}/{lr}/{seed}"), config, rows, probe or [],
               {"diverged": diverged, "time/train_s": 1.0})


def test_best_lr_is_chosen_by_median_not_mean():
    runs = [
        # lr 0.1: median 1.0, but one bad seed makes its mean 2.0
        fake_run("m", 0.1, 0, [3, 1.0]), fake_run("m", 0.1, 1, [3, 1.0]), fake_run("m", 0.1, 2, [3, 4.0]),
        # lr 0.01: mean 1.2 (better), median 1.2 (worse)
        *(fake_run("m", 0.01, s, [3, 1.2]) for s in range(3)),
    ]
    (row,) = R.best_lr_table(runs, "val/loss")
    assert row.lr == 0.1 and row.median == 1.0 and (row.low, row.high) == (1.0, 4.0)
    assert row.seeds == 3 and row.lrs == [0.01, 0.1] and row.at_edge


def test_diverged_runs_count_as_worst():
    runs = [fake_run("m", 1.0, s, [3, 0.5], diverged=True) for s in range(2)]
    runs += [fake_run("m", 0.1, s, [3, 2.0]) for s in range(2)]
    (row,) = R.best_lr_table(runs, "val/loss")
    assert row.lr == 0.1
    (sens,) = R.lr_sensitivity(runs, "val/loss")
    assert sens.lrs == [0.1, 1.0] and sens.median[1] == math.inf and sens.diverged == [0, 2]


def test_labels_show_only_the_settings_that_vary():
    runs = [fake_run("m", 0.1, 0, [3, 1], settings={"width": w, "depth": 2}) for w in (64, 128)]
    labels = sorted(r.label for r in R.best_lr_table(runs, "val/loss"))
    assert labels == ["m width=128", "m width=64"]
    # a setting only one optimizer has (AdamW's lr inside a matrix method) is not a label
    runs = [fake_run("muon", 0.02, 0, [3, 1], settings={"adamw.lr": 3e-3}), fake_run("adamw", 3e-3, 0, [3, 2])]
    best = R.best_lr_table(runs, "val/loss")
    assert sorted(r.label for r in best) == ["adamw", "muon"]
    (c,) = R.comparisons(R.target_table(runs, "val/loss", best, {"w": 2.0}), best, "adamw")
    assert (c.label, c.baseline) == ("muon", "adamw")


def test_curves_mean_and_std_over_seeds():
    runs = [fake_run("m", 0.1, 0, [4, 2, 1]), fake_run("m", 0.1, 1, [4, 4, 3])]
    best = R.best_lr_table(runs, "val/loss")
    (c,) = R.curves(runs, "val/loss", best)
    assert c.steps == [0, 10, 20] and c.mean == [4, 3, 2] and c.std == [0, 1, 1] and c.seeds == 2


def test_steps_to_target_and_direction():
    rows = [{"step": 0, "val/loss": 3}, {"step": 10, "val/loss": 2}, {"step": 20, "val/loss": 1}]
    assert R.steps_to_target(rows, "val/loss", 2.0) == 10
    assert R.steps_to_target(rows, "val/loss", 0.5) is None
    acc = [{"step": 0, "val/acc": 0.1}, {"step": 5, "val/acc": 0.9}]
    assert R.steps_to_target(acc, "val/acc", 0.8) == 5
    assert not R.lower_is_better("val/acc") and R.lower_is_better("val/loss")


def test_significance_rule():
    fast, slow = [100, 110, 105, 95], [200, 190, 210, 205]
    c = R.compare_steps(fast, slow)
    assert c.significant and c.diff < 0 and c.ci[1] < 0 and c.verdict == "significantly fewer steps"
    noisy = R.compare_steps([100, 300, 200], [150, 250, 180])
    assert not noisy.significant and noisy.verdict == "not significant"
    assert R.compare_steps([100, 110], [200, 210]).verdict.startswith("no claim: fewer than 3")
    assert R.compare_steps([100, None, 90], [200, 210, 190]).verdict.startswith("no claim: not every")
    lo, hi = R.mean_ci([1, 2, 3, 4])
    assert lo < 2.5 < hi and hi - 2.5 == pytest.approx(2.5 - lo)  # a t interval is symmetric
    assert "excludes 0" in R.SIGNIFICANCE_RULE and "3 seeds" in R.SIGNIFICANCE_RULE


def test_target_table_and_comparisons():
    runs = [fake_run("adamw", 0.01, s, [4, 3, 2, 1 + 0.1 * s]) for s in range(3)]
    runs += [fake_run("muon", 0.02, s, [4, 2, 1.5, 1.0 + 0.1 * s]) for s in range(3)]
    best = R.best_lr_table(runs, "val/loss")
    target = R.auto_target(best, "w", "val/loss")
    assert target == pytest.approx(1.2)  # the worst seed of the two best-LR configs
    rows = R.target_table(runs, "val/loss", best, {"w": 2.0})
    by = {r.label: r for r in rows}
    assert by["muon"].steps == [10, 10, 10] and by["adamw"].steps == [20, 20, 20]
    (c,) = R.comparisons(rows, best, "adamw")
    assert c.label == "muon" and c.diff == -10


def test_diagnostics_series_wide_and_long_rows():
    wide = [{"step": 5, "spectral/stable_rank/a": 2.0, "spectral/stable_rank/b": 4.0},
            {"step": 10, "spectral/stable_rank/a": 1.0, "spectral/stable_rank/b": 3.0}]
    long = [{"step": 5, "param": "a", "metric": "kappa", "value": 0.1},
            {"step": 5, "param": "b", "metric": "kappa", "value": 0.3}]
    runs = [fake_run("m", 0.1, 0, [3, 1], probe=wide + long)]
    series = R.diagnostics_series(runs, R.best_lr_table(runs, "val/loss"))
    (d,) = series.values()
    assert d["spectral/stable_rank"] == ([5, 10], [3.0, 2.0])
    assert d["kappa"] == ([5], [pytest.approx(0.2)])


def test_axis_table_for_lr_transfer():
    runs = []
    for w, best_lr in ((64, 0.1), (128, 0.05)):
        runs += [fake_run("m", best_lr, 0, [3, 1.0], settings={"width": w}),
                 fake_run("m", 0.5, 0, [3, 2.0], settings={"width": w})]
    best = R.best_lr_table(runs, "val/loss")
    assert R.numeric_axes(best, "w") == ["width"]
    (row,) = R.axis_table(best, "width")
    assert row.values == [64, 128] and row.best_lr == [0.1, 0.05]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A real, tiny sweep: 2 optimizers × 2 lrs × 3 seeds of matrix sensing (a few seconds)."""
    out = tmp_path_factory.mktemp("sweep")
    base = RunConfig("matrix_sensing", "", steps=60, eval_every=10)
    sweep("matrix_sensing", ["sgd", "muon"], out, seeds=[0, 1, 2], lrs=[0.01, 0.05], base=base,
          progress=False)
    return out


def test_write_report_from_a_sweep(sweep_dir, tmp_path):
    path, text = report.write_report(sweep_dir, tmp_path / "rep", baseline="sgd")
    md = path.read_text()
    for heading in ("Best learning rate", "Training curves", "LR sensitivity", "Steps to target",
                    "Significance rule", "Provenance"):
        assert heading in md, heading
    for png in ("matrix_sensing_curves.png", "matrix_sensing_lr.png"):
        assert (tmp_path / "rep" / png).stat().st_size > 10_000
        assert f"]({png})" in md
    assert "best lr by median val/loss" in text and "vs sgd" in text


def test_report_errors_are_clear(sweep_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        report.write_report(tmp_path / "missing")
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(ValueError, match="no finished runs"):
        report.write_report(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"metric 'val/nope' is not in the records; available: .*val/loss"):
        report.write_report(sweep_dir, tmp_path / "r", metric="val/nope", plots=False)
    with pytest.raises(ValueError, match=r"baseline 'adam' .*available: muon, sgd"):
        report.write_report(sweep_dir, tmp_path / "r", baseline="adam", plots=False)


def test_diagnostics_series_reads_probe_records():
    nested = [{"step": s, "param": p, "shape": [4, 4], "group": 0,
               "weight": {"stable_rank": v, "singular_values": [1.0, 0.5]},
               "pairwise": {"grad_update_alignment": 0.5, "polar_reference": "grad"}}
              for s, p, v in ((0, "a", 2.0), (0, "b", 4.0), (10, "a", 1.0), (10, "b", 1.0))]
    runs = [fake_run("m", 0.1, 0, [3, 1], probe=nested)]
    (d,) = R.diagnostics_series(runs, R.best_lr_table(runs, "val/loss")).values()
    assert set(d) == {"weight/stable_rank", "pairwise/grad_update_alignment"}  # preferred ones
    assert d["weight/stable_rank"] == ([0, 10], [3.0, 1.0])


def test_report_with_the_real_probe(tmp_path):
    pytest.importorskip("muonlab.diagnostics")
    from muonlab.lab.runner import run_one

    cfg = RunConfig("mlp_digits", "muon", steps=20, eval_every=10, probe_every=5,
                    knobs={"width": 16, "batch_size": 8})
    run_one(cfg, tmp_path / "runs" / "a", progress=False)
    path, _ = report.write_report(tmp_path / "runs")
    assert "Spectral diagnostics" in path.read_text()
    assert (path.parent / "mlp_digits_diagnostics.png").exists()
