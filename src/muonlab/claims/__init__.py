"""The claims lab: each testable claim of the seed documents, reproduced with one command and a
verdict. ``muonlab claims [NAME ...] [--budget small|full]`` runs them and writes docs/claims.md.

:data:`CLAIMS` maps a claim's name to its :class:`~muonlab.claims.base.Claim`. Every module of this
package that defines a ``CLAIMS`` list contributes its claims (discovered, so adding a module is
all it takes); the statistics behind every verdict are :mod:`muonlab.lab.inference`.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import INCONCLUSIVE, NOT_SUPPORTED, NOT_TESTED, SUPPORTED, VERDICTS, Claim, ClaimResult, Context


def _discover() -> dict[str, Claim]:
    found: list[Claim] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found += getattr(module, "CLAIMS", [])
    numbers = [c.number for c in found]
    clash = sorted({n for n in numbers if numbers.count(n) > 1})
    if clash:
        raise RuntimeError(f"claim numbers registered twice: {clash}")
    return {c.name: c for c in sorted(found, key=lambda c: c.number)}


CLAIMS: dict[str, Claim] = _discover()


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


__all__ = ["CLAIMS", "Claim", "ClaimResult", "Context", "INCONCLUSIVE", "NOT_SUPPORTED", "NOT_TESTED",
           "SUPPORTED", "VERDICTS", "get_claim"]
