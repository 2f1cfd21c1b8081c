"""How an N-D parameter is seen as a matrix (or a batch of matrices).

Matrix methods act on ``(m, n)`` matrices with ``m`` = fan_out (rows of an ``nn.Linear`` weight)
and ``n`` = fan_in. A parameter of another rank needs an explicit view, never a silent guess:

* ``None``      – the parameter must already be 2-D;
* ``"flatten"`` – ``(out, in, *k) → (out, in·∏k)``: conv filters (Dion ``flatten=True``, Keller's
  4-D rule). Shape factors use these flattened dims, not Keller's ``kh/kw`` quirk.
* ``"batch"``   – leading dims are a batch of independent ``(m, n)`` matrices (stacked MoE experts,
  per-head weights).
* ``"transpose"`` – a 2-D parameter stored ``(in, out)`` (Hugging Face GPT-2's ``Conv1D``): the
  matrix is its transpose, ``m = shape[1]``. The optimizer shell hands rules ``Wᵀ`` (and transposed
  views of parameter-shaped state), so every rule computes exactly the update of the equivalent
  ``nn.Linear`` and never sees this view itself.
"""

from __future__ import annotations

import math

from torch import Tensor

VIEWS = (None, "flatten", "batch", "transpose")


def check_view(shape: tuple[int, ...], view: str | None, where: str = "parameter") -> None:
    """Raise ValueError (naming ``where`` and the shape) if ``view`` cannot apply to ``shape``."""
    if view not in VIEWS:
        raise ValueError(f"{where}: unknown matrix_view={view!r}; choose one of {VIEWS}")
    if len(shape) < 2:
        raise ValueError(
            f"{where} has shape {tuple(shape)}: a matrix method needs a >= 2-D parameter; "
            "send 0-D/1-D parameters (biases, norm gains) to AdamW, e.g. via "
            "muonlab.create_optimizer"
        )
    if len(shape) != 2 and view == "transpose":
        raise ValueError(f"{where} has shape {tuple(shape)}: matrix_view='transpose' needs a 2-D parameter")
    if len(shape) > 2 and view is None:
        raise ValueError(
            f"{where} has shape {tuple(shape)}: a matrix method needs a 2-D parameter, or an "
            "explicit matrix_view='flatten' (conv filters) or 'batch' (stacked matrices)"
        )


def matrix_shape(shape: tuple[int, ...], view: str | None) -> tuple[int, int]:
    """The ``(m, n)`` the method sees for a parameter of ``shape`` under ``view``."""
    if view == "flatten":
        return shape[0], math.prod(shape[1:])
    if view == "transpose":
        return shape[-1], shape[-2]
    return shape[-2], shape[-1]


def to_matrix(x: Tensor, view: str | None) -> Tensor:
    """``x`` as ``(m, n)`` or ``(..., m, n)``: a view, no copy when ``x`` is contiguous."""
    if view == "flatten" and x.ndim > 2:
        return x.reshape(x.shape[0], -1)
    if view == "transpose":
        return x.mT
    return x


def from_matrix(y: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Inverse of :func:`to_matrix` for a parameter of ``shape``."""
    return y.reshape(shape)
