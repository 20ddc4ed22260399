"""Beyond the paper (issue 27), from result files: the context of the SVM accuracy (the pixel
baselines of ``results/baselines/baselines.json`` beside the Table 1 models' SVM and linear probe)
and the verdicts of our own claims (:data:`claims.OUR_CLAIMS`, judged by the book's rule).

Importing this module registers its tables and texts in :data:`tables.TABLES` and
:data:`tables.TEXTS` (the book package imports it), so that the book check rebuilds them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import claims
from ..presets import get_preset
from ..zoo import SKIPVAE, TABLE1
from ..probes import BASELINES, baselines_path, read_baselines
from ..results import models_path, read_models
from ..runs import collect, display_name, metric, paper_rows, per_seed, resolve_preset, seed_summary, seeds_text, \
    seeds_used
from .tables import ACC_DECIMALS, NOT_RUN, TABLES, TEXTS, Table, format_stat

# baselines.json's names -> (features, classifier), as the table shows them
BASELINE_ROWS = {"svm_pixels": ("raw pixels (784, binary)", "SVM, the paper's protocol"),
                 "svm_pca": ("50 principal components of the pixels", "SVM, the paper's protocol"),
                 "linear_pixels": ("raw pixels (784, binary)", "logistic regression")}
REFERENCE = "svm_pixels"  # what every accuracy is read against
BASELINE_COLUMNS = ("Features", "Classifier", "Accuracy", "Test images", "− SVM on raw pixels")
NOT_RECORDED = "not recorded (evaluated before the linear probe existed)"


def _table1_runs(results_dir: Path | str, preset: str | None) -> tuple[str | None, dict[str, list[dict]]]:
    preset = resolve_preset(results_dir, "table1", preset)
    models = get_preset(preset).stages.get("table1", ()) if preset else ()
    return preset, collect(results_dir, preset, models) if models else {}


def _baselines(results_dir: Path | str) -> dict | None:
    """baselines.json, checked, or None where ``scvae baselines`` has not written it."""
    return read_baselines(results_dir) if baselines_path(results_dir).exists() else None


def _minus(mean: float | None, reference: float | None) -> str:
    if mean is None or reference is None:
        return ""
    return "(the reference)" if mean == reference else f"{mean - reference:+.{ACC_DECIMALS}f}"


def baselines_table(results_dir: Path | str, preset: str | None = None) -> Table:
    """The SVM accuracy in context: the paper's SVM on raw pixels and on 50 principal components
    of them, logistic regression on the pixels, then each Table 1 model's SVM and linear probe on
    its latent means (mean ± std over seeds), each minus the SVM on raw pixels."""
    doc = _baselines(results_dir)
    preset, runs = _table1_runs(results_dir, preset)
    rows, reference = [], None
    for name in BASELINES:
        features, classifier = BASELINE_ROWS[name]
        if doc is None:
            rows.append((features, classifier, NOT_RUN, "", ""))
            continue
        acc = doc["accuracies"][name]
        reference = doc["accuracies"][REFERENCE]["mean"]
        rows.append((features, classifier, f"{acc['mean']:.{ACC_DECIMALS}f} ± {acc['std']:.{ACC_DECIMALS}f} over "
                     f"{doc['folds']} folds", f"{doc['size']:,}", _minus(acc["mean"], reference)))
    for model, evals in runs.items():
        sizes = sorted({e["metrics"]["svm_size"] for e in evals})
        for key, classifier in (("svm_acc", "SVM, the paper's protocol"), ("linear_probe_acc", "logistic regression "
                                                                            "(linear probe)")):
            recorded = [e for e in evals if key in e["metrics"]]
            missing = sorted(e["seed"] for e in evals if key not in e["metrics"])
            if not evals:
                cell, mean = NOT_RUN, None
            elif not recorded:
                cell, mean = NOT_RECORDED, None
            else:  # the seeds that have it, and which do not
                stat = seed_summary(per_seed(recorded, metric(key)))
                cell, mean = format_stat(stat, ACC_DECIMALS), stat["mean"]
                if missing:
                    cell += f"; {seeds_text(missing)}: {NOT_RECORDED}"
            rows.append((f"{display_name(model)}: latent means (50)", classifier, cell,
                         ", ".join(f"{s:,}" for s in sizes), _minus(mean, reference)))
    seeds = seeds_used(runs)
    source = (f"Models: preset '{preset}', {seeds_text(seeds)}, mean ± sample std over seeds (n seeds)" if preset
              else "Models: nothing run yet")
    where = (f"Baselines: results/baselines/baselines.json ({doc['size']:,} test images of the fixed permutation, "
             f"the folds every model's SVM uses; principal components fitted on the training images)"
             if doc else f"Baselines: not run yet (`scvae baselines` writes {baselines_path(results_dir)})")
    caption = ("The SVM accuracy in context: what the paper's SVM protocol reaches on the pixels themselves, and "
               f"what each Table 1 model's latent means give it and a linear classifier. {where}. {source}; the last "
               "column is the accuracy minus the SVM's on raw pixels.")
    return Table("baselines", caption, BASELINE_COLUMNS, tuple(rows), preset, tuple(seeds))


def baselines_text(results_dir: Path | str, preset: str | None = None) -> str:
    """Table 1's SVM accuracies read against the baselines: which models' latent means beat the
    SVM on raw pixels and on 50 principal components, and where the paper's own SCVAE number lies."""
    doc = _baselines(results_dir)
    if doc is None:
        return "The pixel baselines have not been computed yet (`scvae baselines`)."
    acc = doc["accuracies"]
    pixels, pca = acc["svm_pixels"]["mean"], acc["svm_pca"]["mean"]
    paper = paper_rows("table1")["scvae"]["acc"]
    lines = [f"The paper's SCVAE accuracy, {paper:.{ACC_DECIMALS}f}, is "
             f"{'above' if paper > pixels else 'not above'} the same SVM on raw pixels ({pixels:.{ACC_DECIMALS}f}) "
             f"and {'above' if paper > pca else 'below'} it on 50 principal components of the pixels "
             f"({pca:.{ACC_DECIMALS}f})."]
    preset, runs = _table1_runs(results_dir, preset)
    means = {m: seed_summary(per_seed(evals, metric("svm_acc")))["mean"] for m, evals in runs.items() if evals}
    if means:
        beat = [[display_name(m) for m, v in means.items() if v > ref] for ref in (pixels, pca)]
        named = [f"{len(b)} ({', '.join(b)})" if b else "none" for b in beat]
        lines.append(f"Of our {len(means)} Table 1 models (preset {preset}, mean over seeds), the SVM on the latent "
                     f"means beats the SVM on raw pixels for {named[0]} and the SVM on 50 principal components for "
                     f"{named[1]}.")
    return " ".join(lines)


# ------------------------------------------------------------------------- collapse diagnostics

DIAGNOSTICS_PRESETS = ("paper", "converged", "long", "cpu")  # most trustworthy first
DIAGNOSTICS_STAGES = ("table1", "authors", "skipvae")
DIAGNOSTICS_COLUMNS = ("Model", "Preset", "MI I(x; z), nats", "Active units (Cov > 0.01)",
                       "KL per unit: largest / median, nats", "Decoder bypass: Δ log p(x | z), nats",
                       "Decoder ignores z")
NOT_DIAGNOSED = "no run of these stages recorded the diagnostics (evaluated before they existed)"


def diagnosed(results_dir: Path | str, preset: str) -> dict[str, list[dict]]:
    """The runs of the Table 1 models, their twins and the Skip-VAE models at ``preset`` whose
    evaluation recorded the collapse diagnostics (diagnostics.py)."""
    stages = get_preset(preset).stages
    models = [m for s in DIAGNOSTICS_STAGES for m in stages.get(s, ())]
    runs = collect(results_dir, preset, models) if models else {}
    return {m: found for m, evals in runs.items() if (found := [e for e in evals if e.get("diagnostics")])}


def _mean_cell(values: list[float], decimals: int) -> str:
    return format_stat(seed_summary(dict(enumerate(values))), decimals)


def ignores_z(diagnostics: list[dict]) -> str:
    """'1 of 2 seeds': how many of the runs' decoders the bypass check found ignoring z."""
    n = len(diagnostics)
    return f"{sum(x['bypass']['ignores_z'] for x in diagnostics)} of {n} seed{'s' * (n > 1)}"


def diagnostics_table(results_dir: Path | str, preset: str | None = None) -> Table:
    """The collapse diagnostics of every run that recorded them, per model and preset (mean ± std
    over seeds, n): the mutual information under the aggregate posterior with its log N ceiling,
    the active units, the largest and the median KL of a latent unit, and how much worse the
    decoder explains an image when its z is replaced by a prior draw (about 0: it ignores z).
    ``preset`` is unused: every preset with such runs is shown."""
    rows, seeds, tolerances = [], set(), set()
    for p in DIAGNOSTICS_PRESETS:
        for model, evals in diagnosed(results_dir, p).items():
            d = [e["diagnostics"] for e in evals]
            seeds |= {e["seed"] for e in evals}
            tolerances |= {x["bypass"]["tolerance"] for x in d}
            mi = [x["mutual_information"]["value"] for x in d]
            bound = min(x["mutual_information"]["log_n_bound"] for x in d)
            kl = [x.get("kl_per_unit", {}).get("values") for x in d]
            kl_cell = (f"{_mean_cell([max(v) for v in kl], 2)} / {_mean_cell([float(np.median(v)) for v in kl], 3)}"
                       if all(kl) else "not per unit (a VampPrior's KL does not split into units)")
            rows.append((display_name(model), p, f"{_mean_cell(mi, 3)} (log N = {bound:.2f})",
                         _mean_cell([x["active_units"]["count"] for x in d], 1), kl_cell,
                         _mean_cell([x["bypass"]["delta_log_likelihood"] for x in d], 1), ignores_z(d)))
    if not rows:
        rows = [("—", "—", NOT_DIAGNOSED, "", "", "", "")]
    caption = ("Collapse diagnostics of the literature since the paper, for every run whose evaluation recorded them "
               "(scvae_core/diagnostics.py; mean ± std over seeds, n): the mutual information I(x; z) under the "
               "aggregate posterior of the test images (Hoffman & Johnson 2016), which cannot exceed log N for N "
               "test images; the active units (Burda et al. 2016); the KL of the latent units; and the decoder "
               "bypass check, the mean of log p(x | posterior mean) − log p(x | a prior draw) per image, about 0 for "
               "a decoder that ignores z, and in how many seeds it does (the prior draw moves its Bernoulli means by "
               f"less than {' or '.join(f'{t:g}' for t in sorted(tolerances)) or 'the check’s tolerance'} per pixel "
               "on average). See which models keep information in z, and whether an MI at log N says only 'at least "
               f"log N'. Seeds used: {seeds_text(seeds)}.")
    return Table("diagnostics", caption, DIAGNOSTICS_COLUMNS, tuple(rows), None, tuple(sorted(seeds)))


# ------------------------------------------------------------------------- the models' sizes

SIZE_MODELS = (*TABLE1, *SKIPVAE)  # the -authors twins have the same layers: ReLU and He add no parameter
SIZE_REFERENCE = "scvae"
SIZE_COLUMNS = ("Model", "Encoder", "Decoder", "Parameters", "− SCVAE's")
SKIP_WORDS = {"none": "plain", "short": "a skip around every layer", "long": "one long skip"}


def _side(depth: int, hidden: int, skip: str, zskip: bool = False) -> str:
    return f"{depth} × {hidden}, {SKIP_WORDS[skip]}" + (", z into every layer" if zskip else "")


def models_table(results_dir: Path | str, preset: str | None = None) -> Table:
    """The Table 1 and Skip-VAE models' layers and parameter counts, from models.json, each against
    SCVAE's. ``preset`` is unused: the sizes are the zoo's."""
    if not models_path(results_dir).exists():
        rows = tuple((display_name(m), "", "", f"{NOT_RUN} (`scvae models --write`)", "") for m in SIZE_MODELS)
        return Table("models", "The models' sizes: not recorded yet (`scvae models --write` writes "
                     f"{models_path(results_dir)}).", SIZE_COLUMNS, rows, None, (), dataset=None)
    models = read_models(results_dir)
    count, config = ({name: entry[key] for name, entry in models.items()} for key in ("parameters", "config"))
    reference = count[SIZE_REFERENCE]
    rows = [(display_name(m), _side(config[m]["enc_depth"], config[m]["hidden"], config[m]["enc_skip"]),
             _side(config[m]["dec_depth"], config[m]["hidden"], config[m]["dec_skip"], config[m]["dec_zskip"]),
             f"{count[m]:,}", "(the reference)" if m == SIZE_REFERENCE
             else f"{count[m] - reference:+,} ({count[m] / reference - 1:+.1%})") for m in SIZE_MODELS]
    zskips, skips = count["skipvae-11l"] - count["vae-11l"], count[SIZE_REFERENCE] - count["vae-11l"]
    caption = ("The models' layers and sizes: Table 1's and the Skip-VAE models, from results/models/models.json "
               "(written by `scvae models --write` from the zoo); the authors' twins have the same parameters. See "
               f"what each design costs: the z-skips add {zskips:,} parameters to the deep decoder "
               f"({display_name('skipvae-11l')} against VAE(11L), {zskips / reference:.1%} of SCVAE's {reference:,}); "
               f"SCVAE's skips add {skips:,}.")
    return Table("models", caption, SIZE_COLUMNS, tuple(rows), None, (), dataset=None)  # sizes: no data set


# ------------------------------------------------------------------------- our claims

OUR_BUDGETS = ("long", "converged", "paper")  # the presets that train the stage skipvae
NO_RESULTS = "not run (no skipvae results)"


def our_budgets(results_dir: Path | str) -> list[str]:
    """The presets of :data:`OUR_BUDGETS` in which the stage of our claims has an evaluated run."""
    stage = claims.OUR_CLAIMS[0].stage
    return [p for p in OUR_BUDGETS if any(collect(results_dir, p, get_preset(p).stages.get(stage, ())).values())]


def _without_mi(results_dir: Path | str, budgets: list[str]) -> str:
    """The models of our MI effects whose runs were evaluated before I(x; z) was recorded (those
    effects read 'not measured'), per preset: ' At long epoch 100, VAE(11L) (seeds 0, 1, 2), ...'."""
    claim = claims.OUR_CLAIMS[0]
    needed = {m for c in claims.OUR_CLAIMS for e in c.effects if e.kind == "mi" for m in e.models}
    parts = []
    for p in budgets:
        _, epoch, runs = claims.compared_runs(results_dir, claim.stage, claim.compares, p)
        lacking = [f"{display_name(m)} ({seeds_text(s for s, e in runs[m].items() if 'diagnostics' not in e)})"
                   for m in sorted(needed & set(runs)) if any("diagnostics" not in e for e in runs[m].values())]
        if lacking:
            parts.append(f"At {p}{f' epoch {epoch}' if epoch else ''}, {', '.join(lacking)} were evaluated before "
                         "I(x; z) was recorded, so the MI effects that need them read 'not measured'.")
    return "".join(" " + part for part in parts)


def our_claims_table(results_dir: Path | str, preset: str | None = None) -> Table:
    """Our claims (not the paper's), one row per claim and preset with results of the stage they
    read: the verdict and each effect's estimate, 95% interval and verdict; 'not run'
    where no preset has any. ``preset`` is unused: every preset with results is shown."""
    budgets = our_budgets(results_dir)
    rows, seeds = [], set()
    for p in budgets:
        for cid, ev in claims.our_evidence(results_dir, p).items():
            effects = " · ".join(f"{e['label']}: {claims.format_effect(e)} → {e['status']}" for e in ev["effects"])
            # A claim one of whose models has no run yet is 'not measured', as the rule says.
            rows.append((f"{cid} [{p}]", ev["statement"], ev["summary"], effects))
            seeds |= {s for e in ev["effects"] for s in e["seeds"]}
    if not budgets:
        rows = [(c.id, c.statement, NO_RESULTS, f"stage {claims.OUR_CLAIMS[0].stage} has no evaluated run in "
                 f"{', '.join(OUR_BUDGETS)}") for c in claims.OUR_CLAIMS]
    caption = ("Our claims, not the paper's: Skip-VAE's z-skips (Dieng et al. 2019) against the deep plain models and "
               "against SCVAE's skips, judged by the same rule as the paper's claims (MI: I(x; z) under the aggregate "
               "posterior; '≠': a difference either way), one row per preset with results."
               f"{_without_mi(results_dir, budgets)} Seeds used: {seeds_text(seeds)}.")
    return Table("our-claims", caption, ("Claim", "Statement", "Verdict", "Effects"), tuple(rows), None,
                 tuple(sorted(seeds)))


def _n_text(effects: list[dict]) -> str:
    ns = sorted({e["n"] for e in effects if e["n"]})
    return "" if not ns else f", n = {ns[0]}" if len(ns) == 1 else f", n = {ns[0]} to {ns[-1]}"  # effects may differ


def our_claims_summary(results_dir: Path | str) -> str:
    """The front page's line on our claims: each claim's verdict at every preset with results."""
    budgets = our_budgets(results_dir)
    if not budgets:
        return f"Our claims on Skip-VAE (not the paper's): not run yet (no {claims.OUR_CLAIMS[0].stage} results)."
    evidence = {p: claims.our_evidence(results_dir, p) for p in budgets}
    parts = [claim.statement.rstrip(".") + " — " + "; ".join(
        f"{p}{_n_text(by[claim.id]['effects'])}: {claims.verdict_words(by[claim.id])}" for p, by in evidence.items())
        for claim in claims.OUR_CLAIMS]
    return "Our claims on Skip-VAE (not the paper's): " + "; ".join(parts) + "."


TABLES["baselines"] = baselines_table
TABLES["models"] = models_table
TABLES["diagnostics"] = diagnostics_table
TABLES["our-claims"] = our_claims_table
TEXTS["baselines"] = baselines_text
