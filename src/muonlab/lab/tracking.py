"""Experiment tracking: mirror a run's records to MLflow, Weights & Biases or TensorBoard.

The run directory stays the single source of truth: the runner writes metrics.jsonl first and then
hands the same rows to the mirror, so the JSONL records that reports read are the same with and
without tracking. A mirror only copies: one tracker per backend, each behind the small
:class:`Tracker` protocol (``start`` / ``log`` / ``finish``), each library imported only when its
backend is asked for (``pip install muonlab[tracking]``).

Selection is by :class:`~muonlab.lab.runner.RunConfig` fields, which are left out of the run
directory name (the same point tracked or not lands in the same directory):

* ``track``: comma-separated backends, e.g. ``"mlflow,tensorboard"`` ("" = none, the default);
* ``track_uri``: the MLflow tracking URI ("" = ``MLFLOW_TRACKING_URI`` or MLflow's default);
* ``track_project``: the MLflow experiment and the W&B project (default "muonlab").

Where each backend writes: MLflow to ``track_uri``; W&B to ``WANDB_DIR`` when set, else the run
directory (its mode, online or offline, from ``WANDB_MODE``); TensorBoard to
``<run dir>/tensorboard``, so ``tensorboard --logdir runs`` shows every run under its path.

Resume: ``<run dir>/tracking.json`` holds, per backend, the tracked run's id (MLflow run id, W&B
run id) and the last step it received, written atomically after every log. A resumed run reopens
the same tracked run and sends only the rows after that step (rows re-measured after a checkpoint
are bit-identical, so nothing is lost by skipping them); rows recorded before tracking was turned
on are back-filled. A kill between a log and the state write can repeat that one row in MLflow or
W&B; TensorBoard's readers drop it (the writer reopens with ``purge_step``).

Only numbers are mirrored (``None``, e.g. ``train/loss`` at step 0, and text are skipped);
NaN/Inf from a diverged run are sent as they are.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from .records import read_json, write_json

BACKENDS = ("mlflow", "wandb", "tensorboard")
STATE_FILE = "tracking.json"
#: Statuses passed to :meth:`Tracker.finish`.
STATUSES = ("finished", "diverged", "failed")
EXTRA_HINT = "pip install muonlab[tracking]"


class Tracker(Protocol):
    """One backend's mirror of one run."""

    name: str

    def start(self, config: dict[str, Any], run_dir: Path, run_id: str | None, last_step: int) -> str | None:
        """Open the tracked run; ``config`` is the run's config.json, ``run_id`` the id stored by
        an earlier attempt (None on a fresh start), ``last_step`` the last step it received (-1:
        none). Returns the id to store for a resume (None when the backend has none)."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Record ``metrics`` (all finite or NaN/Inf floats) at training step ``step``."""

    def finish(self, status: str) -> None:
        """Close the tracked run with one of :data:`STATUSES`."""


def parse_backends(track: str | Sequence[str] | None, *, where: str = "track") -> list[str]:
    """``"mlflow, tensorboard"`` or ``("mlflow", "tensorboard")`` → ``["mlflow", "tensorboard"]``.

    Empty means no tracking. ValueError naming ``where`` and the bad value for an unknown backend.
    """
    if not track:
        return []
    items = track.split(",") if isinstance(track, str) else list(track)
    names = []
    for item in items:
        name = str(item).strip().lower()
        if not name:
            continue
        if name not in BACKENDS:
            raise ValueError(f"{where}={track!r}: unknown tracking backend {name!r}; choose from "
                             f"{', '.join(BACKENDS)} (comma-separated for several)")
        if name not in names:
            names.append(name)
    return names


def check_backends(track: str | Sequence[str] | None, *, where: str = "track") -> list[str]:
    """:func:`parse_backends`, plus an ImportError naming the extra for a backend whose library
    is missing, so a sweep fails before its first run rather than after it."""
    names = parse_backends(track, where=where)
    for name in names:
        _TRACKERS[name].require()
    return names


def make_tracker(name: str, *, uri: str = "", project: str = "muonlab") -> Tracker:
    """A tracker for backend ``name`` (its library imported now; ImportError naming the extra)."""
    cls = _TRACKERS[parse_backends(name)[0]]
    cls.require()
    return cls(uri=uri, project=project)


# ---- the mirror the runner drives ----------------------------------------------------------------

class Mirror:
    """The trackers of one run plus their resume state (``tracking.json`` in the run directory).

    Use :func:`open_mirror`; :meth:`sync` after every metrics.jsonl write, :meth:`finish` once done.
    """

    def __init__(self, run_dir: Path, trackers: list[Tracker], config: dict[str, Any]) -> None:
        self.run_dir, self.trackers, self.closed = run_dir, trackers, False
        path = run_dir / STATE_FILE
        self.state: dict[str, dict[str, Any]] = read_json(path) if path.exists() else {}
        try:
            for tracker in trackers:
                entry = self.state.get(tracker.name, {})
                last = int(entry.get("last_step", -1))
                run_id = tracker.start(config, run_dir, entry.get("run_id"), last)
                self.state[tracker.name] = {"run_id": run_id, "last_step": last}
                self._save()
        except BaseException:
            self.finish("failed")
            raise
        _OPEN[str(run_dir.resolve())] = self

    def sync(self, rows: Iterable[dict[str, Any]]) -> None:
        """Send every row each tracker has not received yet (rows in step order)."""
        for tracker in self.trackers:
            entry = self.state[tracker.name]
            for row in rows:
                step = int(row["step"])
                if step <= entry["last_step"]:
                    continue
                metrics = numeric_metrics(row)
                if metrics:
                    tracker.log(metrics, step)
                entry["last_step"] = step
                self._save()

    def finish(self, status: str) -> None:
        """Close every tracker (once) with ``status``; later calls do nothing."""
        if self.closed:
            return
        self.closed = True
        _OPEN.pop(str(self.run_dir.resolve()), None)
        errors = []
        for tracker in self.trackers:
            try:
                tracker.finish(status)
            except Exception as e:  # noqa: BLE001 - close the others first; the first failure is re-raised
                errors.append(e)
        if errors:
            raise errors[0]

    def _save(self) -> None:
        write_json(self.run_dir / STATE_FILE, self.state)


class _NoMirror:
    """Stands in when tracking is off (or on a rank that does not write records)."""

    def sync(self, rows: Iterable[dict[str, Any]]) -> None: ...

    def finish(self, status: str) -> None: ...


#: Mirrors opened in this process and not finished, by run directory: a run that raised is closed
#: as failed when its directory is opened again (a retry in the same process) or at exit.
_OPEN: dict[str, Mirror] = {}


def open_mirror(cfg: Any, run_dir: str | Path, *, enabled: bool = True) -> Mirror | _NoMirror:
    """The mirror for run ``cfg`` (a RunConfig) in ``run_dir``, whose config.json is written.

    Returns a do-nothing stand-in when ``cfg.track`` is empty or ``enabled`` is False.
    """
    names = parse_backends(getattr(cfg, "track", ""), where="track")
    if not names or not enabled:
        return _NoMirror()
    run_dir = Path(run_dir)
    stale = _OPEN.get(str(run_dir.resolve()))
    if stale is not None:  # the same run raised earlier in this process: close its tracked run first
        with contextlib.suppress(Exception):  # it is being replaced: closing it must not block the retry
            stale.finish("failed")
    uri, project = getattr(cfg, "track_uri", ""), getattr(cfg, "track_project", "") or "muonlab"
    trackers = [make_tracker(n, uri=uri, project=project) for n in names]
    return Mirror(run_dir, trackers, read_json(run_dir / "config.json"))


@atexit.register
def _close_open_mirrors() -> None:
    for mirror in list(_OPEN.values()):
        with contextlib.suppress(Exception):  # at exit there is nobody left to tell
            mirror.finish("failed")


# ---- what is sent --------------------------------------------------------------------------------

def numeric_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The row's numbers as floats, without ``step``; None, bools and text are left out."""
    return {k: float(v) for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def flat_params(config: dict[str, Any]) -> dict[str, str]:
    """Hyperparameters worth filtering on, from config.json, flattened with dots to strings:
    the runner fields (``run.*``, knobs and hparams included), the resolved ``lr`` and the
    workload's resolved knobs (``workload.*``)."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        else:
            out[prefix] = value if isinstance(value, str) else json.dumps(value, default=str)

    walk("run", config.get("run", {}))
    walk("workload", config.get("workload", {}).get("knobs", {}))
    if "lr" in config:
        out["lr"] = repr(config["lr"])
    return out


def run_name(config: dict[str, Any]) -> str:
    """``<workload> <optimizer> <settings slug> seed=<k>``: a tracked run's display name."""
    from .records import slug

    run = config.get("run", {})
    return f"{run.get('workload')} {run.get('optimizer')} {slug(config.get('settings', {}))} seed={run.get('seed')}"


# ---- backends ------------------------------------------------------------------------------------

def _missing(backend: str, package: str) -> ImportError:
    return ImportError(f"tracking backend {backend!r} needs the {package!r} package, which is not "
                       f"installed: {EXTRA_HINT} (or pip install {package})")


class MLflowTracker:
    """MLflow through ``MlflowClient`` (no global active run, so parallel runs do not mix).

    Params from :func:`flat_params` and tags (``muonlab.*``, provenance) on a fresh start; a
    resume sets the run back to RUNNING. Metric names outside MLflow's alphabet get ``_``.
    """

    name = "mlflow"
    _BAD = re.compile(r"[^\w\-. /:]")

    @staticmethod
    def require() -> None:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise _missing("mlflow", "mlflow-skinny") from None

    def __init__(self, uri: str = "", project: str = "muonlab") -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri or None)
        self.project, self.run_id = project, ""

    def start(self, config: dict[str, Any], run_dir: Path, run_id: str | None, last_step: int) -> str:
        from mlflow.entities import Param, RunTag

        if run_id:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        exp = self.client.get_experiment_by_name(self.project)
        if exp is not None:
            exp_id = exp.experiment_id
        else:
            try:
                exp_id = self.client.create_experiment(self.project)
            except Exception:  # another process created it meanwhile
                exp = self.client.get_experiment_by_name(self.project)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        run = config.get("run", {})
        prov = config.get("provenance", {})
        tags = {"muonlab.run_dir": str(Path(run_dir).resolve()), "muonlab.workload": run.get("workload"),
                "muonlab.optimizer": run.get("optimizer"), "muonlab.seed": run.get("seed"),
                **{f"muonlab.{k}": prov[k] for k in ("muonlab", "torch", "git_sha", "device") if k in prov}}
        self.run_id = self.client.create_run(exp_id, run_name=run_name(config)).info.run_id
        params = [Param(k, v) for k, v in flat_params(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        return self.run_id

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(self._BAD.sub("_", k), v, now, step)
                                                    for k, v in metrics.items()])

    def finish(self, status: str) -> None:
        if not self.run_id:
            return
        if status == "diverged":
            self.client.set_tag(self.run_id, "muonlab.diverged", "true")
        self.client.set_terminated(self.run_id, "FAILED" if status == "failed" else "FINISHED")


class WandbTracker:
    """Weights & Biases: one W&B run per lab run, resumed by id (``resume="allow"``).

    Config = config.json; group = the point without its seed, so seeds gather in the W&B UI.
    """

    name = "wandb"

    @staticmethod
    def require() -> None:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise _missing("wandb", "wandb") from None

    def __init__(self, uri: str = "", project: str = "muonlab") -> None:
        self.project, self.run = project, None

    def start(self, config: dict[str, Any], run_dir: Path, run_id: str | None, last_step: int) -> str:
        import wandb

        from .records import slug

        run = config.get("run", {})
        settings = wandb.Settings(console="off", save_code=False, x_disable_stats=True, silent=True)
        self.run = wandb.init(
            project=self.project, id=run_id or None, resume="allow", reinit="create_new",
            name=run_name(config), group=f"{run.get('workload')}/{run.get('optimizer')}/"
                                         f"{slug(config.get('settings', {}))}",
            config=config, dir=os.environ.get("WANDB_DIR") or str(run_dir), settings=settings)
        return self.run.id

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def finish(self, status: str) -> None:
        if self.run is None:
            return
        if status == "diverged":
            self.run.summary["diverged"] = True
        self.run.finish(exit_code=1 if status == "failed" else 0)
        self.run = None


class TensorBoardTracker:
    """TensorBoard scalars in ``<run dir>/tensorboard`` (torch's SummaryWriter, else tensorboardX).

    Each log is flushed, so a killed run loses nothing it logged; a resumed writer opens with
    ``purge_step`` = last step + 1, so a row logged twice across a kill is shown once.
    """

    name = "tensorboard"

    @staticmethod
    def _writer_class():
        try:
            # torch's writer needs the tensorboard package; tensorboardX is the fallback
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise _missing("tensorboard", "tensorboard") from None
        return SummaryWriter

    @classmethod
    def require(cls) -> None:
        cls._writer_class()

    def __init__(self, uri: str = "", project: str = "muonlab") -> None:
        self.writer = None

    def start(self, config: dict[str, Any], run_dir: Path, run_id: str | None, last_step: int) -> None:
        writer_class = self._writer_class()
        resumed = last_step >= 0
        self.writer = writer_class(str(Path(run_dir) / "tensorboard"),
                                   purge_step=last_step + 1 if resumed else None)
        if not resumed:
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```", 0)
            self.writer.flush()

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def finish(self, status: str) -> None:
        if self.writer is None:
            return
        if status != "finished":
            self.writer.add_text("status", status)
        self.writer.close()
        self.writer = None


_TRACKERS: dict[str, Any] = {"mlflow": MLflowTracker, "wandb": WandbTracker, "tensorboard": TensorBoardTracker}

__all__ = ["BACKENDS", "Mirror", "Tracker", "check_backends", "make_tracker", "numeric_metrics",
           "open_mirror", "parse_backends"]
