"""The paper's claims and the effects that measure them, judged by :mod:`scvae_core.book.verdicts`.

A claim is one or more effects; an effect is a number per seed (with the run's own estimator
error where the run records one) whose sign the paper claims. Its 95% interval combines the
spread across seeds with those errors; its verdict compares the interval with a practical
threshold of its kind of quantity (:data:`THRESHOLDS`). Claims about Fisher information are
judged under each of three readings of it (:data:`READINGS`).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..presets import DEFAULT_DATASET, TABLE1, get_preset
from ..runs import (AUTO, DEPTH_MODEL, Runs, by_seed, collect, default_epoch, md_text, per_image_nll, preset_dir,
                    resolve_preset)
from .verdicts import NOT_MEASURED, RANGES, THRESHOLDS, Est, add_se, claim_verdict, interval, verdict
from ..zoo import OURS, TWINS, Twin, twin_of

# ------------------------------------------------------------------------- what a run measures

READINGS = {
    "model": "diagonal Fisher, targets from the model (eq. 4; robust mean of log10 over points)",
    "empirical": "empirical Fisher, the data as decoder targets (robust mean of log10 over points)",
    "authors": "the authors' Fisher information ratio (sum |G Wᵀ W Gᵀ| over 10 training minibatches, "
               "first hidden layer included)",
}


def _nll(e: dict) -> Est:
    return Est(e["metrics"]["nll"], e["metrics"].get("nll_se"))


def _acc(e: dict) -> Est:
    m = e["metrics"]
    folds = len(m.get("svm_fold_accs") or []) or 1
    return Est(m["svm_acc"], m["svm_acc_std"] / math.sqrt(folds) if m.get("svm_acc_std") is not None else None)


def fisher_side(e: dict, part: str, reading: str) -> Est | None:
    """log10 Fisher of a side (encoder, decoder or model) of one run under a reading; None
    where the run did not record that reading (files written before it existed)."""
    if reading == "authors":
        side = (e.get("fisher_authors") or {}).get(part) or {}
        wf = side.get("with_first")
        return Est(wf["log10_mean"], wf["log10_se"]) if wf else None
    block = e.get("fisher") if reading == "model" else e.get("fisher_empirical")
    if not block:
        return None
    robust = (block.get("sides") or {}).get(part)
    if robust:
        return Est(robust["log10_mean_of_points"], robust["log10_se"])
    # Written before the robust summary existed: the layer mean, without an error.
    mean = block.get(f"{part}_mean")
    return Est(math.log10(mean)) if mean and mean > 0 else None


def nll_diff(a: dict, b: dict) -> Est:
    """NLL(a) − NLL(b) of one seed's two runs. Its error is that of the image-by-image
    differences where both runs stored every image's estimate (the same images: the runs' errors
    largely cancel), else the two runs' errors in quadrature."""
    value = a["metrics"]["nll"] - b["metrics"]["nll"]
    pa, pb = per_image_nll(a), per_image_nll(b)
    if pa is not None and pb is not None and np.array_equal(pa[0], pb[0]) and len(pa[0]) > 1:
        d = pa[1] - pb[1]
        return Est(value, float(d.std(ddof=1) / math.sqrt(len(d))), paired=True)
    return _nll(a) - _nll(b)


def acc_diff(a: dict, b: dict) -> Est:
    """Acc(a) − Acc(b) of one seed's two runs, its error that of the fold-by-fold differences (every
    run's SVM uses the same folds of the same images: SPLIT_SEED), else the errors in quadrature."""
    fa, fb = (np.array(e["metrics"].get("svm_fold_accs") or [], dtype=float) for e in (a, b))
    if len(fa) > 1 and len(fa) == len(fb):
        d = fa - fb
        return Est(a["metrics"]["svm_acc"] - b["metrics"]["svm_acc"], float(d.std(ddof=1) / math.sqrt(len(d))),
                   paired=True)
    return _acc(a) - _acc(b)


def _mi(e: dict) -> Est | None:
    """I(x; z) under the aggregate posterior (diagnostics.py), with its Monte Carlo error; None for
    an evaluation written before the diagnostics existed."""
    mi = (e.get("diagnostics") or {}).get("mutual_information")
    return Est(mi["value"], mi.get("se")) if mi else None


def mi_diff(a: dict, b: dict) -> Est | None:
    """MI(a) − MI(b): two models' draws are independent, so their errors add in quadrature."""
    ma, mb = _mi(a), _mi(b)
    return None if ma is None or mb is None else ma - mb


DIFFS = {"nll": (_nll, nll_diff), "acc": (_acc, acc_diff), "mi": (_mi, mi_diff)}  # kind -> (value, difference)


Measure = Callable[[Runs, str], dict[int, Est]]


@dataclass(frozen=True)
class Effect:
    label: str  # what is measured, in words
    sign: int  # +1: the claim puts it above ``level``; -1: below; 0: away from it, either way
    kind: str  # a key of THRESHOLDS
    measure: Measure  # (runs, reading) -> the value in each seed that has the results it needs
    level: float = 0.0  # the claimed reference value (0 for a difference)
    models: tuple[str, ...] = ()  # the two models a difference compares (named for the pages; empty otherwise)


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    where: str  # in the paper
    stage: str  # the stage whose results measure it
    effects: tuple[Effect, ...]
    fisher: bool = False  # judged under every reading of READINGS
    # Ours, not the paper's (OUR_CLAIMS): the stages, beside ``stage``, whose models it compares with
    ours: bool = False
    compares: tuple[str, ...] = ()

    @property
    def readings(self) -> tuple[str, ...]:
        return tuple(READINGS) if self.fisher else ("model",)


def _paired(models: tuple[str, ...], f: Callable[..., Est | None]) -> Measure:
    """``f(reading, *evals)`` in every seed that all the models have (None: not measurable)."""
    def measure(runs: Runs, reading: str) -> dict[int, Est]:
        seeds = set.intersection(*(set(runs.get(m, {})) for m in models))
        values = {s: f(reading, *(runs[m][s] for m in models)) for s in sorted(seeds)}
        return {s: v for s, v in values.items() if v is not None}
    return measure


def _diff(a: str, b: str, sign: int, kind: str, label: str) -> Effect:
    diff = DIFFS[kind][1]
    return Effect(label, sign, kind, _paired((a, b), lambda r, ea, eb: diff(ea, eb)), models=(a, b))


def _fisher_ratio(a: str, b: str, part: str, sign: int, label: str) -> Effect:
    def f(reading, ea, eb):
        fa, fb = fisher_side(ea, part, reading), fisher_side(eb, part, reading)
        return None if fa is None or fb is None else fa - fb
    return Effect(label, sign, "log10_fisher", _paired((a, b), f))


def _depth_curve(runs: Runs, side: str, kind: str, seed: int, reading: str) -> dict[int, Est]:
    """log10 Fisher of the whole model by depth, for one seed of the depth sweep; empty until
    every depth of the sweep has it (a slope over part of a sweep, while its runs land, is not
    the trend the paper claims)."""
    curve, depths = {}, set()
    for name, seeds in runs.items():
        m = DEPTH_MODEL.match(name)
        if m and m.group(1) == side and m.group(3) == kind:
            depths.add(int(m.group(2)))
            v = fisher_side(seeds[seed], "model", reading) if seed in seeds else None
            if v is not None:
                curve[int(m.group(2))] = v
    return curve if set(curve) == depths else {}


def _slope(curve: dict[int, Est]) -> Est:
    """Least-squares slope per layer, its error propagated from each depth's."""
    depths = np.array(sorted(curve), dtype=float)
    weights = (depths - depths.mean()) / np.sum((depths - depths.mean()) ** 2)
    ests = [curve[int(d)] for d in depths]
    value = float(np.dot(weights, [e.value for e in ests]))
    se = None if any(e.se is None for e in ests) else float(math.sqrt(sum((w * e.se) ** 2 for w, e in zip(weights, ests))))
    return Est(value, se)


def _depth_effect(side: str, f: Callable[[dict, dict], Est | None], sign: int, kind: str, label: str) -> Effect:
    """``f(plain curve, skip curve)`` per seed of the depth sweep (None: not measurable)."""
    def measure(runs: Runs, reading: str) -> dict[int, Est]:
        seeds = sorted({s for by in runs.values() for s in by})
        values = {s: f(_depth_curve(runs, side, "plain", s, reading), _depth_curve(runs, side, "skip", s, reading))
                  for s in seeds}
        return {s: v for s, v in values.items() if v is not None}
    return Effect(label, sign, kind, measure)


def _plain_slope(plain: dict, skip: dict) -> Est | None:
    return _slope(plain) if len(plain) > 1 else None


def _flatter(plain: dict, skip: dict) -> Est | None:
    if len(plain) < 2 or len(skip) < 2:
        return None
    p, s = _slope(plain), _slope(skip)
    return Est(abs(p.value) - abs(s.value), add_se(p.se, s.se))


def _skip_gap_at_deepest(plain: dict, skip: dict) -> Est | None:
    common = set(plain) & set(skip)
    return skip[max(common)] - plain[max(common)] if common else None


def _pair_share(key: str) -> Callable[..., Est | None]:
    """Share of consecutive layer pairs (Proposition 1 check, all given evals) where ``key`` is
    true, with its binomial standard error over pairs."""
    def f(reading, *evals: dict) -> Est | None:
        flags = [p[key] for e in evals for p in e["derivations"]["proposition1"]["pairs"] if p[key] is not None]
        if not flags:
            return None
        share, n = sum(flags) / len(flags), len(flags)
        shrunk = (sum(flags) + 0.5) / (n + 1)  # keeps the error above 0 when every pair agrees
        return Est(share, math.sqrt(shrunk * (1 - shrunk) / n))
    return f


def _skip_log_ratios(*evals: dict) -> list[float]:
    """log10(Fisher with skips on / off) of every layer that receives a skip (Proposition 3 check)."""
    return [math.log10(layer["ratio"]) for e in evals for layer in e["derivations"]["proposition3"]["layers"]
            if layer["receives_skip"] and layer["ratio"]]


def _best_other(kind: str, pick: Callable) -> Callable[..., Est]:
    """SCVAE minus the best (``pick``: min or max) of the other Table 1 models, in ``kind``."""
    get, diff = DIFFS[kind]

    def f(reading, e, *rest):
        return diff(e, pick(rest, key=lambda r: get(r).value))
    return f


def _change_gap(first: str, second: str) -> Callable[..., Est | None]:
    """(log10 change of side ``first``) − (that of side ``second``), from run b to run a."""
    def f(reading, a, b):
        sides = [fisher_side(e, part, reading) for part in (first, second) for e in (a, b)]
        if any(x is None for x in sides):
            return None
        fa, fb, sa, sb = sides
        return (fa - fb) - (sa - sb)
    return f


SIDE = {"enc": "encoder", "dec": "decoder"}
SCVAE_FIRST = ("scvae", *(m for m in TABLE1 if m != "scvae"))
FEED_FORWARD = ("vae-11l", "vae-q++", "vae-p++")  # Proposition 1's nets: no skips, with layer pairs
SKIP_MODELS = ("scvae", "scvae-l")

CLAIMS: tuple[Claim, ...] = (
    Claim("deg-q++", "A deeper encoder (VAE(q++)) improves accuracy but worsens NLL compared with VAE(1L).",
          "Sec. 1 and Fig. 1; Table 1", "table1", (
              _diff("vae-q++", "vae-1l", +1, "acc", "Acc(VAE(q++)) − Acc(VAE(1L))"),
              _diff("vae-q++", "vae-1l", +1, "nll", "NLL(VAE(q++)) − NLL(VAE(1L))"))),
    Claim("deg-p++", "A deeper decoder (VAE(p++)) improves NLL but worsens accuracy compared with VAE(1L).",
          "Sec. 1 and Fig. 1; Table 1", "table1", (
              _diff("vae-p++", "vae-1l", -1, "nll", "NLL(VAE(p++)) − NLL(VAE(1L))"),
              _diff("vae-p++", "vae-1l", -1, "acc", "Acc(VAE(p++)) − Acc(VAE(1L))"))),
    Claim("deg-deep", "Deepening both sides (VAE(11L)) worsens both NLL and accuracy compared with VAE(1L).",
          "Sec. 1 and Fig. 1; Table 1", "table1", (
              _diff("vae-11l", "vae-1l", +1, "nll", "NLL(VAE(11L)) − NLL(VAE(1L))"),
              _diff("vae-11l", "vae-1l", -1, "acc", "Acc(VAE(11L)) − Acc(VAE(1L))"))),
    Claim("fisher-depth-plain-decreases",
          "Without skips, the model's mean Fisher information decreases as the encoder or the decoder gets deeper.",
          "Sec. 6.1, Fig. 2", "depth", tuple(
              _depth_effect(side, _plain_slope, -1, "slope",
                            f"{SIDE[side]} deepened, plain: slope of log10 Fisher per added layer")
              for side in SIDE), fisher=True),
    Claim("fisher-depth-skip-flat",
          "With skip connections the mean Fisher information stays closer to its shallow level than without, "
          "and above the plain model's when deep.",
          "Sec. 6.1, Fig. 2", "depth", tuple(
              effect for side in SIDE for effect in (
                  _depth_effect(side, _flatter, +1, "slope", f"{SIDE[side]} deepened: |slope plain| − |slope skip| "
                                "of log10 Fisher per layer"),
                  _depth_effect(side, _skip_gap_at_deepest, +1, "log10_fisher",
                                f"{SIDE[side]} deepened, deepest depth run: log10(Fisher skip / plain)"))),
          fisher=True),
    Claim("fig3-enc-dec",
          "Deepening the encoder makes information decay mainly in the decoder; deepening the decoder, mainly "
          "in the encoder.",
          "Sec. 6.1, Fig. 3", "table1", (
              Effect("VAE(q++) vs VAE(1L): log10 change of decoder Fisher − that of encoder Fisher", -1,
                     "log10_fisher", _paired(("vae-q++", "vae-1l"), _change_gap("decoder", "encoder"))),
              Effect("VAE(p++) vs VAE(1L): log10 change of encoder Fisher − that of decoder Fisher", -1,
                     "log10_fisher", _paired(("vae-p++", "vae-1l"), _change_gap("encoder", "decoder")))),
          fisher=True),
    # Not a sentence of the paper but the comparison its Table 1 makes first: a skip-connected
    # deep VAE against the shallow one it deepens.
    Claim("scvae-vs-1l", "SCVAE improves on VAE(1L) in both NLL and accuracy.", "Sec. 6.2, Table 1", "table1", (
        _diff("scvae", "vae-1l", -1, "nll", "NLL(SCVAE) − NLL(VAE(1L))"),
        _diff("scvae", "vae-1l", +1, "acc", "Acc(SCVAE) − Acc(VAE(1L))"))),
    Claim("scvae-best-both", "SCVAE has the best NLL and the best accuracy of the Table 1 models.",
          "Sec. 6.2, Table 1", "table1", (
              Effect("NLL(SCVAE) − best NLL of the other Table 1 models", -1, "nll",
                     _paired(SCVAE_FIRST, _best_other("nll", min))),
              Effect("Acc(SCVAE) − best Acc of the other Table 1 models", +1, "acc",
                     _paired(SCVAE_FIRST, _best_other("acc", max))))),
    Claim("scvae-l-between", "SCVAE-L's encoder holds less Fisher information than SCVAE's but more than VAE(p++)'s.",
          "Sec. 6.1, Fig. 3", "table1", (
              _fisher_ratio("scvae-l", "scvae", "encoder", -1, "log10(encoder Fisher SCVAE-L / SCVAE)"),
              _fisher_ratio("scvae-l", "vae-p++", "encoder", +1, "log10(encoder Fisher SCVAE-L / VAE(p++))")),
          fisher=True),
    Claim("prop1-eq6",
          "Proposition 1 (eq. 6): the Fisher information of consecutive layers changes by the squared ratio of "
          "their back-propagated gradients.",
          "Sec. 4.3, Proposition 1", "table1", (
              # fisher.check_proposition1 flags each pair of hidden layers whose Fisher ratio is within a
              # factor 2 of eq. 6's; "holds" asks that most pairs are.
              Effect("share of layer pairs (VAE(11L), VAE(q++), VAE(p++)) where eq. 6 is right within 2x", +1,
                     "share", _paired(FEED_FORWARD, _pair_share("eq6_within_2x")), level=0.5),)),
    Claim("prop1-remark2", "Remark 2: deeper layers of a feed-forward network hold less Fisher information.",
          "Sec. 4.3, Remark 2", "table1", (
              Effect("share of layer pairs (VAE(11L), VAE(q++), VAE(p++)) where the upper layer's Fisher is "
                     "not larger", +1, "share", _paired(FEED_FORWARD, _pair_share("fisher_decreases")), level=0.5),)),
    Claim("prop3-skip-adds",
          "Proposition 3 (eq. 10): a layer receiving a skip connection carries more Fisher information than "
          "the same weights without it.",
          "Sec. 5, Proposition 3", "table1", (
              Effect("mean over skip-receiving layers (SCVAE, SCVAE-L) of log10(Fisher skips on / off)", +1,
                     "log10_fisher", _paired(SKIP_MODELS, lambda r, *e: Est(float(np.mean(x)))
                                             if (x := _skip_log_ratios(*e)) else None)),
              # eq. 10 is for every such layer: its smallest ratio must exceed 1 too.
              Effect("smallest over skip-receiving layers (SCVAE, SCVAE-L) of log10(Fisher skips on / off)", +1,
                     "log10_fisher", _paired(SKIP_MODELS, lambda r, *e: Est(min(x))
                                             if (x := _skip_log_ratios(*e)) else None)))),
    Claim("table2-vamp", "SCVAE + VampPrior improves on VAE(1L) + VampPrior in both NLL and accuracy.",
          "Sec. 6.3, Table 2", "table2", (
              _diff("scvae+vamp", "vae-1l+vamp", -1, "nll", "NLL(SCVAE+VampPrior) − NLL(VAE(1L)+VampPrior)"),
              _diff("scvae+vamp", "vae-1l+vamp", +1, "acc", "Acc(SCVAE+VampPrior) − Acc(VAE(1L)+VampPrior)"))),
    Claim("table2-pixel", "SCVAE + PixelVAE improves on PixelVAE in both NLL and accuracy.",
          "Sec. 6.3, Table 2", "table2", (
              _diff("scvae+pixel", "pixelvae", -1, "nll", "NLL(SCVAE+PixelVAE) − NLL(PixelVAE)"),
              _diff("scvae+pixel", "pixelvae", +1, "acc", "Acc(SCVAE+PixelVAE) − Acc(PixelVAE)"))),
    Claim("pixelvae-encoder-negligible",
          "In PixelVAE the encoder's Fisher information is negligible next to the decoder's.",
          "Sec. 6.3, Fig. 5", "table2", (
              # "Negligible" read as: at least ten times smaller.
              Effect("log10(decoder / encoder Fisher) of PixelVAE", +1, "log10_fisher",
                     _paired(("pixelvae",), lambda r, e: None if (d := fisher_side(e, "decoder", r)) is None
                             or (c := fisher_side(e, "encoder", r)) is None else d - c), level=1.0),),
          fisher=True),
)

# Ours, not the paper's (issue 27): Skip-VAE's z-skips (Dieng et al. 2019, zoo.SKIPVAE) against the
# deep plain decoders they are meant to rescue, and against SCVAE's skips between hidden layers.
# Measured on the stage skipvae beside the Table 1 models of the same preset, by the same rule.
# Collapse is read as the literature since the paper reads it: I(x; z) under the aggregate
# posterior (diagnostics.py), with the SVM accuracy for what the code is good for.
OUR_CLAIMS: tuple[Claim, ...] = (
    Claim("zskip-no-collapse", "z-skips prevent the collapse of a deep plain decoder.",
          "ours (Skip-VAE, Dieng et al. 2019), not the paper's", "skipvae", (
              _diff("skipvae-p++", "vae-p++", +1, "mi", "MI(Skip-VAE(p++)) − MI(VAE(p++))"),
              _diff("skipvae-11l", "vae-11l", +1, "mi", "MI(Skip-VAE(11L)) − MI(VAE(11L))"),
              _diff("skipvae-11l", "vae-11l", +1, "acc", "Acc(Skip-VAE(11L)) − Acc(VAE(11L))")),
          ours=True, compares=("table1",)),
    # Two-sided (sign 0): the designs differ, in whichever direction; both are 11 layers a side.
    Claim("skips-vs-zskips", "SCVAE's skips and z-skips differ in NLL, MI and accuracy.",
          "ours (Skip-VAE, Dieng et al. 2019), not the paper's", "skipvae", (
              _diff("scvae", "skipvae-11l", 0, "nll", "NLL(SCVAE) − NLL(Skip-VAE(11L))"),
              _diff("scvae", "skipvae-11l", 0, "mi", "MI(SCVAE) − MI(Skip-VAE(11L))"),
              _diff("scvae", "skipvae-11l", 0, "acc", "Acc(SCVAE) − Acc(Skip-VAE(11L))")),
          ours=True, compares=("table1",)),
)


# Each claim in a few words, for the front page's one-screen table (every claim has one: tested).
SHORT = {
    "deg-q++": "Deeper encoder: better accuracy, worse NLL",
    "deg-p++": "Deeper decoder: better NLL, worse accuracy",
    "deg-deep": "Both sides deeper: worse at both",
    "fisher-depth-plain-decreases": "Without skips, Fisher falls with depth",
    "fisher-depth-skip-flat": "Skips keep Fisher near its shallow level",
    "fig3-enc-dec": "A deeper side drains the other side's Fisher",
    "scvae-vs-1l": "SCVAE beats VAE(1L) in NLL and accuracy",
    "scvae-best-both": "SCVAE is best of Table 1 in both",
    "scvae-l-between": "SCVAE-L's encoder Fisher lies between",
    "prop1-eq6": "Proposition 1 (eq. 6) within a factor 2",
    "prop1-remark2": "Remark 2: deeper layers hold less Fisher",
    "prop3-skip-adds": "Proposition 3: a skip adds Fisher",
    "table2-vamp": "SCVAE+VampPrior beats VAE(1L)+VampPrior",
    "table2-pixel": "SCVAE+PixelVAE beats PixelVAE",
    "pixelvae-encoder-negligible": "PixelVAE's encoder Fisher is negligible",
}


# ------------------------------------------------------------------------- judging

def judge_effect(effect: Effect, runs: Runs, reading: str = "model", borrowed: dict | None = None) -> dict:
    ests = effect.measure(runs, reading)
    seeds = sorted(ests)
    iv = interval([ests[s] for s in seeds], borrowed=borrowed, bounds=RANGES.get(effect.kind))
    threshold = THRESHOLDS[effect.kind][0]
    return {
        "label": effect.label, "kind": effect.kind, "threshold": threshold,
        "claimed": f"{CLAIMED[effect.sign]} {effect.level:g}", "sign": effect.sign, "level": effect.level,
        "seeds": seeds, "values": [ests[s].value for s in seeds], "ses": [ests[s].se for s in seeds],
        "paired": [ests[s].paired for s in seeds],
        **iv, "status": verdict(iv, effect.sign, effect.level, threshold),
    }


CLAIMED = {+1: ">", -1: "<", 0: "≠"}
KIND_NAMES = {"nll": "NLL", "acc": "accuracy", "log10_fisher": "Fisher", "slope": "slope", "share": "share",
              "mi": "MI"}


def parts_text(effects: list[dict]) -> str:
    """Each effect's verdict by its kind ('NLL inconclusive, accuracy no effect'), numbered where
    a claim has two effects of one kind: shown beside a claim's verdict, so that a combined
    label never hides an unresolved part."""
    kinds = [e["kind"] for e in effects]
    names = [KIND_NAMES[k] + (f" {kinds[:i + 1].count(k)}" if kinds.count(k) > 1 else "")
             for i, k in enumerate(kinds)]
    return ", ".join(f"{name} {e['status']}" for name, e in zip(names, effects))



def verdict_words(ev: dict) -> str:
    """A claim's verdict with its effects' ('contradicted (accuracy contradicted, NLL holds)'),
    shortened where every effect has the claim's verdict."""
    effects = ev["effects"]
    if all(e["status"] == ev["status"] for e in effects):
        return ev["status"] + (" (every effect)" if len(effects) > 1 else "")
    return f"{ev['status']} ({parts_text(effects)})"

def judge_claim(claim: Claim, runs: Runs, reading: str = "model", spreads: dict | None = None) -> dict:
    """A claim's effects measured on ``runs`` (model -> seed -> eval) under one reading; an effect
    of one seed borrows its between-seed spread from ``spreads`` ((claim, reading, index) -> spread)."""
    effects = [judge_effect(e, runs, reading, (spreads or {}).get((claim.id, reading, i)))
               for i, e in enumerate(claim.effects)]
    status = claim_verdict([e["status"] for e in effects])
    return {"id": claim.id, "statement": claim.statement, "where": claim.where, "reading": reading,
            "status": status, "summary": f"{status}: {parts_text(effects)}", "effects": effects}


# Where a single seed's effect borrows its between-seed spread: the same effect over three seeds
# under our protocol, at the longest budget first.
SPREAD_SOURCES = (("long", None), ("cpu", None))


def seed_spreads(results_dir: Path | str, dataset: str = DEFAULT_DATASET) -> dict[tuple[str, str, int], dict]:
    """(claim, reading, effect index) -> {"sd", "n", "source"}: the standard deviation across seeds
    of every effect measured with n >= 3 under our protocol (:data:`SPREAD_SOURCES`, first wins) on
    the same data set (a spread of MNIST is not lent to Fashion-MNIST)."""
    root = Path(results_dir).resolve()
    files = tuple((str(f), f.stat().st_mtime_ns) for preset, _ in SPREAD_SOURCES
                  for f in sorted(preset_dir(root, preset, dataset).glob("*/seed*/eval*.json")))
    return _seed_spreads(str(root), files, dataset)


@lru_cache(maxsize=8)
def _seed_spreads(results_dir: str, files: tuple, dataset: str) -> dict[tuple[str, str, int], dict]:
    """:func:`seed_spreads` for one state of the result files (``files``: paths and times)."""
    spreads: dict[tuple[str, str, int], dict] = {}
    for preset, epoch in SPREAD_SOURCES:
        evidence = {**verdict_evidence(results_dir, preset, OURS, epoch, borrow=False, dataset=dataset),
                    **(our_evidence(results_dir, preset, epoch, borrow=False) if dataset == DEFAULT_DATASET else {})}
        for cid, claim in evidence.items():
            at = default_epoch(preset, epoch)
            source = (f"our protocol, preset {preset}" + (f" epoch {at}" if at is not None else "")
                      + ("" if dataset == DEFAULT_DATASET else f", {dataset}"))
            for reading, judged in claim["readings"].items():
                for i, e in enumerate(judged["effects"]):
                    if e["n"] >= 3:
                        spreads.setdefault((cid, reading, i), {"sd": float(np.std(e["values"], ddof=1)),
                                                              "n": e["n"], "source": source})
    return spreads


def verdict_evidence(results_dir: Path | str, preset: str | None = None, twin: Twin | str = OURS,
                     epoch: int | None = None, borrow: bool = True,
                     dataset: str = DEFAULT_DATASET) -> dict[str, dict]:
    """Every claim of :data:`CLAIMS`, measured on the results of its stage.

    With a ``twin`` set (a :class:`~scvae_core.zoo.Twin` or its suffix) the Table 1 claims are
    measured again on its models and the other claims are left out. A Fisher claim's entry
    carries its verdict under each reading (``readings``); its own status is the model
    reading's. ``epoch`` picks one of the preset's within-run budgets (default: its last). An
    effect of one seed borrows the between-seed spread of :func:`seed_spreads` (``borrow``), or
    is not judged. ``dataset``: the runs of another data set than binarized MNIST, at ``preset``
    (a preset is then named: the book's choice of preset reads MNIST's runs).
    """
    twin = _twin(twin)
    if dataset != DEFAULT_DATASET and preset in (None, AUTO):
        raise ValueError(f"verdicts on {dataset}: name the preset (dataset={dataset!r} with preset={preset!r})")
    claims = [c for c in CLAIMS if not twin.suffix or c.stage == "table1"]
    by_stage: dict[str, tuple[str | None, int | None, Runs]] = {}
    for stage in {c.stage for c in claims}:
        p = resolve_preset(results_dir, twin.stage if twin.suffix else stage, preset)
        stages = get_preset(p).stages if p else {}
        models = stages.get(stage, ())
        if twin.suffix and stage == "table1" and not models:  # a preset that trains only the twins (converged)
            models = tuple(m.removesuffix(twin.suffix) for m in stages.get(twin.stage, ()))
        runs = collect(results_dir, p, [m + twin.suffix for m in models], epoch=epoch, dataset=dataset) if models else {}
        # the epoch the stage's runs are read at (a shorter stage stops early: long's depth sweep at 30)
        at = default_epoch(p, epoch, models[0] + twin.suffix if models else None) if p else None
        by_stage[stage] = (p, at, {m.removesuffix(twin.suffix) if twin.suffix else m: v
                                   for m, v in by_seed(runs).items()})
    return _judge_all(claims, by_stage, results_dir, twin, epoch, borrow, dataset)


def _judge_all(claims: list[Claim], by_stage: dict[str, tuple[str | None, int | None, Runs]],
               results_dir: Path | str, twin: Twin, epoch: int | None, borrow: bool,
               dataset: str = DEFAULT_DATASET) -> dict[str, dict]:
    single = any(len(seeds) == 1 for _, _, runs in by_stage.values() for seeds in runs.values())
    spreads = seed_spreads(results_dir, dataset) if borrow and single else {}
    evidence = {}
    for claim in claims:
        p, at, runs = by_stage[claim.stage]
        readings = {r: judge_claim(claim, runs, r, spreads) for r in claim.readings}
        evidence[claim.id] = {**readings["model"], "preset": p, "twin": twin.suffix, "epoch": at,
                              "readings": readings}
    return evidence


def compared_runs(results_dir: Path | str, stage: str, compares: tuple[str, ...], preset: str | None,
                  epoch: int | None = None) -> tuple[str | None, int | None, Runs]:
    """The preset, epoch and runs of ``stage`` and of the stages it is compared with, by model name
    without a twin suffix: a preset that trains a twin set's versions of the stage (converged: the
    ``-authors`` ones) compares them with that set's Table 1 models."""
    p = resolve_preset(results_dir, stage, preset)
    stages = get_preset(p).stages if p else {}
    models = stages.get(stage, ())
    if not models:
        return p, None, {}
    twin = twin_of(models[0])
    others = [m for s in compares for m in stages.get(twin.stage if twin.suffix and s == "table1" else s, ())]
    runs = collect(results_dir, p, [*models, *others], epoch=epoch)
    by_model = {m.removesuffix(twin_of(m).suffix): v for m, v in by_seed(runs).items()}
    return p, default_epoch(p, epoch, models[0]), by_model


def our_evidence(results_dir: Path | str, preset: str | None = None, epoch: int | None = None,
                 borrow: bool = True) -> dict[str, dict]:
    """Every claim of :data:`OUR_CLAIMS` (ours, not the paper's), measured and judged as
    :func:`verdict_evidence` judges the paper's; without results each is 'not measured'."""
    by_stage = {c.stage: compared_runs(results_dir, c.stage, c.compares, preset, epoch) for c in OUR_CLAIMS}
    return _judge_all(list(OUR_CLAIMS), by_stage, results_dir, OURS, epoch, borrow)


def _twin(twin: Twin | str) -> Twin:
    if isinstance(twin, Twin):
        return twin
    found = [t for t in (OURS, *TWINS) if t.suffix == twin]
    if not found:
        raise ValueError(f"unknown twin set {twin!r}; valid: {', '.join(repr(t.suffix) for t in (OURS, *TWINS))}")
    return found[0]


def budgets(results_dir: Path | str, presets=("cpu", "long", "paper")) -> list[tuple[str, int | None]]:
    """(preset, epoch) of every budget with results: cpu, each eval epoch of long, paper."""
    found = []
    for name in presets:
        p = get_preset(name)
        for epoch in p.eval_epochs or (None,):
            if collect(results_dir, name, p.stages.get("table1", ()), epoch=epoch).get("vae-1l"):
                found.append((name, epoch))
    return found


def budget_label(preset: str, epoch: int | None) -> str:
    p = get_preset(preset)
    return f"{preset}, epoch {epoch}" if epoch is not None else f"{preset} ({p.epochs} epochs max)"


def format_effect(e: dict) -> str:
    """'−5.07 [−6.1, −4.0] (n=3)': estimate, interval, seeds; 'not measured' without results."""
    if e["n"] == 0:
        return NOT_MEASURED
    digits = 4 if e["kind"] == "acc" else 2 if e["kind"] == "nll" else 3
    interval_text = "no interval" if math.isnan(e["low"]) else f"[{e['low']:.{digits}f}, {e['high']:.{digits}f}]"
    return f"{e['estimate']:+.{digits}f} {interval_text} (n={e['n']})"


def _pairing(e: dict) -> str:
    """How many seeds of an NLL or accuracy effect are paired over the same images or folds."""
    if e["kind"] not in DIFFS or not e["n"]:
        return ""
    return f"; paired in {sum(e['paired'])} of {e['n']} seeds"


def verdicts_markdown(evidence: dict[str, dict]) -> str:
    """The verdicts page's text: per claim, its verdict and every effect with its interval and
    per-seed values (lists, not tables: the book check reserves HTML tables for generated ones)."""
    lines = []
    for claim in evidence.values():
        lines.append(f"### {claim['statement']}\n")
        budget = "" if claim.get("epoch") is None else f" at epoch {claim['epoch']}"
        lines.append(f"*{claim['where']}* · results: preset **{md_text(claim['preset'] or 'none')}**{budget} · "
                     f"verdict: **{md_text(claim['summary'])}**\n")
        for reading, judged in claim["readings"].items():
            if len(claim["readings"]) > 1:
                lines.append(f"- reading *{reading}* ({READINGS[reading]}): **{judged['status']}**")
            for e in judged["effects"]:
                per_seed = ", ".join(f"seed {md_text(s)}: {v:.3g}" for s, v in zip(e["seeds"], e["values"])) or \
                    "no results"
                indent = "  " if len(claim["readings"]) > 1 else ""
                lines.append(f"{indent}- {e['label']} (claimed {e['claimed']}, threshold ±{e['threshold']:g}): "
                             f"{format_effect(e)}; {e['method']}{_pairing(e)} ({per_seed}) → {e['status']}")
        lines.append("")
    return "\n".join(lines)


def replicate_text(first: dict[str, dict], second: dict[str, dict], labels: tuple[str, str]) -> str:
    """Two budgets that train the same seeds for the same epochs (the cpu preset and the long
    preset's epoch 10) are replicate trainings, apart from rounding: does each effect's estimate
    at ``first`` fall inside its 95% interval at ``second``, and, as a point, on the same side of
    its threshold? Single-seed effects and the others are counted apart."""
    pairs = [(a, b) for cid in first.keys() & second.keys()
             for a, b in zip(first[cid]["effects"], second[cid]["effects"])
             if a["n"] and b["n"] and not math.isnan(b["low"])]
    if not pairs:
        return (f"No effect has a 95% interval at both {labels[0]} and {labels[1]}: one of them has not run, or ran "
                "one seed, which gives none.")

    def as_point(e):  # the verdict of the estimate alone, without its interval
        return verdict({"n": 1, "low": e["estimate"], "high": e["estimate"]}, e["sign"], e["level"], e["threshold"])

    def covered(group):  # how many first estimates lie inside the second interval
        return sum(b["low"] <= a["estimate"] <= b["high"] for a, b in group)

    several = [(a, b) for a, b in pairs if b["n"] > 1]
    single = [(a, b) for a, b in pairs if b["n"] == 1]
    lines = []
    if several:
        lines.append(f"- Effects over two or more seeds: {len(several)}. The {labels[0]} estimate lies inside the "
                     f"{labels[1]} 95% interval for {covered(several)}; the rule gives both budgets the same verdict "
                     f"for {sum(a['status'] == b['status'] for a, b in several)}.")
    if single:
        too_narrow = (": a single run's interval holds its estimator error, not the training's sensitivity to "
                      "rounding, and is too narrow for a verdict to rest on") if covered(single) < len(single) else ""
        lines.append(f"- Effects of a single seed: {len(single)}. The {labels[0]} estimate lies inside the {labels[1]} "
                     f"95% interval for {covered(single)}{too_narrow}. As points, the two estimates give the same "
                     f"verdict for {sum(as_point(a) == as_point(b) for a, b in single)}.")
    return "\n".join(lines)
