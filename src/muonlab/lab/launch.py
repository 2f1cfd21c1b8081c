"""Launchers: where a sweep's points run — in this process, in N local processes, on Ray or Slurm.

A launcher takes the points that are not finished yet (:class:`Task`: a config and its run
directory) and yields :class:`Started` and :class:`Outcome` events as they happen; the sweep
(:func:`muonlab.lab.sweep.sweep`) turns them into records, log lines and one progress bar.
Every launcher runs a point the same way, :func:`execute` (the lab's :func:`~.runner.run_one` in
the worker), so a point's records do not depend on where it ran, given the same thread count
(``RunConfig.threads``, fixed per point by the sweep).

- ``serial``: one point after another in this process (the default); a point that raises is
  reported and the others still run, as under the other launchers.
- ``local``: ``jobs`` worker processes on this machine, each running one point at a time
  (started with ``forkserver`` where the platform has it, the lab preloaded, else ``spawn``; a
  worker keeps its imports and data caches from point to point, as the serial sweep does). When
  runs use CUDA ("auto" or "cuda") and the machine has several devices, each worker sees one
  (``CUDA_VISIBLE_DEVICES``). A worker that dies (killed, out of memory) fails only the point it
  held, and a new worker takes its place: unlike ``concurrent.futures.ProcessPoolExecutor``,
  whose pool breaks as a whole, leaving no way to tell which point killed it. A worker exits when
  the sweep process dies, so a killed sweep leaves no orphan writing records.
- ``ray`` and ``slurm``: :mod:`.launch_engines` (optional extras ``muonlab[ray]``,
  ``muonlab[slurm]``).

Nothing here keeps state between calls: the run directories are the single source of truth. A
point whose worker raised or died gets a ``failed`` file (JSON: reason, traceback, launcher, host,
time) in its run directory; a rerun tries it again (resuming from its checkpoint) and removes the
file when it finishes.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .records import write_json
from .runner import RunConfig, run_one

LAUNCHERS = ("serial", "local", "ray", "slurm")
FAILED_FILE = "failed"
FAULT_ENV = "MUONLAB_TEST_FAULT"  # test hook, see _fault


@dataclass
class Task:
    """One point to run: its index in the sweep, its config (threads resolved) and run directory."""

    index: int
    cfg: RunConfig
    run_dir: Path


@dataclass
class Started:
    """``task`` was handed to a worker (Ray and Slurm: to the engine, which may still queue it)."""

    task: Task


@dataclass
class Outcome:
    """``task`` ended: ``summary`` (the run's ``done`` summary) when it finished, else ``error``."""

    task: Task
    summary: dict | None = None
    error: str | None = None


class Launcher:
    """Runs tasks somewhere and reports events; subclasses implement :meth:`run`.

    Attributes:
        name: the ``--launcher`` name.
        jobs: points at a time; None: the launcher's default (local: as many as the cores hold
            at the runs' thread count; Ray and Slurm: no cap, the engine schedules by resources).
        threads: torch threads per run when a point's ``RunConfig.threads`` is 0; None: the
            launching process's count, which is what a serial sweep uses.
    """

    name = "?"

    def __init__(self, jobs: int | None = 1, threads: int | None = None) -> None:
        for what, value in (("jobs", jobs), ("threads", threads)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{what}={value!r} must be an integer >= 1")
        self.jobs, self.threads = jobs, threads

    def check(self) -> None:
        """Raise (ImportError naming the extra, ValueError) when this launcher cannot run here."""

    def prepare(self, out: Path, progress: bool = False) -> None:
        """Called by the sweep before :meth:`run` with its output root (e.g. for log folders) and
        whether it shows progress."""

    def notes(self, threads: int) -> list[str]:
        """Advice for the log before a sweep whose runs use ``threads`` threads each."""
        return []

    def run(self, tasks: list[Task]) -> Iterator[Started | Outcome]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(jobs={self.jobs}, threads={self.threads})"


# ---- the worker's side ------------------------------------------------------------------------

def execute(cfg: RunConfig, run_dir: str | Path, progress: bool = False) -> dict[str, Any]:
    """Train one point in this process (:func:`~.runner.run_one`), as every launcher's worker does.

    The torch thread count is restored afterwards (a worker may run several points). An exception
    writes the ``failed`` file and propagates; a finished point's ``failed`` file is removed.
    """
    run_dir = Path(run_dir)
    before = torch.get_num_threads()
    try:
        with _fault(run_dir):
            summary = run_one(cfg, run_dir, progress=progress)
    except Exception as e:
        record_failure(run_dir, describe(e), traceback.format_exc())
        raise
    finally:
        torch.set_num_threads(before)
    clear_failure(run_dir)
    return summary


def describe(e: BaseException) -> str:
    """One line for an exception: ``Type: message`` (the message's first line)."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def record_failure(run_dir: str | Path, reason: str, trace: str | None = None, *, launcher: str = "",
                   overwrite: bool = True) -> None:
    """Write ``run_dir/failed`` (atomically); with ``overwrite=False`` keep one that exists (the
    worker's own, with its traceback, is more precise than what the launcher saw)."""
    path = Path(run_dir) / FAILED_FILE
    if not overwrite and path.exists():
        return
    write_json(path, {"reason": reason, "traceback": trace, "launcher": launcher, "host": socket.gethostname(),
                      "pid": os.getpid(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def read_failure(run_dir: str | Path) -> dict | None:
    """The ``failed`` record of a run directory, or None."""
    path = Path(run_dir) / FAILED_FILE
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def clear_failure(run_dir: str | Path) -> None:
    """Remove the ``failed`` file of a point that is about to run again (or has finished)."""
    (Path(run_dir) / FAILED_FILE).unlink(missing_ok=True)


class _fault:
    """Test hook: ``MUONLAB_TEST_FAULT`` = JSON ``{"match": text, "action": "raise"|"kill"|"killpg",
    "at": "start"|"checkpoint", "after": n, "once": marker path}`` makes a point whose run
    directory contains ``match`` raise, kill its own process (SIGKILL) or its whole process group
    (the sweep with all its workers), at its start or right after its ``n``-th checkpoint save
    (default 1); with ``once``, only while the marker file does not exist (it is created when the
    fault fires). Lets tests fail or kill workers and sweeps deterministically."""

    def __init__(self, run_dir: Path) -> None:
        spec = os.environ.get(FAULT_ENV)
        self.spec = json.loads(spec) if spec else None
        if self.spec and (self.spec["match"] not in str(run_dir) or
                          (self.spec.get("once") and Path(self.spec["once"]).exists())):
            self.spec = None
        self.patched, self.saves = None, 0

    def fire(self) -> None:
        if self.spec.get("once"):
            Path(self.spec["once"]).touch()
        kill = getattr(signal, "SIGKILL", signal.SIGTERM)
        if self.spec["action"] == "killpg":
            os.killpg(os.getpgid(0), kill)
        if self.spec["action"] == "kill":
            os.kill(os.getpid(), kill)
        raise RuntimeError(f"injected fault ({FAULT_ENV})")

    def __enter__(self) -> None:
        if self.spec is None:
            return
        if self.spec.get("at", "start") == "start":
            self.fire()
        from . import dist

        self.patched = original = dist.save_checkpoint

        def save_then_fire(*args: Any, **kw: Any) -> None:
            original(*args, **kw)
            self.saves += 1
            if self.saves == self.spec.get("after", 1):
                self.fire()

        dist.save_checkpoint = save_then_fire

    def __exit__(self, *exc: object) -> None:
        if self.patched is not None:
            from . import dist

            dist.save_checkpoint = self.patched


# ---- serial ------------------------------------------------------------------------------------

class SerialLauncher(Launcher):
    """One point after another in this process; the run's own progress bar shows when asked.

    As under every launcher, a point that raises gets its ``failed`` file (reason and traceback),
    the other points still run, and the sweep then raises :class:`~muonlab.lab.sweep.SweepError`
    listing the failures. ``KeyboardInterrupt`` (and other non-``Exception`` exits) still stop it.
    """

    name = "serial"

    def __init__(self, threads: int | None = None) -> None:
        super().__init__(1, threads)
        self.progress = False

    def prepare(self, out: Path, progress: bool = False) -> None:
        self.progress = progress  # each run's own bar too, as the serial sweep always showed

    def run(self, tasks: list[Task]) -> Iterator[Started | Outcome]:
        for task in tasks:
            yield Started(task)
            try:
                summary = execute(task.cfg, task.run_dir, progress=self.progress)
            except Exception as e:  # reported; the sweep goes on with the other points
                yield Outcome(task, error=describe(e))
            else:
                yield Outcome(task, summary=summary)


# ---- local processes ---------------------------------------------------------------------------

def _worker(env: dict[str, str], conn: Any, lifeline: Any) -> None:
    """A local worker process: runs the points it is sent, one at a time, until sent None.

    Replies ``("ok", summary)`` or ``("error", reason)`` per point. Exits at once when the sweep
    process dies (its end of ``lifeline`` closes), so no orphan goes on writing records.
    """
    os.environ.clear()  # the sweep's environment now, not the fork server's from when it started
    os.environ.update(env)  # with CUDA_VISIBLE_DEVICES set before anything initialises CUDA

    def watch() -> None:
        try:
            lifeline.recv()
        except (EOFError, OSError):
            pass
        os._exit(75)

    threading.Thread(target=watch, daemon=True, name="lifeline").start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        cfg, run_dir = message
        try:
            reply = ("ok", execute(cfg, run_dir))
        except Exception as e:  # noqa: BLE001 - any error of a run is that point's failure, reported
            reply = ("error", describe(e))
        conn.send(reply)


class _Worker:
    """The sweep's handle on one local worker process (and the CUDA device it sees, if any)."""

    def __init__(self, ctx: Any, device: str | None) -> None:
        self.conn, child_conn = ctx.Pipe()
        life_r, self.lifeline = ctx.Pipe(duplex=False)
        env = dict(os.environ) | ({"CUDA_VISIBLE_DEVICES": device} if device is not None else {})
        self.proc = ctx.Process(target=_worker, args=(env, child_conn, life_r), name="muonlab-worker")
        self.proc.start()
        child_conn.close()  # only the worker holds its end: EOF here when it dies
        life_r.close()
        self.device, self.task = device, None

    def send(self, task: Task) -> None:
        self.task = task
        self.conn.send((task.cfg, str(task.run_dir)))

    def close(self, timeout: float = 10.0) -> None:
        if self.proc.is_alive() and self.task is None:
            try:
                self.conn.send(None)
            except OSError:
                pass
        else:
            self.proc.terminate()
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()
        self.lifeline.close()


def _context() -> mp.context.BaseContext:
    """forkserver with the lab preloaded (a worker starts in ms; no fork of a process with
    threads or CUDA), else spawn (about as slow as ``python -c 'import torch'``)."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return mp.get_context("spawn")


def _died(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker process killed by {name} (out of memory, or killed from outside)"
    return f"worker process exited with code {exitcode} without a result"


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cuda_devices() -> list[str]:
    """This machine's CUDA devices as ``CUDA_VISIBLE_DEVICES`` entries (respecting one already set)."""
    n = torch.cuda.device_count()  # NVML where available: no CUDA context in the sweep process
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(n)]
    return ids[:n]


def device_slots(jobs: int, devices: list[str]) -> list[str | None]:
    """The ``CUDA_VISIBLE_DEVICES`` of each of ``jobs`` workers: one device each, round robin when
    there are more workers than devices; None for all (no restriction) with one device or none."""
    return [devices[i % len(devices)] if len(devices) > 1 else None for i in range(jobs)]


class LocalLauncher(Launcher):
    """``jobs`` worker processes on this machine, one point at a time each (module docstring)."""

    name = "local"

    def slots(self, threads: int) -> int:
        """Points at a time: ``jobs``, or as many as the cores hold at ``threads`` each."""
        return self.jobs or max(1, cores() // threads)

    def notes(self, threads: int) -> list[str]:
        n = self.slots(threads)
        if n * threads <= cores():
            return []
        split = max(1, cores() // n)
        return [(f"{n} jobs × {threads} threads on {cores()} cores: CPU runs will contend; --threads {split} "
                 f"splits the cores (records then match a serial sweep with --threads {split})")]

    def run(self, tasks: list[Task]) -> Iterator[Started | Outcome]:
        from multiprocessing.connection import wait

        if not tasks:
            return
        ctx = _context()
        jobs = min(len(tasks), self.slots(max(t.cfg.threads for t in tasks) or torch.get_num_threads()))
        on_cuda = any(t.cfg.device in ("auto", "cuda") for t in tasks)
        queue = deque(tasks)
        workers: list[_Worker] = []
        try:
            workers = [_Worker(ctx, device) for device in device_slots(jobs, cuda_devices() if on_cuda else [])]
            while queue or any(w.task is not None for w in workers):
                for w in workers:
                    if w.task is None and queue:
                        w.send(queue.popleft())
                        yield Started(w.task)
                busy = {w.conn: w for w in workers if w.task is not None}
                for conn in wait(list(busy)):
                    w = busy[conn]
                    task, w.task = w.task, None
                    try:
                        status, value = conn.recv()
                    except (EOFError, OSError):  # the worker died with the point: start a new one
                        w.proc.join()
                        status, value = "died", _died(w.proc.exitcode)
                        w.close()
                        workers.remove(w)
                        if queue:
                            workers.append(_Worker(ctx, w.device))
                    yield Outcome(task, summary=value) if status == "ok" else Outcome(task, error=value)
        finally:  # also when interrupted (Ctrl-C): busy workers are stopped, their checkpoints kept
            for w in workers:
                w.close()


# ---- choosing one ------------------------------------------------------------------------------

def make_launcher(name: str = "serial", *, jobs: int | None = None, threads: int | None = None,
                  **options: Any) -> Launcher:
    """The launcher called ``name`` (one of :data:`LAUNCHERS`).

    ``options`` go to the engine's launcher: ``address``, ``gpus`` for
    :class:`~.launch_engines.RayLauncher`; ``folder``, ``partition``, ``time_min``, ``gpus``,
    ``mem_gb``, ``cluster`` for :class:`~.launch_engines.SlurmLauncher`.
    """
    if name not in LAUNCHERS:
        raise ValueError(f"launcher {name!r} is not one of {', '.join(LAUNCHERS)}")
    if name in ("serial", "local") and options:
        raise ValueError(f"launcher {name!r} takes no option(s) {sorted(options)}")
    if name == "serial":
        if jobs not in (None, 1):
            raise ValueError(f"launcher 'serial' runs one point at a time; jobs={jobs} needs --launcher local")
        return SerialLauncher(threads)
    if name == "local":
        return LocalLauncher(jobs, threads)
    from .launch_engines import RayLauncher, SlurmLauncher

    cls = RayLauncher if name == "ray" else SlurmLauncher
    return cls(jobs=jobs, threads=threads, **options)


__all__ = [
    "FAILED_FILE",
    "LAUNCHERS",
    "Launcher",
    "LocalLauncher",
    "Outcome",
    "SerialLauncher",
    "Started",
    "Task",
    "clear_failure",
    "cores",
    "cuda_devices",
    "describe",
    "device_slots",
    "execute",
    "make_launcher",
    "read_failure",
    "record_failure",
]
