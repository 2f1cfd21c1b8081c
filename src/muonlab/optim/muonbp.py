"""MuonBP: block-periodic orthogonalization, emulated on one device.

Under tensor/ZeRO parallelism each device holds one block (shard) of a matrix. MuonBP
orthogonalizes each block locally, with no communication, and the full gathered matrix only every
P-th step::

    M ← βM + (1−β)G;   X ← (1−β)G + βM  if nesterov else M       momentum_buffer (Muon's)
    full step  (t = 1, P+1, 2P+1, ...):   W   ← W   − η·s(m, n)·orthogonalize(X)
    block step (every other t):           W_b ← W_b − η·r·s(m_b, n_b)·orthogonalize(X_b)
    (decoupled weight decay (1 − ηλ)W before either, with the unadjusted η)

The blocks X_b split X along ``shard_dim`` (0: rows / output features, 1: columns / input
features) into ``num_blocks`` pieces the way a DTensor ``Shard(dim)`` does (``torch.chunk``: equal
ceil-sized pieces, the last one smaller, possibly fewer pieces). Each step kind has its own step
size, as the paper's theory requires: η·s for full steps and η·r·s for block steps (``r`` =
``block_lr_scale``), each with the shape factor ``s`` of *its* matrix (``adjust_lr_fn``, default
"match_rms_adamw": 0.2·√max(dims), so both kinds of step have update RMS 0.2).

P = 1, or ``num_blocks = 1``, is Muon. Orthogonalization is scale-invariant, so the momentum form
(EMA here, accumulate in the paper) does not change the update.

Defaults: P = 5 and 8 blocks along dim 0 are [GUESS] (no published default; the paper's headline
run uses 8-way tensor parallelism), ``block_lr_scale = 1`` (η_block = η_full, our RECON choice),
momentum 0.95 with Nesterov as Muon, weight decay 0.1 (torch Muon, Moonlight).

Source: Khaled et al., "MuonBP", arXiv 2510.16981 [SECONDARY: zij ``canon/math/muonbp.md`` and the
abstract; the single-device emulation is ours, RECON].
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import OptimizerSpec, register
from . import hyper as H
from .muon import MuonRule
from .rule import orthogonalize_group, scalar
from .steps import SHAPE_SCALES, shape_scale


class MuonBPRule(MuonRule):
    """Muon with blockwise orthogonalization except every P-th step (see the module docstring)."""

    name = "muonbp"
    hypers = {
        **MuonRule.hypers,
        "adjust_lr_fn": H.Hyper("match_rms_adamw", "shape scaling of full and block steps (each its own "
                                "dims); None = 'original'", kind="choice", choices=(None,) + SHAPE_SCALES),
        "period": H.Hyper(5, "P: a full orthogonalization every P steps (1 = Muon) [GUESS 5]", kind="int",
                          low=1),
        "num_blocks": H.Hyper(8, "number of emulated shards (1 = Muon) [GUESS 8]", kind="int", low=1),
        "shard_dim": H.Hyper(0, "matrix dim the shards split: 0 rows (out), 1 columns (in)",
                             kind="choice", choices=(0, 1)),
        "block_lr_scale": H.Hyper(1.0, "r = η_block/η_full (paper: two step sizes)", low=0.0),
    }

    @torch.compiler.disable
    def step(self, params, grads, states, group, executor) -> None:
        # Eager inside a compiled optimizer step: full or block-wise depends on the step count;
        # traced, it would recompile for every new pattern and scheduled lr.
        super().step(params, grads, states, group, executor)

    def matrix_fn(self, X: Tensor, states: list[dict], group: dict) -> Tensor:
        # The shell's step counter (1-based); full steps at t = 1, P+1, ...
        full = [(int(st["step"]) - 1) % group["period"] == 0 for st in states]
        if all(full):
            return self._full(X, group)
        if not any(full):
            return self._blockwise(X, group)
        mask = torch.tensor(full, device=X.device).repeat_interleave(X.shape[0] // len(states))
        out = torch.empty_like(X)
        out[mask] = self._full(X[mask], group)
        out[~mask] = self._blockwise(X[~mask], group)
        return out

    @staticmethod
    def _full(X: Tensor, group: dict) -> Tensor:
        return orthogonalize_group(X, group) * shape_scale(*X.shape[-2:], group["adjust_lr_fn"])

    @staticmethod
    def _blockwise(X: Tensor, group: dict) -> Tensor:
        dim = X.ndim - 2 + group["shard_dim"]
        blocks = []
        for Xb in torch.chunk(X, group["num_blocks"], dim=dim):
            s = shape_scale(*Xb.shape[-2:], group["adjust_lr_fn"]) * group["block_lr_scale"]
            blocks.append(orthogonalize_group(Xb, group) * s)
        return torch.cat(blocks, dim=dim)

    def post(self, p: Tensor, O: Tensor, state: dict, group: dict) -> tuple[Tensor, float]:
        return O, scalar(group["lr"])  # shape factors are per block, applied in matrix_fn


register(
    OptimizerSpec(
        name="muonbp",
        configs={"column_shards": {"shard_dim": 1, "period": 2}},
        rule=MuonBPRule(),
        summary="Muon orthogonalizing each of k row/column blocks separately, the full matrix every P steps",
        recommended={"lr": 1e-2},
        source="Khaled et al., MuonBP, arXiv 2510.16981 (zij summary, abstract); single-device emulation",
        certainty="SECONDARY",
        state="1× (momentum_buffer)",
        search_space={"lr": (1e-4, 3e-2)},
    )
)
