"""``muonlab bench step|orth|gpu``: speed benchmarks (never tests), side by side with the anchors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
    s.add_argument("--device", default="cpu", help="torch device (default cpu)")
    s.set_defaults(func=_step)
    o = bsub.add_parser("orth", help="orthogonalization ms and GFLOP/s vs matmul peak")
    o.add_argument("--dtypes", nargs="*", default=["bfloat16", "float32"])
    o.add_argument("--reps", type=int, default=5)
    o.add_argument("--device", default="cpu", help="torch device (default cpu)")
    o.set_defaults(func=_orth)
    g = bsub.add_parser("gpu", help="the prepared GPU suite (≤ 8 min on an H100/H200): step, orthogonalization "
                        "and tiny-GPT training vs the anchors, written as a dated section of docs/benchmarks.md")
    g.add_argument("--device", default="cuda", help="torch device (default cuda); cpu with --smoke to try it")
    g.add_argument("--smoke", action="store_true", help="tiny sizes, seconds on a CPU: checks the command, measures nothing")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="also run muonlab with ns_compile=True (default: on)")
    g.add_argument("--budget-s", type=float, default=450.0,
                   help="seconds after which remaining parts are skipped with a note (default 450)")
    g.add_argument("--out", default="docs/benchmarks.md",
                   help="markdown file the section is appended to (default docs/benchmarks.md); '-' prints only")
    g.add_argument("--json", default=None, help="also write every row as JSON to this file")
    g.set_defaults(func=_gpu)


def _device(name: str):
    """``--device`` as a torch.device; ValueError naming it when invalid or absent."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r}: CUDA is not available here")
    return device


def _step(args: argparse.Namespace) -> int:
    from ..bench import step

    if args.rounds < 1:
        raise ValueError(f"--rounds={args.rounds} must be >= 1")
    rows = step.run(args.params, rounds=args.rounds, names=args.contenders, threads=args.threads,
                    device=_device(args.device))
    print(step.format_rows(rows, args.params, args.rounds))
    return 0


def _orth(args: argparse.Namespace) -> int:
    from ..bench import orth

    bad = [d for d in args.dtypes if d not in ("bfloat16", "float16", "float32", "float64")]
    if bad:
        raise ValueError(f"--dtypes {bad}: choose from bfloat16, float16, float32, float64")
    print(orth.format_rows(orth.run(dtypes=args.dtypes, reps=args.reps, device=_device(args.device))))
    return 0


def _gpu(args: argparse.Namespace) -> int:
    from ..bench import gpu

    try:
        _device(args.device)
    except ValueError as e:
        raise ValueError(f"{e}; to try the command without a GPU: --device cpu --smoke") from None
    if args.budget_s <= 0:
        raise ValueError(f"--budget-s={args.budget_s:g} must be > 0")
    if args.out != "-" and not Path(args.out).parent.is_dir():
        raise FileNotFoundError(f"--out {args.out!r}: folder {str(Path(args.out).parent)!r} does not exist")
    res = gpu.run(args.device, smoke=args.smoke, compile=args.compile, budget_s=args.budget_s, log=gpu.log_stderr)
    section = gpu.format_section(res)
    print(section)
    if args.json:
        from ..lab.records import write_json

        write_json(args.json, res)
    if args.out != "-":
        path = gpu.append_section(args.out, section)
        print(f"appended to {path}", file=sys.stderr)
    return 0
