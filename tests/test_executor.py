"""The executor for real: a Dask scheduler and two workers started with Dask's own commands
on 127.0.0.1, a smoke stage through them, one worker killed by its PID in mid-run; every run
completes, each exactly once, with the files of a run in this process. Plus the small parts:
GPU shares, bad layouts and addresses."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scvae_core import cli
from scvae_core.runner.executor import INLINE, RunSpec, execute, gpu_share, task_resources
from scvae_core.lock import LOCK_NAME, read_holder
from scvae_core.presets import get_preset
from scvae_core.runner.reproduce import reproduce
from scvae_core.results import RunPaths, read_json, read_npz

REPO = Path(__file__).resolve().parent.parent
DASK = Path(sys.executable).parent / "dask"
STAGE, SEEDS = "activation", [1, 2]  # 4 smoke runs; seed 0 would add minutes of t-SNE
DEADLINE_S = 300  # the whole distributed run; it takes well under a minute on a quiet machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the dask scheduler exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"no dask scheduler on port {port} after {timeout} s")


def deterministic(paths: RunPaths) -> dict:
    """What a run's files say that does not depend on when, where or how fast it ran."""
    train = read_json(paths.train_json, "train")
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in train["history"]]
    evaluation = read_json(paths.eval_json, "eval")
    figures = read_npz(paths.figures_npz)
    return {"history": history, **{k: train[k] for k in ("best_epoch", "best_valid_elbo", "epochs_run", "stopped")},
            **{k: evaluation[k] for k in ("metrics", "fisher", "derivations")},
            "figures": {k: v.tolist() for k, v in sorted(figures.items())}}


@pytest.fixture
def dask_cluster(tmp_path):
    """`dask scheduler` and two `dask worker` processes (no nanny: the worker's PID is the
    process that runs the task and holds the run's lock); all stopped by PID afterwards."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    common = ["--host", "127.0.0.1", "--no-dashboard"]
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        log = open(tmp_path / "scheduler.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen([str(DASK), "scheduler", "--port", str(port), *common], cwd=REPO, env=env,
                                      stdout=log, stderr=subprocess.STDOUT))
        wait_for_port(port, procs[0])
        workers = []
        for i in range(2):
            log = open(tmp_path / f"worker{i}.log", "w")
            logs.append(log)
            workers.append(subprocess.Popen(
                [str(DASK), "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-nanny", "--name", f"w{i}",
                 "--local-directory", str(tmp_path / f"worker{i}"), "--death-timeout", "60", *common],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
        procs += workers
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield f"tcp://127.0.0.1:{port}", workers, tmp_path
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for log in logs:
            log.close()


@pytest.mark.smoke
def test_a_killed_worker_is_replaced_and_every_run_completes_once_as_locally(dask_cluster, data_dir):
    address, workers, tmp = dask_cluster
    results_dir = tmp / "distributed"
    models = get_preset("smoke").stage_models(STAGE)
    runs = [RunPaths(results_dir, "smoke", m, s) for m in models for s in SEEDS]
    pids = {w.pid for w in workers}
    result: dict = {}

    def stage():
        try:
            result["summary"] = reproduce([STAGE], "smoke", seeds=SEEDS, device="cpu", results_dir=results_dir,
                                          data_dir=data_dir,
                                          progress=False, threads=1, scheduler=address)[STAGE]
        except BaseException as e:  # noqa: BLE001  (re-raised in the test's thread below)
            result["error"] = e

    thread = threading.Thread(target=stage, daemon=True)
    start = time.monotonic()
    thread.start()
    # Kill the worker that holds a run's lock once that run has a checkpoint and no eval.json:
    # it dies inside train_run or evaluate_run, with part of the run on disk.
    killed = None
    while killed is None and thread.is_alive() and time.monotonic() - start < DEADLINE_S:
        for paths in runs:
            holder = read_holder(paths.dir)
            if holder and holder["pid"] in pids and paths.last_ckpt.exists() and not paths.eval_json.exists():
                os.kill(holder["pid"], signal.SIGKILL)
                killed = (paths, holder["pid"])
                break
        time.sleep(0.01)
    assert killed is not None, "the stage ended before a run could be caught mid-flight"
    thread.join(DEADLINE_S - (time.monotonic() - start))
    assert not thread.is_alive(), f"the stage did not finish within {DEADLINE_S} s"
    if "error" in result:
        raise result["error"]

    victim, dead_pid = killed
    survivor = next(w for w in workers if w.pid != dead_pid)
    assert next(w for w in workers if w.pid == dead_pid).wait(timeout=30) == -signal.SIGKILL
    # The stage summary covers the preset's seeds (0 is not asked for here); the invocation's
    # record, what this reproduce did, holds exactly the runs asked for.
    summary, asked = result["summary"], sorted((p.model, p.seed) for p in runs)
    invocation = summary["last_invocation"]
    assert sorted((r["model"], r["seed"]) for r in invocation["runs"]) == asked
    assert all(r["action"] == "done" for r in invocation["runs"]), invocation
    assert sorted((r["model"], r["seed"]) for r in summary["runs"] if r["status"] == "done") == asked, summary
    # Exactly once: each run's train.json was written by one process, one time; the killed run
    # was continued from its files by the survivor (resumed, or found trained), never redone.
    logs = {i: (tmp / f"worker{i}.log").read_text() for i in range(2)}
    for paths in runs:
        writes = sum(len(re.findall(rf"wrote {re.escape(str(paths.train_json))}\n", log)) for log in logs.values())
        assert writes == 1 or (paths == victim and writes == 0), paths.dir
        assert not (paths.dir / LOCK_NAME).exists()  # released, the dead worker's taken over
    after_kill = logs[workers.index(survivor)]
    assert f"took over the lock left by PID {dead_pid}" in after_kill
    assert f"{victim.model}: resuming from {victim.last_ckpt}" in after_kill \
        or f"{victim.train_json}: already trained" in after_kill

    local = tmp / "local"
    reproduce([STAGE], "smoke", seeds=SEEDS, device="cpu", results_dir=local, data_dir=data_dir, progress=False,
              threads=1, scheduler=INLINE)
    for paths in runs:
        mine = RunPaths(local, paths.preset, paths.model, paths.seed)
        assert deterministic(paths) == deterministic(mine), f"{paths.dir} differs from {mine.dir}"


@pytest.mark.unit
def test_gpu_shares_add_up_to_one_gpu_exactly():
    for k in range(1, 65):
        left = 1.0
        for _ in range(k):
            assert left >= gpu_share(k), k  # the k-th run still fits
            left -= gpu_share(k)
    assert task_resources("cuda", 3) == {"GPU": gpu_share(3)} and task_resources("cuda:1", 1) == {"GPU": 1.0}
    assert task_resources("cpu", 3) is None and task_resources("auto", 3) is None
    with pytest.raises(ValueError, match="--runs-per-gpu"):
        gpu_share(0)


@pytest.mark.unit
def test_bad_layouts_and_addresses_are_refused_before_any_work(tmp_path, capsys):
    for argv, message in ((["--jobs", "0"], "--jobs must be >= 1"), (["--threads", "0"], "--threads must be >= 1"),
                          (["--scheduler", "localhost:8786"], "give a Dask scheduler address")):
        assert cli.main(["reproduce", "table1", "--results-dir", str(tmp_path), *argv]) == 2
        assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.unit
def test_a_failing_run_does_not_stop_the_others(tmp_path, monkeypatch):
    from scvae_core import evaluate, train

    def train_run(model, preset, seed, **kw):
        if model == "vae-1l":
            raise ValueError("diverged, say")
        return {"epochs_run": 1, "stopped": "max_epochs"}

    monkeypatch.setattr(train, "train_run", train_run)
    monkeypatch.setattr(evaluate, "evaluate_run", lambda *a, **kw: None)
    specs = [RunSpec(m, "smoke", 0, str(tmp_path), "cpu") for m in ("vae-1l", "scvae")]
    done = []
    with pytest.raises(RuntimeError, match=r"1 of 2 runs failed.*\n  vae-1l seed 0: ValueError: diverged, say"):
        for record in execute(specs, INLINE):
            done.append(record["model"])
    assert done == ["scvae"]


@pytest.mark.unit
def test_cli_help_names_the_executor_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--help"])
    text = capsys.readouterr().out
    assert all(opt in text for opt in ("--jobs", "--threads", "--scheduler", "--runs-per-gpu"))
