"""Optimizers: rules (the math), the shell (torch.optim bookkeeping), steps and executors.

Importing this package registers the built-in rules in :mod:`muonlab.registry`.
"""

from . import adamw, muon, sgd  # noqa: F401  (registration side effect)
from . import adago, adamuon, muonbp, musgd, normuon, polargrad, trasmuon  # noqa: F401  (family A)
from . import conda, dion, freon, kaon, scion  # noqa: F401  (family B)
from .adamw import AdamW, AdamWRule
from .executor import LocalExecutor
from .muon import Muon, MuonRule
from .rule import ElementwiseRule, MatrixRule, Rule
from .sgd import SGDRule
from .shell import HybridOptimizer
from . import mimuon, spectral_power  # noqa: F401  (registers "mimuon", "spectral_power")

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
