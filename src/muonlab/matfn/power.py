"""Spectral powers ``Ψ_p(G) = U Σᵖ Vᵀ`` of ``G = U Σ Vᵀ``, for p ∈ [0, 1], without an SVD.

``p = 1`` is the input, ``p = 0`` the polar factor ``U Vᵀ`` (Muon), and ``p ∈ (0, 1)`` compresses
the spectrum: large singular values shrink, small ones grow, directions are kept. "Delving into
Muon and Beyond" (Qi et al., arXiv 2602.04669; code github.com/Ocram7/BeyondMuon) trains with
p ∈ {1, 1/2, 1/4, 0}; see docs/methods/seed_methods.md.

Routes (``method=``), all batched over leading dims and working on the *small side*: a tall input
is transposed so the Gram matrix ``A = X Xᵀ`` is ``k×k`` with ``k = min(m, n)``:

``"newton"``  p ∈ {1/2, 1/4}: ``Ψ_{1/2}(X) = A^{-1/4} X`` with ``A^{-1/4} = (A^{-1/2})^{1/2}``, both
              roots by the coupled Newton–Schulz iteration (BeyondMuon ``spectral_ns.py``
              [EXACT]); ``Ψ_{1/4}`` applies ``Ψ_{1/2}`` twice. Matmuls only. p = 0 goes to
              :func:`~muonlab.matfn.polar.orthogonalize`.
``"eigh"``    any p: ``Ψ_p(X) = Q f(Λ) Qᵀ X`` from ``A = Q Λ Qᵀ``, ``f(λ) = (λ + δ)^{(p−1)/2}``
              (the Freon-style general-p route: Shumaylov et al., arXiv 2605.11181).
``"svd"``     the reference: exact ``U Σᵖ Vᵀ`` from a thin SVD.
``"auto"``    (default) p = 1 → the input; p = 0 → ``orthogonalize``; p ∈ {1/2, 1/4} → "newton";
              other p → "eigh".

Small and zero singular values (documented behaviour, rank-deficient inputs included): the input
is first scaled to unit Frobenius norm (the map is homogeneous, ``Ψ_p(cG) = cᵖ Ψ_p(G)``, so the
result is scaled back by ``‖G‖_Fᵖ``). The Gram routes then add a ridge ``δ`` to ``A``: each singular
value maps to ``σ (σ² + δ)^{(p−1)/2}`` instead of ``σᵖ``, which is ``≈ σᵖ`` for ``σ² ≫ δ``, never
larger than ``σᵖ``, and goes to 0 *linearly* as ``σ → 0``. ``δ = ridge·tr(A)/k`` (default
``ridge = 0``; BeyondMuon: 1e-4), plus for "newton" the rounding floor ``4ε‖A‖_F`` (ε = machine
epsilon of the compute dtype): the float32 Gram product of a rank-deficient matrix has eigenvalues
down to −0.8ε‖A‖_F (measured), and a negative eigenvalue makes the coupled iteration diverge.
"eigh" instead maps directions with ``λ ≤ 4ε‖A‖_F`` (σ below about 1e-3·σ_max in float32) to 0,
because their eigenvectors are rounding noise. "svd" maps ``σ ≤ rtol·σ_max`` to 0
(``rtol = max(m, n)·ε``, as :func:`polar_svd`). So a rank-r input gives a rank-r output and a zero
input gives zeros, never NaN.

Accuracy (float32, checked in tests/test_power.py against float64 SVD): with the defaults
(``ridge=0``, ``iters=20``) every singular value is within 5% of ``σᵖ`` for condition numbers up
to 1e2, typically < 0.5%. The worst case is one σ = σ_max/100 under many σ = σ_max in a big matrix,
where the floor (``‖A‖_F ≈ √k·λ_max``) costs ≈ 1.9% for p = 1/2 at k = 256, growing like √k.
BeyondMuon's own settings (``ridge=1e-4``, ``iters=15``) give ≈ 3% at σ = 1e-2·σ_max for a
geometric spectrum but 16–19% for that worst case; the optimizer
(:mod:`muonlab.optim.spectral_power`) keeps them for fidelity. Details and measurements:
docs/methods/seed_methods.md.

Regularisation (``regularization=``, coupled-Newton route only):

``"homogeneous"``  (default) the above: unit-Frobenius input, one relative ridge ``ridge·tr(A)/k``
                   (plus the rounding floor) on ``A`` only; exactly homogeneous.
``"beyondmuon"``   BeyondMuon's exact formula (``spectral_ns.py`` @ 56dd187): the input at its own
                   scale, and ``(1e-6 + ridge·tr(M)/k)·I`` added to *both* matrices whose root is
                   taken, ``M = A`` and ``M = A^{-1/2}``::

                       Z = (A + (1e-6 + ridge·tr(A)/k) I)^{-1/2};  Ψ_{1/2}(X) = (Z + (1e-6 + ridge·tr(Z)/k) I)^{1/2} X

                   No rounding floor is added (their formula has none; the absolute 1e-6 keeps
                   ``A`` positive definite unless ``A``'s scale is below about 1e-6/ε).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .polar import _check_matrix, orthogonalize, polar_svd

#: Routes accepted by :func:`spectral_power`.
POWER_METHODS = ("auto", "newton", "eigh", "svd")

#: Powers with a coupled-Newton (matmul-only) route.
NEWTON_POWERS = (0.5, 0.25)

#: ``regularization=`` choices of :func:`spectral_power` (see the module docstring).
REGULARIZATIONS = ("homogeneous", "beyondmuon")

#: BeyondMuon's absolute ridge (``eps`` of ``coupled_newton_schulz_sqrt_invsqrt``).
BEYONDMUON_ABS_RIDGE = 1e-6

# The rounding floor of the Gram matrix, in machine epsilons of ‖A‖_F: the float32 product X Xᵀ of
# a rank-deficient X has eigenvalues down to −0.8ε‖A‖_F (≈ −2.7ε·λ_max; measured for k = 16…1024,
# inner dimension up to 2e5). 4ε keeps A + δI positive definite with a 5× margin.
_FLOOR_ULPS = 4


def _sym(A: Tensor) -> Tensor:
    return 0.5 * (A + A.mT)


def coupled_newton_sqrt(A: Tensor, iters: int = 15) -> tuple[Tensor, Tensor]:
    """``(A^{1/2}, A^{-1/2})`` of symmetric positive definite ``A`` (batched ``(..., k, k)``).

    Coupled Newton–Schulz (Higham, "Functions of Matrices", §6.3; BeyondMuon ``spectral_ns.py``)::

        s = ‖A‖_F;  Y = A/s;  Z = I
        repeat: T = (3I − Z Y)/2;  Y ← Y T;  Z ← T Z        (Y → (A/s)^{1/2}, Z → (A/s)^{-1/2})
        return √s·Y, Z/√s

    Every eigenvalue ``w = λ/s ∈ (0, 1]`` of ``Z Y`` follows ``w ← w(3 − w)²/4``: it grows ×2.25
    per step while small, then converges quadratically, so ``log(λ_max/λ_min)/log 2.25 + 4``
    steps are needed (≈ 16 for condition number 1e4). Unconverged eigenvalues are too small in
    both ``Y`` and ``Z`` (damping, never blow-up). Y and Z are re-symmetrised every
    ``max(1, min(iters // 3, 5))`` steps and at the end, as BeyondMuon does, so round-off cannot
    accumulate a skew part.
    """
    k = A.size(-1)
    eye = torch.eye(k, dtype=A.dtype, device=A.device)
    s = torch.linalg.matrix_norm(A).clamp_min(torch.finfo(A.dtype).tiny)[..., None, None]
    Y = A / s
    Z = eye.expand_as(A)
    sym_every = max(1, min(iters // 3, 5))
    for i in range(iters):
        T = 0.5 * (3.0 * eye - Z @ Y)
        Y = Y @ T
        Z = T @ Z
        if i > 0 and i % sym_every == 0:
            Y, Z = _sym(Y), _sym(Z)
    return _sym(Y) * s.sqrt(), _sym(Z) / s.sqrt()


def _gram(X: Tensor, ridge: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(A, ridge·tr(A)/k, floor)`` for a wide, unit-Frobenius ``X``: ``A = X Xᵀ`` (symmetrised)
    and the rounding floor ``4ε‖A‖_F``; the last two shaped ``(..., 1, 1)``."""
    k = X.size(-2)
    A = _sym(X @ X.mT)
    floor = _FLOOR_ULPS * torch.finfo(A.dtype).eps * torch.linalg.matrix_norm(A)[..., None, None]
    rel = ridge * A.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None] / k
    return A, rel, floor


def _unit(X: Tensor) -> tuple[Tensor, Tensor]:
    """``(X/‖X‖_F, ‖X‖_F)`` per matrix; a zero matrix stays zero."""
    norm = torch.linalg.matrix_norm(X)[..., None, None]
    return X / norm.clamp_min(torch.finfo(X.dtype).tiny), norm


def _newton_half(X: Tensor, iters: int, ridge: float) -> Tensor:
    """``Ψ_{1/2}`` of a wide ``X`` by the coupled Newton route (homogeneous of degree 1/2)."""
    Xn, norm = _unit(X)
    A, rel, floor = _gram(Xn, ridge)
    eye = torch.eye(A.size(-1), dtype=A.dtype, device=A.device)
    # A zero matrix has A = 0 (no ridge either); iterate on I instead, Xn = 0 gives 0 anyway.
    A = torch.where(norm > 0, A + (rel + floor) * eye, eye)
    # BeyondMuon's order: A^{-1/2} first, then its square root. When iterations run short this
    # damps the smallest singular values; the other order (√A, then its inverse root) was measured
    # to *amplify* them by up to 14% instead.
    _, inv_sqrt = coupled_newton_sqrt(A, iters)
    inv_fourth, _ = coupled_newton_sqrt(inv_sqrt, iters)
    return (inv_fourth @ Xn) * norm.sqrt()


def _beyondmuon_ridge(M: Tensor, ridge: float) -> Tensor:
    """``M + (1e-6 + ridge·tr(M)/k)·I`` (BeyondMuon's regularisation of a matrix before its root)."""
    k = M.size(-1)
    delta = BEYONDMUON_ABS_RIDGE + ridge * M.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None] / k
    return M + delta * torch.eye(k, dtype=M.dtype, device=M.device)


def _newton_half_beyondmuon(X: Tensor, iters: int, ridge: float) -> Tensor:
    """``Ψ_{1/2}`` of a wide ``X`` by BeyondMuon's exact iteration: its scale, both roots ridged."""
    A = _sym(X @ X.mT)
    _, inv_sqrt = coupled_newton_sqrt(_beyondmuon_ridge(A, ridge), iters)
    inv_fourth, _ = coupled_newton_sqrt(_beyondmuon_ridge(inv_sqrt, ridge), iters)
    return inv_fourth @ X


def _eigh_power(X: Tensor, p: float, ridge: float) -> Tensor:
    """``Ψ_p`` of a wide ``X`` from the eigendecomposition of its small-side Gram matrix."""
    Xn, norm = _unit(X)
    A, rel, floor = _gram(Xn, ridge)
    lam, Q = torch.linalg.eigh(A)
    # No floor in the ridge here: eigh is fine with tiny eigenvalues. Those at the rounding floor
    # belong to directions that are noise, not signal → 0 (this also covers the all-zero matrix).
    keep = lam > floor.squeeze(-1)
    f = (torch.where(keep, lam, 1.0) + rel.squeeze(-1)).pow((p - 1) / 2)
    f = torch.where(keep, f, torch.zeros_like(f))
    return ((Q * f.unsqueeze(-2)) @ (Q.mT @ Xn)) * norm.pow(p)


def _svd_power(X: Tensor, p: float, rtol: float | None) -> Tensor:
    U, S, Vh = torch.linalg.svd(X, full_matrices=False)
    if rtol is None:
        rtol = max(X.shape[-2:]) * torch.finfo(X.dtype).eps
    keep = S > rtol * S[..., :1]
    Sp = torch.where(keep, S.clamp_min(torch.finfo(X.dtype).tiny).pow(p), torch.zeros_like(S))
    return (U * Sp.unsqueeze(-2)) @ Vh


def _resolve_dtype(G: Tensor, compute_dtype: torch.dtype | None) -> torch.dtype:
    dt = compute_dtype or G.dtype
    # linalg (eigh, svd) has no half-precision kernels; the Newton route would lose the small
    # eigenvalues of A in 8 mantissa bits anyway.
    return torch.float32 if dt in (torch.bfloat16, torch.float16) else dt


def spectral_power(
    G: Tensor,
    p: float,
    method: str = "auto",
    *,
    iters: int = 20,
    ridge: float = 0.0,
    compute_dtype: torch.dtype | None = torch.float32,
    out_dtype: torch.dtype | None = None,
    orthogonalizer: str = "polar_express",
    ns_steps: int | None = 10,
    ns_coefficients: str | Sequence[float] | Sequence[Sequence[float]] | None = None,
    eps: float = 1e-7,
    rtol: float | None = None,
    regularization: str = "homogeneous",
) -> Tensor:
    """``U Σᵖ Vᵀ`` for ``G = U Σ Vᵀ`` and ``p ∈ [0, 1]``, batched over leading dims.

    Args:
        G: ``(..., m, n)`` real tensor; never modified.
        p: the power, ``0 ≤ p ≤ 1``. 0 = polar factor (Muon), 1 = the input.
        method: "auto" (default), "newton" (p ∈ {1/2, 1/4}), "eigh" (any p) or "svd" (the
            reference); see the module docstring. p = 1 always returns ``G`` (cast to
            ``out_dtype``, so the same tensor when no cast is needed); p = 0 with "auto"/"newton"
            calls :func:`orthogonalize`.
        iters: coupled-Newton steps per square root (default 20; BeyondMuon uses 15, enough when
            the ridge bounds the condition number, not for κ(G) = 1e2 with ``ridge=0``).
        ridge: relative ridge ``δ = ridge·tr(A)/k`` added to the small-side Gram matrix (default
            0: only the numerical floor; BeyondMuon: 1e-4). Not used by "svd".
        compute_dtype: dtype of the Gram routes (default float32; None = the input's dtype,
            half precision promoted to float32).
        out_dtype: dtype of the result (default ``G.dtype``).
        orthogonalizer, ns_steps, ns_coefficients, eps: the p = 0 route, passed to
            :func:`orthogonalize` (default Polar Express, 10 steps: 1 ± 1e-3 for normalised
            σ ≥ 5e-4, i.e. condition numbers up to 1e2 for k ≤ 400). Its iteration runs in
            ``compute_dtype`` as given (None = the input's dtype).
        rtol: "svd" only: singular values ``≤ rtol·σ_max`` map to 0 (default ``max(m, n)·ε``).
        regularization: "homogeneous" (default: exactly homogeneous, ``ridge`` on ``A`` only) or
            "beyondmuon" (BeyondMuon's formula: the input's own scale, ``1e-6 + ridge·tr/k`` on
            ``A`` and on ``A^{-1/2}``); "beyondmuon" is the coupled-Newton route, so it needs
            p ∈ {1/2, 1/4} with method "auto" or "newton" when 0 < p < 1.

    Returns:
        Tensor of ``G``'s shape in ``out_dtype``.

    Raises:
        ValueError: p outside [0, 1] or NaN, an unknown method or regularization, "newton" (or
            "beyondmuon") with another p or route, or ``iters < 1``, each naming the value.

    Example::

        >>> O = muonlab.spectral_power(torch.randn(64, 32), 0.5)   # U Σ^½ Vᵀ
    """
    _check_matrix(G)
    if method not in POWER_METHODS:
        raise ValueError(f"unknown spectral_power method {method!r}; choose one of {POWER_METHODS}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"spectral_power: p must be a number in [0, 1], got {p!r}")
    if not isinstance(iters, int) or iters < 1:
        raise ValueError(f"spectral_power: iters must be an integer >= 1, got {iters!r}")
    if not ridge >= 0:
        raise ValueError(f"spectral_power: ridge must be >= 0, got {ridge!r}")
    if method == "newton" and p not in (0, 1) + NEWTON_POWERS:
        raise ValueError(
            f"spectral_power: method='newton' supports p in {(0, 1) + NEWTON_POWERS}, got p={p!r}; "
            "use method='eigh' (or 'auto') for other powers"
        )
    if regularization not in REGULARIZATIONS:
        raise ValueError(f"spectral_power: regularization must be one of {REGULARIZATIONS}, got {regularization!r}")
    if regularization == "beyondmuon" and 0 < p < 1 and (method not in ("auto", "newton") or p not in NEWTON_POWERS):
        raise ValueError(
            f"spectral_power: regularization='beyondmuon' is BeyondMuon's coupled-Newton iteration: it needs "
            f"p in {NEWTON_POWERS} with method 'auto' or 'newton', got p={p!r}, method={method!r}"
        )
    out_dtype = out_dtype or G.dtype
    if p == 1:
        return G.to(out_dtype)
    if G.numel() == 0:
        return torch.zeros_like(G, dtype=out_dtype)
    if p == 0 and method in ("auto", "newton"):
        return orthogonalize(
            G, orthogonalizer, steps=ns_steps, coefficients=ns_coefficients, eps=eps,
            compute_dtype=compute_dtype, out_dtype=out_dtype,
        )
    if p == 0 and method == "svd":
        return polar_svd(G, rtol=rtol, out_dtype=out_dtype)

    X = G.to(_resolve_dtype(G, compute_dtype))
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT  # every Gram product on the small side
    if method == "svd":
        Y = _svd_power(X, p, rtol)
    elif method == "eigh" or (method == "auto" and p not in NEWTON_POWERS):
        Y = _eigh_power(X, p, ridge)
    else:
        half = _newton_half_beyondmuon if regularization == "beyondmuon" else _newton_half
        Y = half(X, iters, ridge)
        if p == 0.25:
            Y = half(Y, iters, ridge)  # Ψ_{1/4} = Ψ_{1/2} ∘ Ψ_{1/2} (BeyondMuon "Q")
    if tall:
        Y = Y.mT
    return Y.to(out_dtype)


def gram_singular_values(G: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """Singular values of ``G`` (descending, ``(..., min(m, n))``) from its small-side Gram matrix.

    ``σ = √λ(X Xᵀ)`` with ``X`` the wide orientation of ``G``: one ``k×k`` ``eigvalsh`` instead of
    an SVD of ``m×n``. In float64 (the default) σ is accurate to about ``1e-8·σ_max``; rounding can
    make ``λ`` slightly negative, which is clamped to 0.
    """
    _check_matrix(G)
    X = G.to(dtype)
    if X.size(-2) > X.size(-1):
        X = X.mT
    lam = torch.linalg.eigvalsh(_sym(X @ X.mT))
    return lam.clamp_min(0).sqrt().flip(-1)
