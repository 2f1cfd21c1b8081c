"""Quantized optimizer state: ``state_precision="int8"`` / ``"int4"`` on every matrix method.

The quantizers (block-wise absmax, linear and dynamic maps; Gupta et al. arXiv 2509.23106,
bitsandbytes' dynamic map from Dettmers et al. arXiv 2110.02861): round-trip bounds, exact zeros and
signs, block edges, a hand-computed case. The mechanism in the optimizer: a float64 loop reference of
8-bit Muon's step, the β = 0 reduction (8-bit Muon = Muon exactly), state_dict round trip and bitwise
resume for every registered matrix method, bf16, pickling, memory per parameter, training parity on
the test MLP, clear errors, and a 2-process DDP run with the distributed executor and a DCP checkpoint.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import pickle

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from nets import RoleNet, role_batch
from torch import nn

import muonlab
from muonlab.distributed import load_checkpoint, save_checkpoint
from muonlab.optim import quant
from muonlab.optim.quant import dequantize, quantize
from muonlab.registry import all_specs

MATRIX_SPECS = [s for s in all_specs() if s.matrix]
MATRIX_IDS = [s.name for s in MATRIX_SPECS]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread (on a loaded 2-core machine, more threads made the MLP
    training below 100× slower), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _blocky(n: int, block: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Entries whose magnitudes differ by orders of magnitude from block to block."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    scale = 10.0 ** torch.randint(-4, 3, (math.ceil(n / block),), generator=g).double()
    return (x * scale.repeat_interleave(block)[:n]).to(dtype)


def _per_element_absmax(x: torch.Tensor, block: int) -> torch.Tensor:
    """Reference block absmax, written as a loop."""
    flat = x.reshape(-1).double()
    out = torch.empty_like(flat)
    for start in range(0, flat.numel(), block):
        out[start:start + block] = flat[start:start + block].abs().max()
    return out


# ---- the quantizers -----------------------------------------------------------------------------


def test_dynamic_map_is_bitsandbytes_signed_tree():
    """8 bits: 256 sorted distinct values, 0 and 1, 127 per sign, magnitudes 5.5e−7 … 1, the most
    negative −(1 − 0.9/128); 4 bits: the 16 values of create_dynamic_map(True, 3, 4)."""
    q = quant.dynamic_map(8)
    assert q.numel() == 256 and torch.all(q[1:] > q[:-1])
    assert (q > 0).sum() == 128 and (q < 0).sum() == 127 and (q == 0).sum() == 1 and q.max() == 1.0
    assert q[q > 0].min().item() == pytest.approx(0.55e-6, rel=1e-12)
    assert q.min().item() == pytest.approx(-(1 - 0.9 / 128), rel=1e-12)
    # Decade i holds 2^i values, evenly spaced at 0.9·10^(i−6)/2^i.
    for i in range(7):
        dec = q[(q > 0.1 * 10.0 ** (i - 6)) & (q < 10.0 ** (i - 6))]
        assert dec.numel() == 2**i
        if i:
            step = 0.9 * 10.0 ** (i - 6) / 2**i
            assert torch.allclose(dec.diff(), torch.full((2**i - 1,), step, dtype=torch.float64))
    q4 = quant.dynamic_map(4).tolist()
    mags = [0.0055, 0.0325, 0.0775, 0.2125, 0.4375, 0.6625, 0.8875]
    assert q4 == pytest.approx(sorted([-m for m in mags] + [0.0] + mags + [1.0]), abs=1e-15)
    assert quant.dynamic_bound(8) == pytest.approx(0.9 / 128)
    assert quant.dynamic_bound(4) == pytest.approx(1 - 0.8875)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("n,block", [(5000, 2048), (2048, 2048), (7, 2048), (300, 64), (129, 128), (1, 16)])
def test_linear_round_trip_bound(bits, n, block):
    """|x − Q(x)| ≤ s_b/(2L) per element (L = 127: s_b/254; L = 7: s_b/14), also for a last block
    shorter than B; float64 exactly, float32 to rounding."""
    for dtype, slack in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        x = _blocky(n, block, dtype=dtype)
        q = quantize(x, bits, map="linear", block_size=block)
        assert q["absmax"].numel() == math.ceil(n / block)
        s = _per_element_absmax(x, block)
        assert torch.equal(q["absmax"].double().repeat_interleave(block)[:n], s)
        err = (dequantize(q, x.shape, torch.float64) - x.double()).abs()
        assert (err <= s * (quant.linear_bound(bits) + slack)).all()
        if bits == 8 and dtype == torch.float64:  # the codes are round(127·x/s) (half to even)
            assert torch.equal(q["codes"].double(), torch.round(x / torch.where(s > 0, s, 1) * 127))


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("n,block", [(5000, 2048), (300, 64), (33, 8)])
def test_dynamic_round_trip_is_the_nearest_code(bits, n, block):
    """Dynamic: x̃/s_b is the code-book entry nearest to x/s_b, so |x − Q(x)| ≤ s_b·h with h half
    the widest gap (0.00703 at 8 bits), and much less near zero where the map is dense."""
    x = _blocky(n, block, seed=1)
    q = quantize(x, bits, map="dynamic", block_size=block)
    s = _per_element_absmax(x, block)
    y = x / s
    book = quant.dynamic_map(bits)
    nearest = (y[:, None] - book[None, :]).abs().min(dim=1).values
    err = (dequantize(q, x.shape) - x).abs()
    assert (err <= s * nearest + 1e-15 * s).all()
    assert (err <= s * quant.dynamic_bound(bits) * (1 + 1e-12)).all()
    if bits == 8:  # small entries (|y| < 0.05): spacing 0.9·10⁻¹/32 or finer, 3× finer than linear's
        small = y.abs() < 0.05
        assert small.any() and (err[small] <= s[small] * 0.09 / 64 * (1 + 1e-12)).all()


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("qmap", ["linear", "dynamic"])
def test_zeros_and_signs(bits, qmap):
    """A zero block stores scale 0 and comes back as exact zeros; exact zeros elsewhere stay zero;
    no element changes sign; a block's scale never leaks into the next block."""
    block = 16
    x = torch.zeros(4 * block + 5, dtype=torch.float64)
    x[block:2 * block] = torch.linspace(-3, 3, block, dtype=torch.float64)  # contains no 0 by construction
    x[2 * block] = 0.0
    x[2 * block + 1:3 * block] = 1e3  # a large block right before a tiny one
    x[3 * block:] = torch.linspace(-1e-5, 1e-5, block + 5, dtype=torch.float64)
    x[3 * block + 2] = 0.0
    q = quantize(x, bits, map=qmap, block_size=block)
    back = dequantize(q, x.shape)
    assert q["absmax"][0] == 0 and torch.equal(back[:block], torch.zeros(block, dtype=torch.float64))
    zero = x == 0
    assert torch.equal(back[zero], torch.zeros_like(back[zero]))
    assert (back.sign() * x.sign() >= 0).all()
    assert q["absmax"][3] == pytest.approx(1e-5)  # the tiny block has its own scale
    assert (back[3 * block:] - x[3 * block:]).abs().max() <= 1e-5 * 0.12


def test_hand_computed_codes():
    """B = 4, x = [0.5, −1, 0.25, 0 | 2, 1, −2, 0.01 | 3]: linear 8-bit codes round(127·x/s)."""
    x = torch.tensor([0.5, -1, 0.25, 0, 2, 1, -2, 0.01, 3], dtype=torch.float64)
    q = quantize(x, 8, map="linear", block_size=4)
    assert q["absmax"].tolist() == [1.0, 2.0, 3.0]
    assert q["codes"].tolist() == [64, -127, 32, 0, 127, 64, -127, 1, 127]  # 63.5 → 64, 31.75 → 32, 0.635 → 1
    assert q["codes"].dtype == torch.int8 and q["codes"].shape == x.shape
    assert dequantize(q).tolist() == pytest.approx([64 / 127, -1, 32 / 127, 0, 2, 128 / 127, -2, 2 / 127, 3])
    q4 = quantize(x, 4, map="linear", block_size=4)  # round(7·x/s) + 8, two per byte, low nibble first
    nib = [12, 1, 10, 8, 15, 12, 1, 8, 15]  # 3.5 → 4 (+8 = 12), 1.75 → 2 (10), 3.5 → 4, 0.035 → 0
    assert q4["codes"].dtype == torch.uint8 and q4["codes"].tolist() == [
        nib[0] | nib[1] << 4, nib[2] | nib[3] << 4, nib[4] | nib[5] << 4, nib[6] | nib[7] << 4, nib[8]]
    d = quantize(torch.tensor([1.0, -1.0, 0.0, 0.3]), 8, map="dynamic", block_size=4)
    book = quant.dynamic_map(8)
    assert [book[i + 128].item() for i in d["codes"].tolist()[:3]] == [1.0, book[0].item(), 0.0]


def _codes(q, n):
    """One code per element (4-bit codes unpacked, low nibble first)."""
    c = q["codes"].reshape(-1)
    return c if q["bits"] == 8 else torch.stack([c & 15, c >> 4], 1).reshape(-1)[:n]


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("qmap", ["linear", "dynamic"])
def test_requantizing_and_non_finite_values(bits, qmap):
    """Linear: state the rule reads but does not change does not drift, Q(deQ(Q(x))) = Q(x).
    Dynamic: neither does it, except in blocks whose largest entry is negative: bitsandbytes' map
    has +1 but not −1, so that entry comes back as Q[0]·s_b = −(1 − h)·s_b and the block is rescaled
    (each requantization stays within the round-trip bound). A NaN poisons its own block only."""
    x = _blocky(1000, 64, seed=3, dtype=torch.float32)
    q = quantize(x, bits, map=qmap, block_size=64)
    back = dequantize(q, x.shape, torch.float32)
    again = quantize(back, bits, map=qmap, block_size=64)
    flat = torch.cat([x, x.new_zeros(-x.numel() % 64)]).view(-1, 64)
    keeps = flat.gather(1, flat.abs().argmax(1, keepdim=True)).squeeze(1) > 0
    if qmap == "linear":
        keeps[:] = True
    else:
        assert keeps.any() and not keeps.all()
    same = keeps.repeat_interleave(64)[:x.numel()]
    assert torch.equal(_codes(q, x.numel())[same], _codes(again, x.numel())[same])
    torch.testing.assert_close(q["absmax"][keeps], again["absmax"][keeps], rtol=1e-6, atol=0)
    bound = quant.linear_bound(bits) if qmap == "linear" else quant.dynamic_bound(bits)
    s = q["absmax"].double().repeat_interleave(64)[:x.numel()]
    assert ((dequantize(again, x.shape, torch.float64) - back.double()).abs() <= s * bound * (1 + 1e-5)).all()
    x[70] = float("nan")
    back = dequantize(quantize(x, bits, map=qmap, block_size=64), x.shape)
    assert back[64:128].isnan().all() and not back[:64].isnan().any() and not back[128:].isnan().any()


def test_memory_of_the_storage():
    """int8: numel bytes + 4 per block; int4: half a byte per element + 4 per block."""
    x = torch.randn(256, 512)
    assert quant.nbytes(quantize(x, 8)) == x.numel() + 4 * x.numel() // 2048
    assert quant.nbytes(quantize(x, 4)) == x.numel() // 2 + 4 * x.numel() // 128
    assert quant.nbytes(quantize(x.bfloat16(), 8)) == x.numel() + 4 * x.numel() // 2048  # scales stay float32


def test_quantizer_errors_are_clear():
    x = torch.randn(10)
    with pytest.raises(ValueError, match="bits must be 8 or 4"):
        quantize(x, 16)
    with pytest.raises(ValueError, match="map must be one of"):
        quantize(x, 8, map="log")
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        quantize(x, 8, block_size=0)
    with pytest.raises(ValueError, match="floating"):
        quantize(torch.arange(4), 8)
    q4 = quantize(x, 4)
    with pytest.raises(ValueError, match="pass the tensor's shape"):
        dequantize(q4)
    with pytest.raises(ValueError, match="do not fit"):
        dequantize(q4, (11,))
    with pytest.raises(ValueError, match="must be torch.int8"):
        dequantize({**quantize(x, 8), "codes": quantize(x, 8)["codes"].float()})


# ---- the optimizer mechanism --------------------------------------------------------------------


def _reference_8bit_muon(W0, grads, lr, beta, block):
    """Float64 loop reference of 8-bit Muon's step (accumulate momentum, Moonlight scale, exact
    polar factor): M̃ = deQ(Z, S); M = βM̃ + G; W ← W − η·0.2·√max(m, n)·polar(M); (Z, S) = Q(M)."""
    W = W0.clone()
    m, n = W.shape
    codes, scales = torch.zeros(m * n, dtype=torch.int64), torch.zeros(math.ceil(m * n / block), dtype=torch.float64)
    for G in grads:
        Mt = torch.empty(m * n, dtype=torch.float64)
        for i in range(m * n):
            Mt[i] = scales[i // block] * codes[i] / 127
        M = beta * Mt.view(m, n) + G
        U, _, Vh = torch.linalg.svd(M, full_matrices=False)
        W = W - lr * 0.2 * math.sqrt(max(m, n)) * (U @ Vh)
        flat = M.reshape(-1)
        for b in range(len(scales)):
            chunk = flat[b * block:(b + 1) * block]
            s = chunk.abs().max()
            scales[b] = s
            codes[b * block:(b + 1) * block] = torch.round(chunk / s * 127) if s > 0 else 0
    return W


def test_8bit_muon_matches_a_float64_loop_reference():
    torch.manual_seed(0)
    m, n, block, beta, lr = 6, 10, 16, 0.9, 0.05
    W0 = torch.randn(m, n, dtype=torch.float64)
    grads = [torch.randn(m, n, dtype=torch.float64) for _ in range(5)]
    p = nn.Parameter(W0.clone())
    opt = muonlab.HybridOptimizer([p], "muon", lr=lr, momentum=beta, momentum_form="accumulate", nesterov=False,
                                  weight_decay=0.0, orthogonalizer="svd", compute_dtype="float64",
                                  adjust_lr_fn="match_rms_adamw", state_precision="int8", state_block_size=block)
    for G in grads:
        p.grad = G.clone()
        opt.step()
    torch.testing.assert_close(p.detach(), _reference_8bit_muon(W0, grads, lr, beta, block), rtol=0, atol=1e-12)


def _train(model, opt, steps, start=0):
    for t in range(start, start + steps):
        x, y = role_batch(t)
        opt.zero_grad(set_to_none=True)
        (model(x).float() - y).pow(2).mean().backward()
        opt.step()


def _make(spec, dtype=torch.float32, **kw):
    torch.manual_seed(0)
    model = RoleNet().to(dtype)
    return model, muonlab.create_optimizer(model, spec.name, **{**spec.test_overrides, **kw})


@pytest.mark.parametrize("precision,qmap", [("int8", "linear"), ("int8", "dynamic"), ("int4", "dynamic")])
def test_muon_without_momentum_is_unaffected_by_quantization(precision, qmap):
    """β = 0 (§23.5): nothing stored matters, so quantized Muon equals Muon bitwise."""
    spec = muonlab.get_spec("muon")
    a, oa = _make(spec, momentum=0.0)
    b, ob = _make(spec, momentum=0.0, state_precision=precision, state_quant_map=qmap, state_block_size=32)
    _train(a, oa, 4)
    _train(b, ob, 4)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert any(quant.is_quantized(st.get("momentum_buffer")) for st in ob.state.values())


def test_default_and_float32_leave_state_and_results_unchanged():
    spec = muonlab.get_spec("muon")
    a, oa = _make(spec)
    b, ob = _make(spec, state_precision="float32")
    _train(a, oa, 3)
    _train(b, ob, 3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    for st in ob.state.values():
        assert all(torch.is_tensor(v) for v in st.values())


def _check_quantized_state(opt, bits):
    """Every parameter-shaped entry of a quantizing group is stored as codes + scales, except
    those declared ``Slot(..., quantize=False)``."""
    seen = 0
    for group in opt.param_groups:
        if group.get("state_precision") not in ("int8", "int4"):
            continue
        rule = muonlab.get_spec(group["algorithm"]).rule
        for p in group["params"]:
            for k, slot in rule.state_spec.items():
                v = opt.state[p].get(k)
                if slot.kind == "param" and v is not None and not slot.quantize:
                    assert torch.is_tensor(v), f"{rule.name}: {k} is declared quantize=False"
                elif slot.kind == "param" and v is not None:
                    assert not torch.is_tensor(v), f"{rule.name}: {k} kept in full precision"
                    quant.check_quantized(v)
                    assert v["bits"] == bits and v["codes"].dtype == (torch.int8 if bits == 8 else torch.uint8)
                    seen += 1
    return seen


def _assert_same_state(sa, sb):
    for pid, st in sa.items():
        for key, val in st.items():
            other = sb[pid][key]
            if isinstance(val, dict):
                for f, x in val.items():
                    y = other[f]
                    assert (torch.equal(x, y) and x.dtype == y.dtype) if torch.is_tensor(x) else x == y, (pid, key, f)
            elif torch.is_tensor(val):
                assert torch.equal(val, other) and val.dtype == other.dtype, (pid, key)
            else:
                assert val == other, (pid, key)


@pytest.mark.parametrize("spec", MATRIX_SPECS, ids=MATRIX_IDS)
def test_int8_state_dict_round_trip_and_bitwise_resume(spec):
    """For every registered matrix method: int8 state (several blocks per matrix) survives
    torch.save/torch.load + load_state_dict with its int8 codes and float32 scales, and resuming is
    bitwise identical to not stopping."""
    cfg = {"state_precision": "int8", "state_block_size": 64}
    model, opt = _make(spec, **cfg)
    _train(model, opt, 3)
    _check_quantized_state(opt, 8)  # every parameter-shaped entry kept between steps is int8
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    saved_state = copy.deepcopy(opt.state_dict()["state"])
    _train(model, opt, 3, start=3)
    uninterrupted = [p.detach().clone() for p in model.parameters()]

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    model2, opt2 = _make(spec, **cfg)
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    _assert_same_state(saved_state, opt2.state_dict()["state"])
    _train(model2, opt2, 3, start=3)
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted, model2.parameters()))


@pytest.mark.parametrize("precision,qmap", [("int8", "linear"), ("int4", "dynamic")])
def test_bf16_parameters_restore_float32_scales_and_resume_bitwise(precision, qmap):
    """torch's load casts the scales to bf16 and the codes to bf16: both come back as saved."""
    spec = muonlab.get_spec("muon")
    cfg = {"state_precision": precision, "state_quant_map": qmap}
    model, opt = _make(spec, dtype=torch.bfloat16, **cfg)
    _train(model, opt, 2)
    sd = copy.deepcopy(opt.state_dict())
    model2 = copy.deepcopy(model)
    opt2 = muonlab.create_optimizer(model2, "muon", **{**spec.test_overrides, **cfg})
    opt2.load_state_dict(sd)
    _assert_same_state(sd["state"], opt2.state_dict()["state"])
    assert all(v["momentum_buffer"]["absmax"].dtype == torch.float32
               for v in opt2.state_dict()["state"].values() if "momentum_buffer" in v)
    _train(model, opt, 2, start=2)
    _train(model2, opt2, 2, start=2)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))
    assert all(p.dtype == torch.bfloat16 and torch.isfinite(p).all() for p in model2.parameters())


def test_views_quantize_the_parameter_layout():
    """A stack seen as a batch of matrices and a transposed (in, out) matrix: the stored codes are
    those of the float run's state in the parameter's own layout, and resuming is bitwise."""
    spec = muonlab.get_spec("muon")
    views = {"overrides": {"experts": {"algorithm": "muon", "matrix_view": "batch"},
                           "fc1.weight": {"algorithm": "muon", "matrix_view": "transpose"}}}
    a, oa = _make(spec, **views)
    b, ob = _make(spec, state_precision="int8", state_block_size=16, **views)
    _train(a, oa, 1)
    _train(b, ob, 1)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))  # step 1 reads M₀ = 0
    named = dict(b.named_parameters())
    for name in ("experts", "fc1.weight", "fc2.weight"):
        pa, pb = dict(a.named_parameters())[name], named[name]
        q = ob.state[pb]["momentum_buffer"]
        assert q["codes"].shape == pb.shape
        assert torch.equal(q["codes"], quantize(oa.state[pa]["momentum_buffer"], 8, block_size=16)["codes"])
    sd = copy.deepcopy(ob.state_dict())
    b2 = copy.deepcopy(b)
    ob2 = muonlab.create_optimizer(b2, "muon", state_precision="int8", state_block_size=16, **views)
    ob2.load_state_dict(sd)
    _train(b, ob, 2, start=1)
    _train(b2, ob2, 2, start=1)
    assert all(torch.equal(x, y) for x, y in zip(b.parameters(), b2.parameters()))


@pytest.mark.parametrize("name", ["muon", "normuon", "conda"])
def test_pickle_and_deepcopy_keep_quantized_state(name):
    spec = muonlab.get_spec(name)
    model, opt = _make(spec, state_precision="int4")
    _train(model, opt, 2)
    for other in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        _assert_same_state(opt.state_dict()["state"], other.state_dict()["state"])
    assert _check_quantized_state(opt, 4) > 0


def test_precision_can_change_between_steps_and_float_checkpoints_load():
    """Stored entries describe themselves: int8 → None gives float tensors back; a float32
    (here torch.optim.Muon-style) state loads into an int8 optimizer and is quantized at its step."""
    spec = muonlab.get_spec("muon")
    model, opt = _make(spec, state_precision="int8")
    _train(model, opt, 2)
    float_model, float_opt = _make(spec)
    _train(float_model, float_opt, 2)
    (group,) = [g for g in opt.param_groups if g["algorithm"] == "muon"]
    group["state_precision"] = None
    _train(model, opt, 1, start=2)
    assert all(torch.is_tensor(opt.state[p]["momentum_buffer"]) for p in group["params"])
    sd = float_opt.state_dict()
    for g in sd["param_groups"]:  # an older checkpoint: no state options at all
        for k in ("state_precision", "state_quant_map", "state_block_size"):
            g.pop(k, None)
    opt2 = muonlab.create_optimizer(float_model, "muon", state_precision="int8")
    opt2.load_state_dict(sd)
    assert [g["state_precision"] for g in opt2.param_groups if g["algorithm"] == "muon"] == ["int8"]
    _train(float_model, opt2, 1, start=2)
    assert _check_quantized_state(opt2, 8) > 0


@pytest.mark.parametrize("precision,bits,per_param", [(None, None, 4.0), ("int8", 8, 1 + 4 / 2048),
                                                      ("int4", 4, 0.5 + 4 / 128)])
def test_muon_state_bytes_per_parameter(precision, bits, per_param):
    """Muon's momentum: 4 bytes per parameter in float32, 1 + 4/2048 in int8, 0.5 + 4/128 in int4."""
    p = nn.Parameter(torch.randn(256, 512))
    opt = muonlab.HybridOptimizer([p], "muon", state_precision=precision)
    p.grad = torch.randn_like(p)
    opt.step()
    assert quant.state_nbytes(opt) / p.numel() == pytest.approx(per_param, rel=1e-12)
    if bits:
        err = (dequantize(opt.state[p]["momentum_buffer"], p.shape) - p.grad * 0.05).abs().max()
        bound = quant.linear_bound(8) if bits == 8 else quant.dynamic_bound(4)  # the default maps
        assert err <= (p.grad * 0.05).abs().max() * (bound + 1e-6)  # first EMA step: M = (1−β)G


def _mlp_loss(**kw):
    torch.manual_seed(0)
    X = torch.randn(256, 16)
    y = torch.tanh(X @ torch.randn(16, 4))
    model = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 4))
    opt = muonlab.create_optimizer(model, "muon", **kw)
    first = None
    for _ in range(150):
        loss = (model(X) - y).pow(2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first, loss.item()


def test_int8_muon_trains_like_float32_muon():
    """The contract's MLP (150 full-batch steps, loss 0.82 → 6.0e−4 in float32): int8 linear and
    dynamic end within 1.5× of float32 Muon's final loss (measured: 7.4e−4, 7.7e−4, i.e. the
    same 1000-fold reduction); int4 (dynamic, block 128) still reduces it 100-fold (measured 5.8e−3)."""
    first, ref = _mlp_loss()
    for kw in ({"state_precision": "int8"}, {"state_precision": "int8", "state_quant_map": "dynamic"}):
        _, loss = _mlp_loss(**kw)
        assert loss <= 1.5 * ref and loss < 2e-3 * first, (kw, loss, ref)
    _, loss4 = _mlp_loss(state_precision="int4")
    assert loss4 < 0.01 * first


@pytest.mark.parametrize("name,value", [("state_precision", "int16"), ("state_precision", "fp8"),
                                        ("state_quant_map", "log"), ("state_block_size", 0),
                                        ("state_block_size", 2.5), ("state_block_size", True)])
def test_invalid_values_raise_naming_them(name, value):
    p = nn.Parameter(torch.randn(4, 3))
    with pytest.raises(ValueError) as info:
        muonlab.HybridOptimizer([p], "muon", **{name: value})
    assert name in str(info.value) and repr(value) in str(info.value)


def test_elementwise_rules_reject_the_option_and_dtensor_parameters_are_refused():
    p = nn.Parameter(torch.randn(4, 3))
    with pytest.raises(ValueError, match="state_precision"):
        muonlab.HybridOptimizer([p], "adamw", state_precision="int8")
    fake = nn.Parameter(torch.randn(4, 3))
    fake.device_mesh, fake.placements = None, ()  # looks like a DTensor to muonlab's check
    with pytest.raises(ValueError, match="not supported for the DTensor"):
        muonlab.HybridOptimizer([fake], "muon", state_precision="int8")


# ---- DDP: the distributed executor and a DCP checkpoint -----------------------------------------

WORLD = 2
CFG = {"state_precision": "int8", "state_block_size": 32, "compute_dtype": "float32"}


def _ddp_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(), nn.Linear(24, 3))


def _ddp_train(model, opt, steps, start=0):
    for t in range(start, start + steps):
        g = torch.Generator().manual_seed(t)
        x, y = torch.randn(32, 12, generator=g), torch.randn(32, 3, generator=g)
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()


def _ddp_job(rank: int, store: str, ckpt: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store, WORLD), rank=rank, world_size=WORLD)
    report = {}
    try:
        model = _ddp_model()
        opt = muonlab.create_optimizer(model, "muon", executor=muonlab.DistributedExecutor(timeout=30), **CFG)
        _ddp_train(model, opt, 3)  # every rank has the same gradients: replicas share the matrix work
        save_checkpoint(ckpt, model, opt)
        model2 = _ddp_model()
        opt2 = muonlab.create_optimizer(model2, "muon", executor=muonlab.DistributedExecutor(timeout=30), **CFG)
        load_checkpoint(ckpt, model2, opt2)
        _ddp_train(model2, opt2, 2, start=3)
        codes = [st["momentum_buffer"]["codes"].tolist() for p, st in opt2.state.items() if p.ndim == 2
                 and isinstance(st.get("momentum_buffer"), dict)]
        report = {"params": [p.detach().tolist() for p in model2.parameters()], "codes": codes,
                  "dtypes": sorted({str(st["momentum_buffer"]["codes"].dtype) for st in opt2.state.values()
                                    if isinstance(st.get("momentum_buffer"), dict)})}
    except Exception as e:  # noqa: BLE001 - reported to the test, not lost in a child process
        report = {"error": repr(e)}
    every = [None] * WORLD
    dist.all_gather_object(every, report)
    if rank == 0:
        with open(out, "w") as f:
            json.dump(every, f)
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)


@pytest.mark.distributed
def test_ddp_distributed_executor_and_dcp_checkpoint_keep_int8_state(tmp_path):
    """2 gloo ranks, the distributed executor and a DCP save/load after 3 steps: both ranks hold the
    same int8 state and end where one process with LocalExecutor ends after 5 steps."""
    out = tmp_path / "out.json"
    ctx = mp.start_processes(_ddp_job, args=(str(tmp_path / "store"), str(tmp_path / "ckpt"), str(out)),
                             nprocs=WORLD, join=False, start_method="spawn")
    try:
        ctx.processes[0].join(120)
        assert ctx.processes[0].exitcode == 0, f"rank 0 exited with {ctx.processes[0].exitcode}"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
            p.join(10)
    reports = json.loads(out.read_text())
    assert all("error" not in r for r in reports), reports
    assert reports[0] == reports[1]
    assert reports[0]["dtypes"] == ["torch.int8"] and reports[0]["codes"]
    model = _ddp_model()
    opt = muonlab.create_optimizer(model, "muon", **CFG)
    _ddp_train(model, opt, 5)
    for a, b in zip(model.parameters(), reports[0]["params"]):
        torch.testing.assert_close(a.detach(), torch.tensor(b), rtol=0, atol=1e-6)
    local_codes = [st["momentum_buffer"]["codes"].tolist() for p, st in opt.state.items() if p.ndim == 2
                   and isinstance(st.get("momentum_buffer"), dict)]
    assert local_codes == reports[0]["codes"]


def test_probe_reads_quantized_momentum_through_state_tensor():
    """SpectralProbe sees the dequantized momentum of an int8 optimizer (not the gradient)."""
    from muonlab.diagnostics import SpectralProbe

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = muonlab.create_optimizer(model, "muon", state_precision="int8")
    with SpectralProbe(model, opt, every=1) as probe:
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(32, 8)).pow(2).mean().backward()
            opt.step()
    hidden = model[2].weight
    assert isinstance(opt.state[hidden]["momentum_buffer"], dict)  # stored quantized
    m = opt.state_tensor(hidden, "momentum_buffer")
    assert m.shape == hidden.shape and m.dtype == hidden.dtype and m.abs().sum() > 0
    assert opt.state_tensor(hidden, "no_such_entry") is None
    rec = [r for r in probe.records() if r.get("param") == "2.weight"][-1]
    assert rec["momentum"] is not None and rec["momentum"] != rec["grad"]
