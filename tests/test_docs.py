"""The docs stay in step with the code: every registered method has a row in docs/methods.md;
the README's first block holds the two set-up commands, and CI runs the test one."""

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
    block = text.split("```", 2)[1]  # the first code block
    assert block.startswith("bash\n")
    lines = [ln for ln in block[len("bash\n"):].strip().splitlines() if ln.strip()]
    assert len(lines) == 2
    demo, test = (ln.split("#", 1)[0].strip() for ln in lines)
    assert "muonlab demo" in demo and "pytest" in test
    # CI runs the README's test command, verbatim (on a line that is not a comment).
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert any(test in ln for ln in ci if not ln.startswith("#")), test
