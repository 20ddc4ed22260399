"""reproduce(): resumes an interrupted stage, plans, writes stage summaries (and keeps them, the
committed ones included, in step with their runs); `scvae status`.
Most tests replace train_run/evaluate_run by fakes that keep their contract (skip what is
complete) and run them in this process (``scheduler="inline"``); the last one reads the
session's real smoke runs of every stage (made by `scvae reproduce` through the default local
cluster of worker processes) and reruns Table 1 on a copy."""
from __future__ import annotations

import shutil

import pytest
from fake_results import write_eval, write_figures, write_train

from scvae_core import cli, evaluate, train
from scvae_core.runner.executor import INLINE
from scvae_core.presets import DEFAULT_DATASET, TABLE1, get_preset
from scvae_core.runner.reproduce import (expand_stages, plan, refresh_stage_summaries, reproduce, run_seconds,
                                         stage_path, stage_summary, stage_times, stale_keys)
from scvae_core.results import DEFAULT_RESULTS_DIR, RunPaths, read_json
from scvae_core.book.tables import table1
from scvae_core.zoo import UnknownName


class FakeRuns:
    """train_run/evaluate_run stand-ins: they skip complete work, as the real ones do, record
    the work they did, and can be told to be interrupted while evaluating a given run."""

    def __init__(self):
        self.work: list[tuple[str, str, int]] = []
        self.interrupt_at: tuple[str, int] | None = None

    def train_run(self, model, preset, seed, device="auto", results_dir=None, data_dir=None, progress=True,
                  budget_s=None, dataset=DEFAULT_DATASET):
        paths = RunPaths(results_dir, preset, model, seed, dataset)
        if not paths.train_json.exists():
            self.work.append(("train", model, seed))
            write_train(results_dir, preset, model, seed, wall_time_s=10.0, dataset=dataset)
        return read_json(paths.train_json, "train")

    def evaluate_run(self, model, preset, seed, device="auto", results_dir=None, data_dir=None, progress=True,
                     dataset=DEFAULT_DATASET):
        paths = RunPaths(results_dir, preset, model, seed, dataset)
        if (model, seed) == self.interrupt_at:
            self.interrupt_at = None
            raise KeyboardInterrupt
        if not paths.eval_json.exists():
            self.work.append(("evaluate", model, seed))
            write_figures(results_dir, preset, model, seed, dataset=dataset)
            write_eval(results_dir, preset, model, seed, wall_time_s=1.0, dataset=dataset)
        return read_json(paths.eval_json, "eval")


@pytest.fixture
def fake(monkeypatch) -> FakeRuns:
    runs = FakeRuns()
    monkeypatch.setattr(train, "train_run", runs.train_run)
    monkeypatch.setattr(evaluate, "evaluate_run", runs.evaluate_run)
    return runs


@pytest.mark.unit
def test_interrupted_stage_resumes_with_only_the_missing_runs(fake, tmp_path):
    fake.interrupt_at = (TABLE1[3], 0)  # trained, then killed while evaluating
    with pytest.raises(KeyboardInterrupt):
        reproduce(["table1"], "smoke", device="cpu", results_dir=tmp_path, progress=False, scheduler=INLINE)
    assert [r.status for r in plan(["table1"], "smoke",
                                   results_dir=tmp_path)] == ["done"] * 3 + ["partial"] + ["todo"] * 2
    interrupted = read_json(stage_path(tmp_path, "smoke", "table1"), "stage")
    assert (interrupted["completed"], interrupted["complete"]) == (3, False)

    fake.work.clear()
    summary = reproduce(["table1"], "smoke", device="cpu", results_dir=tmp_path, progress=False,
                        scheduler=INLINE)["table1"]
    assert fake.work == [("evaluate", TABLE1[3], 0)] + [(w, m, 0) for m in TABLE1[4:] for w in ("train", "evaluate")]
    assert [r["action"] for r in summary["last_invocation"]["runs"]] == ["skipped"] * 3 + ["done"] * 3
    assert (summary["completed"], summary["complete"]) == (6, True)


@pytest.mark.unit
def test_a_stage_on_another_data_set_runs_and_is_summarised_in_its_own_folder(fake, tmp_path):
    write_figures(tmp_path, "smoke", TABLE1[0], 0)  # an MNIST run: neither done nor disturbed on Fashion
    write_eval(tmp_path, "smoke", TABLE1[0], 0)
    summary = reproduce(["table1"], "smoke", device="cpu", results_dir=tmp_path, progress=False, scheduler=INLINE,
                        dataset="fashion-static")["table1"]
    assert fake.work == [(w, m, 0) for m in TABLE1 for w in ("train", "evaluate")]
    assert (summary["completed"], summary["complete"]) == (len(TABLE1), True)
    assert stage_path(tmp_path, "smoke", "table1", "fashion-static") == tmp_path / "fashion-static/smoke/stage-table1.json"
    assert read_json(stage_path(tmp_path, "smoke", "table1", "fashion-static"), "stage")["completed"] == len(TABLE1)
    assert not stage_path(tmp_path, "smoke", "table1").exists()
    assert [r.status for r in plan(["table1"], "smoke", results_dir=tmp_path, dataset="fashion-static")] == \
        ["done"] * len(TABLE1)
    assert [r.status for r in plan(["table1"], "smoke", results_dir=tmp_path)] == ["done"] + ["todo"] * 5
    assert "smoke     table1       6/6" in stage_times(tmp_path, "fashion-static")
    assert {p.parent.name for p in (tmp_path / "fashion-static").rglob("eval.json")} == {"seed0"}


@pytest.mark.unit
def test_plan_reports_done_partial_todo(tmp_path):
    write_figures(tmp_path, "smoke", "vae-1l", 0)
    write_eval(tmp_path, "smoke", "vae-1l", 0)
    write_train(tmp_path, "smoke", "vae-11l", 0)  # trained, not evaluated
    RunPaths(tmp_path, "smoke", "vae-q++", 0).last_ckpt.parent.mkdir(parents=True)
    RunPaths(tmp_path, "smoke", "vae-q++", 0).last_ckpt.write_bytes(b"checkpoint")
    write_eval(tmp_path, "smoke", "vae-p++", 0).write_text("{ corrupt")  # evaluate_run will redo it
    statuses = {(r.model, r.seed): r.status for r in plan(["table1"], "smoke", seeds=[0, 1], results_dir=tmp_path)}
    assert statuses[("vae-1l", 0)] == "done"
    assert statuses[("vae-11l", 0)] == statuses[("vae-q++", 0)] == "partial"
    assert statuses[("vae-p++", 0)] == "invalid"
    assert statuses[("vae-1l", 1)] == statuses[("scvae", 0)] == "todo"
    assert len(statuses) == 2 * len(TABLE1)


@pytest.mark.unit
def test_stage_json_summarises_runs_time_and_machine(fake, tmp_path):
    summary = reproduce(["table1"], "smoke", seeds=[0, 1], device="cpu", results_dir=tmp_path, progress=False,
                        scheduler=INLINE)["table1"]
    doc = read_json(stage_path(tmp_path, "smoke", "table1"), "stage")
    assert doc["models"] == list(TABLE1) and doc["seeds"] == [0, 1]
    assert len(doc["runs"]) == 12 and all(r["status"] == "done" for r in doc["runs"])
    assert doc["runs_wall_time_s"] == pytest.approx(12 * (10.0 + 1.0))
    invocation = doc["last_invocation"]
    assert invocation["wall_time_s"] >= 0 and invocation["seeds"] == [0, 1]
    assert invocation["provenance"]["device"] == "cpu" and invocation["provenance"]["device_name"]
    assert summary["completed"] == 12
    line = stage_times(tmp_path)
    assert line.startswith("smoke     table1      12/12  runs") and f"{12 * 11 / 60:.1f} min" in line
    assert "no finished runs" in stage_times(tmp_path / "empty")


@pytest.mark.unit
def test_stage_times_read_the_run_files_of_runs_trained_one_at_a_time(tmp_path):
    # smoke-long evaluates at epochs 2 and 4: both evaluations' wall times count; no stage summary exists
    for model in ("vae-1l", "scvae"):
        write_train(tmp_path, "smoke-long", model, 0, epochs=4, wall_time_s=60.0)
        for epoch in (2, 4):
            write_eval(tmp_path, "smoke-long", model, 0, epoch=epoch, wall_time_s=30.0)
            write_figures(tmp_path, "smoke-long", model, 0, epoch=epoch)
    write_train(tmp_path, "smoke-long", "scvae", 1)  # a seed beyond the preset's, trained, not evaluated: not done
    assert not list(tmp_path.glob("*/stage-*.json"))
    assert run_seconds(tmp_path, "smoke-long", "vae-1l", 0) == (60.0, 60.0)
    line = stage_times(tmp_path)
    assert line.startswith("smoke-long table1       2/3   runs") and f"{2 * 120 / 60:.1f} min" in line, line
    write_train(tmp_path, "smoke-long", "scvae", 0, epochs=4, wall_time_s=600.0, device_name="Other CPU")
    line = stage_times(tmp_path)  # two machines: each one's runs and minutes
    assert "(1 run, 2.0 min on " in line and "1 run, 11.0 min on Other CPU)" in line, line
    assert f"{(120 + 660) / 60:7.1f} min" in line, line


@pytest.mark.unit
def test_every_committed_stage_summary_matches_the_runs_beside_it():
    """A stage summary says what its runs on disk amount to; one left behind by runs committed
    later (trained one at a time, or in another checkout) would contradict them."""
    files = sorted(DEFAULT_RESULTS_DIR.glob("*/stage-*.json"))
    assert files, f"no committed stage summaries under {DEFAULT_RESULTS_DIR}"
    stale = {}
    for path in files:
        doc = read_json(path, "stage", ("stage", "preset"))
        assert path == stage_path(DEFAULT_RESULTS_DIR, doc["preset"], doc["stage"])
        if keys := stale_keys(doc, stage_summary(DEFAULT_RESULTS_DIR, doc["preset"], doc["stage"])):
            stale[str(path.relative_to(DEFAULT_RESULTS_DIR))] = keys
    assert not stale, (f"stage summaries the runs no longer bear out (their stale fields): {stale}. To fix: "
                       "scvae status all --preset PRESET --write-summaries, and commit them")


@pytest.mark.unit
def test_runs_made_one_at_a_time_refresh_the_stage_summary_and_keep_its_invocation(fake, tmp_path, capsys):
    reproduce(["table1"], "smoke", device="cpu", results_dir=tmp_path, progress=False, scheduler=INLINE)
    path = stage_path(tmp_path, "smoke", "table1")
    first = read_json(path, "stage")
    assert (first["seeds"], first["completed"], first["complete"]) == ([0], 6, True)
    assert [r["action"] for r in first["last_invocation"]["runs"]] == ["done"] * 6
    before = path.read_bytes()
    assert refresh_stage_summaries(tmp_path, "smoke") == [] and path.read_bytes() == before  # up to date: untouched

    # `scvae train` and `scvae evaluate` of a seed beyond the preset's: the summary follows the run
    args = ["--preset", "smoke", "--seed", "1", "--results-dir", str(tmp_path)]
    assert cli.main(["train", "scvae", *args]) == 0
    doc = read_json(path, "stage")
    assert (doc["seeds"], doc["completed"], doc["total"], doc["complete"]) == ([0, 1], 6, 7, False)
    assert cli.main(["evaluate", "scvae", *args]) == 0
    doc = read_json(path, "stage")
    assert (doc["completed"], doc["total"], doc["complete"]) == (7, 7, True)
    assert doc["runs_wall_time_s"] == pytest.approx(7 * (10.0 + 1.0))
    assert doc["last_invocation"] == first["last_invocation"]  # what the reproduce invocation did, kept
    assert stale_keys(doc, stage_summary(tmp_path, "smoke", "table1")) == []

    # runs arriving from elsewhere (copied, merged): --write-summaries catches the summary up
    write_train(tmp_path, "smoke", "vae-1l", 2)
    assert stale_keys(read_json(path, "stage"), stage_summary(tmp_path, "smoke", "table1")) != []
    assert cli.main(["status", "table1", "--preset", "smoke", "--results-dir", str(tmp_path), "--write-summaries"]) == 0
    assert f"rewrote {path}" in capsys.readouterr().out
    doc = read_json(path, "stage")
    assert (doc["seeds"], doc["total"], doc["runs"][1]) == ([0, 1, 2], 8, {
        "model": "vae-1l", "seed": 2, "status": "partial", "train_wall_time_s": 5.0, "eval_wall_time_s": None})


@pytest.mark.unit
def test_all_expands_to_every_stage_once():
    assert expand_stages(["all"], "smoke") == ["table1", "depth", "table2", "activation", "init", "authors",
                                               "skipvae"]
    assert expand_stages(["table2", "all"], "smoke") == ["table2", "table1", "depth", "activation", "init", "authors",
                                                         "skipvae"]


@pytest.mark.unit
def test_seeds_default_to_the_presets_per_stage(tmp_path):
    preset = get_preset("cpu")
    runs = plan(["table1", "depth"], "cpu", results_dir=tmp_path)
    assert {r.seed for r in runs if r.stage == "table1"} == set(preset.seeds["table1"])
    assert {r.seed for r in runs if r.stage == "depth"} == set(preset.seeds["depth"])
    assert len(runs) == sum(len(preset.stages[s]) * len(preset.seeds[s]) for s in ("table1", "depth"))


@pytest.mark.unit
def test_unknown_stage_lists_the_valid_ones(fake, tmp_path):
    with pytest.raises(UnknownName, match="table1, depth, table2, activation, init, authors, skipvae, all"):
        reproduce(["table3"], "smoke", results_dir=tmp_path, progress=False, scheduler=INLINE)
    assert fake.work == []


@pytest.mark.unit
def test_status_command_prints_the_plan(tmp_path, capsys):
    write_figures(tmp_path, "smoke", "scvae", 0)
    write_eval(tmp_path, "smoke", "scvae", 0)
    assert cli.main(["status", "table1", "--preset", "smoke", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "scvae" in out and "done" in out and "6 runs: 1 done, 0 invalid, 0 partial, 5 todo" in out
    assert cli.main(["status", "nope", "--results-dir", str(tmp_path)]) == 2
    assert "valid stages" in capsys.readouterr().err
    # The option's old name still works, for scripts written against it.
    assert cli.main(["status", "table1", "--preset", "smoke", "--out", str(tmp_path)]) == 0
    assert "6 runs: 1 done" in capsys.readouterr().out


@pytest.mark.smoke
def test_smoke_stages_end_to_end_and_rerun_skips(smoke_results, tmp_path, capsys):
    # The session's `scvae reproduce all --preset smoke` did every run of every stage.
    for stage in expand_stages(["all"], "smoke"):
        doc = read_json(stage_path(smoke_results, "smoke", stage), "stage")
        assert doc["complete"] and all(r["action"] == "done" for r in doc["last_invocation"]["runs"]), stage
    assert all(r.status == "done" for r in plan(["all"], "smoke", results_dir=smoke_results))
    rows = table1(smoke_results, "smoke").rows
    assert all("(n=1)" in row[1] for row in rows)  # every model has its NLL

    for model in TABLE1:  # a rerun writes its stage summary: on a copy
        run = RunPaths(smoke_results, "smoke", model, 0).dir
        shutil.copytree(run, tmp_path / run.relative_to(smoke_results))
    again = reproduce(["table1"], "smoke", device="cpu", results_dir=tmp_path, progress=False)
    assert all(r["action"] == "skipped" for r in again["table1"]["last_invocation"]["runs"])
    assert "skipped" in capsys.readouterr().out


@pytest.mark.unit
def test_status_says_how_far_a_partial_run_is_and_who_runs_it(tmp_path, capsys):
    import os

    import torch

    from scvae_core.lock import run_lock

    paths = RunPaths(tmp_path, "smoke", "vae-1l", 0)
    paths.last_ckpt.parent.mkdir(parents=True)
    torch.save({"progress": {"epoch": 1}}, paths.last_ckpt)
    (run,) = [r for r in plan(["table1"], "smoke", results_dir=tmp_path) if r.model == "vae-1l"]
    assert (run.status, run.progress) == ("partial", f"epoch 1 of {get_preset('smoke').epochs}")
    with run_lock(paths.dir):  # a writer at work: status names it
        assert cli.main(["status", "table1", "--preset", "smoke", "--results-dir", str(tmp_path)]) == 0
    assert f"partial (epoch 1 of 2; running now: PID {os.getpid()} on " in capsys.readouterr().out
    paths.last_ckpt.write_bytes(b"not a checkpoint")
    (run,) = [r for r in plan(["table1"], "smoke", results_dir=tmp_path) if r.model == "vae-1l"]
    assert run.progress == "an unreadable checkpoint"
    assert all(r.progress is None for r in plan(["table1"], "smoke", results_dir=tmp_path) if r.status == "todo")
