"""Routing a whole model: roles, coverage, overrides, AdamW parity, real architectures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import muonlab
from muonlab.routing import Role, check_coverage, classify, routing_summary


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        q, k, v = self.attn(self.ln1(x)).chunk(3, -1)
        a = torch.softmax(q @ k.mT / q.shape[-1] ** 0.5, -1) @ v
        x = x + self.proj(a)
        return x + self.out(torch.relu(self.fc(self.ln2(x))))


class NanoGPT(nn.Module):
    """nanoGPT layout: token + position embeddings, blocks, final norm, lm_head tied to wte."""

    def __init__(self, vocab=40, d=16, layers=2, tie=True):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(8, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        if tie:
            self.lm_head.weight = self.wte.weight

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.lm_head(self.ln_f(x))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.c2(torch.relu(self.c1(x)))))
        return self.fc(x.mean((2, 3)))


def _algorithms(opt):
    return {n: g["algorithm"] for g in opt.param_groups for n in g["param_names"]}


def test_nanogpt_roles_and_tied_head():
    model = NanoGPT()
    roles, notes = classify(model)
    assert roles["wte.weight"] == Role.EMBEDDING and roles["wpe.weight"] == Role.EMBEDDING
    assert roles["blocks.0.attn.weight"] == Role.HIDDEN and roles["blocks.1.out.weight"] == Role.HIDDEN
    assert roles["blocks.0.attn.bias"] == Role.VECTOR and roles["ln_f.weight"] == Role.VECTOR
    assert "lm_head.weight" not in roles  # tied: one tensor, reported once under its first name
    assert any("tied" in n for n in notes)
    algs = _algorithms(muonlab.create_optimizer(model, "muon"))
    assert {n for n, a in algs.items() if a == "muon"} == {
        f"blocks.{i}.{m}.weight" for i in range(2) for m in ("attn", "proj", "fc", "out")}


def test_untied_head_is_detected_as_output():
    model = NanoGPT(tie=False)
    roles, notes = classify(model)
    assert roles["lm_head.weight"] == Role.OUTPUT
    assert any("'lm_head'" in n for n in notes)
    assert _algorithms(muonlab.create_optimizer(model))["lm_head.weight"] == "adamw"


def test_declared_output_wins_over_detection():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 2))
    roles, _ = classify(model, output="2")
    assert roles["2.weight"] == Role.OUTPUT and roles["3.weight"] == Role.HIDDEN
    with pytest.raises(ValueError, match="output='nope' matches no"):
        classify(model, output="nope")


def test_cnn_convs_use_flatten_view_and_head_adamw():
    model = CNN()
    opt = muonlab.create_optimizer(model, "muon")
    algs = _algorithms(opt)
    assert algs["c1.weight"] == algs["c2.weight"] == "muon"
    assert algs["fc.weight"] == algs["bn.weight"] == algs["c1.bias"] == "adamw"
    conv_group = next(g for g in opt.param_groups if g["role"] == "conv")
    assert conv_group["matrix_view"] == "flatten"
    x = torch.randn(4, 1, 8, 8)
    nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()


def test_every_param_exactly_once_and_groups_carry_algorithm():
    model = NanoGPT(tie=False)
    opt = muonlab.create_optimizer(model, "muon")
    names = [n for g in opt.param_groups for n in g["param_names"]]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert all("algorithm" in g and "role" in g for g in opt.param_groups)
    other = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="in more than one group"):
        check_coverage(model, [opt, other])
    partial = torch.optim.SGD([model.wte.weight], lr=0.1)
    with pytest.raises(ValueError, match="not optimized: .*'wpe.weight'"):
        check_coverage(model, partial)


def test_frozen_parameters_are_left_out():
    model = NanoGPT()
    model.wpe.weight.requires_grad_(False)
    opt = muonlab.create_optimizer(model)
    assert "wpe.weight" not in [n for g in opt.param_groups for n in g["param_names"]]


def test_overrides_by_name_pattern():
    model = NanoGPT()
    opt = muonlab.create_optimizer(
        model, "muon", lr=0.03,
        overrides={"blocks.0.*": {"lr": 0.01}, "blocks.1.attn.weight": "adamw"},
        adamw={"lr": 1e-3})
    lr = {n: (g["algorithm"], g["lr"]) for g in opt.param_groups for n in g["param_names"]}
    assert lr["blocks.0.fc.weight"] == ("muon", 0.01)
    assert lr["blocks.0.ln1.weight"] == ("adamw", 0.01)
    assert lr["blocks.1.fc.weight"] == ("muon", 0.03)
    assert lr["blocks.1.attn.weight"][0] == "adamw"
    assert lr["wte.weight"] == ("adamw", 1e-3)
    with pytest.raises(ValueError, match="pattern 'zzz' matches no"):
        muonlab.create_optimizer(model, overrides={"zzz": "adamw"})


def test_unknown_method_lists_choices():
    with pytest.raises(ValueError, match="unknown optimizer 'muonn'; available: .*muon"):
        muonlab.create_optimizer(NanoGPT(), "muonn")


def test_elementwise_method_gets_every_parameter():
    opt = muonlab.create_optimizer(NanoGPT(), "adamw")
    assert {g["algorithm"] for g in opt.param_groups} == {"adamw"}


def test_adamw_groups_equal_torch_adamw_on_same_params():
    torch.manual_seed(0)
    a, b = NanoGPT(tie=False), NanoGPT(tie=False)
    b.load_state_dict(a.state_dict())
    hp = {"lr": 3e-3, "betas": (0.9, 0.95), "weight_decay": 0.1, "eps": 1e-8}
    opt = muonlab.create_optimizer(a, "muon", adamw=hp)
    aux_names = [n for g in opt.param_groups if g["algorithm"] == "adamw" for n in g["param_names"]]
    bp = dict(b.named_parameters())
    ref = torch.optim.AdamW([bp[n] for n in aux_names], fused=True, **hp)  # our CPU default
    # b's hidden matrices follow torch.optim.Muon (bitwise equal to ours, see test_muon.py).
    muon_names = [n for g in opt.param_groups if g["algorithm"] == "muon" for n in g["param_names"]]
    ref_muon = torch.optim.Muon([bp[n] for n in muon_names], lr=0.02, weight_decay=0.01)
    for step in range(5):
        idx = torch.randint(0, 40, (4, 8), generator=torch.Generator().manual_seed(step))
        for m in (a, b):
            m.zero_grad()
            m(idx).logsumexp(-1).mean().backward()
        opt.step()
        ref.step()
        ref_muon.step()
    ap = dict(a.named_parameters())
    assert all(torch.equal(ap[n], bp[n]) for n in aux_names)


def test_summary_table_lists_roles_and_counts():
    opt = muonlab.create_optimizer(NanoGPT(), "muon")
    text = routing_summary(opt)
    assert "hidden" in text and "embedding" in text and "muon" in text and "adamw" in text
    total = sum(p.numel() for p in NanoGPT().parameters())
    assert f"total trainable parameters: {total:,}" in text


def test_works_with_torch_lr_scheduler():
    model = NanoGPT()
    opt = muonlab.create_optimizer(model)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    base = [g["lr"] for g in opt.param_groups]
    for _ in range(5):
        model(torch.randint(0, 40, (2, 8))).mean().backward()
        opt.step()
        sched.step()
    assert all(g["lr"] < b for g, b in zip(opt.param_groups, base))


@pytest.mark.parametrize("arch", ["qwen3", "llama", "gpt2"])
def test_hugging_face_causal_lm_from_config(arch):
    transformers = pytest.importorskip("transformers")
    small = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64)
    if arch == "qwen3":
        cfg = transformers.Qwen3Config(**small, num_key_value_heads=2, head_dim=8, tie_word_embeddings=True)
    elif arch == "llama":
        cfg = transformers.LlamaConfig(**small, num_key_value_heads=2, tie_word_embeddings=False)
    else:
        cfg = transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=16)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    opt = muonlab.create_optimizer(model, "muon")
    algs = _algorithms(opt)
    emb = model.get_input_embeddings().weight
    emb_name = next(n for n, p in model.named_parameters() if p is emb)
    assert algs[emb_name] == "adamw"
    head = model.get_output_embeddings().weight
    head_name = next((n for n, p in model.named_parameters() if p is head), emb_name)
    assert algs[head_name] == "adamw"
    hidden = [n for n, a in algs.items() if a == "muon"]
    assert hidden and all(dict(model.named_parameters())[n].ndim == 2 for n in hidden)
    assert all("norm" not in n and "ln_" not in n for n in hidden)
    ids = torch.randint(0, 64, (2, 8))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    assert torch.isfinite(model(input_ids=ids, labels=ids).loss)
