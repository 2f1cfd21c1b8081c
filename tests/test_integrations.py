"""docs/integrations.md runs as written: every block marked ``<!-- recipe: NAME -->`` is executed.

Single-process recipes run in this process (``exec`` in a fresh namespace, in a temporary working
directory, one torch thread); the torchrun recipes are written to a file and started with
``python -m torch.distributed.run --standalone --nproc_per_node=2`` (gloo on CPU), followed by a few
lines that write what the test checks to ``result_<rank>.json``. Checks beyond the recipes' own
``assert``s are made here, on the variables the recipes define. A recipe whose framework is not
installed is skipped (``pytest.importorskip``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import muonlab

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "integrations.md"
RECIPE = re.compile(r"^<!-- recipe: (\w+) -->\n```python\n(.*?)^```$", re.M | re.S)
MAX_LINES = 30

TESTED = {"hf_trainer", "hf_trainer_resume", "hf_optimizers", "lightning", "accelerate", "torch_compile",
          "torch_compile_step", "torchrun_ddp", "torchrun_fsdp2", "torchrun_side_optimizer"}


def recipes() -> dict[str, str]:
    found = RECIPE.findall(DOC.read_text())
    names = [n for n, _ in found]
    assert len(names) == len(set(names)), f"duplicate recipe names in {DOC.name}: {names}"
    return dict(found)


def run_recipes(*names: str, ns: dict | None = None) -> dict:
    """Execute the recipes in order in one namespace (later ones continue earlier ones); return it."""
    ns = {"__name__": "__recipe__"} if ns is None else ns
    blocks = recipes()
    for name in names:
        exec(compile(blocks[name], f"{DOC}:{name}", "exec"), ns)
    return ns


def unwrap(opt):
    """Our optimizer inside a framework's wrapper (accelerate's AcceleratedOptimizer)."""
    return getattr(opt, "optimizer", opt)


def algorithms(opt) -> set[str]:
    return {g["algorithm"] for g in unwrap(opt).param_groups}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in a temporary directory with one torch thread (the machine's cores are shared)."""
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


def test_every_recipe_is_tested_and_short():
    blocks = recipes()
    assert set(blocks) == TESTED
    long = {n: len(b.splitlines()) for n, b in blocks.items() if len(b.splitlines()) > MAX_LINES}
    assert not long, f"recipes longer than {MAX_LINES} lines: {long}"


def test_frameworks_are_imported_only_on_demand():
    code = ("import sys, muonlab, muonlab.integrations, muonlab.distributed\n"
            "assert not {'transformers', 'lightning', 'accelerate'} & set(sys.modules), sys.modules.keys()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})


# ---- Hugging Face Trainer -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory):
    """The hf_trainer recipe, run once (6 steps, checkpoints at 3 and 6) for the tests below."""
    pytest.importorskip("transformers")
    cwd, threads = os.getcwd(), torch.get_num_threads()
    work = tmp_path_factory.mktemp("hf")
    os.chdir(work)
    torch.set_num_threads(1)
    try:
        ns = run_recipes("hf_trainer")
        yield work, ns
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)


def test_hf_trainer_uses_our_optimizer(hf_run):
    work, ns = hf_run
    trainer = ns["trainer"]
    opt = unwrap(trainer.optimizer)
    assert isinstance(opt, muonlab.HybridOptimizer)
    assert algorithms(opt) == {"muon", "adamw"}
    assert isinstance(opt.executor, muonlab.LocalExecutor)
    groups = {g["role"]: g for g in opt.param_groups}
    # GPT-2's Conv1D weights are hidden matrices seen transposed; wte (tied to lm_head) is AdamW's.
    assert groups["hidden"]["algorithm"] == "muon" and groups["hidden"]["matrix_view"] == "transpose"
    assert groups["hidden"]["weight_decay"] == 0.01
    assert "transformer.wte.weight" in groups["embedding"]["param_names"]
    assert groups["embedding"]["algorithm"] == "adamw"
    # The Trainer's scheduler drives every group (linear decay to 0 after max_steps).
    assert unwrap(trainer.lr_scheduler.optimizer) is opt
    assert all(g["initial_lr"] > 0 and g["lr"] == 0 for g in opt.param_groups)
    assert (work / "out" / "checkpoint-3" / "optimizer.pt").is_file()


def test_hf_trainer_resume_matches_the_uninterrupted_run(hf_run):
    work, ns = hf_run
    cwd = os.getcwd()
    os.chdir(work)
    try:
        run_recipes("hf_trainer_resume", ns=ns)  # asserts bitwise equal parameters itself
    finally:
        os.chdir(cwd)
    a, b = unwrap(ns["trainer"].optimizer), unwrap(ns["resumed"].optimizer)
    assert isinstance(b, muonlab.HybridOptimizer)
    for pa, pb in zip((p for g in a.param_groups for p in g["params"]),
                      (p for g in b.param_groups for p in g["params"])):
        for key, value in a.state[pa].items():
            assert torch.equal(value, b.state[pb][key]), key


def test_hf_optimizers_helper(hf_run):
    work, ns = hf_run
    cwd = os.getcwd()
    os.chdir(work)
    try:
        run_recipes("hf_optimizers", ns=dict(ns))
    finally:
        os.chdir(cwd)
    from muonlab.integrations.hf import optimizers

    opt, sched = optimizers(ns["tiny_gpt2"](), "muon")
    assert isinstance(opt, muonlab.HybridOptimizer) and sched is None


# ---- Lightning, accelerate, torch.compile -------------------------------------------------------


def test_lightning(in_tmp):
    pytest.importorskip("lightning")
    ns = run_recipes("lightning")
    trainer = ns["trainer"]
    assert trainer.global_step == 5 and len(ns["model"].losses) == 5
    opt = trainer.optimizers[0]
    assert isinstance(opt, muonlab.HybridOptimizer) and algorithms(opt) == {"muon", "adamw"}
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.last_epoch == 5  # stepped every step
    assert all(g["lr"] < g["initial_lr"] for g in opt.param_groups)


def test_accelerate(in_tmp):
    pytest.importorskip("accelerate")
    from accelerate.state import AcceleratorState

    try:
        ns = run_recipes("accelerate")
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)  # Accelerator state is process-wide
    opt = ns["opt"]
    assert isinstance(opt.optimizer, muonlab.HybridOptimizer)
    assert algorithms(opt) == {"muon", "adamw"}
    # The checkpoint holds our state_dict, and load_state put it back (after one more epoch).
    saved = torch.load(in_tmp / "accel_ckpt" / "optimizer.bin", weights_only=True)
    now = opt.state_dict()
    assert [g["algorithm"] for g in saved["param_groups"]] == [g["algorithm"] for g in now["param_groups"]]
    assert saved["state"].keys() == now["state"].keys() and len(now["state"]) == 6
    for pid, st in saved["state"].items():
        for key, value in st.items():
            assert torch.equal(value, now["state"][pid][key]), (pid, key)


def test_torch_compile(in_tmp):
    ns = run_recipes("torch_compile")
    opt = ns["opt"]
    names = [n for g in opt.param_groups for n in g["param_names"]]
    assert names and not any("_orig_mod" in n for n in names)
    roles = {g["role"]: g for g in opt.param_groups}
    assert roles["hidden"]["param_names"] == ["0.weight", "2.weight"]
    assert roles["output"]["param_names"] == ["4.weight"] and roles["output"]["algorithm"] == "adamw"
    torch._dynamo.reset()


def test_torch_compile_step(in_tmp):
    try:
        ns = run_recipes("torch_compile_step")
    finally:
        torch._dynamo.reset()
    assert len(ns["losses"]) == 3


# ---- torchrun ------------------------------------------------------------------------------------


def run_torchrun(name: str, work: Path, report: str) -> list[dict]:
    """Run recipe ``name`` with 2 processes; ``report``: an expression (of the recipe's variables)
    each rank writes to ``result_<rank>.json``. Returns the ranks' reports."""
    script = work / f"{name}.py"
    script.write_text(recipes()[name] + "\n# ---- added by the test\nimport json as _json, os as _os\n"
                      f"_json.dump({report}, open(f\"result_{{_os.environ['RANK']}}.json\", 'w'))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUONLAB_DIST_TIMEOUT": "60",
           "PYTHONPATH": os.pathsep.join([str(Path(muonlab.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], cwd=work, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = [json.loads((work / f"result_{r}.json").read_text()) for r in range(2)]
    results[0]["stdout"] = proc.stdout
    return results


@pytest.mark.distributed
def test_torchrun_ddp(in_tmp):
    r0, r1 = run_torchrun("torchrun_ddp", in_tmp,
                          '{"executor": type(opt.executor).__name__, "losses": losses}')
    assert r0["executor"] == r1["executor"] == "DistributedExecutor"
    assert "executor: DistributedExecutor" in r0["stdout"] and "losses" in r0["stdout"]
    assert r0["losses"] == r1["losses"]
    # The same script in one process (no torchrun: the helpers do nothing) gives the same losses.
    alone = run_recipes("torchrun_ddp")
    assert isinstance(alone["opt"].executor, muonlab.LocalExecutor)
    torch.testing.assert_close(torch.tensor(r0["losses"]), torch.tensor(alone["losses"]), rtol=1e-5, atol=0)


@pytest.mark.distributed
def test_torchrun_fsdp2(in_tmp):
    r0, r1 = run_torchrun("torchrun_fsdp2", in_tmp,
                          '{"executor": type(opt.executor).__name__, "losses": losses}')
    assert r0["executor"] == r1["executor"] == "DistributedExecutor"
    assert r0["losses"] == r1["losses"]
    # The 2-rank checkpoint loads into one plain process (DCP reshards).
    from muonlab.distributed import load_checkpoint

    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32),
                              torch.nn.Tanh(), torch.nn.Linear(32, 1))
    opt = muonlab.create_optimizer(net, "muon", lr=0.02, adamw={"lr": 1e-2})
    assert load_checkpoint(in_tmp / "fsdp_ckpt", net, opt) == {"step": 5}
    hidden = next(g for g in opt.param_groups if g["role"] == "hidden")
    assert all(opt.state[p]["momentum_buffer"].shape == p.shape for p in hidden["params"])
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.nn.functional.mse_loss(net(x), x.sum(1, keepdim=True)).item() < r0["losses"][-1]


@pytest.mark.distributed
def test_torchrun_side_optimizer(in_tmp):
    report = ('{"executor": type(opt.executor).__name__, '
              '"side": type(probe_opt.executor).__name__ if "probe_opt" in globals() else None, '
              '"params": [p.detach().flatten().tolist() for p in model.parameters()]}')
    r0, r1 = run_torchrun("torchrun_side_optimizer", in_tmp, report)
    assert r0["executor"] == r1["executor"] == "DistributedExecutor"
    assert r0["side"] == "LocalExecutor" and r1["side"] is None  # rank 0 alone stepped it
    assert r0["params"] == r1["params"]  # the replicas stayed in step
