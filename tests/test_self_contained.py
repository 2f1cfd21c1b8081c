"""The repository cites only what its users have: papers, public code, and its own files.

No docstring, comment, test or doc may point to the unshipped research notes the project started
from; cite the paper (authors, title, arXiv id) or public code (repository, file) instead, and
explain certainty tags as docs/methods.md does.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("src", "tests", "docs", "scripts", "benchmarks", ".ci", "README.md")
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".hypothesis"}

# Built by concatenation so that this file does not match itself.
FORBIDDEN = (
    "ALGORITHMS" + ".md",
    "ALGORITHMS" + "-2.md",
    "STYLE" + ".md",
    "ANCHORS" + ".md",
    "shared" + "/docs",
    "shared" + "/seeds",
)


def _text_files():
    for top in SCANNED:
        path = ROOT / top
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            rel = f.relative_to(ROOT)
            if SKIP_DIRS.intersection(rel.parts) or any(part.endswith(".egg-info") for part in rel.parts):
                continue
            data = f.read_bytes()
            if b"\0" in data:  # binary (figures, checkpoints)
                continue
            yield rel, data.decode("utf-8", errors="replace")


def test_no_references_to_unshipped_files():
    hits = [f"{rel}:{i}: {s!r}"
            for rel, text in _text_files()
            for i, line in enumerate(text.splitlines(), 1)
            for s in FORBIDDEN if s in line]
    assert not hits, "references to files users do not have:\n" + "\n".join(hits)


def test_scan_covers_the_tree():
    files = {str(rel) for rel, _ in _text_files()}
    assert "README.md" in files and "docs/methods.md" in files and "scripts/setup.sh" in files
    assert any(f.startswith("src/muonlab/") and f.endswith(".py") for f in files)
