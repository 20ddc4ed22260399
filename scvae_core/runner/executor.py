"""Where runs execute: each (model, seed) run is one task of Dask distributed, trained and
evaluated by one worker, locally or on a cluster.

- local (the default): a ``LocalCluster`` of ``jobs`` worker processes, one run at a time
  each, with ``threads`` torch threads per run (``DEFAULT_JOBS`` x ``DEFAULT_THREADS`` was
  measured fastest on this project's 2-core machine by layouts.py; README, "Parallel runs, clusters and a GPU"),
  reached over TLS with credentials made for it (:func:`local_security`);
- ``tcp://HOST:PORT``: a running Dask scheduler and its workers (``dask scheduler``,
  ``dask worker``, or dask-jobqueue's ``SLURMCluster``/``PBSCluster``; book/scale.md);
- ``inline``: one run after another in this process, without Dask (debugging, tests that
  stand in for training).

A task takes the run's lock (``lock.py``) for the whole run, so two workers never write one
run. A worker that dies is noticed by the scheduler, which gives its task to another
worker; there ``train_run`` resumes from the run's ``last.pt``. That needs the results
folder on a file system every worker shares: without one, the retried run starts again
from nothing on its new worker, and the results end up spread over the workers' disks.

This module imports Dask only inside the functions that use it: the GPU sprint (sprint.py)
runs the same task with the standard library's process pool on machines without Dask.
"""
from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..lock import run_lock
from ..presets import DEFAULT_DATASET
from ..results import RunPaths

INLINE = "inline"
# Measured on this project's 2-core machine, busy with other work, smoke table1 stage (README,
# "Parallel runs, clusters and a GPU"): two worker processes of one thread beat one of two threads.
DEFAULT_JOBS = 2
DEFAULT_THREADS = 1
GPU = "GPU"  # the Dask resource a --device cuda task asks for


@dataclass(frozen=True)
class RunSpec:
    """Everything one task needs: plain values, so that it travels to any worker."""

    model: str
    preset: str
    seed: int
    results_dir: str
    device: str = "auto"
    data_dir: str | None = None
    threads: int = DEFAULT_THREADS
    budget_s: float | None = None  # training's wall-clock budget in seconds (the GPU sprint) ...
    train_until: float | None = None  # ... and/or the time.time() by which training should end
    progress: bool = False
    dataset: str = DEFAULT_DATASET

    @property
    def key(self) -> str:
        on = "" if self.dataset == DEFAULT_DATASET else f"-{self.dataset}"
        return f"run-{self.preset}-{self.model}-seed{self.seed}{on}"


def run_one(spec: RunSpec) -> dict:
    """The task: train then evaluate one run under its lock; what was done, where, how long.

    Both steps skip what is complete and up to date, and training resumes from ``last.pt``,
    so a task that runs again after its worker died continues where the dead one stopped.
    """
    import torch

    from ..evaluate import evaluate_run
    from ..train import train_run

    start = time.monotonic()
    threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    paths = RunPaths(Path(spec.results_dir), spec.preset, spec.model, spec.seed, spec.dataset)
    try:
        # wait: a task retried while its first worker is only cut off, not dead, waits for it.
        with run_lock(paths.dir, wait=math.inf):
            before = _mtime(paths.eval_json)
            trained = train_run(spec.model, spec.preset, spec.seed, device=spec.device, results_dir=spec.results_dir,
                                data_dir=spec.data_dir, progress=spec.progress, budget_s=_budget(spec),
                                dataset=spec.dataset)
            evaluate_run(spec.model, spec.preset, spec.seed, device=spec.device, results_dir=spec.results_dir,
                         data_dir=spec.data_dir, progress=spec.progress, dataset=spec.dataset)
            # An eval.json left untouched means both found the run complete and up to date.
            action = "skipped" if before is not None and _mtime(paths.eval_json) == before else "done"
    finally:
        torch.set_num_threads(threads)
    return {"model": spec.model, "seed": spec.seed, "action": action, "seconds": round(time.monotonic() - start, 2),
            "epochs_run": trained["epochs_run"], "stopped": trained["stopped"],
            "host": socket.gethostname(), "pid": os.getpid()}


def _budget(spec: RunSpec) -> float | None:
    """Training seconds left for this run: its own budget, cut to its deadline if that is sooner."""
    limits = [b for b in (spec.budget_s, spec.train_until and spec.train_until - time.time()) if b is not None]
    return max(0.0, min(limits)) if limits else None


def _mtime(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


class RunsFailed(RuntimeError):
    """Some runs raised; the others completed. Names each failed run and its error."""


def gpu_share(runs_per_gpu: int) -> float:
    """The part of a GPU one run asks for: 1/K rounded down to a multiple of 2**-20, so that
    K shares add up to exactly one GPU (1/K in floating point does not: 1 - 8/9 < 1/9)."""
    if runs_per_gpu < 1:
        raise ValueError(f"--runs-per-gpu must be >= 1, got {runs_per_gpu}")
    return math.floor(2**20 / runs_per_gpu) / 2**20


def task_resources(device: str, runs_per_gpu: int) -> dict | None:
    """What a task asks the scheduler for: a share of a GPU for CUDA runs, nothing on CPU."""
    return {GPU: gpu_share(runs_per_gpu)} if str(device).startswith("cuda") else None


def check_layout(jobs: int, threads: int, runs_per_gpu: int = 1) -> None:
    gpu_share(runs_per_gpu)  # checks it
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1 (worker processes), got {jobs}")
    if threads < 1:
        raise ValueError(f"--threads must be >= 1 (torch threads per run), got {threads}")


def check_scheduler(scheduler: str | None) -> None:
    if scheduler is not None and scheduler != INLINE and "://" not in scheduler:
        raise ValueError(f"--scheduler {scheduler!r}: give a Dask scheduler address such as tcp://HOST:8786, "
                         f"or {INLINE!r} to run in this process")


REACH_S = 5.0  # how long reaching a --scheduler may take before it is called unreachable


def reach_scheduler(scheduler: str | None, timeout: float = REACH_S) -> None:
    """Fail in seconds, before any work or file, if nothing answers at a ``--scheduler`` address
    (Dask's own client would wait 30 s and end in a raw OSError)."""
    from urllib.parse import urlsplit

    if scheduler in (None, INLINE):
        return
    address = urlsplit(scheduler)
    try:
        host, port = address.hostname, address.port
    except ValueError:  # a port that is not a number
        host = port = None
    if not host or not port:
        raise ValueError(f"--scheduler {scheduler!r}: give HOST and PORT, as in tcp://HOST:8786")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise ValueError(f"--scheduler {scheduler}: no Dask scheduler answers there ({e.strerror or e}). To fix: "
                         "start the scheduler and its workers (`dask scheduler`, `dask worker ADDRESS`; book/scale.md) "
                         "and check the address, or leave out --scheduler to run on local workers") from None


def execute(specs: list[RunSpec], scheduler: str | None = None, jobs: int = DEFAULT_JOBS,
            runs_per_gpu: int = 1) -> Iterator[dict]:
    """Run every spec as a task; yield each run's record as it completes (in any order).

    ``scheduler``: None for a local cluster of ``jobs`` worker processes, ``tcp://HOST:PORT``
    for a running one, ``inline`` for this process. A run that raises does not stop the
    others; after the last one, :class:`RunsFailed` lists every failure.
    """
    check_scheduler(scheduler)
    failures: list[str] = []
    outcomes = _execute_inline(specs) if scheduler == INLINE else _execute_dask(specs, scheduler, jobs, runs_per_gpu)
    for spec, record, error in outcomes:
        if error is None:
            yield record
        else:
            failures.append(f"{spec.model} seed {spec.seed}: {type(error).__name__}: {error}")
    if failures:
        raise RunsFailed(f"{len(failures)} of {len(specs)} runs failed (the others completed):\n  "
                         + "\n  ".join(failures))


def _execute_inline(specs):
    for spec in specs:
        try:
            yield spec, run_one(spec), None
        except Exception as e:  # noqa: BLE001  (reported with the others once every run is done)
            yield spec, None, e


def local_security():
    """TLS credentials made for one local cluster, in memory only (Dask's own
    ``Security.temporary``): its scheduler and workers accept only clients that present them,
    so that another user of this machine cannot connect to their ports and run code in them."""
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError:
        raise ValueError("the local cluster's TLS credentials need the `cryptography` package, a dependency of "
                         "scvae-core. To fix: reinstall the package (`make venv`, or pip install -e .), or pass "
                         f"--scheduler {INLINE} to run without Dask") from None


def _local_cluster(jobs: int, device: str, runs_per_gpu: int):
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=jobs, threads_per_worker=1, processes=True,  # one run per worker process at a time
        dashboard_address=None,  # no fixed port: several clusters may run on one machine
        resources=task_resources(device, runs_per_gpu) or {},  # locally, each worker is one GPU share
        scheduler_port=0, host="127.0.0.1",
        security=local_security())  # tls:// with credentials only this process and its workers hold


def _execute_dask(specs, scheduler, jobs, runs_per_gpu):
    from contextlib import ExitStack

    from distributed import Client, as_completed

    with ExitStack() as stack:
        if scheduler is None:
            device = specs[0].device if specs else "cpu"
            cluster = stack.enter_context(_local_cluster(jobs, device, runs_per_gpu))
            client = stack.enter_context(Client(cluster, security=cluster.security))
        else:
            client = stack.enter_context(Client(scheduler, timeout="30s"))
        by_future = {client.submit(run_one, spec, key=spec.key, resources=task_resources(spec.device, runs_per_gpu)):
                     spec for spec in specs}
        for future in as_completed(by_future):
            try:
                yield by_future[future], future.result(), None
            except Exception as e:  # noqa: BLE001  (a task's error of any kind, or KilledWorker)
                yield by_future[future], None, e

