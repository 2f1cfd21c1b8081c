"""The other packages' Muon pieces the benchmarks run side by side with muonlab's, loaded lazily.

Each loader imports its package on first use and raises ``ImportError`` (with the package to
install) when it is missing, so a benchmark skips that anchor with a note instead of failing.

emerging-optimizers 0.3 declares Python >= 3.12: on 3.11 it only lacks ``typing.override``
(given ``typing_extensions.override`` for the duration of the import, then removed again), and it
imports its optional Triton SYRK kernels unconditionally; without Triton those are replaced by a
stub module with ``HAS_TRITON_340 = False``, the package's own switch to its PyTorch fallback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import typing
from collections.abc import Callable

import torch
from torch import Tensor

#: Keller Jordan's quintic coefficients, torch.optim.Muon's and pytorch_optimizer's default.
KELLER = (3.4445, -4.7750, 2.0315)


def _require(package: str, pip_name: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise ImportError(f"{package} is not installed (pip install {pip_name})")


def import_emerging_optimizers() -> types.ModuleType:
    """``emerging_optimizers.orthogonalized_optimizers``, importable on Python 3.11 (see the module
    docstring); ImportError when the package is missing or still does not import."""
    _require("emerging_optimizers", "emerging-optimizers")
    added = False
    if not hasattr(typing, "override"):
        try:
            import typing_extensions
        except ImportError as e:
            raise ImportError("emerging_optimizers needs typing.override: Python >= 3.12 or "
                              "pip install typing_extensions") from e
        typing.override = typing_extensions.override
        added = True
    try:
        if importlib.util.find_spec("triton") is None:
            name = "emerging_optimizers.triton_kernels"
            stub = types.ModuleType(name)
            stub.__path__ = []
            stub.HAS_TRITON_340 = False
            sys.modules.setdefault(name, stub)
        return importlib.import_module("emerging_optimizers.orthogonalized_optimizers")
    finally:
        if added:
            del typing.override  # the package bound it at import; nothing else should see it


def heavyball_eager() -> types.ModuleType:
    """heavyball with its ``torch.compile`` wrappers off (eager), as every benchmark here runs it:
    its default mode ("max-autotune-no-cudagraphs") compiles for minutes per shape."""
    _require("heavyball", "heavyball")
    import heavyball

    heavyball.utils.compile_mode = None
    return heavyball


def orthogonalizers() -> dict[str, Callable[[], Callable[[Tensor], Tensor]]]:
    """Name → loader of each anchor's 5-step Newton–Schulz as ``f(G) -> O`` (bf16 inside, their
    own coefficients; torch's takes 2-D matrices only). A loader raises ImportError when missing."""

    def torch_muon():
        from torch.optim._muon import _zeropower_via_newtonschulz

        def f(G: Tensor) -> Tensor:
            if G.ndim != 2:
                raise ValueError("torch.optim.Muon's Newton–Schulz takes 2-D matrices only")
            return _zeropower_via_newtonschulz(G, KELLER, 5, 1e-7)
        return f

    def heavyball():
        hb = heavyball_eager()
        return lambda G: hb.utils.zeropower_via_newtonschulz5(G, 5)

    def pytorch_optimizer():
        _require("pytorch_optimizer", "pytorch-optimizer")
        from pytorch_optimizer.optimizer.utils.matrix import (
            zero_power_via_newton_schulz_5,
        )

        return lambda G: zero_power_via_newton_schulz_5(G, 5)

    def emerging():
        import_emerging_optimizers()
        from emerging_optimizers.orthogonalized_optimizers.muon_utils import (
            newton_schulz,
        )

        def f(G: Tensor) -> Tensor:
            # Its optimizers run the iteration in bf16 by setting float32 matmul precision "medium"
            # around it (the function takes float32 only); do the same.
            before = torch.get_float32_matmul_precision()
            torch.set_float32_matmul_precision("medium")
            try:
                return newton_schulz(G.float(), 5, "quintic")
            finally:
                torch.set_float32_matmul_precision(before)
        return f

    return {"torch.optim.Muon": torch_muon, "heavyball": heavyball, "pytorch_optimizer": pytorch_optimizer,
            "emerging_optimizers": emerging}
