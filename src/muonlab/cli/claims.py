"""``muonlab claims``: run the seed documents' claims and write docs/claims.md (issue 9).

Each claim runs its experiment (resumable: runs live under OUT/runs and a rerun skips finished
points), caches its result as OUT/NAME/result.json, and docs/claims.md is rewritten with every
claim's section (claims not run in this call keep their existing section). Examples::

    muonlab claims --list
    muonlab claims sensing_flattening norm_matched_gd          # the small budget (2 CPU cores)
    muonlab claims 5 6 --budget full --out runs/claims_full
    muonlab claims --render-only                               # rewrite docs/claims.md from results
    muonlab claims --jobs 2 --threads 1                        # two runs at a time (docs/sweeps.md)
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback


def register(sub: argparse._SubParsersAction) -> None:
    from ..lab.cli_support import one_line_errors
    from ..lab.launch_cli import add_launcher_arguments

    p = sub.add_parser("claims", help="reproduce the seed documents' claims with verdicts (docs/claims.md)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    one_line_errors(p)
    p.add_argument("names", nargs="*", metavar="NAME", help="claim names or numbers (default: all)")
    p.add_argument("--budget", default="small", choices=("small", "full"),
                   help="small: ≤ 15 min per claim on 2 CPU cores (default); full: for a GPU")
    p.add_argument("--out", default="runs/claims", help="runs and cached results (default runs/claims)")
    p.add_argument("--docs", default="docs/claims.md", help="the report to write (default docs/claims.md)")
    p.add_argument("--list", action="store_true", help="list the claims and their cached verdicts, run nothing")
    p.add_argument("--render-only", action="store_true", help="only rewrite the report from cached results")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override a budget setting, e.g. seeds=3 steps=100 (for smoke tests)")
    add_launcher_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..claims import CLAIMS, get_claim
    from ..claims.render import render
    from ..lab.cli_support import parse_assignment
    from ..lab.launch_cli import launcher_from_args
    from ..lab.sweep import SweepError

    claims = [get_claim(n) for n in args.names] if args.names else list(CLAIMS.values())
    if args.list:
        for c in claims:
            r = c.cached(args.out)
            status = f"{r.verdict} ({r.budget}, {r.n_runs} runs, {r.run_seconds / 60:.1f} min)" if r else "not run yet"
            print(f"{c.number:>2}  {c.name:<25} seed {c.seed:<28} {status}")
        return 0
    override = dict(parse_assignment(s) for s in args.set)
    docs = Path(args.docs)
    fig_dir = docs.parent / docs.stem
    failed = []
    launcher = launcher_from_args(args)
    if not args.render_only:
        try:
            launcher.check()
        except ImportError as e:  # an engine's extra is missing: one line, like any bad input
            raise ValueError(str(e)) from None
        for c in claims:
            t0 = time.perf_counter()
            print(f"== claim {c.number} {c.name} ({args.budget})", flush=True)
            try:
                r = c.run(args.out, args.budget, fig_dir=fig_dir, fig_rel=fig_dir.name, launcher=launcher,
                          **override)
            except (ValueError, FileNotFoundError, KeyError):
                raise  # bad input: the CLI's one-line error
            except SweepError as e:  # its failed points are named; the other claims still run
                print(f"== claim {c.number} {c.name}: not finished: {e}", file=sys.stderr, flush=True)
                failed.append(c.name)
                continue
            except Exception:  # one claim's crash must not lose the others' results
                if len(claims) == 1:
                    raise
                traceback.print_exc()
                failed.append(c.name)
                continue
            print(f"== claim {c.number} {c.name}: {r.verdict} — {r.why} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
            render(list(CLAIMS.values()), args.out, docs)
    render(list(CLAIMS.values()), args.out, docs)
    print(f"wrote {docs}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
