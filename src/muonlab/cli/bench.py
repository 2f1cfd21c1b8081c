"""``muonlab bench step|orth``: speed benchmarks (never tests), side by side with the anchors."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: optimizer step time, orthogonalization throughput")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCH")
    bsub.required = True
    s = bsub.add_parser("step", help="full optimizer step time vs torch.optim.Muon and other anchors")
    s.add_argument("--params", default="gpt-6x512",
                   help="parameter set: gpt-6x512 (default), gpt2-small, resnet18, small-48x64")
    s.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds (default 5)")
    s.add_argument("--contenders", nargs="*", default=None, help="subset of contenders (default: all)")
    s.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    s.set_defaults(func=_step)
    o = bsub.add_parser("orth", help="orthogonalization ms and GFLOP/s vs matmul peak")
    o.add_argument("--dtypes", nargs="*", default=["bfloat16", "float32"])
    o.add_argument("--reps", type=int, default=5)
    o.set_defaults(func=_orth)


def _step(args: argparse.Namespace) -> int:
    from ..bench import step

    if args.rounds < 1:
        raise ValueError(f"--rounds={args.rounds} must be >= 1")
    rows = step.run(args.params, rounds=args.rounds, names=args.contenders, threads=args.threads)
    print(step.format_rows(rows, args.params, args.rounds))
    return 0


def _orth(args: argparse.Namespace) -> int:
    from ..bench import orth

    bad = [d for d in args.dtypes if d not in ("bfloat16", "float16", "float32", "float64")]
    if bad:
        raise ValueError(f"--dtypes {bad}: choose from bfloat16, float16, float32, float64")
    print(orth.format_rows(orth.run(dtypes=args.dtypes, reps=args.reps)))
    return 0
