"""Check a built book against the results it claims to show.

Every table on a notebook page must be a generated one (``<table class="scvae-table" id=...
data-preset=...>``, written by :mod:`scvae_core.book.tables`): a hand-typed table could drift from
the results unnoticed. Each generated table, wherever it is, is rebuilt from the result files
and compared cell by cell, and its paper columns against ``data/paper_reported.json``.
Every number pasted into a notebook page's prose (``{glue:text}`key:format``` in
``notebooks/<page>.md``, shown as ``<span class="pasted-text">``) is recomputed with
:data:`scvae_core.book.glued.NUMBERS` and that format, and compared with the page. Every sentence
built from results (``<div class="scvae-text" data-text=...>``, from
:func:`scvae_core.book.tables.build_text`) is rebuilt and compared word for word.

What is there is not all: the check also knows what should be. Every page of ``_toc.yml``
must be built, and each must hold every generated table and sentence its source shows
(``build_table("id", ...)``, ``build_text("id", ...)``, and ``{glue:any} id`` for a table glued
from another page), so that a deleted table, sentence or page fails it too. A table may be
missing only where the results give it nothing to show (no rows, or no column but the first).

    python -m scvae_core.book.bookcheck _build/html [--results-dir results]
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from bs4 import BeautifulSoup

from ..results import DEFAULT_RESULTS_DIR, PAPER_REPORTED, REPO_ROOT, ResultError
from ..zoo import UnknownName

GENERATED = "scvae-table"
TEXT = "scvae-text"  # a sentence built from results (tables.Text)
TOC = REPO_ROOT / "_toc.yml"  # the book's pages; each one's source is <file>.md beside it
SHOWS = re.compile(r'build_(table|text)\(\s*"([^"]+)"')  # what a page's source shows: table or text, id
GLUED_TABLE = re.compile(r"\{glue:any\}\s+(\S+)")  # a table or sentence glued from another page, by its id
NOTEBOOK_PAGES = "notebooks"  # pages built from notebooks/*.ipynb
SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static"}
FIX = "run `make book` to rebuild the pages from the current results"
SOURCES = REPO_ROOT / "notebooks"  # the pages' jupytext sources
PASTE = re.compile(r"\{glue:text\}`([^`:]+)(?::([^`]*))?`")  # same-page pastes: key, format


def _text(el) -> str:
    """An element's text with whitespace runs collapsed, as a reader sees it."""
    return " ".join(el.get_text().split())


def _norm(s: str) -> str:
    return " ".join(str(s).split())


def pages(html_dir: Path) -> list[Path]:
    """The built HTML pages (not the theme's assets), sorted."""
    return sorted(p for p in Path(html_dir).rglob("*.html")
                  if not SKIP_DIRS & set(p.relative_to(html_dir).parts))


def tables(html_dir: Path) -> Iterator[tuple[str, object]]:
    """(page, <table>) for every table in the content of every page."""
    for path in pages(html_dir):
        soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
        content = soup.find("main") or soup.body or soup  # skip the theme's navigation
        for table in content.find_all("table"):
            yield path.relative_to(html_dir).as_posix(), table


def _rows(table) -> tuple[list[str], list[list[str]]]:
    head = table.find("thead")
    columns = [_text(c) for c in head.find_all(["th", "td"])] if head else []
    body = table.find("tbody") or table
    rows = [[_text(c) for c in tr.find_all(["th", "td"])] for tr in body.find_all("tr")
            if tr.find_parent("thead") is None]
    return columns, rows


def _check_paper_columns(where: str, table_id: str, columns, rows, paper_file: Path) -> list[str]:
    """The columns headed "... (paper)" must show data/paper_reported.json's numbers as printed."""
    paper = json.loads(Path(paper_file).read_text())
    if table_id not in paper:
        return []  # not one of the paper's tables
    decimals = paper.get("decimals", {})
    reported = {row["display"]: row for row in paper[table_id]["rows"]}
    shown = {row[0]: row for row in rows if row}
    problems = [f"{where}: the paper's row {d!r} is missing" for d in reported if d not in shown]
    problems += [f"{where}: row {d!r} is not in the paper's {table_id} ({paper_file})" for d in shown if d not in reported]
    for j, name in enumerate(columns):
        metric = next((m for m in ("nll", "acc") if m in name.lower()), None)
        if "paper" not in name.lower() or "ours" in name.lower() or metric is None:
            continue  # not a column of the paper's own numbers
        for display in shown.keys() & reported.keys():
            want = f"{reported[display][metric]:.{decimals.get(metric, 2)}f}"
            got = shown[display][j] if j < len(shown[display]) else "(no cell)"
            if got != want:
                problems.append(f"{where}: row {display!r} column {name!r} shows {got!r} but the paper "
                                f"printed {want!r} ({paper_file})")
    return problems


def check_table(where: str, table, results_dir: Path, paper_file: Path) -> list[str]:
    """Problems of one generated table: its attributes, its cells against a rebuild from results."""
    from .tables import build_table  # imports torch: only when there is a table to check

    table_id, preset = table.get("id"), table.get("data-preset")
    if not table_id or preset is None:
        return [f"{where}: a {GENERATED} table needs id and data-preset attributes"]
    where = f"{where}: table {table_id!r} (preset {preset or 'none'!r})"
    try:
        expected = build_table(table_id, results_dir, preset or None)
        # As the page shows it: tables.Table states its common n in the caption (Table.shown);
        # a table of another kind is shown as built.
        expected = expected.shown() if hasattr(expected, "shown") else expected
    except (UnknownName, ResultError) as e:  # report it and go on checking the other tables
        return [f"{where}: cannot rebuild it from {results_dir}: {e}"]
    columns, rows = _rows(table)
    want_cols = [_norm(c) for c in expected.columns]
    want_rows = [[_norm(c) for c in row] for row in expected.rows]
    problems = []
    caption = table.find("caption")
    if getattr(expected, "caption", None) and (caption is None or _text(caption) != _norm(expected.caption)):
        problems.append(f"{where}: caption differs from the results' ({FIX})")
    if columns != want_cols:
        problems.append(f"{where}: columns {columns} but the results give {want_cols} ({FIX})")
    elif len(rows) != len(want_rows):
        problems.append(f"{where}: {len(rows)} rows but the results give {len(want_rows)} ({FIX})")
    else:
        for got_row, want_row in zip(rows, want_rows):
            for name, got, want in zip(columns, got_row, want_row):
                if got != want:
                    problems.append(f"{where}: row {want_row[0]!r} column {name!r} shows {got!r} but the "
                                    f"results in {results_dir} give {want!r}: stale or edited ({FIX})")
            if len(got_row) != len(want_row):
                problems.append(f"{where}: row {want_row[0]!r} has {len(got_row)} cells, expected {len(want_row)}")
    return problems + _check_paper_columns(where, table_id, columns, rows, paper_file)


def _paste_format(value: float, fmt: str) -> str:
    """As MyST-NB formats a pasted number: integer formats take int(value)."""
    if not fmt:
        return str(value)
    return format(int(value) if fmt[-1] in "bcdoxX" and not math.isnan(value) else value, fmt)


def check_glued(page: str, soup, results_dir: Path, sources: Path = SOURCES) -> list[str]:
    """The numbers pasted into a notebook page's prose, against a recomputation from results.
    Pastes are matched to the source's ``{glue:text}`` roles in order; the preset is that of
    the page's first generated table (the one the page was built with), else the default."""
    from .glued import NUMBERS

    shown = [_text(s) for s in (soup.find("main") or soup).select("span.pasted-text")]
    name = Path(page).stem
    source = sources / f"{name}.md"
    if not source.is_file():
        return [f"{page}: {len(shown)} pasted number(s) but no source {source} to check them against"] if shown else []
    pastes = PASTE.findall(source.read_text(encoding="utf-8"))
    if not pastes and not shown:
        return []
    if name not in NUMBERS:
        return [f"{page}: pastes numbers but scvae_core.book.glued.NUMBERS has no entry {name!r} to recompute them"]
    if len(pastes) != len(shown):
        return [f"{page}: {len(shown)} pasted numbers but {source.name} pastes {len(pastes)} ({FIX})"]
    table = soup.find("table", class_=GENERATED)
    preset = (table.get("data-preset") or None) if table is not None else None
    numbers = NUMBERS[name](results_dir, preset)
    problems = []
    for (key, fmt), got in zip(pastes, shown):
        if key not in numbers:
            problems.append(f"{page}: pastes {key!r}, which scvae_core.book.glued.NUMBERS[{name!r}] does not compute")
            continue
        want = _paste_format(numbers[key], fmt)
        if got != want:
            problems.append(f"{page}: the prose shows {key!r} as {got!r} but the results in {results_dir} "
                            f"give {want!r}: stale or edited ({FIX})")
    return problems


def check_text(where: str, div, results_dir: Path) -> list[str]:
    """Problems of one sentence built from results: its words against a rebuild from them."""
    from .tables import build_text  # imports what tables import: only when there is a sentence to check

    text_id, preset = div.get("data-text"), div.get("data-preset")
    if not text_id or preset is None:
        return [f"{where}: a {TEXT} block needs data-text and data-preset attributes"]
    where = f"{where}: sentence {text_id!r} (preset {preset or 'none'!r})"
    try:
        expected = BeautifulSoup(build_text(text_id, results_dir, preset or None).to_html(), "html.parser").div
    except (UnknownName, ResultError) as e:
        return [f"{where}: cannot rebuild it from {results_dir}: {e}"]
    got, want = _text(div), _text(expected)
    if got == want:
        return []
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    start = max(0, at - 40)
    return [f"{where}: shows {'...' * (start > 0)}{got[start:at + 40]!r} where the results in {results_dir} give "
            f"{'...' * (start > 0)}{want[start:at + 40]!r}: stale or edited ({FIX})"]


def toc_pages(toc: Path) -> list[str]:
    """Every file of the book's table of contents, its root first (as ``notebooks/04_table1``)."""
    import yaml

    def files(entries):  # chapters and their sections, at any depth
        for entry in entries:
            yield entry["file"]
            yield from files(entry.get("sections", []))

    doc = yaml.safe_load(Path(toc).read_text(encoding="utf-8"))
    chapters = [c for part in doc.get("parts", []) for c in part.get("chapters", [])] + doc.get("chapters", [])
    return [doc["root"], *files(chapters)]


def _nothing_to_show(table_id: str, results_dir: Path) -> bool:
    """Whether the results give table ``table_id`` nothing to show, so a page may leave it out."""
    from .tables import build_table

    try:
        table = build_table(table_id, results_dir)
    except (UnknownName, ResultError):
        return False
    return not table.rows or len(table.columns) < 2


def _glued_kind(key: str) -> tuple[str, str]:
    """("table" | "text", key) of an item glued from another page (``{glue:any} key``)."""
    from .tables import TEXTS

    return ("text" if key in TEXTS else "table"), key


def check_pages(html_dir: Path, results_dir: Path, toc: Path = TOC) -> list[str]:
    """What should be in the book and is not: a page of ``toc`` that was not built, or a generated
    table or sentence that a page's source shows and the built page does not hold."""
    problems = []
    for name in toc_pages(toc):
        page, source = f"{name}.html", Path(toc).parent / f"{name}.md"
        if not (html_dir / page).is_file():
            problems.append(f"{page}: missing, though {Path(toc).name} lists {name} ({FIX})")
            continue
        soup = BeautifulSoup((html_dir / page).read_text(encoding="utf-8"), "html.parser")
        content = soup.find("main") or soup
        held = {"table": Counter(t.get("id") for t in content.select(f"table.{GENERATED}")),
                "text": Counter(d.get("data-text") for d in content.select(f"div.{TEXT}"))}
        code = source.read_text(encoding="utf-8") if source.is_file() else ""
        # an item a page glues for another (glue(..., display=False)) is shown where it is pasted
        shown_here = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("glue("))
        wanted = Counter(SHOWS.findall(shown_here)) + Counter(_glued_kind(key) for key in GLUED_TABLE.findall(code))
        for (kind, item), n in sorted(wanted.items()):
            if held[kind][item] < n and not (kind == "table" and _nothing_to_show(item, results_dir)):
                what = "table" if kind == "table" else "sentence"
                problems.append(f"{page}: the generated {what} {item!r} is missing, though {source.name} shows it "
                                f"({FIX})")
    return problems


def check_book(html_dir: Path | str, results_dir: Path | str = DEFAULT_RESULTS_DIR,
               paper_file: Path | str = PAPER_REPORTED, sources: Path | str = SOURCES,
               toc: Path | str = TOC) -> list[str]:
    """Every problem found in the built book at ``html_dir``; an empty list means it is fine."""
    html_dir, results_dir, paper_file = Path(html_dir), Path(results_dir), Path(paper_file)
    if not (html_dir / "index.html").is_file():
        return [f"{html_dir}: no built book here (no index.html): run `make book`"]
    problems = check_pages(html_dir, results_dir, Path(toc))
    for page, table in tables(html_dir):
        if GENERATED in (table.get("class") or []):
            problems += check_table(page, table, results_dir, paper_file)
        elif page.startswith(NOTEBOOK_PAGES + "/"):
            problems.append(f"{page}: a table not generated by scvae_core.book.tables ({_text(table)[:60]!r}...): "
                            "notebook pages may only show tables built from results")
    for path in pages(html_dir):
        page = path.relative_to(html_dir).as_posix()
        soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
        for div in (soup.find("main") or soup).select(f"div.{TEXT}"):
            problems += check_text(page, div, results_dir)
        if page.startswith(NOTEBOOK_PAGES + "/"):
            problems += check_glued(page, soup, results_dir, Path(sources))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scvae_core.book.bookcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("html_dir", help="the built book, e.g. _build/html")
    parser.add_argument("--results-dir", default=str(DEFAULT_RESULTS_DIR), help="results root (default: results/)")
    parser.add_argument("--paper", default=str(PAPER_REPORTED), help="the paper's numbers (default: %(default)s)")
    args = parser.parse_args(argv)
    problems = check_book(args.html_dir, args.results_dir, args.paper)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"book check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    n = sum(GENERATED in (t.get("class") or []) for _, t in tables(Path(args.html_dir)))
    print(f"book check: {len(pages(Path(args.html_dir)))} pages, {n} generated tables and every page, table, "
          "sentence and pasted number the sources show, all match the results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
