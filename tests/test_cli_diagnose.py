"""``muonlab diagnose``: every accepted file kind, the table, plots, JSON output and errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from muonlab.cli import main


def model_state() -> dict:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3), nn.Conv2d(2, 3, 2))
    return m.state_dict()


def table_rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    sep = next(i for i, line in enumerate(lines) if set(line) == {"-"})
    rows = {}
    for line in lines[sep + 1:]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


def test_state_dict_table(tmp_path, capsys):
    path = tmp_path / "sd.pt"
    torch.save(model_state(), path)
    assert main(["diagnose", str(path)]) == 0
    rows = table_rows(capsys.readouterr().out)
    # ≥2-D entries only (biases skipped); the conv filter (3, 2, 2, 2) is flattened to 3×8.
    assert set(rows) == {"0.weight", "2.weight", "3.weight"}
    assert rows["0.weight"][0] == "6×4" and rows["3.weight"][0] == "3×8"
    assert rows["0.weight"][1] == "4"  # rank


def test_checkpoint_with_model_key_and_values(tmp_path, capsys):
    W = torch.diag(torch.tensor([4.0, 2.0, 1.0]))
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {"layer.weight": W, "layer.bias": torch.ones(3)}, "step": 10, "optimizer": {}}, path)
    out_json = tmp_path / "stats.jsonl"
    assert main(["diagnose", str(path), "--json", str(out_json)]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert list(rows) == ["layer.weight"]
    shape, rank, s1, fro, nuc, srank = rows["layer.weight"][:6]
    assert (shape, rank) == ("3×3", "3")
    assert float(s1) == 4.0 and float(nuc) == 7.0
    assert float(fro) == pytest.approx(math.sqrt(21), rel=1e-3)
    assert float(srank) == pytest.approx(21 / 16, rel=1e-2)
    (rec,) = [json.loads(line) for line in out_json.read_text().splitlines()]
    assert rec["name"] == "layer.weight" and rec["singular_values"] == [4.0, 2.0, 1.0]
    assert rec["min_gap"] == 1.0 and rec["condition_number"] == 4.0


def test_plain_tensor_npy_npz_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    t = tmp_path / "grad.pt"
    torch.save(torch.randn(5, 7), t)
    n = tmp_path / "eye.npy"
    np.save(n, np.eye(4))
    z = tmp_path / "many.npz"
    np.savez(z, a=np.ones((3, 3)), b=np.zeros((2, 5)), c=np.ones(4))
    assert main(["diagnose", str(t)]) == 0
    assert list(table_rows(capsys.readouterr().out)) == ["grad"]
    plots = tmp_path / "plots"
    assert main(["diagnose", str(n), "--plot-dir", str(plots)]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert rows["eye"][1:3] == ["4", "1"]  # rank 4, σ1 = 1
    assert (plots / "eye.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["diagnose", str(z), "--plot-dir", str(plots)]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert set(rows) == {"a", "b"}
    assert rows["a"][1] == "1"  # all-ones: rank 1
    assert rows["b"][1] == "0" and rows["b"][8] == "—"  # zero matrix: rank 0, κ undefined
    assert (plots / "a.png").exists() and (plots / "b.png").exists()


def test_match_filter(tmp_path, capsys):
    path = tmp_path / "sd.pt"
    torch.save(model_state(), path)
    assert main(["diagnose", str(path), "--match", r"^2\."]) == 0
    assert list(table_rows(capsys.readouterr().out)) == ["2.weight"]


@pytest.mark.parametrize(
    "content,args,message",
    [
        (None, [], "no such file"),
        ({"bias": torch.ones(3)}, [], "no tensor with at least 2 dimensions"),
        ([1, 2, 3], [], "expected a tensor"),
        ({"w": torch.eye(3)}, ["--match", "nothing"], "selects no layer"),
        ({"w": torch.eye(3)}, ["--rtol", "-1"], "--rtol"),
    ],
)
def test_errors_are_one_line(tmp_path, capsys, content, args, message):
    path = tmp_path / "x.pt"
    if content is not None:
        torch.save(content, path)
    assert main(["diagnose", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_pickled_objects_need_allow_pickle(tmp_path, capsys):
    path = tmp_path / "obj.pt"
    torch.save({"model": {"w": torch.eye(3)}, "cfg": Config()}, path)
    assert main(["diagnose", str(path)]) == 2
    assert "--allow-pickle" in capsys.readouterr().err
    assert main(["diagnose", str(path), "--allow-pickle"]) == 0
    assert list(table_rows(capsys.readouterr().out)) == ["w"]


class Config:  # a custom class: weights_only loading refuses it
    pass
