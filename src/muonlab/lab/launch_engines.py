"""Launchers on cluster engines: Ray tasks and Slurm jobs (through submitit), optional extras.

Both run :func:`muonlab.lab.launch.execute` in the worker, like every launcher, so records are
the same as a serial sweep's at the same thread count. The run directories must be on a file
system the workers share with the sweep process (as the records are read back from there).

- :class:`RayLauncher` (``pip install muonlab[ray]``): each point one Ray task declaring
  ``num_cpus`` = its thread count and ``num_gpus`` (default: 1 when its runs use CUDA and the
  cluster has GPUs, else 0), never retried (a failure is reported, not hidden). On a running
  cluster (``address``, e.g. ``"auto"`` or ``"ray://head:10001"``) or, by default, on a local
  instance started for the sweep; when Ray is already initialised in the process it is used as is.
- :class:`SlurmLauncher` (``pip install muonlab[slurm]``): each point one Slurm job, all points of
  a sweep submitted as one job array (``jobs`` caps how many run at once: ``--array=...%jobs``),
  with partition, time limit, GPUs, memory and ``cpus_per_task`` = the thread count. submitit's
  logs and pickles go to ``OUT/.submitit``. ``cluster="local"`` runs the same jobs as local
  processes (submitit's LocalExecutor; ``jobs`` at a time), ``"debug"`` in this process: what the
  tests use, and a way to try a sweep before queueing it.

Interrupting the sweep (Ctrl-C) cancels its tasks and jobs; a sweep process killed outright
leaves Slurm jobs running (cancel them with ``scancel --name muonlab`` before rerunning, or let
them finish: a rerun then skips them).
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .launch import Launcher, Outcome, Started, Task, describe, execute, read_failure


def require(module: str, extra: str) -> Any:
    """Import an optional engine, or ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"--launcher {extra} needs {module}, which is not installed: "
                          f"pip install 'muonlab[{extra}]'") from e


def _reason(task: Task, fallback: str) -> str:
    """The worker's own reason (its ``failed`` file) when it wrote one, else what the engine saw."""
    record = read_failure(task.run_dir)
    return record["reason"] if record else fallback


# ---- Ray ---------------------------------------------------------------------------------------

def _ray_execute(cfg: Any, run_dir: str) -> dict:
    return execute(cfg, run_dir)


class RayLauncher(Launcher):
    """Each point a Ray task with declared CPUs (its threads) and GPUs; see the module docstring.

    Args:
        address: a Ray cluster to join; None: a local instance (all this machine's cores).
        gpus: GPUs declared per run (fractions allowed); None: 1 for runs on CUDA when the
            cluster has GPUs, else 0.
        jobs: most tasks in flight at once (None: all; Ray queues what does not fit).
    """

    name = "ray"

    def __init__(self, jobs: int | None = None, threads: int | None = None, *, address: str | None = None,
                 gpus: float | None = None) -> None:
        super().__init__(jobs, threads)
        if gpus is not None and not gpus >= 0:
            raise ValueError(f"ray gpus={gpus!r} must be >= 0")
        self.address, self.gpus = address, gpus

    def check(self) -> None:
        require("ray", "ray")

    def run(self, tasks: list[Task]) -> Iterator[Started | Outcome]:
        ray = require("ray", "ray")
        if not ray.is_initialized() and self.address:
            ray.init(address=self.address)  # a cluster, as its owner set it up
        elif not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False)  # a local instance, quietly
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        remote = ray.remote(_ray_execute)
        queue, pending = list(tasks), {}
        try:
            while queue or pending:
                while queue and len(pending) < (self.jobs or len(tasks)):
                    task = queue.pop(0)
                    gpus = self.gpus if self.gpus is not None else float(has_gpus and task.cfg.device != "cpu")
                    ref = remote.options(num_cpus=task.cfg.threads, num_gpus=gpus, max_retries=0,
                                         name=f"muonlab-point-{task.index}").remote(task.cfg, str(task.run_dir))
                    pending[ref] = task
                    yield Started(task)
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    task = pending.pop(ref)
                    try:
                        outcome = Outcome(task, summary=ray.get(ref))
                    except ray.exceptions.RayTaskError as e:  # the run raised
                        cause = getattr(e, "cause", None)
                        outcome = Outcome(task, error=_reason(task, describe(cause) if cause else describe(e)))
                    except ray.exceptions.RayError as e:  # the worker died, the node went away, ...
                        outcome = Outcome(task, error=f"Ray worker died: {describe(e)}")
                    yield outcome
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):  # already finished or gone: nothing to cancel
                    ray.cancel(ref, force=True)


# ---- Slurm (submitit) --------------------------------------------------------------------------

class SlurmLauncher(Launcher):
    """Each point a Slurm job through submitit; see the module docstring.

    Args:
        folder: submitit's logs and pickles; None: ``OUT/.submitit`` of the sweep.
        partition: Slurm partition (None: the cluster's default).
        time_min: time limit per job in minutes (None: the partition's default; local: 24 h).
        gpus: GPUs per job (default 0).
        mem_gb: memory per job in GB (None: the partition's default).
        cluster: "slurm" (default), "local" (local processes) or "debug" (this process).
        jobs: most jobs running at once (None: Slurm's array limit; local: all).
        poll_s: seconds between status checks (default 1 locally, 15 on Slurm).
    """

    name = "slurm"
    CLUSTERS = ("slurm", "local", "debug")

    def __init__(self, jobs: int | None = None, threads: int | None = None, *, folder: str | Path | None = None,
                 partition: str | None = None, time_min: int | None = None, gpus: int = 0,
                 mem_gb: float | None = None, cluster: str = "slurm", poll_s: float | None = None) -> None:
        super().__init__(jobs, threads)
        if cluster not in self.CLUSTERS:
            raise ValueError(f"slurm cluster={cluster!r} is not one of {', '.join(self.CLUSTERS)}")
        if time_min is not None and time_min < 1:
            raise ValueError(f"slurm time={time_min!r} minutes must be >= 1")
        if not isinstance(gpus, int) or gpus < 0:
            raise ValueError(f"slurm gpus={gpus!r} must be an integer >= 0")
        if mem_gb is not None and not mem_gb > 0:
            raise ValueError(f"slurm mem={mem_gb!r} GB must be > 0")
        self.folder = Path(folder) if folder is not None else None
        self.partition, self.time_min, self.gpus, self.mem_gb, self.cluster = partition, time_min, gpus, mem_gb, cluster
        self.poll_s = poll_s if poll_s is not None else (15.0 if cluster == "slurm" else 1.0)

    def check(self) -> None:
        require("submitit", "slurm")
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ValueError("--launcher slurm: Slurm's sbatch is not on PATH (run it on a login node, or "
                             "try the sweep with --slurm-cluster local)")

    def prepare(self, out: Path, progress: bool = False) -> None:
        if self.folder is None:
            self.folder = Path(out) / ".submitit"

    def executor(self, threads: int) -> Any:
        """The submitit executor for runs of ``threads`` threads."""
        submitit = require("submitit", "slurm")
        ex = submitit.AutoExecutor(folder=self.folder or ".submitit", cluster=self.cluster)
        params: dict[str, Any] = {"name": "muonlab", "cpus_per_task": threads, "gpus_per_node": self.gpus,
                                  "timeout_min": self.time_min or (None if self.cluster == "slurm" else 24 * 60),
                                  "mem_gb": self.mem_gb, "slurm_partition": self.partition}
        if self.jobs:
            params["slurm_array_parallelism"] = self.jobs
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
        return ex

    def run(self, tasks: list[Task]) -> Iterator[Started | Outcome]:
        if not tasks:
            return
        ex = self.executor(max(t.cfg.threads for t in tasks))
        queue, inflight = list(tasks), {}
        try:
            if self.cluster == "slurm":  # one array; Slurm runs `jobs` of it at a time
                jobs = ex.map_array(execute, [t.cfg for t in queue], [str(t.run_dir) for t in queue])
                inflight = dict(zip(jobs, queue))
                queue = []
                for task in inflight.values():
                    yield Started(task)
            while queue or inflight:
                while queue and len(inflight) < (self.jobs or len(tasks)):
                    task = queue.pop(0)
                    inflight[ex.submit(execute, task.cfg, str(task.run_dir))] = task
                    yield Started(task)
                finished = [job for job in inflight if _done(job)]
                if not finished:
                    time.sleep(self.poll_s)
                for job in finished:
                    task = inflight.pop(job)
                    exc = job.exception()
                    if exc is None:
                        yield Outcome(task, summary=job.result())
                    else:
                        seen = (f"job {job.job_id} ended without a result ({type(exc).__name__}; killed, timed out "
                                f"or out of memory?); log: {job.paths.stderr}")
                        yield Outcome(task, error=_reason(task, seen))
        finally:
            for job in inflight:
                with contextlib.suppress(Exception):  # already finished or gone
                    job.cancel(check=False)


def _done(job: Any) -> bool:
    try:
        return job.done()
    except Exception:  # noqa: BLE001 - submitit's debug executor runs the job here and raises its error: done
        return True
