"""report.py: the front page's one-screen table and the texts built from the verdicts."""
from __future__ import annotations

import pytest
from bs4 import BeautifulSoup
from fake_results import write_eval

from scvae_core.book import claims, report
from scvae_core.book.bookcheck import check_text
from scvae_core.book.tables import build_text
from scvae_core.results import REPO_ROOT

pytestmark = pytest.mark.unit

SEEDS = (0, 1, 2)


def test_every_claim_has_a_short_name():
    assert set(claims.SHORT) == {c.id for c in claims.CLAIMS}
    assert all(len(s) <= 45 for s in claims.SHORT.values())  # one line of the narrow first column


def test_each_cell_takes_the_most_trustworthy_budget_that_measured_the_claim(tmp_path):
    for seed in SEEDS:  # cpu: SCVAE 5 nats better; long epoch 100: 2 nats
        write_eval(tmp_path, "cpu", "vae-1l", seed, nll=95)
        write_eval(tmp_path, "cpu", "scvae", seed, nll=90)
        write_eval(tmp_path, "long", "vae-1l", seed, nll=92, epoch=100)
        write_eval(tmp_path, "long", "scvae", seed, nll=90 + seed * 0.1 - 0.1, epoch=100)
    table = report.headline_table(tmp_path)
    row = next(r for r in table.rows if r[0] == claims.SHORT["scvae-vs-1l"])
    assert row[1].startswith("no effect: -2.00 [")  # accuracy equal: no effect and row[1].endswith(", n = 3 · long e100")
    assert row[2] == "—"  # the authors' protocol never ran
    assert table.columns == ("Claim", "Ours", "Authors' protocol") and len(table.rows) == len(claims.CLAIMS)


def test_the_abstract_fits_200_words_and_says_what_the_verdicts_say():
    results = REPO_ROOT / "results"
    words = " ".join(report.abstract_paragraphs(results)).split()
    assert len(words) <= 200, len(words)
    found = report.headline(results)
    counts = report.tally(found, "Ours")
    assert report._tally_text(counts) in " ".join(report.abstract_paragraphs(results))
    assert sum(counts.values()) == sum(found[c.id]["Ours"] is not None for c in claims.CLAIMS)


def test_an_edited_generated_text_is_reported(tmp_path):
    for seed in SEEDS:
        write_eval(tmp_path, "cpu", "vae-1l", seed, nll=95)
        write_eval(tmp_path, "cpu", "scvae", seed, nll=90)
    page = BeautifulSoup(f"<main>{build_text('abstract', tmp_path).to_html()}</main>", "html.parser")
    assert check_text("book/intro.html", page.div, tmp_path) == []
    node = page.div.find(string=lambda t: "-5.00 nats" in t)
    node.replace_with(node.replace("-5.00 nats", "-9.00 nats"))
    problems = check_text("book/intro.html", page.div, tmp_path)
    assert problems and "sentence 'abstract'" in problems[0]
