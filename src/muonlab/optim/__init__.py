"""Optimizers: rules (the math), the shell (torch.optim bookkeeping), steps and executors.

Importing this package registers the built-in rules in :mod:`muonlab.registry`.
"""

from . import adamw, muon, sgd  # noqa: F401  (registration side effect)
from .adamw import AdamW, AdamWRule
from .executor import LocalExecutor
from .muon import Muon, MuonRule
from .rule import ElementwiseRule, MatrixRule, Rule
from .sgd import SGDRule
from .shell import HybridOptimizer

__all__ = [
    "AdamW",
    "AdamWRule",
    "ElementwiseRule",
    "HybridOptimizer",
    "LocalExecutor",
    "MatrixRule",
    "Muon",
    "MuonRule",
    "Rule",
    "SGDRule",
]
