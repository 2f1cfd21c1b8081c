"""Pure matrix functions: ``(..., m, n) -> (..., m, n)`` tensors, no optimizer state, no ranks."""

from .coefficients import TABLES, as_table, scalar_map, schedule
from .polar import METHODS, newton_schulz, orthogonalize, polar_svd
from .views import VIEWS, from_matrix, matrix_shape, to_matrix

__all__ = [
    "METHODS",
    "TABLES",
    "VIEWS",
    "as_table",
    "from_matrix",
    "matrix_shape",
    "newton_schulz",
    "orthogonalize",
    "polar_svd",
    "scalar_map",
    "schedule",
    "to_matrix",
]
