"""Optimizers: rules (the math), the shell (torch.optim bookkeeping), steps and executors.

Every module of this package is imported here, and each method module registers its rule in
:mod:`muonlab.registry` at import: a new method is a new file, with no list to keep up to date.
"""

import importlib
import pkgutil

from .adamw import AdamW, AdamWRule
from .executor import LocalExecutor
from .muon import Muon, MuonRule
from .rule import ElementwiseRule, MatrixRule, Rule
from .sgd import SGDRule
from .shell import HybridOptimizer
from .state import Slot

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

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
    "Slot",
]
