"""Spectral diagnostics as pure functions: tensor in, tensor (or dict of tensors) out.

Definitions follow seed 000 (Huang, Luo, Chen, "MiMuon", arXiv 2605.19619), seed 003 (Beneventano,
Abdelmoneum, Poggio, "The Spectral Dynamics and Noise Geometry of Muon", arXiv 2606.08388) and, for
the alignment terms, Shumaylov et al. ("Muon is Not That Special", arXiv 2605.11181); each
docstring states the formula and its certainty tag (EXACT: standard or read from the source;
RECON: reconstructed, a documented choice; GUESS: a placeholder with no source).

Conventions shared by every function here:

* Input is ``(..., m, n)`` and every function is batched over the leading dims. Results have shape
  ``(...)`` (0-d for a single matrix). Tensors with ≥3 dims that are *not* a batch (conv filters)
  must be flattened by the caller (``W.flatten(1)``, Dion's ``fan_in = prod(shape[1:])``).
* Computation happens in ``dtype`` (default float64) on the input's device; the input is never
  modified.
* ``σ₁ ≥ σ₂ ≥ … ≥ σ_k``, ``k = min(m, n)``, are the singular values. The **numerical rank** is
  ``r = #{i : σ_i > rtol·σ₁}``; "nonzero" below always means "counted in r". The default
  ``rtol = max(m, n)·eps(input dtype)`` (eps of float32 for half/bfloat16 input) is the LAPACK /
  ``numpy.linalg.matrix_rank`` threshold, and the one :func:`muonlab.matfn.polar_svd` uses. It uses
  the *input* precision because a float32 rank-1 matrix has σ₂ ≈ 1e-7·σ₁ from rounding alone, which a
  float64 threshold would count as rank. Pass a larger ``rtol`` for bf16 data whose rounding noise
  should not count as rank.
* Degenerate inputs never give NaN. A zero matrix has r = 0 and every norm, rank, entropy, flatness
  and condition number is 0. Minima over an empty set (the gap of a matrix with r < 2) are ``+inf``.
  Each function documents its own case.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..matfn.polar import polar_svd

__all__ = [
    "default_rtol",
    "singular_values",
    "numerical_rank",
    "spectral_norm",
    "frobenius_norm",
    "nuclear_norm",
    "stable_rank",
    "singular_gaps",
    "min_gap",
    "spectral_entropy",
    "effective_rank",
    "condition_number",
    "flatness",
    "spectral_stats",
    "orthogonality_error",
    "polar_error",
    "frame_alignment",
    "update_alignment",
    "descent_potential",
    "pairwise_regularizer",
    "polar_sensitivity",
    "critical_batch_size",
    "momentum_noise_factor",
]


# ---- helpers ----------------------------------------------------------------------------------


def _check(W: Tensor, name: str = "W") -> None:
    if not isinstance(W, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(W).__name__}")
    if W.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dims (..., m, n), got shape {tuple(W.shape)}")
    if W.is_complex():
        raise ValueError(f"{name} is complex ({W.dtype}); only real matrices are supported")
    if W.shape[-2] == 0 or W.shape[-1] == 0:
        raise ValueError(f"{name} has an empty matrix dimension: shape {tuple(W.shape)}")


def default_rtol(W: Tensor) -> float:
    """``max(m, n)·eps`` with eps of ``W.dtype`` (float32's for 16-bit and integer input)."""
    dt = W.dtype if W.dtype in (torch.float64, torch.float32) else torch.float32
    return max(W.shape[-2:]) * torch.finfo(dt).eps


def _sv(W: Tensor, dtype: torch.dtype) -> Tensor:
    _check(W)
    return torch.linalg.svdvals(W.detach().to(dtype))


def _mask(s: Tensor, rtol: float) -> Tensor:
    # Strict ">" makes a zero matrix (σ₁ = 0) rank 0 rather than rank k.
    return s > rtol * s[..., :1]


def _rtol(W: Tensor, rtol: float | None) -> float:
    if rtol is None:
        return default_rtol(W)
    if not (rtol >= 0 and math.isfinite(rtol)):
        raise ValueError(f"rtol must be a finite number >= 0, got {rtol!r}")
    return float(rtol)


def _safe_div(a: Tensor, b: Tensor) -> Tensor:
    """a / b with 0 where b == 0 (every 0/0 in this module is defined as 0)."""
    return torch.where(b > 0, a / torch.where(b > 0, b, torch.ones_like(b)), torch.zeros_like(a))


def _entropy(p: Tensor) -> Tensor:
    # 0·log 0 = 0; p is already zero outside the nonzero set.
    return 0.0 - torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), 0.0).sum(-1)


# The helpers below take descending σ (..., k) and the rank mask. spectral_stats calls them all on
# one SVD; the public single-statistic functions are thin wrappers around them.


def _stable_rank(s: Tensor) -> Tensor:
    return _safe_div((s * s).sum(-1), s[..., 0] ** 2)


def _min_gap(s: Tensor, mask: Tensor) -> Tensor:
    if s.shape[-1] < 2:
        return torch.full(s.shape[:-1], math.inf, dtype=s.dtype, device=s.device)
    d = s[..., :-1] - s[..., 1:]
    # A gap counts when both of its σ's are nonzero; sorted order makes mask[i+1] sufficient.
    return torch.where(mask[..., 1:], d, math.inf).amin(-1)


def _entropy_from_sv(s: Tensor, mask: Tensor, variant: str, normalize: bool) -> Tensor:
    if variant not in ("sigma", "sigma2"):
        raise ValueError(f"variant must be 'sigma' or 'sigma2', got {variant!r}")
    w = torch.where(mask, s if variant == "sigma" else s * s, 0.0)
    H = _entropy(_safe_div(w, w.sum(-1, keepdim=True)))
    if not normalize:
        return H
    r = mask.sum(-1).to(s.dtype)
    logr = torch.log(r.clamp(min=2.0))
    return torch.where(r >= 2, H / logr, torch.zeros_like(H)).clamp(0.0, 1.0)


def _effective_rank(s: Tensor, mask: Tensor) -> Tensor:
    H = _entropy_from_sv(s, mask, "sigma", normalize=False)
    return torch.where(mask.any(-1), torch.exp(H), torch.zeros_like(H))


def _smallest_nonzero(s: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask, s, math.inf).amin(-1).nan_to_num(posinf=0.0)


def _flatness_cv(s: Tensor, mask: Tensor) -> Tensor:
    r = mask.sum(-1).to(s.dtype)
    x = torch.where(mask, s, 0.0)
    mean = _safe_div(x.sum(-1), r)
    var = _safe_div((torch.where(mask, s - mean.unsqueeze(-1), 0.0) ** 2).sum(-1), r)
    return _safe_div(var.sqrt(), mean)


# ---- single-matrix statistics -----------------------------------------------------------------


def singular_values(W: Tensor, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """Singular values ``σ₁ ≥ … ≥ σ_k`` (``k = min(m, n)``), shape ``(..., k)``, in ``dtype``. [EXACT]"""
    return _sv(W, dtype)


def numerical_rank(W: Tensor, *, rtol: float | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """``r = #{i : σ_i > rtol·σ₁}`` (int64); 0 for a zero matrix. Default rtol: see the module doc. [EXACT]"""
    return _mask(_sv(W, dtype), _rtol(W, rtol)).sum(-1)


def spectral_norm(W: Tensor, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """``‖W‖₂ = σ₁``. [EXACT]"""
    return _sv(W, dtype)[..., 0]


def frobenius_norm(W: Tensor, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """``‖W‖_F = (Σ_ij W_ij²)^{1/2} = (Σ σ_i²)^{1/2}``, from the entries (no SVD). [EXACT]"""
    _check(W)
    return torch.linalg.vector_norm(W.detach().to(dtype), dim=(-2, -1))


def nuclear_norm(W: Tensor, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """``‖W‖_* = Σ_i σ_i`` over all singular values (no threshold). [EXACT]"""
    return _sv(W, dtype).sum(-1)


def stable_rank(W: Tensor, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """``‖W‖_F²/‖W‖₂² = Σσ_i²/σ₁²`` ∈ [1, k]; 0 for a zero matrix. [EXACT]

    No threshold is needed: tiny σ's contribute σ²/σ₁², which is already negligible.
    """
    return _stable_rank(_sv(W, dtype))


def singular_gaps(W: Tensor, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """All consecutive differences ``σ_i − σ_{i+1}``, i = 1..k−1, shape ``(..., k−1)`` (no threshold). [EXACT]"""
    s = _sv(W, dtype)
    return s[..., :-1] - s[..., 1:]


def min_gap(
    W: Tensor,
    *,
    relative: bool = False,
    rtol: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """κ, the smallest gap between consecutive **nonzero** singular values. [RECON]

    ``κ = min_{1≤i<r} (σ_i − σ_{i+1})``, and ``κ/σ₁`` when ``relative=True``. This is seed 000's
    "minimum difference between singular values of the gradient estimate" (MiMuon's κ_t,
    arXiv 2605.19619). Gaps to zero singular values (rank deficiency) are excluded, as
    in the seed's definition.

    Returns ``+inf`` when ``r < 2``: with fewer than two nonzero singular values there is no pair to
    separate, so the minimum is over an empty set. This is consistent with MiMuon's ``κ ≥ τ`` gate.
    A repeated singular value (the identity, for example) gives κ = 0.
    """
    s = _sv(W, dtype)
    k = _min_gap(s, _mask(s, _rtol(W, rtol)))
    return _relative(k, s[..., 0]) if relative else k


def _relative(gap: Tensor, sigma1: Tensor) -> Tensor:
    # r ≥ 2 implies σ₁ > 0; σ₁ = 0 only for the zero matrix, whose κ = inf stays inf.
    return torch.where(sigma1 > 0, gap / torch.where(sigma1 > 0, sigma1, 1.0), gap)


def spectral_entropy(
    W: Tensor,
    *,
    variant: str = "sigma",
    normalize: bool = True,
    rtol: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Shannon entropy of the normalized spectrum. [RECON: the seed does not state the normalization]

    ``variant="sigma"`` (default): ``p_i = σ_i / Σ_j σ_j``. ``variant="sigma2"``:
    ``p_i = σ_i² / Σ_j σ_j²`` (energy fractions). Both use the r nonzero
    singular values and compute ``H = −Σ_i p_i log p_i`` (natural log).

    With ``normalize=True`` (default) the result is ``H / log r`` ∈ [0, 1]: 1 for a flat spectrum
    (every nonzero σ equal), 0 for rank 1. It is defined as 0 when ``r ≤ 1``, including the zero
    matrix. With ``normalize=False`` the result is H in nats.
    """
    s = _sv(W, dtype)
    return _entropy_from_sv(s, _mask(s, _rtol(W, rtol)), variant, normalize)


def effective_rank(W: Tensor, *, rtol: float | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """``exp(H)`` with H the unnormalized σ-entropy (Roy & Vetterli 2007). [RECON]

    It lies in [1, r]: r for a flat spectrum, 1 for rank 1. It is defined as 0 for a zero matrix, so
    it agrees with the rank there.
    """
    s = _sv(W, dtype)
    return _effective_rank(s, _mask(s, _rtol(W, rtol)))


def condition_number(W: Tensor, *, rtol: float | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """``σ₁ / σ_r`` over the nonzero singular values, i.e. ``‖W‖₂·‖W⁺‖₂``. [EXACT]

    For full-rank W this equals ``numpy.linalg.cond(W)``. For a rank-deficient W it is the
    conditioning of W on its range (the pseudo-inverse definition) rather than ``inf``. A zero
    matrix gives 0, since ``W⁺ = 0``.
    """
    s = _sv(W, dtype)
    return _safe_div(s[..., 0], _smallest_nonzero(s, _mask(s, _rtol(W, rtol))))


def flatness(
    W: Tensor,
    *,
    kind: str = "ratio",
    rtol: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """How flat the nonzero spectrum is. [RECON]

    ``kind="ratio"`` (default): ``σ_r / σ₁`` ∈ (0, 1], which is 1 when every nonzero σ is equal.
    ``kind="cv"``: the coefficient of variation ``std(σ)/mean(σ)`` of the nonzero σ's (population
    std), which is 0 when flat. Both give 0 for a zero matrix, and the ratio is 1 at rank 1.
    """
    s = _sv(W, dtype)
    mask = _mask(s, _rtol(W, rtol))
    if kind == "ratio":
        return _safe_div(_smallest_nonzero(s, mask), s[..., 0])
    if kind == "cv":
        return _flatness_cv(s, mask)
    raise ValueError(f"kind must be 'ratio' or 'cv', got {kind!r}")


def pairwise_regularizer(W: Tensor, *, rtol: float | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """``R_pw(W) = −Σ_{i≠j} log(σ_i + σ_j)`` over ordered pairs of nonzero σ's (seed 003 eq. 12). [EXACT]

    On the Frobenius sphere it is minimized at a flat spectrum. Pairs that involve a zero σ are
    excluded: on an exactly rank-deficient matrix they would add ``−log 0 = +∞`` when both are zero,
    which carries no information. An empty sum (r ≤ 1) is 0.
    """
    s = _sv(W, dtype)
    mask = _mask(s, _rtol(W, rtol))
    return _pairwise_regularizer(s, mask)


def _pairwise_regularizer(s: Tensor, mask: Tensor) -> Tensor:
    pair = mask.unsqueeze(-1) & mask.unsqueeze(-2)
    pair &= ~torch.eye(s.shape[-1], dtype=torch.bool, device=s.device)
    tot = s.unsqueeze(-1) + s.unsqueeze(-2)
    # "0.0 - x" rather than "-x": an empty sum gives +0.0, not -0.0, in the records.
    return 0.0 - torch.where(pair, torch.log(torch.where(pair, tot, torch.ones_like(tot))), 0.0).sum((-2, -1))


def polar_sensitivity(G: Tensor, *, rtol: float | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """``S(μ) = Σ_{i≠j} 1/(σ_i + σ_j)²`` over ordered pairs of nonzero σ's of G. [RECON]

    This is the sensitivity of ``polar(G)`` to skew-symmetric noise: a perturbation E changes the
    polar factor by ``(u_iᵀEv_j − u_jᵀEv_i)/(σ_i + σ_j)`` in the (i, j) direction. For a flat
    spectrum σ₀ of rank r it reduces to ``r(r−1)/(4σ₀²)``, the value in seed 003, Fig. 4a.
    It is 0 for r ≤ 1 (empty sum).
    """
    s = _sv(G, dtype)
    return _polar_sensitivity(s, _mask(s, _rtol(G, rtol)))


def _polar_sensitivity(s: Tensor, mask: Tensor) -> Tensor:
    pair = mask.unsqueeze(-1) & mask.unsqueeze(-2)
    pair &= ~torch.eye(s.shape[-1], dtype=torch.bool, device=s.device)
    tot = s.unsqueeze(-1) + s.unsqueeze(-2)
    return torch.where(pair, 1.0 / torch.where(pair, tot, torch.ones_like(tot)) ** 2, 0.0).sum((-2, -1))


def critical_batch_size(
    G: Tensor,
    noise_var: float | Tensor,
    *,
    rtol: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """``B_crit = 2σ²·S(μ)/r`` (seed 003, Fig. 4c). [EXACT formula; S(μ) is RECON]

    Args:
        G: the (full-batch or mean) gradient ``(..., m, n)``. Its nonzero spectrum gives ``S(μ)``
            (:func:`polar_sensitivity`) and its numerical rank gives ``r``.
        noise_var: ``σ²``, the per-entry variance of the gradient noise at batch size 1. Estimate it
            from per-example gradients or from two batch sizes; the probe cannot see it.

    For a flat spectrum σ₀ this gives ``σ²(r−1)/(2σ₀²)``. It is defined as 0 when r = 0.
    """
    s = _sv(G, dtype)
    mask = _mask(s, _rtol(G, rtol))
    r = mask.sum(-1).to(s.dtype)
    nv = torch.as_tensor(noise_var, dtype=s.dtype, device=s.device)
    if bool((nv < 0).any()):
        raise ValueError(f"noise_var must be >= 0, got {noise_var!r}")
    return _safe_div(2.0 * nv * _polar_sensitivity(s, mask), r)


def momentum_noise_factor(beta: float) -> float:
    """Stationary variance of EMA momentum on iid unit-variance noise: ``(1−β)/(1+β)``. [EXACT]

    This is the AR(1) result for ``M ← βM + (1−β)ξ``. The naive ``(1−β)²`` ignores the
    accumulation over past steps (seed 003, Fig. 4b).
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    return (1.0 - beta) / (1.0 + beta)


def spectral_stats(
    W: Tensor,
    *,
    rtol: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> dict[str, Tensor]:
    """Every single-matrix statistic from one SVD, batched over leading dims.

    Keys (each a tensor of shape ``(...)`` except ``singular_values``, ``(..., k)``); definitions
    and degenerate-case values are those of the functions named:

    ========================== =======================================================================
    ``singular_values``        :func:`singular_values`, descending
    ``rank``                   :func:`numerical_rank` (as float, so records stay homogeneous)
    ``spectral_norm``          σ₁
    ``frobenius_norm``         (Σσ²)^{1/2}
    ``nuclear_norm``           Σσ
    ``stable_rank``            Σσ²/σ₁²
    ``min_gap``                κ over consecutive nonzero σ (+inf when r < 2)
    ``min_gap_relative``       κ/σ₁
    ``spectral_entropy``       normalized H of σ/Σσ, in [0, 1]
    ``spectral_entropy_sq``    normalized H of σ²/Σσ², in [0, 1]
    ``effective_rank``         exp(H) of σ/Σσ
    ``condition_number``       σ₁/σ_r (nonzero σ's)
    ``flatness``               σ_r/σ₁
    ``flatness_cv``            std/mean of the nonzero σ's
    ``pairwise_regularizer``   R_pw = −Σ_{i≠j} log(σ_i + σ_j)
    ``polar_sensitivity``      S(μ) = Σ_{i≠j} 1/(σ_i + σ_j)²
    ========================== =======================================================================

    Example::

        >>> st = spectral_stats(torch.eye(4))
        >>> float(st["stable_rank"]), float(st["spectral_entropy"])
        (4.0, 1.0)
    """
    _check(W)
    return _stats_from_sv(torch.linalg.svdvals(W.detach().to(dtype)), _rtol(W, rtol))


def _stats_from_sv(s: Tensor, rtol: float) -> dict[str, Tensor]:
    """:func:`spectral_stats` from descending singular values (the probe reuses its own SVD)."""
    mask = _mask(s, rtol)
    sigma1 = s[..., 0]
    gap = _min_gap(s, mask)
    smallest = _smallest_nonzero(s, mask)
    return {
        "singular_values": s,
        "rank": mask.sum(-1).to(s.dtype),
        "spectral_norm": sigma1,
        "frobenius_norm": torch.linalg.vector_norm(s, dim=-1),
        "nuclear_norm": s.sum(-1),
        "stable_rank": _stable_rank(s),
        "min_gap": gap,
        "min_gap_relative": _relative(gap, sigma1),
        "spectral_entropy": _entropy_from_sv(s, mask, "sigma", True),
        "spectral_entropy_sq": _entropy_from_sv(s, mask, "sigma2", True),
        "effective_rank": _effective_rank(s, mask),
        "condition_number": _safe_div(sigma1, smallest),
        "flatness": _safe_div(smallest, sigma1),
        "flatness_cv": _flatness_cv(s, mask),
        "pairwise_regularizer": _pairwise_regularizer(s, mask),
        "polar_sensitivity": _polar_sensitivity(s, mask),
    }


# ---- pairwise diagnostics ---------------------------------------------------------------------


def orthogonality_error(X: Tensor, *, normalize: bool = False, dtype: torch.dtype = torch.float64) -> Tensor:
    """How far X is from a semi-orthogonal matrix: ``‖XᵀX − I‖_F / √k`` on the small side. [EXACT]

    The Gram matrix is taken on the small side (``XXᵀ`` when m ≤ n, ``XᵀX`` otherwise), so an
    exact ``U Vᵀ`` of full rank gives 0. Equivalently ``(Σ_i (σ_i² − 1)²/k)^{1/2}``, with
    ``k = min(m, n)``.

    ``normalize=True`` first rescales X so that its RMS singular value is 1
    (``X·√k/‖X‖_F``). The result then ignores the learning rate and shape factor of an applied
    update ΔW and measures only how unequal its spectrum is. A zero X is left as is and gives an
    error of 1.
    """
    _check(X, "X")
    x = X.detach().to(dtype)
    if x.shape[-2] > x.shape[-1]:
        x = x.mT
    k = x.shape[-2]
    if normalize:
        fro = torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True)
        x = torch.where(fro > 0, x * (math.sqrt(k) / torch.where(fro > 0, fro, 1.0)), x)
    eye = torch.eye(k, dtype=dtype, device=x.device)
    return torch.linalg.vector_norm(x @ x.mT - eye, dim=(-2, -1)) / math.sqrt(k)


def polar_error(
    X: Tensor,
    G: Tensor,
    *,
    fit_scale: bool = False,
    rtol: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Distance to the exact polar factor: ``‖X − polar(G)‖_F / √k``, ``k = min(m, n)``. [EXACT]

    ``polar(G) = U Vᵀ`` comes from :func:`muonlab.matfn.polar_svd` on G in ``dtype``. Singular
    values at or below ``rtol·σ₁`` (same default as the rest of the module) map to 0, so a
    rank-deficient or zero G has a well-defined partial-isometry target (0 for G = 0).

    ``fit_scale=True`` compares ``c·X`` instead, with the least-squares scale
    ``c = max(⟨X, P⟩, 0)/‖X‖_F²`` (0 when X = 0). This measures the *direction* of an update that
    carries an lr and a shape factor, e.g. ``−ΔW`` against ``polar(momentum)``.
    """
    _check(X, "X")
    _check(G, "G")
    if X.shape[-2:] != G.shape[-2:]:
        raise ValueError(f"X and G must have the same matrix shape, got {tuple(X.shape)} and {tuple(G.shape)}")
    P = polar_svd(G.detach().to(dtype), rtol=_rtol(G, rtol))
    return _polar_distance(X.detach().to(dtype), P, fit_scale)


def _polar_from_svd(U: Tensor, s: Tensor, Vh: Tensor, rtol: float) -> Tensor:
    # Same target as polar_svd: singular values at or below rtol·σ₁ map to 0.
    return (U * _mask(s, rtol).unsqueeze(-2).to(U.dtype)) @ Vh


def _polar_distance(x: Tensor, P: Tensor, fit_scale: bool) -> Tensor:
    if fit_scale:
        xx = (x * x).sum((-2, -1), keepdim=True)
        x = _safe_div((x * P).sum((-2, -1), keepdim=True).clamp(min=0.0), xx) * x
    return torch.linalg.vector_norm(x - P, dim=(-2, -1)) / math.sqrt(min(P.shape[-2:]))


def frame_alignment(
    W: Tensor,
    G: Tensor,
    k: int,
    *,
    dtype: torch.dtype = torch.float64,
) -> dict[str, Tensor]:
    """``‖sin Θ‖_F`` between the top-k singular subspaces of W and G. [RECON: the choice of k]

    ``‖sin Θ(U_W^{(k)}, U_G^{(k)})‖_F = ‖(I − U_W U_Wᵀ) U_G‖_F = (k − ‖U_Wᵀ U_G‖_F²)^{1/2}``, where
    the top-k left singular vectors are used (Davis–Kahan; Yu, Wang & Samworth 2015). The same
    formula is applied to the right singular vectors. The value lies in [0, √k]: 0 for identical
    subspaces, √k for orthogonal ones. Seed 003 reports < 0.1 after the transient in matrix
    sensing, with ``k = rank(W*)``.

    A top-k subspace is only well defined when ``σ_k > σ_{k+1}``. With a tie at the cut, the value
    depends on which basis the SVD returned.

    Returns:
        ``{"left": …, "right": …, "max": …}``, each a tensor of shape ``(...)``.
    """
    _check(W)
    _check(G, "G")
    if W.shape[-2:] != G.shape[-2:]:
        raise ValueError(f"W and G must have the same matrix shape, got {tuple(W.shape)} and {tuple(G.shape)}")
    kmax = min(W.shape[-2:])
    if not (isinstance(k, int) and 1 <= k <= kmax):
        raise ValueError(f"k must be an int in [1, {kmax}], got {k!r}")
    Uw, _, Vwh = torch.linalg.svd(W.detach().to(dtype), full_matrices=False)
    Ug, _, Vgh = torch.linalg.svd(G.detach().to(dtype), full_matrices=False)
    return _frame_from_svd(Uw, Vwh, Ug, Vgh, k)


def _frame_from_svd(Uw: Tensor, Vwh: Tensor, Ug: Tensor, Vgh: Tensor, k: int) -> dict[str, Tensor]:
    def sin_theta(A: Tensor, B: Tensor) -> Tensor:
        overlap = torch.linalg.vector_norm(A.mT @ B, dim=(-2, -1)) ** 2
        return (k - overlap).clamp(min=0.0).sqrt()  # clamp: rounding can push k − ‖·‖² below 0

    left = sin_theta(Uw[..., :, :k], Ug[..., :, :k])
    right = sin_theta(Vwh[..., :k, :].mT, Vgh[..., :k, :].mT)
    return {"left": left, "right": right, "max": torch.maximum(left, right)}


def descent_potential(G: Tensor, O: Tensor, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """``⟨G, O⟩ = Σ_ij G_ij O_ij`` for an update direction O (Freon/Kaon's term). [RECON]

    To first order, the loss decrease of the step ``W ← W − ηO`` is ``η⟨G, O⟩``. Pass the update
    *direction*, i.e. ``O = −ΔW`` for an applied step ΔW.
    """
    _check(G, "G")
    _check(O, "O")
    return (G.detach().to(dtype) * O.detach().to(dtype)).sum((-2, -1))


def update_alignment(G: Tensor, O: Tensor, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """Cosine ``⟨G, O⟩ / (‖G‖_F ‖O‖_F)`` ∈ [−1, 1]; 0 when G or O is zero. [RECON]

    For ``O = polar(G)`` it equals ``‖G‖_*/(‖G‖_F √r)``: 1 for a flat spectrum, ``1/√r`` for a
    spectrum dominated by σ₁. Pass ``O = −ΔW`` for an applied step ΔW.
    """
    g = G.detach().to(dtype)
    o = O.detach().to(dtype)
    _check(g, "G")
    _check(o, "O")
    den = torch.linalg.vector_norm(g, dim=(-2, -1)) * torch.linalg.vector_norm(o, dim=(-2, -1))
    return _safe_div((g * o).sum((-2, -1)), den)
