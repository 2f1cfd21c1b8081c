"""Text corpora for the language-model workloads, as raw bytes (vocabulary 256, no tokenizer).

``data`` names a corpus three ways:

* ``"embedded"`` (the default): English text that ships with Python itself, so the demo and the
  tests need no network and no file. It is the pydoc help topics (``pydoc_data.topics``, about
  0.45 MB of English prose with code), or, where a distribution stripped them, the source of a
  fixed list of standard-library modules.
* ``"tinyshakespeare"``: Karpathy's char-rnn corpus (1.1 MB), taken from the cache directory
  (``$MUONLAB_CACHE``, else ``$XDG_CACHE_HOME/muonlab``, else ``~/.cache/muonlab``) and
  downloaded there once for users who are online.
* any other value: a path to a text file.

:class:`ByteCorpus` holds a corpus on a device and draws nanoGPT-style random windows from it.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
import tempfile
import urllib.request
from pathlib import Path

import torch

TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
# Fallback embedded corpus: standard-library modules that exist in every CPython 3.10+ install,
# in a fixed order so the corpus is the same on every machine with the same Python version.
_STDLIB_FILES = ("argparse.py", "textwrap.py", "difflib.py", "fractions.py", "statistics.py",
                 "calendar.py", "inspect.py", "pathlib.py", "dataclasses.py", "typing.py")


def cache_dir() -> Path:
    """Where downloaded corpora live: $MUONLAB_CACHE, $XDG_CACHE_HOME/muonlab or ~/.cache/muonlab."""
    if os.environ.get("MUONLAB_CACHE"):
        return Path(os.environ["MUONLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "muonlab"


def embedded_corpus() -> bytes:
    """English text shipped with Python: the pydoc topics, else fixed stdlib sources (no network)."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        topics = None
    if topics:
        return "\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts = [(stdlib / f).read_bytes() for f in _STDLIB_FILES if (stdlib / f).exists()]
    if not parts:
        raise FileNotFoundError(f"no embedded corpus: neither pydoc_data nor stdlib sources under {stdlib}")
    return b"\n\n".join(parts)


def tinyshakespeare(*, download: bool = True, timeout_s: float = 30.0) -> bytes:
    """tinyshakespeare from the cache dir, downloading it there (atomically) when missing."""
    path = cache_dir() / "tinyshakespeare.txt"
    if path.exists():
        return path.read_bytes()
    if not download:
        raise FileNotFoundError(f"tinyshakespeare is not cached at {path}")
    try:
        with urllib.request.urlopen(TINYSHAKESPEARE_URL, timeout=timeout_s) as r:
            data = r.read()
    except OSError as e:
        raise FileNotFoundError(
            f"could not download tinyshakespeare ({e}); put the file at {path}, pass --data PATH, "
            "or use data=embedded"
        ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return data


def load_text(data: str) -> bytes:
    """The bytes of corpus ``data``: "embedded", "tinyshakespeare" or a file path (module doc)."""
    if data == "embedded":
        return embedded_corpus()
    if data == "tinyshakespeare":
        return tinyshakespeare()
    path = Path(data).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"data {data!r} is not a file; use a path to a text file, 'tinyshakespeare' or 'embedded'"
        )
    return path.read_bytes()


class ByteCorpus:
    """A byte corpus split 90/10 into train/val, drawn as random windows (nanoGPT ``get_batch``).

    Args:
        data: corpus name or path (see :func:`load_text`).
        context: window length in bytes (tokens).

    Raises ValueError when the corpus is shorter than 20 windows.
    """

    def __init__(self, data: str, context: int) -> None:
        raw = load_text(data)
        n = len(raw)
        if n < 20 * (context + 1):
            raise ValueError(f"corpus {data!r} has {n} bytes; need at least {20 * (context + 1)} "
                             f"for context={context}")
        self.name, self.context = data, context
        self.sha256 = hashlib.sha256(raw).hexdigest()[:16]
        tokens = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        split = int(0.9 * n)  # the last 10% is validation, as in nanoGPT's shakespeare_char prep
        self.splits = {"train": tokens[:split], "val": tokens[split:]}
        self._offsets = torch.arange(context + 1)

    def to(self, device: torch.device) -> "ByteCorpus":
        """Move both splits to ``device`` once (airbench: keep the data where the model is)."""
        self.splits = {k: v.to(device) for k, v in self.splits.items()}
        self._offsets = self._offsets.to(device)
        return self

    def get_batch(self, split: str, batch_size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of shape (batch_size, context), int64, y shifted by one byte."""
        data = self.splits[split]
        start = torch.randint(len(data) - self.context - 1, (batch_size,), generator=gen)
        chunk = data[start.to(data.device)[:, None] + self._offsets].long()
        return chunk[:, :-1], chunk[:, 1:]

    def info(self) -> dict:
        """Provenance: name, size and a hash, so a record says exactly which text it trained on."""
        return {"corpus": self.name, "corpus_bytes": sum(len(v) for v in self.splits.values()),
                "corpus_sha256": self.sha256}


def digits(device: torch.device, n_train: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """scikit-learn's bundled 8×8 digits (1797 images, no download), split train/val.

    A fixed permutation (seed 0) puts 1400 images in the training pool and 397 in validation;
    ``n_train`` > 0 keeps only the first ``n_train`` of the pool (seed 000's generalization
    experiments vary the training-set size N), 0 keeps all 1400. Pixels are scaled to [0, 1].

    Returns:
        ``{"train": (X, y), "val": (X, y)}`` with X float32 of shape (N, 8, 8) and y int64.
    """
    from sklearn.datasets import load_digits  # optional dependency (muonlab[lab])

    if not 0 <= n_train <= 1400:
        raise ValueError(f"n_train={n_train} must be in [1, 1400] (or 0 for all 1400)")
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X, dtype=torch.float32).view(-1, 8, 8) / 16.0
    y = torch.tensor(y, dtype=torch.int64)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    X, y = X[perm], y[perm]
    keep = n_train or 1400
    return {"train": (X[:keep].to(device), y[:keep].to(device)),
            "val": (X[1400:].to(device), y[1400:].to(device))}
