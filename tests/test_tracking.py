"""Tracking mirrors (muonlab.lab.tracking): a tiny run mirrored to MLflow (a local file store),
W&B (offline) and TensorBoard holds the same metrics at the same steps as its metrics.jsonl, the
JSONL records are the same with and without tracking, a resumed run continues the same tracked
run without repeating a step, and a missing backend fails early naming the extra."""

from __future__ import annotations

import glob
import importlib.util
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from muonlab.lab.records import read_json, read_jsonl
from muonlab.lab.runner import RunConfig, run_one
from muonlab.lab.tracking import check_backends, numeric_metrics, parse_backends
from muonlab.lab.workloads.mlp_digits import MLPDigits

MLP = {"width": 16, "batch_size": 8, "n_train": 200}


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


HAVE = {"mlflow": _has("mlflow"), "wandb": _has("wandb"),
        "tensorboard": _has("tensorboard") and _has("tensorboard.backend.event_processing")}
AVAILABLE = ",".join(b for b, ok in HAVE.items() if ok)


def need(backend: str) -> None:
    if not HAVE[backend]:
        pytest.skip(f"{backend} is not installed (pip install muonlab[tracking])")


def config(**kw) -> RunConfig:
    base = {"workload": "mlp_digits", "optimizer": "muon", "steps": 30, "eval_every": 10, "knobs": dict(MLP)}
    return RunConfig(**{**base, **kw})


def tracking_env(mp: pytest.MonkeyPatch, root: Path) -> None:
    """Offline W&B under ``root``; MLflow 3 refuses a file store unless it is allowed explicitly."""
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_DIR", str(root))
    mp.setenv("WANDB_SILENT", "true")
    mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)


# ---- reading each backend back --------------------------------------------------------------------

def mlflow_history(uri: str, run_dir: Path) -> tuple[dict[str, dict[int, list[float]]], object]:
    """{metric: {step: [values]}} of the run's MLflow run (a list, so a duplicate would show), and the run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(read_json(run_dir / "tracking.json")["mlflow"]["run_id"])
    out: dict[str, dict[int, list[float]]] = {}
    for key in run.data.metrics:
        for m in client.get_metric_history(run.info.run_id, key):
            out.setdefault(key, {}).setdefault(m.step, []).append(m.value)
    return out, run


def wandb_records(path: str):
    """The protobuf records of an offline W&B run file (``run-<id>.wandb``).

    wandb 0.31 ships no reader, so this follows its format: a 7-byte header (``:W&B``, magic,
    version), then LevelDB-log records in 32 KiB blocks: crc32 (4), length (2), type (1: full,
    2: first, 3: middle, 4: last), data; a block tail shorter than a record header is padding.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def wandb_history(wandb_dir: Path, run_id: str) -> dict[str, dict[int, list[float]]]:
    """{metric: {step: [values]}} over every offline file of W&B run ``run_id`` (one per attempt)."""
    # offline-run-<time>-<id>, with a "-1" suffix when two attempts start in the same second
    files = sorted(glob.glob(str(wandb_dir / "wandb" / "offline-run-*" / f"run-{run_id}.wandb")))
    assert files, f"no offline W&B files for run {run_id} under {wandb_dir}"
    out: dict[str, dict[int, list[float]]] = {}
    for f in files:
        for rec in wandb_records(f):
            if rec.WhichOneof("record_type") != "history":
                continue
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
            step = int(items.pop("_step"))
            for key, value in items.items():
                if not key.startswith("_"):
                    out.setdefault(key, {}).setdefault(step, []).append(float(value))
    return out


def tensorboard_history(run_dir: Path) -> dict[str, dict[int, list[float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    out: dict[str, dict[int, list[float]]] = {}
    for key in acc.Tags()["scalars"]:
        for e in acc.Scalars(key):
            out.setdefault(key, {}).setdefault(e.step, []).append(e.value)
    return out


def expected(run_dir: Path, cast=float) -> dict[str, dict[int, list[float]]]:
    """What a mirror must hold: every number of metrics.jsonl at its step, once."""
    out: dict[str, dict[int, list[float]]] = {}
    for row in read_jsonl(run_dir / "metrics.jsonl"):
        for key, value in numeric_metrics(row).items():
            out.setdefault(key, {})[row["step"]] = [cast(value)]
    return out


def f32(v: float) -> float:  # TensorBoard scalars are float32
    return float(np.float32(v))


# ---- one untracked and one tracked run, shared by the read-back tests --------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if not AVAILABLE:
        pytest.skip("no tracking backend installed (pip install muonlab[tracking])")
    root = tmp_path_factory.mktemp("tracking")
    uri = (root / "mlruns").as_uri()
    with pytest.MonkeyPatch.context() as mp:
        tracking_env(mp, root / "wandb")
        plain = run_one(config(), root / "plain", progress=False)
        tracked = run_one(config(track=AVAILABLE, track_uri=uri, track_project="t"), root / "tracked",
                          progress=False)
    return {"root": root, "uri": uri, "plain": plain, "tracked": tracked}


def _strip_time(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if not k.startswith("time/")}


def test_records_are_the_same_with_and_without_tracking(runs):
    a, b = runs["root"] / "plain", runs["root"] / "tracked"
    rows_a, rows_b = read_jsonl(a / "metrics.jsonl"), read_jsonl(b / "metrics.jsonl")
    assert [r["step"] for r in rows_b] == [0, 10, 20, 30]
    # Bit for bit, apart from the wall-clock columns: the same JSON text per row.
    assert [json.dumps(_strip_time(r)) for r in rows_a] == [json.dumps(_strip_time(r)) for r in rows_b]
    assert _strip_time(runs["plain"]) == _strip_time(runs["tracked"])
    conf_a, conf_b = read_json(a / "config.json"), read_json(b / "config.json")
    assert conf_a["settings"] == conf_b["settings"] and conf_a["lr"] == conf_b["lr"]
    # The tracking fields never enter the run directory name.
    assert config().settings() == config(track="mlflow,wandb", track_uri="x", track_project="y").settings()
    assert conf_b["run"]["track"] == AVAILABLE and conf_a["run"]["track"] == ""
    state = read_json(b / "tracking.json")
    assert set(state) == set(parse_backends(AVAILABLE))
    assert all(entry["last_step"] == 30 for entry in state.values())
    assert not (a / "tracking.json").exists()


def test_mlflow_file_store_holds_the_jsonl_metrics(runs):
    need("mlflow")
    run_dir = runs["root"] / "tracked"
    got, run = mlflow_history(runs["uri"], run_dir)
    assert got == expected(run_dir)
    assert "train/loss" in got and 0 not in got["train/loss"]  # None at step 0 is not sent
    assert run.info.status == "FINISHED"
    assert run.data.params["run.seed"] == "0" and run.data.params["workload.width"] == "16"
    assert float(run.data.params["lr"]) == read_json(run_dir / "config.json")["lr"]
    assert run.data.tags["muonlab.optimizer"] == "muon"


def test_wandb_offline_run_holds_the_jsonl_metrics(runs):
    need("wandb")
    run_dir = runs["root"] / "tracked"
    run_id = read_json(run_dir / "tracking.json")["wandb"]["run_id"]
    assert wandb_history(runs["root"] / "wandb", run_id) == expected(run_dir)


def test_tensorboard_events_hold_the_jsonl_metrics(runs):
    need("tensorboard")
    run_dir = runs["root"] / "tracked"
    assert tensorboard_history(run_dir) == expected(run_dir, cast=f32)


# ---- resume ------------------------------------------------------------------------------------

class Killed(Exception):
    pass


def test_a_resumed_run_continues_the_same_tracked_run_without_repeats(tmp_path, monkeypatch):
    if not AVAILABLE:
        pytest.skip("no tracking backend installed (pip install muonlab[tracking])")
    tracking_env(monkeypatch, tmp_path / "wandb")
    uri = (tmp_path / "mlruns").as_uri()
    # Evaluations every 10 steps, checkpoints every 20; killed at step 35, after the row at 30
    # reached the trackers: the resume restarts at 20 and measures 30 again.
    cfg = config(steps=40, checkpoint_every=20, track=AVAILABLE, track_uri=uri, track_project="r")
    calls = {"n": 0}
    original = MLPDigits.get_batch

    def get_batch(self, gen):
        calls["n"] += 1
        if calls["n"] > 35:
            raise Killed
        return original(self, gen)

    monkeypatch.setattr(MLPDigits, "get_batch", get_batch)
    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        run_one(cfg, run_dir, progress=False)
    first = read_json(run_dir / "tracking.json")
    assert all(entry["last_step"] == 30 for entry in first.values())
    monkeypatch.setattr(MLPDigits, "get_batch", original)

    summary = run_one(cfg, run_dir, progress=False)
    assert summary["resumed_at"] == [20]
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [0, 10, 20, 30, 40]
    state = read_json(run_dir / "tracking.json")
    assert {k: v["run_id"] for k, v in state.items()} == {k: v["run_id"] for k, v in first.items()}
    # The row at 30 was mirrored before the kill; its re-measurement matches it except for the
    # wall-clock columns, which keep the first attempt's values in the trackers.
    want = _strip_time(expected(run_dir))
    assert sorted(want["val/loss"]) == [0, 10, 20, 30, 40]
    if HAVE["mlflow"]:
        from mlflow.tracking import MlflowClient

        got, run = mlflow_history(uri, run_dir)
        assert _strip_time(got) == want  # one value per step: nothing repeated, nothing missing
        assert sorted(got["time/train_s"]) == [0, 10, 20, 30, 40]
        assert run.info.status == "FINISHED"
        exp = MlflowClient(tracking_uri=uri).get_experiment_by_name("r")
        assert len(MlflowClient(tracking_uri=uri).search_runs([exp.experiment_id])) == 1
    if HAVE["wandb"]:
        assert _strip_time(wandb_history(tmp_path / "wandb", state["wandb"]["run_id"])) == want
    if HAVE["tensorboard"]:
        assert _strip_time(tensorboard_history(run_dir)) == _strip_time(expected(run_dir, cast=f32))


def test_tracking_turned_on_at_resume_back_fills_earlier_rows(tmp_path, monkeypatch):
    need("tensorboard")
    calls = {"n": 0}
    original = MLPDigits.get_batch

    def get_batch(self, gen):
        calls["n"] += 1
        if calls["n"] > 25:
            raise Killed
        return original(self, gen)

    monkeypatch.setattr(MLPDigits, "get_batch", get_batch)
    with pytest.raises(Killed):
        run_one(config(), tmp_path / "run", progress=False)  # untracked: rows 0, 10, 20 on disk
    monkeypatch.setattr(MLPDigits, "get_batch", original)
    run_one(config(track="tensorboard"), tmp_path / "run", progress=False)
    got = tensorboard_history(tmp_path / "run")
    assert got == expected(tmp_path / "run", cast=f32)
    assert sorted(got["val/loss"]) == [0, 10, 20, 30]


# ---- errors ------------------------------------------------------------------------------------

def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="'neptune'.*mlflow, wandb, tensorboard"):
        parse_backends("mlflow,neptune")
    assert parse_backends(" MLflow , tensorboard,mlflow") == ["mlflow", "tensorboard"]
    assert parse_backends("") == [] and parse_backends(("wandb",)) == ["wandb"]


@pytest.mark.parametrize("backend,modules", [
    ("mlflow", ["mlflow"]),
    ("wandb", ["wandb"]),
    ("tensorboard", ["torch.utils.tensorboard", "tensorboardX"]),
])
def test_missing_backend_names_the_extra_before_training(tmp_path, monkeypatch, backend, modules):
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # import of a None entry raises ImportError
    with pytest.raises(ImportError, match=r"muonlab\[tracking\]") as err:
        check_backends(f"tensorboard,{backend}" if backend != "tensorboard" else backend)
    assert repr(backend) in str(err.value)
    with pytest.raises(ImportError, match=r"muonlab\[tracking\]"):
        run_one(config(track=backend), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # failed before training


def test_cli_track_option(tmp_path, monkeypatch, capsys):
    from muonlab.cli import main

    monkeypatch.setitem(sys.modules, "wandb", None)
    argv = ["run", "--workload", "mlp_digits", "--optimizer", "muon", "--steps", "2", "--quiet",
            "--out", str(tmp_path), "--set", "width=16", "n_train=40", "batch_size=8"]
    assert main([*argv, "--track", "wandb"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "muonlab[tracking]" in err and "'wandb'" in err
    assert main([*argv, "--track", "neptune"]) == 2
    assert "--track='neptune'" in capsys.readouterr().err
    assert not list(tmp_path.rglob("metrics.jsonl"))

    import argparse

    from muonlab.lab.cli_support import add_run_arguments, base_config

    p = argparse.ArgumentParser()
    add_run_arguments(p)
    args = p.parse_args(["--workload", "mlp_digits", "--set", "track_uri=http://localhost:5000"])
    assert base_config(args).track == "" and base_config(args).track_uri == "http://localhost:5000"
    if HAVE["tensorboard"]:
        args = p.parse_args(["--workload", "mlp_digits", "--track", "tensorboard"])
        assert base_config(args).track == "tensorboard"
        assert main([*argv, "--track", "tensorboard"]) == 0
        (run_dir,) = (p.parent for p in tmp_path.rglob("metrics.jsonl"))
        # the tracked run lands in the directory an untracked one would have
        assert run_dir.relative_to(tmp_path).parts[2] == "batch_size=8,n_train=40,steps=2,width=16"
        assert tensorboard_history(run_dir) == expected(run_dir, cast=f32)
