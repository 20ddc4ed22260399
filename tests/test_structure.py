"""How the package hangs together: what reads results must not need torch; every test has its tier."""
import re
import shutil
import subprocess
import sys

import pytest

from scvae_core.results import REPO_ROOT

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("module", ["scvae_core.bookcheck", "scvae_core.tables", "scvae_core.claims",
                                    "scvae_core.runs", "scvae_core.plots", "scvae_core.presets", "scvae_core.zoo",
                                    "scvae_core.verdicts", "scvae_core.config"])
def test_reading_results_imports_no_torch(module, tmp_path):
    code = (f"import sys, {module}\n"
            "from scvae_core import tables\n"
            f"tables.verdicts_table({str(tmp_path)!r})\n"  # rendering, not only importing
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_a_test_without_its_tier_fails_the_run(tmp_path):
    shutil.copy(REPO_ROOT / "tests" / "conftest.py", tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    unit\n    smoke\n    book\n")
    (tmp_path / "test_tiers.py").write_text(
        "import pytest\n"
        "def test_unmarked(): pass\n"
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


def test_the_module_map_lists_every_module_with_its_size():
    """CONTRIBUTING.md's module map: every module once, its line count roughly right, and a reason
    given for each module over 400 lines."""
    text = (REPO_ROOT / "CONTRIBUTING.md").read_text()
    listed = {m: int(n) for m, n in re.findall(r"^\| `scvae_core/(\w+)\.py` \| ~(\d+) \|", text, re.M)}
    modules = {p.stem: len(p.read_text().splitlines()) for p in (REPO_ROOT / "scvae_core").glob("*.py")
               if p.stem != "__init__"}
    assert set(listed) == set(modules), (f"listed but missing: {set(listed) - set(modules)}; "
                                         f"not listed: {set(modules) - set(listed)}")
    off = {m: (listed[m], n) for m, n in modules.items() if abs(listed[m] - n) > max(30, 0.2 * n)}
    assert not off, f"module map line counts (stated, actual) to update: {off}"
    reasons = set(re.findall(r"^- `(\w+)\.py`", text, re.M))
    assert {m for m, n in modules.items() if n > 400} <= reasons, "say why each module over 400 lines stays whole"
