"""The package's modules import each other without a cycle (a cycle makes the import order
matter and once made `python -m scvae_core.bench` import itself through the CLI). Every import
counts, at module level or inside a function, since a lazy import closes a cycle all the same."""
import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parent.parent / "scvae_core"


def imports_of(path: Path) -> set[str]:
    """The package modules a module imports, anywhere in its source."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:  # from .x import y / from . import x
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("scvae_core."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("scvae_core.")}
    return found - {"__init__"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" when all its imports are explored

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_find_cycle_finds_a_lazy_cycle_and_accepts_a_tree():
    assert find_cycle({"cli": {"bench"}, "bench": {"cli", "models"}, "models": set()}) == ["bench", "cli", "bench"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_imports_of_sees_every_form_of_import(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("from . import a\nfrom .b import x\nimport scvae_core.c\n"
                   "def f():\n    from scvae_core.d import y\n    from .e.f import z\nimport numpy\n")
    assert imports_of(src) == {"a", "b", "c", "d", "e"}


def test_the_package_has_no_import_cycle():
    graph = {p.stem: imports_of(p) for p in PACKAGE.glob("*.py")}
    assert {"bench", "cli", "bench_tables"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
