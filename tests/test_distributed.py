"""Distributed execution: 2 gloo processes on CPU against one process on the same global batch.

One spawned pair of processes runs every scenario (each registered matrix method × DDP and FSDP2,
uneven and empty shards, a conv filter, a stack of matrices, DCP save/load across world sizes,
error propagation, and last a dead rank) and reports through a JSON file; the tests below read it,
so process start-up is paid once. A hanging rank gets its own short job. Every worker builds its
single-process references itself, with ``LocalExecutor``: on the global batch, and on gradients
summed like DDP/FSDP2 sum them (see :func:`compare` for why both).
"""

from __future__ import annotations

import datetime
import json
import os
import time
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import muonlab
from muonlab.distributed import (
    CollectiveTimeout,
    DistributedError,
    DistributedExecutor,
    assign_owners,
    auto_executor,
    init_from_env,
    is_main,
    load_checkpoint,
    reduce_mean,
    save_checkpoint,
    shard_batch,
    wrap_model,
)
from muonlab.distributed.comm import chunk_range
from muonlab.optim import LocalExecutor
from muonlab.registry import all_specs, get_spec

WORLD = 2
STEPS = 3
MATRIX_METHODS = [s.name for s in all_specs() if s.matrix]
# Every registered non-default configuration of the matrix methods (momentum forms, norms, ranks,
# rules, modes), plus cautious weight decay: run under FSDP2, where sharded state matters most.
CONFIGS = [f"{s.name}:{c}" for s in all_specs() if s.matrix for c in s.configs]
TOL_FP32 = 1e-3  # fp32 orthogonalization: only reduction-order noise
TOL_BF16 = 2e-2  # bf16 orthogonalization amplifies that noise
# 2 → 1 checkpoints: plain per-matrix state (NorMuon), Python-number state (MiMuon), Dion's Q.
CKPT_METHODS = [n for n in ("normuon", "mimuon", "dion") if n in MATRIX_METHODS]


# ---- the model and one training run -------------------------------------------------------------


class Net(nn.Module):
    """Matrices 8×6, 7×9 (4/3 rows per rank), 5×7 and a 1×7 head (an empty shard on rank 1), a
    3×2×2 conv filter (matrix_view="flatten") and a stack of three 2×3 matrices ("batch")."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 8)
        self.conv = nn.Conv1d(2, 3, kernel_size=2)
        self.b = nn.Linear(9, 7)
        self.c = nn.Linear(7, 5, bias=False)
        self.experts = nn.Parameter(torch.randn(3, 2, 3) * 0.5)
        self.d = nn.Linear(7, 1)

    def forward(self, x):
        h = torch.tanh(self.a(x)).view(-1, 2, 4)
        h = torch.tanh(self.conv(h)).flatten(1)
        h = torch.tanh(self.c(torch.tanh(self.b(h))))
        e = torch.einsum("bn,emn->bm", h[:, :3], self.experts)
        return self.d(torch.cat([h, torch.tanh(e)], dim=1))


DEVICE = torch.device("cpu")  # cuda:<rank> in an NCCL job


def global_batch(step: int, size: int = 8):
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(size, 6, generator=g).to(DEVICE), torch.randn(size, 1, generator=g).to(DEVICE)


def method(name: str) -> str:
    """``"dion:low_rank"`` → ``"dion"`` (a method with one of its registered configurations)."""
    return name.partition(":")[0]


def hyper(name: str, fp32: bool) -> dict:
    spec = get_spec(method(name))
    config = name.partition(":")[2]
    hp = {**spec.recommended, **spec.test_overrides, **(spec.configs[config] if config else {})}
    for k, h in spec.rule.hypers.items():
        if fp32 and k.endswith("dtype") and "float32" in (getattr(h, "choices", None) or ()):
            hp[k] = "float32"
    return hp


def param_groups(model: nn.Module, name: str, fp32: bool = True) -> list[dict]:
    """2-D weights → ``name``, the conv ("flatten") and the stack ("batch") too, vectors → AdamW."""
    hp = hyper(name, fp32)
    named = dict(model.named_parameters())
    mats = [n for n, p in named.items() if p.ndim == 2]
    groups = [{"params": [named[n] for n in mats], "param_names": mats, "algorithm": method(name), **hp},
              {"params": [p for p in named.values() if p.ndim < 2],
               "param_names": [n for n, p in named.items() if p.ndim < 2], "algorithm": "adamw"}]
    for pname, view in (("conv.weight", "flatten"), ("experts", "batch")):
        groups.append({"params": [named[pname]], "param_names": [pname], "algorithm": method(name),
                       "matrix_view": view, **hp})
    return groups


def make(name: str, mode: str, fp32: bool = True, executor=None):
    """A fresh model (seed 0), wrapped for ``mode``, and its optimizer."""
    torch.manual_seed(0)
    model = Net().to(DEVICE)
    if mode == "ddp":
        model = nn.parallel.DistributedDataParallel(model, device_ids=[DEVICE] if DEVICE.type == "cuda" else None)
    elif mode == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for m in (model.a, model.conv, model.b, model.c, model.d):  # experts: the root's
            fully_shard(m)
        fully_shard(model)
    inner = model.module if mode == "ddp" else model
    opt = muonlab.HybridOptimizer(param_groups(inner, name, fp32), algorithm=method(name),
                                  executor=executor if executor is not None else LocalExecutor())
    return model, opt


def train(model, opt, steps: int, start: int = 0, shard: bool = False, split: bool = False) -> None:
    """``steps`` steps on the global batches ``start, ...``; ``shard``: this rank's slice of each.

    ``split`` (one process): the gradient is the mean of the WORLD slices' gradients, the very sums
    DDP and FSDP2 form, so only the executor can make a distributed run differ from it.
    """
    for t in range(start, start + steps):
        x, y = global_batch(t)
        if shard:
            x, y = shard_batch((x, y))
        opt.zero_grad(set_to_none=True)
        if not split:
            (model(x) - y).pow(2).mean().backward()
        else:
            parts = []
            for r in range(WORLD):
                model.zero_grad(set_to_none=True)
                xr, yr = shard_batch((x, y), r, WORLD)
                (model(xr) - yr).pow(2).mean().backward()
                parts.append([p.grad for p in model.parameters()])
            for p, *gs in zip(model.parameters(), *parts):
                p.grad = sum(g / WORLD for g in gs)
        opt.step()


def full_params(model) -> dict[str, torch.Tensor]:
    inner = model.module if hasattr(model, "module") else model
    out = {}
    for n, p in inner.named_parameters():
        t = p.detach()
        out[n] = (t.full_tensor() if hasattr(t, "full_tensor") else t).cpu().clone()
    return out


def max_rel_diff(a: dict, b: dict) -> float:
    """max over tensors of max|a−b| / max|b|: relative to each tensor's scale."""
    return max(((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-12)).item() for k in b)


_REFERENCES: dict[tuple, dict] = {}


def reference(name: str, steps: int, fp32: bool = True, split: bool = False) -> dict:
    key = (name, steps, fp32, split)
    if key not in _REFERENCES:
        model, opt = make(name, "none", fp32)
        train(model, opt, steps, split=split)
        _REFERENCES[key] = full_params(model)
    return _REFERENCES[key]


def compare(params: dict, name: str, steps: int, fp32: bool = True) -> dict:
    """Differences to one process on the global batch ("global") and on split gradients ("split").

    Some methods amplify the last-bit differences of a re-ordered gradient sum far above 1e-3 by
    themselves (Freon/Kaon invert small singular values): one process differs from itself by
    ``floor`` when only the summation order changes. The bound on "global" is then ``4·floor``;
    "split" (same sums as DDP/FSDP2) must always be within the tolerance.
    """
    tol = TOL_FP32 if fp32 else TOL_BF16
    ref = reference(name, steps, fp32)
    ref_split = reference(name, steps, fp32, split=True)
    floor = max_rel_diff(ref_split, ref)
    return {"global": max_rel_diff(params, ref), "split": max_rel_diff(params, ref_split),
            "floor": floor, "tol": tol, "global_tol": max(tol, 4 * floor)}


# ---- the spawned job ----------------------------------------------------------------------------


def _init(rank: int, store_path: str, timeout_s: float = 60.0, backend: str = "gloo") -> None:
    global DEVICE
    torch.set_num_threads(1)
    if backend == "nccl":
        DEVICE = torch.device("cuda", rank)
        torch.cuda.set_device(DEVICE)
    store = dist.FileStore(store_path, WORLD)
    dist.init_process_group(backend, store=store, rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=timeout_s))


def _scenarios(ckpt_in: str, ckpt_out: str):
    """(key, function returning the measured differences) for the spawned job."""

    def ex():
        return DistributedExecutor(timeout=30)

    def equivalence(name, mode, fp32):
        def run():
            model, opt = make(name, mode, fp32, ex())
            train(model, opt, STEPS, shard=True)
            return compare(full_params(model), name, STEPS, fp32)
        return run

    def resume_from_one_process():  # 1 → 2: the test process saved after STEPS steps
        model, opt = make("muon", "fsdp2", executor=ex())
        load_checkpoint(ckpt_in, model, opt)
        train(model, opt, STEPS, start=STEPS, shard=True)
        return compare(full_params(model), "muon", 2 * STEPS)

    def save_for_one_process(name):  # 2 → 1: the test process loads and continues
        def run():
            model, opt = make(name, "fsdp2", executor=ex())
            train(model, opt, STEPS, shard=True)
            save_checkpoint(f"{ckpt_out}_{name}", model, opt, extra={"step": STEPS})
            return compare(full_params(model), name, STEPS)
        return run

    def resume_same_world(name, mode):
        def run():
            model, opt = make(name, mode, executor=ex())
            train(model, opt, STEPS, shard=True)
            path = f"{ckpt_out}_{name}_{mode}_resume"
            save_checkpoint(path, model, opt)
            model, opt = make(name, mode, executor=ex())
            load_checkpoint(path, model, opt)
            train(model, opt, STEPS, start=STEPS, shard=True)
            return compare(full_params(model), name, 2 * STEPS)
        return run

    def auto_executor_and_routing():  # create_optimizer picks the DistributedExecutor for a DDP model
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(Net().to(DEVICE))
        opt = muonlab.create_optimizer(model, "muon", compute_dtype="float32", output="d")
        assert isinstance(opt.executor, DistributedExecutor), opt.executor
        assert isinstance(muonlab.create_optimizer(model.module, "muon").executor, LocalExecutor)
        names = [n for g in opt.param_groups for n in g["param_names"]]
        assert "a.weight" in names and not any(n.startswith("module.") for n in names), names
        train(model, opt, STEPS, shard=True)
        torch.manual_seed(0)
        ref = Net().to(DEVICE)
        ref_opt = muonlab.create_optimizer(ref, "muon", compute_dtype="float32", executor=LocalExecutor())
        train(ref, ref_opt, STEPS)
        d = max_rel_diff(full_params(model), full_params(ref))
        return {"global": d, "split": d, "floor": 0.0, "tol": TOL_FP32, "global_tol": TOL_FP32}

    def unsynchronised_replicas():  # no DDP: each rank's copy sees only its slice
        model, opt = make("muon", "none", executor=ex())
        try:
            train(model, opt, 1, shard=True)
        except DistributedError as e:
            assert "differ across ranks" in str(e), e
            return {"global": 0.0, "split": 0.0, "floor": 0.0, "tol": 0.0, "global_tol": 0.0}
        raise AssertionError("diverged replicas went unnoticed")

    def owner_raises():  # a rule error on one rank makes every rank raise, none waits
        rule = get_spec("muon").rule
        model, opt = make("muon", "ddp", executor=ex())

        def broken(X, states, group):
            raise ValueError("broken matrix_fn")
        rule.matrix_fn = broken  # this process only; both ranks do it, only owners call it
        try:
            train(model, opt, 1, shard=True)
        except (ValueError, DistributedError) as e:
            msg = f"{type(e).__name__}: {e}"
        finally:
            del rule.matrix_fn
        assert "broken matrix_fn" in msg or "raised in" in msg, msg
        return {"global": 0.0, "split": 0.0, "floor": 0.0, "tol": 0.0, "global_tol": 0.0}

    def verify_schedule():  # which calls check, under each policy (3 call sites: main, conv, experts)
        from muonlab.distributed import executor as ex_mod

        calls = []
        original = ex_mod._Call._verify

        def counting(self, reason="always"):
            calls[-1] += 1
            return original(self, reason)

        ex_mod._Call._verify = counting
        try:
            counts = {}
            for policy in (True, False, "auto"):
                model, opt = make("muon", "ddp", executor=DistributedExecutor(
                    timeout=30, verify=policy, verify_first=3, verify_every=4))
                calls.clear()
                for t in range(9):
                    calls.append(0)
                    train(model, opt, 1, start=t, shard=True)
                counts[str(policy)] = list(calls)
        finally:
            ex_mod._Call._verify = original
        return {"global": 0.0, "split": 0.0, "floor": 0.0, "tol": 0.0, "global_tol": 0.0, "counts": counts}

    def divergence_after_warmup(trigger):
        """Replicas equal for 2 steps (every rank trains on the global batch), unsynchronised from
        step 3 on (each rank its own slice, no DDP): under "auto" with verify_first=2 the error comes
        at the periodic check (every 5: step 5), or at step 4 when c.weight, without a gradient
        until then, gets one on every rank (a changed set of matrices)."""
        model, opt = make("muon", "none", executor=DistributedExecutor(
            timeout=30, verify="auto", verify_first=2, verify_every=5 if trigger == "periodic" else 100))
        for t in range(8):
            x, y = global_batch(t)
            if t >= 2:
                x, y = shard_batch((x, y))
            opt.zero_grad(set_to_none=True)
            (model(x) - y).pow(2).mean().backward()
            if trigger == "bucket" and t < 3:
                model.c.weight.grad = None
            try:
                opt.step()
            except DistributedError as e:
                assert "differ across ranks" in str(e), e
                return {"global": 0.0, "split": 0.0, "floor": 0.0, "tol": 0.0, "global_tol": 0.0,
                        "caught_at": t + 1}
        raise AssertionError("diverged replicas went unnoticed for 8 steps")

    out = [("auto", auto_executor_and_routing), ("verify/unsynced", unsynchronised_replicas),
           ("verify/owner-raises", owner_raises), ("verify/schedule", verify_schedule),
           ("verify/late-periodic", lambda: divergence_after_warmup("periodic")),
           ("verify/late-bucket", lambda: divergence_after_warmup("bucket"))]
    for name in MATRIX_METHODS:
        for mode in ("ddp", "fsdp2"):
            out.append((f"{name}/{mode}", equivalence(name, mode, True)))
    for name in CONFIGS:
        out.append((f"{name}/fsdp2", equivalence(name, "fsdp2", True)))
    out.append(("muon/fsdp2/bf16", equivalence("muon", "fsdp2", False)))
    out.append(("muon/ddp/bf16", equivalence("muon", "ddp", False)))
    out.append(("dcp/1to2", resume_from_one_process))
    for name in CKPT_METHODS:
        out.append((f"dcp/2to1/{name}", save_for_one_process(name)))
    out.append(("dcp/resume/mimuon/ddp", resume_same_world("mimuon", "ddp")))
    out.append(("dcp/resume/dion/fsdp2", resume_same_world("dion", "fsdp2")))
    return out


def _equivalence_job(rank: int, store_path: str, out_path: str, ckpt_in: str, ckpt_out: str,
                     backend: str = "gloo", only: tuple[str, ...] = ()) -> None:
    _init(rank, store_path, backend=backend)
    results = {}
    for key, fn in _scenarios(ckpt_in, ckpt_out):
        if only and not key.startswith(only):
            continue
        t0 = time.perf_counter()
        try:
            results[key] = fn()
        except Exception as e:  # both ranks raise together (the executor's header), so go on
            results[key] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]}
        results[key]["seconds"] = time.perf_counter() - t0
    if backend == "gloo":
        results["dies"] = _fail_during_step(rank, "dies")  # last: rank 1 exits here
    if rank == 0:
        Path(out_path).write_text(json.dumps(results, indent=1))
    os._exit(0)  # the process group is unusable now: do not tear it down with a dead peer


def _fail_during_step(rank: int, failure: str) -> dict:
    """Rank 1 dies or hangs after backward; rank 0's step must raise, soon and clearly."""
    model, opt = make("muon", "ddp", executor=DistributedExecutor(timeout=2.0))
    x, y = shard_batch(global_batch(0))
    (model(x) - y).pow(2).mean().backward()
    if rank == 1:
        if failure == "dies":
            os._exit(3)
        time.sleep(120)  # hangs; the test process ends it
    t0 = time.perf_counter()
    try:
        opt.step()
        report = {"error": None}
    except Exception as e:
        report = {"error": type(e).__name__, "message": str(e), "timeout": isinstance(e, CollectiveTimeout),
                  "distributed": isinstance(e, DistributedError)}
    report["seconds"] = time.perf_counter() - t0
    return report


def _spawn(fn, args: tuple, wait_s: float = 120) -> None:
    """Start WORLD processes, wait for rank 0, then end the others (only these, by handle)."""
    ctx = mp.start_processes(fn, args=args, nprocs=WORLD, join=False, start_method="spawn")
    try:
        ctx.processes[0].join(wait_s)
        assert ctx.processes[0].exitcode == 0, f"rank 0 exited with {ctx.processes[0].exitcode}"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
            p.join(10)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    ckpt_in, ckpt_out, out = str(tmp / "ckpt_1proc"), str(tmp / "ckpt_2proc"), tmp / "results.json"
    model, opt = make("muon", "none")  # 1 → 2: written by this (single) process, no process group
    train(model, opt, STEPS)
    save_checkpoint(ckpt_in, model, opt)
    _spawn(_equivalence_job, (str(tmp / "store"), str(out), ckpt_in, ckpt_out))
    return json.loads(out.read_text()), ckpt_out


def _check(result: dict) -> None:
    assert "error" not in result, result["error"] + "\n" + result.get("trace", "")
    assert result["split"] <= result["tol"], result  # the executor: same sums, same result
    assert result["global"] <= result["global_tol"], result  # the criterion


@pytest.mark.distributed
@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
@pytest.mark.parametrize("name", MATRIX_METHODS)
def test_matches_single_process(job, name, mode):
    """k steps on 2 ranks (uneven, empty shards; a conv) == one process on the global batch."""
    _check(job[0][f"{name}/{mode}"])


@pytest.mark.distributed
@pytest.mark.parametrize("name", CONFIGS)
def test_configurations_match_single_process(job, name):
    """Each registered configuration under FSDP2 == one process on the global batch."""
    _check(job[0][f"{name}/fsdp2"])


@pytest.mark.distributed
@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_matches_single_process_bf16(job, mode):
    _check(job[0][f"muon/{mode}/bf16"])


@pytest.mark.distributed
def test_create_optimizer_picks_distributed_executor(job):
    _check(job[0]["auto"])


@pytest.mark.distributed
@pytest.mark.parametrize("key", ["verify/unsynced", "verify/owner-raises"])
def test_errors_reach_every_rank(job, key):
    """Unsynchronised replicas and a rule raising on its owner rank: a clear error, no hang."""
    _check(job[0][key])


@pytest.mark.distributed
def test_verify_policies_check_when_they_say(job):
    """verify=True checks every call, False never, "auto" (first 3, every 4) calls 1–4 and 8 of
    each of the 3 call sites (the main group, the conv's and the stack's)."""
    result = job[0]["verify/schedule"]
    _check(result)
    assert result["counts"] == {"True": [3] * 9, "False": [0] * 9, "auto": [3, 3, 3, 3, 0, 0, 0, 3, 0]}


@pytest.mark.distributed
@pytest.mark.parametrize("trigger,step", [("periodic", 5), ("bucket", 4)])
def test_divergence_after_warmup_is_caught(job, trigger, step):
    """Replicas that diverge from step 3, after "auto"'s first checks: caught at the next periodic
    check, or earlier when the set of matrices changes."""
    result = job[0][f"verify/late-{trigger}"]
    _check(result)
    assert result["caught_at"] == step, result


def test_verify_policy_is_checked_before_anything_else():
    for kw, bad in (({"verify": "sometimes"}, "sometimes"), ({"verify_every": 0}, "verify_every=0"),
                    ({"verify_first": -1}, "verify_first=-1")):
        with pytest.raises(ValueError, match=bad):
            DistributedExecutor(**kw)


@pytest.mark.distributed
def test_checkpoint_one_to_two_ranks(job):
    _check(job[0]["dcp/1to2"])


@pytest.mark.distributed
@pytest.mark.parametrize("key", ["dcp/resume/mimuon/ddp", "dcp/resume/dion/fsdp2"])
def test_checkpoint_resume_same_world(job, key):
    _check(job[0][key])


@pytest.mark.distributed
@pytest.mark.parametrize("name", CKPT_METHODS)
def test_checkpoint_two_ranks_to_one(job, name):
    _check(job[0][f"dcp/2to1/{name}"])
    model, opt = make(name, "none")
    extra = load_checkpoint(f"{job[1]}_{name}", model, opt)
    assert extra == {"step": STEPS}
    train(model, opt, STEPS, start=STEPS)
    _check(compare(full_params(model), name, 2 * STEPS))


@pytest.mark.gpu
@pytest.mark.distributed
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL with 2 ranks needs 2 GPUs")
def test_nccl_matches_single_process(tmp_path):
    """The same scenarios on 2 GPUs with NCCL (not run on the CPU-only CI machine)."""
    out = tmp_path / "results.json"
    only = ("muon/", "normuon/", "dion/", "mimuon/", "adago/", "dcp/resume", "verify/")
    _spawn(_equivalence_job, (str(tmp_path / "store"), str(out), "", str(tmp_path / "ckpt"), "nccl", only))
    for key, result in json.loads(out.read_text()).items():
        _check(result)


# ---- a rank that hangs or dies -----------------------------------------------------------------


def _hang_job(rank: int, store_path: str, out_path: str) -> None:
    _init(rank, store_path, timeout_s=30)
    report = _fail_during_step(rank, "hangs")
    Path(out_path).write_text(json.dumps(report))
    os._exit(0)


@pytest.mark.distributed
def test_hanging_rank_raises_timeout(tmp_path):
    out = tmp_path / "report.json"
    _spawn(_hang_job, (str(tmp_path / "store"), str(out)), wait_s=60)
    report = json.loads(out.read_text())
    assert report["timeout"], report
    assert report["seconds"] < 10, report
    assert "MUONLAB_DIST_TIMEOUT" in report["message"] and "rank 0 of 2" in report["message"]


@pytest.mark.distributed
def test_dead_rank_raises_clear_error(job):
    report = job[0]["dies"]
    assert report["distributed"], report
    assert report["seconds"] < 10, report
    assert "died" in report["message"] or "MUONLAB_DIST_TIMEOUT" in report["message"], report


# ---- an optimizer stepped on one rank only ------------------------------------------------------


def _side_optimizer_job(rank: int, store_path: str, out_path: str) -> None:
    """After init_process_group, rank 0 steps side optimizers (an EMA/eval copy) while rank 1
    waits in a barrier: they must step locally, never join a collective."""
    _init(rank, store_path, timeout_s=60)
    report = {}
    if rank == 0:
        t0 = time.perf_counter()
        torch.manual_seed(0)
        side = Net()
        opts = [muonlab.create_optimizer(side, "muon"), muonlab.Muon([side.b.weight, side.c.weight], lr=0.02),
                muonlab.HybridOptimizer([side.a.weight], "normuon")]
        for opt in opts:
            for _ in range(3):
                x, y = global_batch(0)
                opt.zero_grad()
                (side(x) - y).pow(2).mean().backward()
                opt.step()
        report = {"seconds": time.perf_counter() - t0, "executors": [repr(o.executor) for o in opts],
                  "summary": muonlab.routing_summary(opts[0]), "repr": repr(opts[1])}
    dist.barrier()
    if rank == 0:
        Path(out_path).write_text(json.dumps(report))
    os._exit(0)


@pytest.mark.distributed
def test_side_optimizer_on_one_rank_steps_locally(tmp_path):
    out = tmp_path / "report.json"
    _spawn(_side_optimizer_job, (str(tmp_path / "store"), str(out)), wait_s=60)
    report = json.loads(out.read_text())
    assert report["seconds"] < 20, report
    assert all(r.startswith("LocalExecutor(") for r in report["executors"]), report
    assert "executor: LocalExecutor(" in report["summary"] and "executor: LocalExecutor(" in report["repr"]


# ---- pieces that need no process group ---------------------------------------------------------


def test_owner_assignment_balances_cost_deterministically():
    costs = [8.0, 7.0, 6.0, 5.0, 4.0, 1.0, 1.0]
    owners, loads = assign_owners(costs, 2)
    assert owners == assign_owners(costs, 2)[0]
    assert max(loads) - min(loads) <= max(costs) and sum(loads) == sum(costs)
    assert owners[:2] == [0, 1]  # the two largest go to different ranks
    owners, loads = assign_owners([5.0], 3)
    assert owners == [0] and loads == [5.0, 0.0, 0.0]


@pytest.mark.parametrize("size", [0, 1, 5, 7, 8])
def test_chunks_follow_torch_chunk(size):
    """Uneven and empty shards: the sizes DTensor's Shard and FSDP2 use."""
    chunks = list(torch.arange(size).chunk(WORLD)) if size else []
    for r in range(WORLD):
        start, length = chunk_range(size, WORLD, r)
        expect = chunks[r].tolist() if r < len(chunks) else []
        assert list(range(start, start + length)) == expect


def test_auto_executor_is_local_without_process_group():
    assert type(auto_executor()) is LocalExecutor
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedExecutor()


def test_launch_helpers_in_one_process(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = init_from_env(device="cpu")
    assert (info.rank, info.world_size, info.distributed) == (0, 1, False)
    assert not dist.is_initialized() and is_main() and reduce_mean(2.5) == 2.5
    model = nn.Linear(2, 2)
    assert wrap_model(model, "fsdp2") is model
    with pytest.raises(ValueError, match="strategy"):
        wrap_model(model, "zero3")


TORCHRUN_SCRIPT = """
import torch, muonlab
from muonlab.distributed import (DistributedExecutor, init_from_env, is_main, reduce_mean, shard_batch,
                                 shutdown, wrap_model)
info = init_from_env(device="cpu")
torch.manual_seed(0)
model = wrap_model(torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 7),
                                       torch.nn.Tanh(), torch.nn.Linear(7, 1)), "{strategy}")
opt = muonlab.create_optimizer(model, "muon", output="4")  # the wrapped model: shared matrix work
assert isinstance(opt.executor, DistributedExecutor)
g = torch.Generator().manual_seed(0)
for step in range(3):
    x, y = torch.randn(8, 6, generator=g), torch.randn(8, 1, generator=g)
    xs, ys = shard_batch((x, y))
    loss = (model(xs) - ys).pow(2).mean()
    loss.backward(); opt.step(); opt.zero_grad()
    mean = reduce_mean(loss.item())
    if is_main():
        print("step", step, "loss", round(mean, 6), "world", info.world_size, flush=True)
shutdown()
"""


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_torchrun_launch_helpers(tmp_path, strategy):
    """``torchrun --standalone --nproc_per_node=2``: helpers, auto executor, records on rank 0."""
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(TORCHRUN_SCRIPT.format(strategy=strategy))
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(muonlab.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("step")]
    assert len(lines) == 3 and all(ln.endswith("world 2") for ln in lines), proc.stdout


def test_shard_batch():
    x = torch.arange(8).view(4, 2)
    assert torch.equal(shard_batch(x, 1, 2), x[2:])
    assert shard_batch({"x": x, "y": (x, x)}, 0, 2)["y"][1].shape == (2, 2)
    assert shard_batch(x) is x
    with pytest.raises(ValueError, match="not divisible"):
        shard_batch(x, 0, 3)
