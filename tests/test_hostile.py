"""Hostile and careless inputs (issue 17): one class per item of the issue, each test one of
its tries. Smoke-sized: fabricated result files, checkpoints of untrained models, loopback
servers; only the Ctrl-C test trains (a few smoke steps)."""
from __future__ import annotations

import copy
import errno
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_results import write_eval, write_figures, write_train

from scvae_core import cli, data, evaluate, results, train
from scvae_core.book import plots
from scvae_core.runner import reproduce
from scvae_core.evaluate import load_eval
from scvae_core.presets import get_preset
from scvae_core.results import ResultError, RunPaths, processor_name
from scvae_core.train import runtime_settings
from scvae_core.zoo import get_config

MODEL = "vae-1l"


def run_paths(results_dir: Path, preset: str = "cpu", model: str = "scvae", seed: int = 0) -> RunPaths:
    return RunPaths(results_dir, preset, model, seed)


def edit_json(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def untrained_run(results_dir: Path, model: str = MODEL) -> train._Run:
    """A _Run of an untrained model under the smoke preset: enough to write and read checkpoints."""
    torch.manual_seed(0)
    return train._Run(RunPaths(results_dir, "smoke", model, 0), get_config(model), get_preset("smoke"),
                      torch.device("cpu"))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ---------------------------------------------------------------- 1. script injection into the book

PAYLOADS = ('<img src=x onerror="alert(1)">', 'x" onerror="alert(1)', "[x](javascript:alert(1))")
REAL_RUN = RunPaths(results.DEFAULT_RESULTS_DIR, "cpu", "vae-1l", 0)  # a committed result file


def string_fields(node, where=()):
    """The path of every string value of a result file (of lists, the first element's only)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from string_fields(value, (*where, key))
    elif isinstance(node, list) and node:
        yield from string_fields(node[0], (*where, 0))
    elif isinstance(node, str):
        yield where


def plant(doc, where, payload):
    for key in where[:-1]:
        doc = doc[key]
    doc[where[-1]] = payload


def dom(html_or_markdown: str, markdown: bool = False) -> list[tuple[str, tuple[str, ...]]]:
    """Every element of the page a text becomes and its attribute names; Markdown as MyST
    renders it, raw HTML included."""
    from bs4 import BeautifulSoup
    from markdown_it import MarkdownIt

    text = MarkdownIt("commonmark", {"html": True}).render(html_or_markdown) if markdown else html_or_markdown
    return [(t.name, tuple(sorted(t.attrs))) for t in BeautifulSoup(text, "html.parser").find_all(True)]


def book_pages(results_dir: Path) -> dict[str, list]:
    """What the book's pages show of Table 1 results: the HTML tables and the Markdown prose."""
    from scvae_core.book import claims, tables

    return {"table1": dom(tables.table1(results_dir, "cpu").to_html()),
            "collapse": dom(tables.collapse_text(results_dir, "cpu"), markdown=True),
            "convergence": dom(tables.convergence_text(tables.nll_convergence(results_dir, "cpu")), markdown=True),
            "verdicts": dom(claims.verdicts_markdown(claims.verdict_evidence(results_dir, "cpu")), markdown=True)}


class TestScriptInjection:
    pytestmark = pytest.mark.unit

    def test_a_string_planted_in_any_field_is_refused_or_inert(self, tmp_path):
        paths = RunPaths(tmp_path, "cpu", "vae-1l", 0)
        paths.dir.mkdir(parents=True)
        original = json.loads(REAL_RUN.eval_json.read_text())
        paths.eval_json.write_text(json.dumps(original))
        clean = book_pages(tmp_path)
        fields = list(string_fields(original))
        assert len(fields) >= 20 and ("seed",) not in fields  # the seed is an int: planted below as a string
        refused = 0
        for where in [("seed",), *fields]:
            for payload in PAYLOADS:
                doc = json.loads(REAL_RUN.eval_json.read_text())
                plant(doc, where, payload)
                paths.eval_json.write_text(json.dumps(doc))
                try:
                    shown = book_pages(tmp_path)
                except ResultError as e:
                    assert str(paths.eval_json) in str(e) and "To fix" in str(e), (where, e)
                    refused += 1
                    continue
                assert shown == clean, f"{'.'.join(map(str, where))} = {payload!r} changed the page"
        assert refused >= len(fields)  # every name field refuses every payload; prose is never shown

    def test_the_html_table_escapes_every_value_it_is_given(self):
        from scvae_core.book.tables import Table

        bad = PAYLOADS[0]
        table = Table(f'x" onclick="{bad}', bad, (bad, "b"), ((bad, PAYLOADS[1]),), bad, ('0" onclick="1',))
        assert dom(table.to_html()) == dom(Table("x", "c", ("a", "b"), (("1", "2"),), "cpu", (0,)).to_html())

    def test_the_verdicts_markdown_escapes_every_value_from_a_result_file(self, tmp_path):
        from bs4 import BeautifulSoup
        from markdown_it import MarkdownIt

        from scvae_core.book import claims

        for i, model in enumerate(("vae-1l", "vae-q++", "vae-p++", "vae-11l")):  # the degeneration claims
            for seed in (0, 1):
                write_eval(tmp_path, "cpu", model, seed, nll=90.0 + i + seed, acc=0.9 - 0.01 * i)
        evidence = claims.verdict_evidence(tmp_path, "cpu")
        clean = dom(claims.verdicts_markdown(evidence), markdown=True)
        for payload in PAYLOADS:
            hostile = copy.deepcopy(evidence)
            for claim in hostile.values():
                claim["preset"] = payload
                for effect in (e for judged in claim["readings"].values() for e in judged["effects"]):
                    effect["seeds"] = [payload] * len(effect["values"])
            text = claims.verdicts_markdown(hostile)
            assert dom(text, markdown=True) == clean, payload
            shown = BeautifulSoup(MarkdownIt("commonmark", {"html": True}).render(text), "html.parser").get_text()
            assert f"seed {payload}:" in shown and f"preset {payload} " in shown  # shown as it is, inert


# ---------------------------------------------------------------- 2. a result file must agree with where it lies

class TestResultFilesAgreeWithWhereTheyLie:
    pytestmark = pytest.mark.unit

    def test_smoke_eval_copied_into_the_cpu_tree_is_refused(self, tmp_path):
        src = write_eval(tmp_path, "smoke", "scvae", 0, nll=162.15)
        write_figures(tmp_path, "smoke", "scvae", 0)
        assert load_eval(tmp_path, "smoke", "scvae", 0)["metrics"]["nll"] == 162.15  # where it belongs: valid
        assert reproduce.run_status(tmp_path, "smoke", "scvae", 0) == "done"
        dest = run_paths(tmp_path).eval_json
        dest.parent.mkdir(parents=True)
        shutil.copy(src, dest)
        write_figures(tmp_path, "cpu", "scvae", 0)
        with pytest.raises(ResultError, match=rf"{dest}: refused: its preset is 'smoke' but it lies in "
                                              r"cpu/scvae/seed0.*To fix: scvae evaluate scvae --preset cpu"):
            load_eval(tmp_path, "cpu", "scvae", 0)
        assert reproduce.run_status(tmp_path, "cpu", "scvae", 0) == "invalid"

    def test_a_copy_relabelled_as_cpu_is_refused_by_its_settings(self, tmp_path):
        src = write_eval(tmp_path, "smoke", "scvae", 0)
        dest = run_paths(tmp_path).eval_json
        dest.parent.mkdir(parents=True)
        shutil.copy(src, dest)
        edit_json(dest, lambda d: d.update(preset="cpu"))
        with pytest.raises(ResultError, match=r"computed under other preset settings \(epochs, warmup_epochs, "
                                              r"train_size, valid_size, test_size, nll_samples.*than 'cpu' has"):
            load_eval(tmp_path, "cpu", "scvae", 0)

    def test_the_book_table_refuses_it_instead_of_showing_it(self, tmp_path):
        from scvae_core.book.tables import table1

        write_eval(tmp_path, "cpu", "vae-1l", 0)
        edit_json(write_eval(tmp_path, "cpu", "scvae", 0), lambda d: d.update(model="vae-1l"))
        with pytest.raises(ResultError, match="its model is 'vae-1l' but it lies in cpu/scvae/seed0"):
            table1(tmp_path, "cpu")

    @pytest.mark.parametrize("field, value, message", [
        ("svm_acc", float("nan"), r"metrics.svm_acc is nan, not a finite number"),
        ("nll", float("inf"), r"metrics.nll is inf, not a finite number"),
        ("nll", "87.1", r"metrics.nll is '87.1', not a number"),
        ("active_units", 2.5, r"metrics.active_units is 2.5, not an integer"),
        ("svm_acc", 3.0, r"metrics.svm_acc is 3.0, outside 0..1"),
        ("nll_by_samples", {"many": 90.0}, r"metrics.nll_by_samples is not a map of sample counts to numbers"),
    ])
    def test_non_finite_or_mistyped_metrics_are_refused(self, tmp_path, field, value, message):
        path = write_eval(tmp_path, "cpu", "scvae", 0)
        edit_json(path, lambda d: d["metrics"].update({field: value}))
        with pytest.raises(ResultError, match=rf"{path}: refused: .*{message}"):
            load_eval(tmp_path, "cpu", "scvae", 0)

    @pytest.mark.parametrize("value", ["0", True, 0.0, None])
    def test_seed_must_be_the_int_of_its_folder(self, tmp_path, value):
        path = write_eval(tmp_path, "cpu", "scvae", 0)
        edit_json(path, lambda d: d.update(seed=value))
        with pytest.raises(ResultError, match="its seed is .* but it lies in cpu/scvae/seed0"):
            load_eval(tmp_path, "cpu", "scvae", 0)

    def test_another_models_config_is_refused(self, tmp_path):
        path = write_eval(tmp_path, "cpu", "scvae", 0)
        edit_json(path, lambda d: d.update(config=get_config("vae-1l").to_dict()))
        with pytest.raises(ResultError, match="computed for another model configuration than 'scvae' has now"):
            load_eval(tmp_path, "cpu", "scvae", 0)

    def test_train_json_is_checked_too(self, tmp_path):
        path = write_train(tmp_path, "cpu", "scvae", 0)
        edit_json(path, lambda d: d.update(best_valid_elbo=float("nan"), stopped="<b>"))
        with pytest.raises(ResultError, match=r"best_valid_elbo is nan.*stopped is '<b>'.*To fix: delete it and run "
                                              r"`scvae train scvae --preset cpu --seed 0`"):
            train.load_train(run_paths(tmp_path))
        assert reproduce.run_status(tmp_path, "cpu", "scvae", 0) == "invalid"

    def test_a_book_page_fails_on_it(self, tmp_path, monkeypatch):
        import jupytext
        import papermill

        repo = Path(__file__).resolve().parent.parent
        monkeypatch.setenv("PYTHONPATH", str(repo))  # the kernel imports this checkout's package
        edit_json(write_eval(tmp_path, "cpu", "vae-1l", 0), lambda d: d["metrics"].update(svm_acc=float("nan")))
        notebook = tmp_path / "04_table1.ipynb"
        jupytext.write(jupytext.read(repo / "notebooks" / "04_table1.md"), notebook)
        with pytest.raises(papermill.PapermillExecutionError, match=r"cpu/vae-1l/seed0/eval.json: refused: "
                                                                     r"metrics.svm_acc is nan"):
            papermill.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), kernel_name="python3",
                                       parameters={"preset": "cpu", "results_dir": str(tmp_path)},
                                       cwd=str(tmp_path), progress_bar=False)

    def test_status_command_says_invalid(self, tmp_path, capsys):
        edit_json(write_eval(tmp_path, "smoke", "scvae", 0), lambda d: d["metrics"].update(svm_acc=float("nan")))
        write_figures(tmp_path, "smoke", "scvae", 0)
        assert cli.main(["status", "table1", "--preset", "smoke", "--results-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "6 runs: 0 done, 1 invalid, 0 partial, 5 todo" in out
        assert f"invalid: {tmp_path}/smoke/scvae/seed0/eval.json: refused: metrics.svm_acc is nan" in out


# ---------------------------------------------------------------- 3. truncated or malformed files

class TestTruncatedOrMalformedFiles:
    pytestmark = pytest.mark.unit

    def test_truncated_figures_npz_is_invalid_stale_and_refused_with_the_fix(self, tmp_path):
        write_eval(tmp_path, "cpu", "scvae", 0)
        npz = write_figures(tmp_path, "cpu", "scvae", 0)
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
        assert reproduce.run_status(tmp_path, "cpu", "scvae", 0) == "invalid"
        with pytest.warns(UserWarning, match=rf"{npz}: unreadable npz .*truncated or corrupt.*recomputing it"):
            assert evaluate._reusable(run_paths(tmp_path), get_preset("cpu"), get_config("scvae")) is None
        with pytest.raises(ResultError, match=rf"{npz}: unreadable npz.*To fix: scvae evaluate scvae --preset cpu"):
            plots.load_figures(tmp_path, "cpu", "scvae", 0)

    @pytest.mark.parametrize("arrays, message", [
        ({"tsne_latent": np.zeros((60, 3), np.float32)}, r"tsne_latent has shape \(60, 3\), expected \(60, 2\)"),
        ({"recon_model": np.zeros((4, 784), np.float32)}, r"the image grids have shapes"),
        ({"samples": np.full((4, 28, 28), np.nan, np.float32)}, r"samples holds NaN"),
        ({"tsne_raw": np.r_[np.full((1, 2), np.nan), np.zeros((59, 2))].astype(np.float32)}, r"tsne_raw holds NaN"),
        ({"labels": np.arange(60) + 10}, r"labels must be a 1-D array of digits 0-9"),
        ({"nll_per_image": np.ones(5), "nll_test_index": np.arange(4)}, r"nll_per_image and nll_test_index must"),
        ({"nll_per_image": np.ones(5)}, r"nll_per_image and nll_test_index must"),
    ])
    def test_wrong_shaped_npz_is_refused_before_the_plot_code(self, tmp_path, arrays, message):
        npz = write_figures(tmp_path, "cpu", "scvae", 0)
        with np.load(npz) as z:
            # A collapsed latent space's points coincide and have no embedding: all NaN is valid.
            results.write_npz(npz, **{**{k: z[k] for k in z.files}, "tsne_latent": np.full((60, 2), np.nan)})
        assert np.isnan(plots.load_figures(tmp_path, "cpu", "scvae", 0)["tsne_latent"]).all()
        with np.load(npz) as z:
            results.write_npz(npz, **{**{k: z[k] for k in z.files}, **arrays})
        with pytest.raises(ResultError, match=rf"{npz}: refused: {message}"):
            plots.load_figures(tmp_path, "cpu", "scvae", 0)

    def _resume_with(self, tmp_path, change) -> None:
        run = untrained_run(tmp_path)
        run.save()
        ck = torch.load(run.paths.last_ckpt, weights_only=True)
        torch.save(change(ck), run.paths.last_ckpt)
        untrained_run(tmp_path).resume()

    @pytest.mark.parametrize("change, message", [
        (lambda ck: [ck], r"holds a list, not a checkpoint"),
        (lambda ck: {k: v for k, v in ck.items() if k != "model"}, r"not a complete checkpoint, missing model"),
        (lambda ck: {**ck, "model": {k: v[:1] for k, v in ck["model"].items()}}, r"its weights do not fit"),
        (lambda ck: {**ck, "model": {k: v * float("nan") for k, v in ck["model"].items()}},
         r"its model holds NaN or infinite weights"),
        (lambda ck: {**ck, "progress": {"epoch": 1, "nonsense": 2}}, r"its optimizer, RNG or progress state is "
                                                                      r"malformed"),
    ])
    def test_malformed_last_pt_names_file_and_fix(self, tmp_path, change, message):
        last = RunPaths(tmp_path, "smoke", MODEL, 0).last_ckpt
        with pytest.raises(ResultError, match=rf"{last}: {message}.*To fix: delete {last.parent}"):
            self._resume_with(tmp_path, change)

    @pytest.mark.parametrize("change, message", [
        (lambda ck: "weights", r"holds a str, not a checkpoint"),
        (lambda ck: {**ck, "model": {k: v.t() for k, v in ck["model"].items()}}, r"its weights do not fit"),
        (lambda ck: {**ck, "model": {k: v + float("inf") for k, v in ck["model"].items()}}, r"its model holds NaN or inf"),
    ])
    def test_malformed_best_pt_names_file_and_fix(self, tmp_path, change, message):
        run = untrained_run(tmp_path)
        best = run.paths.best_ckpt
        best.parent.mkdir(parents=True)
        ck = {"format": train.CHECKPOINT_FORMAT, "config": run.cfg.to_dict(), "model": run.model.state_dict()}
        torch.save(change(ck), best)
        with pytest.raises(ResultError, match=rf"{best}: {message}.*To fix: delete"):
            train.load_trained(MODEL, "smoke", 0, tmp_path, "cpu")

    def test_a_nan_checkpoint_is_never_written(self, tmp_path):
        run = untrained_run(tmp_path)
        run.save()
        good = run.paths.last_ckpt.read_bytes()
        run.best_state = {k: v * float("nan") for k, v in run.model.state_dict().items()}
        with pytest.raises(train.TrainingDiverged, match="non-finite weights \\(best "):
            run.save()
        assert run.paths.last_ckpt.read_bytes() == good


# ---------------------------------------------------------------- 4. failures that come late

class TestFailuresComeFirst:
    pytestmark = pytest.mark.unit

    @pytest.fixture(autouse=True)
    def no_work(self, monkeypatch):
        """Loading data or a model is the work: a refused --results-dir must come before it."""
        def work(*args, **kwargs):
            raise AssertionError("work started before --results-dir was checked")
        monkeypatch.setattr(train, "load_split", work)
        monkeypatch.setattr(evaluate, "load_trained", work)

    def test_results_dir_is_a_file(self, tmp_path):
        results_dir = tmp_path / "results"
        results_dir.write_text("not a folder")
        for run in (train.train_run, evaluate.evaluate_run):
            with pytest.raises(ResultError,
                               match=rf"--results-dir {results_dir}/smoke/{MODEL}/seed0: a file is in the way"):
                run(MODEL, "smoke", 0, device="cpu", results_dir=results_dir, progress=False)

    def test_reproduce_with_results_dir_a_file_fails_first_and_cleanly(self, tmp_path, capsys):
        results_dir = tmp_path / "results"
        results_dir.write_text("not a folder")
        assert cli.main(["reproduce", "table1", "--preset", "smoke", "--results-dir", str(results_dir),
                         "--no-progress"]) == 2
        assert f"scvae: error: --results-dir {results_dir}: a file is in the way" in capsys.readouterr().err

    def test_results_dir_cannot_be_written(self, tmp_path):
        results_dir = Path("/proc/self/scvae-results")  # not writable, even by root
        for run in (train.train_run, evaluate.evaluate_run):
            with pytest.raises(ResultError, match=rf"--results-dir {results_dir}.*: cannot write there"):
                run(MODEL, "smoke", 0, device="cpu", results_dir=results_dir, progress=False)

    def test_results_dir_has_no_room(self, tmp_path, monkeypatch):
        monkeypatch.setattr(results.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 4096))
        for run in (train.train_run, evaluate.evaluate_run):
            with pytest.raises(ResultError, match=r"0.0 MiB free, but this run writes about .* MiB there"):
                run(MODEL, "smoke", 0, device="cpu", results_dir=tmp_path, progress=False)

    def test_a_failed_write_keeps_the_evaluation_and_the_next_run_installs_it(self, tmp_path, monkeypatch, capsys):
        monkeypatch.setattr(evaluate, "RESCUE_DIRS", (tmp_path / "rescue-full", tmp_path / "rescue"))
        results_dir = tmp_path / "results"
        write_eval(tmp_path / "made", "smoke", MODEL, 0)
        write_figures(tmp_path / "made", "smoke", MODEL, 0)
        made = RunPaths(tmp_path / "made", "smoke", MODEL, 0)
        doc = {k: v for k, v in json.loads(made.eval_json.read_text()).items() if k not in ("schema_version", "kind")}
        figures = dict(np.load(made.figures_npz))
        real_write = results._atomic_write

        def full_disk(path, write):
            if tmp_path / "rescue" not in Path(path).parents:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            real_write(path, write)

        monkeypatch.setattr(results, "_atomic_write", full_disk)
        paths = RunPaths(results_dir, "smoke", MODEL, 0)
        paths.best_ckpt.parent.mkdir(parents=True)
        paths.best_ckpt.write_bytes(b"the weights evaluated")  # the rescue is bound to its checksum
        kept = evaluate._rescue_paths(tmp_path / "rescue", paths).dir
        with pytest.raises(ResultError, match=rf"{paths.eval_json}: could not be written .*No space left on device.*"
                                              rf"kept in {kept}.*installs the kept result without recomputing"):
            evaluate._write_result(paths, figures, doc)
        assert not paths.eval_json.exists()
        monkeypatch.setattr(evaluate, "RESCUE_DIRS", (tmp_path / "rescue-full",))  # nowhere left to write
        with pytest.raises(ResultError, match="could not be written anywhere .*its content is printed above"):
            evaluate._write_result(paths, figures, doc)
        assert json.loads(capsys.readouterr().err.strip().splitlines()[-1])["metrics"] == doc["metrics"]
        monkeypatch.setattr(evaluate, "RESCUE_DIRS", (tmp_path / "rescue-full", tmp_path / "rescue"))

        monkeypatch.setattr(results, "_atomic_write", real_write)
        again = evaluate.evaluate_run(MODEL, "smoke", 0, device="cpu", results_dir=results_dir,
                                      progress=False)  # no_work: no model
        assert again["metrics"] == doc["metrics"] and reproduce.run_status(results_dir, "smoke", MODEL, 0) == "done"
        assert not kept.exists()


# ---------------------------------------------------------------- 5. resume across thread counts

class TestResumeAcrossThreadCounts:
    pytestmark = pytest.mark.unit

    def test_checkpoint_records_threads_and_torch_and_a_resume_under_others_is_loud_and_recorded(self, tmp_path,
                                                                                                    capsys):
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(2)
            run = untrained_run(tmp_path)
            run.save()
            ck = torch.load(run.paths.last_ckpt, weights_only=True)
            here = {"torch": torch.__version__, "device": "cpu", "processor": processor_name("cpu")}
            assert ck["runtime"] == {"threads": 2, **here}
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # the same settings: silent, nothing recorded
                same = untrained_run(tmp_path)
                same.resume()
            assert "resumed_under_other_settings" not in same.payload("max_epochs")["provenance"]
            torch.set_num_threads(1)
            resumed = untrained_run(tmp_path)
            with pytest.warns(UserWarning, match=r"other settings \(threads 2 -> 1\).*NOT match an uninterrupted "
                                                 r"one bitwise.*OMP_NUM_THREADS=2"):
                resumed.resume()
        finally:
            torch.set_num_threads(threads)
        assert "WARNING" in capsys.readouterr().err
        record = resumed.payload("max_epochs")["provenance"]["resumed_under_other_settings"]
        assert record == [{"epoch": 1, "step": 0, "checkpoint": ck["runtime"],
                           "now": {"threads": 1, **here}}]
        resumed.save()  # and it stays recorded through later checkpoints
        assert torch.load(resumed.paths.last_ckpt, weights_only=True)["progress"]["resumed_under_other_settings"]

    def test_a_checkpoint_from_another_processor_is_loud_and_one_that_never_recorded_it_is_not(self, tmp_path):
        run = untrained_run(tmp_path)
        now = runtime_settings(run.dev)
        elsewhere = untrained_run(tmp_path)
        other = f"not {now['processor']}"  # another processor whatever this machine is
        with pytest.warns(UserWarning, match=rf"other settings \(processor {re.escape(other)} -> "):
            elsewhere._compare_runtime({**now, "processor": other})
        older = untrained_run(tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            older._compare_runtime({k: v for k, v in now.items() if k != "processor"})
        assert not older.p.resumed_under_other_settings


# ---------------------------------------------------------------- 7. leftovers and permissions

class TestLeftoversAndPermissions:
    @pytest.mark.unit
    def test_stale_temporaries_of_dead_writers_are_removed(self, tmp_path):
        last = RunPaths(tmp_path, "smoke", MODEL, 0).last_ckpt
        last.parent.mkdir(parents=True)
        host = socket.gethostname()
        dead = last.parent / f".last.pt.{host}-pid{dead_pid()}.k3j2.tmp"
        live = last.parent / f".last.pt.{host}-pid{os.getpid()}.a1b2.tmp"  # a writer at work: kept
        elsewhere = last.parent / ".last.pt.other-host-pid1.z9.tmp"  # another machine's: judged by age
        untagged_old, untagged_new = last.parent / ".last.pt.x9y8.tmp", last.parent / ".last.pt.q1w2.tmp"
        for path in (dead, live, elsewhere, untagged_old, untagged_new):
            path.write_bytes(b"\0" * 1000)
        os.utime(untagged_old, (time.time() - 2 * results.STALE_UNTAGGED_S,) * 2)
        untrained_run(tmp_path).save()
        assert not dead.exists() and not untagged_old.exists()
        assert live.exists() and elsewhere.exists() and untagged_new.exists() and last.is_file()

    @pytest.mark.unit
    def test_stale_part_files_are_removed_by_the_next_download(self, tmp_path):
        dest = tmp_path / data.LABELS
        dest.parent.mkdir(parents=True)
        dead = dest.parent / f".{dest.name}.{socket.gethostname()}-pid{dead_pid()}.zz.part"
        dead.write_bytes(b"half a download")
        with pytest.raises(data.DataError, match="checksum mismatch"):  # cleaned before the new download
            data._install(tmp_path, data.LABELS, "test", lambda f: f.write(b"x"))
        assert not dead.exists() and not list(tmp_path.rglob("*.part"))

    @pytest.mark.unit
    def test_a_mirror_that_streams_forever_is_cut_at_the_expected_size(self, tmp_path, monkeypatch):
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        monkeypatch.setitem(data.FILE_BYTES, data.MNIST_LABELS, 3 << 20)

        class Forever(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.end_headers()
                try:
                    while True:
                        self.wfile.write(b"\0" * 65536)
                except OSError:
                    pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Forever)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            with pytest.raises(data.DataError, match=rf"{data.MNIST_LABELS}: more than the {3 << 20} bytes"):
                data._fetch(f"{url}/{data.MNIST_LABELS}", tmp_path, data.MNIST_LABELS)
        finally:
            server.shutdown()
            server.server_close()
        assert not list(tmp_path.rglob("*.part")) and not (tmp_path / data.MNIST_LABELS).exists()

    @pytest.mark.smoke
    def test_written_files_honour_the_umask(self, tmp_path, data_dir):
        old = os.umask(0o002)  # a group-shared folder
        try:
            json_path = write_eval(tmp_path, "cpu", "scvae", 0)
            npz_path = write_figures(tmp_path, "cpu", "scvae", 0)
            rel = data.MNIST_LABELS
            data._install(tmp_path / "data", rel, "copy", lambda f: f.write((data_dir / rel).read_bytes()))
            run = untrained_run(tmp_path)
            run.save()
        finally:
            os.umask(old)
        for path in (json_path, npz_path, tmp_path / "data" / rel, run.paths.last_ckpt):
            assert stat.S_IMODE(path.stat().st_mode) == 0o664, path


# ---------------------------------------------------------------- 8. smaller messages

class TestSmallerMessages:
    @pytest.mark.unit
    @pytest.mark.parametrize("argv", [["train", MODEL, "--seed", "-1"], ["evaluate", MODEL, "--seed", "x"],
                                      ["reproduce", "table1", "--seeds", "0", "-1"], ["status", "all", "--seeds", "2**32"]])
    def test_bad_seed_names_the_option(self, argv, tmp_path, capsys):
        with pytest.raises(SystemExit) as exit_:
            cli.main([*argv, "--results-dir", str(tmp_path)])
        option = argv[2]
        assert exit_.value.code == 2
        assert f"argument {option}: must be an integer in 0..4294967295" in capsys.readouterr().err
        assert not list(tmp_path.iterdir())  # no junk stage file

    @pytest.mark.unit
    def test_reproduce_with_a_bad_seed_writes_nothing(self, tmp_path):
        with pytest.raises(ValueError, match=r"--seed must be an integer in 0..4294967295, got -1"):
            reproduce.reproduce(["table1"], "smoke", seeds=[-1], device="cpu", results_dir=tmp_path, progress=False)
        assert not list(tmp_path.iterdir())

    @pytest.mark.unit
    @pytest.mark.parametrize("params, message", [
        ({"preset": "nonsense"}, r"preset 'nonsense' \(make PRESET=\): choose one of auto, smoke, cpu, paper, cpu-long"),
        ({"seeds": ["abc"]}, r"seeds \['abc'\] \(make SEEDS=\): integers in 0..4294967295"),
        ({"seeds": [-1]}, r"seeds \[-1\] \(make SEEDS=\)"),
        ({"device": "tpu"}, r"device 'tpu' \(make DEVICE=\): choose one of auto, cpu, cuda, cuda:N"),
        ({"results_dir": "/nonexistent"}, r"results_dir '/nonexistent' \(make RESULTS_DIR=\): no such folder"),
        ({"recompute": "yes"}, r"recompute 'yes' \(make RECOMPUTE=\): choose one of False, True, missing"),
    ])
    def test_bad_notebook_parameters_fail_with_the_valid_values(self, params, message, tmp_path):
        from scvae_core.book.params import check_notebook_params

        write_eval(tmp_path, "cpu", MODEL, 0)  # a folder that holds results
        good = {"preset": "auto", "seeds": None, "device": "auto", "results_dir": str(tmp_path), "recompute": False}
        check_notebook_params(**good)
        with pytest.raises(ValueError, match=message):
            check_notebook_params(**{**good, **params})
        bad = {**good, **params}
        with pytest.raises(ValueError, match=message):  # the notebooks' one entry to the results
            reproduce.ensure_results(["table1"], bad["preset"], bad["seeds"], bad["device"], bad["results_dir"],
                                     bad["recompute"])

    @pytest.mark.unit
    def test_a_notebook_fails_on_bad_parameters(self, tmp_path, monkeypatch):
        import jupytext
        import papermill

        repo = Path(__file__).resolve().parent.parent
        monkeypatch.setenv("PYTHONPATH", str(repo))  # the kernel imports this checkout's package
        source = repo / "notebooks" / "00_setup.md"
        notebook = tmp_path / "00_setup.ipynb"
        jupytext.write(jupytext.read(source), notebook)
        with pytest.raises(papermill.PapermillExecutionError, match=r"preset 'nonsense'.*seeds \['abc'\].*device "
                                                                     r"'tpu'.*results_dir '/nonexistent'"):
            papermill.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), kernel_name="python3",
                                       parameters={"preset": "nonsense", "seeds": ["abc"], "device": "tpu",
                                                   "results_dir": "/nonexistent"},
                                       cwd=str(tmp_path), progress_bar=False)

    @pytest.mark.unit
    def test_divergence_guard_beside_the_nan_guard(self, tmp_path):
        run = untrained_run(tmp_path, "vae-1l")
        with torch.no_grad():
            for p in run.model.parameters():
                p.mul_(1e4)  # finite weights whose ELBO is astronomically bad, like an absurd learning rate's
        valid = torch.from_numpy(np.random.default_rng(0).integers(0, 2, (50, 784)).astype(np.float32))
        run.p.sums["n"] = 1.0  # as after a step, so the epoch's means exist
        run.p.beta = 0.5  # during warm-up an absurd ELBO may still recover: no verdict yet
        run.end_epoch(valid)
        run.p.sums["n"], run.p.beta = 1.0, 1.0  # warm-up over: absurd but improving goes on
        with torch.no_grad():
            for p in run.model.parameters():
                p.mul_(0.9)
        run.end_epoch(valid)
        assert train.DIVERGED_ELBO > run.p.history[-1]["valid_elbo"] > run.p.history[0]["valid_elbo"]
        run.p.sums["n"] = 1.0  # absurd and no better than the best: no result
        with pytest.raises(train.TrainingDiverged, match=r"validation ELBO -\d.*e\+\d+ after epoch 3 .*below -5434 "
                                                         r"after warm-up and no better than epoch 2's is no result"):
            run.end_epoch(valid)

    @pytest.mark.unit
    def test_divergence_message_does_not_contradict_itself(self, tmp_path):
        run = untrained_run(tmp_path)
        assert run._kept() == "no checkpoint was written yet, so running again starts from scratch"
        run.save()
        assert "is kept and running again resumes there" in run._kept()

    @pytest.mark.smoke
    def test_ctrl_c_checkpoints_before_exiting(self, tmp_path, data_dir, monkeypatch):
        step, before = train._Run.step, signal.getsignal(signal.SIGINT)  # SIG_IGN in a background job

        def step_then_ctrl_c(self, *args):
            stats = step(self, *args)
            if self.p.global_step == 2:
                signal.raise_signal(signal.SIGINT)
            return stats

        monkeypatch.setattr(train._Run, "step", step_then_ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            train.train_run(MODEL, "smoke", 0, device="cpu", results_dir=tmp_path, data_dir=data_dir, progress=False)
        progress = torch.load(RunPaths(tmp_path, "smoke", MODEL, 0).last_ckpt, weights_only=True)["progress"]
        assert (progress["epoch"], progress["step"], progress["global_step"]) == (0, 2, 2)
        assert signal.getsignal(signal.SIGINT) is before  # restored


# ================================================================ round two (issue 30)

def smoke_run(results_dir: Path, model: str, seed: int = 0) -> RunPaths:
    """A done run under the smoke preset (fabricated eval.json and figures.npz)."""
    write_eval(results_dir, "smoke", model, seed)
    write_figures(results_dir, "smoke", model, seed)
    return RunPaths(results_dir, "smoke", model, seed)


def status_in_subprocess(results_dir: Path, *stages: str) -> subprocess.CompletedProcess:
    """`scvae status` of this checkout, with a generous timeout: a hang fails instead of blocking."""
    return subprocess.run([sys.executable, "-m", "scvae_core.cli", "status", *(stages or ("table1",)), "--preset",
                           "smoke", "--results-dir", str(results_dir)], capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------- 2. lock and result files that are links

class TestLinksWhereFilesGo:
    pytestmark = pytest.mark.unit

    def test_a_lock_that_is_a_symlink_refuses_the_run_and_leaves_its_target_alone(self, tmp_path, capsys):
        from scvae_core.lock import LockError, run_lock

        victim = tmp_path / "victim"
        victim.write_text("precious\n")
        run_dir = RunPaths(tmp_path / "results", "smoke", MODEL, 0).dir
        run_dir.mkdir(parents=True)
        (run_dir / ".lock").symlink_to(victim)
        assert cli.main(["evaluate", MODEL, "--preset", "smoke", "--results-dir", str(tmp_path / "results"),
                         "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"{run_dir}/.lock: refused: the lock file is a symbolic link (to {victim})" in err
        assert f"`rm {run_dir}/.lock`" in err and "took over" not in err
        assert victim.read_text() == "precious\n" and (run_dir / ".lock").is_symlink()
        with pytest.raises(LockError, match="symbolic link"):
            with run_lock(run_dir):
                pass

    def test_a_dangling_lock_link_is_refused_too_and_creates_nothing(self, tmp_path):
        from scvae_core.lock import LockError, run_lock

        target = tmp_path / "would-be-created"
        (tmp_path / ".lock").symlink_to(target)
        with pytest.raises(LockError, match=rf"symbolic link \(to {target}\)"):
            with run_lock(tmp_path):
                pass
        assert not target.exists()

    def test_a_result_file_that_is_a_symlink_is_invalid_and_named(self, tmp_path):
        outside = write_eval(tmp_path / "elsewhere", "smoke", MODEL, 0)
        paths = smoke_run(tmp_path / "results", MODEL)
        paths.eval_json.unlink()
        paths.eval_json.symlink_to(outside)
        with pytest.raises(ResultError, match=rf"{paths.eval_json}: refused: it is a symbolic link \(to {outside}\)"):
            load_eval(paths.results_dir, "smoke", MODEL, 0)
        assert reproduce.run_status(paths.results_dir, "smoke", MODEL, 0) == "invalid"


# ---------------------------------------------------------------- 6. one malformed file among valid ones

def plant_deep_json(path: Path) -> str:
    path.write_text("[" * 5000 + "]" * 5000)
    return "nested too deeply"


def plant_folder(path: Path) -> str:
    path.unlink()
    path.mkdir()
    return "it is a folder, not a file"


def plant_fifo(path: Path) -> str:
    path.unlink()
    os.mkfifo(path)
    return r"it is a FIFO \(named pipe\), not a file"


def plant_huge_npz(path: Path) -> str:
    """A figures.npz whose samples.npy declares 8 GiB, in a few kilobytes of deflated zeros."""
    import io
    import zipfile

    from numpy.lib import format as npy

    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (2**21, 32, 32)})
    with np.load(path) as z:
        kept = {k: z[k] for k in z.files if k != "samples"}
    results.write_npz(path, **kept)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("samples.npy", header.getvalue() + bytes(1 << 20))
    return r"samples.npy declares an array of shape \(2097152, 32, 32\) \(8.0 GiB\)"


PLANTS = {"vae-1l": ("eval.json", plant_deep_json), "vae-11l": ("eval.json", plant_folder),
          "vae-q++": ("eval.json", plant_fifo), "vae-p++": ("figures.npz", plant_huge_npz)}


class TestOneMalformedFileDoesNotStopTheOthers:
    pytestmark = pytest.mark.unit

    def test_status_lists_each_as_invalid_with_its_reason_and_the_rest_as_done(self, tmp_path):
        reasons = {}
        for model in ("vae-1l", "vae-11l", "vae-q++", "vae-p++", "scvae"):
            paths = smoke_run(tmp_path, model)
            write_train(tmp_path, "smoke", model, 0)
            if model in PLANTS:
                name, plant = PLANTS[model]
                reasons[model] = (paths.dir / name, plant(paths.dir / name))
        started = RunPaths(tmp_path, "smoke", "scvae-l", 0)  # a started run whose checkpoint and lock are FIFOs
        started.last_ckpt.parent.mkdir(parents=True)
        os.mkfifo(started.last_ckpt)
        os.mkfifo(started.dir / ".lock")
        done = status_in_subprocess(tmp_path)
        assert done.returncode == 0, done.stderr
        assert "6 runs: 1 done, 4 invalid, 1 partial, 0 todo" in done.stdout, done.stdout
        assert re.search(r"scvae-l .* partial \(an unreadable checkpoint\)", done.stdout), done.stdout
        for model, (path, reason) in reasons.items():
            assert re.search(rf"invalid: {re.escape(str(path))}: refused: .*{reason}", done.stdout), (model, done.stdout)
        assert "Traceback" not in done.stderr

    @pytest.mark.parametrize("model", PLANTS)
    def test_evaluate_reports_it_and_computes_it_again(self, tmp_path, model):
        paths = smoke_run(tmp_path, model)
        name, plant = PLANTS[model]
        reason = plant(paths.dir / name)
        with pytest.warns(UserWarning, match=rf"{re.escape(str(paths.dir / name))}.*{reason}.*recomputing it"):
            assert evaluate._reusable(paths, get_preset("smoke"), get_config(model)) is None

    def test_evaluate_refuses_a_folder_where_eval_json_goes_before_the_work(self, tmp_path):
        paths = smoke_run(tmp_path, MODEL)
        plant_folder(paths.eval_json)
        with pytest.warns(UserWarning, match="a folder, not a file"):
            with pytest.raises(ResultError, match=rf"{paths.eval_json}: is a folder, where this evaluation writes its "
                                                  rf"result.*To fix: remove it \(`rm -r {paths.eval_json}`\)"):
                evaluate.evaluate_run(MODEL, "smoke", 0, device="cpu", results_dir=tmp_path, progress=False)

    def test_json_and_npz_are_read_up_to_a_size_limit(self, tmp_path, monkeypatch):
        paths = smoke_run(tmp_path, MODEL)
        monkeypatch.setattr(results, "JSON_BYTES", 100)
        with pytest.raises(ResultError, match=rf"{paths.eval_json}: refused: larger than the 0 MiB a result file"):
            load_eval(tmp_path, "smoke", MODEL, 0)
        monkeypatch.setattr(results, "NPZ_BYTES", 100)
        with pytest.raises(ResultError, match=rf"{paths.figures_npz}: refused: larger than the"):
            plots.load_figures(tmp_path, "smoke", MODEL, 0)


# ---------------------------------------------------------------- 1. a rescued evaluation belongs to one run

class TestRescueIsBoundToItsRun:
    pytestmark = pytest.mark.unit

    @pytest.fixture
    def rescue(self, tmp_path, monkeypatch) -> Path:
        top = tmp_path / "rescue"
        monkeypatch.setattr(evaluate, "RESCUE_DIRS", (top,))
        return top

    def _kept(self, results_dir: Path, nll: float = 88.8) -> tuple[RunPaths, dict]:
        """An evaluation of ``results_dir``'s run that a full disk sent to the rescue folder."""
        made = smoke_run(results_dir.parent / f"made-{nll}", MODEL)
        doc = json.loads(made.eval_json.read_text())
        doc["metrics"]["nll"] = nll
        doc = {k: v for k, v in doc.items() if k not in ("schema_version", "kind")}
        paths = RunPaths(results_dir, "smoke", MODEL, 0)
        if not paths.best_ckpt.exists():
            paths.best_ckpt.parent.mkdir(parents=True)
            paths.best_ckpt.write_bytes(b"weights of " + str(results_dir).encode())
        real_write = results._atomic_write

        def full_disk(path, write):
            if Path(path).is_relative_to(results_dir):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            real_write(path, write)

        with pytest.MonkeyPatch.context() as m:
            m.setattr(results, "_atomic_write", full_disk)
            with pytest.raises(ResultError, match="the finished evaluation is kept in"):
                evaluate._write_result(paths, dict(np.load(made.figures_npz)), doc)
        return paths, doc

    def _evaluate(self, paths: RunPaths) -> dict:
        return evaluate._evaluate_locked(paths, get_preset("smoke"), get_config(MODEL), "cpu", None, False, None)

    def test_it_is_installed_into_its_own_run_only(self, tmp_path, rescue):
        mine, doc = self._kept(tmp_path / "mine")
        other = RunPaths(tmp_path / "other", "smoke", MODEL, 0)
        other.best_ckpt.parent.mkdir(parents=True)
        shutil.copy(mine.best_ckpt, other.best_ckpt)  # even the same weights: another folder's run
        assert not evaluate._install_rescued(other, get_preset("smoke"), get_config(MODEL))
        assert not other.eval_json.exists()
        assert self._evaluate(mine)["metrics"]["nll"] == 88.8 and reproduce.run_status(mine.results_dir, "smoke",
                                                                                       MODEL, 0) == "done"

    def test_one_moved_under_another_folders_key_is_refused(self, tmp_path, rescue):
        mine, _ = self._kept(tmp_path / "mine")
        other = RunPaths(tmp_path / "other", "smoke", MODEL, 0)
        other.best_ckpt.parent.mkdir(parents=True)
        shutil.copy(mine.best_ckpt, other.best_ckpt)
        src, dest = evaluate._rescue_paths(rescue, mine).results_dir, evaluate._rescue_paths(rescue, other).results_dir
        src.rename(dest)
        with pytest.warns(UserWarning, match=rf"not installed: it was computed for '{mine.dir}'"):
            assert not evaluate._install_rescued(other, get_preset("smoke"), get_config(MODEL))
        assert not other.eval_json.exists()

    def test_a_valid_evaluation_is_never_replaced(self, tmp_path, rescue):
        paths, _ = self._kept(tmp_path / "results", nll=1.23)
        write_eval(tmp_path / "results", "smoke", MODEL, 0, nll=90.0)  # evaluated again since, successfully
        write_figures(tmp_path / "results", "smoke", MODEL, 0)
        kept = evaluate._rescue_paths(rescue, paths)
        future = time.time() + 10 * 365 * 86400
        for f in kept.dir.iterdir():
            os.utime(f, (future, future))  # a file time anyone can set decides nothing
        assert self._evaluate(paths)["metrics"]["nll"] == 90.0
        assert load_eval(paths.results_dir, "smoke", MODEL, 0)["metrics"]["nll"] == 90.0

    def test_one_of_other_weights_is_refused(self, tmp_path, rescue):
        paths, _ = self._kept(tmp_path / "results")
        paths.best_ckpt.write_bytes(b"trained again")
        with pytest.warns(UserWarning, match=rf"not installed: it evaluated other weights than {paths.best_ckpt} holds"):
            assert not evaluate._install_rescued(paths, get_preset("smoke"), get_config(MODEL))
        assert not paths.eval_json.exists()

    def test_a_folder_others_can_write_is_refused(self, tmp_path, rescue):
        paths, _ = self._kept(tmp_path / "results")
        kept = evaluate._rescue_paths(rescue, paths)
        assert stat.S_IMODE(rescue.stat().st_mode) & 0o077 == 0  # made private
        os.chmod(kept.results_dir, 0o777)
        with pytest.warns(UserWarning, match=rf"{kept.results_dir} can be written by other users \(mode drwxrwxrwx\)"):
            assert not evaluate._install_rescued(paths, get_preset("smoke"), get_config(MODEL))
        os.chmod(kept.results_dir, 0o700)
        assert evaluate._install_rescued(paths, get_preset("smoke"), get_config(MODEL))

    def test_a_folder_of_another_user_is_refused_for_reading_and_for_writing(self, tmp_path, rescue, monkeypatch):
        paths, doc = self._kept(tmp_path / "results")
        uid = os.getuid()
        monkeypatch.setattr(evaluate.os, "getuid", lambda: uid + 1)  # as if another user had made them
        with pytest.warns(UserWarning, match=rf"{rescue} belongs to another user \(uid {uid}\)"):
            assert not evaluate._install_rescued(paths, get_preset("smoke"), get_config(MODEL))

        def full_disk(path, write):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        monkeypatch.setattr(results, "_atomic_write", full_disk)
        with pytest.raises(ResultError, match=rf"could not be written anywhere .*: not used, {rescue} belongs to "
                                              "another user"):
            evaluate._write_result(paths, {}, doc)

    def test_a_planted_folder_without_its_binding_is_refused(self, tmp_path, rescue):
        paths = RunPaths(tmp_path / "results", "smoke", MODEL, 0)
        paths.best_ckpt.parent.mkdir(parents=True)
        paths.best_ckpt.write_bytes(b"weights")
        kept = evaluate._rescue_paths(rescue, paths)
        smoke_run(kept.results_dir, MODEL)  # a valid-looking eval.json, but no record of whose it is
        for folder in (kept.dir, *kept.dir.parents):
            if folder.is_relative_to(rescue):
                os.chmod(folder, 0o700)  # private, whatever the umask: only the missing binding is wrong
        with pytest.warns(UserWarning, match=r"rescued.json: missing"):
            assert not evaluate._install_rescued(paths, get_preset("smoke"), get_config(MODEL))


# ---------------------------------------------------------------- 5. a disk that fills during training

def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class TestDiskFullDuringTraining:
    pytestmark = pytest.mark.unit

    def test_enospc_in_torch_save_says_what_is_kept_and_how_to_resume(self, tmp_path, monkeypatch):
        run = untrained_run(tmp_path)
        run.save()
        last, best = run.paths.last_ckpt, run.paths.best_ckpt
        good = last.read_bytes()
        monkeypatch.setattr(torch, "save", no_space)
        with pytest.raises(ResultError, match=rf"{last}: could not be written: No space left on device \(the disk is "
                                              rf"full\); the last good checkpoint, {last} \(epoch 1, step 0\), is kept "
                                              rf"and running again resumes there\. To fix: make room in {last.parent} "
                                              r"\(this run's checkpoints take about \d+ MiB\), then run `scvae train "
                                              rf"{MODEL} --preset smoke --seed 0 --results-dir {tmp_path}` again"):
            run.save()
        with pytest.raises(ResultError, match=rf"{best}: could not be written: .*\(the disk is full\)"):
            run.save_best(best)
        monkeypatch.undo()
        assert last.read_bytes() == good and not best.exists() and not list(last.parent.glob(".*.tmp"))
        untrained_run(tmp_path).resume()  # and the kept checkpoint resumes

    def test_a_write_that_fails_inside_the_file_is_reported_as_the_full_disk_it_is(self, tmp_path, monkeypatch):
        class FullDisk:  # what a file on a full disk does: its writes fail
            write = staticmethod(no_space)

        real = train._atomic_write
        monkeypatch.setattr(train, "_atomic_write", lambda path, write: real(path, lambda f: write(FullDisk())))
        run = untrained_run(tmp_path)
        # torch.save itself turns this into "RuntimeError: ... unexpected pos"; the message must say what it is
        with pytest.raises(ResultError, match=r"No space left on device \(the disk is full\); no checkpoint was "
                                              r"written yet, so running again starts from scratch"):
            run.save()
        assert not run.paths.last_ckpt.exists()


# ---------------------------------------------------------------- 8. smaller ones, round two

def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestSmallerRoundTwo:
    @pytest.mark.unit
    def test_an_unreachable_scheduler_fails_at_once_and_writes_no_stage_file(self, tmp_path, capsys, monkeypatch):
        import distributed

        def no_client(*args, **kwargs):
            raise AssertionError("a Client was made for an address nothing answers at")

        monkeypatch.setattr(distributed, "Client", no_client)
        address = f"tcp://127.0.0.1:{closed_port()}"
        assert cli.main(["reproduce", "table1", "--preset", "smoke", "--results-dir", str(tmp_path), "--scheduler",
                         address, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"scvae: error: --scheduler {address}: no Dask scheduler answers there (Connection refused)" in err
        assert "leave out --scheduler" in err and not list(tmp_path.rglob("stage-*.json"))

    @pytest.mark.unit
    def test_a_scheduler_address_without_a_port_is_named(self, tmp_path, capsys):
        assert cli.main(["reproduce", "table1", "--preset", "smoke", "--results-dir", str(tmp_path), "--scheduler",
                         "tcp://127.0.0.1", "--no-progress"]) == 2
        assert "--scheduler 'tcp://127.0.0.1': give HOST and PORT" in capsys.readouterr().err

    @pytest.mark.unit
    def test_models_into_a_closed_pipe_ends_quietly(self):
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the first line, as `| head -1` is after it
        done = subprocess.run([sys.executable, "-m", "scvae_core.cli", "models"], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=300)
        os.close(write)
        assert done.returncode == 0 and "BrokenPipeError" not in done.stderr and "Traceback" not in done.stderr, \
            done.stderr

    @pytest.mark.unit
    def test_scvae_data_pointing_at_a_file_says_it_is_a_file(self, tmp_path, monkeypatch):
        afile = tmp_path / "binarized_mnist_train.amat"
        afile.write_text("0 1\n")
        monkeypatch.setenv("SCVAE_DATA", str(afile))
        with pytest.raises(data.DataError, match=rf"data folder {afile} \(from SCVAE_DATA\) is a file, not a folder: "
                                                 rf"point SCVAE_DATA at the folder .*e\.g\. {tmp_path}"):
            data.resolve_data_dir()
        with pytest.raises(data.DataError, match=r"\(from --data-dir \(data_dir=\)\) is a file"):
            data.resolve_data_dir(afile)

    @pytest.mark.unit
    @pytest.mark.parametrize("verb", ["train", "evaluate"])
    def test_a_failed_command_leaves_no_empty_run_folder(self, tmp_path, capsys, verb):
        results_dir = tmp_path / "results"
        assert cli.main([verb, MODEL, "--preset", "smoke", "--results-dir", str(results_dir), "--data-dir",
                         str(tmp_path / "no-data"), "--no-progress"]) == 2
        assert "scvae: error:" in capsys.readouterr().err  # no data; no checkpoint
        assert not results_dir.exists()
        results_dir.mkdir()
        (results_dir / "smoke" / "scvae" / "seed0").mkdir(parents=True)  # another run's folder: not ours to remove
        assert cli.main([verb, MODEL, "--preset", "smoke", "--results-dir", str(results_dir), "--data-dir",
                         str(tmp_path / "no-data"), "--no-progress"]) == 2
        assert sorted(p.relative_to(results_dir).as_posix() for p in results_dir.rglob("*")) == [
            "smoke", "smoke/scvae", "smoke/scvae/seed0"]

    @pytest.mark.smoke
    def test_sigterm_to_reproduce_stops_with_the_resume_hint_and_leaves_no_lock(self, tmp_path, data_dir):
        cmd = [sys.executable, "-m", "scvae_core.cli", "reproduce", "activation", "--preset", "smoke", "--seeds", "1",
               "2", "--jobs", "2", "--device", "cpu", "--results-dir", str(tmp_path), "--data-dir", str(data_dir),
               "--no-progress"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            deadline = time.monotonic() + 600
            while proc.poll() is None and time.monotonic() < deadline and len(list(tmp_path.rglob(".lock"))) < 2:
                time.sleep(0.05)  # both workers inside a run
            assert proc.poll() is None, f"the stage ended before it could be stopped: {proc.communicate()}"
            assert len(list(tmp_path.rglob(".lock"))) == 2
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 143, err
        assert "scvae: terminated (SIGTERM); run the same command again to resume." in err
        assert not list(tmp_path.rglob(".lock")), list(tmp_path.rglob(".lock"))


# ---------------------------------------------------------------- 4. the local cluster admits only its own client

# Another user of the machine, in a process of their own: a client of the cluster's address that
# asks every worker to touch a file. argv: address, "none" | "own" (their own credentials), file.
INTRUDER = """
import sys
from pathlib import Path
from distributed import Client
from distributed.security import Security

address, credentials, marker = sys.argv[1:]
security = Security.temporary() if credentials == "own" else None
with Client(address, security=security, timeout="20s") as client:
    client.run(Path(marker).touch)
"""


class TestLocalClusterAdmitsOnlyItsClient:
    pytestmark = pytest.mark.unit

    def test_a_client_without_the_clusters_credentials_is_refused(self, tmp_path):
        from distributed import Client

        from scvae_core.runner import executor

        marker = tmp_path / "ran-in-a-worker"
        with executor._local_cluster(1, "cpu", 1) as cluster:
            address = cluster.scheduler_address
            assert address.startswith("tls://127.0.0.1:")
            with Client(cluster, security=cluster.security, timeout="60s") as ours:  # as _execute_dask connects
                ours.run(marker.touch)
            assert marker.exists()  # the credentials' holder gets in
            marker.unlink()
            # what another user can try: no TLS at all, plain TCP on the same port, their own credentials
            for tried, credentials in ((address, "none"), (address.replace("tls://", "tcp://"), "none"),
                                       (address, "own")):
                done = subprocess.run([sys.executable, "-c", INTRUDER, tried, credentials, str(marker)],
                                      capture_output=True, text=True, timeout=300)
                refused = re.search(r"ssl_context|CommClosedError|certificate does not match", done.stderr)
                assert done.returncode != 0 and refused and not marker.exists(), (tried, credentials, done.stderr[-2000:])


# ---------------------------------------------------------------- 7. where a notebook may write

class TestNotebooksWriteOnlyWhereTheyMay:
    pytestmark = pytest.mark.unit

    @pytest.fixture
    def victim(self, tmp_path) -> Path:
        """Someone's folder, as /etc: it exists, scvae did not make it."""
        folder = tmp_path / "etc"
        folder.mkdir()
        (folder / "passwd").write_text("root:x:0:0\n")
        return folder

    def _params(self, results_dir, recompute="missing", **extra) -> dict:
        return {"preset": "smoke", "seeds": None, "device": "cpu", "results_dir": str(results_dir),
                "recompute": recompute, **extra}

    def test_a_folder_outside_results_that_scvae_did_not_make_is_refused(self, victim, monkeypatch):
        from scvae_core.book.params import check_notebook_params

        def no_run(*args, **kwargs):
            raise AssertionError("the stages ran")

        monkeypatch.setattr(reproduce, "reproduce", no_run)
        message = (rf"results_dir '{victim}' \(make RESULTS_DIR=\): {victim} is outside the repository's results "
                   r"folder and was not created by scvae .*To fix: .*results_dir_ok=True \(make RESULTS_DIR_OK=True\)")
        with pytest.raises(ValueError, match=message):
            check_notebook_params(**self._params(victim))
        with pytest.raises(ValueError, match=message):
            reproduce.ensure_results(["table1"], "smoke", None, "cpu", str(victim), "missing")
        deep = victim / "a" / "b"
        deep.mkdir(parents=True)
        monkeypatch.chdir(deep)
        with pytest.raises(ValueError, match=rf"{victim} is outside the repository's results folder"):
            check_notebook_params(**self._params("../.."))  # as root, ../../.. from the repository is /
        assert sorted(p.name for p in victim.iterdir()) == ["a", "passwd"]

    def test_said_explicitly_it_is_allowed(self, victim):
        from scvae_core.book.params import check_notebook_params

        check_notebook_params(**self._params(victim), results_dir_ok=True)
        with pytest.raises(ValueError, match=r"results_dir_ok 'yes' \(make RESULTS_DIR_OK=\): choose one of False, True"):
            check_notebook_params(**self._params(victim), results_dir_ok="yes")

    def test_a_new_folder_is_created_marked_and_trusted_afterwards(self, tmp_path):
        from scvae_core.book.params import check_notebook_params

        new = tmp_path / "new-results"
        check_notebook_params(**self._params(new))
        assert (new / results.RESULTS_MARKER).is_file()
        check_notebook_params(**self._params(new))  # scvae made it: trusted from now on
        made = tmp_path / "by-reproduce"
        reproduce.reproduce(["table1"], "smoke", seeds=[], device="cpu", results_dir=made, progress=False,
                            scheduler="inline")
        assert (made / results.RESULTS_MARKER).is_file()
        check_notebook_params(**self._params(made))

    def test_the_repositorys_results_folder_is_allowed(self):
        from scvae_core.book.params import check_notebook_params

        check_notebook_params(**self._params(results.DEFAULT_RESULTS_DIR))

    def test_a_folder_without_results_fails_at_once(self, victim, tmp_path):
        from scvae_core.book.params import check_notebook_params

        with pytest.raises(ValueError, match=rf"results_dir '{victim}' \(make RESULTS_DIR=\): holds no results .*"
                                             "RECOMPUTE=missing"):
            check_notebook_params(**self._params(victim, recompute=False))
        write_eval(tmp_path / "some", "cpu", MODEL, 0)
        check_notebook_params(**self._params(tmp_path / "some", recompute=False))

    def test_a_notebook_asked_to_write_into_such_a_folder_fails_in_its_first_cell(self, victim, monkeypatch):
        import jupytext
        import papermill

        repo = Path(__file__).resolve().parent.parent
        monkeypatch.setenv("PYTHONPATH", str(repo))  # the kernel imports this checkout's package
        notebook = victim.parent / "04_table1.ipynb"
        jupytext.write(jupytext.read(repo / "notebooks" / "04_table1.md"), notebook)
        with pytest.raises(papermill.PapermillExecutionError, match=r"is outside the repository's results folder"):
            papermill.execute_notebook(str(notebook), str(victim.parent / "out.ipynb"), kernel_name="python3",
                                       parameters=self._params(victim), cwd=str(victim.parent), progress_bar=False)
        assert sorted(p.name for p in victim.iterdir()) == ["passwd"]


# ---------------------------------------------------------------- 3. the book check knows what the book should hold

def small_book(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A built book in miniature, made by the same builders as `make book`'s pages: a front page
    with the glued verdicts at a glance, the Table 1 page (its table and a pasted number) and a
    page with the budget sentence; their sources and table of contents. (html, results, toc)."""
    from scvae_core.book import glued, tables
    from scvae_core.presets import TABLE1

    res, src, site = tmp_path / "results", tmp_path / "src", tmp_path / "html"
    for i, model in enumerate(TABLE1):
        for seed in (0, 1):
            write_eval(res, "cpu", model, seed, nll=90.0 + i + 0.25 * seed, acc=0.9 - 0.01 * i,
                       prop3_layers=[] if model.startswith("scvae") else None)
    for model, nll in (("vae-1l", 113.46), ("vae-q++", 120.5)):  # the budget sentence's two models
        for seed in (0, 1):
            write_eval(res, "cpu", model, seed, nll=nll)
        write_eval(res, "cpu-long", model, 0, nll=nll - 19.65)
    pages = {
        "book/intro": ("# SCVAE\n\n```{glue:any} glance\n:doc: ../notebooks/06_verdicts.ipynb\n```\n",
                       tables.glance_table(res).to_html()),
        "notebooks/04_table1": ('HTML(build_table("table1", results_dir, shown).to_html())\n\n'
                                "SCVAE's test NLL is {glue:text}`scvae_nll:.2f` nats.\n",
                                tables.build_table("table1", res, "cpu").to_html()
                                + f'<p>SCVAE\'s test NLL is <span class="pasted-text">'
                                f'{glued.table1_numbers(res, "cpu")["scvae_nll"]:.2f}</span> nats.</p>'),
        "notebooks/08_differences": ('HTML(build_text("budget", results_dir).to_html())\n',
                                     tables.build_text("budget", res).to_html()),
    }
    (src / "notebooks").mkdir(parents=True)
    (src / "book").mkdir()
    (src / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/04_table1\n"
                                  "  - file: notebooks/08_differences\n")
    for name, (source, body) in pages.items():
        (src / f"{name}.md").write_text(source)
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / f"{name}.html").write_text(f"<html><body><nav>menu</nav><main>{body}</main></body></html>")
    (site / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    return site, res, src / "_toc.yml"


class TestBookCheckKnowsWhatShouldBeThere:
    pytestmark = pytest.mark.unit

    @pytest.fixture
    def book(self, tmp_path):
        from scvae_core.book.bookcheck import check_book

        site, res, toc = small_book(tmp_path)

        def check() -> list[str]:
            return check_book(site, res, sources=toc.parent / "notebooks", toc=toc)

        assert check() == [], "the untouched book should pass"
        return site, check

    def _tamper(self, site: Path, page: str, change) -> None:
        from bs4 import BeautifulSoup

        path = site / f"{page}.html"
        soup = BeautifulSoup(path.read_text(), "html.parser")
        change(soup)
        path.write_text(str(soup))

    @pytest.mark.parametrize("page, selector, what", [
        ("notebooks/04_table1", "table#table1", "table 'table1'"),  # on the Table 1 page
        ("book/intro", "table#glance", "table 'glance'"),  # on the front page
        ("notebooks/08_differences", "div.scvae-text", "sentence 'budget'"),
    ])
    def test_a_deleted_table_or_sentence_fails_it(self, book, page, selector, what):
        site, check = book
        self._tamper(site, page, lambda soup: soup.select_one(selector).decompose())
        assert check() == [f"{page}.html: the generated {what} is missing, though {Path(page).name}.md shows it (run "
                           "`make book` to rebuild the pages from the current results)"]

    def test_a_deleted_page_fails_it(self, book):
        site, check = book
        (site / "notebooks" / "08_differences.html").unlink()
        assert check() == ["notebooks/08_differences.html: missing, though _toc.yml lists notebooks/08_differences "
                           "(run `make book` to rebuild the pages from the current results)"]

    def test_a_number_changed_inside_a_generated_sentence_fails_it(self, book):
        site, check = book
        sentence = "moved its test NLL from 113.46 to 93.81 nats"

        def edit(soup):
            node = soup.find(string=re.compile(re.escape(sentence)))
            node.replace_with(node.replace("93.81", "99.81"))

        assert sentence in (site / "notebooks" / "08_differences.html").read_text()
        self._tamper(site, "notebooks/08_differences", edit)
        problems = check()
        assert len(problems) == 1 and "notebooks/08_differences.html: sentence 'budget' (preset 'none'): shows" \
            in problems[0] and "99.81" in problems[0] and "93.81" in problems[0] and "stale or edited" in problems[0]

    def test_a_deleted_pasted_number_fails_it(self, book):
        site, check = book
        self._tamper(site, "notebooks/04_table1", lambda soup: soup.select_one("span.pasted-text").decompose())
        assert any("pasted numbers but 04_table1.md pastes 1" in p for p in check())

    def test_every_page_source_shows_its_tables_and_sentences_by_id(self):
        """The book's own sources: every table and sentence a page shows is one the check can find
        there and rebuild (by id), so that a page cannot show one the check does not know of."""
        from scvae_core.book.bookcheck import SHOWS, TOC, toc_pages
        from scvae_core.book.tables import TABLES, TEXTS

        shown = {kind: set() for kind in ("table", "text")}
        for name in toc_pages(TOC):
            source = TOC.parent / f"{name}.md"
            code = re.sub(r'glue\("[^"]+", HTML\(', "", source.read_text())  # glued: checked where it is pasted
            assert not re.search(r"\bMarkdown\(\w+_text\(|HTML\((?!build_)\w+\([^)]*\)\.to_html", code), \
                f"{source}: shows a table or sentence without build_table/build_text"
            for kind, item in SHOWS.findall(code):
                shown[kind].add(item)
        assert shown["table"] <= set(TABLES) and shown["text"] <= set(TEXTS) and len(shown["text"]) >= 7, shown
