"""Learning-rate sweep behind every method's ``recommended`` defaults (docs/defaults.md).

Two small CPU workloads, every registered method through :func:`muonlab.create_optimizer`:

* **A, ``mlp_regression``**: ``torch.manual_seed(seed)``; 256 points ``X ~ N(0, I_16)``; targets
  ``y = tanh(X W)`` with a random linear map ``W ~ N(0, 1)`` of shape 16×4 drawn right after ``X``
  (preactivations of std 4, so the targets are saturated, nearly ±1); student ``Linear(16, 64) →
  tanh → Linear(64, 64) → tanh → Linear(64, 4)`` (torch's default init) drawn right after ``W``;
  full-batch MSE, 150 steps. Metric: final loss / initial loss (the loss at step 0). "Halves the
  loss" means metric < 0.5. Two target variants are used as checks only: a smooth random teacher
  network ``Linear(16, 32) → tanh → Linear(32, 4)`` (as in tests/test_contract.py) and
  high-frequency ``sin(X W)``.
* **B, ``mlp_digits``**: scikit-learn's 8×8 digits (muonlab.lab.data.digits: 1400 train / 397
  validation, fixed split); ``torch.manual_seed(seed)``; ``Linear(64, 128) → GELU →
  Linear(128, 128) → GELU → Linear(128, 10)``; 300 steps of minibatches of 64 drawn with
  replacement from a generator seeded with ``seed``. Metric: validation cross-entropy at the end.

Routing is create_optimizer's: the first two Linear weights are ``hidden`` (the method), the last
Linear is the ``output`` head and the biases are ``vector`` (both AdamW); ``adamw`` and ``sgd``
get every parameter. The method's other hyperparameters stay at their recommended values.

Stages:

1. AdamW: the lr of ``adamw`` as the main method, and the lr of the AdamW side of Muon
   (``create_optimizer(model, "muon", adamw={"lr": ...})``, Muon at its recommended lr), on both
   workloads. The AdamW lr proposal is chosen by the rule below over these four curves.
2. Every other method's lr, with the AdamW side at the lr proposed in stage 1 (the proposal changes
   ``get_spec("adamw").recommended``, which is also every matrix method's AdamW side).
3. Checks: every method with its *current* defaults as shipped (sweep seeds), and with the
   proposed defaults on 5 held-out seeds (A and B) and on the two A target variants (sweep seeds).

Grid: the lattice {1, 2, 3, 5, 7} × 10^k (neighbour ratio ≤ 2), 9 points centred on the current
recommended lr; while the best median lr of either workload, or the chosen lr, is on a grid edge
that edge grows by 2 lattice points (at most 8 times per side; not past a point where every run
diverged). Each point: ``--seeds`` seeds (default 3), median metric. A run whose loss becomes
non-finite (or exceeds 1e4 × its initial loss) scores +inf.

Choice rule (per method; for AdamW over its four curves): the score of an lr on a curve is the
fraction of the best log-reduction of the metric on that curve that the lr achieves,
``log(m0 / m(lr)) / log(m0 / m_best)`` with m0 the metric of the untrained model (A: 1; B: the
initial validation cross-entropy, median over seeds). Among the lrs whose workload-A metric is
< 0.5 on every sweep seed, take the one that maximises the worst score over the curves.

    python3 benchmarks/default_sweep.py                       # all methods, ~18 min on 1 thread
    python3 benchmarks/default_sweep.py --methods muon,adamw  # a subset

Writes benchmarks/results/default_sweep.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

torch.set_num_threads(1)

import muonlab  # noqa: E402
from muonlab.routing import routing_summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MANTISSAS = (1, 2, 3, 5, 7)
DIVERGED = float("inf")
HELD_OUT_SEEDS = (100, 101, 102, 103, 104)


# --------------------------------------------------------------------------------------- lattice
def lattice_lr(i: int) -> float:
    e, m = divmod(i, len(MANTISSAS))
    return float(f"{MANTISSAS[m]}e{e}")


def lattice_index(lr: float) -> int:
    """Index of the lattice point nearest to lr in log space."""
    guess = int(round(math.log10(lr) * len(MANTISSAS)))
    cands = range(guess - 3, guess + 4)
    return min(cands, key=lambda i: abs(math.log(lattice_lr(i) / lr)))


# ------------------------------------------------------------------------------------- workloads
def _build(name: str, model: nn.Module, method: str, hp: dict, adamw: dict | None):
    spec = muonlab.get_spec(name=method)
    kw = {**spec.test_overrides, **hp}
    return muonlab.create_optimizer(model, method, adamw=adamw, **kw)


def _finite_or_inf(x: float, ref: float) -> bool:
    return math.isfinite(x) and x <= 1e4 * ref


A_TARGETS = {
    # y = tanh(X W), W ~ N(0, 1) of shape 16x4: preactivations of std 4, so the targets are
    # saturated, nearly +-1 (the main workload A).
    "tanh_linear": lambda X: torch.tanh(X @ torch.randn(16, 4)),
    # checks only: a smooth random teacher network (torch's default init, like tests/test_contract)
    "teacher_net": lambda X: nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4))(X),
    # checks only: high-frequency targets sin(X W), W ~ N(0, 1)
    "sin_linear": lambda X: torch.sin(X @ torch.randn(16, 4)),
}


def run_a(method: str, hp: dict, adamw: dict | None, seed: int, steps: int = 150,
          show_routing: bool = False, target: str = "tanh_linear") -> dict:
    torch.manual_seed(seed)
    X = torch.randn(256, 16)
    with torch.no_grad():
        y = A_TARGETS[target](X)
    model = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 4))
    opt = _build("A", model, method, hp, adamw)
    if show_routing:
        print("workload A routing (create_optimizer(model, 'muon')):\n" + routing_summary(opt) + "\n")
    first = None
    for _ in range(steps):
        loss = (model(X) - y).pow(2).mean()
        v = loss.item()
        first = v if first is None else first
        if not _finite_or_inf(v, first):
            return {"metric": DIVERGED, "initial": first}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = (model(X) - y).pow(2).mean().item()
    if not _finite_or_inf(final, first):
        return {"metric": DIVERGED, "initial": first}
    return {"metric": final / first, "initial": first}


_DIGITS = None


def _digits():
    global _DIGITS
    if _DIGITS is None:
        from muonlab.lab.data import digits

        s = digits(torch.device("cpu"))
        _DIGITS = {k: (x.reshape(len(x), 64), t) for k, (x, t) in s.items()}
    return _DIGITS


def run_b(method: str, hp: dict, adamw: dict | None, seed: int, steps: int = 300,
          batch: int = 64, show_routing: bool = False) -> dict:
    data = _digits()
    Xtr, ytr = data["train"]
    Xva, yva = data["val"]
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 10))
    opt = _build("B", model, method, hp, adamw)
    if show_routing:
        print("workload B routing (create_optimizer(model, 'muon')):\n" + routing_summary(opt) + "\n")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        initial = F.cross_entropy(model(Xva), yva).item()
    first = None
    for _ in range(steps):
        idx = torch.randint(len(Xtr), (batch,), generator=gen)
        loss = F.cross_entropy(model(Xtr[idx]), ytr[idx])
        v = loss.item()
        first = v if first is None else first
        if not _finite_or_inf(v, first):
            return {"metric": DIVERGED, "initial": initial, "acc": 0.0}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = model(Xva)
        ce = F.cross_entropy(logits, yva).item()
        acc = (logits.argmax(-1) == yva).float().mean().item()
    if not math.isfinite(ce):
        return {"metric": DIVERGED, "initial": initial, "acc": 0.0}
    return {"metric": ce, "initial": initial, "acc": acc}


WORKLOADS = {"A": run_a, "B": run_b,
             "A_teacher_net": lambda *a: run_a(*a, target="teacher_net"),
             "A_sin_linear": lambda *a: run_a(*a, target="sin_linear")}
A_CHECKS = ("A_teacher_net", "A_sin_linear")


# ------------------------------------------------------------------------------------ the sweep
def median(xs):
    return statistics.median(xs)


class Curve:
    """Runs of one (method, which lr, workload) over a growing lattice grid; results cached."""

    def __init__(self, key: str, workload: str, make, seeds):
        self.key, self.workload, self.make, self.seeds = key, workload, make, list(seeds)
        self.points: dict[int, list[dict]] = {}

    def ensure(self, idx: int) -> None:
        if idx in self.points:
            return
        lr = lattice_lr(idx)
        method, hp, adamw = self.make(lr)
        self.points[idx] = [WORKLOADS[self.workload](method, hp, adamw, s) for s in self.seeds]

    def med(self, idx: int) -> float:
        return median([r["metric"] for r in self.points[idx]])

    def worst(self, idx: int) -> float:
        return max(r["metric"] for r in self.points[idx])

    def m0(self) -> float:
        if self.workload == "A":
            return 1.0
        return median([r["initial"] for rs in self.points.values() for r in rs])

    def best(self) -> int:
        return min(sorted(self.points), key=self.med)

    def score(self, idx: int) -> float:
        """Fraction of the curve's best log-reduction of the metric that lr idx achieves."""
        m0, mb, m = self.m0(), self.med(self.best()), self.med(idx)
        if not math.isfinite(m):
            return -math.inf
        den = math.log(m0 / mb)
        return math.log(m0 / m) / den if den > 0 else 0.0

    def all_diverged(self, idx: int) -> bool:
        return all(not math.isfinite(r["metric"]) for r in self.points[idx])


def choose(curves: list[Curve], grid: list[int], checks: list[Curve] = ()) -> tuple[int | None, dict]:
    """The lr of ``grid`` with the best worst-case score over ``curves`` among those that halve
    every A-type run (main A curves and the A-variant ``checks``, run lazily at candidates only)."""
    scores = {i: min(c.score(i) for c in curves) for i in grid}
    for i in sorted(grid, key=lambda i: (-scores[i], i)):
        if not math.isfinite(scores[i]):
            break
        for c in checks:
            c.ensure(i)
        if all(c.worst(i) < 0.5 for c in list(curves) + list(checks) if c.workload.startswith("A")):
            return i, scores
    return None, scores


def sweep(curves: list[Curve], centre: int, log, checks: list[Curve] = (),
          max_ext: int = 8) -> tuple[list[int], int | None, dict]:
    lo, hi = centre - 4, centre + 4
    ext = {"low": 0, "high": 0}
    while True:
        for i in range(lo, hi + 1):
            for c in curves:
                c.ensure(i)
        grid = list(range(lo, hi + 1))
        chosen, scores = choose(curves, grid, checks)
        edges_hit = {c.best() for c in curves} | ({chosen} if chosen is not None else set())
        grow_lo = lo in edges_hit and ext["low"] < max_ext and not all(c.all_diverged(lo) for c in curves)
        grow_hi = hi in edges_hit and ext["high"] < max_ext and not all(c.all_diverged(hi) for c in curves)
        if not (grow_lo or grow_hi):
            return grid, chosen, scores
        if grow_lo:
            lo -= 2
            ext["low"] += 1
            log(f"    extending grid down to {lattice_lr(lo):g}")
        if grow_hi:
            hi += 2
            ext["high"] += 1
            log(f"    extending grid up to {lattice_lr(hi):g}")


def fmt(x: float) -> str:
    if x is None:
        return "-"
    if not math.isfinite(x):
        return "diverged"
    return f"{x:.3g}" if x >= 1e-3 else f"{x:.2e}"


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="all", help="comma-separated registry names (default: all)")
    ap.add_argument("--seeds", type=int, default=3, help="sweep seeds per grid point (0..n-1)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "default_sweep.json"))
    args = ap.parse_args()

    cmd = "python3 " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    print(f"command: {cmd}")
    t_start = time.time()
    meta = {"command": cmd, "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": lscpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "muonlab_commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                             capture_output=True, text=True).stdout.strip(),
            "src_uncommitted_changes": bool(subprocess.run(
                ["git", "-C", str(ROOT), "status", "--porcelain", "src"],
                capture_output=True, text=True).stdout.strip()),
            "src_diff_sha1": __import__("hashlib").sha1(subprocess.run(
                ["git", "-C", str(ROOT), "diff", "HEAD", "--", "src"],
                capture_output=True).stdout).hexdigest()[:12]}
    print(f"machine: {meta['cpu']}, {meta['cores']} cores, torch {meta['torch']} ({meta['torch_threads']} thread)")
    seeds = list(range(args.seeds))
    names = muonlab.available_optimizers() if args.methods == "all" else args.methods.split(",")
    current = {n: dict(muonlab.get_spec(n).recommended) for n in names + ["adamw", "muon"]}
    print(f"seeds {seeds}; methods: {', '.join(names)}\n")

    run_a("muon", {}, None, 0, steps=1, show_routing=True)
    run_b("muon", {}, None, 0, steps=1, show_routing=True)

    def log(msg):
        print(msg, flush=True)

    results: dict = {"meta": meta, "config": {
        "seeds": seeds, "held_out_seeds": list(HELD_OUT_SEEDS), "lattice": list(MANTISSAS),
        "workload_A": ("mlp_regression 16-64-64-4 tanh, 256 points X~N(0,I), targets tanh(X W) W~N(0,1) 16x4, "
                       "MSE, 150 full-batch steps; metric final/initial loss"),
        "workload_B": "digits MLP 64-128-128-10 GELU, batch 64, 300 steps; metric validation cross-entropy"},
        "current": current, "sweeps": {}, "proposed": {}}

    def dump(cs):
        return {c.key: {"workload": c.workload, "m0": c.m0(), "best_lr": lattice_lr(c.best()),
                        "best_median": c.med(c.best()),
                        "points": {lattice_lr(i): {"median": c.med(i), "runs": c.points[i]}
                                   for i in sorted(c.points)}} for c in cs}

    def record(key, curves, checks, grid, chosen, scores, swept, fixed):
        results["sweeps"][key] = {"checks": dump(checks),
            "swept": swept, "fixed": fixed, "grid": [lattice_lr(i) for i in grid],
            "chosen_lr": lattice_lr(chosen) if chosen is not None else None,
            "min_score": {lattice_lr(i): scores[i] for i in grid},
            "curves": dump(curves)}

    # ---- stage 1: AdamW, as the main method and as Muon's AdamW side
    adamw_rec = current["adamw"]
    proposed_adamw_lr = adamw_rec["lr"]
    if "adamw" in names:
        t0 = time.time()
        log("stage 1: adamw (main) and Muon's AdamW side")
        curves = [
            Curve("adamw/A", "A", lambda lr: ("adamw", {"lr": lr}, None), seeds),
            Curve("adamw/B", "B", lambda lr: ("adamw", {"lr": lr}, None), seeds),
            Curve("muon-adamw-side/A", "A", lambda lr: ("muon", {}, {"lr": lr}), seeds),
            Curve("muon-adamw-side/B", "B", lambda lr: ("muon", {}, {"lr": lr}), seeds),
        ]
        checks = [Curve(f"adamw/{w}", w, lambda lr: ("adamw", {"lr": lr}, None), seeds) for w in A_CHECKS]
        checks += [Curve(f"muon-adamw-side/{w}", w, lambda lr: ("muon", {}, {"lr": lr}), seeds)
                   for w in A_CHECKS]
        grid, chosen, scores = sweep(curves, lattice_index(adamw_rec["lr"]), log, checks)
        record("adamw", curves, checks, grid, chosen, scores, "lr (adamw main and muon's adamw= side)",
               {"muon": current["muon"]})
        if chosen is not None:
            proposed_adamw_lr = lattice_lr(chosen)
        for c in curves:
            log(f"  {c.key:20s} best lr {lattice_lr(c.best()):g} -> {fmt(c.med(c.best()))}")
        log(f"  chosen AdamW lr: {fmt(lattice_lr(chosen)) if chosen is not None else 'none halves A'}"
            f"  ({time.time() - t0:.0f} s)\n")
        results["proposed"]["adamw"] = {**adamw_rec, "lr": proposed_adamw_lr}
    aux = {"lr": proposed_adamw_lr}
    results["config"]["adamw_side_lr_in_stage_2"] = proposed_adamw_lr

    # ---- stage 2: every other method's lr, AdamW side at the stage-1 proposal
    log(f"stage 2: every method's lr (AdamW side lr={proposed_adamw_lr:g})")
    for name in names:
        if name == "adamw":
            continue
        t0 = time.time()
        rec = current[name]
        side = aux if muonlab.get_spec(name).matrix else None
        make = (lambda lr, n=name, s=side: (n, {"lr": lr}, s))
        curves = [Curve(f"{name}/{w}", w, make, seeds) for w in ("A", "B")]
        checks = [Curve(f"{name}/{w}", w, make, seeds) for w in A_CHECKS]
        grid, chosen, scores = sweep(curves, lattice_index(rec["lr"]), log, checks)
        record(name, curves, checks, grid, chosen, scores, "lr", {"adamw_side": side})
        if chosen is not None:
            results["proposed"][name] = {**rec, "lr": lattice_lr(chosen)}
        a, b = curves
        log(f"  {name:15s} A best {lattice_lr(a.best()):g} ({fmt(a.med(a.best()))})  "
            f"B best {lattice_lr(b.best()):g} ({fmt(b.med(b.best()))})  chosen "
            f"{fmt(lattice_lr(chosen)) if chosen is not None else 'NONE halves A'}  "
            f"[{len(grid)} pts, {time.time() - t0:.0f} s]")

    # ---- stage 3: current defaults as shipped; proposed defaults on held-out seeds and A variants
    log("\nstage 3: checks")
    prop_adamw = results["proposed"].get("adamw", adamw_rec)
    checks = {}
    runners = WORKLOADS
    for name in names:
        spec = muonlab.get_spec(name)
        prop = results["proposed"].get(name)
        side = dict(prop_adamw) if spec.matrix else None
        entry = {}
        for w, fn in runners.items():
            cur = [fn(name, {}, None, s)["metric"] for s in seeds]
            e = {"current_runs": cur, "current_median": median(cur)}
            if prop is not None:
                # the sweep already ran these exact settings on the sweep seeds
                sweep_rec = results["sweeps"][name]
                part = "curves" if w in ("A", "B") else "checks"
                pts = sweep_rec[part][f"{name}/{w}"]["points"][prop["lr"]]
                sw = [r["metric"] for r in pts["runs"]]
                if w in ("A", "B"):
                    ho = [fn(name, dict(prop), side, s)["metric"] for s in HELD_OUT_SEEDS]
                    e.update(held_out_runs=ho, held_out_median=median(ho))
                e.update(proposed_runs=sw, proposed_median=median(sw))
            entry[w] = e
        checks[name] = entry
        msg = f"  {name:15s}"
        for w in ("A", "A_teacher_net", "A_sin_linear"):
            e = entry[w]
            msg += f" {w}: cur max {fmt(max(e['current_runs']))}"
            if prop is not None:
                msg += f" prop max {fmt(max(e['proposed_runs'] + e.get('held_out_runs', [])))};"
        log(msg)
    results["checks"] = checks
    elapsed = time.time() - t_start
    results["meta"]["elapsed_s"] = round(elapsed, 1)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")

    # ---- tables
    print(f"\nAdamW side of matrix methods during stage 2: lr={proposed_adamw_lr:g}")
    for w, title in (("A", "A: MLP regression, final/initial loss (lower is better; < 0.5 halves)"),
                     ("B", "B: digits MLP, validation cross-entropy")):
        print(f"\n### Workload {title}\n")
        print("| method | current lr | best lr | metric at best | metric at current lr (sweep) | "
              "current defaults as shipped | proposed lr | metric at proposed (sweep seeds) | "
              "held-out seeds (median / worst) |" + (" current default halves A |" if w == "A" else ""))
        print("|---|---|---|---|---|---|---|---|---|" + ("---|" if w == "A" else ""))
        for name in names:
            sw = results["sweeps"][name]
            key = f"{name}/{w}" if name != "adamw" else f"adamw/{w}"
            c = sw["curves"][key]
            cur_lr = current[name]["lr"]
            at_cur = c["points"].get(lattice_lr(lattice_index(cur_lr)), {}).get("median")
            ch = checks[name][w]
            prop = results["proposed"].get(name)
            row = [f"`{name}`", f"{cur_lr:g}", f"{c['best_lr']:g}", fmt(c["best_median"]), fmt(at_cur),
                   fmt(ch["current_median"]), f"{prop['lr']:g}" if prop else "none",
                   fmt(ch.get("proposed_median")),
                   f"{fmt(ch['held_out_median'])} / {fmt(max(ch['held_out_runs']))}" if prop else "-"]
            if w == "A":
                row.append("yes" if max(ch["current_runs"]) < 0.5 else f"**no** ({fmt(max(ch['current_runs']))})")
            print("| " + " | ".join(row) + " |")
        if "adamw" in names:
            c = results["sweeps"]["adamw"]["curves"][f"muon-adamw-side/{w}"]
            print(f"\nMuon's AdamW side (`adamw={{'lr': ...}}`, Muon lr {current['muon']['lr']:g}) on {w}: "
                  f"best lr {c['best_lr']:g} -> {fmt(c['best_median'])}")
    print("\n### Checks: workload A with other targets (worst of the sweep seeds)\n")
    print("| method | teacher_net, current | teacher_net, proposed | sin_linear, current | sin_linear, proposed |")
    print("|---|---|---|---|---|")
    for name in names:
        row = [f"`{name}`"]
        for w in ("A_teacher_net", "A_sin_linear"):
            e = checks[name][w]
            row += [fmt(max(e["current_runs"])), fmt(max(e["proposed_runs"])) if "proposed_runs" in e else "-"]
        print("| " + " | ".join(row) + " |")
    print("\n### Proposed `recommended` changes\n")
    for name in names:
        prop = results["proposed"].get(name)
        if prop is None:
            print(f"* `{name}`: no lr on the grid halves workload A on every seed; no proposal")
        elif prop != current[name]:
            print(f"* `{name}`: {current[name]} -> {prop}")
        else:
            print(f"* `{name}`: unchanged {prop}")
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}; "
          f"elapsed {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
