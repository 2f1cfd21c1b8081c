"""Reproducible randomness for update rules: every draw is a pure function of integers.

Randomised rules (MiMuon's Bernoulli branch, Dion's initial Q, Kaon's spectrum) never keep a
stateful generator: a draw depends only on (seed hyperparameter, a stable per-parameter key, step,
matrix index). So runs are reproducible, independent of batching and order, and bitwise identical
after a ``state_dict`` round trip.
"""

from __future__ import annotations

import zlib

import torch
from torch import Tensor


def param_key(p: Tensor, group: dict) -> int:
    """A stable integer per parameter: CRC-32 of its name if the group has names, else its index."""
    index = next(i for i, q in enumerate(group["params"]) if q is p)
    names = group.get("param_names")
    return zlib.crc32(names[index].encode()) if names else index


_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """SplitMix64's finaliser (Steele, Lea, Flood, OOPSLA 2014; constants from Vigna's public-domain
    reference): a bijective avalanche on 64-bit integers."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def counter_uniform(seed: int, step: int, key: int, index: int = 0) -> float:
    """A uniform number in [0, 1) that depends only on its arguments (counter-based, no state)."""
    x = _mix64(seed)
    for v in (step, key, index):
        x = _mix64(x ^ (v & _MASK64))
    return (x >> 11) / float(1 << 53)


_MASK63 = (1 << 63) - 1


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator whose seed depends only on ``keys`` (e.g. seed, parameter key, step)."""
    s = 0x2545F4914F6CDD1D
    for k in keys:
        s = ((s ^ (int(k) & _MASK63)) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _MASK63
    return torch.Generator().manual_seed(s)
