"""muonlab: Muon-family spectral optimizers for PyTorch.

Public API (one name per line, so the surface stays reviewable)::

    orthogonalize, newton_schulz, polar_svd       matrix functions (muonlab.matfn)
    spectral_power                                U Σᵖ Vᵀ
    Muon, AdamW, HybridOptimizer                  torch.optim optimizers
    EF21Muon                                      Muon with compressed, error-fed-back workers
    LocalExecutor, DistributedExecutor            where the matrix work of a step runs
    DiLoCo, MuLoCo, DiLoCoSimulator               local-SGD outer loop around any optimizer
    create_optimizer, classify, routing_summary   one optimizer for a whole model
    scion_param_groups                            Scion's geometry for every role
    transfer.mup_overrides                        µP width transfer (per-layer lr multipliers)
    available_optimizers, get_spec                the registry
"""

from . import (
    diagnostics,  # muonlab.diagnostics.spectral_stats / SpectralProbe after `import muonlab`
    transfer,  # muonlab.transfer.mup_overrides: per-layer µP learning rates
)
from .matfn import newton_schulz, orthogonalize, polar_svd, spectral_power
from .optim import AdamW, HybridOptimizer, LocalExecutor, Muon
from .optim import executor as _executor
from .optim.ef21_muon import EF21Muon
from .registry import available_optimizers, get_spec
from .routing import (
    Role,
    check_coverage,
    classify,
    create_optimizer,
    routing_summary,
    scion_param_groups,
)

__version__ = "0.1.0"


def _sharded_executor(params):
    # The distributed package sits above the optimizer core, so the core asks this hook for the
    # executor of DTensor (FSDP2) parameters; imported lazily (torch.distributed.tensor costs
    # ~0.5 s to import, and a process with DTensors has paid it already).
    from .distributed import DistributedExecutor

    return DistributedExecutor()


_executor.sharded_executor_factory = _sharded_executor


_LAZY = ("DistributedExecutor", "DiLoCo", "MuLoCo", "DiLoCoSimulator")


def __getattr__(name: str):
    if name in _LAZY:  # lazy, see above
        from . import distributed

        return getattr(distributed, name)
    raise AttributeError(f"module 'muonlab' has no attribute {name!r}")


__all__ = [
    "AdamW",
    "DiLoCo",
    "DiLoCoSimulator",
    "DistributedExecutor",
    "EF21Muon",
    "HybridOptimizer",
    "LocalExecutor",
    "MuLoCo",
    "Muon",
    "Role",
    "__version__",
    "available_optimizers",
    "check_coverage",
    "classify",
    "create_optimizer",
    "diagnostics",
    "get_spec",
    "newton_schulz",
    "orthogonalize",
    "polar_svd",
    "routing_summary",
    "scion_param_groups",
    "spectral_power",
    "transfer",
]
