"""docs/claims.md: one section per claim, rewritten atomically, merging with what is there.

Each claim's section sits between ``<!-- claim:NAME -->`` and ``<!-- /claim:NAME -->``. A section
is rebuilt from the cached ``result.json`` when the out directory has one; otherwise the section
already in the file is kept (so running one claim updates its section only); otherwise it says
"not run yet" with the setup and the command. Numbers are never written without a result.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

from ..lab.records import write_atomic
from .base import Claim, ClaimResult

HEADER = """# The claims lab

Each claim in the seed documents, reproduced with one command and a verdict computed from the
numbers by the rule stated under it. The seeds: 000 MiMuon (Huang, Luo, Chen, arXiv 2605.19619);
001 hyperparameter transfer (Qiu, Chen, Phan, Lei, Wilson, arXiv 2512.05620); 002 spectral power
(Qi et al., "Delving into Muon and Beyond", arXiv 2602.04669); 003 spectral dynamics (Beneventano,
Abdelmoneum, Poggio, "The Spectral Dynamics and Noise Geometry of Muon", arXiv 2606.08388); 004 the
"Awesome Muon Optimizer" reading list, here grokking (Tveit, Remseth, Skogvold, arXiv 2504.16041)
and imbalanced data (Vasudeva et al., arXiv 2510.22980). Verdicts are
*supported*, *not supported*, or *inconclusive at this scale*; they speak only for the budget that
ran (the `small` budget runs on 2 CPU cores in ≤ 15 minutes per claim and is far from the seeds'
scale; `full` is meant for a GPU). Spread is over ≥ 3 seeds (or problem instances) per arm: means
with 95% percentile-bootstrap CIs (10,000 resamples). Regenerate with `muonlab claims [NAME ...]`.

"""


def section(claim: Claim, result: ClaimResult | None) -> str:
    """The Markdown section of ``claim`` (with its markers)."""
    lines = [f"<!-- claim:{claim.name} -->", f"## {claim.number}. `{claim.name}` (seed {claim.seed})", "",
             f"> {claim.quote}", "", f"**Setup.** {claim.setup}", ""]
    if result is None:
        lines += ["**Status:** not run yet.", ""]
    else:
        if math.isfinite(result.run_seconds) and result.n_runs:
            cost = (f"{result.n_runs} runs, {result.run_seconds / 60:.1f} min of training and evaluation summed "
                    "over them (one process, from scratch)")
        else:
            cost = f"{result.seconds / 60:.1f} min wall clock"
        lines += [f"**Budget:** `{result.budget}` — {cost}; {result.seeds} seeds per arm.", ""]
        lines += result.table + [""]
        lines += [f"![{claim.name}]({p})" for p in result.plots]
        if result.plots:
            lines.append("")
        lines += [f"**Rule.** {result.rule}", "", f"**Verdict:** {result.verdict} — {result.why}", ""]
    lines += ["Reproduce: `" + claim.command("small") + "` (GPU: `" + claim.command("full") + "`)", "",
              f"<!-- /claim:{claim.name} -->"]
    return "\n".join(lines)


def existing_sections(text: str) -> dict[str, str]:
    """``{name: section text with markers}`` found in an existing claims.md."""
    pat = re.compile(r"<!-- claim:(\w+) -->.*?<!-- /claim:\1 -->", re.S)
    return {m.group(1): m.group(0) for m in pat.finditer(text)}


def render(claims: Sequence[Claim], out: str | Path, path: str | Path) -> str:
    """Write ``path`` (atomically) with every claim's section; returns the text."""
    path = Path(path)
    old = existing_sections(path.read_text()) if path.exists() else {}
    parts = [HEADER.rstrip("\n"), "", _summary(claims, out, old), ""]
    for claim in sorted(claims, key=lambda c: c.number):
        result = claim.cached(out)
        if result is None and claim.name in old:
            parts.append(old[claim.name])
        else:
            parts.append(section(claim, result))
        parts.append("")
    text = "\n".join(parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)
    return text


def _summary(claims: Sequence[Claim], out, old: dict[str, str]) -> str:
    rows = ["| # | claim | seed | verdict | budget |", "|---|---|---|---|---|"]
    for c in sorted(claims, key=lambda c: c.number):
        r = c.cached(out)
        if r is not None:
            verdict, budget = r.verdict, r.budget
        elif c.name in old and "**Verdict:**" in old[c.name]:
            m = re.search(r"\*\*Verdict:\*\* (.*?) —", old[c.name])
            b = re.search(r"\*\*Budget:\*\* `(\w+)`", old[c.name])
            verdict, budget = (m.group(1) if m else "?"), (b.group(1) if b else "?")
        else:
            verdict, budget = "not run yet", ""
        rows.append(f"| {c.number} | [`{c.name}`](#{c.number}-{c.name}) | {c.seed} | {verdict} | {budget} |")
    return "\n".join(rows)
