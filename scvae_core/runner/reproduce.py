"""Stages end to end: train and evaluate every model and seed of a stage, resumably.

Each run is one task of the executor (``executor.py``), which trains and evaluates it.
``train_run`` and ``evaluate_run`` decide themselves what is complete and up to date (and
resume a partly trained model from its checkpoint), so ``reproduce`` simply calls both for
every run: re-running an interrupted stage does only what is missing. After each stage a
``results/<preset>/stage-<stage>.json`` records which runs completed and how long they took,
all of it read from the run files (:func:`stage_summary`), and what the invocation did on which
machine. The runs' part is rewritten whenever runs change under it (`scvae reproduce`, `scvae
train`, `scvae evaluate`, `scvae status --write-summaries`), and a test compares every committed
summary with the runs beside it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from .executor import (DEFAULT_JOBS, DEFAULT_THREADS, INLINE, RunSpec, check_layout, check_scheduler, execute,
                       reach_scheduler)
from ..lock import describe, live_holder, remove_if_free
from ..presets import DEFAULT_DATASET, PRESETS, get_preset, run_preset
from ..results import (DEFAULT_RESULTS_DIR, ResultError, RunPaths, check_writable, make_results_dir, open_regular,
                      preset_dir, provenance, read_json, write_json)
from ..runs import seeds_on_disk
from ..zoo import check_name

ALL = "all"
STATUSES = ("done", "invalid", "partial", "todo")


class PlannedRun(NamedTuple):
    stage: str
    model: str
    seed: int
    status: str  # "done": a valid eval.json and figures.npz | "invalid": a result file that is refused on
    # read (corrupt, truncated, of another run or settings, non-finite) | "partial": started | "todo": nothing
    problem: str | None = None  # why it is invalid
    progress: str | None = None  # how far a partial run is (:func:`partial_progress`)


def expand_stages(stages, preset_name: str) -> list[str]:
    """Stage names in the order given, ``all`` standing for every stage of the preset."""
    preset = get_preset(preset_name)
    order: list[str] = []
    for stage in stages:
        check_name("stage", stage, [*preset.stages, ALL])
        for s in preset.stages if stage == ALL else [stage]:
            if s not in order:
                order.append(s)
    return order


def stage_seeds(stage: str, preset_name: str, seeds=None) -> tuple[int, ...]:
    return tuple(seeds) if seeds is not None else tuple(get_preset(preset_name).seeds[stage])


def run_status(results_dir: Path | str, preset_name: str, model: str, seed: int, dataset: str = DEFAULT_DATASET) -> str:
    """What the files of one run amount to; an "invalid" one is refused by the book, and
    `scvae evaluate` / `scvae train` compute it again."""
    return run_state(results_dir, preset_name, model, seed, dataset)[0]


def run_state(results_dir: Path | str, preset_name: str, model: str, seed: int,
              dataset: str = DEFAULT_DATASET) -> tuple[str, str | None]:
    """:func:`run_status` and, for an invalid run, why."""
    from ..runs import load_eval, load_figures_npz, load_train

    paths = RunPaths(Path(results_dir), preset_name, model, seed, dataset)
    epochs = run_preset(preset_name, model, dataset).eval_epochs or (None,)  # every evaluation the run owes
    try:
        present = [e for e in epochs if paths.eval_json_at(e).exists()]
        for e in present:
            load_eval(results_dir, preset_name, model, seed, e, dataset=dataset)
            load_figures_npz(paths, e)
        if len(present) == len(epochs):
            return "done", None
        if paths.train_json.exists():
            load_train(paths)
    except ResultError as e:
        return "invalid", str(e)
    return ("partial" if paths.dir.is_dir() and any(paths.dir.iterdir()) else "todo"), None


def _checkpoint_epoch(path: Path) -> int | None:
    """The epoch a checkpoint was written after, or None if it cannot be read (mapped, not loaded)."""
    import torch

    try:
        os.close(open_regular(path))  # not a FIFO, which would block status, nor a link
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["progress"]["epoch"])
    except Exception:  # noqa: BLE001  (status reports; `scvae train` says what is wrong with it)
        return None


def partial_progress(results_dir: Path | str, preset_name: str, model: str, seed: int, dataset: str = DEFAULT_DATASET) -> str:
    """How far a started run is: the epoch of its last checkpoint (or that it is trained), the
    evaluations written, and whether a process holds its lock now."""
    paths = RunPaths(Path(results_dir), preset_name, model, seed, dataset)
    preset = run_preset(preset_name, model, dataset)
    parts = []
    if paths.train_json.exists():
        parts.append("trained")
    elif paths.last_ckpt.exists():
        epoch = _checkpoint_epoch(paths.last_ckpt)
        parts.append(f"epoch {epoch} of {preset.epochs}" if epoch is not None else "an unreadable checkpoint")
    evaluated = [str(e) for e in preset.eval_epochs if paths.eval_json_at(e).exists()]
    if evaluated:
        parts.append(f"evaluated at epoch {', '.join(evaluated)}")
    holder = live_holder(paths.dir)
    if holder is not None:
        parts.append(f"running now: {describe(holder)}")
    return "; ".join(parts)


def plan(stages, preset_name: str, seeds=None, results_dir: Path | str = DEFAULT_RESULTS_DIR,
         dataset: str = DEFAULT_DATASET) -> list[PlannedRun]:
    """Every (stage, model, seed) the stages consist of, with what is already on disk of ``dataset``."""
    preset = get_preset(preset_name)
    runs = []
    for stage in expand_stages(stages, preset_name):
        for model in preset.stage_models(stage):
            for seed in stage_seeds(stage, preset_name, seeds):
                status, problem = run_state(results_dir, preset_name, model, seed, dataset)
                progress = (partial_progress(results_dir, preset_name, model, seed, dataset) if status == "partial"
                            else None)
                runs.append(PlannedRun(stage, model, seed, status, problem, progress))
    return runs


def format_plan(runs: list[PlannedRun]) -> str:
    """The table ``scvae status`` prints."""
    lines = [f"{'stage':8s} {'model':18s} {'seed':>4s}  status"]
    lines += [f"{r.stage:8s} {r.model:18s} {r.seed:4d}  {r.status}" + (f" ({r.progress})" if r.progress else "")
              for r in runs]
    counts = ", ".join(f"{sum(r.status == s for r in runs)} {s}" for s in STATUSES)
    lines.append(f"{len(runs)} runs: {counts}")
    lines += [f"invalid: {r.problem}" for r in runs if r.problem]
    return "\n".join(lines)


def stage_path(results_dir: Path | str, preset_name: str, stage: str, dataset: str = DEFAULT_DATASET) -> Path:
    return preset_dir(results_dir, preset_name, dataset) / f"stage-{stage}.json"


def _wall_time(path: Path, kind: str) -> float | None:
    try:
        return read_json(path, kind).get("wall_time_s") if path.exists() else None
    except ResultError:  # `scvae status` lists the run as invalid and why; its time is unknown
        return None


def run_seconds(results_dir: Path | str, preset_name: str, model: str, seed: int,
                dataset: str = DEFAULT_DATASET) -> tuple[float | None, float | None]:
    """A run's own train and evaluate wall times from its files, each added up over every invocation
    that resumed it (evaluate: every epoch the preset evaluates at); None where a file is missing."""
    paths = RunPaths(Path(results_dir), preset_name, model, seed, dataset)
    evals = [s for e in run_preset(preset_name, model, dataset).eval_epochs or (None,)
             if (s := _wall_time(paths.eval_json_at(e), "eval")) is not None]
    return _wall_time(paths.train_json, "train"), (sum(evals) if evals else None)


def stage_runs(results_dir: Path | str, preset_name: str, stage: str, dataset: str = DEFAULT_DATASET) -> list[tuple[str, int]]:
    """Every (model, seed) of a stage: the preset's seeds, and any other seed a model has on disk
    (runs trained one at a time count too)."""
    return [(m, s) for m in get_preset(preset_name).stage_models(stage)
            for s in sorted({*stage_seeds(stage, preset_name), *seeds_on_disk(results_dir, preset_name, m, dataset)})]


def stage_summary(results_dir: Path | str, preset_name: str, stage: str, dataset: str = DEFAULT_DATASET) -> dict:
    """What a stage's runs on disk amount to: each run's state and own wall times (train, and
    evaluate over every epoch evaluated), and the totals. Everything here follows from the run
    files, so a summary on disk can be checked against them."""
    runs, files_s = [], 0.0
    for model, seed in stage_runs(results_dir, preset_name, stage, dataset):
        train_s, eval_s = run_seconds(results_dir, preset_name, model, seed, dataset)
        files_s += (train_s or 0.0) + (eval_s or 0.0)
        runs.append({"model": model, "seed": seed, "status": run_status(results_dir, preset_name, model, seed, dataset),
                     "train_wall_time_s": train_s, "eval_wall_time_s": eval_s})
    completed = sum(r["status"] == "done" for r in runs)
    return {"stage": stage, "preset": preset_name, "models": list(get_preset(preset_name).stage_models(stage)),
            "seeds": sorted({r["seed"] for r in runs}), "runs": runs, "completed": completed, "total": len(runs),
            "complete": completed == len(runs), "runs_wall_time_s": round(files_s, 2)}


def invocation_record(preset_name: str, stage: str, seeds, actions: dict, invocation_s: float, device: str) -> dict:
    """What one `scvae reproduce` (or sprint) did to a stage: each run's action and seconds in this
    invocation, its wall time, and the machine."""
    runs = []
    for model in get_preset(preset_name).stage_models(stage):
        for seed in seeds:
            action, seconds = actions.get((model, seed), ("not reached", 0.0))
            runs.append({"model": model, "seed": seed, "action": action, "seconds": round(seconds, 2)})
    return {"seeds": list(seeds), "runs": runs, "wall_time_s": round(invocation_s, 2),
            "provenance": provenance(device=device)}


def _last_invocation(old: dict) -> dict | None:
    """The invocation record of a summary on disk; one written before runs and invocation were
    kept apart (up to da3c608) has it spread over its runs, and is read as such."""
    if "last_invocation" in old or "runs" not in old:
        return old.get("last_invocation")
    return {"seeds": old.get("seeds"), "runs": [{"model": r["model"], "seed": r["seed"], "action": r.get("action"),
                                                 "seconds": r.get("invocation_s")} for r in old["runs"]],
            "wall_time_s": (old.get("wall_time_s") or {}).get("this_invocation"), "provenance": old.get("provenance")}


def write_stage_summary(results_dir, preset_name: str, stage: str, invocation: dict | None = None,
                        dataset: str = DEFAULT_DATASET) -> dict:
    """stage-<stage>.json: :func:`stage_summary` and the last invocation's record (``invocation``;
    without one, the record already on disk is kept). Without an invocation, a summary that still
    matches its runs is left as it is, so refreshing changes no file that is up to date."""
    path = stage_path(results_dir, preset_name, stage, dataset)
    old = read_json(path, "stage") if path.exists() else None
    summary = stage_summary(results_dir, preset_name, stage, dataset)
    if invocation is None and old is not None and "last_invocation" in old and stale_keys(old, summary) == []:
        return {k: v for k, v in old.items() if k not in ("schema_version", "kind")}
    last = invocation if invocation is not None else _last_invocation(old) if old is not None else None
    payload = {**summary, "last_invocation": last, "provenance": provenance()}
    write_json(path, "stage", payload)
    return payload


def stale_keys(doc: dict, summary: dict) -> list[str]:
    """The fields of a stage summary on disk (``doc``) that the runs no longer bear out."""
    return [k for k, v in summary.items() if doc.get(k) != v]


def refresh_stage_summaries(results_dir: Path | str, preset_name: str, stages=None,
                            model: str | None = None, dataset: str = DEFAULT_DATASET) -> list[Path]:
    """Rewrite the runs' part of every stage summary on disk of ``preset_name`` (of ``stages``, or
    of the stages that hold ``model``) where it no longer matches the runs; returns those rewritten."""
    preset = get_preset(preset_name)
    names = expand_stages(stages, preset_name) if stages else list(preset.stages)
    rewritten = []
    for stage in names:
        path = stage_path(results_dir, preset_name, stage, dataset)
        if path.exists() and (model is None or model in preset.stage_models(stage)):
            before = path.read_bytes()
            write_stage_summary(results_dir, preset_name, stage, dataset=dataset)
            if path.read_bytes() != before:
                rewritten.append(path)
    return rewritten


def _machine(paths: RunPaths) -> str:
    """The machine a run's training recorded (without a train.json: its evaluation's)."""
    epochs = run_preset(paths.preset, paths.model, paths.dataset).eval_epochs or (None,)
    for path, kind in [(paths.train_json, "train")] + [(paths.eval_json_at(e), "eval") for e in epochs]:
        try:
            return read_json(path, kind)["provenance"].get("device_name", "?")
        except (ResultError, AttributeError):  # missing or unreadable: the next file may say
            continue
    return "?"


def stage_times(results_dir: Path | str = DEFAULT_RESULTS_DIR, dataset: str = DEFAULT_DATASET) -> str:
    """Every stage of every preset with runs under ``results_dir``, read from the run files
    themselves (so runs trained one at a time count too): runs done of the stage's runs, their own
    wall times added up (train + evaluate, every invocation), and the machines that trained them."""
    lines = []
    for preset_name in PRESETS:
        if not preset_dir(results_dir, preset_name, dataset).is_dir():
            continue
        for stage in get_preset(preset_name).stages:
            runs = stage_runs(results_dir, preset_name, stage, dataset)
            done = [r for r in runs if run_status(results_dir, preset_name, *r, dataset) == "done"]
            if not done:
                continue
            by_machine: dict[str, list[float]] = {}  # machine -> each run's minutes
            for r in done:
                by_machine.setdefault(_machine(RunPaths(Path(results_dir), preset_name, *r, dataset)), []).append(
                    sum(x or 0.0 for x in run_seconds(results_dir, preset_name, *r, dataset)) / 60)
            total = sum(map(sum, by_machine.values()))
            # a stage trained on two machines: each one's share, since their speeds differ
            where = "; ".join(m if len(by_machine) == 1 else
                              f"{len(t)} run{'s' * (len(t) != 1)}, {sum(t):.1f} min on {m}"
                              for m, t in sorted(by_machine.items()))
            lines.append(f"{preset_name:9s} {stage:10s} {len(done):3d}/{len(runs):<3d} runs {total:7.1f} min  "
                         f"({where})")
    return "\n".join(lines) or f"no finished runs under {results_dir} yet: `scvae reproduce STAGE --preset PRESET`"


def reproduce(stages, preset_name: str, seeds=None, device: str = "auto", results_dir: Path | str = DEFAULT_RESULTS_DIR,
              data_dir=None, progress: bool = True, jobs: int | None = None, threads: int = DEFAULT_THREADS,
              scheduler: str | None = None, runs_per_gpu: int = 1, dataset: str = DEFAULT_DATASET) -> dict[str, dict]:
    """Train then evaluate each model and seed of each stage, every run a task of the executor
    (``executor.py``: ``jobs`` local worker processes of ``threads`` torch threads (default:
    ``DEFAULT_JOBS``, or ``runs_per_gpu`` with a CUDA device), a running
    Dask ``scheduler``, or ``inline``); returns the stage summaries, each written as soon as
    its last run is back (and, for all, when interrupted)."""
    from ..train import resolve_device

    runs = plan(stages, preset_name, seeds, results_dir, dataset)  # checks every name before any work starts
    if jobs is None:  # on one GPU, as many workers as runs may share it
        jobs = runs_per_gpu if str(device).startswith("cuda") else DEFAULT_JOBS
    check_layout(jobs, threads, runs_per_gpu)
    check_scheduler(scheduler)
    reach_scheduler(scheduler)
    make_results_dir(results_dir)
    check_writable(results_dir, 0)  # and the results folder: a failure must not come after the first run
    # On a cluster the workers resolve the device themselves; this machine may have no GPU.
    machine = device if scheduler not in (None, INLINE) else str(resolve_device(device))
    inline = scheduler == INLINE
    specs = {(r.model, r.seed): RunSpec(r.model, preset_name, r.seed, str(results_dir), device,
                                        data_dir and str(data_dir), threads, progress=progress and inline,
                                        dataset=dataset)
             for r in runs}
    stage_order = expand_stages(stages, preset_name)
    pending = {s: {(r.model, r.seed) for r in runs if r.stage == s} for s in stage_order}
    actions: dict[tuple[str, int], tuple[str, float]] = {}
    summaries: dict[str, dict] = {}
    start = time.monotonic()

    def summarise(stage: str) -> None:
        done = invocation_record(preset_name, stage, stage_seeds(stage, preset_name, seeds), actions,
                                 time.monotonic() - start, machine)
        summaries[stage] = write_stage_summary(results_dir, preset_name, stage, done, dataset)

    with tqdm(total=len(specs), desc=f"reproduce ({preset_name})", unit="run", disable=not progress) as bar:
        try:
            for rec in execute(list(specs.values()), scheduler, jobs, runs_per_gpu):
                run = (rec["model"], rec["seed"])
                actions[run] = (rec["action"], rec["seconds"])
                stage = ", ".join(s for s in stage_order if run in pending[s])
                tqdm.write(f"[{stage}] {rec['model']:18s} seed {rec['seed']}: {rec['action']:7s} "
                           f"{rec['seconds'] / 60:6.1f} min ({rec['host']}, PID {rec['pid']})")
                bar.update(1)
                for s in stage_order:
                    pending[s].discard(run)
                    if not pending[s] and s not in summaries:
                        summarise(s)
        finally:
            # Workers stopped with this command (Ctrl-C, SIGTERM) die holding their runs' locks: the
            # kernel frees them, and their files, free now, go too.
            for spec in specs.values():
                remove_if_free(RunPaths(Path(results_dir), preset_name, spec.model, spec.seed, dataset).dir)
            # Also written when interrupted or when a run failed: how far this invocation got.
            for s in stage_order:
                if s not in summaries:
                    summarise(s)
    return summaries


def ensure_results(stages, preset: str = "auto", seeds=None, device: str = "auto",
                   results_dir: Path | str = DEFAULT_RESULTS_DIR,
                   recompute: bool | str = False, results_dir_ok: bool = False) -> dict[str, str | None]:
    """What a notebook shows, per stage: the preset whose results it renders.

    ``recompute`` False renders what is on disk; True or ``"missing"`` first runs the stages
    (``reproduce`` only does what is missing; to redo finished runs, delete their files).
    With ``preset="auto"`` the book shows paper results where they exist, else cpu; asked to
    recompute, ``auto`` means cpu, the preset this machine can run. It writes only into the
    repository's results folder or one scvae created, unless ``results_dir_ok`` (params.py).
    """
    from ..book.params import check_notebook_params
    from ..runs import resolve_preset

    check_notebook_params(preset, seeds, device, results_dir, recompute, results_dir_ok)
    if recompute:
        reproduce(stages, "cpu" if preset == "auto" else preset, seeds=seeds, device=device, results_dir=results_dir)
    return {stage: resolve_preset(results_dir, stage, preset) for stage in stages}
