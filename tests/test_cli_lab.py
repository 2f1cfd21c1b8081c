"""The lab's CLI end to end in a temp dir: run, sweep, report, demo, list, and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from muonlab.cli import main
from muonlab.lab.records import load_runs

SHARED_TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
TINY_GPT = ["--set", "width=16", "depth=1", "heads=2", "context=8", "batch_size=2", "eval_batches=1"]


def one_line_error(capsys, argv: list[str], *needles: str) -> str:
    """Run argv, expect exit 2 and a single stderr line containing every needle."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_help_lists_every_subcommand():
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    out = subprocess.run([sys.executable, "-m", "muonlab.cli", "--help"], capture_output=True, text=True,
                         env=env, check=True).stdout
    for command in ("demo", "list", "report", "run", "sweep"):
        assert command in out


def test_list_shows_workloads_and_optimizers(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "workloads:" in out and "tiny_gpt" in out and "matrix_sensing" in out and "muon" in out


def test_run_tiny_gpt_on_a_text_file(tmp_path, capsys):
    if not SHARED_TEXT.exists():
        pytest.skip("shared tinyshakespeare not present")
    argv = ["run", "--workload", "tiny_gpt", "--optimizer", "muon", "--steps", "3", "--data", str(SHARED_TEXT),
            "--out", str(tmp_path), "--quiet", "--set", "lr=0.01", "adamw.lr=1e-3", *TINY_GPT[1:]]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("finished: tiny_gpt muon seed=0, 3 steps")
    (run,) = load_runs(tmp_path)
    assert run.finished and run.config["workload"]["corpus"] == str(SHARED_TEXT)
    assert run.config["lr"] == 0.01 and run.config["run"]["aux"] == {"lr": 1e-3}
    assert main(argv) == 0  # the same command again: nothing retrained
    assert capsys.readouterr().out.startswith("already finished")


def test_sweep_then_report(tmp_path, capsys):
    argv = ["sweep", "--workload", "matrix_sensing", "--optimizers", "muon,torch.optim.SGD",
            "--lrs", "0.01,0.03", "--seeds", "2", "--steps", "20", "--out", str(tmp_path), "--quiet",
            "--set", "eval_every=10", "--grid", "d=10,20"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "[16/16]" in out and "sweep finished: 16 point(s)" in out
    assert main(argv) == 0  # rerun: every point skipped
    assert capsys.readouterr().out.count("done already, skipped") == 16
    assert main(["report", str(tmp_path), "--target", "1.0", "--baseline", "torch.optim.SGD"]) == 0
    out = capsys.readouterr().out
    assert "best lr by median val/loss" in out and "muon d=20" in out
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Against `d`" in md and (tmp_path / "report" / "matrix_sensing_d.png").exists()


def test_demo_small(tmp_path, capsys):
    argv = ["demo", "--steps", "2", "--seeds", "1", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "muonlab demo: tiny_gpt on 'embedded'" in out and "demo finished" in out
    runs = load_runs(tmp_path)
    assert {"adamw", "muon"} <= {r.config["run"]["optimizer"] for r in runs}
    assert (tmp_path / "report" / "report.md").exists()


@pytest.mark.parametrize("argv, needles", [
    (["run", "--workload", "nope", "--optimizer", "muon"], ["'nope'", "available:", "tiny_gpt"]),
    (["run", "--workload", "mlp_digits", "--optimizer", "nope"], ["'nope'", "available:", "muon"]),
    (["run", "--workload", "mlp_digits", "--optimizer", "no_such_pkg.Opt"], ["no_such_pkg"]),
    (["run", "--workload", "mlp_digits", "--optimizer", "muon", "--set", "lrr=0.1"], ["lrr"]),
    (["run", "--workload", "mlp_digits", "--optimizer", "muon", "--set", "width=wide"], ["width", "int"]),
    (["run", "--workload", "mlp_digits", "--optimizer", "muon", "--set", "lr"], ["'lr'", "key=value"]),
    (["run", "--workload", "mlp_digits", "--optimizer", "muon", "--data", "x.txt"], ["--data"]),
    (["run", "--workload", "tiny_gpt", "--optimizer", "muon", "--data", "/no/such.txt"], ["/no/such.txt"]),
    (["run", "--workload", "mlp_digits", "--optimizer", "muon", "--set", "schedule=cosin"],
     ["cosin", "cosine"]),
    (["sweep", "--workload", "mlp_digits", "--optimizers", "muon", "--seeds", "x"], ["--seeds", "'x'"]),
    (["sweep", "--workload", "mlp_digits", "--optimizers", "muon", "--lrs", "a,b"], ["--lrs"]),
    (["sweep", "--workload", "mlp_digits", "--optimizers", "muon,nope"], ["'nope'", "available:"]),
    (["report", "/no/such/dir"], ["/no/such/dir"]),
    (["report", ".", "--target", "x"], ["--target"]),
])
def test_bad_arguments_are_one_line_errors(capsys, tmp_path, argv, needles):
    if argv[0] in ("run", "sweep"):
        argv = [*argv, "--out", str(tmp_path), "--quiet"]
    one_line_error(capsys, argv, *needles)
    assert not list(tmp_path.rglob("done"))


@pytest.mark.parametrize("argv, needle", [
    (["run", "--workload", "mlp_digits", "--optimizer", "muon", "--steps", "abc"], "invalid int value: 'abc'"),
    (["sweep", "--workload", "mlp_digits"], "required: --optimizers"),
    (["demo", "--seeds", "two"], "invalid int value: 'two'"),
    (["report"], "required: DIR"),
])
def test_argparse_errors_are_one_line_too(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
