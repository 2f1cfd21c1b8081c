"""SpectralProbe: spectral statistics of weights, gradients, momenta and applied updates in training.

The probe attaches to any ``torch.optim.Optimizer`` through its step hooks, so the optimizer
itself contains no diagnostics code:

* ``register_step_pre_hook``: at a sampled step, snapshot each target's weight and gradient;
* ``register_step_post_hook``: read the momentum buffer, form the applied update
  ``ΔW = W_after − W_before``, compute the statistics, and emit one record per parameter.

On a step that is not sampled, the hooks only increment a counter.

With ``activations`` set, the probe also registers forward hooks on chosen layers of the model and
records the Spectral Lens statistics of their activation covariance (arXiv 2605.05683, see
:mod:`muonlab.diagnostics.lens`) over the forward passes that build a sampled step's gradient.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

from . import spectrum as S
from .lens import _Recorder, select_layers, spectrum_summary

#: Per-parameter state keys read as "the momentum", first match wins: muonlab/torch Muon and SGD
#: (``momentum_buffer``) and Adam-type first moments (``exp_avg``).
DEFAULT_STATE_KEYS = ("momentum_buffer", "exp_avg")
TARGETS = ("weight", "grad", "momentum", "update")


def _as_matrix(x: Tensor) -> Tensor:
    # Conv filters (out, in, kh, kw) -> (out, in·kh·kw): Dion's ``flatten=True`` (microsoft/dion).
    return x if x.ndim == 2 else x.reshape(x.shape[0], -1)


def _py(values: dict[str, Tensor], with_sv: bool) -> dict[str, Any]:
    """Tensors -> JSON-safe Python values in one device sync. Non-finite floats become ``None``
    (strict JSON has no inf), e.g. ``min_gap`` of a matrix with fewer than two nonzero σ's."""
    keys = [k for k, v in values.items() if v.ndim == 0]
    out: dict[str, Any] = {}
    if keys:
        flat = torch.stack([values[k].to(torch.float64) for k in keys]).tolist()
        out = {k: (v if math.isfinite(v) else None) for k, v in zip(keys, flat)}
    if with_sv and "singular_values" in values:
        out["singular_values"] = values["singular_values"].tolist()
    return out


class SpectralProbe:
    """Sample spectral statistics of chosen matrices every ``every`` optimizer steps.

    Args:
        model: the module being trained. Its ``named_parameters()`` supply the names. It may be
            ``None``; parameters are then named from the group's ``param_names`` or as
            ``"group{g}.param{i}"``.
        optimizer: any ``torch.optim.Optimizer``. It is not modified beyond two step hooks.
        every: sample every N-th step (default 100). Steps are counted 0-based from the probe's
            creation, and step t is sampled when ``t % every == 0``, so T steps give
            ``ceil(T / every)`` samples: steps 0, N, 2N, …
        params: which matrices to sample. ``None`` (default) selects every parameter with ≥2 dims
            that the optimizer updates. A callable ``(name, tensor) -> bool`` filters them, and an
            iterable of names selects exactly those (unknown names raise ``ValueError``).
        targets: a subset of ``("weight", "grad", "momentum", "update")`` (default all).
            ``weight`` is the weight *before* the step, the point where the gradient was taken.
            ``momentum`` is the first of ``state_keys`` found in ``optimizer.state[p]`` after the
            step. ``update`` is the applied ``ΔW``, weight decay included.
        state_keys: state entries read as the momentum (default
            ``("momentum_buffer", "exp_avg")``).
        frame_k: if set, also record ``‖sin Θ‖_F`` between the top-k singular subspaces of the
            weight and the gradient (:func:`~muonlab.diagnostics.spectrum.frame_alignment`),
            with k clipped to ``min(m, n)``. The default ``None`` skips it. Matrix sensing takes
            ``k = rank(W*)``, which is known in matrix sensing but not for a network, where any
            default k would be a guess. It also costs two full SVDs instead of two ``svdvals``
            per matrix, about a third more probe time.
        rtol: rank threshold passed to every statistic (default: the module default of
            :mod:`muonlab.diagnostics.spectrum`).
        dtype: compute dtype (default float64), on the parameter's device.
        singular_values: include the full spectrum of each target in its record (default True).
        jsonl: optional path. Each sampled step's records are appended to it as they are produced.
        tensorboard: optional log dir (needs the ``tensorboard`` package) or any object with
            ``add_scalar(tag, value, step)``, e.g. a ``SummaryWriter``. Scalars are logged as
            ``spectral/<target>/<stat>/<param>``.
        keep: keep records in memory for :meth:`records` and :meth:`write_jsonl` (default
            True). Set it to False for long runs that stream to ``jsonl`` or TensorBoard.
        activations: opt-in activation spectra (default False). True selects the layers of
            :func:`~muonlab.diagnostics.lens.select_layers` (a transformer's blocks, else every
            Linear and conv layer); a list of module names or a callable ``(name, module) -> bool``
            selects others. Forward hooks accumulate the covariance of each layer's output over
            the forward passes run with gradients enabled before a sampled step (evaluation under
            ``torch.no_grad`` is ignored), and the post-step hook emits one record per layer.
            Needs ``model``.

    Record layout (one dict per sampled (step, parameter); every value is a float, an int, a str,
    a list or ``None``, so the dict is JSON-serializable)::

        {"step": 0, "param": "h.0.attn.c_attn.weight", "shape": [384, 128], "group": 0,
         "weight": {<spectral_stats keys>}, "grad": {...}, "momentum": {...}, "update": {...},
         "pairwise": {"grad_update_alignment": cos(G, −ΔW), "grad_descent_potential": ⟨G, −ΔW⟩,
                      "momentum_update_alignment": cos(M, −ΔW),
                      "update_orthogonality_error": orthogonality_error(−ΔW, normalize=True),
                      "update_polar_error": polar_error(−ΔW, M or G, fit_scale=True),
                      "polar_reference": "momentum" | "grad",
                      # only with frame_k set:
                      "frame_alignment_left": …, "frame_alignment_right": …, "frame_alignment_max": …,
                      "frame_k": k}}

    With ``activations``, each sampled step also gives one record per layer (no ``param`` key)::

        {"step": 0, "layer": "blocks.0",
         "activation": {"rankme": …, "alpha_tail": …, "r2_tail": …, "alpha_head": …, "r2_head": …,
                        "top10": …, "trace": …, "samples": N, "width": C,
                        "eigenvalues": [...]}}   # eigenvalues only with singular_values=True

    (:func:`~muonlab.diagnostics.lens.spectrum_summary` of the covariance eigenvalues: the tail
    exponent over ranks 30..150, the head exponent over ranks 1..10, the top-10 share, RankMe.)

    ``None`` marks a value that is undefined: ``min_gap`` with fewer than two nonzero σ's, which the
    pure functions return as ``+inf``. A target that is absent (no momentum state, no gradient) is
    left out of the record. Parameters whose ``.grad`` is ``None`` at a sampled step are skipped.

    Tensors with more than 2 dims are flattened to ``(shape[0], -1)``.

    Example::

        >>> with SpectralProbe(model, opt, every=100, jsonl="spectra.jsonl") as probe:
        ...     train(model, opt)
        >>> probe.records()[0]["weight"]["stable_rank"]

    ``probe.seconds`` is the wall time spent inside the hooks, a direct measure of the overhead.
    """

    def __init__(
        self,
        model: nn.Module | None,
        optimizer: torch.optim.Optimizer,
        every: int = 100,
        *,
        params: Callable[[str, Tensor], bool] | Iterable[str] | None = None,
        targets: Iterable[str] = TARGETS,
        state_keys: Iterable[str] = DEFAULT_STATE_KEYS,
        frame_k: int | None = None,
        rtol: float | None = None,
        dtype: torch.dtype = torch.float64,
        singular_values: bool = True,
        jsonl: str | os.PathLike | None = None,
        tensorboard: Any = None,
        keep: bool = True,
        activations: bool | Iterable[str] | Callable[[str, nn.Module], bool] = False,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        self.targets = tuple(targets)
        bad = [t for t in self.targets if t not in TARGETS]
        if bad or not self.targets:
            raise ValueError(f"targets must be a non-empty subset of {TARGETS}, got {self.targets!r}")
        if frame_k is not None and (isinstance(frame_k, bool) or not isinstance(frame_k, int) or frame_k < 1):
            raise ValueError(f"frame_k must be None or an int >= 1, got {frame_k!r}")
        self.optimizer = optimizer
        self.every = every
        self.state_keys = tuple(state_keys)
        self.frame_k = frame_k
        self.rtol = rtol
        self.dtype = dtype
        self.singular_values = singular_values
        self.jsonl = os.fspath(jsonl) if jsonl is not None else None
        self.keep = keep
        self.seconds = 0.0  # wall time inside the hooks
        self._step = 0
        self._records: list[dict[str, Any]] = []
        self._written: dict[str, int] = {}  # path -> records already appended by write_jsonl
        self._pending: list[tuple[str, int, Tensor, Tensor, Tensor | None]] = []
        self._names = {id(p): n for n, p in model.named_parameters()} if model is not None else {}
        self._select = self._make_selector(params)
        self._writer, self._own_writer = self._make_writer(tensorboard)
        self._acts = self._make_recorder(model, activations)
        self._handles = [
            optimizer.register_step_pre_hook(self._pre_hook),
            optimizer.register_step_post_hook(self._post_hook),
        ]

    def _make_recorder(self, model: nn.Module | None, activations: Any) -> _Recorder | None:
        if activations is False or activations is None:
            return None
        if model is None:
            raise ValueError("activations=... needs the model (its forward passes are hooked)")
        names = select_layers(model, None if activations is True else activations)
        # Only forward passes that build a sampled step's gradient: grad mode on (evaluation runs
        # under no_grad) and the step about to be taken is sampled.
        return _Recorder(model, names, which="output", channel_dim=None, rms_norm=False,
                         active=lambda: self._step % self.every == 0 and torch.is_grad_enabled())

    # ---- configuration ----------------------------------------------------------------------

    def _make_selector(self, params: Any) -> Callable[[str, Tensor], bool]:
        if params is None:
            return lambda name, p: p.ndim >= 2
        if callable(params):
            return params
        if isinstance(params, str):
            raise TypeError("params must be an iterable of names, not a single str; wrap it in a list")
        wanted = set(params)
        known = {self._name(g, i, p) for g, group in enumerate(self.optimizer.param_groups)
                 for i, p in enumerate(group["params"])}
        missing = sorted(wanted - known)
        if missing:
            raise ValueError(f"params not found in the optimizer: {missing}; known: {sorted(known)}")
        return lambda name, p: name in wanted

    @staticmethod
    def _make_writer(tensorboard: Any) -> tuple[Any, bool]:
        if tensorboard is None:
            return None, False
        if hasattr(tensorboard, "add_scalar"):
            return tensorboard, False
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # the tensorboard package is optional
            raise ImportError(
                "tensorboard logging needs the 'tensorboard' package (pip install tensorboard); "
                "or pass tensorboard=None and use jsonl="
            ) from e
        return SummaryWriter(log_dir=os.fspath(tensorboard)), True

    def _name(self, g: int, i: int, p: Tensor) -> str:
        if id(p) in self._names:
            return self._names[id(p)]
        names = self.optimizer.param_groups[g].get("param_names")
        if names and i < len(names):
            return str(names[i])
        return f"group{g}.param{i}"

    # ---- hooks --------------------------------------------------------------------------------

    def _pre_hook(self, optimizer, args, kwargs) -> None:
        if self._step % self.every:
            # A step that raised after a sampled pre-hook left snapshots behind; never pair them
            # with a later step's weights.
            self._pending = []
            return None
        t0 = time.perf_counter()
        self._pending = []
        with torch.no_grad():
            for g, group in enumerate(optimizer.param_groups):
                for i, p in enumerate(group["params"]):
                    name = self._name(g, i, p)
                    if not p.requires_grad or not self._select(name, p):
                        continue
                    # Clone the gradient: some optimizers (Keller's Muon) update p.grad in place.
                    grad = p.grad.detach().clone() if p.grad is not None else None
                    self._pending.append((name, g, p, p.detach().clone(), grad))
        self.seconds += time.perf_counter() - t0
        return None

    def _post_hook(self, optimizer, args, kwargs) -> None:
        step, self._step = self._step, self._step + 1
        covs = {}
        if self._acts is not None:
            covs, self._acts.covs = self._acts.covs, {}
            self.seconds += self._acts.seconds
            self._acts.seconds = 0.0
        if not self._pending and not covs:
            return
        t0 = time.perf_counter()
        pending, self._pending = self._pending, []
        new = []
        with torch.no_grad():
            for name, g, p, before, grad in pending:
                if grad is None and p.grad is not None:  # a closure computed it inside step()
                    grad = p.grad.detach().clone()
                if grad is None:
                    continue
                new.append(self._record(step, name, g, p, before, grad))
            new.extend(self._activation_record(step, layer, cov) for layer, cov in covs.items())
        if self.keep:
            self._records.extend(new)
        if self.jsonl is not None:
            _append_lines(self.jsonl, new)
        if self._writer is not None:
            self._log_tensorboard(new)
        self.seconds += time.perf_counter() - t0

    # ---- statistics -------------------------------------------------------------------------

    def _momentum(self, p: Tensor) -> Tensor | None:
        state = self.optimizer.state.get(p, {})
        # muonlab optimizers may store state quantized (state_precision="int8"); they hand it out
        # as a tensor through state_tensor. Duck-typed: the probe works with any torch optimizer.
        read = getattr(self.optimizer, "state_tensor", None)
        for key in self.state_keys:
            m = read(p, key) if read is not None else state.get(key)
            if isinstance(m, Tensor) and m.shape == p.shape:
                return m.detach()
        return None

    def _record(self, step: int, name: str, g: int, p: Tensor, before: Tensor, grad: Tensor) -> dict:
        mom = self._momentum(p)
        mats = {
            "weight": _as_matrix(before),
            "grad": _as_matrix(grad),
            "momentum": _as_matrix(mom) if mom is not None else None,
            "update": _as_matrix(before - p.detach()),  # −ΔW, the step direction: descent ⇒ ⟨G, O⟩ > 0
        }
        with_update = "update" in self.targets
        ref = "momentum" if mats["momentum"] is not None else "grad"  # polar target of the update
        # One decomposition per matrix, shared by every statistic. Singular vectors only where a
        # pairwise statistic needs them (frame alignment: W, G; polar error: the reference).
        need_uv = set()
        if self.frame_k is not None:
            need_uv |= {"weight", "grad"}
        if with_update:
            need_uv.add(ref)
        needed = set(self.targets) | need_uv | ({"grad"} if with_update else set())
        x64: dict[str, Tensor] = {}
        svd: dict[str, tuple] = {}
        for key in needed:
            if mats[key] is None:
                continue
            x64[key] = mats[key].to(self.dtype)
            if key in need_uv:
                svd[key] = torch.linalg.svd(x64[key], full_matrices=False)
            else:
                svd[key] = (None, torch.linalg.svdvals(x64[key]), None)
        # From the 2-D view: a conv filter's threshold must use (out, in·kh·kw), not (kh, kw).
        rtol = self.rtol if self.rtol is not None else S.default_rtol(mats["weight"])

        rec: dict[str, Any] = {"step": step, "param": name, "shape": list(p.shape), "group": g}
        for target in self.targets:
            if target in svd:
                # Stats of −ΔW equal those of ΔW (singular values are sign-invariant).
                rec[target] = _py(S._stats_from_sv(svd[target][1], rtol), self.singular_values)
        pair: dict[str, Tensor] = {}
        if with_update:
            G, O = x64["grad"], x64["update"]
            pair["grad_update_alignment"] = S.update_alignment(G, O)
            pair["grad_descent_potential"] = S.descent_potential(G, O)
            pair["update_orthogonality_error"] = S.orthogonality_error(O, normalize=True)
            P = S._polar_from_svd(*svd[ref], rtol)
            pair["update_polar_error"] = S._polar_distance(O, P, fit_scale=True)
            if ref == "momentum":
                pair["momentum_update_alignment"] = S.update_alignment(x64["momentum"], O)
        k = None
        if self.frame_k is not None:
            k = min(self.frame_k, *mats["weight"].shape)
            (Uw, _, Vwh), (Ug, _, Vgh) = svd["weight"], svd["grad"]
            fa = S._frame_from_svd(Uw, Vwh, Ug, Vgh, k)
            pair.update({f"frame_alignment_{side}": v for side, v in fa.items()})
        if pair:
            rec["pairwise"] = _py(pair, False)
            if with_update:
                rec["pairwise"]["polar_reference"] = ref
            if k is not None:
                rec["pairwise"]["frame_k"] = k
        return rec

    def _activation_record(self, step: int, layer: str, cov) -> dict:
        ev = cov.eigenvalues()
        stats: dict[str, Any] = {k: (v if math.isfinite(v) else None) for k, v in spectrum_summary(ev).items()}
        stats.update(samples=cov.n, width=cov.dim)
        if self.singular_values:
            stats["eigenvalues"] = ev.tolist()
        return {"step": step, "layer": layer, "activation": stats}

    def _log_tensorboard(self, records: list[dict]) -> None:
        for rec in records:
            for section, stats in rec.items():
                if not isinstance(stats, dict):
                    continue
                for stat, v in stats.items():
                    if isinstance(v, float):
                        where = rec.get("param", rec.get("layer"))  # activation records name a layer
                        self._writer.add_scalar(f"spectral/{section}/{stat}/{where}", v, rec["step"])
        if hasattr(self._writer, "flush"):
            self._writer.flush()

    # ---- output and lifecycle ---------------------------------------------------------------

    @property
    def step(self) -> int:
        """Number of optimizer steps seen since the probe was attached."""
        return self._step

    def records(self) -> list[dict[str, Any]]:
        """The records collected so far (a new list; the dicts are shared, not copied)."""
        return list(self._records)

    def clear(self) -> None:
        """Drop the records held in memory (and forget what :meth:`write_jsonl` has written)."""
        self._records.clear()
        self._written.clear()

    def write_jsonl(self, path: str | os.PathLike) -> int:
        """Append the records not yet written to ``path`` by this probe; return how many.

        One JSON object per line. Each line is written whole with one unbuffered ``write`` on a
        file opened with ``O_APPEND``, so calling this periodically while another process reads the
        file never exposes a half-written record, and repeated calls do not duplicate records.
        """
        key = os.path.abspath(os.fspath(path))
        start = self._written.get(key, 0)
        new = self._records[start:]
        _append_lines(key, new)
        self._written[key] = len(self._records)
        return len(new)

    def remove(self) -> None:
        """Detach both hooks (idempotent) and close a TensorBoard writer the probe created."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._pending = []
        if self._acts is not None:
            self._acts.remove()
        if self._own_writer and self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "SpectralProbe":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _append_lines(path: str, records: list[dict]) -> None:
    if not records:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for rec in records:
            data = (json.dumps(rec, allow_nan=False) + "\n").encode()
            while data:  # os.write may write less than asked; finish the line before the next
                data = data[os.write(fd, data):]
    finally:
        os.close(fd)
