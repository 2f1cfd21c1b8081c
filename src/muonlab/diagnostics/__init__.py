"""Spectral diagnostics: what an optimizer does to weights, gradients and updates.

Pure functions (float64 by default, batched over leading dims, NaN-free on zero and rank-deficient
input) live in :mod:`muonlab.diagnostics.spectrum`. :class:`SpectralProbe` samples them during
training through optimizer step hooks. ``muonlab diagnose FILE`` applies them to a saved
checkpoint or matrix. Definitions, each with its source, are in the docstrings of
:mod:`muonlab.diagnostics.spectrum` (MiMuon, arXiv 2605.19619; Beneventano, Abdelmoneum, Poggio,
arXiv 2606.08388; Shumaylov et al., arXiv 2605.11181). :mod:`muonlab.diagnostics.lens` adds the
Spectral Lens quantities (Liu, Paquette, Sous, arXiv 2605.05683): activation-covariance and
per-sample-gradient spectra, their power-law tail exponent and RankMe; ``SpectralProbe(...,
activations=True)`` records them during training.
"""

from .lens import (
    ActivationCovariance,
    TailFit,
    activation_spectrum,
    per_sample_gradient_spectrum,
    per_sample_gradients,
    rank_me,
    select_layers,
    spectrum_summary,
    tail_exponent,
    topk_share,
)
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
    "ActivationCovariance",
    "SpectralProbe",
    "TailFit",
    "activation_spectrum",
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
    "per_sample_gradient_spectrum",
    "per_sample_gradients",
    "polar_error",
    "polar_sensitivity",
    "rank_me",
    "select_layers",
    "singular_gaps",
    "singular_values",
    "spectral_entropy",
    "spectral_norm",
    "spectral_stats",
    "spectrum_summary",
    "stable_rank",
    "tail_exponent",
    "topk_share",
    "update_alignment",
]
