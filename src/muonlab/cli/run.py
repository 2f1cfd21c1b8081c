"""``muonlab run``: train one workload with one optimizer for one seed, resumably.

Examples::

    muonlab run --workload tiny_gpt --optimizer muon --steps 300 --data tinyshakespeare
    muonlab run --workload mlp_digits --optimizer torch.optim.SGD --set lr=0.1 momentum=0.9
    muonlab run --workload tiny_gpt --optimizer muon --set width=256 lr=0.01 adamw.lr=3e-3
    torchrun --standalone --nproc_per_node=2 -m muonlab.cli run --workload mlp_digits --optimizer muon
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ..lab.cli_support import add_run_arguments, one_line_errors

    p = sub.add_parser("run", help="train one workload with one optimizer (one seed)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    one_line_errors(p)
    add_run_arguments(p)
    p.add_argument("--optimizer", required=True, metavar="O",
                   help="registry name (see `muonlab list`) or import path like torch.optim.AdamW")
    p.add_argument("--seed", type=int, default=0, help="seed for init and data order (default 0)")
    p.add_argument("--dist", default="auto", choices=("auto", "ddp", "fsdp2"),
                   help="data parallelism under torchrun (WORLD_SIZE > 1): ddp or fsdp2 (default auto = "
                        "ddp); ignored in one process")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..lab.cli_support import base_config
    from ..lab.records import run_path
    from ..lab.runner import check_config, run_one

    cfg = dataclasses.replace(base_config(args, args.optimizer), seed=args.seed)
    check_config(cfg)
    run_dir = run_path(args.out, cfg.workload, cfg.optimizer, cfg.settings(), cfg.seed)
    already = (run_dir / "done").exists()
    try:
        summary = run_one(cfg, run_dir, progress=not args.quiet, dist=args.dist)
    finally:
        from ..lab.dist import finish

        main_rank = finish()  # leaves torchrun's process group, if run_one joined one
    if not main_rank:
        return 0  # rank 0 reports
    metrics = "  ".join(f"{k}={v:.4g}" for k, v in summary.items()
                        if "/" in k and not k.startswith("time/") and isinstance(v, float))
    state = "already finished" if already else ("DIVERGED" if summary["diverged"] else "finished")
    print(f"{state}: {cfg.workload} {cfg.optimizer} seed={cfg.seed}, {summary['step']} steps, "
          f"{summary['time/train_s']:.1f} s training")
    print(f"  {metrics}")
    print(f"  records: {run_dir}  (report: muonlab report {args.out})")
    return 0
