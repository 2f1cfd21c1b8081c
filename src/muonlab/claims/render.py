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
from ..lab.inference import Interval
from .base import Claim, ClaimResult

HEADER = """# The claims lab

Each testable claim of the seed documents, reproduced with one command and a verdict computed from
the numbers by a rule fixed before the run. The seeds: 000 MiMuon (Huang, Luo, Chen, arXiv
2605.19619); 001 hyperparameter transfer (Qiu, Chen, Phan, Lei, Wilson, arXiv 2512.05620, and the
papers it lists); 002 spectral power (Qi et al., "Delving into Muon and Beyond", arXiv 2602.04669);
003 spectral dynamics (Beneventano, Abdelmoneum, Poggio, "The Spectral Dynamics and Noise Geometry
of Muon", arXiv 2606.08388); 004 the "Awesome Muon Optimizer" reading list.

**How a verdict is reached.** Every claim states one pre-registered *primary* test and, where the
claim has several parts, further *voted* parts; *reported* parts are shown but do not vote. Each
part is a one-sided test at level 0.025 (so it agrees with the 95% interval shown): Student-t
intervals of a mean, of paired differences (arms that share seeds or problem instances are
paired), Welch's interval for unpaired arms, t intervals of log-ratios for ratios and of OLS slopes
for rates; "the same as" claims are equivalence tests (TOST) with a stated margin; win counts use
an exact sign test. No interval is a percentile bootstrap. Holm's correction runs over the voted
parts of a claim. The verdict is **supported** when every voted part holds after the correction,
**not supported** when some part is significantly on the wrong side (or outside an equivalence
margin), **inconclusive at this scale** otherwise, and **not tested in this regime** when the lab
cannot run the regime the seed speaks about. Absence of evidence never counts as support.

**Tuning.** Every arm gets its own learning-rate grid centred on its own prior optimum, run on
tuning seeds separate from the evaluation seeds; a grid whose optimum lands on an edge is extended
past it automatically, and an arm whose optimum is still on an edge cannot vote (its tests become
untestable and say why). Claims that measure an LR plateau run the grid on the evaluation seeds
and extend it until the plateau is interior too.

**Scale.** The `small` budget runs on 2 CPU cores in at most 15 minutes per claim with at least 8
seeds (or problem instances) per arm; it is far from the seeds' scale, and a verdict speaks only
for the budget that produced it (named in each section). `full` is sized for one GPU for about ten
minutes. Regenerate with `muonlab claims [NAME ...] [--budget small|full]`; the statistics are
`muonlab.lab.inference`.

"""


def section(claim: Claim, result: ClaimResult | None) -> str:
    """The Markdown section of ``claim`` (with its markers)."""
    lines = [f"<!-- claim:{claim.name} -->", f"## {claim.number}. `{claim.name}` (seed {claim.seed})", "",
             f"> {claim.quote}", "", f"**Setup.** {claim.setup}", ""]
    if result is None:
        lines += ["**Status:** not run yet.", ""]
    else:
        if math.isfinite(result.run_seconds) and result.n_runs:
            cost = (f"{result.n_runs} training runs, {result.run_seconds / 60:.1f} min of training and evaluation "
                    f"summed over them; {result.seconds / 60:.1f} min wall clock for this call")
        else:
            cost = f"{result.seconds / 60:.1f} min wall clock"
        lines += [f"**Budget:** `{result.budget}` — {cost}; {result.seeds} seeds or instances per arm.", ""]
        lines += result.table + [""]
        lines += [f"![{claim.name}]({p})" for p in result.plots]
        if result.plots:
            lines.append("")
        if result.tuning:
            lines += ["**Tuning** (each arm's own grid; *extended* = points added past an edge):", ""]
            lines += ["| arm | grid | points | extended | best lr | located |", "|---|---|---|---|---|---|"]
            lines += [f"| {t['arm']} | {t['grid'][0]:g} … {t['grid'][-1]:g} | {len(t['grid'])} | {t['extended']} | "
                      f"{t['lr']:g} | {'yes' if t['located'] else '**no** (on an edge)'} |" for t in result.tuning]
            lines.append("")
        if result.tests:
            lines += ["**Tests** (95% intervals; p one-sided, Holm-adjusted over the voted parts):", "",
                      "| part | role | estimate [95% CI] | p | Holm p | result |", "|---|---|---|---|---|---|"]
            for t in result.tests:
                role = "primary" if t["primary"] else "voted" if t["voted"] else "reported"
                iv = Interval(**t["interval"])
                note = f" ({t['note']})" if t.get("note") else ""
                cell = f"{t['name']}{note}".replace("|", "\\|")  # a pipe would end the Markdown cell
                lines.append(f"| {cell} | {role} | {iv.fmt()} ({iv.method}) | {_p(t['p_for'])} | "
                             f"{_p(t['p_for_holm']) if t['voted'] else '—'} | {t['verdict']} |")
            lines.append("")
        lines += [f"**Rule.** {result.rule}", "", f"**Verdict:** {result.verdict} (`{result.budget}` budget)", ""]
    lines += ["Reproduce: `" + claim.command("small") + "` (GPU: `" + claim.command("full") + "`)", "",
              f"<!-- /claim:{claim.name} -->"]
    return "\n".join(lines)


def _p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "—"
    return f"{p:.2g}" if p >= 1e-4 else "<1e-4"


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
    rows = ["| # | claim | seed | verdict | budget | seeds per arm |", "|---|---|---|---|---|---|"]
    for c in sorted(claims, key=lambda c: c.number):
        r = c.cached(out)
        seeds = ""
        if r is not None:
            verdict, budget, seeds = r.verdict, r.budget, r.seeds
        elif c.name in old and "**Verdict:**" in old[c.name]:
            m = re.search(r"\*\*Verdict:\*\* (.*?) \(`", old[c.name])
            b = re.search(r"\*\*Budget:\*\* `(\w+)`", old[c.name])
            verdict, budget = (m.group(1) if m else "?"), (b.group(1) if b else "?")
        else:
            verdict, budget = "not run yet", ""
        rows.append(f"| {c.number} | [`{c.name}`](#{c.number}-{c.name}) | {c.seed} | {verdict} | {budget} | {seeds} |")
    return "\n".join(rows)
