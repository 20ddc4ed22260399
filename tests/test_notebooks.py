"""Every notebook runs end to end under papermill on fresh smoke results (the session's
`smoke_results`), from a temporary
working directory, and takes the book's agreed parameters; no executed page, neither these nor
the book's own (notebooks/*.ipynb from `make book`), shows a "no results yet" fallback where the
results it needs exist."""
import re
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest

from scvae_core.results import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.md"))
PARAMETERS = {"preset", "seeds", "device", "results_dir", "recompute", "results_dir_ok"}  # `make book` passes these
# What a page prints instead of a table or figure when its results are missing: "No figure data
# yet.", "No Table 2 results yet.", "no results yet for depth: ...", "No benchmark yet: ...".
FALLBACK = re.compile(r"\bno\b[^.\n]{0,80}\byet\b", re.I)
# Pages that show results of other presets than the one they are given (preset given -> the
# one shown). Their fallbacks are right only where the stage they name has no results there.
# Every other page shows its own preset's results, and must show no fallback.
OTHER_RESULTS = {"07_performance": {None: "bench", "smoke": "bench"},
                 "09_budget": {None: "long", "smoke": "smoke-long"}}
NAMED_STAGE = {"depth-sweep": "depth", "Table 1": "table1", "long runs": "table1", "benchmark": "bench"}


def _ipynb(source: Path, folder: Path) -> Path:
    path = folder / f"{source.stem}.ipynb"
    jupytext.write(jupytext.read(source), path)
    return path


def fallbacks(notebook: Path) -> list[str]:
    """The "no ... yet" texts among an executed notebook's outputs."""
    found = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        for out in cell.get("outputs", []):
            texts = [out.get("text", "")] + [v for k, v in out.get("data", {}).items() if k.startswith("text/")]
            found += [m.group(0) for t in texts for m in FALLBACK.finditer(t if isinstance(t, str) else "".join(t))]
    return found


def _stages_missing(notebook: Path, results: Path) -> list[str]:
    """00_setup's "no results yet for STAGE, ...": the named stages that do have results."""
    from scvae_core.runs import pick_preset

    text = "".join(o.get("text", "") for c in nbformat.read(notebook, as_version=4).cells for o in c.get("outputs", []))
    named = [s.strip() for m in re.finditer(r"no results yet for ([^:]+):", text) for s in m.group(1).split(",")]
    return [stage for stage in named if pick_preset(results, stage) is not None]


def assert_no_false_fallback(notebook: Path, page: str, results: Path, preset: str | None = None) -> None:
    if page == "00_setup" and preset is None:  # a status page: it names the stages without results
        wrong = _stages_missing(notebook, results)
        assert not wrong, f"{page} says stages {wrong} have no results, but {results} holds some"
        return
    other = OTHER_RESULTS.get(page, {}).get(preset)
    shown = [f for f in fallbacks(notebook) if not other or _has_results(results, other, _named_stage(f))]
    assert not shown, f"{page} shows {shown} although {results} holds the results it names"


def _named_stage(fallback: str) -> str:
    stage = next((stage for words, stage in NAMED_STAGE.items() if words in fallback), None)
    assert stage, f"fallback {fallback!r} names no stage of NAMED_STAGE: say which results it lacks"
    return stage


def _has_results(results: Path, preset: str, stage: str) -> bool:
    from scvae_core.presets import get_preset

    if stage == "bench":
        return any((results / "bench").glob("*.json"))
    return any(any((results / preset / m).glob("seed*/eval*.json")) for m in get_preset(preset).stage_models(stage))


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
    executed = tmp_path / f"{source.stem}.executed.ipynb"
    papermill.execute_notebook(
        str(_ipynb(source, tmp_path)), str(executed),
        parameters={"preset": "smoke", "results_dir": str(smoke_results)},
        kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
    )
    assert_no_false_fallback(executed, source.stem, smoke_results, preset="smoke")


@pytest.mark.book
@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_book_pages_show_results_where_they_exist(source):
    executed = source.with_suffix(".ipynb")
    assert executed.is_file(), f"{executed} is missing: run `make book` (`make test` does)"
    assert_no_false_fallback(executed, source.stem, REPO_ROOT / "results")


@pytest.mark.unit
def test_a_fallback_is_noticed(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
        "display_data", data={"text/markdown": "No figure data yet.", "text/plain": "<Markdown>"})])])
    nbformat.write(nb, tmp_path / "page.ipynb")
    with pytest.raises(AssertionError, match="No figure data yet"):
        assert_no_false_fallback(tmp_path / "page.ipynb", "04_table1", tmp_path)
