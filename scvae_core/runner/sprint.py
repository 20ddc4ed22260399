"""``scvae sprint``: the most of a short GPU loan, in one command.

Trains the ``paper`` preset's Table 1 models for seeds 0-2 all at once on one GPU, each run
with a wall-clock budget so that everything (training, then evaluation) ends inside
``--minutes``; each train.json says how many epochs it reached and why it stopped
(``stopped``: ``early_stopping``, ``max_epochs`` or ``time_budget``). Then it packs
``results/<preset>/`` without checkpoints into at most ``MAX_FILES`` files of at most
``MAX_FILE_BYTES`` each in ``--pack-dir``, the form in which results leave such a machine;
``scvae sprint --unpack DIR`` puts them back under ``results/``.

It runs on a foreign interpreter (Python 3.12, torch, scikit-learn, scipy, matplotlib, tqdm;
no Dask, no openTSNE, no internet), from the checkout with ``PYTHONPATH=.``: the runs go to
the standard library's process pool instead of Dask (the task is the executor's own
``run_one``), and evaluation skips t-SNE, saying so in eval.json, when openTSNE is missing.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from .executor import RunsFailed, RunSpec, check_layout, run_one
from ..presets import DEFAULT_DATASET, check_dataset, get_preset
from ..results import DEFAULT_RESULTS_DIR, preset_dir, provenance, write_json

STAGE = "table1"
SEEDS = (0, 1, 2)
MAX_FILES = 8  # what comes back from a GPU loan: at most 8 files ...
MAX_FILE_BYTES = 16 * 2**20  # ... of at most 16 MiB
MANIFEST = "MANIFEST.json"
ARCHIVE = "results.tar.gz"


def plan_budget(minutes: float, eval_minutes: float, runs: int, jobs: int) -> float:
    """Each run's training budget in seconds: the time left after the evaluation reserve,
    shared by the waves in which ``jobs`` processes work through ``runs`` runs."""
    if minutes <= 0 or eval_minutes < 0:
        raise ValueError(f"--minutes must be > 0 and --eval-minutes >= 0, got {minutes} and {eval_minutes}")
    waves = math.ceil(runs / jobs)
    return max(0.0, (minutes - eval_minutes) * 60 / waves)


def sprint(pack_dir: Path | str, preset_name: str = "paper", seeds=SEEDS, device: str = "auto",
           results_dir: Path | str = DEFAULT_RESULTS_DIR, data_dir=None, minutes: float = 9.0,
           eval_minutes: float = 3.0, jobs: int | None = None, threads: int = 1, progress: bool = True,
           revision: str | None = None, dataset: str = DEFAULT_DATASET) -> dict:
    """Run the stage's runs on ``dataset`` concurrently under budgets, write the sprint summary, pack."""
    from .reproduce import invocation_record, write_stage_summary
    from ..train import resolve_device

    start, started_at = time.monotonic(), time.time()
    preset = get_preset(preset_name)
    machine = str(resolve_device(device))  # fails now, not in every worker, if the device is absent
    specs = [RunSpec(m, preset_name, s, str(results_dir), device, data_dir and str(data_dir), threads,
                     dataset=check_dataset(dataset)) for m in preset.stage_models(STAGE) for s in seeds]
    jobs = len(specs) if jobs is None else jobs
    check_layout(jobs, threads)
    budget_s = plan_budget(minutes, eval_minutes, len(specs), jobs)
    _check_data(data_dir, dataset)
    _check_pack_dir(Path(pack_dir))
    # The deadline also counts the processes' start (imports, data, CUDA): all runs end training
    # by then, whatever their start cost.
    train_until = started_at + max(0.0, minutes - eval_minutes) * 60
    specs = [replace(spec, budget_s=budget_s, train_until=train_until) for spec in specs]
    print(f"sprint: {len(specs)} runs of {preset_name}/{STAGE}, {jobs} at once on {machine}, "
          f"training budget {budget_s / 60:.1f} min each, everything within {minutes} min")
    records, failures = [], []
    # spawn: CUDA does not survive fork, and every process starts clean.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool, \
            tqdm(total=len(specs), desc="sprint", unit="run", disable=not progress) as bar:
        futures = {pool.submit(run_one, spec): spec for spec in specs}
        for future in as_completed(futures):
            spec = futures[future]
            try:
                rec = future.result()
                records.append(rec)
                tqdm.write(f"{spec.model:10s} seed {spec.seed}: {rec['epochs_run']} epochs ({rec['stopped']}), "
                           f"{rec['seconds'] / 60:.1f} min")
            except Exception as e:  # noqa: BLE001  (reported in the summary, the others go on)
                failures.append({"model": spec.model, "seed": spec.seed, "error": f"{type(e).__name__}: {e}"})
                tqdm.write(f"{spec.model:10s} seed {spec.seed}: FAILED {type(e).__name__}: {e}")
            bar.update(1)
    elapsed = time.monotonic() - start
    actions = {(r["model"], r["seed"]): (r["action"], r["seconds"]) for r in records}
    write_stage_summary(results_dir, preset_name, STAGE,
                        invocation_record(preset_name, STAGE, tuple(seeds), actions, elapsed, machine), dataset)
    summary = {
        "preset": preset_name, "dataset": dataset, "stage": STAGE, "seeds": list(seeds), "concurrent_runs": jobs,
        "threads_per_run": threads, "minutes_allowed": minutes, "eval_minutes_reserved": eval_minutes,
        "train_budget_s": round(budget_s, 1), "minutes_taken": round(elapsed / 60, 2),
        "within_budget": elapsed <= minutes * 60,
        "runs": sorted(records, key=lambda r: (r["model"], r["seed"])), "failures": failures,
        "tsne": tsne_note(), "provenance": provenance(device=machine),
        # A lent machine's copy of the checkout may have no .git: the revision it was told.
        "checkout_revision": revision,
    }
    write_json(preset_dir(results_dir, preset_name, dataset) / "sprint.json", "sprint", summary)
    parts = pack(results_dir, preset_name, pack_dir, dataset)
    print(f"sprint: {len(records)}/{len(specs)} runs in {elapsed / 60:.1f} min; packed {len(parts)} files "
          f"into {pack_dir}")
    if failures:
        raise RunsFailed(f"{len(failures)} of {len(specs)} sprint runs failed (the others are packed):\n  "
                         + "\n  ".join(f"{f['model']} seed {f['seed']}: {f['error']}" for f in failures))
    return summary


def _check_data(data_dir, dataset: str = DEFAULT_DATASET) -> None:
    """Every split and the test labels, read and verified once here: a missing or corrupt file
    is one clear error before any process starts, not one per run."""
    from ..data import load_dataset, load_dataset_labels

    for split in ("train", "valid", "test"):
        load_dataset(dataset, split, data_dir)
    load_dataset_labels(dataset, "test", data_dir)


def tsne_note() -> str:
    from ..evaluate import tsne_missing

    reason = tsne_missing()
    return f"skipped: {reason}" if reason else "computed (openTSNE)"


# ------------------------------------------------------------------------- packing

def _check_pack_dir(pack_dir: Path) -> None:
    """The pack folder must be writable and hold no earlier pack (its parts would mix)."""
    pack_dir.mkdir(parents=True, exist_ok=True)
    left = [p.name for p in pack_dir.iterdir()]
    if left:
        raise ValueError(f"--pack-dir {pack_dir} is not empty ({', '.join(sorted(left)[:5])}); "
                         "give an empty or new folder")


def _packable(path: Path) -> bool:
    """Result files only: no checkpoints, no lock files, no half-written temporaries."""
    return path.is_file() and "checkpoints" not in path.parts and not path.name.startswith(".")


def pack(results_dir: Path | str, preset_name: str, pack_dir: Path | str, dataset: str = DEFAULT_DATASET) -> list[Path]:
    """The preset's folder of ``dataset`` (``results.preset_dir``) without checkpoints as a tar.gz
    split into parts of at most MAX_FILE_BYTES, plus MANIFEST.json (part names, sizes, SHA-256):
    at most MAX_FILES files."""
    results_dir, pack_dir = Path(results_dir), Path(pack_dir)
    folder = preset_dir(results_dir, preset_name, dataset)
    pack_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if _packable(path):
                tar.add(path, arcname=str(path.relative_to(results_dir)), recursive=False)
    blob = buffer.getvalue()
    n_parts = max(1, math.ceil(len(blob) / MAX_FILE_BYTES))
    if n_parts + 1 > MAX_FILES:
        raise ValueError(f"{folder} packs to {len(blob) / 2**20:.1f} MiB, more than "
                         f"{MAX_FILES - 1} parts of {MAX_FILE_BYTES // 2**20} MiB; remove bulky files from it")
    parts = []
    for i in range(n_parts):
        chunk = blob[i * MAX_FILE_BYTES:(i + 1) * MAX_FILE_BYTES]
        path = pack_dir / f"{ARCHIVE}.{i:02d}"
        path.write_bytes(chunk)
        parts.append({"name": path.name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
    manifest = {"preset": preset_name, "dataset": dataset, "archive": ARCHIVE, "parts": parts,
                "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    (pack_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return [pack_dir / p["name"] for p in parts] + [pack_dir / MANIFEST]


def unpack(pack_dir: Path | str, results_dir: Path | str = DEFAULT_RESULTS_DIR) -> list[Path]:
    """Check a pack against its manifest and extract it under ``results_dir``; the files written.
    Refuses a part that is missing or altered, and any member that is not a plain file
    under the preset's folder of its data set (``<preset>/``, or ``<dataset>/<preset>/``)."""
    pack_dir, results_dir = Path(pack_dir), Path(results_dir)
    manifest_path = pack_dir / MANIFEST
    if not manifest_path.exists():
        raise ValueError(f"{manifest_path}: missing; give the folder `scvae sprint` packed into")
    manifest = json.loads(manifest_path.read_text())
    blob = b""
    for part in manifest["parts"]:
        path = pack_dir / part["name"]
        data = path.read_bytes() if path.exists() else b""
        if hashlib.sha256(data).hexdigest() != part["sha256"]:
            raise ValueError(f"{path}: missing or altered (SHA-256 differs from {MANIFEST}); copy it again")
        blob += data
    # A pack made before data sets were a setting names none: mnist-static's.
    prefix = preset_dir(Path(), manifest["preset"], check_dataset(manifest.get("dataset", DEFAULT_DATASET))).parts
    shown = "/".join(prefix)
    written = []
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            parts = Path(m.name).parts
            if not m.isfile() or parts[:len(prefix)] != prefix or ".." in parts or Path(m.name).is_absolute():
                raise ValueError(f"{pack_dir}: refusing archive member {m.name!r} (not a file under {shown}/)")
        for m in members:
            target = results_dir / m.name
            target.parent.mkdir(parents=True, exist_ok=True)
            data = tar.extractfile(m).read()
            tmp = target.with_name(f".{target.name}.unpack")
            tmp.write_bytes(data)
            tmp.replace(target)
            written.append(target)
    return written
