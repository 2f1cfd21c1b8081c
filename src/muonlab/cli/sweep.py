"""``muonlab sweep``: an LR grid × seeds × optimizers (× any --grid axis), resumable.

Rerunning the same command continues a killed sweep: finished points are skipped, an interrupted
point resumes from its checkpoint, a failed one is tried again. --jobs N runs N points at a time
(local processes); --launcher ray or slurm spreads them over a cluster (docs/sweeps.md). A point
that fails is reported (its run directory gets a 'failed' file) and the exit code is 1. Examples::

    muonlab sweep --workload tiny_gpt --optimizers adamw,muon --lr-points 5 --seeds 3 --steps 300
    muonlab sweep --workload tiny_gpt --optimizers muon --grid width=64,128,256 --report
    muonlab sweep --workload mlp_digits --optimizers muon,sgd --grid n_train=100,400,1400 --lrs 0.01,0.03
    muonlab sweep --workload matrix_sensing --optimizers muon,torch.optim.SGD --grid instance=0,1,2
    muonlab sweep --workload mlp_digits --optimizers muon,adamw --seeds 8 --jobs 8 --threads 1
    muonlab sweep --workload tiny_gpt --optimizers muon --launcher slurm --slurm-partition gpu --slurm-gpus 1
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ..lab.cli_support import add_run_arguments, one_line_errors
    from ..lab.launch_cli import add_launcher_arguments

    p = sub.add_parser("sweep", help="LR grid × seeds × optimizers, resumable, then an optional report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    one_line_errors(p)
    add_run_arguments(p)
    p.add_argument("--optimizers", required=True, metavar="A,B",
                   help="comma-separated registry names or import paths; 'all' = every registered one")
    p.add_argument("--seeds", default="3", help="a count (3 = seeds 0,1,2; default) or a list like 0,4,9")
    p.add_argument("--lrs", metavar="X,Y", help="explicit learning rates for every optimizer")
    p.add_argument("--lr-points", type=int, default=5, metavar="N",
                   help="log-spaced lrs per optimizer over its search space (default 5)")
    p.add_argument("--lr-range", metavar="LOW,HIGH", help="override every optimizer's lr range")
    p.add_argument("--grid", nargs="+", action="extend", default=[], metavar="KEY=V1,V2",
                   help="another axis, e.g. width=64,128,256 (keys as for --set)")
    p.add_argument("--report", action="store_true", help="write the report when the sweep ends")
    add_launcher_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from ..lab.cli_support import (
        base_config,
        parse_assignment,
        parse_floats,
        parse_list,
        parse_seeds,
    )
    from ..lab.launch_cli import launcher_from_args
    from ..lab.report import write_report
    from ..lab.sweep import SweepError, sweep
    from ..registry import available_optimizers

    names = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    if names == ["all"]:
        names = available_optimizers()
    if not names:
        raise ValueError(f"--optimizers {args.optimizers!r} names no optimizer")
    lr_range = None
    if args.lr_range:
        lr_range = tuple(parse_floats(args.lr_range, "--lr-range"))
        if len(lr_range) != 2:
            raise ValueError(f"--lr-range {args.lr_range!r} must be two numbers LOW,HIGH")
    grid = {}
    for item in args.grid:
        key, _ = parse_assignment(item)
        grid[key] = parse_list(item.partition("=")[2])
        if not grid[key]:
            raise ValueError(f"--grid {item!r} has no values")
    launcher = launcher_from_args(args)
    try:
        launcher.check()
    except ImportError as e:  # an engine's extra is missing: one line, like any bad input
        raise ValueError(str(e)) from None
    try:
        results = sweep(args.workload, names, args.out, seeds=parse_seeds(args.seeds),
                        lrs=parse_floats(args.lrs, "--lrs") if args.lrs else None, lr_points=args.lr_points,
                        lr_range=lr_range, grid=grid, base=base_config(args), progress=not args.quiet,
                        log=lambda line: print(line, flush=True), launcher=launcher)
    except SweepError as e:
        print(f"sweep ended: {len(e.results)} point(s) finished, {len(e.failures)} failed under {args.out}")
        print(f"muonlab sweep: {e}", file=sys.stderr)
        return 1
    print(f"sweep finished: {len(results)} point(s) under {args.out}")
    if args.report:
        _, text = write_report(args.out)
        print(text)
    else:
        print(f"report: muonlab report {args.out}")
    return 0
