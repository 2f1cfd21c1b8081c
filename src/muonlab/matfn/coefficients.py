"""Coefficient tables for odd quintic Newton–Schulz iterations.

Each table is a tuple of ``(a, b, c)`` triples, one per step; step ``t`` applies
``p_t(X) = a X + b (X Xᵀ) X + c (X Xᵀ)² X``, i.e. ``σ ↦ a σ + b σ³ + c σ⁵`` on every singular value.
When more steps are requested than a table has, the last triple is repeated (the torch/timm
convention); when fewer, the table is truncated.
"""

from __future__ import annotations

from typing import Sequence

Triple = tuple[float, float, float]

# Keller Jordan's quintic, tuned for maximal slope at zero. The iteration does not converge to 1:
# outputs oscillate in about [0.68, 1.13] for σ/‖G‖_F ≥ 0.05.
# Source: github.com/KellerJordan/Muon muon.py (857d1ad); same constants as torch.optim.Muon.
JORDAN: tuple[Triple, ...] = ((3.4445, -4.7750, 2.0315),)

# You Jiacheng's 5-step schedule (Dion `dion/muon.py`, modded-nanogpt train_gpt_medium, timm
# "quintic"). After 5 steps σ ∈ [0.05, 1] maps into about [0.978, 1.032]; same FLOPs as JORDAN.
YOU_5: tuple[Triple, ...] = (
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
)

# You Jiacheng's 6-step schedule, integers / 1024 (x.com/YouJiacheng/status/1905861218138804534,
# via modula copies; ALGORITHMS.md §4).
YOU_6: tuple[Triple, ...] = tuple(
    (a / 1024, b / 1024, c / 1024)
    for a, b, c in (
        (3955, -8306, 5008),
        (3735, -6681, 3463),
        (3799, -6499, 3211),
        (4019, -6385, 2906),
        (2677, -3029, 1162),
        (2172, -1833, 682),
    )
)

# Polar Express (Amsel, Persson, Musco, Gower; arXiv 2505.16932), offline stage with ℓ = 1e-3,
# u = 1, degree 5, cushion 0.02407327424182761. Raw minimax triples, before the safety factor.
POLAR_EXPRESS_RAW: tuple[Triple, ...] = (
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
)

# The paper's bf16 safety factor: p_t(x) → p_t(x/1.01) for every triple but the last, so round-off
# cannot push a singular value above u_t where the polynomial diverges. Used with the 1.01
# normalisation margin (‖X‖_F·1.01 + eps) of the paper's released code.
POLAR_EXPRESS_SAFETY = 1.01


def with_safety(table: Sequence[Triple], safety: float) -> tuple[Triple, ...]:
    """Return ``table`` with p_t(x) replaced by p_t(x/safety) for all triples but the last."""
    out = [(a / safety, b / safety**3, c / safety**5) for a, b, c in table[:-1]]
    out.append(tuple(table[-1]))
    return tuple(out)


POLAR_EXPRESS: tuple[Triple, ...] = with_safety(POLAR_EXPRESS_RAW, POLAR_EXPRESS_SAFETY)

# Classic degree-5 Newton–Schulz (converges to 1 on (0, √(7/3)) but slowly from small σ).
CLASSIC_5: tuple[Triple, ...] = ((1.875, -1.25, 0.375),)
# Classic cubic written as a quintic with c = 0: σ ↦ 1.5σ − 0.5σ³.
CLASSIC_3: tuple[Triple, ...] = ((1.5, -0.5, 0.0),)

TABLES: dict[str, tuple[Triple, ...]] = {
    "jordan": JORDAN,
    "you5": YOU_5,
    "you6": YOU_6,
    "polar_express": POLAR_EXPRESS,
    "polar_express_raw": POLAR_EXPRESS_RAW,
    "classic5": CLASSIC_5,
    "classic3": CLASSIC_3,
}


def as_table(coefficients: str | Sequence[float] | Sequence[Sequence[float]]) -> tuple[Triple, ...]:
    """Normalise a coefficient spec (table name, one triple, or a list of triples) to a table.

    Raises:
        ValueError: naming the offending value when the spec is malformed.
    """
    if isinstance(coefficients, str):
        if coefficients not in TABLES:
            raise ValueError(
                f"unknown coefficient table {coefficients!r}; choose one of {sorted(TABLES)}"
            )
        return TABLES[coefficients]
    seq = list(coefficients)
    if len(seq) == 3 and all(isinstance(x, (int, float)) for x in seq):
        return (tuple(float(x) for x in seq),)  # type: ignore[return-value]
    table = []
    for i, t in enumerate(seq):
        try:
            a, b, c = (float(x) for x in t)
        except (TypeError, ValueError):
            raise ValueError(
                f"coefficients[{i}]={t!r} is not an (a, b, c) triple of numbers"
            ) from None
        table.append((a, b, c))
    if not table:
        raise ValueError("coefficients must hold at least one (a, b, c) triple, got an empty list")
    return tuple(table)


def schedule(table: Sequence[Triple], steps: int) -> tuple[Triple, ...]:
    """The per-step triples for ``steps`` iterations: truncate, or repeat the last triple."""
    if steps <= len(table):
        return tuple(table[:steps])
    return tuple(table) + (tuple(table[-1]),) * (steps - len(table))  # type: ignore[return-value]


def scalar_map(table: Sequence[Triple], x):
    """Apply the composed scalar polynomial to ``x`` (numbers, numpy arrays or tensors).

    Newton–Schulz acts on each singular value independently, so this is the exact map the
    matrix iteration applies to σ/‖G‖_F (up to floating-point error). Used by tests and benches.
    """
    for a, b, c in table:
        x2 = x * x
        x = x * (a + x2 * (b + c * x2))
    return x
