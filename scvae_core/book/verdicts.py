"""The verdict rule: an effect's interval over seeds and its verdict against a practical
threshold. Statistics only; which effects exist and what they claim is :mod:`scvae_core.book.claims`."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

HOLDS, CONTRADICTED, NO_EFFECT, INCONCLUSIVE, NOT_JUDGED, NOT_MEASURED = (
    "holds", "contradicted", "no effect", "inconclusive", "not judged", "not measured")
VERDICTS = (HOLDS, CONTRADICTED, NO_EFFECT, INCONCLUSIVE, NOT_JUDGED, NOT_MEASURED)
LEVEL = 0.95

# kind -> (threshold, unit, why). An effect inside +-threshold is too small to matter whatever
# its sign; the interval must clear it to count as an effect.
THRESHOLDS: dict[str, tuple[float, str, str]] = {
    "nll": (1.0, "nats", "improvements the VAE literature reports on binarized MNIST (a new prior, a deeper "
            "model) are whole nats; below one nat, the choice of estimator and of S moves a result as much"),
    "acc": (0.01, "accuracy (1 percentage point)", "a 10,000-image test set gives a binomial standard error "
            "of about 0.2 percentage points at 95% accuracy; 1 point is the smallest gain a reader would act on"),
    "log10_fisher": (0.1, "log10 (a factor 1.26)", "the paper's Fisher claims are about orders of magnitude "
                     "(Figures 2, 3 and 5 use log axes); a quarter more or less information is no decay"),
    "slope": (0.01, "log10 per layer", "0.1 in log10 over the ten layers a deepened side adds"),
    "share": (0.05, "share of layer pairs", "one pair in twenty"),
    "mi": (0.5, "nats", "I(x; z) under the aggregate posterior of 10,000 test images cannot exceed log N = 9.2 "
           "nats and is biased low near that ceiling; half a nat (a factor 1.65 in how many inputs the code tells "
           "apart) is the smallest change we read as more or less information (our choice: the paper has no MI)"),
}

# kind -> the values its effect can take, where bounded. The true value lies inside, so cutting an
# interval to it keeps its coverage (a t interval of a share at n = 2 reached -1.03 and 1.58).
RANGES: dict[str, tuple[float, float]] = {"share": (0.0, 1.0)}

RULE = (
    "Each effect is a number per seed, with the run's own estimator error where it records one (the standard "
    "error over test images of the two models' NLLs, paired image by image where both runs stored every image's "
    "estimate, else the two errors in quadrature; of the SVM accuracy difference over the same five folds; the "
    "bootstrap over Fisher points or minibatches). Every seed evaluates the same test images, so that error is "
    "shared by the seeds and does not shrink with their number: with n ≥ 2 seeds the estimate is the mean over "
    "seeds and its 95% interval is Student t on n − 1 degrees of freedom with the standard error "
    "√(s²/n + mean SE²), s the standard deviation across seeds (s/√n alone where the runs recorded no error). "
    "**One seed is not a verdict**: with n = 1 the interval borrows the between-seed standard deviation of the "
    "same effect measured with n ≥ 3 elsewhere in the book (named beside it), t on that measurement's n − 1 "
    "degrees of freedom with √(s² + SE²); where no such measurement exists the effect is **not judged**. "
    "Against the practical threshold δ of its kind, in the claimed direction: **holds** if the whole interval is "
    "beyond +δ, **contradicted** if beyond −δ, **no effect** if inside ±δ, **inconclusive** otherwise, **not "
    "measured** without results; an effect claimed to differ either way (ours only) **holds** if the whole "
    "interval is beyond +δ or beyond −δ. An interval of a share is cut to [0, 1], the values a share can take. "
    "A claim is contradicted if any effect is; else not measured if any effect is; else not judged if any "
    "effect is; else holds if every effect holds; else no effect if any effect shows none; else inconclusive. Its verdict is always shown with its effects' verdicts beside it."
)


@dataclass(frozen=True)
class Est:
    """One seed's value of an effect, with the run's own standard error (None: not recorded)."""

    value: float
    se: float | None = None
    paired: bool = False  # se is that of differences taken image by image (or fold by fold)

    def __sub__(self, other: Est) -> Est:
        return Est(self.value - other.value, add_se(self.se, other.se))

    def __add__(self, other: Est) -> Est:
        return Est(self.value + other.value, add_se(self.se, other.se))


def add_se(*ses: float | None) -> float | None:
    """Independent errors add in quadrature (two runs' NLLs on the same test images are positively
    correlated, so this overstates the error of their difference: a conservative choice, used only
    where the runs did not store what a paired error needs)."""
    return None if any(s is None for s in ses) else math.sqrt(sum(s * s for s in ses))


# ------------------------------------------------------------------------- the interval

def interval(ests: list[Est], level: float = LEVEL, borrowed: dict | None = None,
             bounds: tuple[float, float] | None = None) -> dict:
    """Estimate and ``level`` interval over seeds (see :data:`RULE`). ``borrowed`` (for n = 1):
    ``{"sd", "n", "source"}``, the between-seed spread of the same effect measured elsewhere;
    ``bounds``: the values the effect can take (:data:`RANGES`), which the interval is cut to."""
    out = _interval(ests, level, borrowed)
    if bounds is not None and not math.isnan(out["low"]):
        out.update(low=max(out["low"], bounds[0]), high=min(out["high"], bounds[1]))
    return out


def _interval(ests: list[Est], level: float, borrowed: dict | None) -> dict:
    n = len(ests)
    values = np.array([e.value for e in ests], dtype=float)
    out = {"n": n, "estimate": math.nan, "low": math.nan, "high": math.nan, "method": "none"}
    if n == 0:
        return out
    ses = [e.se for e in ests]
    known = all(s is not None for s in ses)
    shared = float(np.mean(np.square(ses))) if known else 0.0  # the within-run error every seed shares
    out["estimate"] = float(values.mean())
    if n == 1:
        if borrowed is None or borrowed["n"] < 3:
            out["method"] = "n = 1: not judged (no between-seed spread of this effect measured with n ≥ 3)"
            return out
        se = math.sqrt(borrowed["sd"] ** 2 + shared)
        half = st.t.ppf((1 + level) / 2, borrowed["n"] - 1) * se
        out.update(low=out["estimate"] - half, high=out["estimate"] + half, tau=borrowed["sd"],
                   method=f"n = 1: between-seed SD {borrowed['sd']:.3g} borrowed from {borrowed['source']} "
                          f"(n = {borrowed['n']}), t({borrowed['n'] - 1})")
        return out
    sd = float(values.std(ddof=1))
    se = math.sqrt(sd * sd / n + shared)
    half = st.t.ppf((1 + level) / 2, n - 1) * se
    out.update(low=out["estimate"] - half, high=out["estimate"] + half, tau=sd,
               method=f"n = {n}: mean over seeds, t({n - 1}), shared within-run error"
                      + ("" if known else " not recorded: seeds only"))
    return out


def verdict(iv: dict, sign: int, level: float, threshold: float) -> str:
    """An effect's verdict from its interval (see :data:`RULE`)."""
    if iv["n"] == 0:
        return NOT_MEASURED
    if math.isnan(iv["low"]):
        return NOT_JUDGED if iv["n"] == 1 else INCONCLUSIVE
    if sign == 0:  # a claimed difference, in either direction: nothing contradicts it but no effect
        lo, hi = iv["low"] - level, iv["high"] - level
        if lo > threshold or hi < -threshold:
            return HOLDS
        return NO_EFFECT if -threshold <= lo and hi <= threshold else INCONCLUSIVE
    lo, hi = sorted((sign * (iv["low"] - level), sign * (iv["high"] - level)))
    if lo > threshold:
        return HOLDS
    if hi < -threshold:
        return CONTRADICTED
    if -threshold <= lo and hi <= threshold:
        return NO_EFFECT
    return INCONCLUSIVE


def claim_verdict(verdicts: list[str]) -> str:
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    if NOT_MEASURED in verdicts:
        return NOT_MEASURED
    if NOT_JUDGED in verdicts:
        return NOT_JUDGED
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    return NO_EFFECT if NO_EFFECT in verdicts else INCONCLUSIVE


def thresholds_markdown() -> str:
    """The one table of practical thresholds, as a list (lists: the book check reserves HTML tables for generated ones)."""
    return "\n".join(f"- **{kind}**: δ = {t:g} {unit}; {why}." for kind, (t, unit, why) in THRESHOLDS.items())
