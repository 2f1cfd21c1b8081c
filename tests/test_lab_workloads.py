"""The lab's workloads and corpora: every workload builds, trains a step, evaluates and routes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import muonlab
from muonlab.lab import data as data_mod
from muonlab.lab.workloads import available_workloads, get_workload, knob_types, make_workload
from muonlab.routing import MATRIX_ROLES, classify

SHARED_TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"

# Small knobs so each workload takes well under a second here.
SMALL = {
    "tiny_gpt": {"width": 32, "depth": 1, "heads": 2, "context": 16, "batch_size": 4, "eval_batches": 2},
    "hf_causal_lm": {"width": 32, "depth": 1, "heads": 2, "kv_heads": 1, "context": 16, "batch_size": 4,
                     "eval_batches": 2},
    "vit_digits": {"width": 16, "depth": 1, "heads": 2, "batch_size": 16},
    "mlp_digits": {"width": 32, "batch_size": 16},
    "cnn_digits": {"width": 8, "depth": 2, "batch_size": 16},
    "matrix_sensing": {},
    "modular_arith": {"modulus": 11, "embed": 8, "width": 16},
    "imbalanced_digits": {"width": 16, "batch_size": 16},
    "sensing_directions": {"d": 30},
    "assoc_memory": {"d": 8, "keys_per_dim": 4, "batch_size": 32, "init_scale": 0.01},
    "convex_lipschitz": {},
}
OPTIONAL = {"hf_causal_lm": "transformers"}


def test_registry_lists_every_workload():
    assert available_workloads() == sorted(SMALL)
    assert {"tiny_gpt", "vit_digits", "mlp_digits", "matrix_sensing", "hf_causal_lm", "cnn_digits"} <= set(
        available_workloads())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_workload_contract(name):
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    wl = make_workload(name, **SMALL[name])
    wl.setup(torch.device("cpu"))
    model = wl.build_model(seed=0)
    # deterministic given the seed, different across seeds
    same = wl.build_model(seed=0)
    other = wl.build_model(seed=1)
    for (n, p), q, r in zip(model.named_parameters(), same.parameters(), other.parameters()):
        assert torch.equal(p, q), n
    assert any(not torch.equal(p, r) for p, r in zip(model.parameters(), other.parameters()))

    g = torch.Generator().manual_seed(0)
    loss = wl.loss(model, wl.get_batch(g))
    assert loss.ndim == 0 and math.isfinite(loss.item())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

    model.eval()
    with torch.no_grad():
        metrics = wl.evaluate(model)
    assert wl.metric in metrics and all(math.isfinite(v) for v in metrics.values())
    assert set(wl.knobs()) == set(knob_types(type(wl)))

    # routing: hidden matrices exist and go to the matrix method, the rest to AdamW
    roles, _ = classify(model, **wl.routing())
    assert any(r in MATRIX_ROLES for r in roles.values())
    opt = muonlab.create_optimizer(model, "muon", **wl.routing())
    algorithms = {g["algorithm"] for g in opt.param_groups}
    assert "muon" in algorithms


def test_routing_is_declared_not_guessed():
    gpt = make_workload("tiny_gpt", **SMALL["tiny_gpt"])
    roles, _ = classify(gpt.build_model(0), **gpt.routing())
    assert roles["lm_head.weight"].value == "output"
    assert roles["wte.weight"].value == "embedding"
    assert roles["blocks.0.attn.c_attn.weight"].value == "hidden"
    vit = make_workload("vit_digits", **SMALL["vit_digits"])
    roles, _ = classify(vit.build_model(0), **vit.routing())
    assert roles["patch_embed.weight"].value == "embedding"
    assert roles["head.weight"].value == "output"
    cnn = make_workload("cnn_digits", **SMALL["cnn_digits"])
    roles, _ = classify(cnn.build_model(0), **cnn.routing())
    assert [r.value for n, r in roles.items() if n.endswith("weight") and r.value == "conv"]
    ms = make_workload("matrix_sensing")
    roles, _ = classify(ms.build_model(0), **ms.routing())
    assert roles == {"W.weight": muonlab.Role.HIDDEN}


def test_unknown_workload_and_knobs_are_one_line_errors():
    with pytest.raises(ValueError, match=r"unknown workload 'nope'; available: .*tiny_gpt"):
        get_workload("nope")
    with pytest.raises(ValueError, match=r"unknown knob 'widht' .*knobs: .*width"):
        make_workload("tiny_gpt", widht=3)
    with pytest.raises(ValueError, match=r"knob 'width' of 'tiny_gpt' must be int"):
        make_workload("tiny_gpt", width="wide")
    with pytest.raises(ValueError, match="divisible"):
        make_workload("tiny_gpt", width=30, heads=4)
    assert make_workload("matrix_sensing", init_scale=1).init_scale == 1.0  # int → float


def test_mlp_digits_training_set_size_knob():
    wl = make_workload("mlp_digits", n_train=100)
    wl.setup(torch.device("cpu"))
    assert wl.info() == {"n_train": 100, "n_val": 397}
    metrics = wl.evaluate(wl.build_model(0))
    assert metrics["gap/loss"] == pytest.approx(metrics["val/loss"] - metrics["train_full/loss"])
    with pytest.raises(ValueError, match="n_train"):
        make_workload("mlp_digits", n_train=5000).setup(torch.device("cpu"))


def test_embedded_corpus_needs_no_network(monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("network used")

    monkeypatch.setattr(data_mod.urllib.request, "urlopen", no_network)
    text = data_mod.load_text("embedded")
    assert len(text) > 100_000
    corpus = data_mod.ByteCorpus("embedded", context=8)
    x, y = corpus.get_batch("train", 3, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (3, 8) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one byte


def test_corpus_from_file_and_cache(tmp_path, monkeypatch):
    if not SHARED_TEXT.exists():
        pytest.skip("shared tinyshakespeare not present")
    assert data_mod.load_text(str(SHARED_TEXT)).startswith(b"First Citizen")
    # tinyshakespeare resolves from the cache directory without a download
    monkeypatch.setenv("MUONLAB_CACHE", str(tmp_path))
    (tmp_path / "tinyshakespeare.txt").write_bytes(SHARED_TEXT.read_bytes())
    monkeypatch.setattr(data_mod.urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded"))
    assert data_mod.load_text("tinyshakespeare") == SHARED_TEXT.read_bytes()


def test_tinyshakespeare_download_failure_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("MUONLAB_CACHE", str(tmp_path))

    def offline(*a, **k):
        raise OSError("offline")

    monkeypatch.setattr(data_mod.urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match="--data PATH"):
        data_mod.load_text("tinyshakespeare")
    with pytest.raises(FileNotFoundError, match="'embedded'"):
        data_mod.load_text(str(tmp_path / "missing.txt"))


def test_matrix_sensing_reference_is_the_nuclear_norm_minimum():
    pytest.importorskip("cvxpy")
    wl = make_workload("matrix_sensing")
    wl.setup(torch.device("cpu"))
    assert wl.nuc_min is not None
    # W* satisfies the measurements, so the minimum is at most its nuclear norm
    assert wl.nuc_min <= wl.info()["nuclear_norm_star"] + 1e-4
    assert "val/nuc_ratio" in wl.evaluate(wl.build_model(0))


def test_spectrum_stats_closed_form():
    from muonlab.lab.workloads.matrix_sensing import spectrum_stats

    s = spectrum_stats(torch.eye(4))
    assert s["nuclear_norm"] == pytest.approx(4) and s["stable_rank"] == pytest.approx(4)
    assert s["entropy"] == pytest.approx(1.0)
    rank1 = spectrum_stats(torch.outer(torch.ones(3), torch.ones(3)))
    assert rank1["stable_rank"] == pytest.approx(1) and rank1["entropy"] == 0.0
