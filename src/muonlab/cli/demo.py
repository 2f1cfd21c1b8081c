"""``muonlab demo``: a short AdamW vs Muon comparison that needs no download.

Interim version (issue 2): an MLP on scikit-learn's bundled digits, three seeds per optimizer,
printing a comparison table. The lab (issue 5) replaces it with the tiny-GPT demo and report.
"""

from __future__ import annotations

import argparse
import statistics
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="short AdamW vs Muon run with a comparison table")
    p.add_argument("--steps", type=int, default=300, help="training steps per run (default 300)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per optimizer (default 3)")
    p.set_defaults(func=run)


def _digits():
    import torch
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X, dtype=torch.float32) / 16.0
    y = torch.tensor(y)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(X), generator=g)
    X, y = X[perm], y[perm]
    return (X[:1400], y[:1400]), (X[1400:], y[1400:])


def _train(name: str, seed: int, steps: int, data) -> dict:
    import torch
    from torch import nn

    import muonlab

    (Xtr, ytr), (Xte, yte) = data
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(),
                          nn.Linear(256, 10))
    opt = muonlab.create_optimizer(model, name)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(Xtr), (128,), generator=g)
        loss = nn.functional.cross_entropy(model(Xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - t0
    with torch.no_grad():
        train_loss = nn.functional.cross_entropy(model(Xtr), ytr).item()
        acc = (model(Xte).argmax(-1) == yte).float().mean().item()
    return {"train_loss": train_loss, "test_acc": acc, "seconds": elapsed}


def run(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.seeds < 1:
        raise ValueError(f"--steps={args.steps} and --seeds={args.seeds} must be >= 1")
    data = _digits()
    rows = []
    for name in ("adamw", "muon"):
        res = [_train(name, s, args.steps, data) for s in range(args.seeds)]
        rows.append((name, *(statistics.mean(r[k] for r in res) for k in ("train_loss", "test_acc", "seconds"))))
        print(f"  finished {name}: {args.seeds} seeds × {args.steps} steps", flush=True)
    print(f"\nMLP on sklearn digits, {args.steps} steps, mean over {args.seeds} seeds "
          "(registry-recommended hyperparameters)")
    print(f"{'optimizer':10} {'train loss':>11} {'test acc':>9} {'time (s)':>9}")
    for name, loss, acc, sec in rows:
        print(f"{name:10} {loss:11.4f} {acc:9.3f} {sec:9.2f}")
    return 0
