"""Spectral Lens: activation-covariance and per-sample-gradient spectra, their tail exponent and RankMe.

The quantities of Liu, Paquette and Sous, "Spectral Lens" (arXiv 2605.05683), read from the
authors' code (github AndyLiuin/Spectral-lens-llm-training, commit 8529e7b:
``language_model_experiments/d12_spectrum_analysis/3_sa_baseline_1gpu.py``, the other ``*_sa_*``
scripts repeat it per architecture, and ``toy_model/metrics.py``) [EXACT unless a docstring says
otherwise]:

* :func:`activation_spectrum`: eigenvalues of the mean-centred, unbiased covariance
  ``Σ = (H − 1h̄ᵀ)ᵀ(H − 1h̄ᵀ)/(N − 1)`` of a layer's activations ``H ∈ R^{N×C}`` (every token of
  every sequence, or every pixel of every image, is one row), accumulated online in float64 with
  Chan's parallel update (:class:`ActivationCovariance`), sorted descending. The paper measures the
  residual stream after block ℓ through a parameter-free RMSNorm (eps 1e-6), in ``eval()`` mode,
  skipping non-finite batches: ``rms_norm=True`` and the default layers of a model with a block
  list reproduce that.
* :func:`per_sample_gradient_spectrum`: for a weight θ, one row per sample of
  ``G ∈ R^{n×P}`` (the gradient of that sample's loss, flattened); the spectrum is ``svdvals(G)``,
  not the SVD of one gradient. The authors loop one sequence at a time; we use
  ``torch.func.vmap(grad)`` and fall back to that loop (:func:`per_sample_gradients`).
* :func:`tail_exponent`: ``α = −slope`` of the least-squares line of ``log λ_i`` on ``log i`` over
  the ranks ``lo..hi`` (1-based, inclusive; LM scripts: 30..150, toy model: head 1..10, tail
  50..200), with its R² (``scipy.stats.linregress`` there). A Hill-type estimator is an option.
* :func:`rank_me`: ``exp(−Σ p_i log p_i)`` with ``p_i = λ_i/Σλ`` clipped below at 1e-12
  (Garrido, Balestriero, Najman, LeCun, "RankMe", ICML 2023, arXiv 2210.02885: the same entropy of
  the normalised singular values of an embedding matrix). :func:`topk_share` is the trace share of
  the leading k modes; :func:`spectrum_summary` gives all of them at once, as the probe records.

Forward hooks are always removed (also when the forward raises) and the modules' train/eval
flags restored. Nothing here changes a parameter or a ``.grad``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "ActivationCovariance",
    "TailFit",
    "activation_spectrum",
    "per_sample_gradient_spectrum",
    "per_sample_gradients",
    "rank_me",
    "select_layers",
    "spectrum_summary",
    "tail_exponent",
    "topk_share",
]

#: RMSNorm epsilon of the authors' activation measurement (``RMS_EPS`` in the scripts).
RMS_EPS = 1e-6
#: Probability floor of the authors' RankMe (``EPS`` in ``toy_model/metrics.py``).
RANKME_EPS = 1e-12
#: Rank windows (1-based, inclusive) of the authors' fits: LM scripts' tail, toy model's head/tail.
LM_TAIL = (30, 150)
TOY_HEAD = (1, 10)
TOY_TAIL = (50, 200)

_CONV_LIKE = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
              nn.GroupNorm)


# ---- scalar summaries of a spectrum ----------------------------------------------------------------


def _spectrum(x: Tensor | Any) -> Tensor:
    """A 1-D float64 spectrum, negative entries clipped to 0, sorted descending (authors' sanitize)."""
    s = torch.as_tensor(x).detach().to(torch.float64).reshape(-1)
    return torch.sort(s.clamp_min(0.0), descending=True).values


class TailFit(NamedTuple):
    """A power-law fit ``λ_i ≈ C i^{−alpha}``: the exponent and the R² of the log-log line (NaN
    when undefined: fewer than 2 usable points, or the Hill option, which has no R²)."""

    alpha: float
    r2: float


def tail_exponent(spectrum: Tensor | Any, lo: int = LM_TAIL[0], hi: int = LM_TAIL[1], *,
                  method: str = "ols") -> TailFit:
    """Power-law exponent α of a spectrum over the ranks ``lo..hi`` (1-based, inclusive).

    ``method="ols"`` (default, the authors' ``analyze_power_law``) [EXACT]: sort descending, ranks
    ``i = 1..n``; take ranks ``min(lo, n − 1) .. min(hi, n)`` (``hi <= 0``: to the end); ordinary
    least squares of ``log λ_i`` on ``log i`` over the points with a finite log (zeros are masked);
    ``α = −slope``, and R² of that line. It needs at least 3 ranks in the window and 2 finite
    points, else ``(nan, nan)``. The same fit with the toy model's windows gives ``alpha_head``
    (1..10) and ``alpha_tail`` (50..200).

    ``method="hill"`` [RECON: an option, not in the paper]: with ``k = min(hi, n − 1)``,
    ``α̂ = Σ_{i=lo}^{k} log(λ_i/λ_{k+1}) / Σ_{i=lo}^{k} log((k+1)/i)``, the mean log-excess over the
    (k+1)-th value (Hill 1975, whose tail index ξ of the eigenvalue distribution is 1/α for a
    rank-plot exponent α), normalised so that an exact power law ``λ_i ∝ i^{−α}`` returns α exactly
    for every window; ``r2`` is NaN. It weights the ranks like a likelihood rather than a
    least-squares line, so it is less sensitive to the last few ranks.
    """
    if method not in ("ols", "hill"):
        raise ValueError(f"method must be 'ols' or 'hill', got {method!r}")
    if isinstance(lo, bool) or not isinstance(lo, int) or lo < 1 or not isinstance(hi, int):
        raise ValueError(f"lo must be an int >= 1 and hi an int, got lo={lo!r}, hi={hi!r}")
    s = _spectrum(spectrum)
    n = len(s)
    nan = TailFit(math.nan, math.nan)
    if method == "hill":
        k = min(hi if hi > 0 else n - 1, n - 1)
        if k < lo or s[k] <= 0:
            return nan
        i = torch.arange(lo, k + 1, dtype=torch.float64)
        num = torch.log(s[lo - 1:k] / s[k]).sum()
        den = torch.log((k + 1) / i).sum()
        return TailFit(float(num / den), math.nan) if den > 0 else nan
    start = min(lo - 1, n - 2)
    end = min(hi, n) if hi > 0 else n
    if start < 0 or end - start <= 2:
        return nan
    y = torch.log(s[start:end])
    x = torch.log(torch.arange(start + 1, end + 1, dtype=torch.float64))
    ok = torch.isfinite(y)
    if int(ok.sum()) < 2:
        return nan
    x, y = x[ok], y[ok]
    xc, yc = x - x.mean(), y - y.mean()
    sxx, syy, sxy = (xc * xc).sum(), (yc * yc).sum(), (xc * yc).sum()
    if sxx <= 0:
        return nan
    slope = sxy / sxx
    r2 = float(sxy * sxy / (sxx * syy)) if syy > 0 else 0.0  # scipy's linregress sets r = 0 here
    return TailFit(float(-slope), r2)


def rank_me(x: Tensor, *, eps: float = RANKME_EPS) -> Tensor:
    """RankMe ``exp(−Σ_i p_i log p_i)``, ``p_i = λ_i / Σ_j λ_j`` clipped below at ``eps``. [EXACT]

    ``x`` is a spectrum (1-D: used as given, e.g. covariance eigenvalues, as the Spectral Lens
    code does) or a matrix ``(..., N, C)`` (batched), whose singular values are used, as RankMe
    is defined on an embedding matrix (Garrido et al., arXiv 2210.02885). Negative entries of a
    spectrum are clipped to 0. It equals n for n equal values (the identity matrix: full rank)
    and ≈ 1 for one nonzero value (exactly ``1 + O(n·eps·log(1/eps))``). Garrido et al. add a small
    ε to p; we clip at 1e-12 as the authors' ``compute_rankme``. An all-zero input gives 0 (the
    authors' code returns NaN), agreeing with the rank there.
    """
    x = torch.as_tensor(x).detach()
    if x.ndim >= 2:
        s = torch.linalg.svdvals(x.to(torch.float64))
    else:
        s = x.to(torch.float64).clamp_min(0.0)
    total = s.sum(-1, keepdim=True)
    p = (s / torch.where(total > 0, total, torch.ones_like(total))).clamp_min(eps)
    out = torch.exp(-(p * torch.log(p)).sum(-1))
    return torch.where(total.squeeze(-1) > 0, out, torch.zeros_like(out))


def topk_share(spectrum: Tensor | Any, k: int = 10) -> float:
    """``Σ_{i≤k} λ_i / Σ_i λ_i``: the trace share of the k leading modes (the authors' ``top10`` for
    k = 10) [EXACT]; NaN for an all-zero spectrum."""
    s = _spectrum(spectrum)
    total = float(s.sum())
    return float(s[:k].sum()) / total if total > 0 else math.nan


def spectrum_summary(spectrum: Tensor | Any, *, tail: tuple[int, int] = LM_TAIL,
                     head: tuple[int, int] = TOY_HEAD, k: int = 10) -> dict[str, float]:
    """The scalars the probe records for one spectrum: ``rankme``, ``alpha_tail`` and ``r2_tail``
    (ranks ``tail``, default the LM scripts' 30..150), ``alpha_head`` and ``r2_head`` (ranks
    ``head``, default 1..10), ``top10`` (share of the ``k`` leading modes) and ``trace``. NaN
    marks an undefined value (e.g. a tail window beyond the spectrum's length)."""
    s = _spectrum(spectrum)
    t, h = tail_exponent(s, *tail), tail_exponent(s, *head)
    return {"rankme": float(rank_me(s)), "alpha_tail": t.alpha, "r2_tail": t.r2, "alpha_head": h.alpha,
            "r2_head": h.r2, "top10": topk_share(s, k), "trace": float(s.sum())}


# ---- activation covariance -----------------------------------------------------------------------------


class ActivationCovariance:
    """Online mean and centred second moment of rows ``X ∈ R^{n×C}`` (Chan's parallel update, float64).

    ``update(X)`` merges a batch: with batch mean ``x̄``, ``δ = x̄ − mean`` and totals ``n_a``, ``n_b``,
    ``M2 += XᵀX − n_b x̄x̄ᵀ + (n_a n_b/(n_a+n_b)) δδᵀ`` and ``mean += (n_b/(n_a+n_b)) δ`` (the authors'
    ``OnlineCov``). ``covariance() = M2/(n − 1)`` (zeros while n < 2); ``eigenvalues()`` descending.
    """

    def __init__(self, dim: int, *, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        self.dim, self.n, self.dtype = int(dim), 0, dtype
        self.mean = torch.zeros(self.dim, dtype=dtype, device=device)
        self.M2 = torch.zeros(self.dim, self.dim, dtype=dtype, device=device)

    def update(self, X: Tensor) -> None:
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"expected rows of width {self.dim}, got shape {tuple(X.shape)}")
        if X.shape[0] == 0:
            return
        X = X.detach().to(device=self.mean.device, dtype=self.dtype)
        nb = X.shape[0]
        mb = X.mean(0)
        delta = mb - self.mean
        total = self.n + nb
        self.M2 += X.T @ X - nb * torch.outer(mb, mb)
        if self.n > 0:
            self.M2 += (self.n * nb / total) * torch.outer(delta, delta)
        self.mean += (nb / total) * delta
        self.n = total

    def covariance(self) -> Tensor:
        if self.n < 2:
            return torch.zeros_like(self.M2)
        return self.M2 / (self.n - 1)

    def eigenvalues(self) -> Tensor:
        """Eigenvalues of :meth:`covariance` (``eigvalsh`` of its symmetric part), descending."""
        C = self.covariance()
        return torch.linalg.eigvalsh(0.5 * (C + C.T)).flip(0)


def _default_layers(model: nn.Module) -> list[str]:
    # The paper's layers are the residual stream after each block: the elements of the first
    # ModuleList of composite modules (nanoGPT's ``transformer.h``/``blocks``). Without one, every
    # Linear and conv layer.
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) and all(any(True for _ in m.children()) for m in mod):
            return [f"{name}.{i}" if name else str(i) for i in range(len(mod))]
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]


def select_layers(model: nn.Module, layers: Any = None) -> list[str]:
    """Module names for :func:`activation_spectrum`.

    ``None``: the blocks of the first ``nn.ModuleList`` of composite modules (a transformer's block
    list: the residual stream after each block, the paper's choice), else every ``nn.Linear`` and
    convolution. A str or an iterable of str: those module names (unknown ones raise ValueError).
    A callable ``(name, module) -> bool``: the modules it accepts.
    """
    modules = dict(model.named_modules())
    if layers is None:
        out = _default_layers(model)
    elif callable(layers):
        out = [n for n, m in modules.items() if n and layers(n, m)]
    else:
        out = [layers] if isinstance(layers, str) else list(layers)
        missing = [n for n in out if n not in modules]
        if missing:
            raise ValueError(f"layers not found in the model: {missing}; e.g. {sorted(modules)[1:8]}")
    if not out:
        raise ValueError("no layer selected for the activation spectrum")
    return out


def _first_tensor(x: Any) -> Tensor | None:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (tuple, list)):
        for v in x:
            if isinstance(v, Tensor):
                return v
    if isinstance(x, dict):
        for v in x.values():
            if isinstance(v, Tensor):
                return v
    return None


def _rows(h: Tensor, module: nn.Module, channel_dim: int | None, rms_norm: bool) -> Tensor:
    """Activations → ``(N, C)`` rows: channels last, every other dim flattened into samples."""
    if channel_dim is None:
        # Channels-first layouts: conv/norm layers on (B, C, ...) and any image-like 4-D+ tensor.
        channel_dim = 1 if h.ndim >= 3 and (isinstance(module, _CONV_LIKE) or h.ndim >= 4) else -1
    h = h.detach().movedim(channel_dim, -1)
    h = h.reshape(-1, h.shape[-1]).to(torch.float64)
    if rms_norm:  # parameter-free RMSNorm over channels, as F.rms_norm(x, (C,), eps=1e-6)
        h = h * torch.rsqrt((h * h).mean(-1, keepdim=True) + RMS_EPS)
    return h


def _call(model: nn.Module, batch: Any, forward: Callable | None) -> Any:
    if forward is not None:
        return forward(model, batch)
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


class _Recorder:
    """Forward hooks that feed one :class:`ActivationCovariance` per layer."""

    def __init__(self, model: nn.Module, names: list[str], *, which: str, channel_dim: int | None,
                 rms_norm: bool, active: Callable[[], bool] = lambda: True) -> None:
        if which not in ("output", "input"):
            raise ValueError(f"which must be 'output' or 'input', got {which!r}")
        self.covs: dict[str, ActivationCovariance] = {}
        self.skipped: dict[str, int] = {}
        self.seconds = 0.0  # wall time inside the hooks (the probe reports it as overhead)
        self.handles = []
        modules = dict(model.named_modules())
        try:
            for name in names:
                self.handles.append(modules[name].register_forward_hook(
                    self._hook(name, which, channel_dim, rms_norm, active)))
        except BaseException:
            self.remove()
            raise

    def _hook(self, name: str, which: str, channel_dim: int | None, rms_norm: bool, active: Callable[[], bool]):
        def hook(module, args, output):
            if not active():
                return
            h = _first_tensor(output if which == "output" else args)
            if h is None or not h.is_floating_point() or h.ndim < 1:
                return
            t0 = time.perf_counter()
            with torch.no_grad():
                X = _rows(h if h.ndim > 1 else h[None], module, channel_dim, rms_norm)
                if not bool(torch.isfinite(X).all()):  # the authors skip non-finite batches
                    self.skipped[name] = self.skipped.get(name, 0) + 1
                else:
                    if name not in self.covs:
                        self.covs[name] = ActivationCovariance(X.shape[1], device=X.device)
                    self.covs[name].update(X)
            self.seconds += time.perf_counter() - t0
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def activation_spectrum(model: nn.Module, batch: Any = None, layers: Any = None, *, loader: Iterable | None = None,
                        which: str = "output", forward: Callable[[nn.Module, Any], Any] | None = None,
                        rms_norm: bool = False, channel_dim: int | None = None,
                        eval_mode: bool = True) -> dict[str, Tensor]:
    """Eigenvalues (float64, descending) of the covariance of each layer's activations on ``batch``.

    Args:
        model: any module (nanoGPT-style, CNN, MLP, ...).
        batch: one batch; ``model(batch)`` is called (``model(*batch)`` for a tuple or list,
            ``model(**batch)`` for a dict) unless ``forward`` is given.
        layers: module names, a callable filter or None (see :func:`select_layers`: the blocks of
            a transformer, the residual stream after block ℓ as in the paper; else every Linear
            and conv layer).
        loader: an iterable of batches to accumulate over instead of ``batch`` (the paper uses
            many; the covariance is merged across batches with Chan's update).
        which: ``"output"`` (default) or ``"input"`` (the first tensor argument) of each layer.
        forward: ``forward(model, batch)`` runs the model, e.g. a workload's ``loss``.
        rms_norm: apply a parameter-free RMSNorm over channels first (eps 1e-6), as the paper
            does for the residual stream (default False: the raw activations).
        channel_dim: the channel axis (default: 1 for conv/norm layers on ``(B, C, …)`` tensors and
            for any ≥4-D tensor, else the last); every other axis is flattened into samples, so an
            image's pixels and a sequence's tokens are samples.
        eval_mode: run in ``eval()`` (default True, as the paper); the train/eval flags of every
            module are restored afterwards.

    Returns:
        ``{layer: eigenvalues}`` (C values each, on the activations' device). A layer whose every
        batch was non-finite is missing (a warning says so). Runs under ``torch.no_grad()``; the
        hooks are removed even when the forward raises.
    """
    if (batch is None) == (loader is None):
        raise ValueError("pass exactly one of batch and loader")
    names = select_layers(model, layers)
    modes = {m: m.training for m in model.modules()}
    rec = _Recorder(model, names, which=which, channel_dim=channel_dim, rms_norm=rms_norm)
    try:
        if eval_mode:
            model.eval()
        with torch.no_grad():
            for b in ([batch] if loader is None else loader):
                _call(model, b, forward)
    finally:
        rec.remove()
        for m, flag in modes.items():
            m.training = flag
    out = {}
    for name in names:
        if name in rec.covs:
            out[name] = rec.covs[name].eigenvalues()
        else:
            warnings.warn(f"activation_spectrum: no finite activations recorded for layer {name!r}", stacklevel=2)
    return out


# ---- per-sample gradients --------------------------------------------------------------------------------


def _split(batch: Any) -> tuple[list[Tensor], Callable[[list[Tensor]], Any]]:
    """Tensor leaves of a batch (a Tensor, a tuple/list or a dict of them) and a rebuild function."""
    if isinstance(batch, Tensor):
        return [batch], lambda ts: ts[0]
    if isinstance(batch, (tuple, list)):
        idx = [i for i, v in enumerate(batch) if isinstance(v, Tensor)]

        def rebuild_seq(ts: list[Tensor]) -> Any:
            vals = list(batch)
            for i, t in zip(idx, ts):
                vals[i] = t
            return type(batch)(vals) if isinstance(batch, list) else tuple(vals)
        return [batch[i] for i in idx], rebuild_seq
    if isinstance(batch, dict):
        keys = [k for k, v in batch.items() if isinstance(v, Tensor)]
        return [batch[k] for k in keys], lambda ts: {**batch, **dict(zip(keys, ts))}
    raise TypeError(f"batch must be a Tensor, a tuple/list or a dict of tensors, got {type(batch).__name__}")


def _select_params(model: nn.Module, params: Any) -> dict[str, nn.Parameter]:
    named = dict(model.named_parameters())
    if params is None:
        out = {n: p for n, p in named.items() if p.requires_grad and p.ndim >= 2}
    elif callable(params):
        out = {n: p for n, p in named.items() if params(n, p)}
    else:
        wanted = [params] if isinstance(params, str) else list(params)
        missing = [n for n in wanted if n not in named]
        if missing:
            raise ValueError(f"params not found in the model: {missing}; known: {sorted(named)}")
        out = {n: named[n] for n in wanted}
    if not out:
        raise ValueError("no parameter selected for the per-sample gradients")
    return out


class _LossModule(nn.Module):
    """``forward(batch) = loss_fn(model, batch)``, so functional_call can swap ``model.*`` params."""

    def __init__(self, model: nn.Module, loss_fn: Callable) -> None:
        super().__init__()
        self.model = model
        self._loss_fn = loss_fn

    def forward(self, batch: Any) -> Tensor:
        return self._loss_fn(self.model, batch)


def _per_sample_vmap(model, loss_fn, leaves, rebuild, chosen, chunk_size):
    from torch.func import functional_call, grad, vmap

    wrapper = _LossModule(model, loss_fn)
    theta = {f"model.{n}": p.detach() for n, p in chosen.items()}

    def sample_loss(th: dict[str, Tensor], *xs: Tensor) -> Tensor:
        return functional_call(wrapper, th, (rebuild([x.unsqueeze(0) for x in xs]),))

    g = vmap(grad(sample_loss), in_dims=(None, *([0] * len(leaves))), chunk_size=chunk_size)(theta, *leaves)
    return {n: g[f"model.{n}"].reshape(leaves[0].shape[0], -1) for n in chosen}


def _per_sample_loop(model, loss_fn, leaves, rebuild, chosen):
    n = leaves[0].shape[0]
    names = list(chosen)
    out = {k: torch.empty(n, chosen[k].numel(), dtype=chosen[k].dtype, device=chosen[k].device) for k in names}
    for i in range(n):
        loss = loss_fn(model, rebuild([x[i:i + 1] for x in leaves]))
        grads = torch.autograd.grad(loss, [chosen[k] for k in names], allow_unused=True)
        for k, g in zip(names, grads):
            out[k][i] = 0.0 if g is None else g.reshape(-1)
    return out


def per_sample_gradients(model: nn.Module, loss_fn: Callable[[nn.Module, Any], Tensor], batch: Any,
                         params: Any = None, *, method: str = "auto", chunk_size: int | None = None
                         ) -> dict[str, Tensor]:
    """``{name: G}`` with ``G[b] = vec ∇_θ loss_fn(model, sample b)`` (``n × numel(θ)``, θ's dtype).

    ``loss_fn(model, batch) -> scalar`` receives one sample at a time, with a leading batch dim
    of 1 (a workload's ``loss`` works as is). ``batch`` is a Tensor, or a tuple/list/dict whose
    tensors share the leading dim n (other entries are passed through). ``params``: parameter
    names, a callable ``(name, param) -> bool`` or None (every trainable parameter with ≥2 dims).

    ``method``: ``"vmap"`` (``torch.func.vmap(grad(...))`` over the samples, ``chunk_size`` at a
    time), ``"loop"`` (one forward/backward per sample, as the authors' script; works with any
    model: data-dependent control flow, dropout, batch norm in train mode) or ``"auto"`` (default:
    vmap, and the loop if vmap raises). The model's train/eval mode is used as it is (the paper
    runs ``train()``); other parameters get no gradient and ``.grad`` is never written.
    """
    if method not in ("auto", "vmap", "loop"):
        raise ValueError(f"method must be 'auto', 'vmap' or 'loop', got {method!r}")
    leaves, rebuild = _split(batch)
    if not leaves:
        raise ValueError("batch has no tensor to split into samples")
    n = leaves[0].shape[0]
    if any(x.ndim == 0 or x.shape[0] != n for x in leaves):
        raise ValueError(f"every tensor of the batch needs the same leading (sample) dim, got "
                         f"{[tuple(x.shape) for x in leaves]}")
    chosen = _select_params(model, params)
    if method != "loop":
        try:
            return _per_sample_vmap(model, loss_fn, leaves, rebuild, chosen, chunk_size)
        except Exception:
            if method == "vmap":
                raise
    return _per_sample_loop(model, loss_fn, leaves, rebuild, chosen)


def per_sample_gradient_spectrum(model: nn.Module, loss_fn: Callable[[nn.Module, Any], Tensor], batch: Any,
                                 params: Any = None, *, method: str = "auto", chunk_size: int | None = None,
                                 dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
    """Singular values (descending, in ``dtype``, default float64) of each per-sample-gradient
    matrix ``G ∈ R^{n×P}`` of :func:`per_sample_gradients`: ``min(n, P)`` values per parameter,
    the square roots of the eigenvalues of the n×n gradient Gram matrix. [EXACT; the authors
    compute ``svdvals`` in float32 over 512 sequences]"""
    G = per_sample_gradients(model, loss_fn, batch, params, method=method, chunk_size=chunk_size)
    return {k: torch.linalg.svdvals(v.detach().to(dtype)) for k, v in G.items()}
