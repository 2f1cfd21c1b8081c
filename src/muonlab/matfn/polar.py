"""Orthogonalization: the polar factor ``polar(G) = U Vᵀ`` of ``G = U Σ Vᵀ`` and its approximations.

Every function here is pure: tensor in, tensor out, batched over leading dimensions
(``(..., m, n) -> (..., m, n)``), returning the input dtype unless told otherwise. None of them
knows about optimizers, state or ranks.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch
from torch import Tensor

from .coefficients import POLAR_EXPRESS_SAFETY, TABLES, Triple, as_table, schedule

#: Orthogonalization methods accepted by :func:`orthogonalize`.
METHODS = ("newton_schulz", "you5", "you6", "polar_express", "polar_express_4", "svd")

# Default number of steps per method. Keller Jordan: 5. Tuned tables: their length. Polar Express:
# 5, the paper's recommendation for bf16 training (arXiv 2505.16932, "Muon usage").
_DEFAULT_STEPS = {"newton_schulz": 5, "you5": 5, "you6": 6, "polar_express": 5, "polar_express_4": 4}
_DEFAULT_TABLE = {
    "newton_schulz": "jordan",
    "you5": "you5",
    "you6": "you6",
    "polar_express": "polar_express",
    "polar_express_4": "polar_express_4",
}


def _check_matrix(G: Tensor, name: str = "G") -> None:
    if not isinstance(G, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(G).__name__}")
    if G.ndim < 2:
        raise ValueError(
            f"{name} must have at least 2 dimensions (..., m, n), got shape {tuple(G.shape)}"
        )
    if G.is_complex():
        raise ValueError(f"{name} is complex ({G.dtype}); only real matrices are supported")


def newton_schulz(
    G: Tensor,
    coefficients: str | Sequence[float] | Sequence[Sequence[float]] = "jordan",
    steps: int = 5,
    *,
    eps: float = 1e-7,
    norm_safety: float = 1.0,
    compute_dtype: torch.dtype | None = torch.bfloat16,
    out_dtype: torch.dtype | None = None,
    gram: bool | None = None,
    gram_restarts: Sequence[int] | None = None,
    compile: bool = False,
) -> Tensor:
    """Odd quintic Newton–Schulz iteration towards ``polar(G)``.

    Math (per step t, with ``X ∈ R^{..×r×c}`` wide, i.e. ``r ≤ c``)::

        X₀ = G / max(norm_safety·‖G‖_F, eps)        (so σ_max(X₀) ≤ 1)
        A  = X Xᵀ;   B = b_t A + c_t A²;   X ← a_t X + B X

    so each singular value follows ``σ ↦ a_t σ + b_t σ³ + c_t σ⁵`` while U and V are kept.
    Tall inputs are transposed first so every Gram product is ``min(m,n)²``.

    Args:
        G: ``(..., m, n)`` real tensor.
        coefficients: a table name from :data:`muonlab.matfn.coefficients.TABLES`, one
            ``(a, b, c)`` triple (used every step) or a list of per-step triples (the last one is
            repeated when ``steps`` is longer). Default ``"jordan"`` = (3.4445, −4.7750, 2.0315).
        steps: number of iterations (default 5).
        eps: floor of the normalizer (default 1e-7, torch.optim.Muon's); a zero input maps to 0.
        norm_safety: the normalizer is ``norm_safety·‖G‖_F``; Polar Express uses 1.01.
        compute_dtype: dtype of the iteration (default bf16, as torch.optim.Muon); ``None`` keeps
            ``G.dtype``.
        out_dtype: dtype of the result (default ``G.dtype``).
        gram: run the same polynomial on the small Gram matrix (:func:`_iterate_gram`). ``None``
            (default) chooses it when the long side is at least :data:`GRAM_MIN_ASPECT` times the
            short one and the work ``batch·r²·c`` is at least :data:`GRAM_MIN_WORK`, where it is
            faster (on a 2-core CPU, bf16, 5 steps: median of three runs 0.77× the time of the
            plain iteration at 512×2048, 0.72× at 768×3072; docs/benchmarks.md). ``False`` gives torch.optim.Muon's exact
            operation order (bitwise-identical results); ``True`` forces the Gram iteration.
        gram_restarts: steps at which the Gram iteration recomputes ``XXᵀ``; ``None`` (default)
            = :func:`gram_restart_steps` (measured per table and dtype; ``(3,)`` for Keller's 5
            steps in bf16).
        compile: run the iteration through ``torch.compile`` (fullgraph; one compilation per
            shape, dtype and table, cached). Same operations; worth it on GPUs where launch
            overhead matters. Default False.

    Returns:
        Tensor of ``G``'s shape. ``G`` itself is never modified (the computation always works on a
        copy, unlike torch 2.13's in-place normalisation that corrupts bf16 momentum buffers).
    """
    _check_matrix(G)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    table = schedule(as_table(coefficients), steps) if steps else ()
    out_dtype = out_dtype or G.dtype
    if G.numel() == 0:
        return torch.zeros_like(G, dtype=out_dtype)
    X = G.to(compute_dtype) if compute_dtype is not None else G
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT
    if X.ndim == 2:
        norm = X.norm()
    else:
        norm = torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True)
    if norm_safety != 1.0:
        norm = norm * norm_safety
    X = X / norm.clamp(min=eps)  # out of place: G (maybe a state buffer) stays untouched
    if gram is None:
        gram = _gram_pays(X)
    if table and gram:
        restarts = tuple(gram_restart_steps(table, X.dtype) if gram_restarts is None else gram_restarts)
        X = _kernel(True, compile)(X, table, restarts)
    elif table:
        X = _kernel(False, compile)(X, table)
    if tall:
        X = X.mT
    return X.to(out_dtype)


# On an r×c (r ≤ c) matrix with T steps the plain iteration makes T·(2 rectangular + 1 square)
# products, T·(4r²c + 2r³) FLOPs; Gram with one restart makes 4 rectangular and 4T−6 square ones,
# 8r²c + (8T−12)r³: 0.67× at 4:1 and T = 5, break-even at c = 1.5r. It also makes more,
# smaller calls, so on small matrices it loses to call overhead (measured on CPU, bf16: slower up
# to 128×512 alone, 0.68–0.8× from batch·r²·c ≈ 2^25 on). Hence both thresholds.
GRAM_MIN_ASPECT = 2.0
GRAM_MIN_WORK = 2**25


def _gram_pays(X: Tensor) -> bool:
    r, c = X.shape[-2:]
    return c >= GRAM_MIN_ASPECT * r and X.numel() * r >= GRAM_MIN_WORK


def _as_mm_operand(X: Tensor) -> Tensor:
    """One matrix as 2-D (mm/addmm: torch.optim.Muon's exact kernels, and cheaper than a batch of
    one through bmm, which also copies more), several as one 3-D batch."""
    if X.ndim == 2:
        return X
    X = X.reshape(-1, *X.shape[-2:])
    return X[0] if X.size(0) == 1 else X


def _mm(A: Tensor, B: Tensor) -> Tensor:
    if B.dtype in _HALF and B.shape[-1] * B.shape[-2] <= _TINY and not B.is_contiguous():
        # CPU bf16 GEMM with a transposed operand of at most ~8×8 takes milliseconds (measured
        # 16 ms for 6×6 against 5 µs contiguous, torch 2.13); copying the tiny operand costs nothing.
        B = B.contiguous()
    return torch.mm(A, B) if A.ndim == 2 else torch.bmm(A, B)


_HALF = (torch.bfloat16, torch.float16)
_TINY = 256


def _addmm(C: Tensor, A: Tensor, B: Tensor, beta: float, alpha: float = 1.0) -> Tensor:
    """``beta·C + alpha·A B`` with the scalings fused into the product (one rounding)."""
    op = torch.addmm if A.ndim == 2 else torch.baddbmm
    return op(C, A, B, beta=beta, alpha=alpha)


def _iterate(X: Tensor, table: Sequence[Triple]) -> Tensor:
    """Run the quintic steps on a wide X, in torch.optim.Muon's operation order (identical
    rounding for a single matrix)."""
    shape = X.shape
    X = _as_mm_operand(X)
    for a, b, c in table:
        A = _mm(X, X.mT)
        B = _addmm(A, A, A, beta=b, alpha=c)
        X = _addmm(X, B, X, beta=a)
    return X.reshape(shape)


def gram_restart_steps(table: Sequence[Triple], dtype: torch.dtype) -> tuple[int, ...]:
    """Steps at which the Gram iteration recomputes ``X`` and ``R = XXᵀ`` from scratch.

    Between restarts ``R`` is only carried along by the polynomial, so rounding errors in it grow
    by about ``a_t²`` per step; at small eigenvalues they turn into spurious (even negative)
    eigenvalues that the polynomial then amplifies without bound (measured in bf16 without
    restarts: σ up to 2.5e4 on a rank-1 input, 1.7e5 on real momentum matrices). A restart
    replaces ``R`` by a fresh Gram matrix of the current iterate. The schedule is chosen by
    measurement (tiny-GPT momentum matrices plus Gaussian, low-rank and power-law spectra; see
    ``docs/benchmarks.md``), as the one with the fewest restarts that keeps the result as close to
    the exact polynomial as the plain iteration in the same dtype:

    * bf16/fp16: Keller's 5 steps → ``(3,)`` (σ_max within 0.03 of the exact polynomial's, mean
      error equal to the plain iteration's); Polar Express 5 steps → ``(2, 3)``; every other
      table → every second step ``(2, 4, …)`` (worst σ_max excess 0.05 over all our tables). A
      single restart at step 2, the Dao AI Lab's choice for fp16 on GPUs, overshoots by up to
      0.18 (Keller) and 1.3 (Polar Express) in bf16.
    * fp32/fp64: one restart in the middle, ``((T+1)//2,)`` (error 1e-5 of the plain fp32
      iteration's 3e-6; up to 7e-3 without it for Polar Express 8 steps).
    """
    steps = len(table)
    if dtype in (torch.bfloat16, torch.float16):
        key = tuple(tuple(t) for t in table)
        return _HALF_RESTARTS.get(key, tuple(range(2, steps, 2)))
    return ((steps + 1) // 2,) if steps > 2 else ()


# Measured special cases (see gram_restart_steps): the default tables at their default lengths.
_HALF_RESTARTS = {
    schedule(TABLES["jordan"], 5): (3,),
    schedule(TABLES["polar_express"], 5): (2, 3),
}


def _iterate_gram(X: Tensor, table: Sequence[Triple], restarts: Sequence[int] = ()) -> Tensor:
    """The same polynomial as :func:`_iterate`, iterated on the r×r Gram matrix.

    With ``R_t = X_t X_tᵀ`` and ``Z_t = b_t R_t + c_t R_t²`` the plain step is
    ``X_{t+1} = (a_t I + Z_t) X_t``. Every factor is a polynomial in ``R_0``, so they commute:
    ``R_{t+1} = (a_t I + Z_t) R_t (a_t I + Z_t)`` and the product ``Q`` of the factors gives
    ``X_T = Q X_0``. Only the products with ``X`` touch the long side: ``R_0``, ``Q X`` and one
    ``Q X``, ``XXᵀ`` pair per restart (see :func:`gram_restart_steps`). ``a_t I`` is never formed
    on its own except in the first factor of a segment: ``Q ← a_t Q + Q Z_t`` and
    ``R ← a_t (a_t R + R Z_t) + Z_t (a_t R + R Z_t)`` keep the large, exactly known identity part
    out of the low-precision rounding. The idea (and the restart) is the Dao AI Lab's Gram
    Newton–Schulz (2026); the code is written here from the algebra above.
    """
    shape = X.shape
    X = _as_mm_operand(X)
    R = _mm(X, X.mT)
    Q = None
    last = len(table) - 1
    for t, (a, b, c) in enumerate(table):
        if t in restarts and Q is not None:
            X = _mm(Q, X)
            R = _mm(X, X.mT)
            Q = None
        Z = _addmm(R, R, R, beta=b, alpha=c)
        if Q is None:
            Q = Z.clone()
            Q.diagonal(dim1=-2, dim2=-1).add_(a)
        else:
            Q = _addmm(Q, Q, Z, beta=a)
        if t < last and t + 1 not in restarts:
            RZ = _addmm(R, R, Z, beta=a)
            R = _addmm(RZ, Z, RZ, beta=a)
    return _mm(Q, X).reshape(shape)


@functools.cache
def _compiled(fn):
    return torch.compile(fn, fullgraph=True)


def _kernel(gram: bool, compile: bool):
    fn = _iterate_gram if gram else _iterate
    return _compiled(fn) if compile else fn


def polar_svd(G: Tensor, *, rtol: float | None = None, out_dtype: torch.dtype | None = None) -> Tensor:
    """Exact polar factor ``U Vᵀ`` from a thin SVD: the reference every iteration is tested against.

    Computed in float64 for float64 input and float32 otherwise. Singular values at or below
    ``rtol·σ_max`` (default ``max(m, n)·eps`` of the input dtype, at least float32's) map to 0, so rank-deficient and zero inputs
    give the partial isometry on the range of ``G`` and never NaN.
    """
    _check_matrix(G)
    out_dtype = out_dtype or G.dtype
    if G.numel() == 0:
        return torch.zeros_like(G, dtype=out_dtype)
    work = torch.float64 if G.dtype == torch.float64 else torch.float32
    U, S, Vh = torch.linalg.svd(G.to(work), full_matrices=False)
    if rtol is None:
        # Rank is decided at the *input's* precision: a bf16 matrix cannot resolve σ below ~1e-2·σ₁.
        rtol = max(G.shape[-2:]) * max(torch.finfo(work).eps, torch.finfo(G.dtype).eps if G.is_floating_point() else 0.0)
    keep = S > rtol * S[..., :1]
    return ((U * keep.unsqueeze(-2).to(work)) @ Vh).to(out_dtype)


def _name(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _checked(fn, O, expected: tuple[int, ...]) -> Tensor:
    if not isinstance(O, Tensor) or tuple(O.shape) != expected:
        got = tuple(O.shape) if isinstance(O, Tensor) else type(O).__name__
        raise ValueError(
            f"orthogonalizer {_name(fn)} returned {got} for an input of shape {expected}; it must "
            "return a tensor of the input's shape (set fn.batched = True only if it handles (B, m, n) stacks)"
        )
    return O


def user_polar(fn: Callable[[Tensor], Tensor], G: Tensor, out_dtype: torch.dtype | None = None) -> Tensor:
    """Apply a user-supplied orthogonalizer ``fn`` to ``G`` of shape ``(..., m, n)``.

    ``fn`` receives one ``(m, n)`` matrix at a time, in ``G``'s dtype (it handles its own
    precision), unless it has the attribute ``batched = True``: then it receives the whole stack.
    Its result must have the input's shape; it is cast to ``out_dtype`` (default ``G``'s dtype).
    Dion and Emerging-Optimizers accept such callables too; this is the same contract.
    """
    if getattr(fn, "batched", False) or G.ndim == 2:
        return _checked(fn, fn(G), tuple(G.shape)).to(out_dtype or G.dtype)
    shape = tuple(G.shape[-2:])
    O = torch.stack([_checked(fn, fn(x), shape) for x in G.reshape(-1, *shape).unbind(0)])
    return O.reshape(G.shape).to(out_dtype or G.dtype)


def orthogonalize(
    G: Tensor,
    method: str | Callable[[Tensor], Tensor] = "newton_schulz",
    *,
    steps: int | None = None,
    coefficients: str | Sequence[float] | Sequence[Sequence[float]] | None = None,
    eps: float = 1e-7,
    norm_safety: float | None = None,
    compute_dtype: torch.dtype | None = torch.bfloat16,
    out_dtype: torch.dtype | None = None,
    gram: bool | None = None,
    gram_restarts: Sequence[int] | None = None,
    compile: bool = False,
) -> Tensor:
    """Approximate (or exact) polar factor of ``G``, batched over leading dims.

    Methods:
        ``"newton_schulz"`` (default): Keller Jordan's quintic, 5 steps (torch.optim.Muon's).
        ``"you5"`` / ``"you6"``: You Jiacheng's tuned per-step tables (5 / 6 steps).
        ``"polar_express"``: Polar Express per-step minimax table with the 1.01 safety factor and
        normalisation margin (arXiv 2505.16932), 5 steps by default; 8 steps reach 1 ± 1e-3 for
        normalised σ ∈ [1e-3, 1] (in fp32).
        ``"polar_express_4"``: Polar Express re-designed for 4 steps on σ ∈ [1e-2, 1] (band
        [0.977, 1.013] there, vs [0.68, 1.13] for Keller's 5 steps): 20% fewer FLOPs.
        ``"svd"``: the exact ``U Vᵀ`` (:func:`polar_svd`), the reference.

    ``method`` may also be any callable ``X -> polar(X)`` (see :func:`user_polar`); the
    Newton–Schulz options below are then ignored.

    ``coefficients`` overrides the method's table (any Newton–Schulz-type method); ``steps``
    defaults to the method's own count; ``gram`` selects the Gram-matrix iteration (None: by shape,
    see :func:`newton_schulz`). The result has ``G``'s shape and dtype.
    """
    if callable(method):
        return user_polar(method, G, out_dtype)
    if method not in METHODS:
        raise ValueError(f"unknown orthogonalization method {method!r}; choose one of {METHODS}")
    if method == "svd":
        return polar_svd(G, out_dtype=out_dtype)
    table = coefficients if coefficients is not None else TABLES[_DEFAULT_TABLE[method]]
    if steps is None:
        steps = _DEFAULT_STEPS[method]
    if norm_safety is None:
        norm_safety = POLAR_EXPRESS_SAFETY if method.startswith("polar_express") else 1.0
    return newton_schulz(
        G,
        table,
        steps,
        eps=eps,
        norm_safety=norm_safety,
        compute_dtype=compute_dtype,
        out_dtype=out_dtype,
        gram=gram,
        gram_restarts=gram_restarts,
        compile=compile,
    )
