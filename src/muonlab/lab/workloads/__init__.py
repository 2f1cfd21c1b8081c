"""The workload registry: name → Workload class, one readable file per workload.

Adding a workload is one file and one entry in ``_CLASSES``. Heavy imports (scikit-learn,
transformers, cvxpy) happen inside the workloads' methods, so listing them is cheap.
"""

from __future__ import annotations

from typing import Any

from ..workload import Workload, coerce_knob, knob_types
from .assoc_memory import AssocMemory
from .cnn_digits import CNNDigits
from .convex_lipschitz import ConvexLipschitz
from .hf_causal_lm import HFCausalLM
from .imbalanced_digits import ImbalancedDigits
from .matrix_sensing import MatrixSensing
from .mlp_digits import MLPDigits
from .modular_arith import ModularArith
from .sensing_directions import SensingDirections
from .tiny_gpt import TinyGPT
from .vit_digits import ViTDigits

_CLASSES: tuple[type[Workload], ...] = (TinyGPT, ViTDigits, MLPDigits, CNNDigits, MatrixSensing, HFCausalLM,
                                        ModularArith, ImbalancedDigits, SensingDirections, AssocMemory,
                                        ConvexLipschitz)
WORKLOADS: dict[str, type[Workload]] = {cls.name: cls for cls in _CLASSES}


def available_workloads() -> list[str]:
    """Names of all workloads, sorted."""
    return sorted(WORKLOADS)


def get_workload(name: str) -> type[Workload]:
    """The workload class registered as ``name``; ValueError listing the choices otherwise."""
    try:
        return WORKLOADS[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; available: {', '.join(available_workloads())}") from None


def make_workload(name: str, **knobs: Any) -> Workload:
    """An instance of workload ``name`` with ``knobs`` checked and coerced to their declared types.

    Example::

        >>> make_workload("tiny_gpt", width=64, depth=2).knobs()["width"]
        64
    """
    cls = get_workload(name)
    return cls(**{k: coerce_knob(cls, k, v) for k, v in knobs.items()})


__all__ = ["WORKLOADS", "Workload", "available_workloads", "get_workload", "knob_types", "make_workload"]
