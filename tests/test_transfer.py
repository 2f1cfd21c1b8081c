"""µP width transfer (muonlab.transfer): the per-layer multipliers against the table of Qiu et al.
(arXiv 2512.05620, ``train.py::assign_lr`` and Table 2), their use through create_optimizer, and the
quantity the transfer argument rests on: under µP a Muon update's spectral norm per layer, in units
of √(d_out/d_in), does not depend on the width."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import muonlab
from muonlab.transfer import layer_scalings, lr_multiplier, mup_optimizer, mup_overrides

# ---- the table -----------------------------------------------------------------------------------

R = {"r_in": 4.0, "r_out": 2.0}
KW = {"r_depth": 2.0, "r_nb_in": 2.0, "r_nb_out": 4.0}


@pytest.mark.parametrize("optimizer,kw,expected", [
    ("adamw", {}, 1 / 4),                                                   # 1/r_in
    ("muon", {}, math.sqrt(2 / 4)),                                         # (r_out/r_in)^½
    ("shampoo", {}, 2**0 * (2 / 4) ** 0.5 * 8**-0.5),                       # E = ½: r_L^0 (r_out/r_in)^½ n^-½
    ("shampoo", {"exponents": (0.5, 0.5)}, 2**-1 * (2 / 4) ** 0 * 8**-1),   # Shampoo2, E = 1
    ("shampoo", {"right": False}, 2**0.5 * (2 / 4) ** 0.75 * 8**-0.25),     # one side preconditioned, E = ¼
    ("shampoo", {"grafting": True}, 1 / 4),                                 # Adam#Shampoo: as Adam
    ("soap", {}, (2 / 4) ** 0.5 * 8**-0.5),
    ("soap", {"left": False}, (4 * 2) ** -0.5),                             # only the input side
    ("soap", {"right": False}, (2 / 4) ** 0.5 / 4),                         # only the output side
    ("soap", {"left": False, "right": False}, 1 / 4),                       # no side: Adam
    ("shampoo", {"spectral_norm": True}, 1.0),
    ("soap", {"spectral_norm": True}, 1.0),
])
def test_lr_multiplier_matches_the_table(optimizer, kw, expected):
    assert lr_multiplier(optimizer, **R, **KW, **kw) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("optimizer", ["adamw", "muon", "shampoo", "soap"])
def test_multiplier_is_one_at_the_base_model(optimizer):
    assert lr_multiplier(optimizer, 1.0, 1.0) == 1.0


# ---- per layer of a model ------------------------------------------------------------------------


class TinyLM(nn.Module):
    """Embedding, an MLP block, a norm and a readout: every µP layer type."""

    def __init__(self, width: int, vocab: int = 16):
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.up = nn.Linear(width, 4 * width, bias=False)
        self.down = nn.Linear(4 * width, width, bias=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, idx):
        h = self.emb(idx)
        h = h + self.down(torch.relu(self.up(h)))
        return self.head(self.norm(h))


def _mults(model, base, name, **kw):
    return {s.name: s.lr_mult for s in layer_scalings(model, name, base=base, **kw)}


def test_muon_multipliers_per_layer_type():
    """Hidden 1, embedding √r, readout 1/√r (Muon's own shape factor off: adjust_lr_fn='none');
    AdamW layers next to it 1/r_in (embedding: fixed vocabulary fan-in, readout 1/r, vectors 1)."""
    model, base = TinyLM(32), TinyLM(8)
    on_muon = _mults(model, base, "muon", all_matrices=True, adjust_lr_fn="none")
    assert on_muon == pytest.approx({"emb.weight": 2.0, "up.weight": 1.0, "down.weight": 1.0,
                                     "norm.weight": 1.0, "norm.bias": 1.0, "head.weight": 0.5})
    default = _mults(model, base, "muon")
    assert default == pytest.approx({"emb.weight": 1.0, "up.weight": 1.0, "down.weight": 1.0,
                                     "norm.weight": 1.0, "norm.bias": 1.0, "head.weight": 0.25})


def test_muon_shape_factor_is_divided_out_relative_to_the_base():
    """With the default √max(1, m/n) factor the step is η·s(m₀, n₀)·(r_out/r_in)^½."""
    from muonlab.optim.steps import shape_scale

    for s in layer_scalings(TinyLM(32), "muon", base=TinyLM(8), all_matrices=True):
        if s.algorithm == "muon":
            got = s.lr_mult * shape_scale(s.d_out, s.d_in, None)
            assert got == pytest.approx(shape_scale(s.d_out_base, s.d_in_base, None) * math.sqrt(s.r_out / s.r_in))


def test_adamw_multipliers_are_one_over_fan_in_ratio():
    m = _mults(TinyLM(32), TinyLM(8), "adamw")
    assert m == pytest.approx({"emb.weight": 1.0, "up.weight": 0.25, "down.weight": 0.25,
                               "norm.weight": 1.0, "norm.bias": 1.0, "head.weight": 0.25})


def test_shampoo_and_soap_multipliers_with_depth_and_blocking():
    model, base = TinyLM(32), TinyLM(8)
    # unblocked: r_out = r_in for the MLP matrices, so E only acts through depth
    assert _mults(model, base, "shampoo", depth_ratio=2.0)["up.weight"] == pytest.approx(1.0)        # E = ½
    assert _mults(model, base, "shampoo", depth_ratio=2.0, exponents=(0.5, 0.5))["up.weight"] == pytest.approx(0.5)
    assert _mults(model, base, "shampoo", grafting="adam")["up.weight"] == pytest.approx(0.25)
    # block 8: base 32×8 has 4×1 blocks, the model's 128×32 has 16×4: r_nb_out = r_nb_in = 4
    s = {x.name: x for x in layer_scalings(model, "shampoo", base=base, block_size=8)}["up.weight"]
    assert (s.r_nb_out, s.r_nb_in) == (4.0, 4.0)
    assert s.lr_mult == pytest.approx(16**-0.5)
    assert _mults(model, base, "soap", block_size=8)["up.weight"] == pytest.approx(16**-0.5)
    assert _mults(model, base, "soap", block_size=8, spectral_norm="spectral")["up.weight"] == 1.0
    # a side longer than max_precond_dim is not preconditioned: one-sided SOAP on the 128-row matrix
    s = {x.name: x for x in layer_scalings(model, "soap", base=base, max_precond_dim=64)}["up.weight"]
    assert (s.left, s.right) == (False, True)
    assert s.lr_mult == pytest.approx((4.0 * 1.0) ** -0.5)


def test_base_width_shortcut_equals_the_base_model():
    model = TinyLM(32)
    a = _mults(model, TinyLM(8), "soap", all_matrices=True)
    b = {s.name: s.lr_mult for s in layer_scalings(model, "soap", base_width=8, width=32, all_matrices=True)}
    assert a == pytest.approx(b)


def test_overrides_reach_the_optimizer_groups():
    model, base = TinyLM(32), TinyLM(8)
    opt = mup_optimizer(model, "shampoo", base=base, lr=0.03, all_matrices=True, block_size=8,
                        wd_times_width=0.1, width=32)
    lr_of = {n: g["lr"] for g in opt.param_groups for n in g["param_names"]}
    expected = {s.name: s.lr_mult for s in layer_scalings(model, "shampoo", base=base, all_matrices=True, block_size=8)}
    for name, mult in expected.items():
        aux = name.startswith("norm")
        assert lr_of[name] == pytest.approx((7e-4 if aux else 0.03) * mult)
    for g in opt.param_groups:
        assert g["algorithm"] == ("adamw" if g["role"] == "vector" else "shampoo")
        if g["role"] == "embedding":
            assert g["matrix_view"] == "transpose" and g["block_size"] == 8
        if g["role"] != "vector":  # independent decay λ = c/D, whatever the layer's lr
            assert g["lr"] * g["weight_decay"] == pytest.approx(0.1 / 32)
        else:
            assert g["weight_decay"] == 0.0
    x = torch.randint(0, 16, (4, 5))
    model(x).square().mean().backward()
    opt.step()  # every group is valid and steps


def test_scale_eps_per_layer():
    model, base = TinyLM(32), TinyLM(8)
    ov = mup_overrides(model, "muon", base=base, scale_eps=True, all_matrices=True)
    assert ov["up.weight"]["eps"] == pytest.approx(1e-7)              # r_in = r_out
    assert ov["head.weight"]["eps"] == pytest.approx(1e-7 * 2.0)      # √(r_in/r_out) = √4
    assert ov["emb.weight"]["eps"] == pytest.approx(1e-7 / 2.0)
    ov = mup_overrides(model, "adamw", base=base, scale_eps=True)
    assert ov["up.weight"]["eps"] == pytest.approx(1e-8 / 4)          # ε/r_out
    ov = mup_overrides(model, "shampoo", base=base, scale_eps=True, matrix_eps=1e-6)
    assert ov["up.weight"]["matrix_eps"] == pytest.approx(1e-6)       # (r_in/r_out)/(r_L² r_nb²) = 1


def test_refusals():
    with pytest.raises(ValueError, match="match_rms_adamw"):
        mup_overrides(TinyLM(16), "muon", base=TinyLM(8), adjust_lr_fn="match_rms_adamw")
    with pytest.raises(ValueError, match="no µP rule"):
        mup_overrides(TinyLM(16), "dion", base=TinyLM(8))
    with pytest.raises(ValueError, match="base"):
        mup_overrides(TinyLM(16), "muon")
    with pytest.raises(ValueError, match="width"):
        mup_overrides(TinyLM(16), "muon", base=TinyLM(8), wd_times_width=0.1)


# ---- the spectral condition under µP, for Muon ------------------------------------------------


def _mlp(width: int) -> nn.Module:
    torch.manual_seed(width)
    return nn.Sequential(nn.Linear(8, width, bias=False), nn.Tanh(), nn.Linear(width, width, bias=False),
                         nn.Tanh(), nn.Linear(width, 4, bias=False)).double()


def _normalized_update_norms(width: int, mup: bool) -> list[float]:
    """‖ΔW‖₂/√(d_out/d_in) of each layer after one Muon step (exact polar factor, all layers on Muon)."""
    model = _mlp(width)
    hp = {"lr": 0.02, "weight_decay": 0.0, "orthogonalizer": "svd", "compute_dtype": "float64"}
    if mup:
        opt = mup_optimizer(model, "muon", base=_mlp(32), all_matrices=True, **hp)
    else:
        opt = muonlab.create_optimizer(model, "muon", overrides={"4.weight": {"algorithm": "muon", **hp}}, **hp)
    before = [p.detach().clone() for p in model.parameters()]
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=g, dtype=torch.float64), torch.randn(64, 4, generator=g, dtype=torch.float64)
    (model(x) - y).square().mean().backward()
    opt.step()
    return [torch.linalg.matrix_norm(p.detach() - b, ord=2).item() / math.sqrt(p.shape[0] / p.shape[1])
            for p, b in zip(model.parameters(), before)]


def test_muon_update_spectral_norm_is_width_independent_under_mup():
    mup = [_normalized_update_norms(w, True) for w in (32, 64, 128)]
    for other in mup[1:]:
        assert other == pytest.approx(mup[0], rel=1e-9)
    sp = [_normalized_update_norms(w, False) for w in (32, 128)]
    assert sp[0][:2] == pytest.approx(mup[0][:2])   # Muon's √max(1, m/n) is already µP for m ≥ n
    assert sp[1][2] / sp[0][2] == pytest.approx(2.0)  # SP readout: ‖ΔW‖₂ fixed, √(d_out/d_in) halves
