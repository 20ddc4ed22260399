"""How the package hangs together: the layout is the architecture (the core at the top of
scvae_core/, the book, the runner and the bench in subpackages, and which may import which);
what reads results must not need torch; every test has its tier."""
import ast
import re
import shutil
import subprocess
import sys

import pytest
from test_imports import PACKAGE, imports_of, modules

from scvae_core.results import REPO_ROOT

pytestmark = pytest.mark.unit

# The subpackages around the core. The core (every module at the top of scvae_core/ but the CLI)
# imports none of them: the science and its result files stand alone, and the book, the runner and
# the bench are built on them. cli.py, the one dispatcher, may import everything.
SUBPACKAGES = ("book", "runner", "bench")
DISPATCHER = "cli"
# Modules outside book/ whose import must not load torch either (they read results, as the book does).
TORCH_FREE_CORE = ("scvae_core.runs", "scvae_core.presets", "scvae_core.zoo", "scvae_core.config")


def layer_of(module: str) -> str:
    """"core", a subpackage's name, or the dispatcher, for a module named as test_imports names it."""
    head = module.split(".")[0]
    return head if head in SUBPACKAGES or module == DISPATCHER else "core"


def core_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a core module that reaches into a subpackage (or the dispatcher)."""
    return [f"{m} imports {i}" for m, imports in sorted(graph.items()) if layer_of(m) == "core"
            for i in sorted(imports) if layer_of(i) != "core"]


def imports_torch(path) -> bool:
    """Whether a module's source imports torch itself, anywhere (a lazy import counts)."""
    return any(isinstance(n, ast.Import) and any(a.name.split(".")[0] == "torch" for a in n.names)
               or isinstance(n, ast.ImportFrom) and not n.level and (n.module or "").split(".")[0] == "torch"
               for n in ast.walk(ast.parse(path.read_text())))


def test_the_package_is_the_core_and_three_subpackages():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(SUBPACKAGES), "a new subpackage needs its place in SUBPACKAGES and CONTRIBUTING.md"
    assert not list(PACKAGE.glob("*/*/*.py")), "one level of subpackages"


def test_the_core_imports_none_of_the_book_the_runner_and_the_bench():
    graph = {m: imports_of(p) for m, p in modules().items()}
    assert {"train", "evaluate", "book.tables", "runner.reproduce", "bench.bench", "cli"} <= set(graph)
    assert core_violations(graph) == [], ("the core (scvae_core/*.py but cli.py) imports a subpackage: move the "
                                          "module into the subpackage whose work it does, or what it needs into the core")


def test_core_violations_are_found():
    graph = {"train": {"models"}, "report": {"book.claims", "runs"}, "book.tables": {"runs", "bench.bench_tables"},
             "runner.reproduce": {"book.params"}, "cli": {"runner.reproduce"}, "runs": {"cli"}}
    assert core_violations(graph) == ["report imports book.claims", "runs imports cli"]


def test_nothing_in_the_book_imports_torch_itself(tmp_path):
    book = {m: p for m, p in modules().items() if layer_of(m) == "book"}
    assert len(book) >= 8 and not [m for m, p in book.items() if imports_torch(p)]
    (tmp_path / "lazy.py").write_text("def f():\n    from torch.func import vmap\n")
    (tmp_path / "plain.py").write_text("import torchvision_free_name\nfrom .torch import x\n")
    assert imports_torch(tmp_path / "lazy.py") and not imports_torch(tmp_path / "plain.py")


@pytest.mark.parametrize("module", [*(f"scvae_core.{m}" for m in modules() if layer_of(m) == "book"),
                                    *TORCH_FREE_CORE])
def test_reading_results_imports_no_torch(module, tmp_path):
    code = (f"import sys, {module}\n"
            "from scvae_core.book import tables\n"
            f"tables.verdicts_table({str(tmp_path)!r})\n"  # rendering, not only importing
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def _suite(folder, tests: str) -> None:
    """A test suite of its own in ``folder``: our conftest, the tiers, and ``tests`` as test_tiers.py."""
    shutil.copy(REPO_ROOT / "tests" / "conftest.py", folder)
    (folder / "pytest.ini").write_text("[pytest]\nmarkers =\n    unit\n    smoke\n    book\n")
    (folder / "test_tiers.py").write_text("import pytest\n" + tests)


def test_a_test_without_its_tier_fails_the_run(tmp_path):
    _suite(tmp_path, "def test_unmarked(): pass\n"
                     "@pytest.mark.unit\ndef test_unit_with_data(data_dir): pass\n"
                     "@pytest.mark.smoke\ndef test_smoke_without_data(): pass\n"
                     "@pytest.mark.unit\ndef test_fine(): pass\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "unit", "-p", "no:cacheprovider", "test_tiers.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    report = proc.stdout + proc.stderr
    assert "test_unmarked: marked with no tier" in report
    assert "test_unit_with_data: marked unit, but it uses the data or runs a workload" in report
    assert "test_smoke_without_data: marked smoke, but it uses neither data nor a workload" in report
    assert "test_fine" not in report


def test_a_run_that_needs_more_disk_than_is_free_stops_before_it_starts(tmp_path):
    _suite(tmp_path, "@pytest.mark.unit\ndef test_unit(): pass\n"
                     "@pytest.mark.smoke\ndef test_smoke(data_dir): pass\n")
    # half a GiB free, as the disk reports it to the conftest's hook
    (tmp_path / "smalldisk.py").write_text("import shutil\n"
                                           "usage = shutil.disk_usage('.')._replace(free=2**29)\n"
                                           "shutil.disk_usage = lambda path: usage\n")
    # `python -m` puts the cwd on the path, so `-p smalldisk` loads it before the conftest
    run = [sys.executable, "-m", "pytest", "-p", "smalldisk", "-p", "no:cacheprovider", "test_tiers.py"]
    full = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert full.returncode != 0
    assert "only 0.5 GiB free under" in full.stdout + full.stderr and "point TMPDIR at a larger disk" in full.stderr
    unit = subprocess.run([*run, "-m", "unit"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert unit.returncode == 0, unit.stdout[-2000:]  # the unit tier writes next to nothing


def test_the_module_map_lists_every_module_with_its_size():
    """CONTRIBUTING.md's module map: every module once (by its path in the package, e.g.
    `scvae_core/book/tables.py`), its line count roughly right, and a reason given for each module
    over 400 lines."""
    text = (REPO_ROOT / "CONTRIBUTING.md").read_text()
    listed = {m: int(n) for m, n in re.findall(r"^\| `scvae_core/([\w/]+)\.py` \| ~(\d+) \|", text, re.M)}
    sizes = {m.replace(".", "/"): len(p.read_text().splitlines()) for m, p in modules().items()}
    assert set(listed) == set(sizes), (f"listed but missing: {set(listed) - set(sizes)}; "
                                       f"not listed: {set(sizes) - set(listed)}")
    off = {m: (listed[m], n) for m, n in sizes.items() if abs(listed[m] - n) > max(30, 0.2 * n)}
    assert not off, f"module map line counts (stated, actual) to update: {off}"
    reasons = set(re.findall(r"^- `([\w/]+)\.py`", text, re.M))
    assert {m for m, n in sizes.items() if n > 400} <= reasons, "say why each module over 400 lines stays whole"
