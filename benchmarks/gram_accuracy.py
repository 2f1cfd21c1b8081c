"""Accuracy of the restarted Gram Newton–Schulz iteration against the plain one (not a speed test).

How ``muonlab.matfn.polar.gram_restart_steps`` was chosen. Inputs: the Nesterov momentum of every
elongated hidden matrix of the lab's tiny GPT (width 256; 768×256, 1024×256, 256×1024) at steps 5,
50 and 150 of a Muon run, plus synthetic 64×256 and 48×144 matrices with Gaussian, power-law
(σ_i = i^−1.5, i^−0.5) and rank-8-over-1e-3 spectra. For each coefficient table and restart
schedule it prints, over all inputs, the mean and max relative Frobenius error against the exact
output ``U f(Σ) Vᵀ`` of the polynomial (float64 SVD) and the worst excess of σ_max over the exact
one. The plain iteration in the same dtype is the yardstick.

    PYTHONPATH=src python3 benchmarks/gram_accuracy.py                 # bf16, ~3 min on 2 cores
    PYTHONPATH=src python3 benchmarks/gram_accuracy.py --dtype float32
"""

from __future__ import annotations

import argparse
import itertools

import torch

import muonlab
from muonlab.matfn import coefficients as C
from muonlab.matfn import orthogonalize
from muonlab.matfn.polar import _DEFAULT_TABLE, gram_restart_steps

SPECS = [("newton_schulz", 5), ("polar_express", 5), ("polar_express_4", 4), ("you5", 5), ("you6", 6),
         ("polar_express", 8)]


def tiny_gpt_momenta(steps=(5, 50, 150), width=256) -> dict[str, torch.Tensor]:
    """Nesterov inputs of Muon's Newton–Schulz on the tiny GPT's elongated hidden matrices."""
    from muonlab.lab.workloads import make_workload

    work = make_workload("tiny_gpt", width=width)
    work.setup(torch.device("cpu"))
    model = work.build_model(0)
    opt = muonlab.create_optimizer(model, "muon", lr=0.02)
    gen = torch.Generator().manual_seed(0)
    out = {}
    for step in range(max(steps) + 1):
        loss = work.loss(model, work.get_batch(gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step not in steps:
            continue
        for group in opt.param_groups:
            if group["algorithm"] != "muon":
                continue
            for name, p in zip(group["param_names"], group["params"]):
                if p.shape[0] == p.shape[1]:
                    continue
                buf = opt.state[p]["momentum_buffer"]
                out[f"{step}:{name}"] = p.grad.lerp(buf, group["momentum"]).detach().clone()
    return out


def synthetic(seed=5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m, n in [(64, 256), (48, 144)]:
        r = min(m, n)
        U, _ = torch.linalg.qr(torch.randn(m, r, generator=g, dtype=torch.float64))
        V, _ = torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))
        i = torch.arange(1, r + 1, dtype=torch.float64)
        out[f"gauss{m}x{n}"] = torch.randn(m, n, generator=g)
        for label, s in [("power1.5", i**-1.5), ("power0.5", i**-0.5), ("rank8", torch.where(i <= 8, 1.0, 1e-3))]:
            out[f"{label}{m}x{n}"] = ((U * s) @ V.T).float()
    return out


def exact(G: torch.Tensor, table, safety: float) -> torch.Tensor:
    G = G.double()
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    return (U * C.scalar_map(table, S / (G.norm() * safety))) @ Vh


def sigma_max(X: torch.Tensor) -> float:
    return torch.linalg.svdvals(X).max().item() if torch.isfinite(X).all() else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    inputs = {**tiny_gpt_momenta(), **synthetic()}
    print(f"{len(inputs)} inputs, compute dtype {args.dtype}, torch {torch.__version__}")
    for method, steps in SPECS:
        table = C.schedule(C.as_table(C.TABLES[_DEFAULT_TABLE[method]]), steps)
        safety = C.POLAR_EXPRESS_SAFETY if method.startswith("polar_express") else 1.0
        want = {k: exact(G, table, safety) for k, G in inputs.items()}
        chosen = gram_restart_steps(table, dtype)
        schedules = [None, ()] + [(i,) for i in range(1, steps)] + list(itertools.combinations(range(1, steps), 2))
        print(f"\n{method}, {steps} steps (default restarts {chosen})")
        for restarts in schedules:
            errs, excess = [], []
            for k, G in inputs.items():
                O = orthogonalize(G, method, steps=steps, compute_dtype=dtype, gram=restarts is not None,
                                  gram_restarts=restarts).double()
                errs.append(((O - want[k]).norm() / want[k].norm()).item())
                excess.append(sigma_max(O) - sigma_max(want[k]))
            label = "plain" if restarts is None else str(restarts) + (" *" if restarts == chosen else "")
            print(f"  {label:10} error mean {sum(errs) / len(errs):9.3e} max {max(errs):9.3e}   "
                  f"σ_max excess max {max(excess):+9.4f}")


if __name__ == "__main__":
    main()
