"""Spectral Lens diagnostics (arXiv 2605.05683): activation-covariance spectra through forward hooks,
per-sample-gradient spectra, the power-law tail exponent, RankMe, and the probe's opt-in records.

References are float64 computations written here from the definitions (covariance of the rows,
one backward pass per sample, a least-squares line on the log-log rank plot)."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from muonlab.diagnostics import (
    ActivationCovariance,
    SpectralProbe,
    activation_spectrum,
    per_sample_gradient_spectrum,
    per_sample_gradients,
    rank_me,
    select_layers,
    spectrum_summary,
    tail_exponent,
    topk_share,
)
from muonlab.lab.workloads.cnn_digits import CNNDigits
from muonlab.lab.workloads.tiny_gpt import GPT

D = torch.float64


def _whitened(n: int, c: int, seed: int) -> torch.Tensor:
    """Rows Z (n×c) with mean exactly 0 and sample covariance exactly I (float64)."""
    Z = torch.randn(n, c, generator=torch.Generator().manual_seed(seed), dtype=D)
    Z = Z - Z.mean(0)
    Q, _ = torch.linalg.qr(Z)          # orthonormal columns, still mean 0 (span of centred columns)
    return Q * math.sqrt(n - 1)


def _planted(lam: torch.Tensor, seed: int = 0) -> nn.Linear:
    """A Linear layer W = R diag(√λ): whitened inputs give outputs with covariance R diag(λ) Rᵀ."""
    c = len(lam)
    R, _ = torch.linalg.qr(torch.randn(c, c, generator=torch.Generator().manual_seed(seed + 1), dtype=D))
    lin = nn.Linear(c, c, bias=True).double()
    with torch.no_grad():
        lin.weight.copy_(R * lam.sqrt())
        lin.bias.fill_(3.0)             # a mean offset: the covariance is centred
    return lin


def _cov_eigs(X: torch.Tensor) -> torch.Tensor:
    """Reference: eigenvalues of the unbiased covariance of the rows of X, descending."""
    X = X.to(D)
    Xc = X - X.mean(0)
    return torch.linalg.eigvalsh(Xc.T @ Xc / (X.shape[0] - 1)).flip(0)


# ---- activation covariance -----------------------------------------------------------------------

def test_planted_covariance_gives_its_eigenvalues():
    lam = torch.tensor([5.0, 2.0, 1.0, 0.5, 0.1, 0.01], dtype=D)
    model = nn.Sequential(_planted(lam))
    Z = _whitened(64, 6, seed=0)
    ev = activation_spectrum(model, Z, layers=["0"])
    assert torch.allclose(ev["0"], lam, atol=1e-12)
    # the same rows as a (B, T, C) sequence batch: tokens are samples
    ev3 = activation_spectrum(model, Z.reshape(8, 8, 6), layers=["0"])
    assert torch.allclose(ev3["0"], lam, atol=1e-12)
    # the input side of the layer is the whitened data itself
    evin = activation_spectrum(model, Z, layers=["0"], which="input")
    assert torch.allclose(evin["0"], torch.ones(6, dtype=D), atol=1e-12)


def test_covariance_merges_batches_exactly():
    """Chan's update over a loader equals the covariance of all rows at once (and the planted one)."""
    lam = torch.tensor([4.0, 1.0, 0.25], dtype=D)
    model = nn.Sequential(_planted(lam, seed=3))
    Z = _whitened(60, 3, seed=2)
    parts = [Z[:7], Z[7:30], Z[30:31], Z[31:]]
    ev = activation_spectrum(model, loader=parts, layers=["0"])
    assert torch.allclose(ev["0"], lam, atol=1e-12)
    acc = ActivationCovariance(3)
    X = torch.randn(50, 3, generator=torch.Generator().manual_seed(4), dtype=D) * 2 + 1
    for chunk in X.split(9):
        acc.update(chunk)
    assert acc.n == 50
    assert torch.allclose(acc.covariance(), torch.cov(X.T), atol=1e-12)
    assert torch.equal(ActivationCovariance(3).covariance(), torch.zeros(3, 3, dtype=D))


def test_nanogpt_blocks_are_the_default_layers_and_match_a_manual_forward():
    torch.manual_seed(0)
    model = GPT(width=16, depth=2, heads=2, context=8).double()
    idx = torch.randint(0, 256, (3, 8), generator=torch.Generator().manual_seed(0))
    assert select_layers(model) == ["blocks.0", "blocks.1"]
    model.train()
    ev = activation_spectrum(model, idx)
    assert model.training  # the mode is restored
    with torch.no_grad():  # reference: the residual stream after each block
        x = model.wte(idx) + model.wpe(torch.arange(8))
        ref = {}
        for i, block in enumerate(model.blocks):
            x = block(x)
            ref[f"blocks.{i}"] = x.reshape(-1, 16)
    for name, X in ref.items():
        assert torch.allclose(ev[name], _cov_eigs(X), atol=1e-12)
    # the paper's parameter-free RMSNorm (eps 1e-6) before the covariance
    evn = activation_spectrum(model, idx, rms_norm=True)
    Xn = F.rms_norm(ref["blocks.1"], (16,), eps=1e-6)
    assert torch.allclose(evn["blocks.1"], _cov_eigs(Xn), atol=1e-12)


def test_cnn_channels_are_the_covariance_dimension():
    wl = CNNDigits(width=4, depth=2)
    model = wl.build_model(0).double()
    x = torch.randn(5, 8, 8, generator=torch.Generator().manual_seed(1), dtype=D)
    assert select_layers(model) == ["1", "3", "head"]  # every conv and linear layer
    ev = activation_spectrum(model, x)
    with torch.no_grad():
        h = model[1](model[0](x))  # (B, C, H, W): pixels are samples, channels the dimension
    assert ev["1"].shape == (4,) and ev["head"].shape == (10,)
    assert torch.allclose(ev["1"], _cov_eigs(h.permute(0, 2, 3, 1).reshape(-1, 4)), atol=1e-12)


class _Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)

    def forward(self, x):
        self.a(x)
        raise RuntimeError("boom")


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_hooks_are_removed_and_modes_restored_even_on_error():
    model = _Boom()
    model.train()
    model.b.eval()
    with pytest.raises(RuntimeError, match="boom"):
        activation_spectrum(model, torch.randn(4, 3))
    assert _hook_count(model) == 0
    assert model.training and model.a.training and not model.b.training
    with pytest.raises(ValueError, match="not found"):
        activation_spectrum(model, torch.randn(4, 3), layers=["nope"])
    assert _hook_count(model) == 0
    seq = nn.Sequential(nn.Linear(3, 3))
    activation_spectrum(seq, torch.randn(4, 3))
    assert _hook_count(seq) == 0


def test_non_finite_batches_are_skipped():
    lam = torch.tensor([3.0, 1.0], dtype=D)
    model = nn.Sequential(_planted(lam))
    Z = _whitened(20, 2, seed=5)
    bad = Z.clone()
    bad[0, 0] = float("nan")
    ev = activation_spectrum(model, loader=[bad, Z], layers=["0"])
    assert torch.allclose(ev["0"], lam, atol=1e-12)
    with pytest.warns(UserWarning, match="no finite activations"):
        assert activation_spectrum(model, bad, layers=["0"]) == {}


# ---- tail exponent, RankMe, top-k share -----------------------------------------------------------

def _ols_reference(s: torch.Tensor, lo: int, hi: int) -> tuple[float, float]:
    """The authors' analyze_power_law, written out: ranks lo..hi (1-based, inclusive)."""
    s = s.sort(descending=True).values
    i = torch.arange(lo, min(hi, len(s)) + 1, dtype=D)
    y = s[lo - 1:min(hi, len(s))].log()
    A = torch.stack([i.log(), torch.ones_like(i)], 1)
    coef = torch.linalg.lstsq(A, y[:, None]).solution.flatten()
    resid = y - A @ coef
    r2 = 1 - float((resid**2).sum() / ((y - y.mean()) ** 2).sum())
    return -float(coef[0]), r2


def test_power_law_spectrum_gives_its_exponent():
    i = torch.arange(1, 401, dtype=D)
    for alpha in (0.5, 1.0, 2.3):
        s = i ** -alpha
        fit = tail_exponent(s)                    # ranks 30..150 (the LM scripts)
        assert fit.alpha == pytest.approx(alpha, abs=1e-12) and fit.r2 == pytest.approx(1.0, abs=1e-12)
        assert tail_exponent(s, method="hill").alpha == pytest.approx(alpha, abs=1e-12)
        assert tail_exponent(s.flip(0), 1, 10).alpha == pytest.approx(alpha, abs=1e-12)  # order-free
    # noisy power law: multiplicative log-normal noise (σ = 0.1) → within 0.05
    g = torch.Generator().manual_seed(0)
    noisy = i ** -1.5 * torch.exp(0.1 * torch.randn(400, generator=g, dtype=D))
    noisy = noisy.sort(descending=True).values
    fit = tail_exponent(noisy)
    assert abs(fit.alpha - 1.5) < 0.05 and 0.9 < fit.r2 <= 1.0
    assert abs(tail_exponent(noisy, method="hill").alpha - 1.5) < 0.05
    assert fit == pytest.approx(_ols_reference(noisy, 30, 150), abs=1e-10)


def test_fit_window_is_ranks_lo_to_hi_inclusive():
    # exponent 2 on ranks 30..150 exactly, something else outside: only the window counts
    i = torch.arange(1, 301, dtype=D)
    s = i ** -2.0
    s[:29] = s[:29] * 50.0
    s[150:] = s[150:] * 1e-3
    assert tail_exponent(s, 30, 150).alpha == pytest.approx(2.0, abs=1e-12)
    assert tail_exponent(s, 30, 151).alpha != pytest.approx(2.0, abs=1e-3)
    assert tail_exponent(s, 29, 150).alpha != pytest.approx(2.0, abs=1e-3)
    # too short for the window → the clipped window of the authors' code, or NaN
    assert math.isnan(tail_exponent(torch.tensor([1.0, 0.5])).alpha)
    short = torch.arange(1, 33, dtype=D) ** -1.0
    assert tail_exponent(short).alpha == pytest.approx(1.0, abs=1e-12)  # ranks 30..32
    assert math.isnan(tail_exponent(torch.zeros(200)).alpha)           # no finite log
    with pytest.raises(ValueError, match="method"):
        tail_exponent(short, method="mle")


def test_rank_me_of_identity_rank_one_and_flat_spectra():
    assert float(rank_me(torch.eye(7))) == pytest.approx(7.0, abs=1e-9)     # full rank
    u, v = torch.randn(6, 1, dtype=D), torch.randn(1, 4, dtype=D)
    assert float(rank_me(u @ v)) == pytest.approx(1.0, abs=1e-8)           # rank 1
    assert float(rank_me(torch.tensor([2.0, 2.0, 2.0, 0.0, 0.0]))) == pytest.approx(3.0, abs=1e-9)
    assert float(rank_me(torch.zeros(3, 3))) == 0.0
    batched = rank_me(torch.stack([torch.eye(4), torch.diag(torch.tensor([1.0, 0, 0, 0]))]).double())
    assert torch.allclose(batched, torch.tensor([4.0, 1.0], dtype=D), atol=1e-8)
    # exp of the entropy of the normalised spectrum
    s = torch.tensor([3.0, 2.0, 1.0], dtype=D)
    p = s / s.sum()
    assert float(rank_me(s)) == pytest.approx(math.exp(-float((p * p.log()).sum())), rel=1e-12)


def test_topk_share_and_summary():
    s = torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=D)
    assert topk_share(s, 2) == pytest.approx(0.7) and topk_share(s, 10) == pytest.approx(1.0)
    assert math.isnan(topk_share(torch.zeros(3)))
    summ = spectrum_summary(torch.arange(1, 201, dtype=D) ** -1.0)
    assert summ["alpha_tail"] == pytest.approx(1.0) and summ["alpha_head"] == pytest.approx(1.0)
    assert set(summ) == {"rankme", "alpha_tail", "r2_tail", "alpha_head", "r2_head", "top10", "trace"}


# ---- per-sample gradients ------------------------------------------------------------------------

class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 7)
        self.fc2 = nn.Linear(7, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def _mlp_loss(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def _reference_rows(model, loss_fn, x, y, names):
    """One backward pass per sample, float64: the rows of G."""
    params = dict(model.named_parameters())
    rows = {n: [] for n in names}
    for b in range(len(x)):
        model.zero_grad(set_to_none=True)
        loss_fn(model, (x[b:b + 1], y[b:b + 1])).backward()
        for n in names:
            rows[n].append(params[n].grad.detach().reshape(-1).clone())
    model.zero_grad(set_to_none=True)
    return {n: torch.stack(r) for n, r in rows.items()}


@pytest.mark.parametrize("method", ["vmap", "loop", "auto"])
def test_per_sample_gradients_equal_a_loop_over_samples(method):
    torch.manual_seed(0)
    model = _MLP().double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(9, 5, generator=g, dtype=D), torch.randint(0, 3, (9,), generator=g)
    ref = _reference_rows(model, _mlp_loss, x, y, ["fc1.weight", "fc2.weight"])
    G = per_sample_gradients(model, _mlp_loss, (x, y), method=method)
    assert set(G) == {"fc1.weight", "fc2.weight"}  # default: the ≥2-D parameters
    for n in G:
        assert G[n].shape == (9, model.get_parameter(n).numel())
        assert torch.allclose(G[n], ref[n], atol=1e-13)
    spec = per_sample_gradient_spectrum(model, _mlp_loss, (x, y), method=method)
    for n in spec:
        assert torch.allclose(spec[n], torch.linalg.svdvals(ref[n]), atol=1e-13)
        assert spec[n].shape == (min(9, ref[n].shape[1]),) and spec[n].dtype == D
    assert all(p.grad is None for p in model.parameters())  # .grad never written


def test_per_sample_spectrum_is_not_the_svd_of_the_mean_gradient():
    torch.manual_seed(0)
    model = _MLP().double()
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(6, 5, generator=g, dtype=D), torch.randint(0, 3, (6,), generator=g)
    spec = per_sample_gradient_spectrum(model, _mlp_loss, (x, y), params=["fc2.weight"])
    assert list(spec) == ["fc2.weight"] and spec["fc2.weight"].shape == (6,)
    # the Gram identity: Σ s_i² = Σ_b ‖g_b‖²
    ref = _reference_rows(model, _mlp_loss, x, y, ["fc2.weight"])["fc2.weight"]
    assert float((spec["fc2.weight"] ** 2).sum()) == pytest.approx(float((ref**2).sum()), rel=1e-12)


class _Branchy(nn.Module):
    """Data-dependent control flow: vmap cannot batch it, the loop can."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc(x)
        return h * 2 if float(h.detach().sum()) > 0 else h


def test_falls_back_to_the_loop_when_vmap_cannot_run():
    torch.manual_seed(0)
    model = _Branchy().double()
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(3), dtype=D)

    def loss(m, b):
        return (m(b) ** 2).sum()

    with pytest.raises(Exception):  # noqa: B017 - whichever error functorch raises
        per_sample_gradients(model, loss, x, method="vmap")
    G = per_sample_gradients(model, loss, x, params=["fc.weight"])
    ref = []
    for b in range(5):
        model.zero_grad(set_to_none=True)
        loss(model, x[b:b + 1]).backward()
        ref.append(model.fc.weight.grad.reshape(-1).clone())
    assert torch.allclose(G["fc.weight"], torch.stack(ref), atol=1e-13)


def test_nanogpt_per_sample_spectrum_vmap_matches_loop():
    torch.manual_seed(0)
    model = GPT(width=8, depth=1, heads=2, context=6).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 6), generator=g)
    y = torch.randint(0, 256, (4, 6), generator=g)

    def loss(m, b):
        xb, yb = b
        return F.cross_entropy(m(xb).reshape(-1, 256), yb.reshape(-1))

    names = ["blocks.0.attn.c_proj.weight", "blocks.0.mlp.c_proj.weight"]
    with warnings.catch_warnings():  # functorch's "no batching rule for attention" performance note
        warnings.simplefilter("ignore", UserWarning)
        a = per_sample_gradient_spectrum(model, loss, (x, y), params=names, method="vmap")
    b = per_sample_gradient_spectrum(model, loss, (x, y), params=names, method="loop")
    for n in names:
        assert torch.allclose(a[n], b[n], atol=1e-12)


def test_bad_arguments():
    model = _MLP()
    x, y = torch.randn(3, 5), torch.randint(0, 3, (3,))
    with pytest.raises(ValueError, match="method"):
        per_sample_gradients(model, _mlp_loss, (x, y), method="fast")
    with pytest.raises(ValueError, match="leading"):
        per_sample_gradients(model, _mlp_loss, (x, y[:2]))
    with pytest.raises(ValueError, match="not found"):
        per_sample_gradients(model, _mlp_loss, (x, y), params=["fc9.weight"])
    with pytest.raises(ValueError, match="exactly one"):
        activation_spectrum(model, x, loader=[x])


# ---- the probe's opt-in activation records ---------------------------------------------------------

def test_probe_records_activation_spectra_of_sampled_training_steps(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(16, 5, generator=g, dtype=D) for _ in range(5)]
    seen = {}
    path = tmp_path / "probe.jsonl"
    with SpectralProbe(model, opt, every=2, activations=["2"], targets=("weight",), jsonl=path) as probe:
        for t, x in enumerate(batches):
            with torch.no_grad():
                model(torch.randn(7, 5, dtype=D))      # an evaluation pass: ignored
            with torch.no_grad():
                seen[t] = model(x)                    # what the training forward will see at layer 2
            loss = model(x).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
        assert _hook_count(model) == 1
    assert _hook_count(model) == 0                   # removed with the probe
    acts = [r for r in probe.records() if "layer" in r]
    assert [r["step"] for r in acts] == [0, 2, 4] and {r["layer"] for r in acts} == {"2"}
    for r in acts:
        a = r["activation"]
        ref = _cov_eigs(seen[r["step"]])
        assert a["samples"] == 16 and a["width"] == 3
        assert torch.allclose(torch.tensor(a["eigenvalues"], dtype=D), ref, atol=1e-12)
        assert a["rankme"] == pytest.approx(float(rank_me(ref)), rel=1e-12)
        assert a["alpha_head"] == pytest.approx(tail_exponent(ref, 1, 10).alpha, rel=1e-12)
        assert a["alpha_tail"] is None  # 3 ranks: the 30..150 window is empty (NaN → null in JSON)
    # the parameter records are unchanged and everything is strict JSON
    assert {r["param"] for r in probe.records() if "param" in r} == {"0.weight", "2.weight"}
    lines = [json.loads(s) for s in path.read_text().splitlines()]
    assert len(lines) == len(probe.records())


def test_probe_activations_need_the_model_and_default_to_select_layers():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="needs the model"):
        SpectralProbe(None, opt, activations=True)
    probe = SpectralProbe(model, opt, every=1, activations=True, singular_values=False)
    model(torch.randn(8, 3)).sum().backward()
    opt.step()
    probe.remove()
    layers = sorted(r["layer"] for r in probe.records() if "layer" in r)
    assert layers == ["0", "2"]
    assert all("eigenvalues" not in r["activation"] for r in probe.records() if "layer" in r)
