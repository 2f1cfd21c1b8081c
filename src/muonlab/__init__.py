"""muonlab: Muon-family spectral optimizers for PyTorch.

Public API (one name per line, so the surface stays reviewable)::

    orthogonalize, newton_schulz, polar_svd       matrix functions (muonlab.matfn)
    spectral_power                                U Σᵖ Vᵀ
    Muon, AdamW, HybridOptimizer                  torch.optim optimizers
    LocalExecutor, DistributedExecutor            where the matrix work of a step runs
    create_optimizer, classify, routing_summary   one optimizer for a whole model
    scion_param_groups                            Scion's geometry for every role
    available_optimizers, get_spec                the registry
"""

from .matfn import newton_schulz, orthogonalize, polar_svd
from .matfn import spectral_power
from .optim import AdamW, HybridOptimizer, LocalExecutor, Muon
from .optim import executor as _executor
from .registry import available_optimizers, get_spec
from .routing import Role, check_coverage, classify, create_optimizer, routing_summary, scion_param_groups
from . import diagnostics  # muonlab.diagnostics.spectral_stats / SpectralProbe after `import muonlab`

__version__ = "0.1.0"


def _sharded_executor(params):
    # The distributed package sits above the optimizer core, so the core asks this hook for the
    # executor of DTensor (FSDP2) parameters; imported lazily (torch.distributed.tensor costs
    # ~0.5 s to import, and a process with DTensors has paid it already).
    from .distributed import DistributedExecutor

    return DistributedExecutor()


_executor.sharded_executor_factory = _sharded_executor


def __getattr__(name: str):
    if name == "DistributedExecutor":  # lazy, see above
        from .distributed import DistributedExecutor

        return DistributedExecutor
    raise AttributeError(f"module 'muonlab' has no attribute {name!r}")


__all__ = [
    "AdamW",
    "DistributedExecutor",
    "HybridOptimizer",
    "LocalExecutor",
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
    "scion_param_groups",
    "spectral_power",
    "__version__",
]
