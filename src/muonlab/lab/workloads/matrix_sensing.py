"""matrix_sensing: seed 003's underdetermined matrix sensing (arXiv 2606.08388).

Problem (our reconstruction of the protocol of Beneventano, Abdelmoneum, Poggio, "The Spectral
Dynamics and Noise Geometry of Muon", arXiv 2606.08388; sizes from the paper)::

    W* = U* diag(σ*) V*ᵀ  ∈ R^{p×n}, rank r, σ* evenly spaced in [1, 3]
    y_k = ⟨A_k, W*⟩ (+ noise),  A_k iid N(0, 1) entries,  k = 1..d   (d < p·n: underdetermined)
    L(W) = (1/2d) Σ_k (⟨A_k, W⟩ − y_k)²,  full batch,  W₀ = init_scale · N(0, 1)

Infinitely many W fit the d measurements; which one an optimizer picks is its implicit bias. The
seed reports that Muon stabilises at a nuclear norm ~1.3–2× the minimum (e.g. 1.59× mean over the
10-instance family p = n = 6, d = 10), i.e. it does not find the nuclear-norm minimiser; Muon
flattens the spectrum instead. The reference ``min ‖X‖_* s.t. ⟨A_k, X⟩ = y_k`` is solved with CVXPY
when installed (``pip install muonlab[sensing]``); without it ``val/nuc_ratio`` is left out.

Evaluation also reports the *frame alignment* of the weight and the full-batch gradient
``G = ∇L(W) = (1/d) Σ_k (⟨A_k, W⟩ − y_k) A_k`` (seed 003's Figure 7):
``‖sin Θ‖_F = (k − ‖U_Wᵀ U_G‖_F²)^{1/2}`` between the top-k left singular subspaces of W and G, and
the same for the right ones (Davis–Kahan; Yu, Wang & Samworth, arXiv 1405.0680), with
``k = rank(W*)`` unless the ``frame_k`` knob says otherwise [RECON: the seed does not state k].

The whole instance is CPU-fast (a 6×6 matrix), so this workload doubles as a test fixture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..workload import Workload

# Nuclear-norm minima by instance, so a sweep over seeds and LRs solves each SDP once per process.
_CVX_CACHE: dict[tuple, float | None] = {}


def nuclear_norm_minimum(A: Tensor, y: Tensor) -> float | None:
    """``min ‖X‖_* s.t. ⟨A_k, X⟩ = y_k`` via CVXPY (float), or None when CVXPY is not installed."""
    try:
        import cvxpy as cp
    except ImportError:
        return None
    d, p, n = A.shape
    X = cp.Variable((p, n))
    A64, y64 = A.double().numpy(), y.double().numpy()
    constraints = [cp.sum(cp.multiply(A64[k], X)) == y64[k] for k in range(d)]
    problem = cp.Problem(cp.Minimize(cp.normNuc(X)), constraints)
    problem.solve()
    return float(problem.value) if problem.value is not None else None


def spectrum_stats(W: Tensor) -> dict[str, float]:
    """Nuclear norm, stable rank and normalised spectral entropy of ``W`` (float64, arXiv 2606.08388).

    entropy is ``H(σ/Σσ)/log r`` over the σ above 1e-8·σ₁ (1 = perfectly flat spectrum).
    """
    s = torch.linalg.svdvals(W.detach().double())
    nz = s[s > 1e-8 * s[0]] if s[0] > 0 else s[:1]
    q = nz / nz.sum()
    r = len(nz)
    entropy = float(-(q * q.log()).sum() / math.log(r)) if r > 1 else 0.0
    return {"nuclear_norm": float(s.sum()), "stable_rank": float((s**2).sum() / s[0] ** 2),
            "entropy": entropy}


def relative_gap(M: Tensor, k: int) -> float:
    """``(σ_k − σ_{k+1})/σ₁`` of ``M`` (float64; σ_{k+1} = 0 when k = min(p, n); 0 for M = 0).

    The top-k singular subspace is well defined only when this gap is positive, and Davis–Kahan
    bounds its sensitivity by ``‖perturbation‖/(σ_k − σ_{k+1})``: a small gap makes ``‖sin Θ‖_F``
    between that subspace and another unstable."""
    s = torch.linalg.svdvals(M.detach().double())
    if s[0] <= 0:
        return 0.0
    nxt = s[k] if k < len(s) else s.new_zeros(())
    return float((s[k - 1] - nxt) / s[0])


@dataclass
class MatrixSensing(Workload):
    """Underdetermined matrix sensing with a known low-rank truth and a nuclear-norm reference.

    Knobs:
        p, n: matrix shape (default 6 × 6).
        d: number of linear measurements (default 10; the seed also uses 20 and 50).
        rank: rank of W* (default 2; the seed's rank is not stated [GUESS]).
        instance: seed of the problem (A, W*); the training ``seed`` only sets W₀ (default 0).
        init_scale: standard deviation of W₀'s entries (default 1e-3 [RECON]).
        noise: standard deviation of additive measurement noise (default 0).
        frame_k: k of the frame-alignment metrics ``val/sin_theta*`` (default 0 = ``rank``).
    """

    name = "matrix_sensing"
    description = "underdetermined matrix sensing with the CVXPY nuclear-norm minimum (seed 003)"
    default_steps = 1000
    eval_every = 50
    metric = "val/loss"
    params_name: ClassVar[str] = "W.weight"

    p: int = 6
    n: int = 6
    d: int = 10
    rank: int = 2
    instance: int = 0
    init_scale: float = 1e-3
    noise: float = 0.0
    frame_k: int = 0

    def __post_init__(self) -> None:
        if min(self.p, self.n, self.d, self.rank) < 1 or self.rank > min(self.p, self.n):
            raise ValueError(f"matrix_sensing: need p, n, d >= 1 and 1 <= rank <= min(p, n); got "
                             f"p={self.p}, n={self.n}, d={self.d}, rank={self.rank}")
        if not 0 <= self.frame_k <= min(self.p, self.n):
            raise ValueError(f"matrix_sensing: frame_k={self.frame_k} must be in [0, min(p, n)] "
                             "(0 = rank)")

    def setup(self, device: torch.device) -> None:
        self.device = device
        g = torch.Generator().manual_seed(self.instance)
        U, _ = torch.linalg.qr(torch.randn(self.p, self.rank, generator=g))
        V, _ = torch.linalg.qr(torch.randn(self.n, self.rank, generator=g))
        sigma = torch.linspace(1.0, 3.0, self.rank) if self.rank > 1 else torch.ones(1)
        self.W_star = (U * sigma) @ V.T
        self.A = torch.randn(self.d, self.p, self.n, generator=g)
        self.y = (self.A * self.W_star).sum((1, 2)) + self.noise * torch.randn(self.d, generator=g)
        key = (self.p, self.n, self.d, self.rank, self.instance, self.noise)
        if key not in _CVX_CACHE:
            _CVX_CACHE[key] = nuclear_norm_minimum(self.A, self.y)
        self.nuc_min = _CVX_CACHE[key]
        self.A, self.y, self.W_star = self.A.to(device), self.y.to(device), self.W_star.to(device)

    def build_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = nn.Module()
        model.W = nn.Linear(self.n, self.p, bias=False)  # weight is the p×n matrix W
        nn.init.normal_(model.W.weight, std=self.init_scale)
        return model

    def get_batch(self, gen: torch.Generator) -> None:
        return None  # full batch: every step sees all d measurements

    def loss(self, model: nn.Module, batch: None) -> Tensor:
        residual = (self.A * model.W.weight).sum((1, 2)) - self.y
        return 0.5 * (residual**2).mean()

    def gradient(self, W: Tensor) -> Tensor:
        """The full-batch gradient ``∇L(W) = (1/d) Σ_k (⟨A_k, W⟩ − y_k) A_k`` (closed form)."""
        residual = (self.A * W).sum((1, 2)) - self.y
        return torch.einsum("k,kpn->pn", residual, self.A) / self.d

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        from ...diagnostics.spectrum import frame_alignment

        W = model.W.weight.detach()
        stats = spectrum_stats(W)
        out = {"val/loss": self.loss(model, None).item(),
               "val/rel_error": float((W - self.W_star).norm() / self.W_star.norm()),
               **{f"val/{k}": v for k, v in stats.items()}}
        if self.nuc_min:
            out["val/nuc_ratio"] = stats["nuclear_norm"] / self.nuc_min
        G = self.gradient(W)
        k = self.frame_k or self.rank
        frame = frame_alignment(W, G, k)
        out.update({"val/sin_theta": float(frame["max"]), "val/sin_theta_left": float(frame["left"]),
                    "val/sin_theta_right": float(frame["right"]), "val/grad_norm": float(G.norm()),
                    "val/frame_gap_w": relative_gap(W, k), "val/frame_gap_g": relative_gap(G, k)})
        return out

    def routing(self) -> dict:
        # W is the only parameter and the problem's hidden matrix, not an output layer.
        return {"roles": {self.params_name: "hidden"}}

    def info(self) -> dict:
        return {"nuclear_norm_min": self.nuc_min, "nuclear_norm_star": float(torch.linalg.svdvals(
            self.W_star.double()).sum())}
