"""report.py: the front page's one-screen table and the texts built from the verdicts."""
from __future__ import annotations

import pytest
from bs4 import BeautifulSoup
import json

from fake_results import write_eval, write_train

from scvae_core.book import claims, report
from scvae_core.book.bookcheck import check_text
from scvae_core.book.tables import TEXTS, build_text
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


def test_the_findings_say_which_deep_plain_models_collapsed_under_each_protocol(tmp_path):
    for seed in SEEDS:
        for model, units, acc in (("vae-11l", 0, 0.1135), ("vae-q++", 0, 0.1135), ("vae-p++", 49, 0.75)):
            write_eval(tmp_path, "long", model, seed, active_units=units, acc=acc, epoch=100)
    for model in ("vae-11l-relu", "vae-q++-relu"):
        write_eval(tmp_path, "cpu", model, 0, active_units=5)
    write_eval(tmp_path, "long", "vae-11l-authors", 0, active_units=0, epoch=100)
    text = report._collapse(tmp_path)
    assert ("tanh, default init (long, epoch 100): 2 of 3 collapsed to no active latent unit — VAE(11L): "
            "0.0 active units, accuracy 0.1135 (n = 3)") in text
    assert "ReLU (cpu): none of the 2 collapsed" in text  # each set at its own budget
    assert "(long, epoch 100): 1 of 1 collapsed" in text and "Xavier" not in text  # no results: not named


def test_the_findings_read_the_collapse_diagnostics_beside_the_active_units(tmp_path):
    assert "No deep model" in report._diagnostics(tmp_path)
    assert report.diagnostics_summary(tmp_path).endswith("no deep model's evaluation has recorded them so far.")
    for seed in SEEDS:  # VAE(p++): every seed counts 40 active units, seed 1's decoder ignores z
        write_eval(tmp_path, "long", "vae-p++", seed, mi=(3.0 - seed, 0.01), active_units=40, ignores_z=seed == 1,
                   epoch=100)
        write_eval(tmp_path, "long", "skipvae-p++", seed, mi=(4.1, 0.01), active_units=50, epoch=100)
    write_eval(tmp_path, "long", "vae-11l", 0, epoch=100)  # evaluated before the diagnostics: left out
    write_eval(tmp_path, "converged", "vae-11l-authors", 0, mi=(4.0, 0.01), active_units=4)
    write_train(tmp_path, "converged", "vae-11l-authors", 0)
    text = report._diagnostics(tmp_path)
    assert ("tanh, default init (long, epoch 100; MI at most log N = 4.16): VAE(p++) (n = 3): MI 2.000 (1.000 to 3.000) "
            "nats, 40 active units, decoder ignores z in 1 of 3 seeds; Skip-VAE(p++) (n = 3): MI 4.100 nats, 50 "
            "active units, decoder ignores z in 0 of 3 seeds.") in text
    assert "VAE(11L) (n = 1): MI 4.000 nats, 4 active units, decoder ignores z in 0 of 1 seed." in text
    assert "converged" in text and text.count("VAE(11L)") == 1  # our VAE(11L) recorded none
    assert text.endswith("The active units overstate what z carries for VAE(p++): a seed counts active units while "
                         "its decoder ignores z.")
    # the front page's line is built from the same runs
    line = next(x for x in report.summary_results(tmp_path) if x.startswith("Collapse diagnostics"))
    assert "ours (long, epoch 100): VAE(p++) 1 of 3 seeds, Skip-VAE(p++) 0 of 3 seeds;" in line
    assert "authors' protocol (converged): VAE(11L) 0 of 1 seed." in line
    assert line.endswith("The active units overstate what z carries for VAE(p++) "
                         "(What we found: why, as far as the runs tell).")
    for preset, model, seeds in (("long", "vae-p++", SEEDS), ("long", "skipvae-p++", SEEDS), ("long", "vae-11l", [0])):
        for seed in seeds:  # the chapter's other findings read the training logs
            write_train(tmp_path, preset, model, seed)
    assert report._diagnostics(tmp_path) in report.findings(tmp_path)  # the chapter shows it


def test_the_findings_name_the_runs_that_start_worse_than_a_coin_flip(tmp_path):
    assert report._slow_starts(tmp_path) == "No run of the authors' protocol has a training log so far."
    for model in ("vae-1l-authors", "scvae-authors"):
        write_eval(tmp_path, "long", model, 0, epoch=100)
        path = write_train(tmp_path, "long", model, 0, epochs=20)
    doc = json.loads(path.read_text())  # scvae-authors: He initialisation with skips starts far off
    for e in doc["history"]:
        e["valid_elbo"] = -18000.0 if e["epoch"] < 13 else -100.0
    doc["history"][0]["kl"] = 36000.0
    path.write_text(json.dumps(doc))
    text = report._slow_starts(tmp_path)
    assert text.startswith("Under the authors' protocol (long) 1 of 2 runs start worse than a coin flip: "
                           "SCVAE (seed 0) at -18,000 nats after epoch 1 (training KL 36,000), better than a coin "
                           "flip from epoch 13"), text


def _pairs(slope: float, n: int = 6) -> list[dict]:
    """Layer pairs whose measured log10 Fisher ratio is ``slope`` times eq. 6's log10 ratio."""
    pairs = []
    for i in range(n):
        eq6 = 0.2 * (i + 1)
        fisher = slope * eq6
        pairs.append({"log10_fisher_ratio": fisher, "log10_eq6_ratio": eq6, "log10_inverse_ratio": -eq6,
                      "eq6_within_2x": abs(fisher - eq6) <= 0.301, "inverse_within_2x": abs(fisher + eq6) <= 0.301,
                      "fisher_decreases": fisher <= 0, "grad_shrinks_backward": eq6 <= 0})
    return pairs


@pytest.mark.parametrize("slope, follows", [(-1.0, "follow the inverse"), (1.0, "follow eq. 6"),
                                            (0.0, "follow neither")])
def test_the_eq6_finding_says_which_ratio_the_measured_fisher_follows(tmp_path, slope, follows):
    assert report.eq6_direction(tmp_path) == "No deep plain model has a Proposition 1 check so far."
    for seed in SEEDS:
        for model in report.DEEP_PLAIN:
            write_eval(tmp_path, "long", model, seed, epoch=100, prop1_pairs=_pairs(slope))
    text = report.eq6_direction(tmp_path)
    assert f"tanh, default init (long, epoch 100, n = 3 seeds, 18 layer pairs each)" in text, text
    assert f"slope of the measured log ratio on eq. 6's is {slope:+.2f}" in text and follows in text, text
    assert "authors'" not in text  # no runs of that protocol: not named


def test_the_eq6_finding_does_not_judge_one_seed(tmp_path):
    for model in report.DEEP_PLAIN:
        write_eval(tmp_path, "long", model + "-authors", 0, epoch=100, prop1_pairs=_pairs(-1.0))
    text = report.eq6_direction(tmp_path)
    assert "n = 1 seed, 18 layer pairs" in text and text.endswith("one seed: not judged."), text


def test_the_summary_names_each_effects_verdict_unless_all_agree(tmp_path):
    for seed in SEEDS:  # SCVAE 2 nats better in NLL (holds), the same accuracy (no effect)
        write_eval(tmp_path, "long", "vae-1l", seed, nll=92, epoch=100)
        write_eval(tmp_path, "long", "scvae", seed, nll=90 + seed * 0.1 - 0.1, epoch=100)
    lines = report.summary_results(tmp_path)
    line = next(x for x in lines if x.startswith(claims.SHORT["scvae-vs-1l"]))
    assert line == f"{claims.SHORT['scvae-vs-1l']} — ours: no effect (NLL holds, accuracy no effect); long e100", line
    assert lines[-2].startswith("Fashion-MNIST: not run") and lines[-1].startswith("Our runs trained a second time")
    for seed in SEEDS:  # now the accuracy is better too: every effect holds
        write_eval(tmp_path, "long", "scvae", seed, nll=90 + seed * 0.1 - 0.1, acc=0.95 + 0.001 * seed, epoch=100)
    line = next(x for x in report.summary_results(tmp_path) if x.startswith(claims.SHORT["scvae-vs-1l"]))
    assert line.endswith("— ours: holds (every effect); long e100"), line



def test_the_open_points_name_the_undecided_claims_and_what_would_decide_them(tmp_path):
    assert report.open_points(tmp_path) == []  # nothing run: nothing open
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for seed in SEEDS:  # NLL 2 nats better (holds); accuracy +0.005 to +0.015, straddling its 0.01 threshold
        write_eval(ours, "long", "vae-1l", seed, nll=92, acc=0.90, epoch=100)
        write_eval(ours, "long", "scvae", seed, nll=90 - 0.1 * seed, acc=0.905 + 0.005 * seed, epoch=100)
    points = report.open_points(ours)
    assert points[0].startswith("Under our protocol, 1 claim is inconclusive at the most trustworthy budget: "
                                f"{claims.SHORT['scvae-vs-1l']} (long e100, n = 3)."), points
    # one seed of the authors' protocol and no spread to borrow: not judged, and said so
    write_eval(theirs, "long", "vae-1l-authors", 0, nll=92, epoch=100)
    write_eval(theirs, "long", "scvae-authors", 0, nll=90, epoch=100)
    points = report.open_points(theirs)
    assert points == [f"Under the authors' protocol, 1 claim rests on one seed: {claims.SHORT['scvae-vs-1l']} "
                      "(long e100, n = 1). Two more seeds of their stages would turn 'not judged' into verdicts."], points
    assert "open-points" in TEXTS


def test_the_abstract_states_the_findings_beyond_the_paper_from_the_runs(tmp_path):
    assert report.beyond_sentence(tmp_path) == ""  # nothing run: nothing said
    for seed in SEEDS:
        for model, units in (("vae-11l", 0), ("vae-q++", 0), ("vae-p++", 49)):
            write_eval(tmp_path, "long", model, seed, active_units=units, epoch=100, prop1_pairs=_pairs(-1.0))
    for model in report.DEEP_PLAIN:  # one seed: its ratios are not judged
        write_eval(tmp_path, "long", model + "-authors", 0, active_units=5, epoch=100, prop1_pairs=_pairs(1.0))
    assert report.beyond_sentence(tmp_path) == (
        "Beyond the paper: of the 3 deep models without skips, 2 lost every active latent unit under our "
        "protocol (long, epoch 100) and 0 under the authors' protocol (long, epoch 100); the measured "
        "layer-to-layer Fisher ratios follow the inverse of eq. 6 under our protocol.")
    assert report.beyond_sentence(tmp_path) in report.abstract_paragraphs(tmp_path)


def test_the_abstract_counts_models_per_protocol_where_protocols_ran_different_models(tmp_path):
    for seed in SEEDS:
        for model, units in (("vae-11l", 0), ("vae-q++", 0), ("vae-p++", 49)):
            write_eval(tmp_path, "long", model, seed, active_units=units, epoch=100)
    for model in ("vae-11l-authors", "vae-p++-authors"):  # the authors' protocol: two of the three so far
        write_eval(tmp_path, "long", model, 0, active_units=0, epoch=100)
    assert report.beyond_sentence(tmp_path) == (
        "Beyond the paper: of the deep models without skips, 2 of 3 lost every active latent unit under our "
        "protocol (long, epoch 100) and 2 of 2 under the authors' protocol (long, epoch 100).")
