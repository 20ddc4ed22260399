"""The front page's answer to "does it reproduce?": each claim's verdict per protocol at the most
trustworthy budget that measured it, and the abstract and results summary written from them.

Every sentence that states a finding is built here from the verdicts, so the front page cannot
contradict the verdicts page; the book check rebuilds the table (``TABLES["headline"]``) and
the texts (``TEXTS["abstract"]``, ...) and compares them with the built page. Importing
:mod:`scvae_core.book.tables` registers them.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from . import claims
from .beyond import diagnosed, ignores_z, our_claims_summary
from .datasets import fashion_summary
from .reruns import reruns_summary
from ..presets import get_preset
from ..results import RunPaths
from ..runs import (collect, default_epoch, display_name, evaluated_seeds, load_train, md_text, paper_rows,
                    resolve_preset, seed_summary)
from .tables import TABLES, TEXTS, Column, Table, starts, training_end
from .verdicts import CONTRADICTED, HOLDS, INCONCLUSIVE, NO_EFFECT, NOT_JUDGED, NOT_MEASURED
from ..zoo import OURS, SKIPVAE, TWINS

AUTHORS = next(t for t in TWINS if t.suffix == "-authors")
# Most trustworthy first: trained to convergence, then the longest fixed budget, then shorter ones.
BUDGETS = (("converged", None), ("long", 100), ("long", 30), ("long", 10), ("cpu", None))
PROTOCOLS = (("Ours", OURS), ("Authors' protocol", AUTHORS))


def _has_results(results_dir: Path | str, column: Column) -> bool:
    p = get_preset(column.preset)
    stages = [s for s in p.stages if s == column.twin.stage or (not column.twin.suffix and s in ("depth", "table2"))]
    return any(any(collect(results_dir, column.preset, p.stages[s], epoch=column.epoch).values()) for s in stages)


def _columns(results_dir: Path | str, twin) -> list[Column]:
    """The budgets with results for a protocol, most trustworthy first."""
    found = []
    for name, epoch in BUDGETS:
        p = get_preset(name)
        if (epoch is not None and epoch not in p.eval_epochs) or (twin.stage not in p.stages and twin.suffix):
            continue
        if not twin.suffix and "table1" not in p.stages:
            continue
        column = Column(name, twin, epoch)
        if _has_results(results_dir, column):
            found.append(column)
    return found


def headline(results_dir: Path | str) -> dict[str, dict[str, tuple[Column, dict] | None]]:
    """claim id -> protocol label -> (the budget, the claim's evidence there) at the most
    trustworthy budget where the claim is measured; None where no budget measures it."""
    found: dict[str, dict] = {c.id: {} for c in claims.CLAIMS}
    for label, twin in PROTOCOLS:
        evidence = [(c, claims.verdict_evidence(results_dir, c.preset, c.twin, c.epoch))
                    for c in _columns(results_dir, twin)]
        for claim in claims.CLAIMS:
            found[claim.id][label] = next(((c, ev[claim.id]) for c, ev in evidence
                                           if claim.id in ev and ev[claim.id]["status"] != NOT_MEASURED), None)
    return found


def headline_by_protocol(results_dir: Path | str) -> dict[str, dict[str, dict]]:
    """protocol label -> claim id -> the claim's evidence at its headline budget (the front
    page's cells), for the forest plot of every effect per claim and protocol."""
    found = headline(results_dir)
    return {label: {cid: by[label][1] for cid, by in found.items() if by[label] is not None}
            for label, _ in PROTOCOLS}


def _budget(column: Column) -> str:
    return column.preset + (f" e{column.epoch}" if column.epoch is not None else "")


def _cell(entry: tuple[Column, dict] | None) -> str:
    if entry is None:
        return "—"
    column, ev = entry
    e = ev["effects"][0]
    digits = 4 if e["kind"] == "acc" else 2 if e["kind"] == "nll" else 3
    interval = "" if math.isnan(e["low"]) else f" [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"
    # n spelled out in every cell ("n = 1"), not the tables' "(n=k)" that a caption may stand for
    text = f"{ev['status']}: {e['estimate']:+.{digits}f}{interval}, n = {e['n']} · {_budget(column)}"
    others = [r for r in ev["readings"] if r != "model"]
    if others:  # a Fisher claim: the other readings' verdicts as marks
        text += " · " + ", ".join(f"{r} {ev['readings'][r]['status']}" for r in others)
    return text


def headline_table(results_dir: Path | str, preset: str | None = None, evidence: str = "") -> Table:
    """One row per claim, one column per protocol: the verdict, its first effect with its 95%
    interval and n, and the budget. ``preset`` is unused (each cell picks its budget)."""
    found = headline(results_dir)
    rows = tuple((claims.SHORT[c.id], *(_cell(found[c.id][label]) for label, _ in PROTOCOLS)) for c in claims.CLAIMS)
    caption = ("Does it reproduce? Each claim of the paper under our protocol and under the authors' protocol, at "
               "the most trustworthy budget that measured it (converged, else the long preset's last epoch that "
               "has it, else cpu; e100: epoch 100): the verdict, the claim's first effect with its 95% interval "
               "and n seeds, and for the Fisher claims judged under the three readings (the propositions are checked "
               "under the model reading only) the verdicts under the other two. '—': no budget "
               "measures it. See which claims hold, and which rest on one seed (not judged).")
    return Table("headline", caption, ("Claim", *(label for label, _ in PROTOCOLS)), rows, None, (), evidence)


TABLES["headline"] = headline_table


# ------------------------------------------------------------------------- the texts

ORDER = (HOLDS, CONTRADICTED, NO_EFFECT, INCONCLUSIVE, NOT_JUDGED)


def tally(found: dict, label: str) -> Counter:
    return Counter(entry[1]["status"] for entry in (by[label] for by in found.values()) if entry is not None)


def _tally_text(counts: Counter) -> str:
    parts = [f"{counts[v]} {v}" for v in ORDER if counts[v]]
    return ", ".join(parts) if parts else "none measured yet"


def _effect_sentence(found: dict, claim_id: str, label: str, what: str) -> str:
    entry = found[claim_id][label]
    if entry is None:
        return f"{what}: not measured yet."
    column, ev = entry
    e = ev["effects"][0]
    interval = "" if math.isnan(e["low"]) else f", 95% interval [{e['low']:+.2f}, {e['high']:+.2f}]"
    return (f"{what}: {e['estimate']:+.2f} nats{interval}, n = {e['n']} "
            f"({_budget(column)}; {ev['summary']}).")


def abstract_paragraphs(results_dir: Path | str) -> list[str]:
    """The abstract (at most 200 words), every finding in it read from the verdicts."""
    found = headline(results_dir)
    n = len(claims.CLAIMS)
    return [
        "We re-implemented the paper's models, its Fisher information measure and its evaluation, trained every "
        "Table 1 model with three seeds under our protocol (tanh, PyTorch's initialisation, Adam at 5e-4) and "
        "under the protocol of the first author's later code (ReLU, He initialisation, Adam at 1e-3), and judged "
        f"each of the paper's {n} claims by a rule fixed in advance: a 95% interval over seeds against a practical "
        "threshold, one seed being no verdict.",
        f"Under our protocol: {_tally_text(tally(found, 'Ours'))}. "
        f"Under the authors' protocol: {_tally_text(tally(found, PROTOCOLS[1][0]))}.",
        _effect_sentence(found, "scvae-vs-1l", "Ours", "SCVAE against VAE(1L) in test NLL, our protocol") + " "
        + _effect_sentence(found, "scvae-vs-1l", PROTOCOLS[1][0], "The same under the authors' protocol"),
        *filter(None, [beyond_sentence(results_dir)]),
    ]


def summary_results(results_dir: Path | str) -> list[str]:
    """The reproducibility summary's results: one line per claim that a protocol judged, each
    verdict with its effects' and its budget (named once where both protocols share it)."""
    found = headline(results_dir)
    lines = []
    for claim in claims.CLAIMS:
        entries = [(label, entry) for label, _ in PROTOCOLS if (entry := found[claim.id][label]) is not None]
        if not entries:
            continue
        budgets = {_budget(entry[0]) for _, entry in entries}
        shared = len(budgets) == 1
        judged = "; ".join(f"{label.lower()}: {claims.verdict_words(entry[1])}" + ("" if shared else f" ({_budget(entry[0])})")
                           for label, entry in entries)
        both = "both " if len(entries) > 1 else ""
        lines.append(f"{claims.SHORT[claim.id]} — {judged}" + (f"; {both}{budgets.pop()}" if shared else ""))
    return [*lines, our_claims_summary(results_dir), diagnostics_summary(results_dir), fashion_summary(results_dir),
            reruns_summary(results_dir)]


DEEP_PLAIN = ("vae-11l", "vae-q++", "vae-p++")  # the deep models without skips
FINDINGS_BUDGET = ("long", 100)  # the longest budget every Table 1 model of both protocols has


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def _deep_plain_budget(results_dir: Path | str, twin) -> str | None:
    """The most trustworthy preset holding every deep plain model of ``twin``: ``converged``
    once all three have a finished run there, else the preset the twin set's pages show."""
    shown = resolve_preset(results_dir, twin.stage, None)
    candidates = [p for p in ("converged", shown) if p and twin.stage in get_preset(p).stages]
    models = [m + twin.suffix for m in DEEP_PLAIN]
    return next((p for p in candidates if all(evaluated_seeds(results_dir, p, m) for m in models)), shown)


def _budget_words(preset: str, twin) -> str:
    epoch = default_epoch(preset, None, DEEP_PLAIN[0] + twin.suffix)
    return f"{preset}, epoch {epoch}" if epoch is not None else preset


def collapsed(results_dir: Path | str) -> list[tuple]:
    """Per twin set with results (ours first): (twin, budget words, [(model, mean active units,
    mean accuracy, n)], names of the models with no active unit), at its most trustworthy budget."""
    found = []
    for twin in (OURS, *TWINS):
        preset = _deep_plain_budget(results_dir, twin)
        if not preset:
            continue
        runs = collect(results_dir, preset, [m + twin.suffix for m in DEEP_PLAIN])
        shown = [(display_name(m.removesuffix(twin.suffix)), _mean(e["metrics"]["active_units"] for e in evals),
                  _mean(e["metrics"]["svm_acc"] for e in evals), len(evals))
                 for m, evals in runs.items() if evals]
        if shown:
            found.append((twin, _budget_words(preset, twin), shown, [name for name, units, _, _ in shown if units < 1]))
    return found


def _collapse(results_dir: Path | str) -> str:
    """Whether the deep plain models keep any active latent unit, under our protocol and each
    twin set, each at its most trustworthy budget."""
    parts = []
    for twin, budget, shown, dead in collapsed(results_dir):
        described = "; ".join(f"{name}: {units:.1f} active units, accuracy {acc:.4f} (n = {n})"
                              for name, units, acc, n in shown)
        verdict = (f"{len(dead)} of {len(shown)} collapsed to no active latent unit" if dead
                   else f"none of the {len(shown)} collapsed")
        parts.append(f"{twin.label} ({budget}): {verdict} — {described}.")
    return " ".join(parts) or "No deep plain model has results so far."


def collapse_diagnostics(results_dir: Path | str) -> list[tuple]:
    """Per protocol (ours, the authors') with diagnosed runs: (twin, budget words, the MI bound
    log N, [(model, per-seed diagnostics)]) for the deep plain models and their Skip-VAE rivals at
    the protocol's most trustworthy budget; runs evaluated before the diagnostics existed are left out."""
    found = []
    for twin in (OURS, AUTHORS):
        preset = _deep_plain_budget(results_dir, twin)
        runs = diagnosed(results_dir, preset) if preset else {}
        models = [(m, [e["diagnostics"] for e in runs[m]])
                  for m in (base + twin.suffix for base in (*DEEP_PLAIN, *SKIPVAE)) if m in runs]
        if models:
            bound = min(x["mutual_information"]["log_n_bound"] for _, d in models for x in d)
            found.append((twin, _budget_words(preset, twin), bound, models))
    return found


def _overstated(found: list[tuple]) -> list[str]:
    """The models with a seed that counts active units while its decoder ignores z."""
    return [display_name(m) for *_, models in found for m, d in models
            if any(x["active_units"]["count"] >= 1 and x["bypass"]["ignores_z"] for x in d)]


def _diagnostics(results_dir: Path | str) -> str:
    """The findings' account of the collapse diagnostics: per model the MI, the active units and
    in how many seeds the decoder ignores z; and where active units and bypass check disagree."""
    found = collapse_diagnostics(results_dir)
    if not found:
        return "No deep model's evaluation has recorded the collapse diagnostics (MI, bypass check) so far."
    parts = [f"{twin.label} ({budget}; MI at most log N = {bound:.2f}): " + "; ".join(
        f"{display_name(m.removesuffix(twin.suffix))} (n = {len(d)}): MI "
        f"{_spread([x['mutual_information']['value'] for x in d], '.3f')} nats, "
        f"{_spread([x['active_units']['count'] for x in d], '.0f')} active units, decoder ignores z in {ignores_z(d)}"
        for m, d in models) + "." for twin, budget, bound, models in found]
    text = ("The collapse diagnostics, for the runs whose evaluation recorded them (those evaluated before they "
            "existed are left out): " + " ".join(parts))
    if overstated := _overstated(found):
        text += (f" The active units overstate what z carries for {', '.join(overstated)}: a seed counts active "
                 "units while its decoder ignores z.")
    return text


def diagnostics_summary(results_dir: Path | str) -> str:
    """The front page's line on the collapse diagnostics: per protocol, in how many seeds each
    model's decoder ignores z, and where the active units overstate what z carries."""
    found = collapse_diagnostics(results_dir)
    if not found:
        return "Collapse diagnostics (not the paper's): no deep model's evaluation has recorded them so far."
    parts = [f"{next(label for label, t in PROTOCOLS if t is twin).lower()} ({budget}): " + ", ".join(
        f"{display_name(m.removesuffix(twin.suffix))} {ignores_z(d)}" for m, d in models)
        for twin, budget, _, models in found]
    text = "Collapse diagnostics (not the paper's), seeds whose decoder ignores z — " + "; ".join(parts) + "."
    if overstated := _overstated(found):
        text += (f" The active units overstate what z carries for {', '.join(overstated)} "
                 "(What we found: why, as far as the runs tell).")
    return text


def _slow_starts(results_dir: Path | str) -> str:
    """The authors' twins that start worse than a coin flip: He initialisation with skips."""
    preset = resolve_preset(results_dir, AUTHORS.stage, None)
    found = starts(results_dir, AUTHORS, preset) if preset else []
    if not found:
        return "No run of the authors' protocol has a training log so far."
    slow = [s for s in found if s.better_from != 1]
    if not slow:
        return (f"Under the authors' protocol ({preset}) every run's validation ELBO beats a coin flip from "
                f"epoch 1 (n = {len(found)} runs).")
    told = "; ".join(f"{display_name(s.model)} (seed {s.seed}) at {s.elbo:,.0f} nats after epoch 1 (training KL "
                     f"{s.kl:,.0f}), better than a coin flip " + (f"from epoch {s.better_from}" if s.better_from
                                                                   else "in none of its epochs") for s in slow)
    return (f"Under the authors' protocol ({preset}) {len(slow)} of {len(found)} runs "
            f"start worse than a coin flip: {told}; the others beat it from epoch 1.")


def _overfitting(results_dir: Path | str) -> str:
    """How much better each Table 1 model fits its training images than held-out ones at the end."""
    preset, epoch = FINDINGS_BUDGET
    runs = collect(results_dir, preset, get_preset(preset).stage_models("table1"), epoch=epoch)
    rows = []
    for model, evals in runs.items():
        ends = [training_end(load_train(RunPaths(Path(results_dir), preset, model, e["seed"]))) for e in evals]
        ends = [x for x in ends if x is not None]
        if ends:
            rows.append((display_name(model), _mean(x["overfit"] for x in ends), _mean(x["best_epoch"] for x in ends),
                         len(ends)))
    if not rows:
        return "The long preset holds none of the Table 1 runs so far."
    low, high = min(rows, key=lambda r: r[1]), max(rows, key=lambda r: r[1])
    best = "; ".join(f"{name} {b:.0f}" for name, _, b, _ in rows)
    return (f"Our protocol, {preset} preset, last epoch: training minus validation ELBO ranges from {low[1]:+.2f} "
            f"nats ({low[0]}) to {high[1]:+.2f} ({high[0]}), mean over seeds (n = {low[3]}); the epoch of the best "
            f"validation ELBO, mean over seeds: {best}. A positive gap means the model fits its training images "
            "better than held-out ones: it overfits.")


def _gap_to_paper(results_dir: Path | str) -> str:
    """The paper's best NLL against the best any of our runs reached, at any budget."""
    paper = paper_rows("table1")
    best_paper = min(paper.values(), key=lambda r: r["nll"])
    ours = []
    for name, epoch in BUDGETS:
        p = get_preset(name)
        if epoch is not None and epoch not in p.eval_epochs:
            continue
        stages = [s for s in ("table1", "authors") if s in p.stages]
        for stage in stages:
            for model, evals in collect(results_dir, name, p.stage_models(stage), epoch=epoch).items():
                if evals:
                    s = seed_summary({e["seed"]: e["metrics"]["nll"] for e in evals})
                    ours.append((s["mean"], model, _budget(Column(name, OURS, epoch)), s["n"]))
    if not ours:
        return "None of the Table 1 models has results so far."
    nll, model, budget, n = min(ours)
    return (f"The paper's best Table 1 NLL is {best_paper['nll']:.2f} nats ({best_paper['display']}); the best "
            f"any of our runs reached is {nll:.2f} ({display_name(model)}, {budget}, mean over n = {n}), "
            f"{nll - best_paper['nll']:.2f} nats above it.")


# Eq. 6 says I(l+1)/I(l) = (g_l/g_{l+1})^2; with I = E[g^2] the natural ratio is its inverse. On a
# log-log plot of measured against eq. 6's ratio, eq. 6 is the line of slope +1, its inverse -1.
FOLLOWS_SLOPE = 0.5  # |slope| beyond this (and that side's ratio right within 2x for most pairs): "follows"


def _eq6_run(evals: list[dict]) -> tuple[float, float, float, int] | None:
    """One seed's layer pairs pooled over the deep plain models: the share where eq. 6 is right
    within 2x, the share where its inverse is, the least-squares slope of the measured log10
    Fisher ratio on eq. 6's log10 ratio, and the number of pairs."""
    pairs = [p for e in evals for p in e.get("derivations", {}).get("proposition1", {}).get("pairs", [])
             if p["log10_fisher_ratio"] is not None and p["log10_eq6_ratio"] is not None]
    if len(pairs) < 3:
        return None
    x = np.array([p["log10_eq6_ratio"] for p in pairs])
    y = np.array([p["log10_fisher_ratio"] for p in pairs])
    slope = float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else math.nan
    return (_mean(bool(p["eq6_within_2x"]) for p in pairs), _mean(bool(p["inverse_within_2x"]) for p in pairs),
            slope, len(pairs))


def _spread(values: list[float], fmt: str) -> str:
    """'mean (min to max)' over the seeds, or the one value where they agree at that precision."""
    low, high = format(min(values), fmt), format(max(values), fmt)
    return low if low == high else f"{format(_mean(values), fmt)} ({low} to {high})"


def eq6_checks(results_dir: Path | str) -> list[tuple]:
    """Per protocol with a Proposition 1 check of its deep plain models: (twin, budget words,
    per-seed shares right within 2x for eq. 6 and its inverse, slopes, pairs per seed, and which
    the ratios follow: 'the inverse', 'eq. 6', 'neither', or None for one seed (not judged))."""
    found = []
    for twin in (OURS, AUTHORS):
        preset = _deep_plain_budget(results_dir, twin)
        if not preset:
            continue
        runs = collect(results_dir, preset, [m + twin.suffix for m in DEEP_PLAIN])
        seeds = sorted(set.intersection(*(set(e["seed"] for e in evals) for evals in runs.values())))
        per_seed = [r for s in seeds if (r := _eq6_run([e for evals in runs.values() for e in evals
                                                         if e["seed"] == s])) is not None]
        if not per_seed:
            continue
        eq6, inverse, slope, pairs = (list(v) for v in zip(*per_seed))
        follows = (None if len(per_seed) == 1
                   else "the inverse" if _mean(slope) < -FOLLOWS_SLOPE and _mean(inverse) > 0.5
                   else "eq. 6" if _mean(slope) > FOLLOWS_SLOPE and _mean(eq6) > 0.5 else "neither")
        found.append((twin, _budget_words(preset, twin), eq6, inverse, slope, pairs, follows))
    return found


def eq6_direction(results_dir: Path | str) -> str:
    """Whether the measured Fisher ratios of consecutive layers follow eq. 6's gradient ratio,
    its inverse, or neither: per protocol at its most trustworthy budget, seeds pooled over the
    deep plain models' layer pairs."""
    parts = []
    for twin, budget, eq6, inverse, slope, pairs, follows in eq6_checks(results_dir):
        n = len(slope)
        parts.append(
            f"{twin.label} ({budget}, n = {n} seed{'s' * (n > 1)}, {pairs[0]} layer pairs "
            f"each): eq. 6 is right within a factor 2 for a share {_spread(eq6, '.2f')} of the pairs, its inverse "
            f"for {_spread(inverse, '.2f')}; the slope of the measured log ratio on eq. 6's is "
            f"{_spread(slope, '+.2f')} (eq. 6 predicts +1, its inverse -1): "
            + (f"the measured ratios follow {follows}." if follows else "one seed: not judged."))
    if not parts:
        return "No deep plain model has a Proposition 1 check so far."
    return ("Proposition 1 measured (layer pairs of VAE(11L), VAE(q++) and VAE(p++); the gradient is the one "
            "back-propagated to each layer's pre-activation): " + " ".join(parts))


def beyond_sentence(results_dir: Path | str) -> str:
    """The abstract's findings beyond the paper: the collapse of the deep plain models under our
    protocol and the authors', and which ratio the measured Fisher follows (judged, n > 1)."""
    def name(twin) -> str:
        return "our protocol" if not twin.suffix else "the " + twin.label.split(" (")[0]

    found = [(twin, budget, len(shown), len(dead)) for twin, budget, shown, dead in collapsed(results_dir)
             if twin in (OURS, AUTHORS)]
    ratios = [f"{'the inverse of eq. 6' if follows == 'the inverse' else follows} under {name(twin)}"
              for twin, *_, follows in eq6_checks(results_dir) if follows]
    if not found:
        return ""
    # "2 of 3" counts models (each by its mean over seeds), said so where every protocol has the same models
    one_n = len({n for _, _, n, _ in found}) == 1
    told = [f"{dead}{'' if one_n else f' of {n}'}{' lost every active latent unit' * (i == 0)} under {name(twin)} "
            f"({budget})" for i, (twin, budget, n, dead) in enumerate(found)]
    text = (f"Beyond the paper: of the {found[0][2]} deep models without skips, " if one_n else
            "Beyond the paper: of the deep models without skips, ") + " and ".join(told)
    return text + (f"; the measured layer-to-layer Fisher ratios follow {' and '.join(ratios)}." if ratios else ".")


def findings(results_dir: Path | str) -> list[str]:
    """The 'What we found' chapter's findings, each read from the results."""
    return [_collapse(results_dir), _diagnostics(results_dir), _slow_starts(results_dir), _overfitting(results_dir), _gap_to_paper(results_dir),
            eq6_direction(results_dir)]


def _claims(k: int, one: str, more: str) -> str:
    return f"{k} claim {one}" if k == 1 else f"{k} claims {more}"


def open_points(results_dir: Path | str) -> list[str]:
    """What would settle the claims that are not decided, per protocol, read from the verdicts:
    the inconclusive ones (more seeds narrow their intervals) and those that rest on one seed."""
    found = headline(results_dir)
    points = []
    for label, _ in PROTOCOLS:
        at = {status: [f"{claims.SHORT[cid]} ({_budget(by[label][0])}, n = {by[label][1]['effects'][0]['n']})"
                       for cid, by in found.items() if by[label] is not None and by[label][1]["status"] == status]
              for status in (INCONCLUSIVE, NOT_JUDGED)}
        who = "our protocol" if label == PROTOCOLS[0][0] else "the authors' protocol"
        if at[INCONCLUSIVE]:
            points.append(f"Under {who}, {_claims(len(at[INCONCLUSIVE]), 'is', 'are')} inconclusive at the most "
                          f"trustworthy budget: {'; '.join(at[INCONCLUSIVE])}. Each interval straddles a threshold; "
                          "more seeds would narrow it.")
        if at[NOT_JUDGED]:
            points.append(f"Under {who}, {_claims(len(at[NOT_JUDGED]), 'rests', 'rest')} on one seed: "
                          f"{'; '.join(at[NOT_JUDGED])}. Two more seeds of their stages would turn 'not judged' into "
                          "verdicts.")
    return points


def _markdown(paragraphs: list[str], items: bool = False) -> str:
    """Paragraphs (or list items) as Markdown; each is text read from results, escaped as such."""
    escaped = [md_text(p) for p in paragraphs]
    return "\n".join(f"- {p}" for p in escaped) if items else "\n\n".join(escaped)


# The front page's and the findings chapter's texts, shown by tables.build_text and rebuilt by the
# book check like every other sentence built from results.
TEXTS |= {
    "abstract": lambda results_dir, preset=None: _markdown(abstract_paragraphs(results_dir)),
    "summary-results": lambda results_dir, preset=None: _markdown(summary_results(results_dir), items=True),
    "findings": lambda results_dir, preset=None: _markdown(findings(results_dir), items=True),
    "open-points": lambda results_dir, preset=None: _markdown(open_points(results_dir), items=True),
    "eq6-direction": lambda results_dir, preset=None: _markdown([eq6_direction(results_dir)]),
}
