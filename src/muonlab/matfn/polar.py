"""Orthogonalization: the polar factor ``polar(G) = U Vᵀ`` of ``G = U Σ Vᵀ`` and its approximations.

Every function here is pure: tensor in, tensor out, batched over leading dimensions
(``(..., m, n) -> (..., m, n)``), returning the input dtype unless told otherwise. None of them
knows about optimizers, state or ranks.
"""

from __future__ import annotations

import functools
from typing import Sequence

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
            (default) chooses it for float32/float64 iterations whose long side is at least
            :data:`GRAM_MIN_ASPECT` times the short one, where it needs fewer FLOPs. With a bf16/fp16
            ``compute_dtype`` it runs in float32 (``R = XXᵀ`` squares the condition number and bf16
            rounding makes it diverge on low-rank inputs), so there it is opt-in and slower.
            ``False`` gives torch.optim.Muon's exact operation order.
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
        gram = X.dtype in (torch.float32, torch.float64) and X.size(-1) >= GRAM_MIN_ASPECT * X.size(-2)
    if table:
        X = _kernel(gram, compile)(X, table)
    if tall:
        X = X.mT
    return X.to(out_dtype)


# Gram Newton–Schulz costs 2·r²c + (4T−3)·r³ against T·(2·r²c + r³) for the plain iteration on
# an r×c (r ≤ c) matrix with T steps: it wins once c ≥ 1.5 r. We switch at 2 to leave margin for
# its extra small-matrix calls (measured in docs/benchmarks.md, `muonlab bench orth`).
GRAM_MIN_ASPECT = 2.0


def _iterate(X: Tensor, table: Sequence[Triple]) -> Tensor:
    """Run the quintic steps on a wide X. addmm/baddbmm fuse the scalings into the products,
    giving the same rounding as torch.optim.Muon in the 2-D case."""
    if X.ndim == 2:
        for a, b, c in table:
            A = X @ X.T
            B = torch.addmm(A, A, A, beta=b, alpha=c)
            X = torch.addmm(X, B, X, beta=a)
        return X
    lead = X.shape[:-2]
    X = X.reshape(-1, *X.shape[-2:])
    for a, b, c in table:
        A = torch.bmm(X, X.mT)
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a)
    return X.reshape(*lead, *X.shape[-2:])


def _iterate_gram(X: Tensor, table: Sequence[Triple]) -> Tensor:
    """The same polynomial as :func:`_iterate`, iterated on the r×r Gram matrix.

    With ``R_t = X_t X_tᵀ`` and ``M_t = a_t I + b_t R_t + c_t R_t²`` the plain step is
    ``X_{t+1} = M_t X_t``. Every ``M_t`` is a polynomial in ``R_0``, so they commute and
    ``R_{t+1} = M_t R_t M_t``; accumulating ``Q = M_{T−1}⋯M_0`` gives ``X_T = Q X_0``. Only two
    products touch the long side (``R_0`` and ``Q X_0``). This is the idea of Gram Newton–Schulz
    (Dao AI Lab, "Gram Newton–Schulz", 2026), written here from the algebra above.
    """
    if X.ndim > 3:
        return _iterate_gram(X.reshape(-1, *X.shape[-2:]), table).reshape(X.shape)
    if X.dtype in (torch.bfloat16, torch.float16):
        # R = XXᵀ squares the condition number: bf16 rounding gives R small *negative* eigenvalues
        # on low-rank inputs, which the polynomial then amplifies without bound (measured: σ up to
        # 2.5e4 on a rank-1 input, NaN within a few training steps). So the Gram iteration always
        # runs in float32.
        return _iterate_gram(X.float(), table).to(X.dtype)
    R = X @ X.mT
    Q = None
    last = len(table) - 1
    for t, (a, b, c) in enumerate(table):
        M = torch.baddbmm(R, R, R, beta=b, alpha=c) if R.ndim == 3 else torch.addmm(R, R, R, beta=b, alpha=c)
        M.diagonal(dim1=-2, dim2=-1).add_(a)
        Q = M if Q is None else M @ Q
        if t < last:
            R = M @ (R @ M)
    return Q @ X


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


def orthogonalize(
    G: Tensor,
    method: str = "newton_schulz",
    *,
    steps: int | None = None,
    coefficients: str | Sequence[float] | Sequence[Sequence[float]] | None = None,
    eps: float = 1e-7,
    norm_safety: float | None = None,
    compute_dtype: torch.dtype | None = torch.bfloat16,
    out_dtype: torch.dtype | None = None,
    gram: bool | None = None,
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

    ``coefficients`` overrides the method's table (any Newton–Schulz-type method); ``steps``
    defaults to the method's own count; ``gram`` selects the Gram-matrix iteration (None: by shape,
    see :func:`newton_schulz`). The result has ``G``'s shape and dtype.
    """
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
        compile=compile,
    )
