"""tables.py and plots.py on fabricated result trees: table cells are the means and spreads of
the eval files beside data/paper_reported.json, claim verdicts follow their rule, figures draw.
The paper's numbers are read from its data file here, never typed."""
from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest
from bs4 import BeautifulSoup
from fake_results import write_eval, write_figures, write_train
from matplotlib.figure import Figure

from scvae_core import runs
from scvae_core.book import plots, tables
from scvae_core.presets import AUTHORS_TABLE1, TABLE1, TABLE2, depth_models, get_preset
from scvae_core.results import PAPER_REPORTED, PUBLISHED, ResultError, RunPaths, read_json
from scvae_core.book.claims import READINGS
from scvae_core.zoo import TWINS, UnknownName

pytestmark = pytest.mark.unit

matplotlib.use("Agg")
PAPER = json.loads(PAPER_REPORTED.read_text())
SEEDS = (0, 1, 2)


def paper_row(table_id: str, model: str) -> dict:
    return next(r for r in PAPER[table_id]["rows"] if r["model"] == model)


@pytest.fixture
def cpu_tree(tmp_path):
    """Table 1 under the cpu preset, three seeds, SCVAE-L never run; one model only trained."""
    rng = np.random.default_rng(0)
    for i, model in enumerate(TABLE1[:-1]):
        for seed in SEEDS:
            write_eval(tmp_path, "cpu", model, seed, nll=90 + i + rng.normal(), acc=0.8 + 0.01 * i + 0.01 * rng.random(),
                       elbo=-95 - i, kl=20 + seed, active_units=20 + seed + i)
    write_train(tmp_path, "cpu", TABLE1[-1], 0)
    return tmp_path


def column(table: tables.Table, name: str) -> list[str]:
    j = table.columns.index(name)
    return [row[j] for row in table.rows]


def values(results_dir, model: str, key: str) -> np.ndarray:
    return np.array([read_json(RunPaths(results_dir, "cpu", model, s).eval_json,
                               "eval")["metrics"][key] for s in SEEDS])


def test_table1_cells_are_means_and_stds_of_the_eval_files(cpu_tree):
    t = tables.table1(cpu_tree, "cpu")
    assert [row[0] for row in t.rows] == [r["display"] for r in PAPER["table1"]["rows"]]
    for row, model in zip(t.rows, TABLE1[:-1]):
        for name, key, d in (("NLL (ours)", "nll", 2), ("Acc (ours)", "svm_acc", 4), ("ELBO (ours)", "elbo", 2),
                             ("KL (ours)", "kl", 2), ("Active units (ours)", "active_units", 1)):
            v = values(cpu_tree, model, key)
            assert row[t.columns.index(name)] == f"{v.mean():.{d}f} ± {v.std(ddof=1):.{d}f} (n=3)"


def test_paper_tables_name_their_budget_test_images_and_s(cpu_tree):
    assert "Ours: preset 'cpu', seeds 0, 1, 2, NLL on 64 test images at S = 8;" in tables.table1(cpu_tree, "cpu").caption
    for seed in SEEDS:  # long's Table 2 pair stops at epoch 30: the SCVAE row is read there too
        write_eval(cpu_tree, "long", "scvae", seed, nll=90.0, epoch=30, nll_samples=200)
        write_eval(cpu_tree, "long", "scvae", seed, nll=80.0, epoch=100, nll_samples=1000)
    write_eval(cpu_tree, "long", "vae-1l+vamp", 0, epoch=30, nll_samples=200)
    t = tables.table2(cpu_tree, "long")
    assert "Ours: preset 'long' at epoch 30, seeds 0, 1, 2, NLL on 64 test images at S = 200;" in t.caption
    assert column(t, "NLL (ours)")[0].startswith("90.00")


def test_paper_columns_and_differences(cpu_tree):
    t = tables.table1(cpu_tree, "cpu")
    decimals = PAPER["decimals"]
    for row, model in zip(t.rows, TABLE1):
        paper = paper_row("table1", model)
        assert row[t.columns.index("NLL (paper)")] == f"{paper['nll']:.{decimals['nll']}f}"
        assert row[t.columns.index("Acc (paper)")] == f"{paper['acc']:.{decimals['acc']}f}"
        if model != "scvae-l":
            nll_diff = values(cpu_tree, model, "nll").mean() - paper["nll"]
            acc_diff = values(cpu_tree, model, "svm_acc").mean() - paper["acc"]
            assert row[t.columns.index("NLL ours − paper")] == f"{nll_diff:+.2f}"
            assert row[t.columns.index("Acc ours − paper")] == f"{acc_diff:+.4f}"


def test_missing_model_is_shown_as_not_run(cpu_tree):
    t = tables.table1(cpu_tree, "cpu")
    row = dict(zip(t.columns, t.rows[-1]))
    assert row["Model"] == paper_row("table1", "scvae-l")["display"]
    ours = [name for name in t.columns if "(ours)" in name]
    assert all(row[name] == "not run" for name in ours)
    assert row["NLL ours − paper"] == row["Acc ours − paper"] == ""


def test_table2_has_the_papers_rows_and_one_seed_has_no_spread(tmp_path):
    write_eval(tmp_path, "cpu", "pixelvae", 0, nll=85.0)
    t = tables.table2(tmp_path, "cpu")
    assert [row[0] for row in t.rows] == [r["display"] for r in PAPER["table2"]["rows"]]
    assert column(t, "NLL (ours)")[1] == "85.00 (n=1)" and "preset 'cpu', seed 0, NLL on 64 test images at S = 8;" in t.caption
    assert column(t, "NLL (ours)").count("not run") == len(PAPER["table2"]["rows"]) - 1


def test_html_carries_id_class_preset_seeds_and_caption(cpu_tree):
    t = tables.build_table("table1", cpu_tree, "cpu")
    soup = BeautifulSoup(t.to_html(), "html.parser")
    table = soup.select_one("table.scvae-table#table1")
    assert table["data-preset"] == "cpu" and table["data-seeds"] == "0,1,2"
    assert [th.get_text() for th in table.thead.find_all("th")] == list(t.columns)
    assert len(table.tbody.find_all("tr")) == len(TABLE1)
    caption = table.caption.get_text()
    assert "preset 'cpu'" in caption and "seeds 0, 1, 2" in caption
    with pytest.raises(UnknownName, match="table1, table2"):
        tables.build_table("table9", cpu_tree)


def test_pick_preset_prefers_paper_then_long_then_cpu(cpu_tree):
    assert runs.pick_preset(cpu_tree, "table1") == "cpu"
    assert runs.pick_preset(cpu_tree, "table2") is None
    for model in TABLE1:
        write_eval(cpu_tree, "long", model, 0, epoch=30)  # the long preset's last epoch is 100: not yet
    assert runs.pick_preset(cpu_tree, "table1") == "cpu"
    write_eval(cpu_tree, "long", "vae-1l", 0, epoch=100)  # one model of six: cpu holds five
    assert runs.pick_preset(cpu_tree, "table1") == "cpu"
    for model in TABLE1:
        write_eval(cpu_tree, "long", model, 0, epoch=100)
    assert runs.pick_preset(cpu_tree, "table1") == "long"
    for model in TABLE1:
        write_eval(cpu_tree, "paper", model, 0)
    assert runs.pick_preset(cpu_tree, "table1") == "paper"
    assert tables.table1(cpu_tree).preset == tables.table1(cpu_tree, "auto").preset == "paper"
    assert tables.table1(cpu_tree, "cpu").preset == "cpu"  # an explicit preset wins
    nothing = tables.table2(cpu_tree)
    assert nothing.preset is None and all(row[1] == "not run" for row in nothing.rows)


def test_converged_becomes_the_headline_once_it_holds_the_whole_stage(tmp_path):
    """The authors' protocol: long (one seed each) until converged holds every model, then converged."""
    assert runs.pick_preset(tmp_path, "authors") is None
    write_eval(tmp_path, "converged", AUTHORS_TABLE1[0], 0)
    assert runs.pick_preset(tmp_path, "authors") == "converged"  # part of a stage, and nothing else
    for model in AUTHORS_TABLE1:
        write_eval(tmp_path, "long", model, 0, epoch=100)
    assert runs.pick_preset(tmp_path, "authors") == "long"  # the whole stage beats part of it
    for model in AUTHORS_TABLE1[1:]:
        write_eval(tmp_path, "converged", model, 0)
    assert runs.pick_preset(tmp_path, "authors") == "converged"


def test_collect_skips_unevaluated_runs_and_names_corrupt_files(cpu_tree):
    found = runs.collect(cpu_tree, "cpu", TABLE1)
    assert [e["seed"] for e in found["vae-1l"]] == list(SEEDS) and found["scvae-l"] == []
    assert [e["seed"] for e in runs.collect(cpu_tree, "cpu", ["vae-1l"], seeds=[2, 5])["vae-1l"]] == [2]
    bad = RunPaths(cpu_tree, "cpu", "scvae", 1).eval_json
    bad.write_text('{"kind": "eval"')
    with pytest.raises(ResultError, match=str(bad)):
        tables.table1(cpu_tree, "cpu")


# ------------------------------------------------------------------------- verdicts

@pytest.fixture
def depth_tree(tmp_path):
    """Depth sweep at depths 1, 3, 5: plain loses a decade per two layers, skip keeps its level."""
    for name in depth_models((1, 3, 5)):
        side, depth, kind = runs.DEPTH_MODEL.match(name).groups()
        level = 1e-2 * (10 ** (-(int(depth) - 1) / 2) if kind == "plain" else 1.0)
        write_eval(tmp_path, "cpu", name, 0, model_mean=level, enc=level * 2, dec=level * 3)
    return tmp_path


def test_fisher_depth_series(depth_tree):
    data = tables.fisher_depth(depth_tree, "cpu")
    assert (data["preset"], data["seeds"]) == ("cpu", [0])
    enc_plain = data["series"]["enc"]["plain"]
    assert [p["depth"] for p in enc_plain] == [1, 3, 5]
    assert [p["model"]["mean"] for p in enc_plain] == pytest.approx([1e-2, 1e-3, 1e-4])
    assert [p["part"]["mean"] for p in enc_plain] == pytest.approx([2e-2, 2e-3, 2e-4])  # encoder_mean
    assert [p["part"]["mean"] for p in data["series"]["dec"]["skip"]] == pytest.approx([3e-2] * 3)  # decoder_mean


def test_fisher_per_model_and_its_stage(cpu_tree):
    data = tables.fisher_per_model(cpu_tree, None, TABLE1)
    assert data["preset"] == "cpu" and data["missing"] == ["scvae-l"]
    assert data["models"]["scvae"]["encoder"]["mean"] == pytest.approx(1e-3)
    assert runs.stage_of(["scvae", *TABLE2]) == "table2" and runs.stage_of(["vae-1l"]) == "table1"


# ------------------------------------------------------------------------- plots

def test_plots_draw_on_fake_results(cpu_tree, depth_tree):
    models = ("vae-1l", "vae-q++")
    for model in models:
        write_figures(cpu_tree, "cpu", model, 0)
    figs = {m: plots.load_figures(cpu_tree, "cpu", m, 0) for m in models}
    drawn = [
        plots.latent_tsne_grid(figs), plots.latent_tsne_grid(figs, keys=("tsne_raw", "tsne_latent")),
        plots.layer_tsne_grid(figs), plots.recon_grid(figs),
        plots.fisher_vs_depth({r: tables.fisher_depth(depth_tree, "cpu", reading=r) for r in READINGS}),
        plots.fisher_vs_depth({"model": tables.fisher_depth(depth_tree, "cpu")}, measure="part"),
        plots.fisher_bars({r: tables.fisher_per_model(cpu_tree, "cpu", TABLE1, reading=r) for r in READINGS}),
        plots.training_curves([read_json(write_train(cpu_tree, "cpu", m, s), "train") for m in models for s in SEEDS]),
    ]
    for fig in drawn:
        assert isinstance(fig, Figure)
        assert "preset cpu" in fig.get_suptitle() and "seed" in fig.get_suptitle()
        fig.canvas.draw()  # matplotlib's Agg canvas: layout and rendering run without error


def test_recon_mosaic_alternates_truth_and_reconstruction():
    truth, recon = np.zeros((3, 28, 28)), np.ones((3, 28, 28))
    mosaic = plots.interleave(truth, recon, pairs=2)
    assert mosaic.shape == (56, 4 * 28)
    assert (mosaic[:28, :28] == 0).all() and (mosaic[:28, 28:56] == 1).all() and (mosaic[28:, 28:56] == 1).all()


def test_missing_tsne_names_the_run(cpu_tree):
    write_figures(cpu_tree, "cpu", "scvae", 1)
    figs = plots.load_figures(cpu_tree, "cpu", "scvae", 1)
    del figs.arrays["tsne_latent"]
    with pytest.raises(ResultError, match="scvae .*seed 1"):
        plots.latent_tsne_grid({"SCVAE": figs})


# ---- where we differ: activation and init twins, published numbers, budget, NLL convergence

@pytest.mark.parametrize("table_id, suffix, name", [(t.stage, t.suffix, t.label) for t in TWINS])
def test_twin_table_sets_each_model_beside_its_twin(cpu_tree, table_id, suffix, name):
    for seed in (0,):
        write_eval(cpu_tree, "cpu", "vae-q++" + suffix, seed, nll=77.0, acc=0.5, active_units=11)
    other = next(t for t in TWINS if t.suffix != suffix)
    write_eval(cpu_tree, "cpu", "vae-1l" + other.suffix, 0, nll=1.0)  # another twin set's
    t = tables.build_table(table_id, cpu_tree, None)
    assert t.preset == "cpu" and [r[0] for r in t.rows] == [r["display"] for r in PAPER["table1"]["rows"]]
    q = t.rows[TABLE1.index("vae-q++")]
    v = values(cpu_tree, "vae-q++", "nll")
    assert t.id == table_id and f"with {name} (stage '{table_id}')" in t.caption
    assert q[t.columns.index("NLL ours")] == f"{v.mean():.2f} ± {v.std(ddof=1):.2f} (n=3)"
    assert q[t.columns.index(f"NLL {name}")] == "77.00 (n=1)" and q[t.columns.index(f"Acc {name}")] == "0.5000 (n=1)"
    assert q[t.columns.index(f"Active units {name}")] == "11.0 (n=1)"
    assert t.rows[0][t.columns.index(f"NLL {name}")] == tables.NOT_RUN
    assert tables.build_table(table_id, cpu_tree, "cpu") == t  # what the book check rebuilds


def test_published_table_reads_our_budgets_and_the_cited_file(tmp_path):
    published = json.loads(PUBLISHED.read_text())
    for seed in SEEDS:
        write_eval(tmp_path, "cpu", "vae-1l", seed, nll=100 + seed)
    write_eval(tmp_path, "cpu-long", "vae-1l", 0, nll=94.0)
    t = tables.published_table(tmp_path)
    assert [r[0] for r in t.rows][:2] == ["Ours, preset 'cpu'", "Ours, preset 'cpu-long'"]
    assert column(t, "NLL")[:2] == ["101.00 ± 1.00 (n=3)", "94.00 (n=1)"]
    assert column(t, "NLL")[2] == f"{paper_row('table1', 'vae-1l')['nll']:.2f}"
    assert column(t, "NLL")[3:] == [f"{e['nll']:.2f}" for e in published["entries"]]
    assert all(e["citation"] for e in published["entries"])
    assert tables.build_table("published", tmp_path, None) == t
    # 10 -> 100 epochs: 101 -> 94 against the paper's number
    paper = paper_row("table1", "vae-1l")["nll"]
    text = tables.budget_text(tmp_path)
    assert f"from 101.00 to 94.00 nats (the paper: {paper:.2f}; {100 * 7 / (101 - paper):.0f}% of the gap" in text
    assert "- VAE(q++): needs results under both" in text
    write_eval(tmp_path, "cpu", "vae-q++", 0, nll=205.0, active_units=0)
    write_eval(tmp_path, "cpu-long", "vae-q++", 0, nll=206.0, active_units=0)
    assert "from 205.00 to 206.00 nats (the paper: " in tables.budget_text(tmp_path)
    assert "none of the gap closed) and its active latent units from 0.0 to 0.0" in tables.budget_text(tmp_path)
    assert "VAE(1L): needs results under both" in tables.budget_text(tmp_path / "nothing")


def test_nll_convergence_reads_the_nested_estimates(tmp_path):
    for seed in (0, 1):
        write_eval(tmp_path, "cpu", "vae-1l", seed, nll=90 - seed, nll_by_samples={"1": 100.0, "8": 90.0 - seed})
    write_eval(tmp_path, "cpu", "scvae", 0)  # written before the metric existed: left out
    data = tables.nll_convergence(tmp_path, "cpu")
    assert list(data["models"]) == ["vae-1l"] and sorted(data["models"]["vae-1l"]) == [1, 8]
    assert data["models"]["vae-1l"][8]["mean"] == pytest.approx(89.5)
    assert "from S = 1 to S = 8 the estimate fell by 10.50 nats" in tables.convergence_text(data)
    assert isinstance(plots.nll_convergence_plot(data), Figure)


def test_collapse_text_names_models_without_active_units(tmp_path):
    for seed in SEEDS:
        write_eval(tmp_path, "cpu", "vae-q++", seed, active_units=0 if seed else 3)
        write_eval(tmp_path, "cpu", "vae-1l", seed, active_units=40)
    write_eval(tmp_path, "cpu", "vae-q++-relu", 0, active_units=25)
    text = tables.collapse_text(tmp_path, "cpu")
    assert "- tanh, default init, preset cpu: 2 of 6 models run; collapsed: VAE(q++) (2 of 3 seeds)" in text
    assert "- ReLU, preset cpu: 1 of 6 models run; collapsed: none" in text
    assert "- Xavier init, preset cpu: 0 of 6 models run; collapsed: none" in text
    assert "- authors' protocol (ReLU, He init, lr 1e-3), preset cpu: 0 of 6 models run" in text
    # unnamed, each set is read at its own most trustworthy preset: the authors' twins at long
    write_eval(tmp_path, "long", "vae-1l-authors", 0, active_units=30, epoch=100)
    text = tables.collapse_text(tmp_path)
    assert "- authors' protocol (ReLU, He init, lr 1e-3), preset long: 1 of 6 models run; collapsed: none" in text
    assert "- ReLU, preset cpu: 1 of 6 models run" in text and "- Xavier init: no results yet" in text


def test_start_text_reads_epoch_one_and_the_first_epoch_better_than_a_coin_flip(tmp_path):
    authors = next(t for t in TWINS if t.suffix == "-authors")
    assert tables.start_text(tmp_path, authors, "cpu").startswith("No run of the authors' protocol")
    for model, valid in (("scvae-authors", [-18041.5, -7926.4, -480.2]), ("vae-1l-authors", [-900.0, -800.0, -700.0])):
        path = write_train(tmp_path, "cpu", model, 0)
        doc = read_json(path, "train")
        for e, v in zip(doc["history"], valid):
            e["valid_elbo"], e["kl"] = v, 36285.2 if model == "scvae-authors" else 20.0
        path.write_text(json.dumps(doc))
        write_eval(tmp_path, "cpu", model, 0)
    text = tables.start_text(tmp_path, authors, "cpu")
    assert ("- SCVAE (seed 0): after epoch 1, validation ELBO -18,042 nats and training KL 36,285; better than a "
            "coin flip (-543) from epoch 3") in text
    assert "- VAE(1L) (seed 0): after epoch 1, validation ELBO -900 nats and training KL 20; better than a coin flip " \
           "(-543) in none of its 3 epochs" in text


def test_gap_text_splits_budget_estimator_and_protocol(tmp_path):
    by = {"100": 95.0, "200": 94.0, "1000": 93.3, "5000": 93.0}
    write_eval(tmp_path, "long", "vae-1l", 0, nll=104.0, epoch=10, nll_samples=200)
    write_eval(tmp_path, "long", "vae-1l", 0, nll=93.0, nll_by_samples=by, epoch=100, nll_samples=5000)
    write_eval(tmp_path, "long", "vae-1l-authors", 0, nll=92.5, epoch=100, nll_samples=5000,
               nll_by_samples={"1000": 92.6, "5000": 92.5})
    write_train(tmp_path, "long", "vae-1l", 0, epochs=100)  # valid ELBO rises 1 nat per epoch
    text = tables.gap_text(tmp_path)
    assert "over the last 20 epochs the best validation ELBO still rose 20.00 nats (seed 0)" in text
    assert "at the same S = 200, the NLL fell 10.00 nats (seed 0)" in text  # 104 against the nested 94
    assert "S = 200 overstates the NLL by 1.00 nats" in text and "S = 1000 overstates the NLL by 0.30" in text
    # both read at the common S = 1000, the NLL the seeds compare at
    assert "93.30 nats (mean over 1 seed(s), S = 1000)" in text
    assert "reaches 92.60 at epoch 100, +0.70 nats against ours (seed 0; n = 1: not judged)" in text


def test_training_end_follows_the_best_so_far_and_counts_dips(tmp_path):
    # 100 epochs: a steady climb to -121 by epoch 80, held at 81, a fall of 400 nats at epoch 82, and a climb
    # back to -143 by epoch 100
    valid = [-200.0 + e for e in range(80)] + [-121.0, -521.0] + [-521.0 + 21.0 * k for k in range(1, 19)]
    doc = {"history": [{"epoch": e, "valid_elbo": v, "train_elbo": -200.0 + e} for e, v in enumerate(valid, 1)]}
    c = tables.training_end(doc)
    assert c["change"] == pytest.approx((valid[-1] - valid[79]) / 20)  # the climb back looks like progress
    assert c["best_change"] == 0.0  # the best, -121, was reached at epoch 80: the last 20 epochs did not move it
    assert c["dips"] == 19 and c["deepest"] == pytest.approx(400.0)  # epochs 82..100 are > 10 nats below it
    assert c["best_epoch"] == 80 and c["overfit"] == pytest.approx(43.0)  # training ELBO -100 against -143
    assert tables.training_end({"history": doc["history"][:20]}) is None  # shorter than the window

    for model, history in (("vae-11l", valid), ("vae-1l", [-200.0 + 0.5 * e for e in range(100)])):
        path = write_train(tmp_path, "long", model, 0, epochs=100)
        train = read_json(path, "train")
        for e, v in zip(train["history"], history):
            e["valid_elbo"] = v
        path.write_text(json.dumps(train))
        write_eval(tmp_path, "long", model, 0, epoch=100)
    write_train(tmp_path, "long", "scvae", 0, epochs=100)  # trained, not evaluated: left out
    t = tables.training_ends_table(tmp_path, "cpu")
    assert t.preset == "long" and tables.training_ends_table(tmp_path, "long").rows == t.rows
    ends = dict(zip(column(t, "Run"), column(t, "end")))
    assert ends == {"vae-1l seed 0": "still improving", "vae-11l seed 0": "levelling off, unstable"}
    assert column(t, "dips (epochs > 10 nats below the best so far)") == ["0", "19"]


def test_seeds_compare_at_the_common_sample_count_and_the_check_is_kept(tmp_path):
    # seed 0 of the long preset is evaluated at its last epoch with S = 5000, the others with 1000
    write_eval(tmp_path, "long", "vae-1l", 0, nll=93.0, nll_samples=5000, epoch=100,
               nll_by_samples={"200": 94.0, "1000": 93.3, "5000": 93.0})
    write_eval(tmp_path, "long", "vae-1l", 1, nll=93.2, nll_samples=1000, epoch=100,
               nll_by_samples={"200": 93.9, "1000": 93.2})
    write_eval(tmp_path, "long", "vae-1l", 0, nll=104.0, nll_samples=200, epoch=10)
    for seed in (0, 1):
        write_train(tmp_path, "long", "vae-1l", seed, epochs=100)
    seed0, seed1 = runs.collect(tmp_path, "long", ["vae-1l"], epoch=100)["vae-1l"]
    assert (seed0["metrics"]["nll"], seed0["metrics"]["nll_samples"]) == (93.3, 1000)
    assert seed0["metrics"]["nll_check"] == {"samples": 5000, "nll": 93.0}
    assert (seed1["metrics"]["nll"], "nll_check" in seed1["metrics"]) == (93.2, False)
    assert runs.collect(tmp_path, "long", ["vae-1l"], epoch=10)["vae-1l"][0]["metrics"]["nll"] == 104.0
    nll_cells = dict(zip(column(tables.table1_budgets(tmp_path), "Model"),
                         column(tables.table1_budgets(tmp_path), "NLL long, epoch 100")))
    assert nll_cells["VAE(1L)"] == "93.25 ± 0.07 (n=2)"  # not 93.10 ± 0.14: S = 5000 beside 1000


def test_verdict_effects_key_shows_budgets_by_marker_and_draws_each_measured_effect():
    def effect(label, status, estimate, n=1):
        return {"label": label, "status": status, "n": n, "estimate": estimate, "low": estimate - 0.5,
                "high": estimate + 0.5, "level": 0.0, "sign": +1, "threshold": 1.0}

    by_budget = {"cpu (10 epochs)": {"c1": {"preset": "cpu", "effects": [effect("a", "holds", 3.0),
                                                                          effect("b", "not measured", 0.0, n=0)]}},
                 "long, epoch 100": {"c1": {"preset": "long", "effects": [effect("a", "no effect", 0.2),
                                                                          effect("b", "contradicted", -4.0)]}}}
    fig = plots.verdict_effects(by_budget)
    (key,) = fig.legends
    assert [t.get_text() for t in key.get_texts()] == list(by_budget)  # one entry per budget, nothing else
    assert {h.get_color() for h in key.legend_handles} == {"black"}  # the marker, not a verdict's colour
    points = [c for c in fig.axes[0].collections if len(c.get_offsets())]
    assert len(points) == 3  # the unmeasured effect has no marker
    assert key.get_title().get_text() == "budget (marker)"
    assert plots.verdict_effects(by_budget, "protocol").legends[0].get_title().get_text() == "protocol (marker)"


def test_the_forest_plot_of_the_front_page_has_one_set_per_protocol(tmp_path):
    for seed in (0, 1, 2):
        write_eval(tmp_path, "long", "vae-1l", seed, nll=92, epoch=100)
        write_eval(tmp_path, "long", "scvae", seed, nll=90 + seed * 0.1, epoch=100)
    write_eval(tmp_path, "long", "vae-1l-authors", 0, nll=93, epoch=100)
    write_eval(tmp_path, "long", "scvae-authors", 0, nll=91, epoch=100)
    from scvae_core.book.report import headline_by_protocol
    found = headline_by_protocol(tmp_path)
    assert list(found) == ["Ours", "Authors' protocol"]
    assert found["Ours"]["scvae-vs-1l"]["effects"][0]["n"] == 3
    assert found["Authors' protocol"]["scvae-vs-1l"]["effects"][0]["n"] == 1
    fig = plots.verdict_effects(found, "protocol")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["Ours", "Authors' protocol"]


def test_training_curves_zoom_on_the_best_validation_elbo(tmp_path):
    docs = [read_json(write_train(tmp_path, "long", m, 0, epochs=30), "train") for m in ("vae-1l", "vae-11l")]
    for e in docs[1]["history"]:
        e["valid_elbo"] = -1500.0 if e["epoch"] == 20 else -206.0  # a collapsed run with a deep dip
    full, zoom = plots.training_curves(docs).axes
    best = max(h["valid_elbo"] for h in docs[0]["history"])  # -72 at epoch 30
    assert zoom.get_ylim() == pytest.approx((best - plots.ZOOM_NATS, best + 0.1 * plots.ZOOM_NATS))
    assert full.get_ylim()[0] <= -1500.0  # the left panel keeps everything
    assert [t.get_text() for t in full.get_legend().get_texts()] == ["vae-1l", "vae-11l"]


def test_training_curves_per_model_give_each_model_a_panel_at_its_own_scale(tmp_path):
    models = ("vae-1l", "vae-11l", "scvae", "scvae-l")
    docs = [read_json(write_train(tmp_path, "long", m, s, epochs=30), "train") for m in models for s in (0, 1)]
    for d in docs[2:4]:  # vae-11l: collapsed, far below the others
        for e in d["history"]:
            e["valid_elbo"] = e["train_elbo"] = -206.0
    fig = plots.training_curves_per_model(docs)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["VAE(1L)", "VAE(11L)", "SCVAE", "SCVAE-L"]
    assert len(fig.axes) == 6 and len(shown) == 4  # a 2 x 3 grid, the last two panels hidden
    assert [t.get_text() for t in shown[0].get_legend().get_texts()] == ["seed 0", "seed 1"]
    low, high = shown[1].get_ylim()
    assert low == pytest.approx(-206.0 - 2 * plots.ZOOM_NATS) and high > -206.0  # its own scale
    assert shown[0].get_ylim()[0] > -206.0  # VAE(1L)'s panel is not stretched down to the collapse


def test_short_and_long_runs_of_one_seed_are_compared_epoch_by_epoch(tmp_path):
    # vae-1l: the long run repeats the cpu run; vae-11l: it parts at epoch 2 and ends 5 nats lower;
    # scvae: only the cpu preset has it, so there is no pair
    for model, shift in (("vae-1l", [0.0] * 10), ("vae-11l", [0.0, 0.5] + [5.0] * 8)):
        write_train(tmp_path, "cpu", model, 0, epochs=10, device_name="AMD EPYC (2 logical cores, torch threads 1)")
        write_eval(tmp_path, "cpu", model, 0)
        path = write_train(tmp_path, "long", model, 0, epochs=100,
                           device_name="Intel(R) Xeon(R) Processor (2 logical cores, torch threads 1)")
        train = read_json(path, "train")
        for e, d in zip(train["history"], shift):
            e["valid_elbo"] -= d
        path.write_text(json.dumps(train))
        write_eval(tmp_path, "long", model, 0, epoch=10)
    write_train(tmp_path, "cpu", "scvae", 0, epochs=10)
    write_eval(tmp_path, "cpu", "scvae", 0)
    pairs = {p["model"]: p for p in tables.short_long_pairs(tmp_path)}
    assert set(pairs) == {"vae-1l", "vae-11l"}
    assert pairs["vae-1l"]["parted"] is None and pairs["vae-11l"]["parted"] == 2
    assert pairs["vae-11l"]["long"] - pairs["vae-11l"]["short"] == pytest.approx(-5.0)
    t = tables.short_long_table(tmp_path)
    assert column(t, "Run") == ["vae-11l seed 0", "vae-1l seed 0"]  # the pair that parted first
    assert column(t, "first epoch apart by > 0.01 nats") == ["2", "never"]
    assert column(t, "processor(s)") == ["AMD EPYC / Intel Xeon Processor"] * 2
    text = tables.short_long_text(tmp_path)
    assert "Of the 2 runs that both presets trained, 1 followed one path for all 10 epochs" in text
    assert "1 parted, at epochs 2 to 2, and at epoch 10 differ by up to 5.00 nats (vae-11l seed 0)" in text
    assert "Of the 1 with one hidden layer per side, 0 parted" in text
    assert "Of the 1 with a deeper side, 1 parted; their epoch-10 ELBOs differ by 5.00 nats in the median" in text


def test_short_and_long_presets_resolve_from_either_name():
    assert tables.short_and_long("smoke") == tables.short_and_long("smoke-long") == ("smoke", "smoke-long")
    assert tables.short_and_long("long") == tables.short_and_long(None) == tables.short_and_long("auto") == ("cpu", "long")
    long = get_preset("long")
    assert set(long.models) == {m for ms in long.stages.values() for m in ms} and len(set(long.models)) == len(long.models)
