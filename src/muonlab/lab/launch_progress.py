"""One progress display over a whole sweep: points done, failed, running, and the time left.

On a terminal (stderr a TTY, tqdm installed) it is a tqdm bar counting ended points (done +
failed) with ``failed=F running=R`` after it, refreshed every second so the elapsed time and ETA
move between points. Anywhere else (a CI log, ``nohup``, a pipe, a Slurm output file) it writes a
plain line, ``sweep: 5/8 done, 1 failed, 2 running, 0:01:10 elapsed, ETA 0:00:35``, when the
sweep starts, every ``interval`` seconds (default 30) and when it ends: a bar redrawn with carriage
returns is unreadable in a log.

The ETA is the points left times the mean wall time per point ended in this call (finished
points skipped at the start do not count), so it already accounts for points running side by side.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO


def fmt_seconds(s: float) -> str:
    s = round(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class SweepProgress:
    """Progress of ``total`` points of which ``done`` had finished before this call.

    Args:
        total: points in the sweep.
        done: points already finished at the start.
        enabled: False shows nothing (``--quiet``, the library's default).
        stream: where to show it (default ``sys.stderr``).
        interval: seconds between plain lines when ``stream`` is not a terminal (default 30).
        desc: the bar's and the lines' label.
    """

    def __init__(self, total: int, done: int = 0, *, enabled: bool = True, stream: TextIO | None = None,
                 interval: float = 30.0, desc: str = "sweep") -> None:
        self.total, self.done, self.failed, self.running = total, done, 0, 0
        self.done0, self.desc, self.interval = done, desc, interval
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.bar: Any = None
        self.enabled = enabled
        if not enabled:
            return
        if _isatty(self.stream):
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, initial=done, desc=desc, unit="run", file=self.stream,
                                dynamic_ncols=True, smoothing=0)
                self.bar.set_postfix_str(self._postfix(), refresh=True)
            except ImportError:
                pass
        if self.bar is None:
            self._line()
        self.stop = threading.Event()
        period = 1.0 if self.bar is not None else interval
        self.ticker = threading.Thread(target=self._tick, args=(period,), daemon=True, name="sweep-progress")
        self.ticker.start()

    # ---- events ----
    def started(self) -> None:
        with self.lock:
            self.running += 1
            self._refresh()

    def ended(self, ok: bool) -> None:
        with self.lock:
            self.running -= 1
            if ok:
                self.done += 1
            else:
                self.failed += 1
            if self.bar is not None:
                self.bar.set_postfix_str(self._postfix(), refresh=False)
                self.bar.update(1)

    def write(self, log: Callable[[str], None], message: str) -> None:
        """``log(message)`` without tearing the bar."""
        if self.bar is None:
            log(message)
            return
        with self.lock, self.bar.external_write_mode(file=self.stream):
            log(message)

    def close(self) -> None:
        if not self.enabled:
            return
        self.stop.set()
        with self.lock:
            if self.bar is not None:
                self.bar.set_postfix_str(self._postfix(), refresh=True)
                self.bar.close()
            else:
                self._line()

    # ---- text ----
    def status(self) -> str:
        """``5/8 done, 1 failed, 2 running, 0:01:10 elapsed, ETA 0:00:35``."""
        elapsed = time.monotonic() - self.t0
        ended = self.done - self.done0 + self.failed
        left = self.total - self.done - self.failed
        eta = fmt_seconds(elapsed / ended * left) if ended else "?"
        return (f"{self.done}/{self.total} done, {self.failed} failed, {self.running} running, "
                f"{fmt_seconds(elapsed)} elapsed, ETA {eta}")

    def _postfix(self) -> str:
        return f"failed={self.failed} running={self.running}"

    def _line(self) -> None:
        print(f"{self.desc}: {self.status()}", file=self.stream, flush=True)

    def _refresh(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(self._postfix(), refresh=True)

    def _tick(self, period: float) -> None:
        while not self.stop.wait(period):
            with self.lock:
                if self.bar is not None:
                    self.bar.refresh()
                else:
                    self._line()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
