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
  executor, instead of only being wrong under FSDP2);
* quantized storage: with a group's ``state_precision="int8"`` or ``"int4"``, the shell keeps
  ``param`` entries (unless declared ``quantize=False``) as :func:`muonlab.optim.quant.quantize`
  dicts between steps (:func:`dequantize_states_` before the rule's step, :func:`quantize_states_`
  after it), so rules always see ordinary float tensors.

Kinds:

=============  ==================================================================================
``param``      shaped like the parameter, element-wise (momentum, Adam moments)
``matrix``     one slot per matrix of the parameter (a row second moment, Dion's Q, a scalar)
``counter``    a plain Python number (MiMuon's branch counters, a draw key); never a tensor, so
               torch's load does not cast it
=============  ==================================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from . import quant

KINDS = ("param", "matrix", "counter")


@dataclass(frozen=True)
class Slot:
    """One declared state entry.

    Attributes:
        kind: ``"param"``, ``"matrix"`` or ``"counter"`` (see the module docstring).
        matrix_phase: ``matrix_fn`` or ``post`` read or write it (or read it while another phase
            changes it), so a distributed executor needs it whole where the matrix work runs.
        doc: one line.
        quantize: a ``param`` entry that ``state_precision`` may store quantized between steps
            (default True; False for state that must stay exact, e.g. integer or running-sum
            buffers whose rounding would compound).
    """

    kind: str
    matrix_phase: bool = False
    doc: str = ""
    quantize: bool = True

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
        elif slot is not None and quant.is_quantized(v) and isinstance(state.get(k), dict):
            # A quantized entry: torch cast its int8/uint8 codes and float32 scales to the
            # parameter's dtype; take back the saved tensors (on the loaded entry's device).
            loaded = state[k]
            state[k] = {
                f: (x.to(device=loaded[f].device, copy=True)
                    if isinstance(x, Tensor) and isinstance(loaded.get(f), Tensor) and loaded[f].dtype != x.dtype
                    else loaded.get(f, x))
                for f, x in v.items()
            }


# ---- quantized storage of parameter-shaped state ------------------------------------------------


def quant_format(group: dict) -> tuple[int, str, int] | None:
    """``(bits, map, block_size)`` a group's ``state_precision`` asks for, or None (full precision)."""
    bits = quant.PRECISIONS.get(group.get("state_precision"))
    if bits is None:
        return None
    qmap = group.get("state_quant_map") or quant.DEFAULT_MAP[bits]
    return bits, qmap, quant.resolve_block_size(bits, group.get("state_block_size"))


def quantizable_keys(rule) -> tuple[str, ...]:
    """``param`` entries that may be stored quantized."""
    return tuple(k for k, s in rule.state_spec.items() if s.kind == "param" and s.quantize)


def dequantize_states_(rule, params: list[Tensor], states: list[dict]) -> None:
    """Replace every quantized entry of ``states`` by the float tensor it stores, in place.

    The tensor gets its parameter's shape and dtype (the dtype torch's ``load_state_dict`` gives
    parameter-shaped state). Entries are recognised by their form, not by the group's current
    ``state_precision``, so switching precision between steps (or loading a full-precision
    checkpoint into a quantizing optimizer) needs nothing special.
    """
    keys = quantizable_keys(rule)
    for p, st in zip(params, states):
        for k in keys:
            entry = st.get(k)
            if isinstance(entry, dict) and quant.is_quantized(entry):
                st[k] = quant.dequantize(entry, p.shape, p.dtype)


def quantize_states_(rule, params: list[Tensor], states: list[dict], fmt: tuple[int, str, int] | None) -> None:
    """Store the floating, parameter-shaped ``quantize=True`` entries of ``states`` as
    ``fmt = (bits, map, block_size)`` (:func:`quant_format`); nothing when ``fmt`` is None."""
    if fmt is None:
        return
    bits, qmap, block_size = fmt
    keys = quantizable_keys(rule)
    for p, st in zip(params, states):
        for k in keys:
            v = st.get(k)
            if isinstance(v, Tensor) and v.is_floating_point() and v.shape == p.shape:
                st[k] = quant.quantize(v, bits, map=qmap, block_size=block_size)


def describe(rule) -> dict[str, Any]:
    """``{key: kind}`` of a rule, for docs and the contract tests."""
    return {k: s.kind for k, s in rule.state_spec.items()}
