"""The package's modules import each other without a cycle (a cycle makes the import order
matter and once made `python -m scvae_core.bench` import itself through the CLI). Every import
counts, at module level or inside a function, since a lazy import closes a cycle all the same.
Modules are named by their path in the package: ``train``, ``book.tables``, ``bench.bench``."""
import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parent.parent / "scvae_core"


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by its dotted name below the package (``__init__`` left out)."""
    return {".".join(p.relative_to(root).with_suffix("").parts): p for p in sorted(root.rglob("*.py"))
            if p.stem != "__init__"}


def _module_or_package(parts: list[str], root: Path) -> str:
    """The dotted name of the longest prefix of ``parts`` that is a module or a subpackage of ``root``."""
    for n in range(len(parts), 0, -1):
        if (root.joinpath(*parts[:n]).with_suffix(".py")).is_file() or (root.joinpath(*parts[:n]) / "__init__.py").is_file():
            return ".".join(parts[:n])
    return ".".join(parts)


def imports_of(path: Path, root: Path = PACKAGE) -> set[str]:
    """The package modules (or subpackages) a module of ``root`` imports, anywhere in its source."""
    here = list(path.relative_to(root).parent.parts)  # the module's subpackage, [] at the top
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:  # from .x import y, from ..book import tables
            base = here[:len(here) - node.level + 1]
            module = base + node.module.split(".") if node.module else base
            names = [module + [a.name] for a in node.names] if node.module is None or (
                root.joinpath(*module) / "__init__.py").is_file() else [module]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("scvae_core."):
            module = node.module.split(".")[1:]
            names = [module + [a.name] for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1:] for a in node.names if a.name.startswith("scvae_core.")]
        else:
            continue
        found |= {_module_or_package(n, root) for n in names if n}
    return found - {""}


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
    for name in ("a", "b", "c", "d", "e/f", "sub/g", "sub/h", "sub/i"):
        (tmp_path / f"{name}.py").parent.mkdir(exist_ok=True)
        (tmp_path / f"{name}.py").write_text("")
    for pkg in ("e", "sub"):
        (tmp_path / pkg / "__init__.py").write_text("")
    src = tmp_path / "m.py"
    src.write_text("from . import a\nfrom .b import x\nimport scvae_core.c\n"
                   "def f():\n    from scvae_core.d import y\n    from .e.f import z\nimport numpy\n"
                   "from .sub import g\nfrom scvae_core.sub import h\n")
    assert imports_of(src, tmp_path) == {"a", "b", "c", "d", "e.f", "sub.g", "sub.h"}
    inner = tmp_path / "sub" / "g.py"
    inner.write_text("from .h import x\nfrom . import i\nfrom .. import a\nfrom ..b import y\nfrom ..e import f\n"
                     "from ..sub import NAME_IN_INIT\n")
    assert imports_of(inner, tmp_path) == {"sub.h", "sub.i", "a", "b", "e.f", "sub"}


def test_the_package_has_no_import_cycle():
    graph = {name: imports_of(path) for name, path in modules().items()}
    assert {"bench.bench", "cli", "bench.bench_tables", "book.tables", "runner.reproduce"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
