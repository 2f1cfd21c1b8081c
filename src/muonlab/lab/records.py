"""Records: run-directory layout, atomic JSON/JSONL/checkpoint writes, provenance, loading.

Layout of one run (after AlgoPerf's records, github mlcommons/algorithmic-efficiency)::

    OUT/<workload>/<optimizer>/<hparam-slug>/seed=<k>/
        config.json     resolved config + provenance (versions, git revision, machine, device)
        metrics.jsonl   one row per evaluation: step, train/loss, val/..., time/train_s, ...
        probe.jsonl     spectral diagnostics rows, when the probe ran
        checkpoint.pt   model + optimizer + RNG state + step, while the run is unfinished
        done            written last: a JSON summary; its presence marks the point finished

Every file is written to a temporary file in the same directory, flushed and fsync'ed, then moved
into place with ``os.replace``, which is atomic on POSIX and Windows: a reader, or a run resumed
after a kill, sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

SLUG_MAX = 120  # characters; longer slugs are cut and suffixed with a hash so paths stay portable


# ---- atomic writes -----------------------------------------------------------------------------

def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same dir, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(x: Any) -> Any:
    """Fallback for json.dumps: tensors/numpy scalars → numbers, anything else → str."""
    if hasattr(x, "item") and callable(x.item):
        try:
            return x.item()
        except (ValueError, RuntimeError):
            pass
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def dumps(obj: Any, **kw: Any) -> str:
    """JSON text; NaN/Inf are kept (Python's json reads them) because diverged runs produce them."""
    return json.dumps(obj, default=_jsonable, **kw)


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_atomic(path, dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Atomically (re)write ``rows`` as JSON lines."""
    write_atomic(path, "".join(dumps(r) + "\n" for r in rows))


def read_json(path: str | Path) -> Any:
    """The JSON value stored at ``path``."""
    return json.loads(Path(path).read_text())


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file ([] when missing); a malformed line (from a foreign writer) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def save_checkpoint(path: str | Path, state: dict) -> None:
    """``torch.save`` ``state`` atomically."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict | None:
    """The checkpoint at ``path`` or None when there is none."""
    import torch

    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


# ---- layout ------------------------------------------------------------------------------------

def fmt_value(v: Any) -> str:
    """Compact, stable text for a hyperparameter value: 0.02, 3e-04 → 0.0003, (0.9,0.95), True."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "(" + ",".join(fmt_value(x) for x in v) + ")"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{fmt_value(x)}" for k, x in sorted(v.items())) + "}"
    return str(v)


def slug(settings: dict[str, Any]) -> str:
    """Directory name for a point's settings: ``lr=0.02,width=128`` (sorted keys; "default" if none)."""
    if not settings:
        return "default"
    text = ",".join(f"{k}={fmt_value(v)}" for k, v in sorted(settings.items()))
    text = text.replace("/", "_").replace(" ", "")
    if len(text) > SLUG_MAX:
        import hashlib

        text = text[: SLUG_MAX - 9] + "~" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return text


def run_path(root: str | Path, workload: str, optimizer: str, settings: dict[str, Any], seed: int) -> Path:
    """``root/<workload>/<optimizer>/<slug(settings)>/seed=<seed>``."""
    return Path(root) / workload / optimizer.replace("/", "_") / slug(settings) / f"seed={seed}"


# ---- provenance --------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def git_revision() -> dict[str, Any]:
    """Commit and dirty flag of the checkout muonlab runs from ({} outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if sha.returncode != 0:
            return {}
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return {"git_sha": sha.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {}


def provenance(device: Any = None) -> dict[str, Any]:
    """Versions, git revision, machine and device: what a record needs to be reproduced."""
    import numpy
    import torch

    from .. import __version__

    info = {
        "muonlab": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        **git_revision(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "argv": sys.argv,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device is not None:
        info["device"] = str(device)
        if str(device).startswith("cuda"):
            info["device_name"] = torch.cuda.get_device_name(device)
    return info


# ---- loading -----------------------------------------------------------------------------------

@dataclass
class Run:
    """One run directory, loaded: its config, metric rows, probe rows and done summary."""

    path: Path
    config: dict
    rows: list[dict] = field(default_factory=list)
    probe: list[dict] = field(default_factory=list)
    done: dict | None = None

    @property
    def finished(self) -> bool:
        return self.done is not None

    def final(self, metric: str) -> float:
        """The metric at the last evaluation (NaN when never recorded)."""
        for row in reversed(self.rows):
            v = row.get(metric)
            if v is not None:
                return float(v)
        return math.nan


def load_run(path: str | Path) -> Run:
    """The run in directory ``path`` (config.json must exist; the other files may not yet)."""
    path = Path(path)
    done = path / "done"
    return Run(path=path, config=read_json(path / "config.json"), rows=read_jsonl(path / "metrics.jsonl"),
               probe=read_jsonl(path / "probe.jsonl"), done=read_json(done) if done.exists() else None)


def load_runs(root: str | Path, *, finished_only: bool = False) -> list[Run]:
    """Every run under ``root`` (any depth), sorted by path; FileNotFoundError when there is none."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no such directory: {str(root)!r}")
    runs = [load_run(p.parent) for p in sorted(root.rglob("config.json"))]
    if finished_only:
        runs = [r for r in runs if r.finished]
    return runs
