"""The claims lab (issue 9): each claim in the seed documents, reproduced with one command and a
verdict. ``muonlab claims [NAME ...] [--budget small|full]`` runs them and writes docs/claims.md.

:data:`CLAIMS` maps a claim's name to its :class:`~muonlab.claims.base.Claim`; modules group
related claims (``mimuon``: 1–3, ``training``: 4, 7–9, 11–13, ``sensing``: 5, 6, 10).
"""

from __future__ import annotations

from .base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, VERDICTS, Claim, ClaimResult, Context
from . import mimuon, sensing, training

CLAIMS: dict[str, Claim] = {c.name: c for c in sorted(mimuon.CLAIMS + sensing.CLAIMS + training.CLAIMS,
                                                      key=lambda c: c.number)}


def get_claim(name: str) -> Claim:
    """The claim registered as ``name`` (or its number); ValueError listing the choices otherwise."""
    if name.isdigit():
        for c in CLAIMS.values():
            if c.number == int(name):
                return c
    try:
        return CLAIMS[name]
    except KeyError:
        raise ValueError(f"unknown claim {name!r}; claims: {', '.join(CLAIMS)}") from None


__all__ = ["CLAIMS", "Claim", "ClaimResult", "Context", "INCONCLUSIVE", "NOT_SUPPORTED", "SUPPORTED",
           "VERDICTS", "get_claim"]
