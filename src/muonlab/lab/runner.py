"""The runner: one flat training loop for any workload × optimizer × seed, resumable.

Shaped like nanoGPT's ``train.py`` and modded-nanogpt's ``train_gpt_simple.py``: set up, then one
``while`` loop that evaluates every ``eval_every`` steps (untimed, AlgoPerf's accounting), sets
every group's lr to ``initial_lr × schedule(step)``, and takes a step. Optimizers come from the
registry (:func:`muonlab.create_optimizer`) or, for a dotted name, from an import path
(:mod:`.external`), so the loop never branches on an optimizer's name.

A run is resumable: after each evaluation the metrics are rewritten atomically and a checkpoint
(model, optimizers, data-stream generator, RNG states, step, accumulated time) is saved
atomically; a rerun of a killed run continues from it and reproduces the uninterrupted run (the
same batches, the same updates). A finished run has a ``done`` file and is never rerun.

Under ``torchrun --nproc_per_node=N`` the same loop trains data-parallel (DDP or FSDP2): each rank
takes its slice of the same global batch and rank 0 writes the records; what differs lives in
:mod:`.dist`, whose helpers are the identity in one process.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import dist as dist_
from .external import build_external, is_import_path
from .records import provenance, read_json, read_jsonl, write_json, write_jsonl
from .tracking import check_backends, open_mirror
from .workload import Workload
from .workloads import make_workload

SCHEDULES = ("cosine", "linear", "constant")
PARAMETRIZATIONS = ("sp", "mup")


@dataclass
class RunConfig:
    """Everything that defines one run (the point of a sweep).

    Attributes:
        workload: a name from :func:`muonlab.lab.available_workloads`.
        optimizer: a registry name (:func:`muonlab.available_optimizers`) or an import path
            such as ``torch.optim.AdamW``.
        seed: model init and data order (default 0).
        steps: training steps; 0 = the workload's ``default_steps``.
        knobs: workload knobs (width, depth, data, ...), checked against the workload's fields.
        hparams: optimizer hyperparameters for the method's groups, on top of the registry's
            recommended ones (e.g. ``{"lr": 0.02}``).
        aux: hyperparameters of the AdamW groups (embeddings, head, vectors) of a matrix method.
        warmup: fraction of ``steps`` with a linear LR warmup from 0 (default 0.05).
        schedule: LR decay after warmup: "cosine" (default), "linear" or "constant".
        final_lr_frac: LR multiplier at the last step for cosine/linear (default 0.1, nanoGPT's
            ``min_lr = learning_rate/10``).
        eval_every: steps between evaluations; 0 = the workload's default.
        checkpoint_every: steps between checkpoints, rounded up to a multiple of ``eval_every``;
            0 = at every evaluation. A resumed run repeats at most this many steps.
        device: "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:1", ...
        threads: torch intra-op CPU threads for the run (``torch.set_num_threads``); 0 (default)
            keeps the process's count. CPU reductions, so a record's last bits, depend on it: it is
            recorded as ``run.threads`` in config.json and a sweep fixes it for every point and
            launcher (:mod:`.launch`). Not part of the run directory's name.
        probe_every: sample spectral diagnostics every N optimizer steps (0 = off); needs
            :mod:`muonlab.diagnostics`.
        probe_activations: the probe also records each layer's activation-covariance spectrum
            (RankMe, tail exponent; :func:`muonlab.diagnostics.activation_spectrum`).
        keep_checkpoint: keep checkpoint.pt after the run finishes (default False, to save disk).
        parametrization: "sp" (default: every group takes the lr it is given) or "mup": per-layer
            learning rates from :func:`muonlab.transfer.mup_overrides`, relative to the same
            workload at ``mup_base_width``, so ``lr`` is the lr at the base width. Only the lrs
            change; initialisation stays the workload's. µP rules exist for
            :data:`muonlab.transfer.SUPPORTED` (adamw, muon, shampoo, soap).
        mup_base_width: with "mup", the value every one of the workload's ``width_knobs`` takes in
            the base model; must be positive and divide each width knob (default 0: unset).
            Ignored under "sp".
        track: mirror the records to experiment trackers, comma-separated: "mlflow", "wandb",
            "tensorboard" (default "": none; see :mod:`.tracking`). Not part of the directory name.
        track_uri: the MLflow tracking URI ("" = ``MLFLOW_TRACKING_URI`` or MLflow's default).
        track_project: the MLflow experiment and the W&B project (default "muonlab").
    """

    workload: str
    optimizer: str
    seed: int = 0
    steps: int = 0
    knobs: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    aux: dict[str, Any] = field(default_factory=dict)
    warmup: float = 0.05
    schedule: str = "cosine"
    final_lr_frac: float = 0.1
    eval_every: int = 0
    checkpoint_every: int = 0
    device: str = "auto"
    threads: int = 0
    probe_every: int = 0
    probe_activations: bool = False
    keep_checkpoint: bool = False
    parametrization: str = "sp"
    mup_base_width: int = 0
    track: str = ""
    track_uri: str = ""
    track_project: str = "muonlab"

    def settings(self) -> dict[str, Any]:
        """What distinguishes this point from others apart from the seed (for its directory name).

        Device, probe and checkpoint settings do not change the result and are left out;
        ``parametrization`` and ``mup_base_width`` enter only under "mup" (under "sp" the base
        width changes nothing, so an SP run keeps the directory it always had).
        """
        from .workloads import get_workload

        out = {**self.hparams, **{f"adamw.{k}": v for k, v in self.aux.items()}, **self.knobs}
        out["steps"] = self.steps or get_workload(self.workload).default_steps  # 0 means the default
        defaults = RunConfig("", "")
        for k in ("warmup", "schedule", "final_lr_frac", "eval_every"):
            if getattr(self, k) != getattr(defaults, k):
                out[k] = getattr(self, k)
        if self.parametrization != defaults.parametrization:
            out["parametrization"] = self.parametrization
            out["mup_base_width"] = self.mup_base_width
        return out


RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig)
                   if f.name not in ("workload", "optimizer", "knobs", "hparams", "aux"))
PREFIXES = ("run.", "workload.", "opt.", "adamw.")


def apply_setting(cfg: RunConfig, key: str, value: Any) -> RunConfig:
    """A copy of ``cfg`` with ``key=value`` placed where it belongs (``--set``/``--grid`` keys).

    An explicit prefix decides: ``run.`` a runner field, ``workload.`` a workload knob, ``opt.``
    an optimizer hyperparameter, ``adamw.`` a hyperparameter of the auxiliary AdamW groups.
    Without one, runner fields (:data:`RUN_FIELDS`) come first, then the workload's knobs, and any
    other key is an optimizer hyperparameter (checked when the optimizer is built, so a typo
    fails with the list of valid names).
    """
    from .workload import coerce_knob, knob_types
    from .workloads import get_workload

    cls = get_workload(cfg.workload)
    prefix, _, name = key.partition(".") if key.startswith(PREFIXES) else ("", "", key)
    if not name:
        raise ValueError(f"setting {key!r} has an empty name after its prefix")
    if prefix == "run" or (not prefix and name in RUN_FIELDS):
        if name not in RUN_FIELDS:
            raise ValueError(f"unknown runner setting {name!r}; runner settings: {', '.join(RUN_FIELDS)}")
        want = type(getattr(RunConfig("", ""), name))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ValueError(f"runner setting {name}={value!r} must be {want.__name__}")
        return dataclasses.replace(cfg, **{name: value})
    if prefix == "workload" or (not prefix and name in knob_types(cls)):
        return dataclasses.replace(cfg, knobs={**cfg.knobs, name: coerce_knob(cls, name, value)})
    if prefix == "adamw":
        return dataclasses.replace(cfg, aux={**cfg.aux, name: value})
    return dataclasses.replace(cfg, hparams={**cfg.hparams, name: value})


def lr_multiplier(step: int, steps: int, warmup: float, schedule: str, final_lr_frac: float) -> float:
    """LR multiplier at ``step`` (0-based): linear warmup over ``warmup·steps`` steps, then decay.

    After warmup, ``t`` runs from 0 to 1 over the remaining steps; "cosine" gives
    ``f + (1−f)·(1 + cos πt)/2`` (nanoGPT ``get_lr``), "linear" gives ``1 − (1−f)·t``,
    "constant" gives 1, with ``f = final_lr_frac``.
    """
    n_warm = round(warmup * steps)
    if step < n_warm:
        return (step + 1) / n_warm
    t = min(1.0, (step - n_warm) / max(1, steps - n_warm - 1))
    if schedule == "cosine":
        return final_lr_frac + (1 - final_lr_frac) * 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "linear":
        return 1 - (1 - final_lr_frac) * t
    return 1.0


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r} is not valid; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def mup_base_workload(cfg: RunConfig, wl: Workload) -> Workload:
    """The µP base of a "mup" run: its workload with every ``width_knobs`` knob set to
    ``cfg.mup_base_width``; ValueError naming the setting when µP cannot apply.

    Refused: an optimizer without a µP rule (an import path, or a registry name outside
    :data:`muonlab.transfer.SUPPORTED`), a workload that declares no width knob, a base width
    that is not positive or does not divide a width knob, and a base the workload rejects.
    """
    from ..transfer import SUPPORTED

    if cfg.optimizer not in SUPPORTED:
        kind = "an import path" if is_import_path(cfg.optimizer) else "a method"
        raise ValueError(f"parametrization='mup': optimizer {cfg.optimizer!r} is {kind} with no µP rule; "
                         f"muonlab.transfer has rules for {', '.join(SUPPORTED)}")
    if not wl.width_knobs:
        raise ValueError(f"parametrization='mup': workload {wl.name!r} declares no width knob "
                         "(Workload.width_knobs), so it has no base width to transfer from")
    base = cfg.mup_base_width
    if base <= 0:
        raise ValueError(f"parametrization='mup' needs mup_base_width > 0 (the width where lr was tuned), "
                         f"got mup_base_width={base}")
    for knob in wl.width_knobs:
        if getattr(wl, knob) % base:
            raise ValueError(f"mup_base_width={base} does not divide {knob}={getattr(wl, knob)} of workload "
                             f"{wl.name!r}; µP scales the base width by a whole factor")
    base_knobs = {knob: base for knob in wl.width_knobs}
    try:
        return make_workload(cfg.workload, **{**cfg.knobs, **base_knobs})
    except ValueError as e:
        raise ValueError(f"mup_base_width={base}: the base model of {wl.name!r} is not valid: {e}") from None


def _base_model(base: Workload, seed: int) -> torch.nn.Module:
    """The µP base model, on the meta device (shapes only: no memory, no init work); the global
    RNGs are restored, as build_model reseeds them and the run must draw as an SP run would."""
    state = _get_rng_state()
    try:
        with torch.device("meta"):
            return base.build_model(seed)
    except (NotImplementedError, RuntimeError):  # an init that needs values (.item()): build on CPU
        return base.build_model(seed)
    finally:
        _set_rng_state(state)


def build_optimizers(model: torch.nn.Module, cfg: RunConfig, wl: Workload) -> list[torch.optim.Optimizer]:
    """The run's optimizer(s): one muonlab optimizer from the registry, or an external class
    for the hidden matrices plus AdamW for the rest (see :mod:`.external`).

    A method that declares a ``seed`` hyperparameter gets the run's seed unless one is set, so
    "seeds" in a sweep cover all of a run's randomness. Under ``parametrization="mup"`` every
    parameter's group gets the lr of :func:`muonlab.transfer.mup_overrides` relative to
    :func:`mup_base_workload` (the AdamW groups' lrs from ``cfg.aux`` scale too).
    """
    _check_parametrization(cfg)
    base = mup_base_workload(cfg, wl) if cfg.parametrization == "mup" else None
    if is_import_path(cfg.optimizer):
        return build_external(model, cfg.optimizer, cfg.hparams, cfg.aux, wl.routing())
    from ..registry import get_spec
    from ..routing import create_optimizer

    spec = get_spec(cfg.optimizer)
    if cfg.aux and not spec.matrix:
        raise ValueError(f"adamw.* settings {sorted(cfg.aux)} apply to the AdamW groups of a matrix "
                         f"method; {cfg.optimizer!r} is element-wise and takes them directly")
    hparams = dict(cfg.hparams)
    if "seed" in spec.rule.hypers:  # a randomised method (MiMuon's draws, Dion's Q): one run seed
        hparams.setdefault("seed", cfg.seed)
    overrides = None
    if base is not None:
        from ..transfer import mup_overrides

        overrides = mup_overrides(model, cfg.optimizer, base=_base_model(base, cfg.seed), adamw=cfg.aux or None,
                                  **wl.routing(), **hparams)
    return [create_optimizer(model, cfg.optimizer, adamw=cfg.aux or None, overrides=overrides, **wl.routing(),
                             **hparams)]


def _check_parametrization(cfg: RunConfig) -> None:
    if cfg.parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization={cfg.parametrization!r} is not valid; choose one of "
                         f"{', '.join(PARAMETRIZATIONS)}")
    if cfg.mup_base_width < 0:
        raise ValueError(f"mup_base_width={cfg.mup_base_width} must be >= 0")


def check_config(cfg: RunConfig, *, build: bool = True) -> None:
    """Raise ValueError for a bad config before any training.

    Checks the runner settings and the workload knobs; with ``build`` it also builds the model and
    the optimizers, which catches unknown or invalid hyperparameters (no data is loaded).
    """
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"schedule={cfg.schedule!r} is not valid; choose one of {', '.join(SCHEDULES)}")
    if min(cfg.steps, cfg.eval_every, cfg.checkpoint_every, cfg.probe_every) < 0:
        raise ValueError(f"steps={cfg.steps}, eval_every={cfg.eval_every}, checkpoint_every="
                         f"{cfg.checkpoint_every} and probe_every={cfg.probe_every} must be >= 0")
    if not 0 <= cfg.warmup <= 1 or not 0 <= cfg.final_lr_frac <= 1:
        raise ValueError(f"warmup={cfg.warmup} and final_lr_frac={cfg.final_lr_frac} must be in [0, 1]")
    if cfg.threads < 0:
        raise ValueError(f"threads={cfg.threads} must be >= 0 (0 = keep the process's thread count)")
    pick_device(cfg.device)
    _check_parametrization(cfg)
    check_backends(cfg.track)  # an unknown backend or a missing library fails before training
    wl = make_workload(cfg.workload, **cfg.knobs)
    if cfg.parametrization == "mup":
        mup_base_workload(cfg, wl)
    if build:
        build_optimizers(wl.build_model(cfg.seed), cfg, wl)


def run_one(cfg: RunConfig, run_dir: str | Path, *, progress: bool = True, dist: str = "auto") -> dict[str, Any]:
    """Train one point, writing config.json, metrics.jsonl and finally ``done`` into ``run_dir``.

    Resumes from the run's checkpoint when present; returns the ``done`` summary at once when
    the run already finished. Never stops early on the metric (a fixed budget keeps runs
    comparable), only on a non-finite loss (``diverged: true``).

    Started by ``torchrun`` (``WORLD_SIZE`` > 1), it joins the job and trains data-parallel with
    ``dist`` = "ddp" or "fsdp2" ("auto": ddp; see :mod:`.dist`); every rank returns the summary,
    rank 0 alone writes files. In one process ``dist`` changes nothing.

    Returns:
        The summary: final metrics, steps, ``time/train_s``, ``diverged`` and ``resumed_at``.
    """
    run_dir = Path(run_dir)
    if (run_dir / "done").exists():
        return read_json(run_dir / "done")
    check_config(cfg, build=False)  # the model and optimizers are built just below
    if cfg.threads:  # fixed per run: CPU reductions (a record's last bits) depend on the thread count
        torch.set_num_threads(cfg.threads)
    job = dist_.setup(dist, cfg.device)  # one process unless started by torchrun
    if job.distributed and cfg.probe_every:
        raise ValueError("probe_every is not supported under torchrun yet; run the probe in one process")
    wl = make_workload(cfg.workload, **cfg.knobs)
    steps = cfg.steps or wl.default_steps
    eval_every = cfg.eval_every or wl.eval_every
    ckpt_every = -(-max(cfg.checkpoint_every, 1) // eval_every) * eval_every  # a multiple of eval_every
    device = job.device or pick_device(cfg.device)
    wl.setup(device)
    model, inner = job.wrap(wl.build_model(cfg.seed).to(device))  # DDP/FSDP2 before the optimizers
    # From the wrapped model: a DDP model tells create_optimizer to share the matrix work.
    optimizers = build_optimizers(model, cfg, wl)
    for opt in optimizers:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]  # the base lr; the schedule multiplies it each step
    gen = torch.Generator().manual_seed(cfg.seed)  # the training data stream, checkpointed
    step, train_time, eval_time, rows, resumed_at = 0, 0.0, 0.0, [], []

    ckpt = job.load(run_dir, inner, optimizers)  # restores the model and optimizers
    if ckpt is not None:
        gen.set_state(ckpt["gen"])
        _set_rng_state(ckpt["rng"])
        step, train_time, eval_time = ckpt["step"], ckpt["train_time"], ckpt["eval_time"]
        resumed_at = ckpt["resumed_at"] + [step]
        # Rows after the checkpoint were measured by the killed process; they are measured again.
        rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["step"] <= step]
    elif job.main:
        write_json(run_dir / "config.json",
                   _config_record(cfg, wl, steps, eval_every, device, optimizers) | job.record())
    probe = _attach_probe(model, optimizers[0], cfg.probe_every, run_dir, step, cfg.probe_activations)
    mirror = open_mirror(cfg, run_dir, enabled=job.main)  # trackers copy the records; a no-op untracked

    bar = _progress(progress and job.main, steps, step, f"{cfg.workload} {cfg.optimizer} seed={cfg.seed}")
    loss_sum, loss_n, diverged = 0.0, 0, False
    model.train()
    while True:
        last = step == steps or diverged
        # ---- evaluate (untimed), record, checkpoint; a resumed step is already recorded ----
        if (step % eval_every == 0 or last) and not (rows and rows[-1]["step"] == step):
            t0 = time.perf_counter()
            model.eval()
            with torch.no_grad():
                metrics = wl.evaluate(model)
            model.train()
            eval_time += time.perf_counter() - t0
            row = {"step": step, "train/loss": loss_sum / loss_n if loss_n else None, **metrics,
                   "lr_mult": lr_multiplier(min(step, steps - 1), steps, cfg.warmup, cfg.schedule,
                                            cfg.final_lr_frac),
                   "time/train_s": train_time, "time/eval_s": eval_time}
            rows.append(row)
            if job.main:
                write_jsonl(run_dir / "metrics.jsonl", rows)
                mirror.sync(rows)  # after the records: a tracker never holds a row the JSONL lacks
            loss_sum, loss_n = 0.0, 0
            if probe is not None:
                probe.flush()
            if not last and step % ckpt_every == 0:
                job.save(run_dir, inner, optimizers, {
                    "gen": gen.get_state(), "rng": _get_rng_state(), "step": step,
                    "train_time": train_time, "eval_time": eval_time, "resumed_at": resumed_at})
            bar.set_postfix({wl.metric: f"{metrics.get(wl.metric, float('nan')):.4g}"}, refresh=False)
        if last:
            break
        # ---- one training step (timed) ----
        t0 = time.perf_counter()
        mult = lr_multiplier(step, steps, cfg.warmup, cfg.schedule, cfg.final_lr_frac)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * mult
        loss = wl.loss(model, job.shard(wl.get_batch(gen)))  # every rank draws the global batch
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        loss_value = job.mean(loss.item())  # waits for the device; the same value on every rank
        train_time += time.perf_counter() - t0
        step += 1
        loss_sum, loss_n = loss_sum + loss_value, loss_n + 1
        diverged = not math.isfinite(loss_value)
        bar.update(1)
    bar.close()
    if probe is not None:
        probe.close()

    summary = {"step": step, "steps": steps, "diverged": diverged, "resumed_at": resumed_at,
               "time/train_s": train_time, "time/eval_s": eval_time,
               **{k: v for k, v in rows[-1].items() if k not in ("step", "time/train_s", "time/eval_s")}}
    if job.main:
        write_json(run_dir / "done", summary)  # last: its presence marks the point finished
    mirror.finish("diverged" if diverged else "finished")
    if not cfg.keep_checkpoint:
        job.remove_checkpoint(run_dir)
    return summary


# ---- helpers kept out of the loop ----------------------------------------------------------------

def _config_record(cfg: RunConfig, wl: Workload, steps: int, eval_every: int, device: torch.device,
                   optimizers: list[torch.optim.Optimizer]) -> dict[str, Any]:
    """config.json: the resolved config (every knob and group hyperparameter) plus provenance."""
    groups = []
    for opt in optimizers:
        for g in opt.param_groups:
            groups.append({k: v for k, v in g.items() if k not in ("params", "param_names")}
                          | {"n_params": sum(p.numel() for p in g["params"]), "optimizer_class": type(opt).__name__})
    return {"run": dataclasses.asdict(cfg) | {"steps": steps, "eval_every": eval_every,
                                              "threads": torch.get_num_threads()},
            "settings": cfg.settings(), "lr": _base_lr(cfg, optimizers),
            "workload": {"name": wl.name, "metric": wl.metric, "knobs": wl.knobs(), **wl.info()},
            "optimizer_groups": groups, "provenance": provenance(device)}


def _base_lr(cfg: RunConfig, optimizers: list[torch.optim.Optimizer]) -> float:
    """The method's resolved lr: that of its first group (not of the auxiliary AdamW groups); under
    µP the base lr the per-layer lrs scale, as the groups hold the scaled ones."""
    if cfg.parametrization == "mup":
        from ..registry import get_spec

        spec = get_spec(cfg.optimizer)
        return float({**{k: h.default for k, h in spec.rule.hypers.items()}, **spec.recommended,
                      **cfg.hparams}["lr"])
    groups = [g for opt in optimizers for g in opt.param_groups]
    mine = [g for g in groups if g.get("algorithm", cfg.optimizer) == cfg.optimizer]
    return float((mine or groups)[0]["lr"])


def _get_rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _progress(enabled: bool, total: int, initial: int, desc: str):
    """A tqdm bar (stderr), or a do-nothing stand-in when disabled or tqdm is missing."""
    if enabled:
        try:
            from tqdm.auto import tqdm

            # disable=None: no bar when stderr is not a terminal (CI logs, pipes), so logs stay readable
            return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True, disable=None)
        except ImportError:
            pass

    class _Null:
        def update(self, n: int = 1) -> None: ...
        def set_postfix(self, *a: Any, **k: Any) -> None: ...
        def close(self) -> None: ...

    return _Null()


class _ProbeWriter:
    """Runs :class:`muonlab.diagnostics.SpectralProbe` and keeps probe.jsonl in step with resumes."""

    def __init__(self, probe: Any, path: Path, offset: int) -> None:
        self.probe, self.path, self.offset = probe, path, offset
        # Samples from before the checkpoint survive a resume; later ones are measured again.
        self.kept = [r for r in read_jsonl(path) if r.get("step", 0) < offset]

    def flush(self) -> None:
        # The probe counts steps from its creation; shift them to the run's step after a resume.
        new = [{**r, "step": r.get("step", 0) + self.offset} for r in self.probe.records()]
        write_jsonl(self.path, self.kept + new)

    def close(self) -> None:
        self.flush()
        self.probe.remove()


def _attach_probe(model: torch.nn.Module, optimizer: torch.optim.Optimizer, every: int,
                  run_dir: Path, step: int, activations: bool = False) -> _ProbeWriter | None:
    if not every:
        return None
    try:
        from ..diagnostics import SpectralProbe  # optional: the diagnostics package may be absent
    except ImportError:
        raise ValueError("probe_every needs muonlab.diagnostics, which is not available") from None
    # activations only when asked, so probes without that option (older or custom) still attach
    probe = SpectralProbe(model, optimizer, every=every, **({"activations": True} if activations else {}))
    return _ProbeWriter(probe, run_dir / "probe.jsonl", step)
