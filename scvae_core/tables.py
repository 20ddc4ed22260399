"""Result files -> the paper's tables, figure data and claim verdicts.

Shared by the notebooks and the book check, so that a number in the book is computed in
one place. Every function takes a ``preset``; left ``None`` it is :func:`pick_preset`'s:
the ``paper`` results wherever they exist, ``cpu`` ones otherwise. The paper's own numbers
are read from ``data/paper_reported.json`` (cited there), never typed here.
"""
from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .evaluate import load_eval
from .presets import TABLE1, get_preset
from .results import PAPER_REPORTED, PUBLISHED, RunPaths
from .zoo import RELU, XAVIER, UnknownName, check_name

PREFERRED_PRESETS = ("paper", "cpu")  # the book shows the first that has results
AUTO = "auto"  # the notebooks' (and make's) spelling of "pick for me"
NLL_DECIMALS, ACC_DECIMALS = 2, 4  # as the paper prints them
NOT_RUN = "not run"
DEPTH_MODEL = re.compile(r"^(enc|dec)(\d+)-(plain|skip)$")  # zoo's depth-sweep names


# ------------------------------------------------------------------------- reading results

@lru_cache(maxsize=1)
def paper_reported() -> dict:
    return json.loads(Path(PAPER_REPORTED).read_text())


def paper_rows(table_id: str) -> dict[str, dict]:
    """The paper's rows of a table by model name: display, nll, acc."""
    return {row["model"]: row for row in paper_reported()[table_id]["rows"]}


def _seeds_on_disk(out: Path | str, preset: str, model: str) -> list[int]:
    model_dir = Path(out) / preset / model
    if not model_dir.is_dir():
        return []
    return sorted(int(m.group(1)) for p in model_dir.iterdir() if (m := re.fullmatch(r"seed(\d+)", p.name)))


def _completed(out: Path | str, preset: str, model: str, seeds: Iterable[int] | None) -> list[int]:
    seeds = _seeds_on_disk(out, preset, model) if seeds is None else seeds
    return [s for s in seeds if RunPaths(Path(out), preset, model, s).eval_json.exists()]


def pick_preset(out: Path | str, stage: str) -> str | None:
    """``paper`` if it has any evaluated run of ``stage``, else ``cpu``, else None."""
    for preset in PREFERRED_PRESETS:
        models = get_preset(preset).stages.get(stage, ())  # a preset may lack the stage (cpu-long)
        if any(_completed(out, preset, m, None) for m in models):
            return preset
    return None


def resolve_preset(out: Path | str, stage: str, preset: str | None) -> str | None:
    """``preset`` itself, or :func:`pick_preset`'s choice when it is None or ``auto``."""
    return pick_preset(out, stage) if preset in (None, AUTO) else preset


def collect(out: Path | str, preset: str, models: Iterable[str], seeds: Iterable[int] | None = None) -> dict[str, list[dict]]:
    """Every model's evaluated runs (all seeds on disk unless ``seeds``), in seed order.

    A run not evaluated yet is left out; an eval.json that is corrupt or of another schema
    raises ResultError naming the file.
    """
    return {m: [load_eval(out, preset, m, s) for s in _completed(out, preset, m, seeds)] for m in models}


def summarize(per_seed: dict[int, float]) -> dict:
    """Mean and sample standard deviation (ddof=1; NaN for one seed) over seeds."""
    seeds = sorted(per_seed)
    values = [float(per_seed[s]) for s in seeds]
    n = len(values)
    return {
        "seeds": seeds, "values": values, "n": n,
        "mean": float(np.mean(values)) if n else math.nan,
        "std": float(np.std(values, ddof=1)) if n > 1 else math.nan,
    }


def _per_seed(evals: list[dict], get: Callable[[dict], float]) -> dict[int, float]:
    return {e["seed"]: get(e) for e in evals}


def _seeds_used(runs: dict[str, list[dict]]) -> list[int]:
    return sorted({e["seed"] for evals in runs.values() for e in evals})


def seeds_text(seeds: Iterable[int]) -> str:
    """'seed 0', 'seeds 0, 1, 2' or 'no seeds': how captions and titles name their seeds."""
    seeds = sorted(set(seeds))
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}" if seeds else "no seeds"


# ------------------------------------------------------------------------- tables

@dataclass(frozen=True)
class Table:
    id: str  # "table1" | "table2": also the HTML id the book check looks for
    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    preset: str | None
    seeds: tuple[int, ...]

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n" for row in self.rows)
        return (
            f'<table class="scvae-table" id="{self.id}" data-preset="{html.escape(self.preset or "")}" '
            f'data-seeds="{",".join(map(str, self.seeds))}">\n'
            f"<caption>{html.escape(self.caption)}</caption>\n"
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"
        )


COLUMNS = ("Model", "NLL (ours)", "NLL (paper)", "NLL ours − paper", "Acc (ours)", "Acc (paper)",
           "Acc ours − paper", "ELBO (ours)", "KL (ours)", "Active units (ours)")


def format_stat(s: dict, decimals: int) -> str:
    """'87.12 ± 0.34 (n=3)'; one seed has no spread: '87.12 (n=1)'."""
    if s["n"] == 0:
        return NOT_RUN
    spread = f" ± {s['std']:.{decimals}f}" if s["n"] > 1 else ""
    return f"{s['mean']:.{decimals}f}{spread} (n={s['n']})"


def _metric(key: str) -> Callable[[dict], float]:
    return lambda e: e["metrics"][key]


def _row(display: str, evals: list[dict], paper: dict) -> tuple[str, ...]:
    paper_nll, paper_acc = f"{paper['nll']:.{NLL_DECIMALS}f}", f"{paper['acc']:.{ACC_DECIMALS}f}"
    if not evals:
        return (display, NOT_RUN, paper_nll, "", NOT_RUN, paper_acc, "", NOT_RUN, NOT_RUN, NOT_RUN)
    nll, acc = summarize(_per_seed(evals, _metric("nll"))), summarize(_per_seed(evals, _metric("svm_acc")))
    return (
        display,
        format_stat(nll, NLL_DECIMALS), paper_nll, f"{nll['mean'] - paper['nll']:+.{NLL_DECIMALS}f}",
        format_stat(acc, ACC_DECIMALS), paper_acc, f"{acc['mean'] - paper['acc']:+.{ACC_DECIMALS}f}",
        format_stat(summarize(_per_seed(evals, _metric("elbo"))), NLL_DECIMALS),
        format_stat(summarize(_per_seed(evals, _metric("kl"))), NLL_DECIMALS),
        format_stat(summarize(_per_seed(evals, _metric("active_units"))), 1),
    )


def _paper_table(table_id: str, out: Path | str, preset: str | None) -> Table:
    preset = resolve_preset(out, table_id, preset)  # each table has the stage of its name
    paper = paper_rows(table_id)
    runs = collect(out, preset, paper) if preset else {m: [] for m in paper}
    seeds = _seeds_used(runs)
    source = (f"Ours: preset '{preset}', {seeds_text(seeds)}; mean ± sample std over seeds (n seeds)"
              if preset else "Ours: nothing run yet")
    caption = (f"{paper_reported()[table_id]['caption']}. Paper: as printed, {_citation()}. {source}; "
               "differences are our mean minus the paper's.")
    rows = tuple(_row(row["display"], runs[m], row) for m, row in paper.items())
    return Table(table_id, caption, COLUMNS, rows, preset, tuple(seeds))


def _citation() -> str:
    c = paper_reported()["citation"]
    return f"{c['authors'][0]} et al. ({c['year']})"


def table1(out: Path | str, preset: str | None = None) -> Table:
    return _paper_table("table1", out, preset)


def table2(out: Path | str, preset: str | None = None) -> Table:
    # Its SCVAE row is Table 1's model, run in the same preset by the table1 stage.
    return _paper_table("table2", out, preset)


TABLES: dict[str, Callable[..., Table]] = {"table1": table1, "table2": table2}


def build_table(table_id: str, out: Path | str, preset: str | None = None) -> Table:
    check_name("table", table_id, TABLES)
    return TABLES[table_id](out, preset)


# ------------------------------------------------------------------------- figure data

def fisher_depth(out: Path | str, preset: str | None = None) -> dict:
    """Figure 2: mean Fisher of the whole model and of its deepened part against depth.

    ``series[side][kind]`` (side enc|dec: which part is deepened; kind plain|skip) is a list of
    ``{depth, model, part}`` by depth, ``model``/``part`` being :func:`summarize` dicts.
    """
    preset = resolve_preset(out, "depth", preset)
    models = get_preset(preset).stage_models("depth") if preset else ()
    runs = collect(out, preset, models) if preset else {}
    series: dict[str, dict[str, list]] = {side: {"plain": [], "skip": []} for side in ("enc", "dec")}
    for name, evals in runs.items():
        side, depth, kind = DEPTH_MODEL.match(name).groups()
        if evals:
            part = "encoder_mean" if side == "enc" else "decoder_mean"
            series[side][kind].append({
                "depth": int(depth), "name": name,
                "model": summarize(_per_seed(evals, lambda e: e["fisher"]["model_mean"])),
                "part": summarize(_per_seed(evals, lambda e: e["fisher"][part])),
            })
    for kinds in series.values():
        for points in kinds.values():
            points.sort(key=lambda p: p["depth"])
    return {"preset": preset, "seeds": _seeds_used(runs), "series": series}


def stage_of(models: Iterable[str]) -> str:
    """The stage (of the paper preset) that holds most of ``models``: where their results live."""
    models = set(models)
    stages = get_preset("paper").stages
    best = max(stages, key=lambda s: len(models & set(stages[s])))
    if not models & set(stages[best]):
        raise UnknownName(f"no stage runs any of {sorted(models)}; stages: {', '.join(stages)}")
    return best


def fisher_per_model(out: Path | str, preset: str | None, models: Iterable[str]) -> dict:
    """Figures 3 and 5: mean Fisher of encoder and decoder per model (``summarize`` dicts);
    models without results are listed under ``missing``."""
    models = list(models)
    preset = resolve_preset(out, stage_of(models), preset)
    runs = collect(out, preset, models) if preset else {m: [] for m in models}
    return {
        "preset": preset,
        "seeds": _seeds_used(runs),
        "models": {
            m: {part: summarize(_per_seed(evals, lambda e, p=part: e["fisher"][f"{p}_mean"]))
                for part in ("encoder", "decoder")}
            for m, evals in runs.items() if evals
        },
        "missing": [m for m, evals in runs.items() if not evals],
    }


# ------------------------------------------------------------------------- claims and verdicts

HOLDS, PARTLY, FAILS, NOT_MEASURED = "holds", "partly holds", "does not hold", "not measured"
RULE = (
    "Each claim is measured as one or more effects, each with the sign the paper claims (beyond a threshold, "
    "0 unless stated). An effect holds if it has the claimed sign in every seed, partly holds if its mean over "
    "seeds has it but not every seed does, and does not hold otherwise. A claim holds if all its effects hold, "
    "does not hold if none holds even partly, partly holds in between, and is not measured if an effect has "
    "no results."
)

Runs = dict[str, dict[int, dict]]  # model -> seed -> eval.json


@dataclass(frozen=True)
class Effect:
    label: str  # what is measured, in words
    sign: int  # +1: the paper claims it is above ``threshold``; -1: below
    measure: Callable[[Runs], dict[int, float]]  # the value in each seed that has the results it needs
    threshold: float = 0.0


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    where: str  # in the paper
    stage: str  # the stage whose results measure it
    effects: tuple[Effect, ...]


def _paired(models: tuple[str, ...], f: Callable[..., float | None]) -> Callable[[Runs], dict[int, float]]:
    """``f`` of the models' evals, in every seed that all of them have (None: not measurable)."""
    def measure(runs: Runs) -> dict[int, float]:
        seeds = set.intersection(*(set(runs.get(m, {})) for m in models))
        values = {s: f(*(runs[m][s] for m in models)) for s in sorted(seeds)}
        return {s: v for s, v in values.items() if v is not None}
    return measure


def _nll(e: dict) -> float:
    return e["metrics"]["nll"]


def _acc(e: dict) -> float:
    return e["metrics"]["svm_acc"]


def _enc(e: dict) -> float:
    return e["fisher"]["encoder_mean"]


def _dec(e: dict) -> float:
    return e["fisher"]["decoder_mean"]


def _diff(a: str, b: str, get: Callable[[dict], float], sign: int, label: str) -> Effect:
    return Effect(label, sign, _paired((a, b), lambda ea, eb: get(ea) - get(eb)))


def _log_ratio(a: str, b: str, get: Callable[[dict], float], sign: int, label: str) -> Effect:
    return Effect(label, sign, _paired((a, b), lambda ea, eb: math.log10(get(ea) / get(eb))))


def _depth_curve(runs: Runs, side: str, kind: str, seed: int) -> dict[int, float]:
    """log10 mean Fisher of the model by depth, for one seed of the depth sweep."""
    curve = {}
    for name, by_seed in runs.items():
        m = DEPTH_MODEL.match(name)
        if m and m.group(1) == side and m.group(3) == kind and seed in by_seed:
            curve[int(m.group(2))] = math.log10(by_seed[seed]["fisher"]["model_mean"])
    return curve


def _slope(curve: dict[int, float]) -> float:
    depths = sorted(curve)
    return float(np.polyfit(depths, [curve[d] for d in depths], 1)[0])


def _depth_effect(side: str, f: Callable[[dict, dict], float | None], sign: int, label: str) -> Effect:
    """``f(plain curve, skip curve)`` per seed of the depth sweep (None: not measurable)."""
    def measure(runs: Runs) -> dict[int, float]:
        seeds = sorted({s for by_seed in runs.values() for s in by_seed})
        values = {s: f(_depth_curve(runs, side, "plain", s), _depth_curve(runs, side, "skip", s)) for s in seeds}
        return {s: v for s, v in values.items() if v is not None}
    return Effect(label, sign, measure)


def _plain_slope(plain: dict, skip: dict) -> float | None:
    return _slope(plain) if len(plain) > 1 else None


def _flatter(plain: dict, skip: dict) -> float | None:
    return abs(_slope(plain)) - abs(_slope(skip)) if len(plain) > 1 and len(skip) > 1 else None


def _skip_gap_at_deepest(plain: dict, skip: dict) -> float | None:
    common = set(plain) & set(skip)
    return skip[max(common)] - plain[max(common)] if common else None


def _pair_fraction(key: str) -> Callable[..., float | None]:
    """Share of consecutive layer pairs (Proposition 1 check, all given evals) where ``key`` is true."""
    def f(*evals: dict) -> float | None:
        flags = [p[key] for e in evals for p in e["derivations"]["proposition1"]["pairs"] if p[key] is not None]
        return sum(flags) / len(flags) if flags else None
    return f


def _skip_log_ratios(*evals: dict) -> list[float]:
    """log10(Fisher with skips on / off) of every layer that receives a skip (Proposition 3 check)."""
    return [math.log10(layer["ratio"]) for e in evals for layer in e["derivations"]["proposition3"]["layers"]
            if layer["receives_skip"] and layer["ratio"]]


SIDE = {"enc": "encoder", "dec": "decoder"}
SCVAE_FIRST = ("scvae", *(m for m in TABLE1 if m != "scvae"))
PLAIN_DEEP = ("vae-11l", "vae-q++", "vae-p++")  # feed-forward nets of Proposition 1, with layer pairs
SKIP_MODELS = ("scvae", "scvae-l")

CLAIMS: tuple[Claim, ...] = (
    Claim("deg-q++", "A deeper encoder (VAE(q++)) improves accuracy but worsens NLL compared with VAE(1L).",
          "Sec. 1 and Fig. 1; Table 1", "table1", (
              _diff("vae-q++", "vae-1l", _acc, +1, "Acc(VAE(q++)) − Acc(VAE(1L))"),
              _diff("vae-q++", "vae-1l", _nll, +1, "NLL(VAE(q++)) − NLL(VAE(1L))"))),
    Claim("deg-p++", "A deeper decoder (VAE(p++)) improves NLL but worsens accuracy compared with VAE(1L).",
          "Sec. 1 and Fig. 1; Table 1", "table1", (
              _diff("vae-p++", "vae-1l", _nll, -1, "NLL(VAE(p++)) − NLL(VAE(1L))"),
              _diff("vae-p++", "vae-1l", _acc, -1, "Acc(VAE(p++)) − Acc(VAE(1L))"))),
    Claim("deg-deep", "Deepening both sides (VAE(11L)) worsens both NLL and accuracy compared with VAE(1L).",
          "Sec. 1 and Fig. 1; Table 1", "table1", (
              _diff("vae-11l", "vae-1l", _nll, +1, "NLL(VAE(11L)) − NLL(VAE(1L))"),
              _diff("vae-11l", "vae-1l", _acc, -1, "Acc(VAE(11L)) − Acc(VAE(1L))"))),
    Claim("fisher-depth-plain-decreases",
          "Without skips, the model's mean Fisher information decreases as the encoder or the decoder gets deeper.",
          "Sec. 6.1, Fig. 2", "depth", tuple(
              _depth_effect(side, _plain_slope, -1,
                            f"{SIDE[side]} deepened, plain: slope of log10 mean Fisher per added layer")
              for side in SIDE)),
    Claim("fisher-depth-skip-flat",
          "With skip connections the mean Fisher information stays closer to its shallow level than without, "
          "and above the plain model's when deep.",
          "Sec. 6.1, Fig. 2", "depth", tuple(
              effect for side in SIDE for effect in (
                  _depth_effect(side, _flatter, +1, f"{SIDE[side]} deepened: |slope plain| − |slope skip| "
                                "of log10 mean Fisher per layer"),
                  _depth_effect(side, _skip_gap_at_deepest, +1, f"{SIDE[side]} deepened, deepest depth run: "
                                "log10(mean Fisher skip / plain)")))),
    Claim("fig3-enc-dec",
          "Deepening the encoder makes information decay mainly in the decoder; deepening the decoder, mainly "
          "in the encoder.",
          "Sec. 6.1, Fig. 3", "table1", (
              Effect("VAE(q++) vs VAE(1L): log10 change of decoder Fisher − that of encoder Fisher", -1,
                     _paired(("vae-q++", "vae-1l"), lambda q, v: math.log10(_dec(q) / _dec(v))
                             - math.log10(_enc(q) / _enc(v)))),
              Effect("VAE(p++) vs VAE(1L): log10 change of encoder Fisher − that of decoder Fisher", -1,
                     _paired(("vae-p++", "vae-1l"), lambda p, v: math.log10(_enc(p) / _enc(v))
                             - math.log10(_dec(p) / _dec(v)))))),
    Claim("scvae-best-both", "SCVAE has the best NLL and the best accuracy of the Table 1 models.",
          "Sec. 6.2, Table 1", "table1", (
              Effect("NLL(SCVAE) − best NLL of the other Table 1 models", -1,
                     _paired(SCVAE_FIRST, lambda e, *rest: _nll(e) - min(map(_nll, rest)))),
              Effect("Acc(SCVAE) − best Acc of the other Table 1 models", +1,
                     _paired(SCVAE_FIRST, lambda e, *rest: _acc(e) - max(map(_acc, rest)))))),
    Claim("scvae-l-between", "SCVAE-L's encoder holds less Fisher information than SCVAE's but more than VAE(p++)'s.",
          "Sec. 6.1, Fig. 3", "table1", (
              _log_ratio("scvae-l", "scvae", _enc, -1, "log10(encoder Fisher SCVAE-L / SCVAE)"),
              _log_ratio("scvae-l", "vae-p++", _enc, +1, "log10(encoder Fisher SCVAE-L / VAE(p++))"))),
    Claim("prop1-eq6",
          "Proposition 1 (eq. 6): the Fisher information of consecutive layers changes by the squared ratio of "
          "their back-propagated gradients.",
          "Sec. 4.3, Proposition 1", "table1", (
              # fisher.check_proposition1 flags each pair of hidden layers whose Fisher ratio is within a
              # factor 2 of eq. 6's; "holds" asks that most pairs are.
              Effect("share of layer pairs (VAE(11L), VAE(q++), VAE(p++)) where eq. 6 is right within 2x", +1,
                     _paired(PLAIN_DEEP, _pair_fraction("eq6_within_2x")), threshold=0.5),)),
    Claim("prop1-remark2", "Remark 2: deeper layers of a feed-forward network hold less Fisher information.",
          "Sec. 4.3, Remark 2", "table1", (
              Effect("share of layer pairs (VAE(11L), VAE(q++), VAE(p++)) where the upper layer's Fisher is "
                     "not larger", +1, _paired(PLAIN_DEEP, _pair_fraction("fisher_decreases")), threshold=0.5),)),
    Claim("prop3-skip-adds",
          "Proposition 3 (eq. 10): a layer receiving a skip connection carries more Fisher information than "
          "the same weights without it.",
          "Sec. 5, Proposition 3", "table1", (
              Effect("mean over skip-receiving layers (SCVAE, SCVAE-L) of log10(Fisher skips on / off)", +1,
                     _paired(SKIP_MODELS, lambda *e: float(np.mean(r)) if (r := _skip_log_ratios(*e)) else None)),
              # eq. 10 is for every such layer: its smallest ratio must exceed 1 too.
              Effect("smallest over skip-receiving layers (SCVAE, SCVAE-L) of log10(Fisher skips on / off)", +1,
                     _paired(SKIP_MODELS, lambda *e: min(r) if (r := _skip_log_ratios(*e)) else None)))),
    Claim("table2-vamp", "SCVAE + VampPrior improves on VAE(1L) + VampPrior in both NLL and accuracy.",
          "Sec. 6.3, Table 2", "table2", (
              _diff("scvae+vamp", "vae-1l+vamp", _nll, -1, "NLL(SCVAE+VampPrior) − NLL(VAE(1L)+VampPrior)"),
              _diff("scvae+vamp", "vae-1l+vamp", _acc, +1, "Acc(SCVAE+VampPrior) − Acc(VAE(1L)+VampPrior)"))),
    Claim("table2-pixel", "SCVAE + PixelVAE improves on PixelVAE in both NLL and accuracy.",
          "Sec. 6.3, Table 2", "table2", (
              _diff("scvae+pixel", "pixelvae", _nll, -1, "NLL(SCVAE+PixelVAE) − NLL(PixelVAE)"),
              _diff("scvae+pixel", "pixelvae", _acc, +1, "Acc(SCVAE+PixelVAE) − Acc(PixelVAE)"))),
    Claim("pixelvae-encoder-negligible",
          "In PixelVAE the encoder's Fisher information is negligible next to the decoder's.",
          "Sec. 6.3, Fig. 5", "table2", (
              # "Negligible" read as: at least ten times smaller.
              Effect("log10(decoder / encoder mean Fisher) of PixelVAE", +1,
                     _paired(("pixelvae",), lambda e: math.log10(_dec(e) / _enc(e))), threshold=1.0),)),
)


def effect_status(values: list[float], sign: int, threshold: float) -> str:
    if not values:
        return NOT_MEASURED
    if all(sign * (v - threshold) > 0 for v in values):
        return HOLDS
    return PARTLY if sign * (float(np.mean(values)) - threshold) > 0 else FAILS


def claim_status(statuses: list[str]) -> str:
    if NOT_MEASURED in statuses:
        return NOT_MEASURED
    if all(s == HOLDS for s in statuses):
        return HOLDS
    return FAILS if all(s == FAILS for s in statuses) else PARTLY


def evaluate_claim(claim: Claim, runs: Runs) -> dict:
    """A claim's effects measured on ``runs`` (model -> seed -> eval), with their statuses."""
    effects = []
    for effect in claim.effects:
        stats = summarize(effect.measure(runs))
        effects.append({
            "label": effect.label, "claimed": f"{'>' if effect.sign > 0 else '<'} {effect.threshold:g}",
            **stats, "status": effect_status(stats["values"], effect.sign, effect.threshold),
        })
    return {"id": claim.id, "statement": claim.statement, "where": claim.where,
            "status": claim_status([e["status"] for e in effects]), "effects": effects}


# A model-name suffix of the zoo, the stage that runs those twins of the Table 1 models, and
# how the book names them. Our default models ("") use tanh and PyTorch's default init.
VARIANT_STAGES = {RELU: "activation", XAVIER: "init"}
VARIANT_NAMES = {"": "tanh, default init", RELU: "ReLU", XAVIER: "Xavier init"}


def verdict_evidence(out: Path | str, preset: str | None = None, variant: str = "") -> dict[str, dict]:
    """Every claim of :data:`CLAIMS`, measured on the results of its stage.

    With ``variant`` (a key of :data:`VARIANT_STAGES`, e.g. ``"-relu"``) the Table 1 claims are
    measured again on the twin models of that suffix, and the other claims are left out.
    """
    claims = [c for c in CLAIMS if not variant or c.stage == "table1"]
    by_stage: dict[str, tuple[str | None, Runs]] = {}
    for stage in {c.stage for c in claims}:
        p = resolve_preset(out, VARIANT_STAGES[variant] if variant else stage, preset)
        models = get_preset(p).stage_models(stage) if p else ()
        runs = collect(out, p, [m + variant for m in models]) if p else {}
        by_stage[stage] = (p, {m.removesuffix(variant) if variant else m: {e["seed"]: e for e in evals}
                               for m, evals in runs.items()})
    evidence = {}
    for claim in claims:
        p, runs = by_stage[claim.stage]
        evidence[claim.id] = {**evaluate_claim(claim, runs), "preset": p}
    return evidence


def verdicts_side_by_side(evidence: dict[str, dict], twins: dict[str, dict[str, dict]]) -> str:
    """One line per claim measured on every set of twins: its verdict with our models and with
    each set; ``twins`` maps a variant suffix to its :func:`verdict_evidence`."""
    lines = []
    for i, c in evidence.items():
        if all(i in e for e in twins.values()):
            lines.append(f"- **{c['statement']}** ours ({VARIANT_NAMES['']}): {c['status']}; " + "; ".join(
                f"{VARIANT_NAMES[v]} twins: {e[i]['status']}" for v, e in twins.items()))
    return "\n".join(lines)


def train_docs(out: Path | str, preset: str, models: Iterable[str], seeds: Iterable[int] | None = None) -> list[dict]:
    """The train.json of every evaluated run of ``models`` (for training curves)."""
    from .results import read_json

    return [read_json(RunPaths(Path(out), preset, m, s).train_json, "train", required=("history",))
            for m in models for s in _completed(out, preset, m, seeds)]


def verdicts_markdown(evidence: dict[str, dict]) -> str:
    """The verdicts page's text: per claim, its status and every effect per seed (lists, not
    tables: the book check reserves HTML tables for generated result tables)."""
    lines = []
    for claim in evidence.values():
        lines.append(f"### {claim['statement']}\n")
        lines.append(f"*{claim['where']}* · results: preset **{claim['preset'] or 'none'}** · "
                     f"verdict: **{claim['status']}**\n")
        for e in claim["effects"]:
            per_seed = ", ".join(f"seed {s}: {v:.3g}" for s, v in zip(e["seeds"], e["values"])) or "no results"
            spread = "" if math.isnan(e["std"]) else f" ± {e['std']:.3g}"
            mean = "n/a" if math.isnan(e["mean"]) else f"{e['mean']:.3g}{spread}"
            lines.append(f"- {e['label']} (claimed {e['claimed']}): mean {mean} over {e['n']} seed(s) "
                         f"({per_seed}) → {e['status']}")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------- where we differ, and why

def _table1_display(model: str) -> str:
    return paper_rows("table1")[model]["display"]


def twin_table(out: Path | str, variant: str, preset: str | None = None) -> Table:
    """Every Table 1 model beside its twin of suffix ``variant`` (a key of
    :data:`VARIANT_STAGES`): NLL, accuracy, active units."""
    name, stage = VARIANT_NAMES[variant], VARIANT_STAGES[variant]
    preset = resolve_preset(out, stage, preset) or resolve_preset(out, "table1", preset)
    ours = collect(out, preset, TABLE1) if preset else {}
    twins = collect(out, preset, [m + variant for m in TABLE1]) if preset else {}
    rows = []
    for m in TABLE1:
        cells = [_table1_display(m)]
        for key, decimals in (("nll", NLL_DECIMALS), ("svm_acc", ACC_DECIMALS), ("active_units", 1)):
            cells += [format_stat(summarize(_per_seed(evals, _metric(key))), decimals)
                      for evals in (ours.get(m, []), twins.get(m + variant, []))]
        rows.append(tuple(cells))
    columns = ("Model", *(f"{what} {who}" for what in ("NLL", "Acc", "Active units") for who in ("ours", name)))
    seeds = _seeds_used({**ours, **twins})
    caption = (f"Every Table 1 model as we run it ({VARIANT_NAMES['']}) and with {name} (stage '{stage}'). "
               f"Preset '{preset}', {seeds_text(seeds)}; mean ± sample std over seeds (n seeds).")
    return Table(stage, caption, columns, tuple(rows), preset, tuple(seeds))


def activation_table(out: Path | str, preset: str | None = None) -> Table:
    """Every Table 1 model beside its ReLU twin (the activation stage)."""
    return twin_table(out, RELU, preset)


def init_table(out: Path | str, preset: str | None = None) -> Table:
    """Every Table 1 model beside its Xavier-initialised twin (the init stage)."""
    return twin_table(out, XAVIER, preset)


@lru_cache(maxsize=1)
def published() -> dict:
    """Other papers' numbers for the paper's VAE(1L) model class (cited in the file)."""
    return json.loads(Path(PUBLISHED).read_text())


VAE1L_PRESETS = ("cpu", "cpu-long", "paper")  # our VAE(1L) runs, from the shortest budget up
PUBLISHED_COLUMNS = ("Source", "NLL", "Training", "NLL estimate", "Binarization")


def _budget_words(p) -> str:
    stop = f", early stopping (patience {p.patience})" if p.patience else ""
    return f"at most {p.epochs} epochs{stop}, KL warm-up {p.warmup_epochs} epochs, Adam {p.lr:g}, batch {p.batch_size}"


def published_table(out: Path | str, preset: str | None = None) -> Table:
    """VAE(1L)'s test NLL: ours under each budget run, the paper's, and other papers' for the
    same model class. ``preset`` is unused: every budget with results is shown."""
    rows, seeds = [], set()
    for name in VAE1L_PRESETS:
        evals = collect(out, name, ["vae-1l"])["vae-1l"]
        if not evals:
            continue
        p = get_preset(name)
        seeds |= {e["seed"] for e in evals}
        rows.append((f"Ours, preset '{name}'", format_stat(summarize(_per_seed(evals, _nll)), NLL_DECIMALS),
                     _budget_words(p),
                     f"importance sampling, S = {p.nll_samples}, {p.test_size or 10000} test images",
                     "static (Larochelle & Murray, 2011)"))
    paper = paper_rows("table1")["vae-1l"]
    rows.append((f"{_citation()}, Table 1", f"{paper['nll']:.{NLL_DECIMALS}f}", "not stated", "not stated",
                 "not stated (the 50,000/10,000/10,000 split of Sec. 6 is the static one's)"))
    for e in published()["entries"]:
        rows.append((e["source"], f"{e['nll']:.{NLL_DECIMALS}f}", e["training"], e["estimate"], e["binarization"]))
    caption = ("Test NLL of VAE(1L)-class models: one Gaussian stochastic layer, MLP encoder and decoder, "
               f"standard normal prior. Ours: {seeds_text(seeds)}, mean ± sample std over seeds (n seeds); "
               "the others as printed (data/published_nll.json).")
    return Table("published", caption, PUBLISHED_COLUMNS, tuple(rows), None, tuple(sorted(seeds)))


TABLES |= {"activation": activation_table, "init": init_table, "published": published_table}


def nll_convergence(out: Path | str, preset: str | None = None) -> dict:
    """The NLL estimate from the first k importance samples, per Table 1 model and twin:
    ``models[m][k]`` a :func:`summarize` dict over the seeds that recorded it."""
    preset = resolve_preset(out, "table1", preset)
    models = [m + variant for variant in VARIANT_NAMES for m in TABLE1]
    runs = collect(out, preset, models) if preset else {}
    curves = {}
    for m, evals in runs.items():
        evals = [e for e in evals if "nll_by_samples" in e["metrics"]]
        if evals:
            counts = sorted({int(k) for e in evals for k in e["metrics"]["nll_by_samples"]})
            curves[m] = {k: summarize({e["seed"]: e["metrics"]["nll_by_samples"][str(k)] for e in evals
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


def budget_text(out: Path | str) -> str:
    """What ten times the epochs (preset cpu-long) did to each model of its budget stage: NLL
    against the paper's, and active latent units."""
    short_p, long_p = get_preset("cpu"), get_preset("cpu-long")
    lines = []
    for model in long_p.stage_models("budget"):
        short, long = (collect(out, p.name, [model])[model] for p in (short_p, long_p))
        if not short or not long:
            lines.append(f"- {_table1_display(model)}: needs results under both the 'cpu' and the 'cpu-long' preset.")
            continue
        (a, b), (ua, ub) = ([summarize(_per_seed(runs, get))["mean"] for runs in (short, long)]
                            for get in (_nll, _metric("active_units")))
        paper = paper_rows("table1")[model]["nll"]
        share = (a - b) / (a - paper) if a != paper else 1.0
        closed = f"{100 * share:.0f}% of the gap closed" if share > 0 else "none of the gap closed"
        lines.append(f"- {_table1_display(model)}: {long_p.epochs} epochs instead of {short_p.epochs} moved its test "
                     f"NLL from {a:.2f} to {b:.2f} nats (the paper: {paper:.2f}; {closed}) and its "
                     f"active latent units from {ua:.1f} to {ub:.1f}.")
    return "\n".join(lines)


def collapse_text(out: Path | str, preset: str | None = None) -> str:
    """Which Table 1 models' posteriors collapsed (no active latent unit), as we run them and
    in each twin stage, and in how many of their seeds."""
    preset = resolve_preset(out, "table1", preset)
    if not preset:
        return "No results yet."
    lines = []
    for suffix, name in VARIANT_NAMES.items():
        runs = collect(out, preset, [m + suffix for m in TABLE1])
        found = [f"{_table1_display(m.removesuffix(suffix))} ({sum(_metric('active_units')(e) == 0 for e in evals)} "
                 f"of {len(evals)} seeds)" for m, evals in runs.items()
                 if any(_metric("active_units")(e) == 0 for e in evals)]
        ran = sum(bool(evals) for evals in runs.values())
        lines.append(f"- {name}: {ran} of {len(TABLE1)} models run; collapsed: "
                     f"{', '.join(found) if found else 'none'}")
    return "\n".join(lines)
