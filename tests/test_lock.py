"""The per-run lock: a second writer is refused naming the holder, or waits for it; a lock
left by a killed process is taken over; train_run and evaluate_run both take it."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scvae_core import cli, lock
from scvae_core.lock import LOCK_NAME, RunLocked, live_holder, read_holder, run_lock
from scvae_core.results import ResultError

REPO = Path(__file__).resolve().parent.parent
HOLD = """
import sys, time
from scvae_core.lock import run_lock
from pathlib import Path
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    (Path(sys.argv[1]) / "finished").touch()  # the last thing it does while holding the lock
"""


def hold_in_subprocess(run_dir: Path, seconds: float) -> subprocess.Popen:
    """Another process that takes the lock and keeps it for ``seconds``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), str(seconds)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.unit
def test_second_writer_is_refused_with_the_holders_host_and_pid(tmp_path):
    holder = hold_in_subprocess(tmp_path, 60)
    try:
        with pytest.raises(RunLocked) as e:
            with run_lock(tmp_path):
                pass
        assert f"PID {holder.pid} on {socket.gethostname()}" in str(e.value)
        assert read_holder(tmp_path)["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.unit
def test_a_waiting_writer_gets_the_lock_when_the_holder_finishes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(lock, "POLL_S", 0.05)
    holder = hold_in_subprocess(tmp_path, 1.0)
    start = time.monotonic()
    with run_lock(tmp_path, wait=30):
        assert read_holder(tmp_path)["pid"] == os.getpid()
        assert (tmp_path / "finished").exists()  # it had finished: we never held the run together
    assert holder.wait(timeout=30) == 0
    assert time.monotonic() - start >= 0.5
    assert f"waiting for PID {holder.pid}" in capsys.readouterr().out
    assert not (tmp_path / LOCK_NAME).exists()  # released and removed


@pytest.mark.unit
def test_waiting_ends_after_the_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "POLL_S", 0.05)
    holder = hold_in_subprocess(tmp_path, 60)
    try:
        with pytest.raises(RunLocked, match=f"PID {holder.pid}"):
            with run_lock(tmp_path, wait=0.3):
                pass
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.unit
def test_a_killed_holders_lock_is_taken_over(tmp_path, capsys):
    assert live_holder(tmp_path) is None
    holder = hold_in_subprocess(tmp_path, 60)
    assert live_holder(tmp_path)["pid"] == holder.pid
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert read_holder(tmp_path)["pid"] == holder.pid  # the file is left behind, the flock is gone
    assert live_holder(tmp_path) is None
    with run_lock(tmp_path):
        assert read_holder(tmp_path)["pid"] == os.getpid()
    assert f"took over the lock left by PID {holder.pid}" in capsys.readouterr().out


@pytest.mark.unit
def test_reentrant_in_one_thread_exclusive_between_threads(tmp_path):
    errors = []

    def other():
        try:
            with run_lock(tmp_path):
                pass
        except RunLocked as e:
            errors.append(str(e))

    with run_lock(tmp_path):
        with run_lock(tmp_path):  # the executor's task around train_run's own
            pass
        assert read_holder(tmp_path)["pid"] == os.getpid()  # still held after the inner block
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert len(errors) == 1 and f"PID {os.getpid()}" in errors[0]
    with run_lock(tmp_path):  # free again
        pass


@pytest.mark.smoke
def test_train_and_evaluate_refuse_a_locked_run(tmp_path, data_dir, capsys):
    from scvae_core.evaluate import evaluate_run
    from scvae_core.results import RunPaths
    from scvae_core.train import train_run

    run_dir = RunPaths(tmp_path, "smoke", "vae-1l", 0).dir
    holder = hold_in_subprocess(run_dir, 60)
    try:
        for work in (train_run, evaluate_run):
            with pytest.raises(RunLocked, match=f"PID {holder.pid}"):
                work("vae-1l", "smoke", 0, device="cpu", results_dir=tmp_path, data_dir=data_dir, progress=False)
        for verb in ("train", "evaluate"):  # the command line: exit 2, naming the holder
            assert cli.main([verb, "vae-1l", "--preset", "smoke", "--device", "cpu", "--results-dir",
                             str(tmp_path)]) == 2
            assert f"another writer holds this run: PID {holder.pid}" in capsys.readouterr().err
        assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME]  # nothing was written
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.unit
def test_an_unwritable_results_folder_is_named_with_the_fix(tmp_path):
    (tmp_path / "results").write_text("a file, not a folder")
    with pytest.raises(ResultError, match=r"a file is in the way, not a folder. To fix: pass --results-dir a writable"):
        with run_lock(tmp_path / "results" / "smoke" / "vae-1l" / "seed0"):
            pass
