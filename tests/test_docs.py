"""The docs stay in step with the code: every registered method has a row in docs/methods.md."""

import re
from pathlib import Path

import muonlab

ROOT = Path(__file__).resolve().parents[1]


def test_methods_table_lists_exactly_the_registry():
    text = (ROOT / "docs" / "methods.md").read_text()
    rows = set(re.findall(r"^\| `([a-z_0-9]+)` \|", text, flags=re.M))
    assert rows == set(muonlab.available_optimizers())


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    lines = [ln for ln in block.strip().splitlines() if ln.strip()]
    assert len(lines) == 2
    assert "muonlab demo" in lines[0] and "pytest" in lines[1]
    assert "python3 -m pytest" in (ROOT / ".ci" / "run").read_text()
