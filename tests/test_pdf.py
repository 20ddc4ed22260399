"""The PDF of the whole book (`make pdf`, which `make test` runs first): it opens, has a page or
more per chapter, holds every chapter under its section number, its text (pdftotext, Debian's
poppler-utils) shows Table 1 as the results give it, cell by cell, and nothing printed is wider
than the page."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.book  # reads the built PDF

from scvae_core.book.bookcheck import TOC, toc_pages
from scvae_core.book.bookpdf import LINE_PX, too_wide
from scvae_core.book.tables import table1

REPO_ROOT = Path(__file__).resolve().parent.parent
PDF = REPO_ROOT / "_build" / "pdf" / "book.pdf"
SHOWN = REPO_ROOT / "_build" / "html" / "notebooks" / "04_table1.html"  # says which preset the book shows
SINGLE = REPO_ROOT / "_build" / "singlehtml"  # the page the PDF prints


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: `apt-get install -y --no-install-recommends poppler-utils` (`make test` does)")
    return found


@pytest.fixture(scope="module")
def pdf() -> Path:
    if not PDF.is_file():
        pytest.fail(f"no {PDF}: run `make pdf` (`make test` does)")
    return PDF


@pytest.fixture(scope="module")
def text(pdf) -> str:
    done = subprocess.run([_tool("pdftotext"), "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True)
    assert done.returncode == 0, f"pdftotext cannot read {pdf}: {done.stderr}"
    # Sphinx prints typographic quotes (paper’s); the sources and tables have straight ones.
    return " ".join(done.stdout.replace("\u2019", "'").replace("\u2018", "'").split())


def _chapters() -> list[str]:
    return toc_pages(TOC)


def _title(doc: str) -> str:
    source = REPO_ROOT / f"{doc}.md"
    return next(line[2:].strip() for line in source.read_text(encoding="utf-8").splitlines() if line.startswith("# "))


def test_pdf_has_a_page_or_more_per_chapter(pdf):
    info = subprocess.run([_tool("pdfinfo"), str(pdf)], capture_output=True, text=True)
    assert info.returncode == 0, f"pdfinfo cannot read {pdf}: {info.stderr}"
    pages = int(next(line.split()[-1] for line in info.stdout.splitlines() if line.startswith("Pages:")))
    assert pages >= len(_chapters()), f"{pdf}: {pages} pages for {len(_chapters())} chapters"


def test_pdf_holds_every_chapter(text):
    missing = [doc for doc in _chapters() if " ".join(_title(doc).split()) not in text]
    assert not missing, f"chapters whose title is not in the PDF: {missing}"


def test_pdf_shows_table1_as_the_results_give_it(text):
    from bs4 import BeautifulSoup

    assert SHOWN.is_file(), f"{SHOWN} is missing: run `make book`"
    preset = BeautifulSoup(SHOWN.read_text(), "html.parser").select_one("table#table1")["data-preset"] or None
    expected = table1(REPO_ROOT / "results", preset).shown()
    missing = [(row[0], cell) for row in expected.rows for cell in row if " ".join(cell.split()) not in text]
    assert not missing, f"Table 1 cells not in the PDF's text (stale PDF? run `make pdf`): {missing[:8]}"


def test_the_first_page_reads_like_a_papers(pdf):
    """Title, the authors line, the abstract and the whole reproducibility summary (the MLRC's
    fields, the last one included) on page 1, as a reproduction report opens."""
    first = subprocess.run([_tool("pdftotext"), "-f", "1", "-l", "1", "-enc", "UTF-8", str(pdf), "-"],
                           capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    page = " ".join(first.stdout.replace("\u2019", "'").split())
    for expected in ("[Re] Degeneration in VAE", "Reproduced by the scvae project", "Abstract",
                     "We re-implemented the paper's models", "Reproducibility summary", "Scope of reproducibility",
                     "Methodology", "Results", "What was easy", "What was difficult",
                     "Communication with the original authors"):
        assert expected in page, f"{expected!r} is not on the PDF's first page: {page[:300]!r}"


def test_the_reports_sections_are_numbered_and_the_appendices_are_not(text):
    """Like a paper: 1. Methods, 2. Results with 2.1 ... in the paper's order, 3. the discussion;
    the appendices after them carry no number."""
    import yaml

    parts = yaml.safe_load(TOC.read_text())["parts"]
    numbered = [p for p in parts if p.get("numbered")]
    assert numbered, "_toc.yml numbers no part"

    def numbered_as(prefix: str, doc: str) -> bool:
        return re.search(rf"\b{prefix} {re.escape(' '.join(_title(doc).split()))}", text) is not None

    for i, chapter in enumerate(numbered[0]["chapters"], 1):
        assert numbered_as(rf"{i}\.", chapter["file"]), f"{chapter['file']} is not numbered {i}. in the PDF"
        for section in chapter.get("sections", []):  # after the chapter's own subsections
            assert numbered_as(rf"{i}\.\d+\.", section["file"]), f"{section['file']} is not numbered {i}.k. in the PDF"
    for part in parts:
        if not part.get("numbered"):
            for chapter in part["chapters"]:
                title = re.escape(" ".join(_title(chapter["file"]).split()))
                assert not re.search(rf"\b\d+(\.\d+)*\. {title}", text), f"{chapter['file']} is numbered"


def test_nothing_printed_is_wider_than_the_page(pdf):
    """Every table, figure and equation fits an A4 line (tables never scroll on paper)."""
    if not (SINGLE / "print.html").is_file():
        pytest.fail(f"no {SINGLE / 'print.html'}: run `make pdf`")
    wide = too_wide(SINGLE)
    assert not wide, f"wider than the printed {LINE_PX}px line:\n  " + "\n  ".join(wide)
