"""The verdict rule: an effect's interval over seeds and its verdict against a practical
threshold. Statistics only; which effects exist and what they claim is :mod:`scvae_core.claims`."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

HOLDS, CONTRADICTED, NO_EFFECT, INCONCLUSIVE, NOT_MEASURED = (
    "holds", "contradicted", "no effect", "inconclusive", "not measured")
VERDICTS = (HOLDS, CONTRADICTED, NO_EFFECT, INCONCLUSIVE, NOT_MEASURED)
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
}

RULE = (
    "Each effect is a number per seed: its estimate is the random-effects mean over seeds, weighted by each "
    "run's own estimator error (standard error of the NLL over test images, of the SVM accuracy over folds, "
    "bootstrap over Fisher points or minibatches; DerSimonian-Laird between-seed variance), and its 95% "
    "interval is the Hartung-Knapp interval with Student t on n − 1 degrees of freedom, which widens with the "
    "observed spread across seeds, or the DerSimonian-Laird normal interval where that is wider (seeds that "
    "agree by chance must not make an interval narrower than their own errors). With n = 1 seed the interval "
    "holds only that run's estimator error (normal quantile), and without a recorded estimator error it cannot "
    "be formed. Against the practical threshold δ of its kind, in the claimed direction: **holds** if the whole"
    " interval is beyond +δ, **contradicted** if beyond −δ, **no effect** if inside ±δ, **inconclusive** "
    "otherwise, **not measured** without results. A claim is contradicted if any effect is; else not measured "
    "if any effect is; else holds if every effect holds; else no effect if any effect shows none; else "
    "inconclusive."
)


@dataclass(frozen=True)
class Est:
    """One seed's value of an effect, with the run's own standard error (None: not recorded)."""

    value: float
    se: float | None = None

    def __sub__(self, other: Est) -> Est:
        return Est(self.value - other.value, add_se(self.se, other.se))

    def __add__(self, other: Est) -> Est:
        return Est(self.value + other.value, add_se(self.se, other.se))


def add_se(*ses: float | None) -> float | None:
    """Independent errors add in quadrature (two runs' NLLs on the same test images are positively
    correlated, so this overstates the error of their difference: a conservative choice)."""
    return None if any(s is None for s in ses) else math.sqrt(sum(s * s for s in ses))


# ------------------------------------------------------------------------- the interval

def interval(ests: list[Est], level: float = LEVEL) -> dict:
    """Estimate and ``level`` interval over seeds: random-effects mean (DerSimonian-Laird) with
    the Hartung-Knapp-Sidik-Jonkman interval for n >= 2, never narrower than the DerSimonian-Laird
    one; the run's own error for n = 1."""
    n = len(ests)
    values = np.array([e.value for e in ests], dtype=float)
    out = {"n": n, "estimate": math.nan, "low": math.nan, "high": math.nan, "method": "none"}
    if n == 0:
        return out
    ses = [e.se for e in ests]
    known = all(s is not None and s > 0 for s in ses)
    if n == 1:
        out["estimate"] = float(values[0])
        if known:
            half = st.norm.ppf((1 + level) / 2) * ses[0]
            out.update(low=float(values[0] - half), high=float(values[0] + half),
                       method="n = 1: the run's estimator error only")
        else:
            out["method"] = "n = 1 and no estimator error recorded: no interval"
        return out
    var = np.array([s * s for s in ses]) if known else np.zeros(n)
    w = 1 / var if known else np.ones(n)
    fixed = float(np.sum(w * values) / np.sum(w))
    q = float(np.sum(w * (values - fixed) ** 2))
    tau2 = max(0.0, (q - (n - 1)) / (np.sum(w) - np.sum(w * w) / np.sum(w))) if known else 0.0
    w = 1 / (var + tau2) if known else np.ones(n)
    mean = float(np.sum(w * values) / np.sum(w))
    hk = float(np.sum(w * (values - mean) ** 2) / ((n - 1) * np.sum(w)))
    half = st.t.ppf((1 + level) / 2, n - 1) * math.sqrt(hk)
    if known:  # seeds that agree by chance (two accuracies 0.0084 apart in both) give hk ~ 0: take the
        # wider of this and the DerSimonian-Laird normal interval, as Jackson et al. (2017) advise
        half = max(half, st.norm.ppf((1 + level) / 2) / math.sqrt(float(np.sum(w))))
    out.update(estimate=mean, low=mean - half, high=mean + half, tau=math.sqrt(tau2),
               method=f"n = {n}: random effects, Hartung-Knapp t({n - 1})"
                      + ("" if known else " (no estimator errors recorded: seeds only)"))
    return out


def verdict(iv: dict, sign: int, level: float, threshold: float) -> str:
    """An effect's verdict from its interval (see :data:`RULE`)."""
    if iv["n"] == 0:
        return NOT_MEASURED
    if math.isnan(iv["low"]):
        return INCONCLUSIVE
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
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    return NO_EFFECT if NO_EFFECT in verdicts else INCONCLUSIVE


def thresholds_markdown() -> str:
    """The one table of practical thresholds, as a list (lists: the book check reserves HTML tables for generated ones)."""
    return "\n".join(f"- **{kind}**: δ = {t:g} {unit}; {why}." for kind, (t, unit, why) in THRESHOLDS.items())
