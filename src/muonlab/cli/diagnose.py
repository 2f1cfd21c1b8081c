"""``muonlab diagnose FILE``: spectral statistics of every matrix in a checkpoint or matrix file.

Accepted files:

* ``.npy``: one array; ``.npz``: one or more named arrays;
* ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` (anything else goes to ``torch.load``):
  a tensor, a ``state_dict``, or a checkpoint dict holding the state_dict under ``"model"``.

Matrices are the entries with ≥2 dims. Larger tensors (conv filters) are flattened to
``(shape[0], -1)``, as the probe does. 1-D entries (biases, norm gains) and non-tensors are
skipped. Definitions: :mod:`muonlab.diagnostics.spectrum`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

# (key in spectral_stats, column header, format)
COLUMNS = (
    ("rank", "rank", "{:.0f}"),
    ("spectral_norm", "σ1", "{:.4g}"),
    ("frobenius_norm", "‖·‖F", "{:.4g}"),
    ("nuclear_norm", "‖·‖*", "{:.4g}"),
    ("stable_rank", "srank", "{:.3g}"),
    ("effective_rank", "erank", "{:.4g}"),
    ("spectral_entropy", "H/logr", "{:.3f}"),
    ("min_gap_relative", "κ/σ1", "{:.2e}"),
    ("condition_number", "cond", "{:.3g}"),
    ("flatness", "σr/σ1", "{:.3g}"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diagnose",
        help="spectral statistics (and spectrum plots) of a checkpoint or saved matrix",
        description="Per-layer spectral statistics of every ≥2-D tensor in FILE (.pt state_dict, "
        "checkpoint with a 'model' key, tensor, .npy or .npz), optionally with one spectrum "
        "plot per layer.",
    )
    p.add_argument("file", metavar="CHECKPOINT_OR_MATRIX_FILE")
    p.add_argument("--plot-dir", metavar="DIR", help="write one PNG spectrum per layer here (needs matplotlib)")
    p.add_argument("--match", metavar="REGEX", help="only layers whose name matches REGEX (re.search)")
    p.add_argument("--rtol", type=float, default=None,
                   help="rank threshold σ_i > rtol·σ1 (default max(m,n)·eps of the tensor's dtype)")
    p.add_argument("--json", metavar="PATH", help="also write the statistics as JSON lines to PATH")
    p.add_argument("--allow-pickle", action="store_true",
                   help="torch.load with weights_only=False: runs code from the file, trusted files only")
    p.set_defaults(func=run)


def load_matrices(path: str | Path, *, allow_pickle: bool = False) -> dict[str, Any]:
    """``{name: 2-D torch tensor}`` for every ≥2-D tensor in ``path`` (see the module doc)."""
    import numpy as np
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        obj: Any = torch.from_numpy(np.load(path, allow_pickle=False))
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            obj = {k: torch.from_numpy(z[k]) for k in z.files}
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
        except Exception as e:  # torch raises several types (UnpicklingError, RuntimeError, ...)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            hint = "" if allow_pickle else " (if the file is trusted and pickles objects, try --allow-pickle)"
            raise ValueError(f"cannot load {path} with torch.load: {first}{hint}") from e
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # a training checkpoint {"model": state_dict, "optimizer": ..., ...}
    if isinstance(obj, torch.Tensor):
        obj = {path.stem: obj}
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a tensor, a state_dict or a checkpoint with a 'model' key, "
                         f"got {type(obj).__name__}")
    out = {}
    for name, t in obj.items():
        if isinstance(t, torch.Tensor) and t.ndim >= 2 and t.numel() > 0 and not t.is_complex():
            t = t.detach()
            out[str(name)] = t if t.ndim == 2 else t.reshape(t.shape[0], -1)
    if not out:
        raise ValueError(f"{path}: no tensor with at least 2 dimensions to diagnose")
    return out


def _fmt(v: float, spec: str) -> str:
    return "—" if v is None or not math.isfinite(v) else spec.format(v)


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "matrix"


def plot_spectrum(name: str, sigma: list[float], rank: int, out: Path) -> None:
    """One PNG: singular values (log scale) against index, the numerical rank marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ValueError("--plot-dir needs matplotlib (pip install 'muonlab[lab]')") from e
    fig, ax = plt.subplots(figsize=(5, 3.2))
    idx = range(1, len(sigma) + 1)
    # A log axis cannot show exact zeros; they are drawn at the floor of the plot instead.
    pos = [s for s in sigma if s > 0]
    floor = min(pos) / 10 if pos else 1e-12
    ax.semilogy(idx, [max(s, floor) for s in sigma], ".-", ms=3, lw=0.8)
    if 0 < rank < len(sigma):
        ax.axvline(rank + 0.5, color="grey", ls="--", lw=0.8, label=f"numerical rank {rank}")
        ax.legend(fontsize=8)
    ax.set_xlabel("index i")
    ax.set_ylabel("σ_i")
    ax.set_title(name, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from ..diagnostics.spectrum import spectral_stats

    if args.rtol is not None and not (args.rtol >= 0 and math.isfinite(args.rtol)):
        raise ValueError(f"--rtol must be a finite number >= 0, got {args.rtol}")
    mats = load_matrices(args.file, allow_pickle=args.allow_pickle)
    if args.match:
        try:
            pat = re.compile(args.match)
        except re.error as e:
            raise ValueError(f"--match {args.match!r} is not a valid regex: {e}") from e
        mats = {k: v for k, v in mats.items() if pat.search(k)}
        if not mats:
            raise ValueError(f"--match {args.match!r} selects no layer")
    plot_dir = Path(args.plot_dir) if args.plot_dir else None
    if plot_dir is not None:
        plot_dir.mkdir(parents=True, exist_ok=True)

    rows = []
    for name, W in mats.items():
        st = spectral_stats(W, rtol=args.rtol)
        row = {"name": name, "shape": list(W.shape), "dtype": str(W.dtype).replace("torch.", "")}
        for k, v in st.items():
            if k == "singular_values":
                row[k] = v.tolist()
            else:
                x = float(v)
                row[k] = x if math.isfinite(x) else None
        rows.append(row)

    name_w = max(len("layer"), *(len(r["name"]) for r in rows))
    shape_w = max(len("shape"), *(len("×".join(map(str, r["shape"]))) for r in rows))
    header = f"{'layer':<{name_w}}  {'shape':>{shape_w}}  " + "  ".join(f"{h:>9}" for _, h, _ in COLUMNS)
    print(header)
    print("-" * len(header))
    for r in rows:
        shape = "×".join(map(str, r["shape"]))
        cells = "  ".join(f"{_fmt(r[k], spec):>9}" for k, _, spec in COLUMNS)
        print(f"{r['name']:<{name_w}}  {shape:>{shape_w}}  {cells}")
    print(f"\n{len(rows)} matri{'x' if len(rows) == 1 else 'ces'} from {args.file}; float64 SVD; "
          "srank = ‖W‖F²/σ1², erank = exp(H), H/logr = normalized σ-entropy, κ = min gap of "
          "consecutive nonzero σ (— when rank < 2), cond = σ1/σr over nonzero σ.")

    if args.json:
        with open(args.json, "a", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(dict(r, file=str(args.file)), allow_nan=False) + "\n")
    if plot_dir is not None:
        used: set[str] = set()
        for r in rows:
            stem = _safe_filename(r["name"])
            while stem in used:  # two names that sanitize alike must not overwrite each other
                stem += "_"
            used.add(stem)
            plot_spectrum(r["name"], r["singular_values"], int(r["rank"]), plot_dir / f"{stem}.png")
        print(f"wrote {len(rows)} spectrum plot(s) to {plot_dir}")
    return 0
