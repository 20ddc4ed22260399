"""Re-running one page as a reader would: the commands that "How to re-run this book"
(notebooks/00_setup.md, section `rerun-one-page`) documents, run exactly as written, with stock
jupytext and papermill, from the repository root. The notebook they write must hold a
generated table and a figure."""
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.book  # a page of the book, re-run on the committed results

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGE = REPO_ROOT / "notebooks" / "00_setup.md"
SECTION = "(rerun-one-page)="


def documented_commands() -> list[str]:
    """The lines of the first ```bash block after the section's label."""
    text = PAGE.read_text(encoding="utf-8")
    assert SECTION in text, f"{PAGE.name} lost its section {SECTION}"
    block = re.search(r"```bash\n(.*?)```", text[text.index(SECTION):], re.S)
    assert block, f"{PAGE.name}: no ```bash block after {SECTION}"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def _written_notebook(commands: list[str]) -> Path:
    # papermill's output path, as the documented papermill command names it
    papermill = next(c for c in commands if "papermill" in c)
    words = papermill.split("papermill", 1)[1].split()
    return REPO_ROOT / next(w for w in words[1:] if w.endswith(".ipynb"))


def test_documented_papermill_commands_rerun_a_page():
    commands = documented_commands()
    out = _written_notebook(commands)
    out.unlink(missing_ok=True)
    # The reader's shell has the book's environment active: the venv's tools first on PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for command in commands:
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"`{command}` failed ({done.returncode}):\n{done.stderr[-3000:]}"
    nb = nbformat.read(out, as_version=4)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any('class="scvae-table"' in h and 'id="table1"' in h for h in html), f"{out}: no generated Table 1"
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{out}: no figure"
    params = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'preset = "cpu"' in params.source, "the -p preset cpu of the documented command was not applied"
