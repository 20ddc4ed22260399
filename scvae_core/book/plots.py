"""The paper's figures from result files, as matplotlib Figures (no plt.show; notebooks
display them and write the captions). Every figure's title names the preset and seeds its
data came from."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..presets import DEFAULT_DATASET
from ..results import TSNE_ARRAYS, ResultError, RunPaths, read_json
from ..runs import default_epoch, display_name, load_figures_npz, seeds_on_disk, seeds_text
from .verdicts import VERDICTS
from ..zoo import OURS, TWINS, twin_of

TSNE_TITLES = {"tsne_raw": "raw data", "tsne_first": "first layer", "tsne_middle": "middle layer",
               "tsne_last": "last layer", "tsne_latent": "latent space"}
SIDES = {"enc": "encoder deepened", "dec": "decoder deepened"}
KIND_STYLE = {"plain": dict(marker="o", linestyle="-"), "skip": dict(marker="s", linestyle="--")}


@dataclass(frozen=True)
class RunFigures:
    """One run's figures.npz, with where it came from (for the titles)."""

    model: str
    preset: str
    seed: int
    arrays: dict[str, np.ndarray]
    active_units: int | None = None  # from the run's eval.json (None: not recorded)
    au_threshold: float | None = None  # the variance a latent mean must exceed to be active

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.arrays:
            raise ResultError(f"{self.model} (preset {self.preset}, seed {self.seed}) has no {key!r} in figures.npz; "
                              "t-SNE embeddings exist only for the preset's figure seeds")
        return self.arrays[key]


def load_figures(results_dir: Path | str, preset: str, model: str, seed: int) -> RunFigures:
    """A run's figures at the evaluation the tables show (a multi-epoch preset's last)."""
    paths, epoch = RunPaths(Path(results_dir), preset, model, seed), default_epoch(preset, None, model)
    arrays = load_figures_npz(paths, epoch)
    evaluated = paths.eval_json_at(epoch)
    metrics = read_json(evaluated, "eval").get("metrics", {}) if evaluated.exists() else {}
    return RunFigures(model, preset, seed, arrays, metrics.get("active_units"), metrics.get("au_threshold"))


def _source(preset: str | None, seeds: Iterable[int]) -> str:
    return f"preset {preset or 'none'}, {seeds_text(seeds)}"


def _runs_source(runs: Iterable[RunFigures]) -> str:
    runs = list(runs)
    presets = sorted({r.preset for r in runs})
    return _source("/".join(presets), (r.seed for r in runs))


def _scatter(ax, xy: np.ndarray, labels: np.ndarray) -> None:
    for digit in np.unique(labels):
        pts = xy[labels == digit]
        ax.scatter(pts[:, 0], pts[:, 1], s=3, color=f"C{int(digit) % 10}", label=str(int(digit)))
    ax.set_xticks([])
    ax.set_yticks([])


def latent_tsne_grid(figs_by_model: Mapping[str, RunFigures], keys: tuple[str, ...] = ("tsne_latent",)) -> Figure:
    """Figure 1 (upper): one column of panels per model, one row per embedding, coloured by digit."""
    return _tsne_grid(figs_by_model, keys, models_in_rows=False, what="t-SNE of the representations")


def layer_tsne_grid(figs_by_model: Mapping[str, RunFigures]) -> Figure:
    """Figure 4 (left): raw data, first, middle, last encoder layer and latent space, one row per model."""
    return _tsne_grid(figs_by_model, TSNE_ARRAYS, models_in_rows=True, what="t-SNE layer by layer")


def _tsne_grid(figs_by_model: Mapping[str, RunFigures], keys: tuple[str, ...], models_in_rows: bool,
               what: str) -> Figure:
    shape = (len(figs_by_model), len(keys)) if models_in_rows else (len(keys), len(figs_by_model))
    fig = Figure(figsize=(2.8 * shape[1] + 0.8, 2.8 * shape[0] + 0.4), layout="constrained")
    axes = fig.subplots(*shape, squeeze=False)
    for m, (name, run) in enumerate(figs_by_model.items()):
        for k, key in enumerate(keys):
            ax = axes[m, k] if models_in_rows else axes[k, m]
            ax.set_title(f"{display_name(name)}: {TSNE_TITLES.get(key, key)}", fontsize="medium")
            why = _empty_panel_reason(run, key)
            if why:  # an empty box would look like a plotting failure: say what happened
                ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, fontsize="large")
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                _scatter(ax, run[key], run["labels"])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, title="digit", loc="outside right center", markerscale=4)
    fig.suptitle(f"{what} ({_runs_source(figs_by_model.values())})")
    return fig


def _empty_panel_reason(run: RunFigures, key: str) -> str | None:
    """Why a t-SNE panel shows no embedding: a collapsed posterior (no active latent unit: the
    latent means hardly vary, so t-SNE has nothing to separate) or an undefined embedding."""
    if key == "tsne_latent" and run.active_units == 0:
        limit = f"\n(variance of every\nlatent mean < {run.au_threshold:g})" if run.au_threshold else ""
        return f"posterior collapsed:\nno active latent unit{limit}"
    if not np.isfinite(run[key]).all():
        return "no embedding:\nthe layer's outputs are\n(nearly) identical for every image"
    return None


def interleave(truth: np.ndarray, model: np.ndarray, pairs: int) -> np.ndarray:
    """One image: k truth/reconstruction pairs laid out ``pairs`` per row, truth in the odd
    columns (1st, 3rd, ...) and its reconstruction right of it, as in the paper."""
    k, h, w = truth.shape
    rows = math.ceil(k / pairs)
    mosaic = np.zeros((rows * h, 2 * pairs * w))  # 0: blank paper under gray_r
    for n in range(k):
        r, c = divmod(n, pairs)
        mosaic[r * h:(r + 1) * h, 2 * c * w:(2 * c + 1) * w] = truth[n]
        mosaic[r * h:(r + 1) * h, (2 * c + 1) * w:(2 * c + 2) * w] = model[n]
    return mosaic


def recon_grid(figs_by_model: Mapping[str, RunFigures]) -> Figure:
    """Figures 1 (lower) and 4 (right): ground truth (odd columns) and reconstruction (even
    columns), one panel per model."""
    fig = Figure(figsize=(3.2 * len(figs_by_model), 3.6), layout="constrained")
    axes = fig.subplots(1, len(figs_by_model), squeeze=False)[0]
    for ax, (name, run) in zip(axes, figs_by_model.items()):
        truth = run["recon_truth"]
        ax.imshow(interleave(truth, run["recon_model"], math.ceil(math.sqrt(len(truth)))), cmap="gray_r",
                  vmin=0, vmax=1)
        ax.set_title(display_name(name))
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"ground truth (odd columns) and reconstruction (even columns) "
                 f"({_runs_source(figs_by_model.values())})")
    return fig


def _spread(summaries: list[dict]) -> list[float]:
    # One seed has no spread (std NaN): drawn as a zero-length bar; the title gives the seeds.
    return [0.0 if math.isnan(s["std"]) else s["std"] for s in summaries]


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, fontsize=8, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


NOT_RECORDED = "not recorded for these runs\n(evaluated before this reading existed)"


def fisher_vs_depth(by_reading: Mapping[str, dict], measure: str = "model") -> Figure:
    """Figure 2 from :func:`scvae_core.book.tables.fisher_depth`, one row per reading of Fisher:
    Fisher against the depth of the deepened side, plain vs skip, log scale, error bars = std
    over seeds. ``measure``: ``model`` (all layers, as the paper) or ``part`` (the deepened side's)."""
    readings = list(by_reading)
    fig = Figure(figsize=(9, 3.2 * len(readings)), layout="constrained")
    axes = fig.subplots(len(readings), 2, squeeze=False)
    for row, reading in zip(axes, readings):
        data = by_reading[reading]
        if not any(points for kinds in data["series"].values() for points in kinds.values()):
            for ax in row:
                _no_data(ax, NOT_RECORDED)
            row[0].set_ylabel(reading)
            continue
        for ax, (side, title) in zip(row, SIDES.items()):
            for kind, points in data["series"][side].items():
                if points:
                    summaries = [p[measure] for p in points]
                    ax.errorbar([p["depth"] for p in points], [s["mean"] for s in summaries],
                                yerr=_spread(summaries), capsize=3, label="with skips" if kind == "skip" else "plain",
                                **KIND_STYLE[kind])
            ax.set_yscale("log")
            ax.set_xlabel("hidden layers of the deepened side")
            ax.set_title(f"{title} — {reading}", fontsize=9)
            ax.legend(fontsize=7)
        row[0].set_ylabel(f"Fisher ({reading})" + (", deepened side" if measure == "part" else ""))
    first = by_reading[readings[0]]
    fig.suptitle(f"Fisher information against depth, per reading ({_source(first['preset'], first['seeds'])})")
    return fig


def fisher_bars(by_reading: Mapping[str, dict], names: Mapping[str, str] | None = None) -> Figure:
    """Figures 3 and 5 from :func:`scvae_core.book.tables.fisher_per_model`, one panel per reading:
    encoder vs decoder Fisher per model, log scale, error bars = std over seeds."""
    readings = list(by_reading)
    width = max(1.3 * len(next(iter(by_reading.values()))["models"]) + 2, 4)
    fig = Figure(figsize=(min(width * len(readings), 15), 4), layout="constrained")
    axes = fig.subplots(1, len(readings), squeeze=False)[0]
    for ax, reading in zip(axes, readings):
        data = by_reading[reading]
        models = list(data["models"])
        if not models:
            _no_data(ax, NOT_RECORDED)
            ax.set_title(reading, fontsize=9)
            continue
        x = np.arange(len(models))
        for offset, part in ((-0.2, "encoder"), (0.2, "decoder")):
            summaries = [data["models"][m][part] for m in models]
            ax.bar(x + offset, [s["mean"] for s in summaries], width=0.4, yerr=_spread(summaries), capsize=3,
                   label=part)
        ax.set_xticks(x, [(names or {}).get(m, m) for m in models], rotation=30, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_title(reading, fontsize=9)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("Fisher information")
    first = by_reading[readings[0]]
    missing = f"; not run: {', '.join(first['missing'])}" if first.get("missing") else ""
    fig.suptitle(f"Fisher information of encoder and decoder, per reading "
                 f"({_source(first['preset'], first['seeds'])}{missing})")
    return fig


ZOOM_NATS = 20.0  # the right panel of the training curves: this far below the best validation ELBO


def training_curves(train_docs: Iterable[dict]) -> Figure:
    """Validation (solid) and training (dotted) ELBO per epoch of train.json documents, one
    colour per model, the best epoch marked (o) and an early stop (x): all of it (left), and within
    ZOOM_NATS of the best validation ELBO (right), where a collapsed or unstable run's dips no longer
    flatten the converging ones."""
    docs = list(train_docs)
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    colours: dict[str, str] = {}
    for doc in docs:
        first_of_model = doc["model"] not in colours  # one legend entry per model, not per seed
        colour = colours.setdefault(doc["model"], f"C{len(colours) % 10}")
        epochs = [h["epoch"] for h in doc["history"]]
        for ax in axes:
            ax.plot(epochs, [h["valid_elbo"] for h in doc["history"]], color=colour,
                    label=doc["model"] if first_of_model and ax is axes[0] else None)
            ax.plot(epochs, [h["train_elbo"] for h in doc["history"]], color=colour, linestyle=":")
            # the weights that are evaluated (o), and where early stopping ended the run (x)
            ax.plot([doc["best_epoch"]], [doc["best_valid_elbo"]], color=colour, marker="o", markersize=4)
            if doc.get("stopped") == "early_stopping":
                ax.plot([epochs[-1]], [doc["history"][-1]["valid_elbo"]], color=colour, marker="x", markersize=6)
    best = max((h["valid_elbo"] for d in docs for h in d["history"]), default=0.0)
    axes[1].set_ylim(best - ZOOM_NATS, best + 0.1 * ZOOM_NATS)
    axes[0].set_title("all epochs", fontsize=9)
    axes[1].set_title(f"within {ZOOM_NATS:g} nats of the best validation ELBO", fontsize=9)
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("ELBO (solid: validation, dotted: training)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Training curves ({_source('/'.join(sorted({d['preset'] for d in docs})), (d['seed'] for d in docs))})")
    return fig


def training_curves_per_model(train_docs: Iterable[dict], zoom: float = 2 * ZOOM_NATS) -> Figure:
    """One panel per model: its training (dotted) and validation (solid) ELBO per epoch, one
    colour per seed, the best epoch marked (o). Each panel shows ``zoom`` nats below its model's
    best validation ELBO, so the gap between the two curves (overfitting) and a flat, low
    plateau (collapse) read at one scale across panels."""
    by_model: dict[tuple[str, str], list[dict]] = {}  # a model on each data set gets its own panel
    for doc in train_docs:
        by_model.setdefault((doc["model"], doc.get("dataset", DEFAULT_DATASET)), []).append(doc)
    cols = min(3, max(len(by_model), 1))
    rows = max(1, math.ceil(len(by_model) / cols))
    fig = Figure(figsize=(3.4 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, ((model, dataset), docs) in zip(axes, by_model.items()):
        for doc in sorted(docs, key=lambda d: d["seed"]):
            colour, epochs = f"C{doc['seed'] % 10}", [h["epoch"] for h in doc["history"]]
            ax.plot(epochs, [h["valid_elbo"] for h in doc["history"]], color=colour, label=f"seed {doc['seed']}")
            ax.plot(epochs, [h["train_elbo"] for h in doc["history"]], color=colour, linestyle=":")
            ax.plot([doc["best_epoch"]], [doc["best_valid_elbo"]], color=colour, marker="o", markersize=4)
        best = max(h["valid_elbo"] for d in docs for h in d["history"])
        top = max(max(h["train_elbo"], h["valid_elbo"]) for d in docs for h in d["history"])
        ax.set_ylim(best - zoom, max(top, best) + 0.1 * zoom)
        ax.set_title(display_name(model) + ("" if dataset == DEFAULT_DATASET else f"\n{dataset}"), fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in axes[len(by_model):]:
        ax.set_visible(False)
    if by_model:
        axes[0].set_ylabel("ELBO (solid: validation,\ndotted: training)", fontsize=8)
    docs = [d for ds in by_model.values() for d in ds]
    fig.suptitle(f"Training curves per model ({_source('/'.join(sorted({d['preset'] for d in docs})), (d['seed'] for d in docs))})")
    return fig


@dataclass(frozen=True)
class StageFigures:
    runs: dict[str, RunFigures]  # model -> figures of its first figure seed with results
    missing: list[str]


def stage_figures(results_dir: Path | str, models: list[str], preset: str | None) -> StageFigures:
    """For each model, the figures of the lowest seed that has figures.npz with t-SNE."""
    runs, missing = {}, []
    for model in models:
        seeds = seeds_on_disk(results_dir, preset, model) if preset else []
        epoch = default_epoch(preset, None, model) if preset else None
        found = [s for s in seeds if RunPaths(Path(results_dir), preset, model, s).figures_npz_at(epoch).exists()]
        if found:
            runs[model] = load_figures(results_dir, preset, model, found[0])
        else:
            missing.append(model)
    return StageFigures(runs, missing)


def kfac_vs_exact(runs: Mapping[str, list[dict]]) -> Figure:
    """Exact against Kronecker-factored mean diagonal Fisher, one point per layer and run."""
    fig = Figure(figsize=(5, 4.5), layout="constrained")
    ax = fig.subplots()
    lo, hi = math.inf, -math.inf
    for model, evals in runs.items():
        pts = [(l["exact"], l["kfac"]) for e in evals for l in e["fisher"]["layers"] if l["exact"] > 0 and l["kfac"] > 0]
        if pts:
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, s=12, label=model)
            lo, hi = min(lo, *xs, *ys), max(hi, *xs, *ys)
    if lo < hi:
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1)
    ax.set(xscale="log", yscale="log", xlabel="exact (per-example gradients)", ylabel="Kronecker-factored")
    ax.legend(fontsize=7)
    fig.suptitle(f"Layer Fisher: exact vs factored ({_evals_source(runs)})")
    return fig


def _evals_source(runs: Mapping[str, list[dict]]) -> str:
    evals = [e for es in runs.values() for e in es]
    return _source("/".join(sorted({e["preset"] for e in evals})), (e["seed"] for e in evals))


def proposition1_scatter(runs: Mapping[str, list[dict]]) -> Figure:
    """Measured log10 Fisher ratio of consecutive layers against eq. 6's gradient ratio (left)
    and its inverse (right); the diagonal is agreement."""
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, title in zip(axes, ("log10_eq6_ratio", "log10_inverse_ratio"),
                              ("eq. 6: $(g_l / g_{l+1})^2$", "inverse: $(g_{l+1} / g_l)^2$")):
        lo, hi = 0.0, 0.0
        for model, evals in runs.items():
            pairs = [p for e in evals for p in e["derivations"]["proposition1"]["pairs"]
                     if p[key] is not None and p["log10_fisher_ratio"] is not None]
            if pairs:
                xs, ys = [p[key] for p in pairs], [p["log10_fisher_ratio"] for p in pairs]
                ax.scatter(xs, ys, s=12, label=model)
                lo, hi = min(lo, *xs, *ys), max(hi, *xs, *ys)
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1)
        ax.set(xlabel=f"log10 {title}", title=title)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("log10 measured $I_{l+1} / I_l$")
    fig.suptitle(f"Proposition 1 on consecutive hidden layers ({_evals_source(runs)})")
    return fig


def proposition3_bars(runs: Mapping[str, list[dict]]) -> Figure:
    """log10(Fisher with skips on / off, same weights) per skip-receiving layer."""
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    ax = fig.subplots()
    offset = 0
    for model, evals in runs.items():
        for e in evals:
            layers = [l for l in e["derivations"].get("proposition3", {}).get("layers", [])
                      if l["receives_skip"] and l["ratio"]]
            if layers:
                xs = np.arange(offset, offset + len(layers))
                ax.bar(xs, [math.log10(l["ratio"]) for l in layers], label=f"{model} seed {e['seed']}")
                offset += len(layers) + 1
    ax.axhline(0, color="grey", linewidth=1)
    ax.set(xticks=[], xlabel="skip-receiving layers (encoder then decoder), per run",
           ylabel="log10 Fisher on / off")
    ax.legend(fontsize=7)
    fig.suptitle(f"Proposition 3: Fisher with and without the skips ({_evals_source(runs)})")
    return fig


STATUS_COLOURS = dict(zip(VERDICTS, ("tab:green", "tab:red", "tab:blue", "tab:orange", "tab:purple", "tab:grey")))
LINE_STYLES = ("-", "--", ":", "-.")  # one per twin set, ours first (a new set needs no entry here)


def nll_convergence_plot(data: dict) -> Figure:
    """From :func:`scvae_core.book.tables.nll_convergence`: how far the NLL estimate from the first S
    importance samples lies above the estimate from all of them, against S (log axes), one line
    per model (mean over seeds; dashed: ReLU twins). Models differ by 100 nats in NLL, so the
    excess, not the NLL, is drawn: a line still falling steeply at its right end means the
    largest S has not converged either."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    seeds: set[int] = set()
    for m, curve in data["models"].items():
        counts = sorted(curve)
        final = curve[counts[-1]]["mean"]
        seeds |= {s for k in counts for s in curve[k]["seeds"]}
        ax.plot(counts[:-1], [curve[k]["mean"] - final for k in counts[:-1]], marker="o",
                linestyle=LINE_STYLES[(OURS, *TWINS).index(twin_of(m)) % len(LINE_STYLES)], label=m)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_xlabel("importance samples S")
    ax.set_ylabel("NLL estimate − estimate at the largest S (nats)")
    ax.legend(fontsize=7, ncols=2)
    fig.suptitle(f"Convergence of the NLL estimate in S ({_source(data['preset'], seeds)})")
    return fig


def _effect_rows(evidence: Mapping[str, dict]) -> list[tuple[str, str]]:
    return [(cid, e["label"]) for cid, c in evidence.items() for e in c["effects"]]


def _standardised(e: dict) -> tuple[float, float | None, float | None]:
    """An effect's estimate and interval in the claimed direction, in units of its threshold."""
    scale = e["sign"] / e["threshold"]
    centre = (e["estimate"] - e["level"]) * scale
    if math.isnan(e["low"]):
        return centre, None, None
    lo, hi = sorted(((e["low"] - e["level"]) * scale, (e["high"] - e["level"]) * scale))
    return centre, lo, hi


BUDGET_MARKERS = "osD^v<>p"


def verdict_effects(by_budget: Mapping[str, Mapping[str, dict]], key: str = "budget") -> Figure:
    """Every measured effect: its estimate and 95% interval, in units of its practical
    threshold and in the claimed direction (right of +1: holds; left of −1: contradicted;
    inside ±1: no effect), coloured by verdict; one row per effect, one marker per budget
    (``by_budget``: label -> :func:`scvae_core.book.claims.verdict_evidence`; ``key`` says what
    the labels are, e.g. "protocol")."""
    labels = list(by_budget)
    rows = list(dict.fromkeys(r for ev in by_budget.values() for r in _effect_rows(ev)))
    fig = Figure(figsize=(8.5, 0.34 * len(rows) + 1.8), layout="constrained")
    ax = fig.subplots()
    offsets = np.linspace(-0.25, 0.25, len(labels)) if len(labels) > 1 else [0.0]
    for k, (label, offset) in enumerate(zip(labels, offsets)):
        for cid, c in by_budget[label].items():
            for e in c["effects"]:
                if not e["n"]:
                    continue
                i = rows.index((cid, e["label"])) + offset
                centre, lo, hi = _standardised(e)
                colour = STATUS_COLOURS[e["status"]]
                if lo is not None:
                    ax.plot([lo, hi], [i, i], color=colour, linewidth=1.5)
                ax.scatter([centre], [i], color=colour, marker=BUDGET_MARKERS[k % len(BUDGET_MARKERS)], s=18,
                           zorder=3)
    for x in (-1, 1):
        ax.axvline(x, color="grey", linewidth=0.8, linestyle="--")
    ax.axvline(0, color="grey", linewidth=1)
    ax.set_yticks(range(len(rows)), [f"{cid}: {label[:80]}" for cid, label in rows], fontsize=6)
    ax.set_xscale("symlog", linthresh=1)
    ax.margins(x=0.04)  # a marker at the largest effect stays whole
    ax.invert_yaxis()
    ax.set_xlabel("effect in the claimed direction / its threshold δ (dashed: ±δ)")
    if len(labels) > 1:  # the marker says the budget, the colour the verdict: the key shows markers only
        handles = [Line2D([], [], color="black", marker=BUDGET_MARKERS[k % len(BUDGET_MARKERS)], linestyle="none",
                          label=label) for k, label in enumerate(labels)]
        fig.legend(handles=handles, fontsize=7, title=f"{key} (marker)", loc="outside lower center",
                   ncols=min(len(labels), 4))
    legend = ", ".join(f"{colour.removeprefix('tab:')} {v}" for v, colour in STATUS_COLOURS.items())
    presets = sorted({str(c["preset"]) for ev in by_budget.values() for c in ev.values()})
    fig.suptitle(f"Effects behind each verdict, 95% intervals (presets {', '.join(presets)})\n{legend}", fontsize=9)
    return fig


def rate_distortion(runs: Mapping[str, list[dict]]) -> Figure:
    """Every run on the rate-distortion plane (Alemi et al. 2018): rate R = the KL term, distortion
    D = minus the reconstruction term (eval.json's ``metrics.kl`` and ``-metrics.rec``, which every
    evaluation records; ``diagnostics.rate_distortion`` repeats them), one point per seed. R + D is
    the negative ELBO: a model at R = 0 has a collapsed posterior."""
    fig = Figure(figsize=(7, 4.6), layout="constrained")
    ax = fig.subplots()
    drawn = False
    for i, (model, evals) in enumerate(runs.items()):
        if evals:
            ax.scatter([e["metrics"]["kl"] for e in evals], [-e["metrics"]["rec"] for e in evals], s=24,
                       color=f"C{i % 10}", label=display_name(model))
            drawn = True
    if drawn:
        ax.set(xlabel="rate R = KL(q(z|x) || p(z)) (nats)", ylabel="distortion D = −E_q log p(x|z) (nats)")
        ax.legend(fontsize=7)
    else:
        _no_data(ax, "no evaluated runs")
    fig.suptitle(f"Rate and distortion, one point per seed ({_evals_source(runs)})", fontsize=9)
    return fig


def _png(fig: Figure) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _show_figures_in_notebooks() -> None:
    """Our figures are plain ``Figure`` objects (no pyplot state), which IPython would print
    as text: teach it to render them as PNG when a notebook imports this module."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type(Figure, _png)


_show_figures_in_notebooks()
