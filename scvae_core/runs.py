"""Reading results, without torch: which runs exist, which preset the book shows, each
model's evaluated runs and their summaries over seeds. Tables, claims, plots and the book
check all read results through here (one way data flows: results/ -> book).

Every function takes a ``preset``; left ``None`` (or ``auto``) it is :func:`pick_preset`'s:
the most trustworthy budget that holds the whole stage (``paper``, ``converged``, ``long`` at its
last epoch, ``cpu``), else the most trustworthy that holds part of it. The paper's own numbers
are read from ``data/paper_reported.json`` (cited there), never typed here.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from .presets import DEFAULT_DATASET, EVAL_FIELDS, TRAINING_FIELDS, Preset, get_preset, run_preset
from .results import NLL_ARRAYS, PAPER_REPORTED, PUBLISHED, RunPaths, preset_dir, read_figures, read_run

# The book shows the most trustworthy that has results: the paper's budget, then training to
# convergence, then the long one (at its last epoch), then the cpu one.
PREFERRED_PRESETS = ("paper", "converged", "long", "cpu")
AUTO = "auto"  # the notebooks' (and make's) spelling of "pick for me"
COIN_FLIP_ELBO = -784 * math.log(2)  # the ELBO of a model that says 1/2 for every pixel
DEPTH_MODEL = re.compile(r"^(enc|dec)(\d+)-(plain|skip)$")  # zoo's depth-sweep names
EVAL_REQUIRED = ("metrics", "fisher", "derivations", "config")  # what the tables need of an eval.json
TRAIN_KEYS = ("model", "preset", "seed", "config", "preset_config", "history", "best_epoch",
              "best_valid_elbo", "epochs_run", "stopped", "wall_time_s")

Runs = dict[str, dict[int, dict]]  # model -> seed -> eval.json


@lru_cache(maxsize=1)
def paper_reported() -> dict:
    return json.loads(Path(PAPER_REPORTED).read_text())


def paper_rows(table_id: str) -> dict[str, dict]:
    """The paper's rows of a table by model name: display, nll, acc."""
    return {row["model"]: row for row in paper_reported()[table_id]["rows"]}


def display_name(model: str) -> str:
    """The paper's name of a model (VAE(q++)) or ours (Skip-VAE(11L)), a twin's with its set's
    suffix, else the id."""
    from .zoo import DISPLAY, twin_of

    twin = twin_of(model)
    base = model.removesuffix(twin.suffix) if twin.suffix else model
    rows = {**paper_rows("table2"), **paper_rows("table1")}
    name = rows[base]["display"] if base in rows else DISPLAY.get(base, base)
    return f"{name} [{twin.label}]" if twin.suffix else name  # a Table 1 or Skip-VAE twin


@lru_cache(maxsize=1)
def published() -> dict:
    """Other papers' numbers for the paper's VAE(1L) model class (cited in the file)."""
    return json.loads(Path(PUBLISHED).read_text())


def citation() -> str:
    c = paper_reported()["citation"]
    return f"{c['authors'][0]} et al. ({c['year']})"


def load_eval(results_dir: str | Path, preset: str, model: str, seed: int, epoch: int | None = None, settings=None,
              config=None, dataset: str = DEFAULT_DATASET) -> dict:
    """A run's eval.json (``epoch``: its eval-eNNN.json) on ``dataset``, checked for schema, for the
    keys and types the tables need, and for agreement with where it lies, the model's config and
    the preset's settings (``results.check_run``; ``settings``, a Preset, and ``config`` default to
    the registry's)."""
    paths = RunPaths(Path(results_dir), preset, model, seed, dataset)
    return read_run(paths.eval_json_at(epoch), paths, "eval", EVAL_REQUIRED, (*TRAINING_FIELDS, *EVAL_FIELDS),
                    paths.command("evaluate"), settings, config)


def load_train(paths: RunPaths, settings=None, config=None) -> dict:
    """A run's train.json, checked as :func:`load_eval` checks an eval.json (training settings only)."""
    return read_run(paths.train_json, paths, "train", TRAIN_KEYS, TRAINING_FIELDS,
                    f"delete it and run `{paths.command('train')}`", settings, config)


def load_figures_npz(paths: RunPaths, epoch: int | None = None) -> dict[str, np.ndarray]:
    """A run's figures.npz (``epoch``: figures-eNNN.npz), checked to be complete and plottable."""
    return read_figures(paths.figures_npz_at(epoch), fix=paths.command("evaluate"))


def default_epoch(preset: str, epoch: int | None = None, model: str | None = None) -> int | None:
    """The evaluation a table shows: ``epoch`` if given, else the last the preset keeps, for
    ``model`` the last its run keeps (a stage may train shorter: the long preset's depth sweep
    stops at 30); None for presets that evaluate their final weights into eval.json."""
    p = get_preset(preset)
    if epoch is None:
        kept = (run_preset(preset, model) if model else p).eval_epochs
        return kept[-1] if kept else None
    if epoch not in p.eval_epochs:
        raise ValueError(f"epoch {epoch}: preset {preset!r} evaluates at epochs {list(p.eval_epochs) or 'none'}")
    return epoch


def seeds_on_disk(results_dir: Path | str, preset: str, model: str, dataset: str = DEFAULT_DATASET) -> list[int]:
    model_dir = preset_dir(results_dir, preset, dataset) / model
    if not model_dir.is_dir():
        return []
    return sorted(int(m.group(1)) for p in model_dir.iterdir() if (m := re.fullmatch(r"seed(\d+)", p.name)))


def evaluated_seeds(results_dir: Path | str, preset: str, model: str, seeds: Iterable[int] | None = None,
                    epoch: int | None = None, dataset: str = DEFAULT_DATASET) -> list[int]:
    """The seeds (all on disk unless ``seeds``) whose evaluation at ``epoch`` on ``dataset`` exists."""
    seeds = seeds_on_disk(results_dir, preset, model, dataset) if seeds is None else seeds
    epoch = default_epoch(preset, epoch, model)
    return [s for s in seeds if RunPaths(Path(results_dir), preset, model, s, dataset).eval_json_at(epoch).exists()]


def pick_preset(results_dir: Path | str, stage: str, dataset: str = DEFAULT_DATASET) -> str | None:
    """The first of :data:`PREFERRED_PRESETS` where every model of ``stage`` has an evaluated run
    (at its last evaluated epoch), else the one where most models have (the first of those), else
    None: a budget whose runs are still coming in (converged) becomes the headline once it holds
    the whole stage."""
    held = {}
    for preset in PREFERRED_PRESETS:
        models = get_preset(preset).stages.get(stage, ())  # a preset may lack the stage (cpu-long)
        held[preset] = sum(bool(evaluated_seeds(results_dir, preset, m, dataset=dataset)) for m in models)
        if models and held[preset] == len(models):
            return preset
    most = max(held.values())
    return next(p for p, n in held.items() if n == most) if most else None


def first_complete(results_dir: Path | str, presets: Iterable[str | None], models: Iterable[str]) -> str | None:
    """The first of ``presets`` with an evaluated run of every one of ``models`` (a figure that
    compares them all), else the first preset given."""
    presets, models = [p for p in presets if p], list(models)
    return next((p for p in presets if all(evaluated_seeds(results_dir, p, m) for m in models)),
                presets[0] if presets else None)


def resolve_preset(results_dir: Path | str, stage: str, preset: str | None) -> str | None:
    """``preset`` itself, or :func:`pick_preset`'s choice when it is None or ``auto``."""
    return pick_preset(results_dir, stage) if preset in (None, AUTO) else preset


def collect(results_dir: Path | str, preset: str, models: Iterable[str], seeds: Iterable[int] | None = None,
            epoch: int | None = None, dataset: str = DEFAULT_DATASET) -> dict[str, list[dict]]:
    """Every model's evaluated runs on ``dataset`` (all seeds on disk unless ``seeds``), in seed
    order; at ``epoch`` for a preset that evaluates several (default: its last).

    A run not evaluated yet is left out; an eval.json that is corrupt or of another schema
    raises ResultError naming the file.
    """
    def runs(m: str) -> list[dict]:
        at = default_epoch(preset, epoch, m)
        return [with_figures_path(at_common_samples(load_eval(results_dir, preset, m, s, at, dataset=dataset),
                                                    run_preset(preset, m, dataset), at),
                                  RunPaths(Path(results_dir), preset, m, s, dataset).figures_npz_at(at))
                for s in evaluated_seeds(results_dir, preset, m, seeds, at, dataset)]

    return {m: runs(m) for m in models}


FIGURES_KEY = "_figures"  # where an evaluation's figures.npz lies: per-image values for paired differences


def with_figures_path(doc: dict, path: Path) -> dict:
    doc[FIGURES_KEY] = str(path)
    return doc


def per_image_nll(doc: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """(test indices, each image's NLL estimate) of an evaluation that stored them, else None
    (runs evaluated before they were stored, or read without their folder)."""
    path = Path(doc.get(FIGURES_KEY) or "")
    if not path.is_file():
        return None
    return _per_image_nll(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=512)
def _per_image_nll(path: str, mtime_ns: int) -> tuple[np.ndarray, np.ndarray] | None:
    with np.load(path, allow_pickle=False) as z:
        if not set(NLL_ARRAYS) <= set(z.files):
            return None
        per_image, index = (z[k] for k in NLL_ARRAYS)
        return index, per_image.astype(np.float64)


def at_common_samples(doc: dict, preset: Preset, epoch: int | None) -> dict:
    """The evaluation as seeds compare it. A seed evaluated with more importance samples than the
    others, as the estimator check (seed 0 of ``long`` at its last epoch: S = 5000 against 1000),
    is read at the common S from its nested estimates; its own value moves to
    ``metrics["nll_check"]``. A mean over seeds at mixed S would mix estimator bias into the
    seeds' spread. The standard error stays the check's: it is over test images, whose spread
    dwarfs the estimator's (VAE(1L), epoch 100: 0.514 for seed 0 at S = 5000, 0.515 for seed 1 at
    S = 1000)."""
    m, common = doc["metrics"], preset.common_nll_samples(epoch)
    by = m.get("nll_by_samples", {})
    if m["nll_samples"] > common and str(common) in by:
        m["nll_check"] = {"samples": m["nll_samples"], "nll": m["nll"]}
        m["nll"], m["nll_samples"] = by[str(common)], common
    return doc


def by_seed(runs: dict[str, list[dict]]) -> Runs:
    return {m: {e["seed"]: e for e in evals} for m, evals in runs.items()}


def seed_summary(per_seed: dict[int, float]) -> dict:
    """Mean and sample standard deviation (ddof=1; NaN for one seed) over seeds."""
    seeds = sorted(per_seed)
    values = [float(per_seed[s]) for s in seeds]
    n = len(values)
    return {
        "seeds": seeds, "values": values, "n": n,
        "mean": float(np.mean(values)) if n else math.nan,
        "std": float(np.std(values, ddof=1)) if n > 1 else math.nan,
    }


def per_seed(evals: list[dict], get: Callable[[dict], float]) -> dict[int, float]:
    return {e["seed"]: get(e) for e in evals}


def metric(key: str) -> Callable[[dict], float]:
    return lambda e: e["metrics"][key]


def seeds_used(runs: dict[str, list[dict]]) -> list[int]:
    return sorted({e["seed"] for evals in runs.values() for e in evals})


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+!|~&-])")


def md_text(value) -> str:
    """A value read from a result file as literal Markdown: every character that Markdown or
    raw HTML could act on is backslash-escaped (result files are type-checked on read; this
    is the second defence, where a value reaches a page's Markdown)."""
    return _MARKDOWN.sub(r"\\\1", str(value))


def seeds_text(seeds: Iterable[int]) -> str:
    """'seed 0', 'seeds 0, 1, 2' or 'no seeds': how captions and titles name their seeds."""
    seeds = sorted(set(seeds))
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}" if seeds else "no seeds"


def stage_of(models: Iterable[str]) -> str:
    """The stage (of the paper preset) that holds most of ``models``: where their results live."""
    from .zoo import UnknownName

    models = set(models)
    stages = get_preset("paper").stages
    best = max(stages, key=lambda s: len(models & set(stages[s])))
    if not models & set(stages[best]):
        raise UnknownName(f"no stage runs any of {sorted(models)}; stages: {', '.join(stages)}")
    return best


def train_docs(results_dir: Path | str, preset: str, models: Iterable[str],
               seeds: Iterable[int] | None = None, dataset: str = DEFAULT_DATASET) -> list[dict]:
    """The train.json of every evaluated run of ``models`` on ``dataset`` (for training curves)."""
    return [load_train(RunPaths(Path(results_dir), preset, m, s, dataset))
            for m in models for s in evaluated_seeds(results_dir, preset, m, seeds, dataset=dataset)]
