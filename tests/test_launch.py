"""Launchers (issue 17): the same 8-point sweep gives bitwise the same records serially, with
--jobs 2, under a local Ray and under submitit; failed and killed points are reported and resumed.

The sweep: mlp_digits (width 32, 20 steps, an evaluation and a checkpoint every 5) × muon, adamw ×
lr 0.01, 0.03 × seeds 0, 1, one torch thread per run. Records are compared whole, less wall-clock
fields (``time/*``, the provenance block) and ``resumed_at``, which says where a resumed run
restarted. Failures are injected with the launcher's test hook (``MUONLAB_TEST_FAULT``).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from muonlab.cli import main
from muonlab.lab.launch import FAULT_ENV, device_slots, make_launcher, read_failure
from muonlab.lab.launch_cli import parse_mem_gb, parse_minutes
from muonlab.lab.launch_progress import SweepProgress
from muonlab.lab.runner import RunConfig
from muonlab.lab.sweep import SweepError, sweep

OPTIMIZERS, LRS, SEEDS = ["muon", "adamw"], [0.01, 0.03], [0, 1]
BASE = RunConfig("mlp_digits", "", steps=20, eval_every=5, knobs={"width": 32})
ARGV = ["sweep", "--workload", "mlp_digits", "--optimizers", "muon,adamw", "--lrs", "0.01,0.03", "--seeds", "2",
        "--steps", "20", "--set", "width=32", "eval_every=5", "--threads", "1", "--quiet"]


def run_sweep(out: Path, launcher, **kw):
    return sweep("mlp_digits", OPTIMIZERS, out, seeds=SEEDS, lrs=LRS, base=BASE, launcher=launcher,
                 progress=False, **kw)


def records(root: Path) -> dict[str, tuple]:
    """Every finished run under ``root``: metric rows, done summary and config, less wall-clock fields."""
    def strip(d: dict) -> dict:
        return {k: v for k, v in d.items() if not k.startswith("time/") and k != "resumed_at"}

    out = {}
    for done in sorted(Path(root).rglob("done")):
        run = done.parent
        rows = [strip(json.loads(line)) for line in (run / "metrics.jsonl").read_text().splitlines()]
        config = json.loads((run / "config.json").read_text())
        config.pop("provenance")
        out[str(run.relative_to(root))] = (rows, strip(json.loads(done.read_text())), config)
    return out


def done_stamps(root: Path) -> dict[Path, tuple[int, str]]:
    return {p: (p.stat().st_mtime_ns, p.read_text()) for p in Path(root).rglob("done")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, tuple]:
    out = tmp_path_factory.mktemp("serial")
    results = run_sweep(out, make_launcher("serial", threads=1))
    assert len(results) == 8
    recs = records(out)
    assert len(recs) == 8 and all(cfg["run"]["threads"] == 1 for _, _, cfg in recs.values())
    return recs


def test_jobs_2_gives_the_serial_records_bitwise(reference, tmp_path):
    results = run_sweep(tmp_path, make_launcher("local", jobs=2, threads=1))
    assert sorted(str(r[1].relative_to(tmp_path)) for r in results) == sorted(reference)
    assert records(tmp_path) == reference
    assert not list(tmp_path.rglob("failed"))


def test_default_threads_are_the_serial_sweeps_in_every_launcher(tmp_path):
    """No --threads: every run gets this process's count (what the serial sweep uses), recorded."""
    base = RunConfig("mlp_digits", "muon", steps=4, eval_every=2, knobs={"width": 16})
    serial = sweep("mlp_digits", ["muon"], tmp_path / "s", lrs=[0.01, 0.02], base=base, progress=False)
    local = sweep("mlp_digits", ["muon"], tmp_path / "l", lrs=[0.01, 0.02], base=base, progress=False,
                  launcher=make_launcher("local", jobs=2))
    assert records(tmp_path / "s") == records(tmp_path / "l")
    threads = {json.loads((d / "config.json").read_text())["run"]["threads"] for _, d, _ in serial + local}
    assert threads == {torch.get_num_threads()}


def test_a_failing_point_is_reported_the_others_finish_and_a_rerun_retries_it(reference, tmp_path, monkeypatch,
                                                                              capsys):
    out = str(tmp_path)
    monkeypatch.setenv(FAULT_ENV, json.dumps({"match": "lr=0.03", "action": "raise"}))
    assert main([*ARGV, "--out", out, "--jobs", "2"]) == 1
    cap = capsys.readouterr()
    assert "4 point(s) finished, 4 failed" in cap.out and "RuntimeError: injected fault" in cap.err
    failed = sorted(tmp_path.rglob("failed"))
    assert len(failed) == 4 and all("lr=0.03" in str(p) for p in failed)
    record = read_failure(failed[0].parent)
    assert record["reason"].startswith("RuntimeError: injected fault") and "Traceback" in record["traceback"]
    assert len(records(tmp_path)) == 4

    monkeypatch.delenv(FAULT_ENV)
    before = done_stamps(tmp_path)
    assert main([*ARGV, "--out", out, "--jobs", "2"]) == 0
    assert capsys.readouterr().out.count("done already, skipped") == 4
    assert all(done_stamps(tmp_path)[p] == stamp for p, stamp in before.items())  # not rerun
    assert not list(tmp_path.rglob("failed")) and records(tmp_path) == reference


def test_a_killed_worker_fails_only_its_point_which_then_resumes_from_its_checkpoint(reference, tmp_path,
                                                                                     monkeypatch):
    victim = "adamw/eval_every=5,lr=0.01,steps=20,width=32/seed=0"
    monkeypatch.setenv(FAULT_ENV, json.dumps({"match": victim, "action": "kill", "at": "checkpoint", "after": 2}))
    with pytest.raises(SweepError) as info:
        run_sweep(tmp_path, make_launcher("local", jobs=2, threads=1))
    (_, run_dir, reason), = info.value.failures
    assert victim in str(run_dir) and "SIGKILL" in reason and len(info.value.results) == 7
    assert read_failure(run_dir)["reason"] == reason and (run_dir / "checkpoint.pt").exists()

    monkeypatch.delenv(FAULT_ENV)
    before = done_stamps(tmp_path)
    run_sweep(tmp_path, make_launcher("local", jobs=2, threads=1))
    assert all(done_stamps(tmp_path)[p] == stamp for p, stamp in before.items())
    assert json.loads((run_dir / "done").read_text())["resumed_at"] == [5]  # the step-5 checkpoint
    assert records(tmp_path) == reference and read_failure(run_dir) is None


@pytest.mark.slow
def test_a_killed_parallel_sweep_resumes_without_repeating_finished_points(reference, tmp_path):
    """The whole sweep (its process group: the sweep, the fork server, the workers) is killed
    with SIGKILL mid-run; the same command then finishes it."""
    victim = "muon/eval_every=5,lr=0.03,steps=20,width=32/seed=1"
    env = {**os.environ, FAULT_ENV: json.dumps({"match": victim, "action": "killpg", "at": "checkpoint",
                                                "after": 2})}
    cmd = [sys.executable, "-m", "muonlab.cli", *ARGV, "--out", str(tmp_path), "--jobs", "2"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, start_new_session=True,
                           check=False)
    assert first.returncode == -signal.SIGKILL
    before = done_stamps(tmp_path)
    assert len(before) < 8
    time.sleep(0.05)  # distinct mtimes for anything rewritten
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("done already, skipped") == len(before)
    assert all(done_stamps(tmp_path)[p] == stamp for p, stamp in before.items())
    assert json.loads((tmp_path / "mlp_digits" / victim / "done").read_text())["resumed_at"] == [5]
    assert records(tmp_path) == reference


def kill_once(tmp_path: Path, victim: str) -> str:
    """The hook that kills the worker of ``victim`` after its step-5 checkpoint, the first time only."""
    return json.dumps({"match": victim, "action": "kill", "at": "checkpoint", "after": 2,
                       "once": str(tmp_path / "fired")})


def test_local_ray_gives_the_serial_records_bitwise_and_reports_a_dead_worker(reference, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray already runs in this process: the test starts its own, 2 CPUs")
    victim = "muon/eval_every=5,lr=0.03,steps=20,width=32/seed=0"
    monkeypatch.setenv(FAULT_ENV, kill_once(tmp_path, victim))  # before ray.init: its workers inherit it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(SweepError) as info:
            run_sweep(tmp_path / "runs", make_launcher("ray", threads=1))
        (_, run_dir, reason), = info.value.failures
        assert victim in str(run_dir) and reason.startswith("Ray worker died") and len(info.value.results) == 7
        run_sweep(tmp_path / "runs", make_launcher("ray", threads=1))  # the hook fired once: no fault now
    finally:
        ray.shutdown()
    assert json.loads((run_dir / "done").read_text())["resumed_at"] == [5]
    assert records(tmp_path / "runs") == reference


@pytest.mark.slow
def test_submitit_local_executor_gives_the_serial_records_bitwise_and_reports_a_dead_job(reference, tmp_path,
                                                                                         monkeypatch):
    pytest.importorskip("submitit")
    victim = "adamw/eval_every=5,lr=0.03,steps=20,width=32/seed=1"
    monkeypatch.setenv(FAULT_ENV, kill_once(tmp_path, victim))
    launcher = make_launcher("slurm", jobs=2, threads=1, cluster="local")
    with pytest.raises(SweepError) as info:
        run_sweep(tmp_path / "runs", launcher)
    (_, run_dir, reason), = info.value.failures
    assert victim in str(run_dir) and "ended without a result" in reason and len(info.value.results) == 7
    run_sweep(tmp_path / "runs", launcher)
    assert json.loads((run_dir / "done").read_text())["resumed_at"] == [5]
    assert records(tmp_path / "runs") == reference
    assert list((tmp_path / "runs" / ".submitit").glob("*_log.out"))  # submitit ran them as jobs


def test_submitit_debug_executor_reports_a_failing_point(reference, tmp_path, monkeypatch):
    """submitit's in-process executor: the same records, and a raising point reported, not lost."""
    pytest.importorskip("submitit")
    monkeypatch.setenv(FAULT_ENV, json.dumps({"match": "muon/eval_every=5,lr=0.01", "action": "raise"}))
    with pytest.raises(SweepError) as info:
        run_sweep(tmp_path, make_launcher("slurm", threads=1, cluster="debug", folder=tmp_path / "logs"))
    assert len(info.value.failures) == 2 and len(info.value.results) == 6
    assert all("RuntimeError: injected fault" in reason for _, _, reason in info.value.failures)
    monkeypatch.delenv(FAULT_ENV)
    run_sweep(tmp_path, make_launcher("slurm", threads=1, cluster="debug", folder=tmp_path / "logs"))
    assert records(tmp_path) == reference


def test_progress_is_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    bar = SweepProgress(4, done=1, stream=stream, interval=3600)
    bar.started()
    bar.started()
    bar.ended(ok=True)
    bar.ended(ok=False)
    bar.started()
    bar.close()
    first, last = stream.getvalue().splitlines()  # at the start and at the end only: interval not reached
    assert first.startswith("sweep: 1/4 done, 0 failed, 0 running,") and first.endswith("ETA ?")
    assert last.startswith("sweep: 2/4 done, 1 failed, 1 running,") and "ETA 0:00:0" in last


def test_launcher_options_are_checked(tmp_path, capsys):
    def error(*extra: str) -> str:
        assert main([*ARGV, "--out", str(tmp_path), *extra]) == 2
        return capsys.readouterr().err

    assert "--ray-address apply to another launcher than --launcher local" in error("--jobs", "2", "--ray-address",
                                                                                     "auto")
    assert "jobs=2 needs --launcher local" in error("--launcher", "serial", "--jobs", "2")
    assert "--jobs 0 must be >= 1" in error("--jobs", "0")
    assert "--slurm-time '1h'" in error("--launcher", "slurm", "--slurm-cluster", "local", "--slurm-time", "1h")
    assert not list(tmp_path.rglob("config.json"))  # nothing ran


def test_a_missing_engine_names_its_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main([*ARGV, "--out", str(tmp_path), "--launcher", "ray"]) == 2
    assert "pip install 'muonlab[ray]'" in capsys.readouterr().err


def test_slurm_time_memory_and_device_slots():
    assert [parse_minutes(t) for t in ("90", "30:00", "1:30:00", "2-12", "1-00:00:30")] == [90, 30, 90, 3600, 1441]
    assert [parse_mem_gb(m) for m in ("16G", "16gb", "512M", "1T", "4")] == [16, 16, 0.5, 1024, 4]
    with pytest.raises(ValueError, match="'0'"):
        parse_minutes("0")
    assert device_slots(3, ["4", "6"]) == ["4", "6", "4"]  # one device per worker, round robin
    assert device_slots(2, ["0"]) == [None, None]  # a single device is not split


def test_the_claims_lab_sweeps_through_its_launcher(tmp_path):
    """Context.sweep hands its points to the launcher the claims CLI built (--jobs 2 --threads 1)."""
    from muonlab.claims.base import Context
    from muonlab.cli import build_parser
    from muonlab.lab.launch import LocalLauncher
    from muonlab.lab.launch_cli import launcher_from_args

    launcher = launcher_from_args(build_parser().parse_args(["claims", "x", "--jobs", "2", "--threads", "1"]))
    assert isinstance(launcher, LocalLauncher) and (launcher.jobs, launcher.threads) == (2, 1)
    ctx = Context(tmp_path, tmp_path / "fig", "fig", "small", {"seeds": 2, "steps": 4}, log=lambda _: None,
                  launcher=launcher)
    items = ctx.sweep("mlp_digits", ["muon"], lrs=[0.01], knobs={"width": 16})
    assert [c.seed for c, _, _ in items] == [0, 1] and all(s["step"] == 4 for _, _, s in items)
    assert {json.loads((d / "config.json").read_text())["run"]["threads"] for _, d, _ in items} == {1}
    assert len(ctx.run_seconds) == 2
