"""Helpers of the parity suite: one float64 problem, a shared polar factor, and loaders for the
upstream packages that need care to import (nothing here is copied from them).

* :class:`Problem`: the same float64 least-squares problem for both optimizers of a pair, with a
  deterministic per-step gradient noise, so trajectories feed back through the parameters.
* :func:`polar64`: the exact polar factor (float64 SVD, muonlab's ``"svd"`` orthogonalizer) that
  replaces an upstream's Newton–Schulz when the pair shares an orthogonalizer; ours runs with
  ``orthogonalizer="svd", compute_dtype="float64"``.
* :func:`float64_torch`: a stand-in for the ``torch`` module inside an upstream module whose
  state is hard-wired to float32 (trasmuon): it answers ``float32``/``bfloat16`` with ``float64``.
* :func:`load_module_by_path`: import one file of a package without running the package's
  ``__init__`` (ultralytics' needs cv2; trasmuon's needs triton), optionally with stub modules.
* :func:`import_emerging_optimizers`: emerging_optimizers 0.3.0 imports ``typing.override``
  (Python ≥ 3.12) and an optional Triton kernel module; on Python 3.11 it gets
  ``typing_extensions.override`` and, without triton, a stub (the loader of
  :mod:`muonlab.bench.anchors`, which the benchmarks use too).

Every loader calls ``pytest.importorskip`` (or skips) when its package is absent.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

import muonlab

SHAPES = ((12, 8), (6, 10), (16, 16), (10, 5))  # tall, wide, square, and fewer than 8 columns
STEPS = 20

# ---- the problem ----------------------------------------------------------------------------------


class Problem:
    """``L(W) = Σ_i ½‖(W_i − T_i) A_i‖_F²`` in float64, gradients ``(W_i − T_i) A_i A_iᵀ + σ ξ_{i,t}``.

    The noise ``ξ_{i,t}`` is a fixed function of (seed, i, t), so both optimizers of a pair see the
    same gradients up to the rounding differences of their parameters. ``feedback=False`` drops the
    quadratic (A = 0): the gradients are then the noise alone, the same for any trajectory, which
    lets a test compare per-step updates of two optimizers that are known to take different steps.
    """

    def __init__(self, shapes=SHAPES, seed: int = 0, noise: float = 0.3, scale: float = 1.0,
                 feedback: bool = True):
        g = torch.Generator().manual_seed(seed)
        self.shapes = tuple(shapes)
        self.seed, self.noise, self.scale = seed, noise, scale
        self.W0 = [torch.randn(*s, generator=g, dtype=torch.float64) for s in self.shapes]
        self.T = [torch.randn(*s, generator=g, dtype=torch.float64) for s in self.shapes]
        self.H = []
        for _, n in self.shapes:
            A = torch.randn(n, n, generator=g, dtype=torch.float64) / n**0.5
            H = A @ A.T + 0.1 * torch.eye(n, dtype=torch.float64)
            self.H.append(H if feedback else torch.zeros_like(H))

    def params(self) -> list[torch.nn.Parameter]:
        return [torch.nn.Parameter(w.clone()) for w in self.W0]

    def grads(self, params, t: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(10_000 * self.seed + t)
        out = []
        for p, T, H in zip(params, self.T, self.H):
            xi = torch.randn(p.shape, generator=g, dtype=torch.float64)
            out.append(self.scale * ((p.detach() - T) @ H + self.noise * xi))
        return out


def run(make_opt, problem: Problem, steps: int = STEPS, *, schedule=None) -> list[torch.Tensor]:
    """Train ``problem``'s fresh parameters with ``make_opt(params)`` for ``steps``; final params.

    Each step sets fresh gradient tensors (some upstreams modify ``p.grad`` in place or clear it).
    ``schedule(opt)`` may build an lr scheduler, stepped after every optimizer step.
    """
    params = problem.params()
    opt = make_opt(params)
    sched = schedule(opt) if schedule else None
    for t in range(steps):
        for p, gr in zip(params, problem.grads(params, t)):
            p.grad = gr
        opt.step()
        if sched is not None:
            sched.step()
    return [p.detach().clone() for p in params]


def run_updates(make_opt, problem: Problem, steps: int = STEPS) -> list[list[torch.Tensor]]:
    """Like :func:`run`, but returns every step's parameter change ``W_{t+1} − W_t``."""
    params = problem.params()
    opt = make_opt(params)
    out = []
    for t in range(steps):
        before = [p.detach().clone() for p in params]
        for p, gr in zip(params, problem.grads(params, t)):
            p.grad = gr
        opt.step()
        out.append([p.detach() - b for p, b in zip(params, before)])
    return out


def rel_diff(ours, theirs, problem: Problem) -> float:
    """max_i ‖W_ours − W_theirs‖ / ‖W_theirs − W_0‖: the difference relative to the distance moved."""
    return max(
        ((a - b).norm() / (b - w0).norm()).item() for a, b, w0 in zip(ours, theirs, problem.W0)
    )


# ---- a shared orthogonalizer ----------------------------------------------------------------------

#: Our side of a pair that shares the exact polar factor.
EXACT = dict(orthogonalizer="svd", compute_dtype="float64")


def polar64(G: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """The exact polar factor of ``G`` (batched), computed in float64, in ``G``'s dtype; extra
    arguments (an upstream's step count, coefficients, eps) are ignored: the polar factor is the
    limit every Newton–Schulz variant approximates."""
    return muonlab.orthogonalize(G.to(torch.float64), "svd").to(G.dtype)


# ---- float64 inside a float32-only module -------------------------------------------------------


def float64_torch() -> types.ModuleType:
    """A ``torch`` stand-in: every attribute is torch's, but ``float32`` and ``bfloat16`` are
    ``float64`` (for upstream code that allocates its state and casts its updates to float32)."""

    class _Torch64(types.ModuleType):
        float32 = torch.float64
        bfloat16 = torch.float64
        float16 = torch.float64

        def __getattr__(self, name):
            return getattr(torch, name)

    return _Torch64("torch")


# ---- loading upstream files ---------------------------------------------------------------------


def package_dir(name: str) -> Path:
    """Directory of an installed package, found without importing it; skips when absent."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def load_module_by_path(alias: str, path: Path, stubs: dict[str, types.ModuleType] | None = None):
    """Execute ``path`` as the module ``alias`` (a fresh copy: module globals patched by a test
    never leak into the installed package). ``alias`` may be dotted: its parent becomes a
    namespace package rooted at ``path``'s folder, so the file's relative imports resolve there;
    ``stubs`` (``{short name: module}``) are registered under the parent first."""
    parent, _, _ = alias.rpartition(".")
    if parent and parent not in sys.modules:
        pkg = types.ModuleType(parent)
        pkg.__path__ = [str(path.parent)]
        sys.modules[parent] = pkg
    for short, mod in (stubs or {}).items():
        sys.modules[f"{parent}.{short}"] = mod
    spec = importlib.util.spec_from_file_location(alias, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as e:  # a dependency of that file is missing: skip, do not fail
        sys.modules.pop(alias, None)
        pytest.skip(f"cannot import {path.name}: {e}")
    return module


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _stub(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


def _unavailable(*_, **__):
    raise RuntimeError("this kernel is stubbed out in muonlab's parity tests")


_TRASMUON = {}


def trasmuon64():
    """trasmuon-pytorch's ``TrasMuon`` (v2.1) computing in float64 with the exact polar factor.

    A fresh copy of ``trasmuon/optimizer.py`` whose ``torch`` is :func:`float64_torch` (its state
    and casts are float32 by construction) and whose Newton–Schulz (bf16, You's coefficients) is
    :func:`polar64`. Its Triton kernel module is stubbed when triton is absent.
    """
    if "cls" not in _TRASMUON:
        root = package_dir("trasmuon")
        stubs = {} if _has("triton") else {"newton_schulz_triton": _stub("newton_schulz_triton",
                                                                         newton_schulz_triton=_unavailable)}
        mod = load_module_by_path("_muonlab_parity_trasmuon.optimizer", root / "optimizer.py", stubs)
        mod.torch = float64_torch()
        mod._ns_orthogonalize_fp32 = lambda G, *, ns_iters, eps, use_triton: polar64(G)
        _TRASMUON["cls"] = mod.TrasMuon
    return _TRASMUON["cls"]


def ultralytics_musgd():
    """``MuSGD`` from ultralytics' ``ultralytics/optim/muon.py``, loaded by path (the package's
    ``__init__`` needs cv2) as a fresh module; returns the module (its NS function can be patched)."""
    root = package_dir("ultralytics")
    path = root / "optim" / "muon.py"
    if not path.exists():
        pytest.skip("this ultralytics has no optim/muon.py")
    return load_module_by_path("_muonlab_parity_ultralytics.muon", path)


def import_emerging_optimizers():
    """``emerging_optimizers.orthogonalized_optimizers``, importable on Python 3.11 through the
    benchmarks' loader (:func:`muonlab.bench.anchors.import_emerging_optimizers`: ``typing.override``
    from typing_extensions while it imports, its optional Triton kernels stubbed); skips when the
    package is absent or does not import."""
    from muonlab.bench.anchors import import_emerging_optimizers as load

    try:
        return load()
    except ImportError as e:
        pytest.skip(f"emerging_optimizers does not import here: {e}")
