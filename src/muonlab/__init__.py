"""muonlab: Muon-family spectral optimizers for PyTorch.

Public API (one name per line, so the surface stays reviewable)::

    orthogonalize, newton_schulz, polar_svd       matrix functions (muonlab.matfn)
    Muon, AdamW, HybridOptimizer                  torch.optim optimizers
    create_optimizer, classify, routing_summary   one optimizer for a whole model
    available_optimizers, get_spec                the registry
"""

from .matfn import newton_schulz, orthogonalize, polar_svd
from .matfn import spectral_power
from .optim import AdamW, HybridOptimizer, Muon
from .registry import available_optimizers, get_spec
from .routing import Role, check_coverage, classify, create_optimizer, routing_summary
from . import diagnostics  # muonlab.diagnostics.spectral_stats / SpectralProbe after `import muonlab`

__version__ = "0.1.0"

__all__ = [
    "AdamW",
    "HybridOptimizer",
    "Muon",
    "Role",
    "available_optimizers",
    "check_coverage",
    "classify",
    "create_optimizer",
    "get_spec",
    "newton_schulz",
    "orthogonalize",
    "polar_svd",
    "routing_summary",
    "spectral_power",
    "__version__",
]
