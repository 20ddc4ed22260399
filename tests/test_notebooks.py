"""Every notebook runs end to end under papermill on fresh smoke results (the session's
`smoke_results`), from a temporary working directory, and takes the book's agreed parameters."""
from pathlib import Path

import jupytext
import papermill
import pytest

from scvae_core.results import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.md"))
PARAMETERS = {"preset", "seeds", "device", "results_dir", "recompute"}  # `make book` passes these


def _ipynb(source: Path, folder: Path) -> Path:
    path = folder / f"{source.stem}.ipynb"
    jupytext.write(jupytext.read(source), path)
    return path


@pytest.mark.unit
def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/*.md"


@pytest.mark.unit
@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_takes_the_book_parameters(source, tmp_path):
    found = set(papermill.inspect_notebook(str(_ipynb(source, tmp_path))))
    assert PARAMETERS <= found, f"{source.name}: its `parameters` cell lacks {sorted(PARAMETERS - found)}"


@pytest.mark.smoke
@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_smoke_results(source, smoke_results, tmp_path):
    # A papermill error names the failing cell and its traceback; the executed copy stays in tmp_path.
    papermill.execute_notebook(
        str(_ipynb(source, tmp_path)), str(tmp_path / f"{source.stem}.executed.ipynb"),
        parameters={"preset": "smoke", "results_dir": str(smoke_results)},
        kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
    )
