"""Result files -> the paper's tables and the prose built from them, as shown in the book.

Shared by the notebooks and the book check (which rebuilds every table of :data:`TABLES`
and compares it cell by cell), so that a number in the book is computed in one place.
Results are read through :mod:`scvae_core.runs`; verdicts come from :mod:`scvae_core.book.claims`.
"""
from __future__ import annotations

import html
import itertools
import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from . import claims, verdicts
from ..bench.bench_tables import bench_table
from ..presets import DATASETS, DEFAULT_DATASET, TABLE1, get_preset, run_preset
from ..results import RunPaths
from ..runs import (DEPTH_MODEL, citation, display_name, collect, default_epoch, evaluated_seeds, load_train, md_text,
                   metric, paper_reported, paper_rows, per_seed, published, resolve_preset, seed_summary, seeds_text,
                   seeds_used, stage_of, train_docs)
from .verdicts import VERDICTS
from ..zoo import OURS, TWINS, Twin, check_name

NLL_DECIMALS, ACC_DECIMALS = 2, 4  # as the paper prints them
NOT_RUN = "not run"


# ------------------------------------------------------------------------- tables

@dataclass(frozen=True)
class Table:
    id: str  # "table1" | "table2": also the HTML id the book check looks for
    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    preset: str | None
    seeds: tuple[int, ...]
    # Where each row's evidence is: the URL of another table ("page.html#verdicts"); a verdict
    # cell then links to that table's row of the same name.
    evidence: str = ""
    # The data set of every run the table reads, named in its caption; None: the caption names
    # its data sets itself (a table across data sets, or of other papers' numbers).
    dataset: str | None = DEFAULT_DATASET

    def row_id(self, row: tuple[str, ...]) -> str:
        """The HTML id of a row: the table's id and a slug of its first cell."""
        return f"{self.id}-{_slug(row[0])}"

    def _cell(self, text: str, row: tuple[str, ...]) -> str:
        # A verdict cell ("holds: ..." or "holds") is coloured by its verdict (_static/scvae.css).
        word = text.split(":", 1)[0]
        if word not in VERDICTS:
            return f"<td>{html.escape(text)}</td>"
        body = html.escape(text)
        if self.evidence:
            body = f'<a class="badge-link" href="{html.escape(self.evidence)}-{_slug(row[0])}">{body}</a>'
        return f'<td class="verdict verdict-{word.replace(" ", "-")}">{body}</td>'

    def shown(self) -> Table:
        """The table as the book shows it: one line per cell, so each cell's "(n=k)" is left out
        where k is the table's most common number of seeds, which the caption states instead."""
        data = f" Data: {DATASETS[self.dataset]}." if self.dataset else ""
        counts = Counter(n for row in self.rows for cell in row for n in SEEDS_IN_CELL.findall(cell))
        if not counts:
            return replace(self, caption=self.caption + data)
        n = counts.most_common(1)[0][0]
        rows = tuple(tuple(SEEDS_IN_CELL.sub(lambda m: "" if m.group(1) == n else m.group(0), c) for c in row)
                     for row in self.rows)
        note = f"A cell holds the seeds it has of those: n = {n} wherever it does not say (n=k)."
        return replace(self, rows=rows, caption=f"{self.caption} {note}{data}")

    def to_html(self) -> str:
        shown = self.shown()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in shown.columns)
        body = "".join(f'<tr id="{html.escape(self.row_id(row))}">' + "".join(self._cell(c, row) for c in row)
                       + "</tr>\n" for row in shown.rows)
        # The scroll box keeps a table wider than the page from widening the page (phones).
        return (
            f'<div class="scvae-scroll"><table class="scvae-table" id="{html.escape(self.id)}" '
            f'data-preset="{html.escape(self.preset or "")}" data-seeds="{html.escape(",".join(map(str, self.seeds)))}">\n'
            f"<caption>{html.escape(shown.caption)}</caption>\n"
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table></div>"
        )


SEEDS_IN_CELL = re.compile(r" \(n=(\d+)\)")


def _slug(text: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))


COLUMNS = ("Model", "NLL (ours)", "NLL (paper)", "NLL ours − paper", "Acc (ours)", "Acc (paper)",
           "Acc ours − paper", "ELBO (ours)", "KL (ours)", "Active units (ours)")


def format_stat(s: dict, decimals: int) -> str:
    """'87.12 ± 0.34 (n=3)'; one seed has no spread: '87.12 (n=1)'."""
    if s["n"] == 0:
        return NOT_RUN
    spread = f" ± {s['std']:.{decimals}f}" if s["n"] > 1 else ""
    return f"{s['mean']:.{decimals}f}{spread} (n={s['n']})"


def _row(display: str, evals: list[dict], paper: dict) -> tuple[str, ...]:
    paper_nll, paper_acc = f"{paper['nll']:.{NLL_DECIMALS}f}", f"{paper['acc']:.{ACC_DECIMALS}f}"
    if not evals:
        return (display, NOT_RUN, paper_nll, "", NOT_RUN, paper_acc, "", NOT_RUN, NOT_RUN, NOT_RUN)
    nll, acc = seed_summary(per_seed(evals, metric("nll"))), seed_summary(per_seed(evals, metric("svm_acc")))
    return (
        display,
        format_stat(nll, NLL_DECIMALS), paper_nll, f"{nll['mean'] - paper['nll']:+.{NLL_DECIMALS}f}",
        format_stat(acc, ACC_DECIMALS), paper_acc, f"{acc['mean'] - paper['acc']:+.{ACC_DECIMALS}f}",
        format_stat(seed_summary(per_seed(evals, metric("elbo"))), NLL_DECIMALS),
        format_stat(seed_summary(per_seed(evals, metric("kl"))), NLL_DECIMALS),
        format_stat(seed_summary(per_seed(evals, metric("active_units"))), 1),
    )


def nll_estimator(runs: dict[str, list[dict]]) -> str:
    """", NLL on N test images at S = k" for the evaluations ``runs`` holds (every value that occurs)."""
    def values(key: str) -> str:
        found = sorted({e["metrics"][key] for evals in runs.values() for e in evals if key in e["metrics"]})
        return "/".join(f"{v:,}" for v in found)

    sizes, samples = values("test_size"), values("nll_samples")
    return f", NLL on {sizes} test images at S = {samples}" if sizes and samples else ""


def _paper_table(table_id: str, results_dir: Path | str, preset: str | None) -> Table:
    preset = resolve_preset(results_dir, table_id, preset)  # each table has the stage of its name
    paper = paper_rows(table_id)
    # Every row at one epoch: where the stage trains shorter (long's Table 2 pair stops at 30),
    # the rows of other stages (Table 2's SCVAE) are read at that epoch too.
    kept = [default_epoch(preset, None, m) for m in get_preset(preset).stages.get(table_id, ())] if preset else []
    epoch = min([e for e in kept if e is not None], default=default_epoch(preset) if preset else None)
    runs = collect(results_dir, preset, paper, epoch=epoch) if preset else {m: [] for m in paper}
    seeds = seeds_used(runs)
    at = f" at epoch {epoch}" if epoch is not None else ""
    source = (f"Ours: preset '{preset}'{at}, {seeds_text(seeds)}{nll_estimator(runs)}; mean ± sample std over seeds "
              "(n seeds)" if preset else "Ours: nothing run yet")
    caption = (f"{paper_reported()[table_id]['caption']}. Paper: as printed, {citation()}. {source}; "
               "differences are our mean minus the paper's.")
    rows = tuple(_row(row["display"], runs[m], row) for m, row in paper.items())
    return Table(table_id, caption, COLUMNS, rows, preset, tuple(seeds))


def table1(results_dir: Path | str, preset: str | None = None) -> Table:
    return _paper_table("table1", results_dir, preset)


def table2(results_dir: Path | str, preset: str | None = None) -> Table:
    # Its SCVAE row is Table 1's model, run in the same preset by the table1 stage.
    return _paper_table("table2", results_dir, preset)


TABLES: dict[str, Callable[..., Table]] = {"table1": table1, "table2": table2}


def build_table(table_id: str, results_dir: Path | str, preset: str | None = None, **options) -> Table:
    """The table ``table_id`` of :data:`TABLES`; ``options`` go to its builder (e.g. ``evidence``)."""
    check_name("table", table_id, TABLES)
    return TABLES[table_id](results_dir, preset, **options)


# ------------------------------------------------------------------------- figure data

def _fisher(reading: str, part: str) -> Callable[[dict], float | None]:
    """A run's Fisher of one side under a reading, in linear units (the robust summary where
    the run recorded it, else the layer mean; see :func:`scvae_core.book.claims.fisher_side`)."""
    def get(e: dict) -> float | None:
        est = claims.fisher_side(e, part, reading)
        return None if est is None else 10 ** est.value
    return get


def _summary(evals: list[dict], get: Callable[[dict], float | None]) -> dict:
    return seed_summary({s: v for s, v in per_seed(evals, get).items() if v is not None})


def fisher_depth(results_dir: Path | str, preset: str | None = None, reading: str = "model",
                 epoch: int | None = None) -> dict:
    """Figure 2: Fisher of the whole model and of its deepened part against depth, under one
    reading (:data:`scvae_core.book.claims.READINGS`).

    ``series[side][kind]`` (side enc|dec: which part is deepened; kind plain|skip) is a list of
    ``{depth, model, part}`` by depth, ``model``/``part`` being :func:`seed_summary` dicts.
    """
    preset = resolve_preset(results_dir, "depth", preset)
    models = get_preset(preset).stage_models("depth") if preset else ()
    runs = collect(results_dir, preset, models, epoch=epoch) if preset else {}
    series: dict[str, dict[str, list]] = {side: {"plain": [], "skip": []} for side in ("enc", "dec")}
    for name, evals in runs.items():
        side, depth, kind = DEPTH_MODEL.match(name).groups()
        model, part = _summary(evals, _fisher(reading, "model")), _summary(
            evals, _fisher(reading, "encoder" if side == "enc" else "decoder"))
        if model["n"]:
            series[side][kind].append({"depth": int(depth), "name": name, "model": model, "part": part})
    for kinds in series.values():
        for points in kinds.values():
            points.sort(key=lambda p: p["depth"])
    return {"preset": preset, "reading": reading, "seeds": seeds_used(runs), "series": series}


def fisher_per_model(results_dir: Path | str, preset: str | None, models: Iterable[str], reading: str = "model",
                     epoch: int | None = None) -> dict:
    """Figures 3 and 5: Fisher of encoder and decoder per model under one reading
    (:func:`seed_summary` dicts); models without results are listed under ``missing``."""
    models = list(models)
    preset = resolve_preset(results_dir, stage_of(models), preset)
    runs = collect(results_dir, preset, models, epoch=epoch) if preset else {m: [] for m in models}
    found = {m: {part: _summary(evals, _fisher(reading, part)) for part in ("encoder", "decoder")}
             for m, evals in runs.items() if evals}
    found = {m: parts for m, parts in found.items() if parts["encoder"]["n"] and parts["decoder"]["n"]}
    return {"preset": preset, "reading": reading, "seeds": seeds_used(runs), "models": found,
            "missing": [m for m in runs if m not in found]}


# ------------------------------------------------------------------------- where we differ, and why

def _table1_display(model: str) -> str:
    return paper_rows("table1")[model]["display"]


def twin_table(results_dir: Path | str, twin: Twin, preset: str | None = None) -> Table:
    """Every Table 1 model beside its twin of the set ``twin``: NLL, accuracy, active units.
    Its id is the twin set's stage (the book check rebuilds it by that name)."""
    preset = resolve_preset(results_dir, twin.stage, preset) or resolve_preset(results_dir, "table1", preset)
    ours = collect(results_dir, preset, TABLE1) if preset else {}
    twins = collect(results_dir, preset, twin.models()) if preset else {}
    rows = []
    for m in TABLE1:
        cells = [_table1_display(m)]
        for key, decimals in (("nll", NLL_DECIMALS), ("svm_acc", ACC_DECIMALS), ("active_units", 1)):
            cells += [format_stat(seed_summary(per_seed(evals, metric(key))), decimals)
                      for evals in (ours.get(m, []), twins.get(m + twin.suffix, []))]
        rows.append(tuple(cells))
    columns = ("Model", *(f"{what} {who}" for what in ("NLL", "Acc", "Active units") for who in ("ours", twin.label)))
    seeds = seeds_used({**ours, **twins})
    budget = "" if not twin.training else (
        f" This set also changes training: {', '.join(f'{k} {v:g}' for k, v in twin.training.items())}.")
    caption = (f"Every Table 1 model as we run it ({OURS.label}) and with {twin.label} (stage '{twin.stage}')."
               f"{budget} Preset '{preset}', {seeds_text(seeds)}; mean ± sample std over seeds (n seeds).")
    return Table(twin.stage, caption, columns, tuple(rows), preset, tuple(seeds))


def converged_table(results_dir: Path | str, preset: str | None = None) -> Table:
    """The authors' protocol trained to convergence (preset ``converged``): per Table 1 model its
    NLL and accuracy on all test images, and where and why each run stopped, with how far it
    overfit there (training minus validation ELBO at the best epoch). ``preset`` is unused."""
    name = "converged"
    models = get_preset(name).stage_models("authors")
    runs = collect(results_dir, name, models)
    rows = []
    for m in models:
        evals = runs[m]
        docs = [load_train(RunPaths(Path(results_dir), name, m, e["seed"])) for e in evals]
        stops = ", ".join(f"{d['epochs_run']} ({d['stopped'].replace('_', ' ')}; best {d['best_epoch']})"
                          for d in docs) or NOT_RUN
        gaps = {d["seed"]: d["history"][d["best_epoch"] - 1]["train_elbo"] - d["best_valid_elbo"] for d in docs}
        rows.append((display_name(m.removesuffix("-authors")),
                     format_stat(seed_summary(per_seed(evals, metric("nll"))), NLL_DECIMALS),
                     format_stat(seed_summary(per_seed(evals, metric("svm_acc"))), ACC_DECIMALS),
                     format_stat(seed_summary(per_seed(evals, metric("active_units"))), 1),
                     stops, format_stat(seed_summary(gaps), NLL_DECIMALS) if gaps else NOT_RUN))
    seeds = seeds_used(runs)
    caption = (f"The authors' protocol trained to convergence (preset 'converged': {_budget_words(run_preset(name, models[0]))}"
               ", their gradient normalisation; ReLU, He init), the best weights evaluated once on all "
               f"10,000 test images at S = 1000; {seeds_text(seeds)}, mean ± sample std over seeds (n seeds). Epochs: "
               "per seed, the epochs trained, why training stopped and the best epoch. Overfit: training minus "
               "validation ELBO at the best epoch, in nats. See where each model stopped and how far it overfits.")
    columns = ("Model", "NLL", "Acc", "Active units", "Epochs (why stopped; best)", "Overfit at best")
    return Table(name, caption, columns, tuple(rows), name, tuple(seeds))


TABLES["converged"] = converged_table


VAE1L_PRESETS = ("cpu", "cpu-long", "paper")  # our VAE(1L) runs, from the shortest budget up
PUBLISHED_COLUMNS = ("Source", "NLL", "Training", "NLL estimate", "Binarization")


def _budget_words(p) -> str:
    stop = f", early stopping (patience {p.patience})" if p.patience else ""
    return f"at most {p.epochs} epochs{stop}, KL warm-up {p.warmup_epochs} epochs, Adam {p.lr:g}, batch {p.batch_size}"


def published_table(results_dir: Path | str, preset: str | None = None) -> Table:
    """VAE(1L)'s test NLL: ours under each budget run, the paper's, and other papers' for the
    same model class. ``preset`` is unused: every budget with results is shown."""
    rows, seeds = [], set()
    for name in VAE1L_PRESETS:
        evals = collect(results_dir, name, ["vae-1l"])["vae-1l"]
        if not evals:
            continue
        p = get_preset(name)
        seeds |= {e["seed"] for e in evals}
        rows.append((f"Ours, preset '{name}'", format_stat(seed_summary(per_seed(evals, metric("nll"))), NLL_DECIMALS),
                     _budget_words(p),
                     f"importance sampling, S = {p.nll_samples}, {p.test_size or 10000} test images",
                     "static (Larochelle & Murray, 2011)"))
    paper = paper_rows("table1")["vae-1l"]
    rows.append((f"{citation()}, Table 1", f"{paper['nll']:.{NLL_DECIMALS}f}", "not stated", "not stated",
                 "not stated (the 50,000/10,000/10,000 split of Sec. 6 is the static one's)"))
    for e in published()["entries"]:
        rows.append((e["source"], f"{e['nll']:.{NLL_DECIMALS}f}", e["training"], e["estimate"], e["binarization"]))
    caption = ("Test NLL of VAE(1L)-class models: one Gaussian stochastic layer, MLP encoder and decoder, "
               f"standard normal prior. Ours: {seeds_text(seeds)}, mean ± sample std over seeds (n seeds); "
               "the others as printed (data/published_nll.json).")
    return Table("published", caption, PUBLISHED_COLUMNS, tuple(rows), None, tuple(sorted(seeds)), dataset=None)


TABLES |= {t.stage: (lambda results_dir, preset=None, t=t: twin_table(results_dir, t, preset)) for t in TWINS}
TABLES["published"] = published_table
TABLES["bench"] = bench_table  # the performance appendix (bench_tables.py)


def nll_convergence(results_dir: Path | str, preset: str | None = None) -> dict:
    """The NLL estimate from the first k importance samples, per Table 1 model and twin:
    ``models[m][k]`` a :func:`summarize` dict over the seeds that recorded it."""
    preset = resolve_preset(results_dir, "table1", preset)
    models = [m for twin in (OURS, *TWINS) for m in twin.models()]
    runs = collect(results_dir, preset, models) if preset else {}
    curves = {}
    for m, evals in runs.items():
        evals = [e for e in evals if "nll_by_samples" in e["metrics"]]
        if evals:
            counts = sorted({int(k) for e in evals for k in e["metrics"]["nll_by_samples"]})
            curves[m] = {k: seed_summary({e["seed"]: e["metrics"]["nll_by_samples"][str(k)] for e in evals
                                       if str(k) in e["metrics"]["nll_by_samples"]}) for k in counts}
    return {"preset": preset, "models": curves}


def convergence_text(data: dict) -> str:
    """How much the last doubling-or-more of S still lowered each model's NLL."""
    lines = []
    for m, curve in data["models"].items():
        counts = sorted(curve)
        if len(counts) > 1:
            a, b = counts[-2], counts[-1]
            lines.append(f"- {m}: from S = {a} to S = {b} the estimate fell by "
                         f"{curve[a]['mean'] - curve[b]['mean']:.2f} nats (mean over {curve[b]['n']} seed(s))")
    return "\n".join(lines) or "No run has recorded its NLL at several sample counts yet."


def budget_text(results_dir: Path | str) -> str:
    """What ten times the epochs (preset cpu-long) did to each model of its budget stage: NLL
    against the paper's, and active latent units."""
    short_p, long_p = get_preset("cpu"), get_preset("cpu-long")
    lines = []
    for model in long_p.stage_models("budget"):
        short, long = (collect(results_dir, p.name, [model])[model] for p in (short_p, long_p))
        if not short or not long:
            lines.append(f"- {_table1_display(model)}: needs results under both the 'cpu' and the 'cpu-long' preset.")
            continue
        (a, b), (ua, ub) = ([seed_summary(per_seed(runs, get))["mean"] for runs in (short, long)]
                            for get in (metric("nll"), metric("active_units")))
        paper = paper_rows("table1")[model]["nll"]
        share = (a - b) / (a - paper) if a != paper else 1.0
        closed = f"{100 * share:.0f}% of the gap closed" if share > 0 else "none of the gap closed"
        lines.append(f"- {_table1_display(model)}: {long_p.epochs} epochs instead of {short_p.epochs} moved its test "
                     f"NLL from {a:.2f} to {b:.2f} nats (the paper: {paper:.2f}; {closed}) and its "
                     f"active latent units from {ua:.1f} to {ub:.1f}.")
    return "\n".join(lines)


def collapse_text(results_dir: Path | str, preset: str | None = None) -> str:
    """Which Table 1 models' posteriors collapsed (no active latent unit), as we run them and
    in each twin stage, and in how many of their seeds; each set at its own most trustworthy
    preset unless ``preset`` names one."""
    lines = []
    for twin in (OURS, *TWINS):
        suffix, name, shown = twin.suffix, twin.label, resolve_preset(results_dir, twin.stage, preset)
        if not shown:
            lines.append(f"- {name}: no results yet")
            continue
        runs = collect(results_dir, shown, twin.models())
        found = [f"{_table1_display(m.removesuffix(suffix))} ({sum(metric('active_units')(e) == 0 for e in evals)} "
                 f"of {len(evals)} seeds)" for m, evals in runs.items()
                 if any(metric("active_units")(e) == 0 for e in evals)]
        ran = sum(bool(evals) for evals in runs.values())
        lines.append(f"- {name}, preset {shown}: {ran} of {len(TABLE1)} models run; collapsed: "
                     f"{', '.join(found) if found else 'none'}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Start:
    """How one run started: epoch 1's validation ELBO and training KL, and the first epoch whose
    validation ELBO beats a coin flip (None: none of its ``epochs``)."""
    model: str  # the Table 1 model (without the twin suffix)
    seed: int
    elbo: float
    kl: float
    better_from: int | None
    epochs: int


def starts(results_dir: Path | str, twin: Twin, preset: str) -> list[Start]:
    """Every trained run of a twin set under ``preset``, as train.json recorded its start."""
    from ..runs import COIN_FLIP_ELBO, train_docs

    found = []
    for m in twin.models():
        for d in train_docs(results_dir, preset, [m]):
            h = d["history"]
            better = next((e["epoch"] for e in h if e["valid_elbo"] > COIN_FLIP_ELBO), None)
            found.append(Start(m.removesuffix(twin.suffix), d["seed"], h[0]["valid_elbo"], h[0]["kl"], better, len(h)))
    return found


def start_text(results_dir: Path | str, twin: Twin, preset: str) -> str:
    """How a twin set's runs start: the validation ELBO and the training KL of epoch 1, and the
    first epoch whose validation ELBO beats a coin flip (as train.json recorded them)."""
    from ..runs import COIN_FLIP_ELBO

    lines = [f"- {_table1_display(s.model)} (seed {s.seed}): after epoch 1, validation ELBO {s.elbo:,.0f} nats and "
             f"training KL {s.kl:,.0f}; better than a coin flip ({COIN_FLIP_ELBO:.0f}) "
             + (f"from epoch {s.better_from}" if s.better_from else f"in none of its {s.epochs} epochs")
             for s in starts(results_dir, twin, preset)]
    return "\n".join(lines) or f"No run of the {twin.label} twins under {preset} is evaluated yet."


# ------------------------------------------------------------------------- verdicts at a glance

@dataclass(frozen=True)
class Column:
    """One set of results a verdict is judged on: a preset (and within-run budget) and a twin set."""

    preset: str
    twin: Twin
    epoch: int | None = None

    @property
    def label(self) -> str:
        budget = f", epoch {self.epoch}" if self.epoch is not None else f" ({get_preset(self.preset).epochs} epochs)"
        return f"{self.twin.label}: {self.preset}{budget}"


def verdict_columns(results_dir: Path | str) -> list[Column]:
    """Every (preset, budget, twin set) with Table 1 results, from the shortest budget up:
    ours first, then each twin set."""
    found = []
    for twin in (OURS, *TWINS):
        for name in ("cpu", "long", "converged", "paper"):
            p = get_preset(name)
            if twin.stage not in p.stages:
                continue
            for epoch in p.eval_epochs or (None,):
                if any(collect(results_dir, name, p.stage_models(twin.stage), epoch=epoch).values()):
                    found.append(Column(name, twin, epoch))
    return found


def verdicts_by_column(results_dir: Path | str) -> dict[Column, dict[str, dict]]:
    return {c: claims.verdict_evidence(results_dir, c.preset, c.twin, c.epoch) for c in verdict_columns(results_dir)}


def _verdict_cell(claim: dict | None) -> str:
    if claim is None:
        return "—"
    effects = " · ".join(claims.format_effect(e) for e in claim["effects"])
    return f"{claim['status']}: {effects}"


def verdicts_table(results_dir: Path | str, preset: str | None = None) -> Table:
    """The opening table of the verdicts page: every claim (a Fisher claim once per reading),
    where the paper makes it, and per preset, budget and twin set its verdict with each effect's
    estimate and 95% interval. ``preset`` is unused: every column with results is shown."""
    by_column = verdicts_by_column(results_dir)
    rows = []
    for claim in claims.CLAIMS:
        for reading in claim.readings:
            name = claim.id if not claim.fisher else f"{claim.id} [{reading}]"
            cells = []
            for evidence in by_column.values():
                c = evidence.get(claim.id)
                cells.append(_verdict_cell(c and {**c["readings"][reading], "preset": c["preset"]}))
            rows.append((name, claim.where, *cells))
    columns = ("Claim", "In the paper", *(c.label for c in by_column))
    seeds = sorted({s for ev in by_column.values() for c in ev.values() for e in c["effects"] for s in e["seeds"]})
    caption = ("Every claim's verdict per preset, within-run budget and twin set: 'verdict: effect [95% interval] "
               "(n seeds)' for each of its effects, in the units of its kind (thresholds on the verdicts page). "
               "A Fisher claim has one row per reading of Fisher information. '—': not judged for that column "
               f"(twin sets rerun Table 1 only). Seeds used: {seeds_text(seeds)}.")
    return Table("verdicts", caption, columns, tuple(rows), None, tuple(seeds))


TABLES["verdicts"] = verdicts_table


def glance_table(results_dir: Path | str, preset: str | None = None, evidence: str = "") -> Table:
    """The front page's "results at a glance": each row of :func:`verdicts_table` with the
    claim in words and only the verdict per column; with ``evidence`` (the verdicts table's
    URL) each verdict links to its row there. ``preset`` is unused."""
    full = verdicts_table(results_dir)
    statements = {c.id: c.statement for c in claims.CLAIMS}
    rows = tuple((row[0], statements[row[0].split(" [")[0]], *(cell.split(":", 1)[0] for cell in row[2:]))
                 for row in full.rows)
    caption = ("Every claim of the paper and its verdict per preset, within-run budget and twin set; each verdict "
               "links to its effects, estimates and 95% intervals in the verdicts table. A Fisher claim has one row "
               f"per reading of Fisher information. '—': not judged for that column. {full.caption.rsplit('. ', 1)[-1]}")
    return Table("glance", caption, ("Claim", "Statement", *full.columns[2:]), rows, None, full.seeds, evidence)


TABLES["glance"] = glance_table


# ------------------------------------------------------------------------- training ten times longer

LAST_EPOCHS = 20  # the window over which a run's end is judged
DIP_NATS = 10.0  # a validation ELBO this far below the run's best so far is a dip (ten 1-nat thresholds)


def training_end(doc: dict, epochs: int = LAST_EPOCHS) -> dict | None:
    """How a run ended, over its last ``epochs`` epochs: the validation ELBO's mean change per
    epoch; the same for the best ELBO so far (the weights that are evaluated follow it); and the
    dips, epochs more than DIP_NATS below that best; the epoch of the best; and how much better the
    last epoch fit its training data than the validation data. None for a run shorter than the window."""
    h = [e["valid_elbo"] for e in doc["history"]]
    if len(h) <= epochs:
        return None
    best = list(itertools.accumulate(h, max))
    below = [b - v for b, v in zip(best[-epochs:], h[-epochs:])]
    last = doc["history"][-1]
    return {"change": (h[-1] - h[-1 - epochs]) / epochs, "best_change": (best[-1] - best[-1 - epochs]) / epochs,
            "dips": sum(d > DIP_NATS for d in below), "deepest": max(below),
            "best_epoch": doc["history"][h.index(best[-1])]["epoch"],
            "overfit": last["train_elbo"] - last["valid_elbo"]}  # > 0: training data fit better than held-out


LONG_OF = {"cpu": "long", "smoke": "smoke-long"}  # a short preset and the one that trains it longer


def short_and_long(preset: str | None) -> tuple[str, str]:
    """(short, long) presets from either name; cpu and long for anything else (None, auto)."""
    short = next((k for k, v in LONG_OF.items() if preset in (k, v)), "cpu")
    return short, LONG_OF[short]


def table1_budgets(results_dir: Path | str, preset: str | None = None) -> Table:
    """Table 1 under every budget: the paper's, the short preset's (``preset``: cpu, or smoke in
    the tests) and its long preset's at each evaluated epoch, NLL and accuracy; and whether the
    long runs converged (the validation ELBO's mean change per epoch over the last 20)."""
    short, long_name = short_and_long(preset)
    budgets = [(short, None)] + [(long_name, e) for e in get_preset(long_name).eval_epochs]
    data = {b: collect(results_dir, b[0], TABLE1, epoch=b[1]) for b in budgets}
    paper = paper_rows("table1")
    rows = []
    for m in TABLE1:
        nll = [format_stat(seed_summary(per_seed(data[b][m], metric("nll"))), NLL_DECIMALS) for b in budgets]
        acc = [format_stat(seed_summary(per_seed(data[b][m], metric("svm_acc"))), ACC_DECIMALS) for b in budgets]
        changes = {d["seed"]: c["change"] for d in train_docs(results_dir, long_name, [m]) if (c := training_end(d))}
        rows.append((paper[m]["display"], f"{paper[m]['nll']:.{NLL_DECIMALS}f}", *nll,
                     f"{paper[m]['acc']:.{ACC_DECIMALS}f}", *acc, format_stat(seed_summary(changes), 3)))
    labels = [f"{short}, {get_preset(short).epochs} epochs"] + [f"{long_name}, epoch {e}" for _, e in budgets[1:]]
    columns = ("Model", "NLL (paper)", *(f"NLL {b}" for b in labels), "Acc (paper)", *(f"Acc {b}" for b in labels),
               f"valid ELBO change per epoch, last 20 ({long_name})")
    seeds = seeds_used({f"{b}{m}": evals for b, runs in data.items() for m, evals in runs.items()})
    p = get_preset(long_name)
    caption = (f"Table 1 against training budget. Paper: as printed, {citation()}. {short}: "
               f"{get_preset(short).epochs} epochs, NLL with S = {get_preset(short).nll_samples}; {long_name}: one run "
               f"of {p.epochs} epochs evaluated at epochs "
               f"{', '.join(map(str, p.eval_epochs))} (its best weights so far; NLL with S = {p.nll_samples} before "
               f"the last and {p.final_nll_samples} at it, every seed; seed 0 was also evaluated with S = "
               f"{p.check_nll_samples.get(0)}, the estimator check of the text below). {seeds_text(seeds)}; "
               "mean ± sample std over seeds (n seeds). A change per epoch near 0 means converged; a large one, a run "
               "recovering from a dip (the table of training ends shows the dips).")
    return Table("table1-budgets", caption, columns, tuple(rows), short, tuple(seeds))


TABLES["table1-budgets"] = table1_budgets

SAME_PATH_NATS = 0.01  # validation ELBOs this close: the two runs followed one path (rounding aside)


def _machine(doc: dict) -> str:
    return doc["provenance"].get("device_name", "?").split(" (")[0].replace("(R)", "")


def short_long_pairs(results_dir: Path | str, preset: str = "cpu") -> list[dict]:
    """Every run of the short preset beside the long preset's run of the same model and seed,
    over the short run's epochs: their validation ELBO at its last epoch, the first epoch at which
    they part by more than SAME_PATH_NATS (None: never), and the code revision and processor of each."""
    short, long_name = short_and_long(preset)
    first = get_preset(long_name).eval_epochs[0]
    pairs = []
    for m in get_preset(long_name).models:
        for s in evaluated_seeds(results_dir, long_name, m, epoch=first):
            if s not in evaluated_seeds(results_dir, short, m):
                continue
            a, b = (load_train(RunPaths(Path(results_dir), p, m, s)) for p in (short, long_name))
            va, vb = ([e["valid_elbo"] for e in d["history"]] for d in (a, b))
            n = len(va)
            if len(vb) < n:  # a long run that stopped early has no epoch to compare with
                continue
            parted = next((i + 1 for i, (x, y) in enumerate(zip(va, vb[:n])) if abs(x - y) > SAME_PATH_NATS), None)
            deepest = max(a["config"]["enc_depth"], a["config"]["dec_depth"])
            pairs.append({"model": m, "seed": s, "epochs": n, "short": va[-1], "long": vb[n - 1], "parted": parted,
                          "deepest": deepest,
                          "revisions": tuple(d["provenance"].get("git_revision", "?")[:7] for d in (a, b)),
                          "machines": (_machine(a), _machine(b))})
    return pairs


def short_long_table(results_dir: Path | str, preset: str = "cpu") -> Table:
    """:func:`short_long_pairs` as a table, the pairs that parted first."""
    short, long_name = short_and_long(preset)
    pairs = sorted(short_long_pairs(results_dir, short), key=lambda p: (p["parted"] is None, p["parted"] or 0))
    rows = tuple((f"{p['model']} seed {p['seed']}", f"{p['short']:.4f}", f"{p['long']:.4f}",
                  f"{p['long'] - p['short']:+.4f}", str(p["parted"] or "never"), " / ".join(p["revisions"]),
                  " / ".join(dict.fromkeys(p["machines"]))) for p in pairs)
    n = pairs[0]["epochs"] if pairs else get_preset(short).epochs
    columns = ("Run", f"valid ELBO, {short} epoch {n}", f"valid ELBO, {long_name} epoch {n}", "long − short",
               f"first epoch apart by > {SAME_PATH_NATS:g} nats", "revisions (short / long)", "processor(s)")
    caption = (f"The {short} preset's runs beside the {long_name} preset's runs of the same model and seed, over "
               f"the {short} run's {n} epochs: the same recipe and seed, trained at the code revisions and on the "
               "processors the last two columns name. 'never': the two followed one path.")
    return Table("short-long", caption, columns, rows, short, tuple(sorted({p["seed"] for p in pairs})))


TABLES["short-long"] = short_long_table


def short_long_text(results_dir: Path | str, preset: str = "cpu") -> str:
    """How many short runs the long runs repeat exactly, and how far the others drift."""
    pairs = short_long_pairs(results_dir, preset)
    if not pairs:
        return "No run has results in both the {} and the {} preset yet.".format(*short_and_long(preset))
    apart = [p for p in pairs if p["parted"] is not None]
    same = len(pairs) - len(apart)
    text = (f"Of the {len(pairs)} runs that both presets trained, {same} followed one path for all "
            f"{pairs[0]['epochs']} epochs (validation ELBOs within {SAME_PATH_NATS:g} nats every epoch)")
    if not apart:
        return text + "."
    worst = max(apart, key=lambda p: abs(p["long"] - p["short"]))
    text += (f"; {len(apart)} parted, at epochs {min(p['parted'] for p in apart)} to "
             f"{max(p['parted'] for p in apart)}, and at epoch {worst['epochs']} differ by up to "
             f"{abs(worst['long'] - worst['short']):.2f} nats ({worst['model']} seed {worst['seed']}).")
    for name, group in (("one hidden layer per side", [p for p in pairs if p["deepest"] == 1]),
                        ("a deeper side", [p for p in pairs if p["deepest"] > 1])):
        if group:
            gaps = [abs(p["long"] - p["short"]) for p in group]
            text += (f" Of the {len(group)} with {name}, {sum(p['parted'] is not None for p in group)} parted; "
                     f"their epoch-{group[0]['epochs']} ELBOs differ by {statistics.median(gaps):.2f} nats in the "
                     f"median, {max(gaps):.2f} at most.")
    return text


def training_ends_table(results_dir: Path | str, preset: str | None = None) -> Table:
    """Every finished run of a long preset (``preset``: it, or the short preset it lengthens;
    default long): did it converge, and was its end stable (see :func:`training_end`)?"""
    long_name = short_and_long(preset)[1]
    threshold = verdicts.THRESHOLDS["nll"][0]
    rows, seeds = [], set()
    for m in get_preset(long_name).models:
        last = run_preset(long_name, m).eval_epochs[-1]
        for s in evaluated_seeds(results_dir, long_name, m, epoch=last):
            c = training_end(load_train(RunPaths(Path(results_dir), long_name, m, s)))
            if c is None:
                continue
            seeds.add(s)
            state = "still improving" if c["best_change"] * LAST_EPOCHS >= threshold else "levelling off"
            rows.append((f"{m} seed {s}", str(last), f"{c['change']:+.3f}", f"{c['best_change']:+.3f}",
                         str(c["best_epoch"]), str(c["dips"]), f"{c['deepest']:.1f}", f"{c['overfit']:+.2f}",
                         state + (", unstable" if c["dips"] else "")))
    columns = ("Run", "epochs", f"valid ELBO change per epoch, last {LAST_EPOCHS}",
               f"best valid ELBO so far: change per epoch, last {LAST_EPOCHS}", "best epoch",
               f"dips (epochs > {DIP_NATS:g} nats below the best so far)", "deepest dip (nats)",
               "train − valid ELBO, last epoch (nats)", "end")
    caption = (f"How each run of the {long_name} preset ended, over its last {LAST_EPOCHS} epochs. The evaluated "
               "weights are the best so far by validation ELBO, so they follow the fourth column. 'still improving': "
               f"that best rose by at least the {threshold:g}-nat threshold in those epochs; 'levelling off': by less; "
               f"'unstable': some epoch fell more than {DIP_NATS:g} nats below it. A positive train − valid gap: "
               "the model fits its training images better than held-out ones (the training ELBO is the epoch's mean "
               "over its batches).")
    return Table("training-ends", caption, columns, tuple(rows), long_name, tuple(sorted(seeds)))


TABLES["training-ends"] = training_ends_table


def gap_text(results_dir: Path | str, preset: str = "cpu") -> str:
    """VAE(1L) at the longest budget against the paper's and Burda et al.'s numbers: how many
    nats remain and what budget, estimator and protocol explain, as far as the runs can tell."""
    preset, long_name = short_and_long(preset)
    last = get_preset(long_name).eval_epochs[-1]
    short = collect(results_dir, preset, ["vae-1l"])["vae-1l"]
    long = collect(results_dir, long_name, ["vae-1l"], epoch=last)["vae-1l"]
    if not long:
        return f"VAE(1L) has no result at epoch {last} of the {long_name} preset yet."
    nll = seed_summary(per_seed(long, metric("nll")))["mean"]
    refs = [(citation(), paper_rows("table1")["vae-1l"]["nll"])] + [
        (e["source"], e["nll"]) for e in published()["entries"] if "static" in e["binarization"].lower()]
    lines = [f"- VAE(1L) after {last} epochs: {nll:.2f} nats (mean over {len(long)} seed(s), S = "
             f"{long[0]['metrics']['nll_samples']}); " + "; ".join(
                 f"{nll - v:.2f} nats above {src} ({v:.2f})" for src, v in refs) + "."]
    first = get_preset(long_name).eval_epochs[0]
    early = {e["seed"]: e for e in collect(results_dir, long_name, ["vae-1l"], epoch=first)["vae-1l"]}
    same_s = {e["seed"]: early[e["seed"]]["metrics"]["nll"] - e["metrics"]["nll_by_samples"][k]
              for e in long if e["seed"] in early
              and (k := str(early[e["seed"]]["metrics"]["nll_samples"])) in e["metrics"]["nll_by_samples"]}
    if same_s:
        fell = seed_summary(same_s)
        lines.append(f"- Budget: from epoch {first} to epoch {last} of the same run{'s' if fell['n'] > 1 else ''}, "
                     f"at the same S = {early[fell['seeds'][0]]['metrics']['nll_samples']}, the NLL fell "
                     f"{fell['mean']:.2f} nats ({seeds_text(fell['seeds'])}).")
    elif short:
        a = seed_summary(per_seed(short, metric("nll")))["mean"]
        lines.append(f"- Budget: from {get_preset(preset).epochs} to {last} epochs the NLL fell {a - nll:.2f} nats "
                     f"({preset} preset, S = {short[0]['metrics']['nll_samples']}; the longer run at S = "
                     f"{long[0]['metrics']['nll_samples']}, so this includes the estimator's part).")
    ends = {d["seed"]: c["best_change"] * LAST_EPOCHS
            for d in train_docs(results_dir, long_name, ["vae-1l"]) if (c := training_end(d))}
    if ends:
        rose = seed_summary(ends)
        lines.append(f"- Budget beyond epoch {last}: over the last {LAST_EPOCHS} epochs the best validation ELBO still "
                     f"rose {rose['mean']:.2f} nats ({seeds_text(rose['seeds'])}); how much longer training would "
                     "close is not measured.")
    # the estimator check: the run with the most nested samples
    check = max(long, key=lambda e: max(map(int, e["metrics"].get("nll_by_samples", {"0": 0}))))
    by = check["metrics"].get("nll_by_samples", {})
    s = max(map(int, by), default=0)
    fewer = [k for k in sorted(map(int, by)) if 100 <= k < s]
    if fewer:
        lines.append(f"- Estimator (seed {md_text(check['seed'])}, same weights, nested samples): " + ", ".join(
            f"S = {k} overstates the NLL by {by[str(k)] - by[str(s)]:.2f} nats" for k in fewer) + f" against S = {s}.")
    authors = collect(results_dir, long_name, ["vae-1l-authors"], epoch=last)["vae-1l-authors"]
    if authors:
        b = seed_summary(per_seed(authors, metric("nll")))["mean"]
        ours = {e["seed"]: e for e in long}
        gaps = [claims.nll_diff(ours[e["seed"]], e) for e in authors if e["seed"] in ours]
        iv = verdicts.interval(gaps)
        judged = "" if not gaps else f"; n = 1: not judged" if iv["n"] == 1 else "" if math.isnan(iv["low"]) else (
            f"; 95% interval [{iv['low']:+.2f}, {iv['high']:+.2f}], n = {iv['n']}: "
            f"{verdicts.verdict(iv, +1, 0.0, verdicts.THRESHOLDS['nll'][0])} against the 1-nat threshold")
        paired = iv["estimate"] if gaps else nll - b  # ours minus theirs over the seeds both have
        lines.append(f"- Protocol: the authors' protocol (ReLU, He init, lr 1e-3) reaches {b:.2f} at epoch {last}, "
                     f"{paired:+.2f} nats against ours ({seeds_text(sorted(e['seed'] for e in authors))}{judged}).")
    return "\n".join(lines)


# ------------------------------------------------------------------------- sentences, as the book shows them

@dataclass(frozen=True)
class Text:
    """A sentence (or list) built from results, as a page shows it: ``to_html`` marks it with its
    ``id`` and preset, so that the book check rebuilds it (:data:`TEXTS`) and compares it word for
    word, as it does a :class:`Table`."""

    id: str
    markdown: str
    preset: str | None

    def to_html(self) -> str:
        from markdown_it import MarkdownIt

        # Raw HTML off: a value from a result file is text, whatever it holds (md_text escapes it too).
        body = MarkdownIt("commonmark", {"html": False}).render(self.markdown)
        return (f'<div class="scvae-text" data-text="{html.escape(self.id)}" '
                f'data-preset="{html.escape(self.preset or "")}">\n{body}</div>')


def _by_budget(results_dir: Path | str, preset: str) -> dict[str, dict]:
    """Every claim's verdict evidence at each budget with results: the short preset, its long
    preset's evaluated epochs and the paper preset, by :func:`claims.budget_label`."""
    short, long_name = short_and_long(preset)
    return {claims.budget_label(p, e): claims.verdict_evidence(results_dir, p, epoch=e)
            for p, e in claims.budgets(results_dir, (short, long_name, "paper"))}


def budget_verdicts_text(results_dir: Path | str, preset: str = "cpu") -> str:
    """Each budget's verdict of every claim, as a list."""
    return "\n".join(f"- **{label}**: " + ", ".join(f"{cid} *{c['status']}*" for cid, c in ev.items())
                     for label, ev in _by_budget(results_dir, preset).items())


def replicates_text(results_dir: Path | str, preset: str = "cpu") -> str:
    """:func:`claims.replicate_text` for the short preset against its long preset's first
    evaluated epoch (the same seeds, the same epochs), where each has results."""
    short, long_name = short_and_long(preset)
    pair = (claims.budget_label(short, None), claims.budget_label(long_name, get_preset(long_name).eval_epochs[0]))
    by_budget = _by_budget(results_dir, preset)
    return claims.replicate_text(*(by_budget.get(b, {}) for b in pair), pair)


# id -> the sentence's builder (results_dir, preset): every sentence a page shows by build_text
TEXTS: dict[str, Callable[..., str]] = {
    "budget": lambda results_dir, preset=None: budget_text(results_dir),
    "collapse": collapse_text,
    "convergence": lambda results_dir, preset=None: convergence_text(nll_convergence(results_dir, preset)),
    **{f"start-{t.stage}": (lambda results_dir, preset="long", t=t: start_text(results_dir, t, preset)) for t in TWINS},
    "short-long": short_long_text,
    "gap": gap_text,
    "budget-verdicts": budget_verdicts_text,
    "replicates": replicates_text,
}


def build_text(text_id: str, results_dir: Path | str, preset: str | None = None) -> Text:
    """The sentence ``text_id`` of :data:`TEXTS` from the results, for a page to show (``to_html``)."""
    check_name("text", text_id, TEXTS)
    builder = TEXTS[text_id]
    return Text(text_id, builder(results_dir) if preset is None else builder(results_dir, preset), preset)

