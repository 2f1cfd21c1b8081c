"""A parameter's matrix view carries its orientation: Hugging Face's GPT-2 ``Conv1D`` stores a
Linear weight as ``(in, out)``; every registered method must give it exactly the update of the
equivalent ``nn.Linear`` (transposed), shape factors, row/column norms and ranks included."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import muonlab
from muonlab.registry import all_specs

transformers = pytest.importorskip("transformers")
from transformers.pytorch_utils import Conv1D  # noqa: E402

SPECS = all_specs()


class LinearNet(nn.Module):
    def __init__(self, fc: type = nn.Linear):
        super().__init__()
        self.up = nn.Linear(8, 24) if fc is nn.Linear else Conv1D(24, 8)   # c_fc-like: out = 3·in
        self.down = nn.Linear(24, 8) if fc is nn.Linear else Conv1D(8, 24)  # c_proj-like
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.down(torch.tanh(self.up(x)))))


def _pair():
    torch.manual_seed(0)
    lin = LinearNet(nn.Linear).double()
    conv = LinearNet(Conv1D).double()
    with torch.no_grad():
        for a, b in ((lin.up, conv.up), (lin.down, conv.down)):
            b.weight.copy_(a.weight.T)
            b.bias.copy_(a.bias)
        conv.head.load_state_dict(lin.head.state_dict())
    return lin, conv


def _kwargs(spec):
    kw = dict(spec.test_overrides)
    for key in ("compute_dtype", "power_dtype"):
        if key in spec.rule.hypers:
            kw[key] = "float64"
    if "orthogonalizer" in spec.rule.hypers:
        kw["orthogonalizer"] = "svd"  # exact: the comparison tests orientation, not rounding
    if spec.name == "soap":
        # SOAP runs Adam in the eigenbasis of GGᵀ, which is arbitrary inside its null space (a
        # 24×8 gradient's 24×24 GGᵀ has rank 8): a 1e-15 relative change of the weights moves 3 steps
        # by ~1e-2 (measured), in either layout. Preconditioning only the sides of length <= 8 (the
        # full-rank statistics: R for up, L for down) keeps the check exact and covers both sides.
        kw["max_precond_dim"] = 8
    return kw


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_conv1d_gets_the_update_of_the_equivalent_linear(spec):
    lin, conv = _pair()
    opt_l = muonlab.create_optimizer(lin, spec.name, **_kwargs(spec))
    opt_c = muonlab.create_optimizer(conv, spec.name, **_kwargs(spec))
    if spec.matrix:
        views = {n: g.get("matrix_view") for g in opt_c.param_groups for n in g["param_names"]}
        assert views["up.weight"] == "transpose" and views["down.weight"] == "transpose"
    g = torch.Generator().manual_seed(1)
    for step in range(3):
        x, y = torch.randn(16, 8, generator=g, dtype=torch.float64), torch.randn(16, 3, generator=g, dtype=torch.float64)
        for model, opt in ((lin, opt_l), (conv, opt_c)):
            opt.zero_grad()
            (model(x) - y).pow(2).mean().backward()
            opt.step()
    # Kaon's chaotic singular-value map amplifies round-off by design (its docstring): the two
    # layouts' float64 products differ in the last bits on some CPUs, and 3 steps grow that to ~1e-10.
    tol = 1e-8 if spec.name == "kaon" else 1e-12
    for a, b in ((lin.up, conv.up), (lin.down, conv.down)):
        diff = (a.weight - b.weight.T).abs().max().item()
        assert diff <= tol, f"{spec.name}: {diff:.3g}"
    # state stays in the parameter's layout (checkpoints look like any optimizer's)
    for p in (conv.up.weight, conv.down.weight):
        for k, v in opt_c.state[p].items():
            if torch.is_tensor(v) and spec.rule.state_spec.get(k) is not None and spec.rule.state_spec[k].kind == "param":
                assert v.shape == p.shape, (k, v.shape)


def test_conv1d_shape_factor_is_the_linear_one():
    """Muon's √max(1, m/n): 2 for an (in=4, out=16) Conv1D, not 1."""
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 16, dtype=torch.float64))
    opt = muonlab.HybridOptimizer([w], "muon", lr=1.0, weight_decay=0.0, momentum=0.0, nesterov=False,
                                  orthogonalizer="svd", compute_dtype=None, matrix_view="transpose")
    w.grad = torch.randn(4, 16, dtype=torch.float64)
    before = w.detach().clone()
    opt.step()
    U = before - w.detach()
    assert torch.linalg.matrix_norm(U, ord=2).item() == pytest.approx(2.0, rel=1e-10)


def test_gpt2_routes_conv1d_with_transpose_view():
    cfg = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50, n_positions=16)
    model = transformers.GPT2LMHeadModel(cfg)
    opt = muonlab.create_optimizer(model, "muon")
    hidden = [g for g in opt.param_groups if g["role"] == "hidden"]
    assert hidden and all(g["matrix_view"] == "transpose" for g in hidden)
    names = {n for g in hidden for n in g["param_names"]}
    assert {"transformer.h.0.attn.c_attn.weight", "transformer.h.0.mlp.c_fc.weight"} <= names
    ids = torch.randint(0, 50, (2, 8))
    model(ids, labels=ids).loss.backward()
    opt.step()


def test_transpose_view_needs_a_matrix():
    with pytest.raises(ValueError, match="transpose"):
        muonlab.HybridOptimizer([nn.Parameter(torch.randn(2, 3, 4))], "muon", matrix_view="transpose")


FSDP2_SCRIPT = """
import json, sys, torch, muonlab
from torch import nn
from transformers.pytorch_utils import Conv1D
from torch.distributed.fsdp import fully_shard
from muonlab.distributed import init_from_env, shard_batch, is_main, shutdown

init_from_env(device="cpu")
torch.set_num_threads(1)

class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.up, self.down, self.head = Conv1D(24, 8), Conv1D(8, 24), nn.Linear(8, 3)
    def forward(self, x):
        return self.head(torch.tanh(self.down(torch.tanh(self.up(x)))))

def train(model, name, shard):
    opt = muonlab.create_optimizer(model, name, compute_dtype="float32")
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        x, y = torch.randn(8, 8, generator=g), torch.randn(8, 3, generator=g)
        if shard:
            x, y = shard_batch((x, y))
        opt.zero_grad(); (model(x) - y).pow(2).mean().backward(); opt.step()
    return opt

out = {}
for name in ("muon", "normuon"):
    torch.manual_seed(0); ref = M(); train(ref, name, False)
    torch.manual_seed(0); model = M()
    for sub in (model.up, model.down, model.head):
        fully_shard(sub)
    fully_shard(model)
    opt = train(model, name, True)
    views = {n: g.get("matrix_view") for g in opt.param_groups for n in g["param_names"]}
    full = {n: p.full_tensor().detach() for n, p in model.named_parameters()}
    out[name] = {"view": views["up.weight"], "executor": type(opt.executor).__name__,
                 "diff": max(((full[n] - p).abs().max() / p.abs().max()).item() for n, p in ref.named_parameters())}
if is_main():
    print("RESULT " + json.dumps(out), flush=True)
shutdown()
"""


@pytest.mark.distributed
def test_conv1d_under_fsdp2_matches_one_process(tmp_path):
    """FSDP2 swaps the class for "FSDPConv1D" and shards the (in, out) weight on its first dim:
    the weight is still routed with the transpose view and trains as in one process."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "fsdp2_conv1d.py"
    script.write_text(FSDP2_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(muonlab.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    for name, r in json.loads(line[len("RESULT "):]).items():
        assert r["view"] == "transpose" and r["executor"] == "DistributedExecutor", (name, r)
        assert r["diff"] <= 1e-4, (name, r)
