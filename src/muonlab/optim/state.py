"""Declared optimizer state: what each entry of a rule's per-parameter state is.

Every rule declares its state entries (besides the shell's ``step`` counter) in ``state_spec``,
``{key: Slot(kind, matrix_phase)}``. The declaration, not guesswork from shapes, drives:

* the distributed executor: ``matrix_phase`` entries travel whole to the rank that runs
  ``matrix_fn``/``post`` and are copied back to every rank; ``param`` entries stay sharded with
  their parameter;
* parameter orientation: ``param`` entries are stored in the parameter's layout and handed to the
  rule as views in the rule's ``(fan_out, fan_in)`` orientation (Hugging Face ``Conv1D``);
* loading: entries a checkpoint lacks (a torch.optim checkpoint, an older muonlab one) are created
  as ``init_state`` would, ``step`` is normalised to torch's float tensor, and ``matrix`` entries
  keep their saved dtype (torch casts every floating tensor to the parameter's dtype);
* a check that a rule never creates an undeclared entry (caught at the first step, for any
  executor, instead of only being wrong under FSDP2).

Kinds:

=============  ==================================================================================
``param``      shaped like the parameter, element-wise (momentum, Adam moments)
``matrix``     one slot per matrix of the parameter (a row second moment, Dion's Q, a scalar)
``counter``    a plain Python number (MiMuon's branch counters, a draw key); never a tensor, so
               torch's load does not cast it
=============  ==================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

KINDS = ("param", "matrix", "counter")


@dataclass(frozen=True)
class Slot:
    """One declared state entry.

    Attributes:
        kind: ``"param"``, ``"matrix"`` or ``"counter"`` (see the module docstring).
        matrix_phase: ``matrix_fn`` or ``post`` read or write it (or read it while another phase
            changes it), so a distributed executor needs it whole where the matrix work runs.
        doc: one line.
    """

    kind: str
    matrix_phase: bool = False
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"state kind must be one of {KINDS}, got {self.kind!r}")


PARAM = Slot("param")


def matrix_phase_keys(rule, state: dict) -> list[str]:
    """Tensor entries of ``state`` that ``matrix_fn``/``post`` need whole (declared ``matrix_phase``)."""
    return [k for k, s in rule.state_spec.items() if s.matrix_phase and isinstance(state.get(k), Tensor)]


def param_keys(rule) -> tuple[str, ...]:
    """Entries shaped like the parameter."""
    return tuple(k for k, s in rule.state_spec.items() if s.kind == "param")


def check_declared(rule, state: dict, where: str) -> None:
    """Raise RuntimeError when ``state`` holds an entry ``rule`` did not declare."""
    extra = [k for k in state if k != "step" and k not in rule.state_spec]
    if extra:
        raise RuntimeError(
            f"{where}: rule {rule.name!r} created undeclared state {sorted(extra)}; declare every "
            f"entry in {type(rule).__name__}.state_spec (muonlab.optim.state.Slot)"
        )


def complete_loaded_state(rule, state: dict, fresh: Callable[[], dict], saved: dict | None = None) -> None:
    """Make a loaded per-parameter ``state`` usable by ``rule``, in place.

    * ``step`` given as a Python number (older torch checkpoints) becomes a float32 CPU tensor;
      a missing ``step`` (torch.optim.Muon keeps none) starts at 0;
    * declared entries the checkpoint lacks are taken from ``fresh()`` (the state the first step
      would create);
    * ``matrix`` entries get back the dtype they were saved with (``saved``: the entry as saved).
    """
    if not state:
        return  # never stepped: the shell initialises it lazily
    step = state.get("step")
    if step is None:
        state["step"] = torch.tensor(0.0)
    elif not isinstance(step, Tensor):
        state["step"] = torch.tensor(float(step), dtype=torch.float32)
    missing = [k for k in rule.state_spec if k not in state]
    if missing:
        new = fresh()
        for k in missing:
            if k in new:
                state[k] = new[k]
    for k, v in (saved or {}).items():
        slot = rule.state_spec.get(k)
        if slot is not None and slot.kind == "matrix" and isinstance(v, Tensor) and isinstance(state.get(k), Tensor):
            if state[k].dtype != v.dtype:  # torch rounded it to the parameter's dtype: take the saved value
                state[k] = v.to(device=state[k].device, copy=True)


def describe(rule) -> dict[str, Any]:
    """``{key: kind}`` of a rule, for docs and the contract tests."""
    return {k: s.kind for k, s in rule.state_spec.items()}
