"""SpectralProbe: record counts and contents, the applied update, JSONL/TensorBoard output, hook removal."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import muonlab
from muonlab.diagnostics import SpectralProbe, spectral_stats


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 12), nn.Tanh(), nn.Linear(12, 3))


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, model[0].in_features, generator=g, dtype=model[0].weight.dtype)
        loss = model(x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


MATRICES = ["0.weight", "2.weight", "4.weight"]


@pytest.mark.parametrize("steps,every,samples", [(7, 3, 3), (6, 3, 2), (5, 1, 5), (1, 100, 1)])
def test_record_counts_and_steps(steps, every, samples):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = SpectralProbe(model, opt, every=every)
    train(model, opt, steps)
    recs = probe.records()
    assert len(recs) == samples * len(MATRICES)  # biases (1-D) are not targets
    assert sorted({r["step"] for r in recs}) == list(range(0, steps, every))
    assert {r["param"] for r in recs} == set(MATRICES)
    assert probe.step == steps
    probe.remove()


def test_record_contents_sgd_update_is_lr_times_grad():
    model = mlp().double()  # float64 weights: ΔW = W1 − W0 carries no float32 cancellation error
    lr = 0.05
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with SpectralProbe(model, opt, every=1, params=["2.weight"], frame_k=4) as probe:
        W0 = model[2].weight.detach().clone()
        train(model, opt, 1)
        W1 = model[2].weight.detach().clone()
    (rec,) = probe.records()
    assert rec["param"] == "2.weight" and rec["shape"] == [12, 12] and rec["step"] == 0
    assert "momentum" not in rec  # plain SGD keeps no buffer
    # weight stats are those of the weight *before* the step; the update is ΔW = W1 − W0.
    assert rec["weight"]["singular_values"] == pytest.approx(spectral_stats(W0)["singular_values"].tolist(), rel=1e-12)
    assert rec["update"]["singular_values"] == pytest.approx(
        spectral_stats(W1 - W0)["singular_values"].tolist(), rel=1e-5, abs=1e-12)
    # Plain SGD: −ΔW = lr·G, so the update's spectrum is lr × the gradient's, with cosine 1.
    sv_g = torch.tensor(rec["grad"]["singular_values"], dtype=torch.float64)
    sv_u = torch.tensor(rec["update"]["singular_values"], dtype=torch.float64)
    torch.testing.assert_close(sv_u, lr * sv_g, rtol=1e-9, atol=1e-14)
    pw = rec["pairwise"]
    assert pw["grad_update_alignment"] == pytest.approx(1.0, abs=1e-12)
    assert pw["grad_descent_potential"] == pytest.approx(lr * rec["grad"]["frobenius_norm"] ** 2, rel=1e-10)
    assert pw["polar_reference"] == "grad"
    assert pw["frame_k"] == 4 and 0.0 <= pw["frame_alignment_max"] <= 2.0  # ‖sin Θ‖_F ≤ √k
    json.dumps(rec, allow_nan=False)  # strictly JSON-serializable


def test_muon_exact_polar_update_and_momentum():
    torch.manual_seed(0)
    W = nn.Parameter(torch.randn(8, 5))
    X, Y = torch.randn(5, 32), torch.randn(8, 32)
    opt = muonlab.Muon([W], lr=0.02, weight_decay=0.0, nesterov=False, orthogonalizer="svd")
    with SpectralProbe(None, opt, every=2) as probe:
        for _ in range(3):
            opt.zero_grad()
            (W @ X - Y).pow(2).mean().backward()  # full-rank gradient
            opt.step()
    recs = probe.records()
    assert [r["step"] for r in recs] == [0, 2]
    assert recs[0]["param"] == "group0.param0"
    for r in recs:
        pw = r["pairwise"]
        # Applied update = −lr·s·polar(M) with the post-step momentum M: flat spectrum, exact polar.
        assert pw["polar_reference"] == "momentum"
        assert pw["update_polar_error"] < 1e-5
        assert pw["update_orthogonality_error"] < 1e-5
        assert r["update"]["spectral_entropy"] == pytest.approx(1.0, abs=1e-6)
        s = math.sqrt(max(1.0, 8 / 5))  # Keller's shape factor
        assert r["update"]["spectral_norm"] == pytest.approx(0.02 * s, rel=1e-5)
        assert "frame_alignment_max" not in pw
    # The momentum record is the buffer after the last sampled step (step 2). Step 0's buffer is
    # (1−β)·G₀ in the EMA form.
    assert recs[0]["momentum"]["singular_values"] == pytest.approx(
        [0.05 * s for s in recs[0]["grad"]["singular_values"]], rel=1e-5)


def test_adamw_exp_avg_is_momentum_and_hybrid_names():
    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with SpectralProbe(model, opt, every=2, targets=("momentum", "update")) as probe:
        train(model, opt, 2)
    for r in probe.records():
        assert set(r) >= {"momentum", "update", "pairwise"} and "weight" not in r and "grad" not in r
        assert "momentum_update_alignment" in r["pairwise"]
    model = mlp()
    opt = muonlab.create_optimizer(model, "muon")
    with SpectralProbe(model, opt, every=1) as probe:
        train(model, opt, 1)
    assert {r["param"] for r in probe.records()} == set(MATRICES)


def test_conv_params_are_flattened_and_callable_filter():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 3 * 3, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with SpectralProbe(model, opt, every=1, params=lambda name, p: p.ndim == 4) as probe:
        x = torch.randn(3, 2, 5, 5)
        model(x).sum().backward()
        opt.step()
    (rec,) = probe.records()
    assert rec["param"] == "0.weight" and rec["shape"] == [4, 2, 3, 3]
    assert len(rec["weight"]["singular_values"]) == 4  # (4, 18) after flattening
    assert "momentum" in rec  # SGD's momentum_buffer


def test_params_without_grad_are_skipped():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with SpectralProbe(model, opt, every=1) as probe:
        model[4].weight.grad = torch.ones_like(model[4].weight)  # only one matrix has a gradient
        opt.step()
    assert [r["param"] for r in probe.records()] == ["4.weight"]


def test_hooks_removed_cleanly():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    n_pre, n_post = len(opt._optimizer_step_pre_hooks), len(opt._optimizer_step_post_hooks)
    with SpectralProbe(model, opt, every=1) as probe:
        assert len(opt._optimizer_step_pre_hooks) == n_pre + 1
        assert len(opt._optimizer_step_post_hooks) == n_post + 1
        train(model, opt, 2)
    assert len(opt._optimizer_step_pre_hooks) == n_pre
    assert len(opt._optimizer_step_post_hooks) == n_post
    count = len(probe.records())
    train(model, opt, 3)
    assert len(probe.records()) == count and probe.step == 2
    probe.remove()  # idempotent
    # A second probe on the same optimizer works independently.
    with SpectralProbe(model, opt, every=2) as p2:
        train(model, opt, 3)
    assert len(p2.records()) == 2 * len(MATRICES)


def test_write_jsonl_appends_without_duplicates(tmp_path):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "spectra.jsonl"
    stream = tmp_path / "stream.jsonl"
    with SpectralProbe(model, opt, every=1, jsonl=stream, singular_values=False) as probe:
        train(model, opt, 1)
        assert probe.write_jsonl(path) == 3
        assert probe.write_jsonl(path) == 0  # nothing new
        train(model, opt, 1)
        assert probe.write_jsonl(path) == 3
    lines = path.read_text().splitlines()
    assert len(lines) == 6 and all(line.startswith("{") for line in lines)
    assert [json.loads(line) for line in lines] == probe.records()
    assert "singular_values" not in json.loads(lines[0])["weight"]
    assert stream.read_text() == path.read_text()  # streamed lines equal the batch-written ones


def test_undefined_values_are_null(tmp_path):
    # Rank-1 weight: min_gap is +inf in the pure functions and null in the records.
    W = nn.Parameter(torch.outer(torch.arange(1.0, 5.0), torch.ones(3)))
    opt = torch.optim.SGD([W], lr=0.0)
    with SpectralProbe(None, opt, every=1, targets=("weight",)) as probe:
        W.grad = torch.ones_like(W)
        opt.step()
    (rec,) = probe.records()
    assert rec["weight"]["min_gap"] is None and rec["weight"]["rank"] == 1.0
    json.dumps(rec, allow_nan=False)


class FakeWriter:
    def __init__(self):
        self.calls = []

    def add_scalar(self, tag, value, step):
        self.calls.append((tag, value, step))

    def flush(self):
        pass


def test_tensorboard_scalars():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w = FakeWriter()
    with SpectralProbe(model, opt, every=2, tensorboard=w, params=["0.weight"]):
        train(model, opt, 3)
    tags = {t for t, _, _ in w.calls}
    assert "spectral/weight/stable_rank/0.weight" in tags
    assert "spectral/pairwise/grad_update_alignment/0.weight" in tags
    assert {s for _, _, s in w.calls} == {0, 2}
    assert all(isinstance(v, float) and math.isfinite(v) for _, v, _ in w.calls)


def test_constructor_validation():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="every"):
            SpectralProbe(model, opt, every=bad)
    with pytest.raises(ValueError, match="targets"):
        SpectralProbe(model, opt, targets=("weights",))
    with pytest.raises(ValueError, match="not found"):
        SpectralProbe(model, opt, params=["nope.weight"])
    with pytest.raises(ValueError, match="frame_k"):
        SpectralProbe(model, opt, frame_k=0)
    with pytest.raises(TypeError):
        SpectralProbe(model, "sgd")
    assert len(opt._optimizer_step_pre_hooks) == 0  # failed constructions leave no hook behind
