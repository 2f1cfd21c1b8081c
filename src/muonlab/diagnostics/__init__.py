"""Spectral diagnostics: what an optimizer does to weights, gradients and updates.

Pure functions (float64 by default, batched over leading dims, NaN-free on zero and rank-deficient
input) live in :mod:`muonlab.diagnostics.spectrum`. :class:`SpectralProbe` samples them during
training through optimizer step hooks. ``muonlab diagnose FILE`` applies them to a saved
checkpoint or matrix. Definitions, each with its source, are in the docstrings of
:mod:`muonlab.diagnostics.spectrum` (MiMuon, arXiv 2605.19619; Beneventano, Abdelmoneum, Poggio,
arXiv 2606.08388; Shumaylov et al., arXiv 2605.11181).
"""

from .probe import SpectralProbe
from .spectrum import (
    condition_number,
    critical_batch_size,
    descent_potential,
    effective_rank,
    flatness,
    frame_alignment,
    frobenius_norm,
    min_gap,
    momentum_noise_factor,
    nuclear_norm,
    numerical_rank,
    orthogonality_error,
    pairwise_regularizer,
    polar_error,
    polar_sensitivity,
    singular_gaps,
    singular_values,
    spectral_entropy,
    spectral_norm,
    spectral_stats,
    stable_rank,
    update_alignment,
)

__all__ = [
    "SpectralProbe",
    "condition_number",
    "critical_batch_size",
    "descent_potential",
    "effective_rank",
    "flatness",
    "frame_alignment",
    "frobenius_norm",
    "min_gap",
    "momentum_noise_factor",
    "nuclear_norm",
    "numerical_rank",
    "orthogonality_error",
    "pairwise_regularizer",
    "polar_error",
    "polar_sensitivity",
    "singular_gaps",
    "singular_values",
    "spectral_entropy",
    "spectral_norm",
    "spectral_stats",
    "stable_rank",
    "update_alignment",
]
