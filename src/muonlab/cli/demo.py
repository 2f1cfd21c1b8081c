"""``muonlab demo``: AdamW vs Muon vs MiMuon on a tiny GPT, then the report (~2.5 min on 2 CPU cores).

The main job of the README. A byte-level nanoGPT-style model (``tiny_gpt``, 4 layers, width 128,
context 64) trains on the embedded corpus (English text that ships with Python: no download) for
each optimizer and seed, then ``muonlab report`` turns the records into tables and PNG plots.

Settings, the same for every optimizer: batch 16 × 64 bytes, 5% warmup then cosine decay to 10%,
validation loss on 4 fixed batches every 10 steps.
The matrix methods run at their registry-recommended lr; AdamW runs at ``--adamw-lr`` (default
3e-3, a good value for this model and budget; the registry's 3e-4 is tuned for long runs), both
for the AdamW baseline and for the embeddings, head and norms of the matrix methods, so the only
difference between the runs is what updates the hidden matrices. A fair comparison tunes every lr:
``muonlab sweep`` does that.

The optimizers are ("adamw", "muon", "mimuon") filtered by what the registry holds, so the demo
works before MiMuon lands and says so. The demo is resumable: rerun it and finished runs are
skipped.
"""

from __future__ import annotations

import argparse
import time

DEMO_OPTIMIZERS = ("adamw", "muon", "mimuon")
# Batch 16 × 64 bytes keeps a step at 50–65 ms on 2 idle cores (2.4 min for the whole demo,
# measured); 4 fixed validation batches every 10 steps resolve steps-to-target finely for ~10%
# extra time. Other knobs: tiny_gpt's defaults.
DEMO_KNOBS = {"batch_size": 16, "eval_batches": 4}
EVAL_EVERY = 10
CHECKPOINT_EVERY = 50  # steps; a checkpoint costs ~80 ms, as much as a training step


def register(sub: argparse._SubParsersAction) -> None:
    from ..lab.cli_support import one_line_errors

    p = sub.add_parser("demo", help="AdamW vs Muon vs MiMuon on a tiny GPT, then the report (~2.5 min)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    one_line_errors(p)
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="run records and report (default runs/demo)")
    p.add_argument("--steps", type=int, default=250, help="training steps per run (default 250)")
    p.add_argument("--seeds", type=int, default=3,
                   help="seeds per optimizer (default 3, the fewest the report's significance rule accepts)")
    p.add_argument("--data", default="embedded",
                   help="corpus: 'embedded' (default, no network), 'tinyshakespeare' or a file path")
    p.add_argument("--adamw-lr", type=float, default=3e-3, metavar="LR",
                   help="lr of AdamW, as the baseline and for the non-matrix parameters (default 3e-3)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def demo_configs(names, steps: int, seeds: int, data: str, adamw_lr: float, device: str = "auto"):
    """The demo's run configs: each optimizer × seed on tiny_gpt with the settings above."""
    from ..lab.runner import RunConfig
    from ..registry import get_spec

    configs = []
    for seed in range(seeds):
        for name in names:
            # Matrix methods get AdamW for their non-matrix groups; the element-wise baseline
            # (AdamW) gets the same lr for everything. A capability check, not a name check.
            lr_setting = {"aux": {"lr": adamw_lr}} if get_spec(name).matrix else {"hparams": {"lr": adamw_lr}}
            configs.append(RunConfig("tiny_gpt", name, seed=seed, steps=steps, eval_every=EVAL_EVERY,
                                     checkpoint_every=CHECKPOINT_EVERY, device=device,
                                     knobs={**DEMO_KNOBS, "data": data}, **lr_setting))
    return configs


def run(args: argparse.Namespace) -> int:
    from ..lab.records import run_path
    from ..lab.report import write_report
    from ..lab.runner import check_config, run_one
    from ..registry import available_optimizers

    if args.steps < 1 or args.seeds < 1:
        raise ValueError(f"--steps={args.steps} and --seeds={args.seeds} must be >= 1")
    if not args.adamw_lr > 0:
        raise ValueError(f"--adamw-lr={args.adamw_lr} must be > 0")
    registered = set(available_optimizers())
    names = [n for n in DEMO_OPTIMIZERS if n in registered]
    missing = [n for n in DEMO_OPTIMIZERS if n not in registered]
    if missing:
        print(f"note: {', '.join(missing)} not registered in this install; comparing {', '.join(names)}")
    configs = demo_configs(names, args.steps, args.seeds, args.data, args.adamw_lr, args.device)
    check_config(configs[0], build=False)  # a bad --data or device fails here, before training
    print(f"muonlab demo: tiny_gpt on {args.data!r}, {', '.join(names)} × {args.seeds} seed(s) × "
          f"{args.steps} steps -> {args.out}")
    t0 = time.perf_counter()
    for i, cfg in enumerate(configs, 1):
        run_dir = run_path(args.out, cfg.workload, cfg.optimizer, cfg.settings(), cfg.seed)
        summary = run_one(cfg, run_dir, progress=not args.quiet)
        print(f"  [{i}/{len(configs)}] {cfg.optimizer:8s} seed={cfg.seed}  val/loss={summary['val/loss']:.4f}  "
              f"({summary['time/train_s']:.1f} s training)", flush=True)
    path, text = write_report(args.out)
    print(text)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; open {path} (plots next to it)")
    return 0
