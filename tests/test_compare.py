"""Training a committed run a second time and comparing (scvae_core/rerun.py, `scvae compare`,
book/reruns.py): equal where equal, the first differing epoch and metric where not, the record and
the adoption atomic and checked, the book's table and caption built from the record. Fabricated
result trees: nothing here depends on the processor, the thread count or the host."""
from __future__ import annotations

import json

import pytest
from fake_results import write_eval, write_figures, write_train

from scvae_core import cli, rerun
from scvae_core.book.reruns import reruns_summary, shown_training
from scvae_core.book.report import summary_results
from scvae_core.book.tables import build_table
from scvae_core.results import REPO_ROOT, ResultError, RunPaths, write_json

pytestmark = pytest.mark.unit

RUN = ("long", "vae-p++", 1)  # preset, model, seed
COMMITTED = REPO_ROOT / "results"


def _train_twice(tmp_path, device_first="AMD EPYC (2 logical cores, torch threads 1)", device_again=None, seed=1):
    """The same fabricated run in first/ and again/: returns both RunPaths."""
    paths = []
    run = (*RUN[:2], seed)
    for name, device in (("first", device_first), ("again", device_again or device_first)):
        root = tmp_path / name
        write_train(root, *run, epochs=5, device_name=device)
        for epoch in (10, 30, 100):
            write_eval(root, *run, epoch=epoch, nll=95.0 + epoch / 100)
            write_figures(root, *run, epoch=epoch)
        paths.append(RunPaths(root, *run))
    return paths


def _edit(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    write_json(path, doc.pop("kind"), {k: v for k, v in doc.items() if k != "schema_version"})


class TestCompareRuns:
    def test_two_equal_trainings_are_bit_for_bit(self, tmp_path):
        entry = rerun.compare_runs(*_train_twice(tmp_path))
        assert entry["epochs"] == [5, 5] and entry["epochs_equal"] == 5 and entry["first_difference"] is None
        assert [e["epoch"] for e in entry["evaluations"]] == [10, 30, 100] and rerun.bitwise(entry)
        assert entry["run"] == "long/vae-p++/seed1"
        assert "bit for bit: every one of 5 epochs equal" in rerun.describe(entry)

    def test_the_wall_time_may_differ(self, tmp_path):
        first, again = _train_twice(tmp_path)
        _edit(again.train_json, lambda d: d["history"][2].update(seconds=99.0))
        assert rerun.bitwise(rerun.compare_runs(first, again))

    def test_the_first_differing_epoch_and_the_largest_difference_are_named(self, tmp_path):
        first, again = _train_twice(tmp_path)

        def drift(doc):
            for h in doc["history"][2:]:
                h["valid_elbo"] += 0.25 * h["epoch"]
        _edit(again.train_json, drift)
        entry = rerun.compare_runs(first, again)
        assert entry["epochs_equal"] == 2 and entry["first_difference"] == 3
        assert entry["largest_valid_elbo_difference"] == pytest.approx(1.25)
        assert not rerun.bitwise(entry)
        assert "2 of 5 epochs equal" in rerun.describe(entry) and "first difference at epoch 3" in rerun.describe(entry)

    def test_a_changed_metric_keeps_both_values(self, tmp_path):
        first, again = _train_twice(tmp_path)
        _edit(again.eval_json_at(100), lambda d: d["metrics"].update(nll=96.5))
        entry = rerun.compare_runs(first, again)
        last = entry["evaluations"][-1]
        assert not last["equal"] and last["metrics"]["nll"] == [96.0, 96.5] and not rerun.bitwise(entry)
        assert all(e["equal"] for e in entry["evaluations"][:-1])
        assert "nll 96.0 -> 96.5" in rerun.describe(entry)

    def test_a_missing_second_training_names_the_command_that_makes_it(self, tmp_path):
        with pytest.raises(ResultError, match=r"scvae train vae-p\+\+ --preset long --seed 1 --results-dir"):
            rerun.run_paths(tmp_path / "nowhere", *RUN)

    def test_two_different_runs_are_refused(self, tmp_path):
        first, _ = _train_twice(tmp_path)
        with pytest.raises(ValueError, match="same model, preset, seed"):
            rerun.compare_runs(first, RunPaths(tmp_path / "again", "long", "vae-p++", 2))


    def test_a_run_is_not_compared_with_itself(self, tmp_path):
        first, _ = _train_twice(tmp_path)
        with pytest.raises(ValueError, match="compared with itself"):
            rerun.compare_runs(first, RunPaths(tmp_path / "x" / ".." / "first", *RUN))


class TestRecord:
    def test_a_run_recorded_twice_is_kept_once_and_runs_are_sorted(self, tmp_path):
        entry = rerun.compare_runs(*_train_twice(tmp_path))
        rerun.record(tmp_path / "first", entry)
        rerun.record(tmp_path / "first", dict(entry, run="cpu/vae-1l/seed0", epochs_equal=4))
        rerun.record(tmp_path / "first", dict(entry, epochs_equal=3))
        kept = rerun.read_reruns(tmp_path / "first")
        assert [e["run"] for e in kept] == ["cpu/vae-1l/seed0", "long/vae-p++/seed1"]
        assert kept[1]["epochs_equal"] == 3

    def test_an_edited_record_is_refused_with_its_fix(self, tmp_path):
        entry = rerun.compare_runs(*_train_twice(tmp_path))
        path = rerun.record(tmp_path / "first", entry)
        _edit(path, lambda d: d["reruns"][0].pop("evaluations"))
        with pytest.raises(ResultError, match="lacks the fields.*scvae compare"):
            rerun.read_reruns(tmp_path / "first")


class TestCommand:
    def test_compare_records_and_adopts_the_second_training(self, tmp_path, capsys):
        first, again = _train_twice(tmp_path)
        _edit(again.eval_json_at(100), lambda d: d["metrics"].update(nll=96.5))
        (first.dir / "checkpoints").mkdir()
        (first.dir / "checkpoints" / "last.pt").write_bytes(b"kept")
        argv = ["compare", "vae-p++", "--preset", "long", "--seed", "1", "--results-dir", str(first.results_dir),
                "--rerun-dir", str(again.results_dir), "--adopt"]
        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        assert "NOT bit for bit" in out and "recorded in" in out and "adopted 7 files" in out
        assert first.eval_json_at(100).read_bytes() == again.eval_json_at(100).read_bytes()
        assert (first.dir / "checkpoints" / "last.pt").read_bytes() == b"kept"
        # the record keeps the first training's number, which the adoption replaced
        assert rerun.read_reruns(first.results_dir)[0]["evaluations"][-1]["metrics"]["nll"] == [96.0, 96.5]

    def test_a_second_training_not_yet_evaluated_is_neither_recorded_nor_adopted(self, tmp_path, capsys):
        first, again = _train_twice(tmp_path)
        again.eval_json_at(100).unlink()
        argv = ["compare", "vae-p++", "--preset", "long", "--seed", "1", "--results-dir", str(first.results_dir),
                "--rerun-dir", str(again.results_dir), "--adopt"]
        before = {f.name: f.read_bytes() for f in first.dir.iterdir() if f.is_file()}
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "not evaluated yet" in err and "scvae evaluate vae-p++ --preset long --seed 1 --results-dir" in err
        assert not rerun.reruns_path(first.results_dir).exists()
        assert {f.name: f.read_bytes() for f in first.dir.iterdir() if f.is_file()} == before

    def test_a_missing_rerun_is_a_clear_error(self, tmp_path, capsys):
        first, _ = _train_twice(tmp_path)
        argv = ["compare", "vae-p++", "--preset", "long", "--seed", "1", "--results-dir", str(first.results_dir),
                "--rerun-dir", str(tmp_path / "none")]
        assert cli.main(argv) == 2
        assert "holds no training of vae-p++ seed 1" in capsys.readouterr().err


class TestRerunsTable:
    def test_nothing_recorded_says_so(self, tmp_path):
        table = build_table("reruns", tmp_path)
        assert "none recorded yet" in table.caption and table.rows[0][3] == "not run"

    def test_caption_counts_what_came_back_and_names_the_processors(self, tmp_path):
        equal = rerun.compare_runs(*_train_twice(tmp_path))
        first, again = _train_twice(tmp_path, device_again="Intel Xeon (2 logical cores, torch threads 1)", seed=2)
        _edit(again.train_json, lambda d: d["history"][4].update(valid_elbo=-50.0))
        for entry in (equal, rerun.compare_runs(first, again)):
            rerun.record(first.results_dir, entry)
        table = build_table("reruns", first.results_dir)
        assert "1 of 2 came back bit for bit, 1 of the 1 trained twice on the same processor model" in table.caption
        assert "differ were trained on two processor models" in table.caption
        assert table.rows[0][3] == "5 of 5" and table.rows[0][4].count("every metric equal") == 3
        assert table.rows[1][3].startswith("4 of 5: from epoch 5")

    def test_the_last_column_says_which_training_the_book_reads(self, tmp_path, capsys):
        first, again = _train_twice(tmp_path)
        _edit(again.train_json, lambda d: d["provenance"].update(written_at="later"))
        argv = ["compare", "vae-p++", "--preset", "long", "--seed", "1", "--results-dir", str(first.results_dir),
                "--rerun-dir", str(again.results_dir)]
        assert cli.main([*argv, "--record"]) == 0
        assert build_table("reruns", first.results_dir).rows[0][-1] == "the first"
        assert cli.main([*argv, "--adopt"]) == 0
        assert build_table("reruns", first.results_dir).rows[0][-1] == "the second"
        _edit(first.train_json, lambda d: d["provenance"].update(written_at="trained a third time"))
        assert build_table("reruns", first.results_dir).rows[0][-1] == "a third training"

    def test_the_committed_record_describes_the_committed_runs(self):
        shown = {e["run"]: shown_training(COMMITTED, e) for e in rerun.read_reruns(COMMITTED)}
        assert shown and all(s in ("the first", "the second") for s in shown.values()), shown

    def test_the_front_page_says_how_many_came_back(self, tmp_path):
        assert reruns_summary(tmp_path) == "Our runs trained a second time: none yet."
        first, again = _train_twice(tmp_path)
        rerun.record(first.results_dir, rerun.compare_runs(first, again))
        _edit(again.train_json, lambda d: d["history"][0].update(train_elbo=0.0))
        rerun.record(first.results_dir, dict(rerun.compare_runs(first, again), run="long/vae-p++/seed2"))
        line = reruns_summary(first.results_dir)
        assert "1 of 2 came back bit for bit, 1 of the 2 trained twice on the same processor model" in line
        assert summary_results(first.results_dir)[-1] == line

    def test_a_difference_on_one_processor_is_called_what_it_is(self, tmp_path):
        first, again = _train_twice(tmp_path)
        _edit(again.eval_json_at(10), lambda d: d["metrics"].update(svm_acc=0.5))
        rerun.record(first.results_dir, rerun.compare_runs(first, again))
        table = build_table("reruns", first.results_dir)
        assert "1 run(s) differ on the same processor model: not reproducible there" in table.caption
        assert "epoch 10: svm_acc differ" in table.rows[0][4]
