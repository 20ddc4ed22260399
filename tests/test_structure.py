"""How the package hangs together: what reads results must not need torch."""
import subprocess
import sys

import pytest

from scvae_core.results import REPO_ROOT

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("module", ["scvae_core.bookcheck", "scvae_core.tables", "scvae_core.claims",
                                    "scvae_core.runs", "scvae_core.plots", "scvae_core.presets", "scvae_core.zoo"])
def test_reading_results_imports_no_torch(module, tmp_path):
    code = (f"import sys, {module}\n"
            "from scvae_core import tables\n"
            f"tables.verdicts_table({str(tmp_path)!r})\n"  # rendering, not only importing
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
