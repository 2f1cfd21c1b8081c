"""The layering docs/design.md states holds in the code: the packages import each other in one
direction only (no cycles, also through imports inside functions), the optimizer core imports no
package above it, and the registry imports nothing of muonlab (methods register themselves)."""

from __future__ import annotations

import ast
from pathlib import Path

import muonlab

SRC = Path(muonlab.__file__).resolve().parent

#: What each package may import (transitively allowed packages need not be listed).
ALLOWED = {
    "registry": set(),
    "matfn": set(),
    "optim": {"matfn", "registry"},
    "distributed": {"optim", "matfn", "registry"},
    "routing": {"optim", "registry", "distributed", "matfn"},
    "diagnostics": {"matfn"},
    "transfer": {"routing", "optim", "registry"},
}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    """muonlab modules imported by ``path`` (absolute or relative, any depth, not under
    ``if TYPE_CHECKING:``)."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    here = list(rel.parts if rel.name != "__init__" else rel.parts[:-1])
    pkg = here if path.name == "__init__.py" else here[:-1]
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("muonlab")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [f"{mod}.{a.name}" for a in node.names] if not node.module else [mod]
                out |= set(names)
            elif node.module and node.module.startswith("muonlab"):
                out.add(node.module)
    return out


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        src_pkg = _package(".".join(path.relative_to(SRC.parent).with_suffix("").parts))
        if not src_pkg or src_pkg == "__init__":
            continue  # the root package re-exports everything: it is the top layer
        for mod in _imports(path):
            dst = _package(mod)
            real = (SRC / dst).is_dir() or (SRC / f"{dst}.py").is_file()  # not an attribute of muonlab
            if dst and real and dst != src_pkg:
                edges.setdefault(src_pkg.removesuffix(".py"), set()).add(dst)
    return edges


def test_no_import_cycles_between_packages():
    edges = _graph()

    def visit(node, stack, seen):
        for nxt in sorted(edges.get(node, ())):
            if nxt in stack:
                raise AssertionError(f"import cycle: {' -> '.join(stack[stack.index(nxt):] + [nxt])}")
            if nxt not in seen:
                seen.add(nxt)
                visit(nxt, stack + [nxt], seen)

    for start in sorted(edges):
        visit(start, [start], {start})


def test_core_packages_import_only_what_they_may():
    edges = _graph()
    for pkg, allowed in ALLOWED.items():
        extra = edges.get(pkg, set()) - allowed
        assert not extra, f"muonlab.{pkg} imports {sorted(extra)}; allowed: {sorted(allowed)}"


def test_methods_are_discovered_not_listed():
    """A new method file in muonlab/optim registers itself: optim/__init__ names no method."""
    text = (SRC / "optim" / "__init__.py").read_text()
    assert "pkgutil.iter_modules" in text
    registered = {s.rule.__class__.__module__ for s in muonlab.registry.all_specs()}
    on_disk = {f"muonlab.optim.{p.stem}" for p in (SRC / "optim").glob("*.py")}
    assert registered <= on_disk
