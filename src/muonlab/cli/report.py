"""``muonlab report DIR``: tables, statistics and PNG plots from the runs under DIR.

Writes DIR/report/report.md (or --out) with: the best-LR table (median over seeds), training
curves (mean ± std over seeds), LR-sensitivity curves, plots against any numeric grid axis (e.g.
width), steps-to-target with bootstrap CIs and the stated significance rule, and the spectral
diagnostics when the probe ran; then prints a summary. Examples::

    muonlab report runs
    muonlab report runs --metric val/acc --target 0.95 --baseline muon
    muonlab report runs --target tiny_gpt=2.0
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ..lab.cli_support import one_line_errors

    p = sub.add_parser("report", help="Markdown report with plots from run records",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    one_line_errors(p)
    p.add_argument("dir", metavar="DIR", help="root of the run directories")
    p.add_argument("--out", metavar="DIR", help="where report.md and the PNGs go (default DIR/report)")
    p.add_argument("--metric", help="metric to rank and plot (default: the workload's headline metric)")
    p.add_argument("--target", metavar="X|W=X",
                   help="steps-to-target threshold, for every workload or as workload=value "
                        "(default: the worst best-LR median)")
    p.add_argument("--baseline", metavar="O", help="optimizer to compare against (default adamw if present)")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.set_defaults(func=run)


def _target(text: str | None):
    if text is None:
        return None
    from ..lab.cli_support import parse_value

    key, sep, value = text.partition("=")
    number = parse_value(value if sep else key)
    if not isinstance(number, (int, float)) or isinstance(number, bool):
        raise ValueError(f"--target {text!r} must be a number or workload=number")
    return {key: float(number)} if sep else float(number)


def run(args: argparse.Namespace) -> int:
    from ..lab.report import write_report

    _, text = write_report(args.dir, args.out, metric=args.metric, target=_target(args.target),
                           baseline=args.baseline, plots=not args.no_plots)
    print(text)
    return 0
