"""Our own reproducibility: committed runs trained a second time and compared bit for bit, from
``results/reruns/reruns.json`` (``scvae compare --record``). Importing this module registers its
table in :data:`tables.TABLES` (the book package imports it), so that the book check rebuilds it.
"""
from __future__ import annotations

from pathlib import Path

from ..rerun import WHO, bitwise, read_reruns, reruns_path
from ..results import RunPaths
from ..runs import display_name, load_train
from .tables import NOT_RUN, TABLES, Table

COLUMNS = ("Run", "First trained", "Trained again", "Epochs equal", "Evaluations", "Largest |Δ NLL|", "The book shows")


def processor(w: dict) -> str:
    """The processor model of a training's device name, without its core and thread counts."""
    return (w["device_name"] or "?").split(" (")[0]


def _who(w: dict) -> str:
    return f"{(w['git_revision'] or '?')[:7]}, {w['device_name']}"


def _epochs(e: dict) -> str:
    n_first, n_again = e["epochs"]
    text = f"{e['epochs_equal']} of {n_first}" + ("" if n_again == n_first else f" (again: {n_again})")
    return text if e["first_difference"] is None else \
        f"{text}: from epoch {e['first_difference']}, |Δ valid ELBO| up to {e['largest_valid_elbo_difference']:.3g}"


def _evaluations(e: dict) -> str:
    parts = []
    for ev in e["evaluations"]:
        at = f"epoch {ev['epoch']}" if ev["epoch"] is not None else "final"
        changed = [k for k, (x, y) in ev["metrics"].items() if x != y]
        parts.append(f"{at}: " + ("every metric equal" if not changed else f"{', '.join(changed)} differ"))
    return "; ".join(parts) or "none in both"


def shown_training(results_dir: Path | str, e: dict) -> str:
    """Which training's files the run holds now (`scvae compare --adopt` puts the second's in place),
    read from its train.json's provenance."""
    paths = RunPaths(Path(results_dir), e["preset"], e["model"], e["seed"], e["dataset"])
    now = {k: load_train(paths)["provenance"].get(k) for k in WHO}
    return "the second" if now == e["retrained"] else "the first" if now == e["trained"] else "a third training"


def _largest_nll(e: dict) -> str:
    deltas = [abs(y - x) for ev in e["evaluations"] for k, (x, y) in ev["metrics"].items() if k == "nll"]
    return f"{max(deltas):.2f}" if deltas else "—"


def _counts(entries: list[dict]) -> tuple[str, str]:
    """How many came back bit for bit (all, and on the same processor model), and what to see in it."""
    same = [e for e in entries if processor(e["trained"]) == processor(e["retrained"])]
    differ = [e for e in entries if not bitwise(e)]
    why = ("every one came back bit for bit" if not differ else
           "the runs that differ were trained on two processor models, whose floating-point kernels may round "
           "differently" if not any(e in same for e in differ) else
           f"{sum(e in same for e in differ)} run(s) differ on the same processor model: not reproducible there")
    return (f"{sum(map(bitwise, entries))} of {len(entries)} came back bit for bit, {sum(map(bitwise, same))} of the "
            f"{len(same)} trained twice on the same processor model"), why


def reruns_summary(results_dir: Path | str) -> str:
    """The front page's line on our own reproducibility."""
    if not reruns_path(results_dir).exists():
        return "Our runs trained a second time: none yet."
    counts, _ = _counts(read_reruns(results_dir))
    return (f"Our runs trained a second time from their seed and compared with the committed training: {counts} "
            "(setup appendix).")


def reruns_table(results_dir: Path | str, preset: str | None = None) -> Table:
    """Each re-trained run against its first training. ``preset`` is unused: every preset's."""
    if not reruns_path(results_dir).exists():
        return Table("reruns", "Committed runs trained a second time: none recorded yet (`scvae compare ... "
                     "--record` writes reruns/reruns.json in the results folder).", COLUMNS,
                     (("—", "", "", NOT_RUN, "", "", ""),), None, (), dataset=None)
    entries = read_reruns(results_dir)
    rows = tuple((f"{display_name(e['model'])} seed {e['seed']} ({e['run'].rsplit('/', 2)[0]})", _who(e["trained"]),
                  _who(e["retrained"]), _epochs(e), _evaluations(e), _largest_nll(e), shown_training(results_dir, e))
                 for e in entries)
    counts, why = _counts(entries)
    caption = ("Committed runs trained a second time from the same seed, often by a later revision of the code, "
               "and compared with their first training (`scvae compare`): the training history epoch by epoch "
               "(every value but the wall time) and each evaluation's NLL, its standard error, ELBO, KL, SVM "
               f"accuracy and active units; the last column says which training the book's tables read. {counts}. "
               f"See that {why}.")
    return Table("reruns", caption, COLUMNS, rows, None, (), dataset=None)


TABLES["reruns"] = reruns_table
