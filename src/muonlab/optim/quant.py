"""Block-wise quantization of optimizer state: 8-bit and 4-bit, linear and dynamic maps.

Pure tensor functions (torch only). :mod:`muonlab.optim.state` uses them to keep a rule's
parameter-shaped state (momentum, Adam moments) quantized between steps when a group sets
``state_precision`` (see :func:`muonlab.optim.state.dequantize_states_`).

The scheme (Gupta et al., "8-bit Muon", arXiv 2509.23106; quantizers of Dettmers et al.,
arXiv 2110.02861, as in bitsandbytes ``functional.create_dynamic_map`` / ``quantize_blockwise``):

* flatten the tensor in row-major order and split it into blocks of ``B`` elements (default
  2048, the 8-bit Muon paper's; the last block is shorter, nothing padded is stored);
* per block, the absmax scale ``s_b = max_{i∈b} |x_i|`` (float32; float64 for float64 state so
  float64 references see only the quantization error);
* per element, a code for ``y_i = x_i / s_b ∈ [−1, 1]``:

  - ``"linear"`` (symmetric, absmax): ``q_i = round(L·y_i) ∈ [−L, L]`` with ``L = 2^{bits−1} − 1``
    (127 for 8 bits, 7 for 4 bits); ``x̃_i = s_b·q_i/L``, so ``|x_i − x̃_i| ≤ s_b/(2L)``
    (``s_b/254`` for 8 bits). [8-bit: SECONDARY, the paper's scheme as summarised; 4-bit linear:
    RECON]
  - ``"dynamic"``: the index of the nearest entry of a fixed signed code book ``Q``
    (:func:`dynamic_map`), ``x̃_i = s_b·Q[q_i]``. ``|x_i − x̃_i| ≤ s_b·h`` with ``h`` half the
    widest gap of ``Q`` (:func:`dynamic_bound`: 0.00703 for 8 bits, 0.1125 for 4 bits), and far
    smaller near zero, where ``Q`` is dense. [EXACT-2, bitsandbytes' map]

A block whose scale is 0 stores 0 codes and dequantizes to exact zeros; an exact zero element
always comes back as an exact zero, and no element changes sign. A non-finite element makes its
block's scale non-finite and the whole block dequantizes to NaN (as float state would be unusable
too).

Storage (8 bits): one ``int8`` code per element, in the tensor's shape (linear: ``q``; dynamic:
``index − 128``), plus ``⌈numel/B⌉`` scales: ``1 + 4/B`` bytes per element (1.002 for B = 2048,
against 4 for float32). 4 bits: two codes per ``uint8`` byte (low nibble first), flat: ``0.5 + 4/B``
bytes per element. The 4-bit variant follows Li, Chen & Zhu (arXiv 2309.01507, first moment):
block size 128 (the default when ``block_size`` is None) and the signed 16-entry dynamic map; its
use for Muon's momentum is a RECON (no 4-bit Muon paper specifies it).

A quantized tensor is a plain dict (:func:`quantize`) so that torch's ``state_dict``,
``load_state_dict``, pickling, ``deepcopy`` and distributed checkpoints handle it as they handle
any nested state; its fields are tensors, ints and a bool (never strings, which torch's
``load_state_dict`` would rebuild character by character).
"""

from __future__ import annotations

import functools
import itertools
import math

import torch
from torch import Tensor

#: ``state_precision`` values that quantize; ``None`` and ``"float32"`` keep the rule's own state.
PRECISIONS = {"int8": 8, "int4": 4}
MAPS = ("linear", "dynamic")
#: Default block size per bit width: 2048 for 8 bits (Gupta et al.), 128 for 4 bits (Li et al.).
DEFAULT_BLOCK_SIZE = {8: 2048, 4: 128}
#: Default map per bit width: linear for 8 bits (the 8-bit Muon paper: Muon is "uniquely compatible
#: with a simple linear quantization scheme"), dynamic for 4 bits (Li et al.'s first-moment map; on
#: the contract's MLP, 4-bit linear ends at 2.3× 4-bit dynamic's loss).
DEFAULT_MAP = {8: "linear", 4: "dynamic"}
#: Fields of a quantized tensor (see :func:`quantize`).
FIELDS = ("codes", "absmax", "bits", "block_size", "dynamic")


# ---- code books ---------------------------------------------------------------------------------


@functools.cache
def _dynamic_map64(bits: int) -> tuple[float, ...]:
    max_exponent_bits = bits - 1  # bitsandbytes' signed map: 7 for 8 bits, 3 for 4 bits
    values = [0.0, 1.0]
    for i in range(max_exponent_bits):
        # 2^i midpoints of linspace(0.1, 1, 2^i + 1), times 10^(i − (E−1)), both signs.
        edges = torch.linspace(0.1, 1.0, 2**i + 1, dtype=torch.float64)
        mids = ((edges[:-1] + edges[1:]) / 2 * 10.0 ** (i - (max_exponent_bits - 1))).tolist()
        values += mids + [-m for m in mids]
    if len(values) != 2**bits:  # pragma: no cover - a construction error, not a user error
        raise AssertionError(f"dynamic map has {len(values)} entries, expected {2**bits}")
    return tuple(sorted(values))


def dynamic_map(bits: int = 8, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """The signed dynamic-tree code book of bitsandbytes (``create_dynamic_map(signed=True,
    max_exponent_bits=bits−1, total_bits=bits)``), sorted ascending.

    For ``i = 0 … bits−2``: the ``2^i`` midpoints of ``linspace(0.1, 1, 2^i + 1)`` times
    ``10^{i−(bits−2)}``, with both signs; plus ``0`` and ``1``. 8 bits: 256 values, magnitudes
    5.5e−7 … 1 (the most negative is −0.99297: the map is not symmetric at ±1). 4 bits: 16 values,
    ``±{0.0055, 0.0325, 0.0775, 0.2125, 0.4375, 0.6625, 0.8875}``, 0 and 1.
    """
    _check_bits(bits)
    return torch.tensor(_dynamic_map64(bits), dtype=dtype, device=device)


def dynamic_bound(bits: int = 8) -> float:
    """Largest ``|y − Q[nearest(y)]|`` over ``y ∈ [−1, 1]``: half the widest gap of the map, or the
    distance from −1 to its most negative value, whichever is larger."""
    q = _dynamic_map64(bits)
    half_gap = max(b - a for a, b in itertools.pairwise(q)) / 2
    return max(half_gap, 1.0 + q[0], 1.0 - q[-1])


def linear_bound(bits: int = 8) -> float:
    """``|y − round(L·y)/L| ≤ 1/(2L)``: 1/254 for 8 bits, 1/14 for 4 bits."""
    _check_bits(bits)
    return 1.0 / (2 * _levels(bits))


def _levels(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def _check_bits(bits: int) -> None:
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits!r}")


@functools.lru_cache(maxsize=32)
def _book(bits: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """The code book in ``dtype`` and the midpoints between its neighbours (nearest-code search)."""
    q = dynamic_map(bits, dtype=torch.float64)
    mids = (q[:-1] + q[1:]) / 2
    return q.to(dtype=dtype, device=device), mids.to(dtype=dtype, device=device)


# ---- quantize / dequantize ----------------------------------------------------------------------


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def resolve_block_size(bits: int, block_size: int | None) -> int:
    """``block_size``, or the bit width's default (2048 for 8 bits, 128 for 4 bits)."""
    _check_bits(bits)
    if block_size is None:
        return DEFAULT_BLOCK_SIZE[bits]
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer or None, got {block_size!r}")
    return block_size


def block_absmax(x: Tensor, block_size: int) -> Tensor:
    """``max |x_i|`` over each block of ``block_size`` consecutive elements of ``x.flatten()``
    (the last block may be shorter), in the work dtype (float32, float64 for float64 ``x``)."""
    flat = x.detach().reshape(-1).to(_work_dtype(x.dtype))
    n = flat.numel()
    nblocks = max(1, math.ceil(n / block_size))
    padded = flat.new_zeros(nblocks * block_size)
    padded[:n] = flat.abs()  # zero padding cannot raise a block's absmax
    return padded.view(nblocks, block_size).amax(dim=1)


def _per_element(scale: Tensor, n: int, block_size: int) -> Tensor:
    return scale.repeat_interleave(block_size)[:n]


def quantize(x: Tensor, bits: int = 8, *, map: str = "linear", block_size: int | None = None) -> dict:
    """Block-wise absmax quantization of ``x`` (see the module docstring).

    Args:
        x: a real floating tensor (any shape; read in row-major order).
        bits: 8 (``int8`` codes) or 4 (two codes per ``uint8``).
        map: ``"linear"`` or ``"dynamic"``.
        block_size: elements per scale; None = 2048 for 8 bits, 128 for 4 bits.

    Returns:
        ``{"codes": Tensor, "absmax": Tensor, "bits": int, "block_size": int, "dynamic": bool}``;
        ``codes`` has ``x``'s shape for 8 bits and ``⌈numel/2⌉`` bytes for 4 bits.
    """
    if map not in MAPS:
        raise ValueError(f"map must be one of {MAPS}, got {map!r}")
    block_size = resolve_block_size(bits, block_size)
    if not x.is_floating_point():
        raise ValueError(f"quantize needs a floating tensor, got {x.dtype}")
    work = _work_dtype(x.dtype)
    flat = x.detach().reshape(-1).to(work)
    n = flat.numel()
    absmax = block_absmax(x, block_size)
    # A zero block divides by 1 instead: its y (hence its codes) are exact zeros.
    safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    y = flat / _per_element(safe, n, block_size)  # |x| ≤ s_b, so |y| ≤ 1 exactly in IEEE arithmetic
    if map == "linear":
        L = _levels(bits)
        q = torch.round(y * L)  # half to even; q ∈ [−L, L]
        idx = q + (0 if bits == 8 else 8)  # 4 bits: offset binary, 8 = zero
    else:
        _, mids = _book(bits, work, flat.device)
        idx = torch.bucketize(y, mids)  # nearest code (a tie goes to the lower one)
        if bits == 8:
            idx = idx - 128
    if bits == 8:
        codes = idx.to(torch.int8).reshape(x.shape)
    else:
        nib = idx.to(torch.uint8)
        if n % 2:
            nib = torch.cat([nib, nib.new_zeros(1)])
        codes = nib[0::2] | (nib[1::2] << 4)
    return {"codes": codes, "absmax": absmax, "bits": bits, "block_size": block_size, "dynamic": map == "dynamic"}


def dequantize(q: dict, shape: torch.Size | tuple[int, ...] | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """The tensor :func:`quantize` stored, of ``shape`` (needed for 4 bits, whose codes are flat;
    default: the codes' shape) and ``dtype`` (default: the scales' dtype)."""
    check_quantized(q)
    codes, absmax, bits, block_size = q["codes"], q["absmax"], q["bits"], q["block_size"]
    if shape is None:
        if bits == 4:
            raise ValueError("dequantize: 4-bit codes are packed; pass the tensor's shape")
        shape = codes.shape
    n = math.prod(shape)
    expected = n if bits == 8 else (n + 1) // 2
    if codes.numel() != expected or absmax.numel() != max(1, math.ceil(n / block_size)):
        raise ValueError(
            f"dequantize: {bits}-bit codes of {codes.numel()} elements and {absmax.numel()} scales do not "
            f"fit a tensor of shape {tuple(shape)} with block size {block_size}"
        )
    work = absmax.dtype if absmax.dtype in (torch.float32, torch.float64) else torch.float32
    if bits == 8:
        idx = codes.reshape(-1).to(torch.int64)
    else:
        packed = codes.reshape(-1).to(torch.uint8)
        idx = torch.stack([packed & 0xF, packed >> 4], dim=1).reshape(-1)[:n].to(torch.int64)
    scale = _per_element(absmax.to(work), n, block_size)
    if q["dynamic"]:
        book, _ = _book(bits, work, codes.device)
        value = book[idx + 128] if bits == 8 else book[idx]
        out = scale * value
    else:
        L = _levels(bits)
        if bits == 4:
            idx = idx - 8
        out = idx.to(work) * (scale / L)
    return out.reshape(shape).to(dtype or absmax.dtype)


def is_quantized(entry) -> bool:
    """Whether a state entry holds a :func:`quantize` result."""
    return isinstance(entry, dict) and "codes" in entry and "absmax" in entry


def check_quantized(q) -> None:
    """Raise ValueError unless ``q`` is a well-formed :func:`quantize` result."""
    if not is_quantized(q) or any(k not in q for k in FIELDS):
        raise ValueError(f"not a quantized tensor (expected the fields {FIELDS}), got {type(q).__name__}")
    if q["bits"] not in (4, 8):
        raise ValueError(f"quantized tensor with bits={q['bits']!r}; expected 8 or 4")
    want = torch.int8 if q["bits"] == 8 else torch.uint8
    if q["codes"].dtype != want:
        raise ValueError(
            f"{q['bits']}-bit codes must be {want}, got {q['codes'].dtype} (a checkpoint loaded without "
            "muonlab's load_state_dict, which restores the saved dtypes?)"
        )


def nbytes(entry) -> int:
    """Bytes of a state entry: a tensor, a quantized tensor (codes + scales), or 0 for numbers."""
    if isinstance(entry, Tensor):
        return entry.numel() * entry.element_size()
    if isinstance(entry, dict):
        return sum(nbytes(v) for v in entry.values())
    return 0


def state_nbytes(optimizer: torch.optim.Optimizer, *, include_step: bool = False) -> int:
    """Bytes of all tensors in ``optimizer.state`` (quantized entries count codes and scales)."""
    return sum(nbytes(v) for st in optimizer.state.values() for k, v in st.items() if include_step or k != "step")
