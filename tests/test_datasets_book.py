"""The book beyond MNIST (book/datasets.py): Table 1 and the verdicts per data set, the front
page's answer for Fashion-MNIST, and static against dynamic binarization, from fabricated results."""
from __future__ import annotations

import pytest

from fake_results import write_eval, write_train

from scvae_core.book import claims, datasets
from scvae_core.book.tables import NOT_RUN

pytestmark = pytest.mark.unit

SEEDS = (0, 1, 2)
EPOCH = 100  # the long preset's last evaluation


def _pair(results_dir, dataset, scvae_nll: float, scvae_acc: float, suffix: str = "-authors", seeds=SEEDS,
          **extra) -> None:
    """VAE(1L) at 95 nats and accuracy 0.90, SCVAE as given (a little seed noise), with training logs."""
    for seed in seeds:
        for model, nll, acc in (("vae-1l", 95.0, 0.90), ("scvae", scvae_nll + 0.1 * seed, scvae_acc + 0.001 * seed)):
            write_eval(results_dir, "long", model + suffix, seed, nll=nll, acc=acc, epoch=EPOCH, dataset=dataset,
                       **extra)
            write_train(results_dir, "long", model + suffix, seed, epochs=30, dataset=dataset)


def _row(table, model: str, dataset: str) -> tuple:
    return next(r for r in table.rows if r[0].startswith(model) and r[1] == datasets.NAMES[dataset])


def test_table1_per_data_set_reads_each_data_sets_own_folder(tmp_path):
    _pair(tmp_path, "mnist-static", 90.0, 0.95)
    _pair(tmp_path, "fashion-static", 230.0, 0.80, heldout=0.81)
    table = datasets.datasets_table(tmp_path)
    assert _row(table, "SCVAE [authors'", "fashion-static")[2:5] == ("230.10 ± 0.10 (n=3)", "0.8010 ± 0.0010 (n=3)",
                                                                    "0.8100 ± 0.0000 (n=3)")
    assert _row(table, "SCVAE [authors'", "mnist-static")[2:5] == ("90.10 ± 0.10 (n=3)", "0.9510 ± 0.0010 (n=3)",
                                                                  "no training labels")
    assert _row(table, "SCVAE [authors'", "fashion-dynamic")[2] == NOT_RUN  # planned, not run
    assert _row(table, "SCVAE [authors'", "fashion-static")[6] == "1.00 ± 0.00 (n=3)"  # train − valid ELBO
    assert not any(r[0] == "SCVAE" and r[1] == datasets.NAMES["fashion-dynamic"] for r in table.rows)  # not planned


def test_claims_are_judged_on_each_data_set_apart(tmp_path):
    _pair(tmp_path, "mnist-static", 90.0, 0.95)  # SCVAE better in both: holds on MNIST
    _pair(tmp_path, "fashion-static", 99.0, 0.85)  # worse in both: contradicted on Fashion-MNIST
    found = datasets.verdicts_by_dataset(tmp_path)
    assert found[("authors' protocol", "mnist-static")]["scvae-vs-1l"]["status"] == "holds"
    assert found[("authors' protocol", "fashion-static")]["scvae-vs-1l"]["status"] == "contradicted"
    assert found[("authors' protocol", "fashion-dynamic")]["scvae-vs-1l"]["status"] == "not measured"
    table = datasets.datasets_verdicts_table(tmp_path)
    assert "Fashion-MNIST, dynamic (ours)" not in table.columns  # our protocol is not planned there
    row = next(r for r in table.rows if r[0] == claims.SHORT["scvae-vs-1l"])
    assert row[1].startswith("holds: NLL holds, accuracy holds · -4.90 [") and row[1].endswith(", n = 3")
    assert row[2].startswith("contradicted:")
    text = datasets.fashion_summary(tmp_path)
    assert "under authors' protocol, 0 of the 1 Table 1 claims that hold on MNIST hold on Fashion-MNIST" in text
    assert "SCVAE beats VAE(1L) in NLL and accuracy: contradicted" in text, text


def test_one_seed_on_fashion_borrows_no_spread_from_mnist(tmp_path):
    _pair(tmp_path, "mnist-static", 90.0, 0.95, suffix="")  # our protocol, three seeds on MNIST
    _pair(tmp_path, "fashion-static", 90.0, 0.95, suffix="", seeds=(0,))  # and one on Fashion-MNIST
    mnist = claims.verdict_evidence(tmp_path, "long", "", dataset="mnist-static")["scvae-vs-1l"]
    fashion = claims.verdict_evidence(tmp_path, "long", "", dataset="fashion-static")["scvae-vs-1l"]
    assert mnist["status"] == "holds" and mnist["effects"][0]["n"] == 3
    assert fashion["status"] == "not judged" and fashion["effects"][0]["method"].startswith("n = 1: not judged")
    with pytest.raises(ValueError, match="name the preset"):
        claims.verdict_evidence(tmp_path, None, "", dataset="fashion-static")


def test_static_against_dynamic_pairs_seeds_on_the_same_test_images(tmp_path):
    assert datasets.binarization_text(tmp_path).startswith("Static against dynamic binarization: not run")
    assert datasets.fashion_summary(tmp_path).startswith("Fashion-MNIST: not run")
    for seed in SEEDS:
        for model in datasets.DYNAMIC_PAIR:
            write_eval(tmp_path, "long", model, seed, nll=240.0 + seed, epoch=EPOCH, dataset="fashion-static")
            write_eval(tmp_path, "long", model, seed, nll=238.0 + seed, epoch=EPOCH, dataset="fashion-dynamic")
            for d in datasets.FASHION:
                write_train(tmp_path, "long", model, seed, epochs=30, dataset=d)
    text = datasets.binarization_text(tmp_path)
    # seed by seed the dynamic run is 2 nats better: no spread, the shared within-run error only
    assert "VAE(1L) [authors' protocol (ReLU, He init, lr 1e-3)], n = 3 seeds: test NLL -2.00 nats" in text, text
    assert "training minus validation ELBO +0.00 nats" in text, text


def test_training_curves_give_each_data_set_its_own_panel(tmp_path):
    from scvae_core.book.plots import training_curves_per_model
    from scvae_core.runs import pick_preset, train_docs

    for dataset in datasets.FASHION:
        write_eval(tmp_path, "long", "scvae-authors", 0, epoch=EPOCH, dataset=dataset)
        write_train(tmp_path, "long", "scvae-authors", 0, epochs=30, dataset=dataset)
    assert pick_preset(tmp_path, "authors") is None  # MNIST's folder holds nothing
    assert pick_preset(tmp_path, "authors", "fashion-static") == "long"
    docs = [d for d in datasets.FASHION for d in train_docs(tmp_path, "long", ["scvae-authors"], dataset=d)]
    assert [d["dataset"] for d in docs] == list(datasets.FASHION)
    titles = [ax.get_title() for ax in training_curves_per_model(docs).axes if ax.get_visible()]
    assert titles == [f"SCVAE [authors' protocol (ReLU, He init, lr 1e-3)]\n{d}" for d in datasets.FASHION], titles
