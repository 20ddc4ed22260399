"""Is our training reproducible bit for bit? A committed run trained a second time, from the same
seed, into another results folder, compared with the first: the training history epoch by epoch
and every evaluation's metrics (``scvae compare``). ``--record`` keeps the comparison in
``results/reruns/reruns.json``, which the book shows; ``--adopt`` then puts the re-run's files in
place of the first's (a later evaluation records fields the first lacked). Torch-free.
"""
from __future__ import annotations

from pathlib import Path

from .presets import DEFAULT_DATASET, run_preset
from .results import ResultError, RunPaths, preset_dir, provenance, read_json, write_bytes, write_json
from .runs import load_eval, load_train

METRICS = ("nll", "nll_se", "elbo", "kl", "svm_acc", "active_units")  # an evaluation's headline numbers
WHO = ("git_revision", "device_name", "written_at")  # of each training, from its train.json's provenance
ENTRY_KEYS = ("run", "model", "preset", "seed", "dataset", "trained", "retrained", "epochs", "epochs_equal",
              "first_difference", "largest_valid_elbo_difference", "evaluations")
RECORD_FIX = "run `scvae compare MODEL --preset P --seed K --rerun-dir DIR --record` again for each run"


def run_key(paths: RunPaths) -> str:
    """The run's folder below its results root: long/vae-p++/seed1, fashion-static/long/..."""
    return paths.dir.relative_to(paths.results_dir).as_posix()


def _eval_epochs(paths: RunPaths) -> tuple:
    """The evaluations a run of its preset keeps (None: the one eval.json of a preset without epochs)."""
    return run_preset(paths.preset, paths.model, paths.dataset).eval_epochs or (None,)


def _history_equal(a: dict, b: dict) -> bool:
    keys = (set(a) | set(b)) - {"seconds"}  # wall time is the one value a re-run may change
    return all(a.get(k) == b.get(k) for k in keys)


def compare_runs(first: RunPaths, rerun: RunPaths) -> dict:
    """The comparison of two trainings of one run (same model, preset, seed, data set): how many
    leading epochs are equal in every value of the history, the first that is not, the largest
    difference in validation ELBO, and each evaluation both have, metric by metric (both values)."""
    if (first.preset, first.model, first.seed, first.dataset) != (rerun.preset, rerun.model, rerun.seed, rerun.dataset):
        raise ValueError("compare_runs compares two trainings of one run: give the same model, preset, seed, data set")
    if first.dir.resolve() == rerun.dir.resolve():
        raise ValueError(f"{first.dir} is compared with itself: give --rerun-dir the results folder that the second "
                         "training wrote, not the first's")
    a, b = load_train(first), load_train(rerun)
    ha, hb = a["history"], b["history"]
    same = [_history_equal(x, y) for x, y in zip(ha, hb)]
    equal = same.index(False) if False in same else len(same)
    differences = [abs(x["valid_elbo"] - y["valid_elbo"]) for x, y in zip(ha, hb)]
    evaluations = []
    for epoch in _eval_epochs(first):
        if not (first.eval_json_at(epoch).exists() and rerun.eval_json_at(epoch).exists()):
            continue
        ea, eb = (load_eval(p.results_dir, p.preset, p.model, p.seed, epoch, dataset=p.dataset)["metrics"]
                  for p in (first, rerun))
        metrics = {k: [ea[k], eb[k]] for k in METRICS if k in ea and k in eb}
        evaluations.append({"epoch": epoch, "metrics": metrics, "equal": all(x == y for x, y in metrics.values())})
    return {"run": run_key(first), "model": first.model, "preset": first.preset, "seed": first.seed,
            "dataset": first.dataset,
            "trained": {k: a["provenance"].get(k) for k in WHO}, "retrained": {k: b["provenance"].get(k) for k in WHO},
            "epochs": [len(ha), len(hb)], "epochs_equal": equal,
            "first_difference": None if equal == min(len(ha), len(hb)) else equal + 1,
            "largest_valid_elbo_difference": max(differences, default=0.0), "evaluations": evaluations}


def check_complete(first: RunPaths, rerun: RunPaths) -> None:
    """Refuse to record or adopt a second training that lacks an evaluation the first has: the
    comparison would be partial, and an adoption would leave one training's files beside the other's."""
    for epoch in _eval_epochs(first):
        if first.eval_json_at(epoch).exists() and not rerun.eval_json_at(epoch).exists():
            raise ResultError(f"{rerun.eval_json_at(epoch)}: missing, though the run has "
                              f"{first.eval_json_at(epoch).name}: the second training is not evaluated yet. To fix: "
                              f"`{rerun.command('evaluate')} --results-dir {rerun.results_dir}`, then compare again")


def bitwise(entry: dict) -> bool:
    """Every epoch and every metric of every evaluation the same."""
    return (entry["epochs"][0] == entry["epochs"][1] == entry["epochs_equal"]
            and all(e["equal"] for e in entry["evaluations"]))


def describe(entry: dict) -> str:
    """One line for the terminal: what came back equal, and where it first did not."""
    n_first, n_rerun = entry["epochs"]
    history = (f"every one of {n_first} epochs equal" if entry["first_difference"] is None and n_first == n_rerun
               else f"{entry['epochs_equal']} of {n_first} epochs equal (re-run: {n_rerun})"
               + (f", first difference at epoch {entry['first_difference']}, largest |Δ valid ELBO| "
                  f"{entry['largest_valid_elbo_difference']:.4g}" if entry["first_difference"] else ""))
    evals = "; ".join(f"e{e['epoch'] or 'final'}: " + ("metrics equal" if e["equal"] else ", ".join(
        f"{k} {x} -> {y}" for k, (x, y) in e["metrics"].items() if x != y)) for e in entry["evaluations"])
    who = " vs ".join(f"{w['git_revision'][:7] if w['git_revision'] else '?'} on {w['device_name']}"
                      for w in (entry["trained"], entry["retrained"]))
    return (f"{entry['run']}: {'bit for bit' if bitwise(entry) else 'NOT bit for bit'}: {history}; "
            f"{evals or 'no evaluation in both'} ({who})")


def reruns_path(results_dir: str | Path) -> Path:
    return Path(results_dir) / "reruns" / "reruns.json"


def read_reruns(results_dir: str | Path) -> list[dict]:
    """reruns.json's comparisons, checked to hold every field the book reads."""
    path = reruns_path(results_dir)
    entries = read_json(path, "reruns", ("reruns",), fix=RECORD_FIX)["reruns"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) and all(k in e for k in ENTRY_KEYS)
                                                and isinstance(e["evaluations"], list) for e in entries):
        raise ResultError(f"{path}: refused: an entry lacks the fields of a comparison ({', '.join(ENTRY_KEYS)}); "
                          f"the file is edited or outdated. To fix: {RECORD_FIX}")
    return entries


def record(results_dir: str | Path, entry: dict) -> Path:
    """Add (or replace) the comparison of one run in reruns.json, atomically."""
    path = reruns_path(results_dir)
    kept = [e for e in (read_reruns(results_dir) if path.exists() else []) if e["run"] != entry["run"]]
    write_json(path, "reruns", {"reruns": sorted([*kept, entry], key=lambda e: e["run"]), "provenance": provenance()})
    return path


def adopt(first: RunPaths, rerun: RunPaths) -> list[Path]:
    """Put the re-run's result files (train.json, every eval and figures file) in place of the
    first training's, each atomically; returns those written. Checkpoints stay where they are."""
    written = []
    for f in sorted(rerun.dir.iterdir()):
        if f.is_file() and (f.name == "train.json" or f.name.startswith(("eval", "figures"))):
            write_bytes(first.dir / f.name, f.read_bytes())
            written.append(first.dir / f.name)
    return written


def run_paths(results_dir: str | Path, preset: str, model: str, seed: int, dataset: str = DEFAULT_DATASET) -> RunPaths:
    """The run's paths, refusing a results folder that does not hold it (with the command that would)."""
    paths = RunPaths(Path(results_dir), preset, model, seed, dataset)
    if not paths.train_json.exists():
        where = preset_dir(results_dir, preset, dataset)
        raise ResultError(f"{paths.train_json}: missing: {where} holds no training of {model} seed {seed}. "
                          f"To fix: `{paths.command('train')} --results-dir {results_dir}`")
    return paths
