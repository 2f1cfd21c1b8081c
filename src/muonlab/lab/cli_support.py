"""Argument helpers shared by ``muonlab run``, ``sweep`` and ``demo``: ``--set``, ``--grid``, lists.

Values are Python literals when they parse as one (``ast.literal_eval``: ``0.02``, ``1e-3``,
``True``, ``(0.9, 0.95)``, ``{"rope_theta": 1e4}``) and plain strings otherwise (``cosine``,
``torch.optim.SGD``), so ``--set key=value`` needs no quoting for the common cases.
"""

from __future__ import annotations

import argparse
import ast
import sys
from typing import Any, NoReturn

from .runner import RunConfig, apply_setting


def parse_value(text: str) -> Any:
    """``text`` as a Python literal, else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def parse_assignment(item: str) -> tuple[str, Any]:
    """``"key=value"`` → ``(key, parsed value)``; ValueError naming the item otherwise."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set/--grid item {item!r} is not of the form key=value")
    return key.strip(), parse_value(value.strip())


def parse_list(text: str) -> list[Any]:
    """``"0.01,0.02"`` → ``[0.01, 0.02]``; top-level commas split, so ``(0.9,0.95),(0.9,0.99)``
    gives two tuples."""
    try:
        value = ast.literal_eval(f"[{text}]")
        return list(value)
    except (ValueError, SyntaxError):
        return [parse_value(v.strip()) for v in text.split(",") if v.strip()]


def parse_floats(text: str, what: str) -> list[float]:
    """A comma-separated list of positive numbers (``--lrs``, ``--lr-range``)."""
    values = parse_list(text)
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(f"{what} {text!r} must be a comma-separated list of positive numbers")
    return [float(v) for v in values]


def parse_seeds(text: str) -> list[int]:
    """``"3"`` → seeds 0, 1, 2; ``"0,4,9"`` → exactly those."""
    values = parse_list(text)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(f"--seeds {text!r} must be a count (3 = seeds 0,1,2) or a list like 0,4,9")
    if len(values) == 1 and "," not in text:
        if values[0] < 1:
            raise ValueError(f"--seeds {text!r}: a count must be >= 1")
        return list(range(values[0]))
    return values


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``parser`` report a bad argument as one line (exit code 2) instead of usage + error.

    argparse prints the whole usage block before the message; the lab's commands have long
    usages, so the message that names the bad value would scroll away. ``--help`` still shows
    the usage.
    """

    def error(message: str) -> NoReturn:
        print(f"{parser.prog}: error: {message} (see {parser.prog} --help)", file=sys.stderr)
        sys.exit(2)

    parser.error = error  # type: ignore[method-assign]
    return parser


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``run`` and ``sweep`` share."""
    p.add_argument("--workload", required=True, metavar="W", help="workload name (see `muonlab list`)")
    p.add_argument("--steps", type=int, default=0, metavar="N",
                   help="training steps per run (default: the workload's default)")
    p.add_argument("--data", metavar="PATH",
                   help="text corpus for LM workloads: a file, 'tinyshakespeare' or 'embedded' (default)")
    p.add_argument("--out", default="runs", metavar="DIR", help="root of the run directories (default runs)")
    p.add_argument("--set", dest="sets", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override a setting: a runner field (warmup, schedule, eval_every, ...), a workload "
                        "knob (width, depth, ...) or an optimizer hyperparameter (lr, momentum, ...); "
                        "prefixes run./workload./opt./adamw. disambiguate (adamw.lr sets the AdamW groups)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--probe-every", type=int, default=0, metavar="N",
                   help="record spectral diagnostics every N steps (needs muonlab.diagnostics)")
    p.add_argument("--probe-activations", action="store_true",
                   help="with --probe-every: also record each layer's activation-covariance spectrum")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--track", default="", metavar="BACKENDS",
                   help="mirror each run's records to mlflow, wandb and/or tensorboard (comma-separated; "
                        "needs muonlab[tracking]); --set track_uri=URI track_project=NAME choose where")


def base_config(args: argparse.Namespace, optimizer: str = "") -> RunConfig:
    """The RunConfig the command line describes (``--set`` applied in order, ``--data`` as a knob)."""
    from .workloads import get_workload, knob_types

    cls = get_workload(args.workload)
    cfg = RunConfig(args.workload, optimizer, steps=args.steps, device=args.device,
                    probe_every=args.probe_every, probe_activations=args.probe_activations)
    if args.steps < 0:
        raise ValueError(f"--steps {args.steps} must be >= 0")
    if args.data is not None:
        if "data" not in knob_types(cls):
            raise ValueError(f"workload {args.workload!r} takes no --data (it has its own data set)")
        cfg = apply_setting(cfg, "data", args.data)
    if getattr(args, "track", ""):
        from .tracking import check_backends

        try:
            check_backends(args.track, where="--track")
        except ImportError as e:  # a missing extra is bad input: one line, not a traceback
            raise ValueError(str(e)) from None
        cfg = apply_setting(cfg, "run.track", args.track)
    for item in args.sets:
        cfg = apply_setting(cfg, *parse_assignment(item))
    return cfg
