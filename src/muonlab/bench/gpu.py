"""``muonlab bench gpu``: the prepared GPU benchmark, one command, its results as a dated section.

Three parts, each reusing the CPU benchmarks with the device set:

1. **orthogonalization** (:func:`muonlab.bench.orth.run`): muonlab's plain and Gram Newton–Schulz
   with ``ns_compile`` off and on, and each anchor's own bf16 iteration (torch.optim.Muon's,
   heavyball's, pytorch_optimizer's, emerging-optimizers'), bf16, the five default shapes;
2. **optimizer step** (:func:`muonlab.bench.step.run`) on gpt-6x512 and gpt2-small: torch.optim.Muon
   + fused AdamW (the baseline), muonlab (default, ``ns_gram=False``, ``polar_express_4``, each
   with ``ns_compile`` on and off) and the anchors' Muon, interleaved rounds, with accuracy and
   (CUDA) peak memory columns;
3. **tiny-GPT training** (the lab's ``tiny_gpt`` through :func:`muonlab.lab.runner.run_one`):
   muon and polar_express_4 at three learning rates and adamw at its recommended one, a few seeds,
   val loss at the end.

Anchors that do not import are skipped with a note. A time budget (default 450 s, within the
8 minutes the command is sized for on an H100/H200) is checked before every part, parameter set
and training run; what does not fit is skipped with a note, so the section always gets written.
``smoke=True`` shrinks everything (tiny shapes, one round, a few training steps) so the command
can be tried on a CPU in seconds; its figures measure nothing.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import orth, step

BASE_CONTENDERS = ["torch.optim.Muon+AdamW", "muonlab", "muonlab(ns_gram=False)", "muonlab(polar_express_4)",
                   "heavyball.Muon+AdamW", "pytorch_optimizer.Muon+AdamW", "emerging_optimizers.Muon+AdamW"]
COMPILED_CONTENDERS = ["muonlab(ns_compile=True)", "muonlab(polar_express_4, ns_compile=True)"]
PACKAGES = ("heavyball", "pytorch_optimizer", "emerging-optimizers")


@dataclass
class Plan:
    """Sizes of one run of the suite (:data:`FULL` or :data:`SMOKE`)."""

    orth_shapes: list = field(default_factory=lambda: list(orth.DEFAULT_SHAPES))
    orth_reps: int = 5
    orth_min_seconds: float = 0.25
    step_sets: tuple = ("gpt-6x512", "gpt2-small")
    step_rounds: int = 11
    step_warmup: int = 4
    train_knobs: dict = field(default_factory=lambda: {"width": 256})
    train_steps: int = 300
    train_seeds: tuple = (0, 1, 2)
    #: (label, registry name, hyperparameters): the matrix methods at three lrs, AdamW at its own.
    train_configs: tuple = (
        ("muon lr=0.01", "muon", {"lr": 0.01}), ("muon lr=0.02", "muon", {"lr": 0.02}),
        ("muon lr=0.04", "muon", {"lr": 0.04}),
        ("polar_express_4 lr=0.01", "muon", {"lr": 0.01, "orthogonalizer": "polar_express_4"}),
        ("polar_express_4 lr=0.02", "muon", {"lr": 0.02, "orthogonalizer": "polar_express_4"}),
        ("polar_express_4 lr=0.04", "muon", {"lr": 0.04, "orthogonalizer": "polar_express_4"}),
        ("adamw (recommended lr)", "adamw", {}),
    )


FULL = Plan()
SMOKE = Plan(orth_shapes=[(32, 96), (3, 16, 16)], orth_reps=1, orth_min_seconds=0.0, step_sets=("gpt-tiny",),
             step_rounds=1, step_warmup=0,
             train_knobs={"width": 32, "depth": 1, "heads": 2, "context": 16, "batch_size": 4, "eval_batches": 1},
             train_steps=3, train_seeds=(0,),
             train_configs=(("muon", "muon", {}), ("polar_express_4", "muon", {"orthogonalizer": "polar_express_4"}),
                            ("adamw", "adamw", {})))


def machine(device: torch.device) -> dict:
    """What ran the suite: device name, versions, date (UTC)."""
    info = {"device": str(device), "device_name": platform.processor() or platform.machine(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    for pkg in PACKAGES:
        try:
            info[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            info[pkg] = "not installed"
    return info


def run(device: str | torch.device = "cuda", *, smoke: bool = False, compile: bool = True,
        budget_s: float = 450.0, log=print) -> dict:
    """Run the three parts on ``device``; return ``{"machine", "plan", "orth", "step", "train",
    "notes", "seconds"}`` (rows as the CPU benchmarks return them). ``log`` gets one line per stage."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: CUDA is not available here; try the command on a CPU "
                         "with --device cpu --smoke")
    plan = SMOKE if smoke else FULL
    start = time.perf_counter()
    notes: list[str] = []
    out = {"machine": machine(device), "smoke": smoke, "compile": compile, "budget_s": budget_s,
           "orth": [], "step": {}, "train": [], "notes": notes}

    def left() -> float:
        return budget_s - (time.perf_counter() - start)

    compile_modes = (False, True) if compile else (False,)
    log(f"[bench gpu] orthogonalization on {device} ({out['machine']['device_name']})")
    try:
        out["orth"] = orth.run(plan.orth_shapes, dtypes=("bfloat16",), reps=plan.orth_reps, device=device,
                               compile_modes=compile_modes, anchors=True, min_seconds=plan.orth_min_seconds)
    except Exception as e:  # noqa: BLE001 -- one failed part must not cost the others' results
        notes.append(f"orthogonalization: failed ({_why(e)})")
    names = BASE_CONTENDERS + (COMPILED_CONTENDERS if compile else [])
    for paramset in plan.step_sets:
        if left() <= 0:
            notes.append(f"step on {paramset}: skipped, the {budget_s:g} s budget was spent")
            continue
        log(f"[bench gpu] optimizer step on {paramset} ({time.perf_counter() - start:.0f} s so far)")
        try:
            out["step"][paramset] = step.run(paramset, rounds=plan.step_rounds, warmup=plan.step_warmup,
                                             names=names, device=device)
        except Exception as e:  # noqa: BLE001 -- e.g. out of memory on a smaller GPU
            notes.append(f"step on {paramset}: failed ({_why(e)})")
        if device.type == "cuda":
            torch.cuda.empty_cache()  # each contender held its own copy of the set
    out["train"] = _train(plan, device, left, notes, log)
    for paramset, rows in out["step"].items():
        notes += [f"step on {paramset}, {r['contender']}: skipped ({r['skipped']})" for r in rows if "skipped" in r]
    notes += [f"orthogonalization of {r['shape']}, {r['variant']}: skipped ({r['skipped']})"
              for r in out["orth"] if "skipped" in r]
    out["seconds"] = time.perf_counter() - start
    log(f"[bench gpu] done in {out['seconds']:.0f} s")
    return out


def _train(plan: Plan, device: torch.device, left, notes: list[str], log) -> list[dict]:
    """One row per (config, seed): the final val loss of a tiny-GPT run, seed-major order."""
    from ..lab.runner import RunConfig, run_one

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in plan.train_seeds:
            for label, optimizer, hparams in plan.train_configs:
                if left() <= 0:
                    notes.append(f"training {label} seed {seed}: skipped, the time budget was spent")
                    continue
                log(f"[bench gpu] tiny_gpt {label} seed {seed}")
                cfg = RunConfig("tiny_gpt", optimizer, seed=seed, steps=plan.train_steps, knobs=dict(plan.train_knobs),
                                hparams=dict(hparams), eval_every=plan.train_steps, device=str(device))
                try:
                    summary = run_one(cfg, Path(tmp) / f"{label} {seed}", progress=False)
                except Exception as e:  # noqa: BLE001 -- the other runs still count
                    notes.append(f"training {label} seed {seed}: failed ({_why(e)})")
                    continue
                rows.append({"config": label, "seed": seed, "val_loss": summary["val/loss"],
                             "ms_per_step": 1e3 * summary["time/train_s"] / max(summary["step"], 1),
                             "diverged": summary["diverged"]})
    return rows


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:160]


# ---- the markdown section ------------------------------------------------------------------------


def _cmd(res: dict) -> str:
    args = ["muonlab bench gpu"]
    if res["machine"]["device"] != "cuda":
        args.append(f"--device {res['machine']['device']}")
    if res["smoke"]:
        args.append("--smoke")
    if not res["compile"]:
        args.append("--no-compile")
    if res["budget_s"] != 450.0:
        args.append(f"--budget-s {res['budget_s']:g}")
    return " ".join(args)


def format_section(res: dict) -> str:
    """The results as a markdown section (``## GPU benchmarks ...``) for docs/benchmarks.md."""
    m = res["machine"]
    plan = SMOKE if res["smoke"] else FULL
    title = f"## GPU benchmarks: {m['device_name']} ({m['date'][:10]})"
    if res["smoke"]:
        title = f"## Smoke run of `muonlab bench gpu` on {m['device']} ({m['date'][:10]}): tiny sizes, no measurement"
    pkgs = ", ".join(f"{p} {m[p]}" for p in PACKAGES)
    lines = [title, "",
             (f"* Command: `{_cmd(res)}` ({res['seconds']:.0f} s). Machine: {m['device_name']} ({m['device']}), "
             f"torch {m['torch']}, CUDA {m['cuda']}, Python {m['python']}; {pkgs}; heavyball eager. "
             f"Date: {m['date']}."),
             ("* Ratios are of medians against the first row, measured in the same process with interleaved "
             "rounds; σmax/σmin and sin∠polar are the accuracy of each contender's first update on the largest "
             "hidden matrix (1.0 and 0 = exactly orthogonal); peak MiB is the memory one step allocates beyond "
             "the parameters and gradients (state included; CUDA only).")]
    lines += [f"* Note: {n}" for n in res["notes"]]
    for paramset, rows in res["step"].items():
        lines += ["", (f"**Optimizer step, {paramset}** ({plan.step_rounds} interleaved round(s) after "
                  f"{plan.step_warmup} warm-up round(s))"), "",
                  "| contender | median ms | IQR ms | ratio | σmax/σmin | sin∠polar | peak MiB |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            if "skipped" in r:
                continue
            peak = "" if r.get("peak_mib") is None else f"{r['peak_mib']:.0f}"
            lines.append(f"| {r['contender']} | {1e3 * r['median_s']:.3f} | {1e3 * r['iqr_s']:.3f} | "
                         f"{r['ratio']:.2f} | {r['sigma_ratio']:.3f} | {r['polar_sin']:.4f} | {peak} |")
    if res["orth"]:
        lines += ["", ("**Orthogonalization, bf16, 5 steps** (median of ≥ "
                  f"{plan.orth_reps} calls and ≥ {plan.orth_min_seconds:g} s; GFLOP/s counts the plain "
                  "iteration's FLOPs; `+compile` = `ns_compile=True`)"), "",
                  "| shape | variant | ms | GFLOP/s | of bf16 matmul peak | σ range |", "|---|---|---|---|---|---|"]
        for r in res["orth"]:
            if "skipped" not in r:
                lines.append(f"| {r['shape']} | {r['variant']} | {r['ms']:.3f} | {r['gflops']:.0f} | "
                             f"{r['peak_frac']:.0%} | {r['sigma_min']:.3f}–{r['sigma_max']:.3f} |")
        peaks = [r["peak_gflops"] for r in res["orth"] if "peak_gflops" in r]
        if peaks:
            lines.append(f"\nbf16 matmul peak (1024³, measured before each shape): {min(peaks):.0f}–"
                         f"{max(peaks):.0f} GFLOP/s.")
    if res["train"]:
        knobs = " ".join(f"{k}={v}" for k, v in plan.train_knobs.items())
        lines += ["", (f"**Tiny GPT** (`tiny_gpt` {knobs}, {plan.train_steps} steps, the registry's other "
                  "hyperparameters, cosine schedule; val loss at the end)"), "",
                  "| optimizer | val loss per seed | mean ± sd | ms / step |", "|---|---|---|---|"]
        by: dict[str, list[dict]] = {}
        for r in res["train"]:
            by.setdefault(r["config"], []).append(r)
        for label, rs in by.items():
            vals = [r["val_loss"] for r in rs]
            per_seed = ", ".join(f"{r['seed']}: {r['val_loss']:.4f}" + (" (diverged)" if r["diverged"] else "")
                                 for r in rs)
            sd = f"{statistics.stdev(vals):.4f}" if len(vals) > 1 else "—"
            ms = statistics.median(r["ms_per_step"] for r in rs)
            lines.append(f"| {label} | {per_seed} | {statistics.fmean(vals):.4f} ± {sd} | {ms:.1f} |")
    return "\n".join(lines) + "\n"


def append_section(path: str | Path, section: str) -> Path:
    """Append ``section`` to the markdown file ``path`` (created if missing; its folder must exist),
    atomically: the file is either the old text or the old text plus the section."""
    from ..lab.records import write_atomic

    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"--out {str(path)!r}: folder {str(path.parent)!r} does not exist")
    old = path.read_text() if path.exists() else ""
    write_atomic(path, old.rstrip("\n") + ("\n\n" if old.strip() else "") + section)
    return path


def log_stderr(msg: str) -> None:
    """Progress line on stderr (stdout carries the section)."""
    print(msg, file=sys.stderr, flush=True)
