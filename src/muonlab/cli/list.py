"""``muonlab list``: the registered optimizers (and, once the lab is installed, workloads)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list optimizers (and workloads)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..registry import all_specs

    print("optimizers:")
    width = max(len(s.name) for s in all_specs())
    for spec in all_specs():
        kind = "matrix" if spec.matrix else "element-wise"
        print(f"  {spec.name.ljust(width)}  [{kind}, {spec.certainty}] {spec.summary}")
    try:
        from ..lab.workloads import available_workloads  # type: ignore[import-not-found]
    except ImportError:
        return 0
    print("workloads:")
    for name in available_workloads():
        print(f"  {name}")
    return 0
