"""Numbers quoted in the book's prose, computed from the result files.

A page's notebook glues them (MyST-NB ``glue``) and its Markdown pastes them with
``{glue:text}`key:format```, so a sentence cannot drift from the results. The book check
(:mod:`scvae_core.book.bookcheck`) recomputes every pasted number with :data:`NUMBERS` and the
format written in the page's source. A number without results is NaN (shown as "nan").
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from . import claims
from ..runs import collect, metric, paper_rows, per_seed, resolve_preset, seed_summary

NAN = math.nan
TABLE1_QUOTED = {"scvae": "scvae", "vae-1l": "vae1l"}  # model -> key prefix


def _mean(evals: list[dict], key: str) -> float:
    s = seed_summary(per_seed(evals, metric(key)))
    return s["mean"] if s["n"] else NAN


def table1_numbers(results_dir: Path | str, preset: str | None = None) -> dict[str, float]:
    """SCVAE's and VAE(1L)'s NLL and accuracy, ours (mean over seeds) and the paper's."""
    preset = resolve_preset(results_dir, "table1", preset)
    runs = collect(results_dir, preset, TABLE1_QUOTED) if preset else {m: [] for m in TABLE1_QUOTED}
    paper = paper_rows("table1")
    found = {}
    for model, key in TABLE1_QUOTED.items():
        found |= {f"{key}_nll": _mean(runs[model], "nll"), f"{key}_acc": _mean(runs[model], "svm_acc"),
                  f"{key}_nll_paper": paper[model]["nll"], f"{key}_acc_paper": paper[model]["acc"],
                  f"{key}_seeds": float(len(runs[model]))}
    return found


def derivation_numbers(results_dir: Path | str, preset: str | None = None) -> dict[str, float]:
    """The estimates of the Proposition 1, Remark 2 and Proposition 3 effects (claims.CLAIMS)."""
    evidence = claims.verdict_evidence(results_dir, preset)
    effects = {"prop1_within_2x": ("prop1-eq6", 0), "remark2_decreasing": ("prop1-remark2", 0),
               "prop3_mean_log10": ("prop3-skip-adds", 0), "prop3_min_log10": ("prop3-skip-adds", 1)}
    return {key: evidence[cid]["effects"][i]["estimate"] for key, (cid, i) in effects.items()}


# page (notebooks/<page>.md) -> its numbers
NUMBERS: dict[str, Callable[..., dict[str, float]]] = {
    "02_fisher_derivations": derivation_numbers,
    "04_table1": table1_numbers,
}


def glue_numbers(page: str, results_dir: Path | str, preset: str | None = None) -> None:
    """Glue a page's numbers into its notebook (not displayed: the prose pastes them)."""
    from myst_nb import glue

    for key, value in NUMBERS[page](results_dir, preset).items():
        glue(key, value, display=False)
