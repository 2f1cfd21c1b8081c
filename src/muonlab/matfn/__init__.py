"""Pure matrix functions: ``(..., m, n) -> (..., m, n)`` tensors, no optimizer state, no ranks."""

from .coefficients import TABLES, as_table, scalar_map, schedule
from .polar import METHODS, newton_schulz, orthogonalize, polar_svd
from .power import NEWTON_POWERS, POWER_METHODS, gram_singular_values, spectral_power
from .views import VIEWS, from_matrix, matrix_shape, to_matrix

__all__ = [
    "METHODS",
    "NEWTON_POWERS",
    "POWER_METHODS",
    "TABLES",
    "VIEWS",
    "as_table",
    "from_matrix",
    "gram_singular_values",
    "matrix_shape",
    "newton_schulz",
    "orthogonalize",
    "polar_svd",
    "scalar_map",
    "schedule",
    "spectral_power",
    "to_matrix",
]
