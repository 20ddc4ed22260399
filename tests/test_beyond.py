"""Beyond the paper (issue 27) in the book: our claims about Skip-VAE judged by the book's rule
(book/claims.py OUR_CLAIMS, book/beyond.py), the baseline table and its sentence, and the
rate-distortion figure (book/plots.py), on fabricated result trees and on the committed results."""
from __future__ import annotations

import copy
import json
import math
import shutil

import pytest
from fake_results import write_eval

from scvae_core import cli
from scvae_core.book import beyond, claims, verdicts
from scvae_core.book.plots import rate_distortion
from scvae_core.book.tables import TABLES, TEXTS, build_table, build_text
from scvae_core.book.verdicts import HOLDS, INCONCLUSIVE, NO_EFFECT, NOT_JUDGED, NOT_MEASURED, VERDICTS, Est
from scvae_core.presets import get_preset
from scvae_core.probes import baselines_path
from scvae_core.results import REPO_ROOT, ResultError, models_path, read_models, write_json, write_models
from scvae_core.runs import collect, evaluated_seeds
from scvae_core.zoo import DEEP, MODELS, SKIPVAE, parameter_count

pytestmark = pytest.mark.unit

SEEDS = (0, 1, 2)
COMMITTED = REPO_ROOT / "results"


def _iv(values, se=0.01):
    return verdicts.interval([Est(v, se) for v in values])


class TestTwoSidedRule:
    """sign 0 (ours only): a difference claimed in either direction."""

    def test_a_clear_difference_either_way_holds(self):
        assert verdicts.verdict(_iv([-5.0, -5.1, -4.9]), 0, 0.0, 1.0) == HOLDS
        assert verdicts.verdict(_iv([5.0, 5.1, 4.9]), 0, 0.0, 1.0) == HOLDS
        # the same interval under a one-sided claim the other way is a contradiction, not a hold
        assert verdicts.verdict(_iv([-5.0, -5.1, -4.9]), +1, 0.0, 1.0) == verdicts.CONTRADICTED

    def test_no_difference_and_a_straddle(self):
        assert verdicts.verdict(_iv([0.1, -0.1, 0.0]), 0, 0.0, 1.0) == NO_EFFECT
        assert verdicts.verdict(_iv([0.5, 2.0, 3.5]), 0, 0.0, 1.0) == INCONCLUSIVE
        assert verdicts.verdict(_iv([5.0], se=0.1), 0, 0.0, 1.0) == NOT_JUDGED  # one seed, nothing borrowed

    def test_every_kind_of_our_claims_has_a_threshold(self):
        assert {e.kind for c in claims.OUR_CLAIMS for e in c.effects} <= set(verdicts.THRESHOLDS)
        assert all(c.ours and c.stage == "skipvae" for c in claims.OUR_CLAIMS)
        assert not any(c.ours for c in claims.CLAIMS)  # the paper's claims stay the paper's


def _skipvae_tree(root, preset="long", seeds=SEEDS, suffix="", epoch=100, mi=True):
    """VAE(p++) and VAE(11L) collapsed (MI ~0), their Skip-VAE versions not; SCVAE 5 nats better
    than Skip-VAE(11L), with 2 nats more MI and 0.05 more accuracy."""
    runs = {"vae-1l": (90, 0.0, 0.95), "vae-p++": (88, 0.1, 0.60), "vae-11l": (100, 0.0, 0.11),
            "vae-q++": (101, 0.0, 0.11), "scvae": (85, 6.0, 0.95), "scvae-l": (86, 5.0, 0.94),
            "skipvae-p++": (87, 5.0, 0.90), "skipvae-11l": (90, 4.0, 0.90), "scvae+zskip": (84, 6.5, 0.95)}
    for model, (nll, info, acc) in runs.items():
        for seed in seeds:
            jitter = 0.05 * seed
            write_eval(root, preset, model + suffix, seed, nll=nll + jitter, acc=acc, acc_std=0.002,
                       mi=(info + jitter, 0.02) if mi else None, epoch=epoch, prop3_layers=[])


class TestOurClaims:
    def test_without_skipvae_results_no_claim_is_judged(self, tmp_path):
        _skipvae_tree(tmp_path)
        for model in SKIPVAE:  # the Table 1 models stay; the stage skipvae has nothing
            shutil.rmtree(tmp_path / "long" / model)
        evidence = claims.our_evidence(tmp_path, "long")
        assert list(evidence) == [c.id for c in claims.OUR_CLAIMS]
        assert all(ev["status"] == NOT_MEASURED for ev in evidence.values())
        table = build_table("our-claims", tmp_path)
        assert [row[2] for row in table.rows] == [beyond.NO_RESULTS] * len(claims.OUR_CLAIMS)
        assert all(cell.split(":", 1)[0] not in VERDICTS for row in table.rows for cell in row)

    def test_the_committed_results_show_no_verdict_before_skipvae_is_run(self):
        table = build_table("our-claims", COMMITTED)
        committed = [p for p in beyond.OUR_BUDGETS
                     for m in get_preset(p).stages.get("skipvae", ()) if evaluated_seeds(COMMITTED, p, m)]
        if committed:  # once runs are committed, each row names its preset and carries the rule's verdict
            assert all(row[2].split(":", 1)[0] in VERDICTS for row in table.rows)
        else:
            assert [row[2] for row in table.rows] == [beyond.NO_RESULTS] * len(claims.OUR_CLAIMS)

    def test_a_claim_with_some_runs_reads_not_measured_not_not_run(self, tmp_path):
        # One seed of Skip-VAE(11L) only, as when the first run of the queue lands: the claim that
        # also needs Skip-VAE(p++) is 'not measured', the other 'not judged'; neither is 'not run'.
        _skipvae_tree(tmp_path)
        for model in SKIPVAE:
            for seed in SEEDS if model != "skipvae-11l" else SEEDS[1:]:
                shutil.rmtree(tmp_path / "long" / model / f"seed{seed}")
        rows = {row[0]: row for row in build_table("our-claims", tmp_path).rows}
        assert set(rows) == {f"{c.id} [long]" for c in claims.OUR_CLAIMS}
        assert rows["zskip-no-collapse [long]"][2].startswith(f"{NOT_MEASURED}: MI 1 not measured, MI 2 not judged")
        assert rows["skips-vs-zskips [long]"][2].startswith(f"{NOT_JUDGED}: ")
        line = beyond.our_claims_summary(tmp_path)
        assert line == ("Our claims on Skip-VAE (not the paper's): z-skips prevent the collapse of a deep plain "
                        "decoder — long, n = 1: not measured (MI 1 not measured, MI 2 not judged, accuracy not "
                        "judged); SCVAE's skips and z-skips differ in NLL, MI and accuracy — long, n = 1: not judged "
                        "(every effect)."), line

    def test_the_front_page_summary_names_our_claims_run_or_not(self, tmp_path):
        from scvae_core.book import report
        assert beyond.our_claims_summary(tmp_path) == ("Our claims on Skip-VAE (not the paper's): not run yet "
                                                       "(no skipvae results).")
        _skipvae_tree(tmp_path)
        line = next(x for x in report.summary_results(tmp_path) if x.startswith("Our claims"))
        assert "z-skips prevent the collapse of a deep plain decoder — long, n = 3: holds (every effect)" in line
        assert "differ in NLL, MI and accuracy — long, n = 3: holds (every effect)." in line

    def test_three_seeds_are_judged(self, tmp_path):
        _skipvae_tree(tmp_path)
        evidence = claims.our_evidence(tmp_path, "long")
        collapse, differ = evidence["zskip-no-collapse"], evidence["skips-vs-zskips"]
        assert collapse["status"] == HOLDS and collapse["preset"] == "long" and collapse["epoch"] == 100
        assert collapse["effects"][0]["estimate"] == pytest.approx(4.9)  # MI(Skip-VAE(p++)) - MI(VAE(p++))
        assert collapse["effects"][0]["ses"] == pytest.approx([math.sqrt(2) * 0.02] * 3)  # in quadrature
        assert [e["estimate"] for e in differ["effects"]] == pytest.approx([-5.0, 2.0, 0.05])
        assert differ["status"] == HOLDS and differ["effects"][0]["claimed"] == "≠ 0"
        row = next(r for r in build_table("our-claims", tmp_path).rows if r[0] == "skips-vs-zskips [long]")
        assert row[2].startswith("holds: NLL holds, MI holds, accuracy holds")

    def test_evaluations_without_diagnostics_leave_mi_unmeasured(self, tmp_path):
        _skipvae_tree(tmp_path, mi=False)
        collapse = claims.our_evidence(tmp_path, "long")["zskip-no-collapse"]
        assert [e["status"] for e in collapse["effects"]] == [NOT_MEASURED, NOT_MEASURED, HOLDS]
        assert collapse["status"] == NOT_MEASURED
        # the caption names the runs that lack I(x; z): the MI effects' models only, with their seeds
        caption = build_table("our-claims", tmp_path).caption
        assert ("At long epoch 100, SCVAE (seeds 0, 1, 2), Skip-VAE(11L) (seeds 0, 1, 2), Skip-VAE(p++) (seeds 0, 1, "
                "2), VAE(11L) (seeds 0, 1, 2), VAE(p++) (seeds 0, 1, 2) were evaluated before I(x; z) was recorded")\
            in caption, caption
        _skipvae_tree(tmp_path)  # every run with its MI: nothing to say
        assert "before I(x; z) was recorded" not in build_table("our-claims", tmp_path).caption

    def test_one_seed_is_not_judged_unless_three_seeds_lend_their_spread(self, tmp_path):
        _skipvae_tree(tmp_path, "converged", seeds=(0,), suffix="-authors", epoch=None)
        lone = claims.our_evidence(tmp_path, "converged")
        assert {ev["status"] for ev in lone.values()} == {NOT_JUDGED}
        # the -authors versions are compared with the -authors Table 1 models of the same preset
        assert lone["zskip-no-collapse"]["effects"][0]["values"] == pytest.approx([4.9])
        row = next(r for r in build_table("our-claims", tmp_path).rows if r[0].endswith("[converged]"))
        assert row[2].startswith("not judged")
        _skipvae_tree(tmp_path)  # three seeds at long: their spread is borrowed
        lent = claims.our_evidence(tmp_path, "converged")["zskip-no-collapse"]["effects"][0]
        assert "borrowed from our protocol, preset long epoch 100 (n = 3)" in lent["method"]
        assert lent["status"] == HOLDS



class TestModelSizes:
    """results/models/models.json (`scvae models --write`) and the book's table of the models' sizes."""

    def test_the_committed_file_is_todays_zoo(self):
        # Each count rebuilt from the model itself: a change to a layer or to the zoo that is not
        # followed by `scvae models --write` fails here (and the book refuses the stale file).
        recorded = read_models(COMMITTED)
        assert {name: entry["parameters"] for name, entry in recorded.items()} == {
            name: parameter_count(name) for name in MODELS}

    def test_z_skips_cost_one_map_of_z_per_decoder_layer_after_the_first(self, tmp_path, capsys):
        cli.main(["models", "--write", "--results-dir", str(tmp_path)])  # what a reader types
        assert capsys.readouterr().out.endswith(f"wrote {models_path(tmp_path)}\n")
        table = build_table("models", tmp_path)
        rows = {row[0]: row for row in table.rows}
        zskips = (DEEP - 1) * 500 * 50  # bias-free 50 -> 500 maps, derived here, not read from the code
        scvae = int(rows["SCVAE"][3].replace(",", ""))
        assert rows["SCVAE"][4] == "(the reference)" and rows["VAE(11L)"][4] == "+0 (+0.0%)"
        assert rows["Skip-VAE(11L)"][3] == rows["SCVAE+z-skips"][3] == f"{scvae + zskips:,}"
        assert rows["Skip-VAE(11L)"][4] == f"+{zskips:,} ({zskips / scvae:+.1%})"
        assert rows["Skip-VAE(11L)"][2] == "11 × 500, plain, z into every layer"
        assert f"the z-skips add {zskips:,} parameters" in table.caption and "SCVAE's skips add 0." in table.caption

    def test_a_missing_stale_or_edited_file_is_refused_with_its_fix(self, tmp_path):
        assert all("scvae models --write" in row[3] for row in build_table("models", tmp_path).rows)
        path = write_models(tmp_path)
        doc = json.loads(path.read_text())
        edited = copy.deepcopy(doc)
        edited["models"]["scvae"]["parameters"] = 0
        path.write_text(json.dumps(edited))
        with pytest.raises(ResultError, match=r"'scvae' is recorded without .* To fix: run `scvae models --write`"):
            build_table("models", tmp_path)
        stale = copy.deepcopy(doc)
        del stale["models"]["skipvae-11l"]
        path.write_text(json.dumps(stale))
        with pytest.raises(ResultError, match=r"not today's zoo .* To fix: run `scvae models --write`"):
            read_models(tmp_path)
        changed = copy.deepcopy(doc)
        changed["models"]["vae-1l"]["config"]["hidden"] = 400
        path.write_text(json.dumps(changed))
        with pytest.raises(ResultError, match="'vae-1l' is recorded without today's configuration"):
            read_models(tmp_path)

def _baselines(root, size=10000, pixels=0.92, pca=0.96, linear=0.87):
    accs = {name: {"mean": v, "std": 0.005, "folds": [v] * 5}
            for name, v in (("svm_pixels", pixels), ("svm_pca", pca), ("linear_pixels", linear))}
    write_json(baselines_path(root), "baselines", {
        "protocol": "fabricated", "size": size, "folds": 5, "split_seed": 0, "pca_components": 50,
        "pca_fitted_on": "the 50,000 training images", "accuracies": accs,
        "provenance": {"note": "fabricated"}, "wall_time_s": 1.0})


class TestBaselines:
    def test_registered(self):
        assert {"baselines", "our-claims", "models"} <= set(TABLES) and "baselines" in TEXTS

    def test_table_reads_the_models_against_the_pixel_svm(self, tmp_path):
        _baselines(tmp_path)
        for seed in SEEDS:
            write_eval(tmp_path, "cpu", "vae-1l", seed, acc=0.94 + 0.01 * seed, linear_probe=0.90)
            write_eval(tmp_path, "cpu", "scvae", seed, acc=0.90)  # evaluated before the linear probe
        table = build_table("baselines", tmp_path, "cpu")
        rows = {(r[0], r[1]): r for r in table.rows}
        pixel = rows[("raw pixels (784, binary)", "SVM, the paper's protocol")]
        assert pixel[2] == "0.9200 ± 0.0050 over 5 folds" and pixel[3] == "10,000" and pixel[4] == "(the reference)"
        assert rows[("50 principal components of the pixels", "SVM, the paper's protocol")][4] == "+0.0400"
        svm = rows[("VAE(1L): latent means (50)", "SVM, the paper's protocol")]
        assert svm[2] == "0.9500 ± 0.0100 (n=3)" and svm[4] == "+0.0300"
        assert rows[("VAE(1L): latent means (50)", "logistic regression (linear probe)")][4] == "-0.0200"
        probe = rows[("SCVAE: latent means (50)", "logistic regression (linear probe)")]
        assert probe[2] == beyond.NOT_RECORDED and probe[4] == ""
        assert rows[("VAE(11L): latent means (50)", "SVM, the paper's protocol")][2] == "not run"
        # a run evaluated again (scvae compare --adopt) brings its seed's probe: shown with its n
        write_eval(tmp_path, "cpu", "scvae", 0, acc=0.90, linear_probe=0.85)
        rows = {(r[0], r[1]): r for r in build_table("baselines", tmp_path, "cpu").rows}
        probe = rows[("SCVAE: latent means (50)", "logistic regression (linear probe)")]
        assert probe[2] == f"0.8500 (n=1); seeds 1, 2: {beyond.NOT_RECORDED}" and probe[4] == "-0.0700"
        assert table.preset == "cpu" and "results/baselines/baselines.json" in table.caption
        text = build_text("baselines", tmp_path, "cpu").markdown
        assert "raw pixels (0.9200)" in text and "50 principal components of the pixels (0.9600)" in text
        assert "raw pixels for 1 (VAE(1L)) and the SVM on 50 principal components for none" in text

    def test_without_baselines_file_the_table_says_how_to_make_it(self, tmp_path):
        write_eval(tmp_path, "cpu", "vae-1l", 0)
        table = build_table("baselines", tmp_path, "cpu")
        assert [r[2] for r in table.rows[:3]] == ["not run"] * 3 and "scvae baselines" in table.caption
        assert all(r[4] == "" for r in table.rows)  # nothing to read against
        assert "not been computed" in build_text("baselines", tmp_path, "cpu").markdown

    def test_a_damaged_baselines_file_is_refused(self, tmp_path):
        _baselines(tmp_path)
        path = baselines_path(tmp_path)
        damaged = path.read_text().replace('"folds": [\n    0.92', '"folds": [\n    1.5')
        assert damaged != path.read_text()
        path.write_text(damaged)
        with pytest.raises(ResultError, match="svm_pixels"):
            build_table("baselines", tmp_path, "cpu")

    def test_committed_baselines_are_shown(self):
        table = build_table("baselines", COMMITTED)
        assert all(r[2].endswith("over 5 folds") for r in table.rows[:3])  # results/baselines/baselines.json


class TestRateDistortion:
    def test_one_point_per_seed_from_every_evaluation(self, tmp_path):
        for seed in SEEDS:
            write_eval(tmp_path, "cpu", "vae-1l", seed, kl=20.0 + seed, elbo=-95.0, mi=(3.0, 0.1))
            write_eval(tmp_path, "cpu", "scvae", seed, kl=0.0, elbo=-95.0)  # evaluated before the diagnostics
        fig = rate_distortion(collect(tmp_path, "cpu", ["vae-1l", "scvae"]))
        ax = fig.axes[0]
        first, second = (c.get_offsets() for c in ax.collections)
        assert [tuple(p) for p in first] == [(20.0, 75.0), (21.0, 74.0), (22.0, 73.0)]  # R = KL, D = -rec
        assert [tuple(p) for p in second] == [(0.0, 95.0)] * 3  # a collapsed posterior: zero rate
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["VAE(1L)", "SCVAE"]
        assert "preset cpu, seeds 0, 1, 2" in fig._suptitle.get_text()

    def test_no_invented_points_without_runs(self, tmp_path):
        ax = rate_distortion(collect(tmp_path, "cpu", ["vae-1l"])).axes[0]
        assert not ax.collections and "no evaluated runs" in " ".join(t.get_text() for t in ax.texts)


@pytest.mark.unit
def test_the_diagnostics_table_shows_every_run_that_recorded_them_and_says_so_where_none_did(tmp_path):
    write_eval(tmp_path, "long", "vae-1l", 0, epoch=100)  # evaluated before the diagnostics existed
    (row,) = beyond.diagnostics_table(tmp_path).rows
    assert row[2] == beyond.NOT_DIAGNOSED
    for seed, mi in ((0, 4.0), (1, 5.0)):
        write_eval(tmp_path, "converged", "vae-1l-authors", seed, kl=20.0, mi=(mi, 0.01))
    write_eval(tmp_path, "long", "vae-11l", 0, epoch=100, kl=0.0, mi=(0.0, 0.001), active_units=0, ignores_z=True)
    table = beyond.diagnostics_table(tmp_path)
    rows = {(r[0].split(" [")[0], r[1]): r for r in table.rows}
    assert set(rows) == {("VAE(1L)", "converged"), ("VAE(11L)", "long")}  # the older long run is not shown
    converged = rows[("VAE(1L)", "converged")]
    assert converged[2] == "4.500 ± 0.707 (n=2) (log N = 4.16)" and converged[3] == "30.0 ± 0.0 (n=2)"
    assert converged[4] == "2.00 ± 0.00 (n=2) / 0.000 ± 0.000 (n=2)"  # ten units carry KL 2, forty none
    assert rows[("VAE(11L)", "long")][2].startswith("0.000 (n=1)") and rows[("VAE(11L)", "long")][3] == "0.0 (n=1)"
    assert converged[6] == "0 of 2 seeds" and rows[("VAE(11L)", "long")][6] == "1 of 1 seed"
    assert "less than 0.01 per pixel" in table.caption  # the tolerance the runs recorded
    assert [r[1] for r in table.rows] == ["converged", "long"]  # most trustworthy preset first
    assert "diagnostics" in TABLES
