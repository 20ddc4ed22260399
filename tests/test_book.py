"""The built book shows what the results say: scvae_core.book.bookcheck on _build/html, and proof
that the check fails when a number is edited, a table is typed by hand or results change.
The built book must be current: `make test` builds it first."""
import json
import shutil
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from fake_results import write_eval

from scvae_core.book.bookcheck import TOC, check_book, toc_pages
from scvae_core.results import PAPER_REPORTED, REPO_ROOT

BUILT = REPO_ROOT / "_build" / "html"


@pytest.fixture(scope="module")
def built() -> Path:
    if not (BUILT / "index.html").is_file():
        pytest.fail(f"no built book in {BUILT}: run `make book` first (`make test` does)")
    return BUILT


@pytest.mark.book
def test_built_book_matches_results(built):
    assert check_book(built, REPO_ROOT / "results") == []


@pytest.mark.unit
def test_every_notebook_is_in_the_book():
    listed = set(toc_pages(TOC))
    missing = [p.stem for p in (REPO_ROOT / "notebooks").glob("*.md") if f"notebooks/{p.stem}" not in listed]
    assert not missing, f"notebooks not listed in _toc.yml: {missing}"


@pytest.mark.book
def test_table1_page_shows_the_generated_table(built):
    page = built / "notebooks" / "04_table1.html"
    assert page.is_file(), f"{page} is missing: run `make book`"
    soup = BeautifulSoup(page.read_text(), "html.parser")
    assert soup.select("table.scvae-table#table1"), "Table 1 page has no generated table1"


# ---- the check can fail: a copy of the built book and of its results, then one change

PAGE = "notebooks/04_table1.html"  # shows the generated Table 1


def _edit(site: Path, page: str, change) -> None:
    path = site / page
    soup = BeautifulSoup(path.read_text(), "html.parser")
    change(soup)
    path.write_text(str(soup))


def _cell(soup, row: str, column: str):
    table = soup.select_one("table.scvae-table#table1")
    j = [th.get_text() for th in table.thead.find_all("th")].index(column)
    tr = next(tr for tr in table.tbody.find_all("tr") if tr.td.get_text() == row)
    return tr.find_all("td")[j]


@pytest.fixture
def site(built, tmp_path) -> tuple[Path, Path]:
    assert (built / PAGE).is_file(), f"{built / PAGE} is missing: run `make book`"
    html, results = tmp_path / "html", tmp_path / "results"
    shutil.copytree(built, html)
    if (REPO_ROOT / "results").is_dir():
        shutil.copytree(REPO_ROOT / "results", results, ignore=shutil.ignore_patterns("checkpoints"))
    assert check_book(html, results) == [], "the unchanged copy should pass"
    return html, results


@pytest.mark.book
def test_edited_number_is_reported(site):
    html, results = site
    _edit(html, PAGE, lambda soup: _cell(soup, "SCVAE", "NLL (ours)").string.replace_with("79.00 (n=9)"))
    problems = check_book(html, results)
    assert any("'SCVAE'" in p and "'NLL (ours)'" in p and "'79.00 (n=9)'" in p for p in problems), problems


@pytest.mark.book
def test_edited_paper_number_is_reported(site):
    html, results = site
    _edit(html, PAGE, lambda soup: _cell(soup, "SCVAE", "Acc (paper)").string.replace_with("0.9600"))
    problems = check_book(html, results)
    assert any("'SCVAE'" in p and "the paper printed '0.9588'" in p for p in problems), problems


@pytest.mark.book
def test_hand_written_table_is_reported(site):
    html, results = site
    typed = BeautifulSoup("<table><tr><th>Model</th><th>NLL</th></tr><tr><td>SCVAE</td><td>80.19</td></tr></table>",
                          "html.parser")
    _edit(html, PAGE, lambda soup: soup.find("main").append(typed))
    problems = check_book(html, results)
    assert len(problems) == 1 and "not generated" in problems[0] and PAGE in problems[0], problems


@pytest.mark.book
def test_changed_result_is_reported_as_stale(site):
    html, results = site
    shown = BeautifulSoup((html / PAGE).read_text(), "html.parser").select_one("table#table1")["data-preset"]
    rows = json.loads(PAPER_REPORTED.read_text())["table1"]["rows"]
    # a run's evaluations: eval.json, or eval-eNNN.json where the preset evaluates at several epochs
    runs = [(row["display"], sorted((results / shown).glob(f"{row['model']}/seed*/eval*.json")))
            for row in rows] if shown else []
    runs = [(display, paths) for display, paths in runs if paths]
    if runs:  # the results moved on after the page was built: alter one metric of one model
        display, paths = runs[0]
        for path in paths:
            doc = json.loads(path.read_text())
            doc["metrics"]["nll"] += 1.0
            path.write_text(json.dumps(doc))
    else:  # nothing of Table 1 run yet: a first result changes the table as much
        display = "SCVAE"
        write_eval(results, shown or "cpu", "scvae", 0, nll=70.0)
    problems = check_book(html, results)
    assert any(f"'{display}'" in p and "stale" in p for p in problems), problems


@pytest.mark.unit
def test_missing_book_is_reported(tmp_path):
    assert "run `make book`" in check_book(tmp_path, tmp_path)[0]


# ---- numbers pasted into prose (MyST-NB glue) are checked too

GLUED_PAGE = "notebooks/04_table1.html"  # "In words: SCVAE's test NLL is ... nats ..."


@pytest.mark.book
def test_edited_pasted_number_is_reported(site):
    html, results = site
    _edit(html, GLUED_PAGE, lambda soup: soup.select("span.pasted-text")[0].string.replace_with("12.34"))
    problems = check_book(html, results)
    assert any("'scvae_nll'" in p and "'12.34'" in p for p in problems), problems


@pytest.mark.book
def test_removed_pasted_number_is_reported(site):
    html, results = site
    _edit(html, GLUED_PAGE, lambda soup: soup.select("span.pasted-text")[0].decompose())
    problems = check_book(html, results)
    assert any("pasted numbers but" in p for p in problems), problems


@pytest.mark.book
def test_front_page_verdicts_are_checked(site):
    html, results = site
    _edit(html, "book/intro.html", lambda soup: soup.select_one("table#headline td.verdict a").string.replace_with("holds"
          if soup.select_one("table#headline td.verdict a").get_text() != "holds" else "contradicted"))
    problems = check_book(html, results)
    assert any("book/intro.html: table 'headline'" in p for p in problems), problems


# ---- what should be there and is not: a table, a page, a generated sentence (issue 30)

@pytest.mark.book
@pytest.mark.parametrize("page, table", [(PAGE, "table1"), ("book/intro.html", "headline")])
def test_deleted_table_is_reported(site, page, table):
    html, results = site
    _edit(html, page, lambda soup: soup.select_one(f"table.scvae-table#{table}").decompose())
    problems = check_book(html, results)
    assert any(p.startswith(f"{page}: the generated table {table!r} is missing") for p in problems), problems


@pytest.mark.book
def test_deleted_page_is_reported(site):
    html, results = site
    (html / "notebooks" / "09_budget.html").unlink()
    assert any(p.startswith("notebooks/09_budget.html: missing, though _toc.yml lists") for p in check_book(html, results))


def _first_number_changed(soup) -> str:
    """Change the first digit of the first number in the first generated sentence that has one."""
    import re

    for div in soup.select("div.scvae-text"):
        node = div.find(string=re.compile(r"\d"))
        if node is not None:
            node.replace_with(re.sub(r"\d", lambda m: str((int(m.group()) + 6) % 10), node, count=1))
            return div["data-text"]
    raise AssertionError("no generated sentence with a number on the page")


@pytest.mark.book
@pytest.mark.parametrize("page", ["notebooks/08_differences.html", "notebooks/09_budget.html"])
def test_number_changed_inside_a_generated_sentence_is_reported(site, page):
    html, results = site
    changed = []
    _edit(html, page, lambda soup: changed.append(_first_number_changed(soup)))
    problems = check_book(html, results)
    assert any(f"{page}: sentence {changed[0]!r}" in p and "stale or edited" in p for p in problems), problems


@pytest.mark.book
def test_deleted_generated_sentence_is_reported(site):
    html, results = site
    _edit(html, "notebooks/08_differences.html", lambda soup: soup.select_one('div.scvae-text[data-text="budget"]')
          .decompose())
    assert any("the generated sentence 'budget' is missing" in p for p in check_book(html, results))
