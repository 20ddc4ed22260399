"""claims.py: the interval (coverage on simulated seed sets), the verdict rule (every verdict
reachable), and the claims measured on fabricated result trees, under every Fisher reading."""
from __future__ import annotations

import math

import numpy as np
import pytest
from fake_results import write_eval, write_figures

from scvae_core.book import claims, tables, verdicts
from scvae_core.book.verdicts import CONTRADICTED, HOLDS, INCONCLUSIVE, NO_EFFECT, NOT_MEASURED, Est
from scvae_core.presets import get_preset
from scvae_core.results import RunPaths
from scvae_core.runs import DEPTH_MODEL
from scvae_core.zoo import TWINS

pytestmark = pytest.mark.unit

SEEDS = (0, 1, 2)


class TestInterval:
    """The rule on simulated seed sets: seed value = truth + an error shared by every seed (the same
    test images; sd se, known to the runs) + a seed effect (sd tau, unknown to them)."""

    @staticmethod
    def simulate(rng, n, tau, se):
        return rng.normal(0, se) + rng.normal(0, tau, n)

    @pytest.mark.parametrize("n, tau", [(3, 0.0), (3, 1.0), (3, 3.0), (5, 0.5), (2, 2.0)])
    def test_coverage_with_a_shared_error_and_a_seed_effect(self, n, tau):
        rng = np.random.default_rng(0)
        covered = 0
        for _ in range(1000):
            iv = verdicts.interval([Est(v, 1.0) for v in self.simulate(rng, n, tau, 1.0)])
            covered += iv["low"] <= 0 <= iv["high"]
        assert covered / 1000 >= 0.93, covered

    def test_dividing_the_shared_error_by_root_n_would_under_cover(self):
        """The error the seeds share does not average out: treating it as independent (the old rule's
        inverse-variance weights, se / sqrt(n)) covers far less than 95% when it dominates."""
        rng = np.random.default_rng(0)
        naive = 0
        for _ in range(1000):
            values = self.simulate(rng, 3, 0.1, 1.0)
            half = 1.96 * 1.0 / math.sqrt(3)
            naive += abs(values.mean()) <= half
        assert naive / 1000 < 0.80

    def test_one_seed_is_not_judged_without_a_spread_from_elsewhere(self):
        iv = verdicts.interval([Est(2.0, 0.5)])
        assert math.isnan(iv["low"]) and iv["estimate"] == 2.0 and "not judged" in iv["method"]
        assert verdicts.verdict(iv, +1, 0.0, 1.0) == verdicts.NOT_JUDGED
        # a spread measured with fewer than three seeds is not borrowed either
        assert math.isnan(verdicts.interval([Est(2.0, 0.5)], borrowed={"sd": 1.0, "n": 2, "source": "x"})["low"])

    def test_one_seed_with_a_borrowed_spread_covers_and_its_own_error_alone_does_not(self):
        """A seed effect present (tau = 2, se = 0.5), n = 1: the run's estimator error alone covers
        about 20% of the time; the spread borrowed from three other seeds of the same effect, 95%."""
        rng = np.random.default_rng(1)
        own = borrowed = 0
        for _ in range(1000):
            value = self.simulate(rng, 1, 2.0, 0.5)[0]
            own += abs(value) <= 1.96 * 0.5
            elsewhere = self.simulate(rng, 3, 2.0, 0.5)
            iv = verdicts.interval([Est(value, 0.5)],
                                   borrowed={"sd": float(np.std(elsewhere, ddof=1)), "n": 3, "source": "sim"})
            borrowed += iv["low"] <= 0 <= iv["high"]
        assert own / 1000 < 0.5 and borrowed / 1000 >= 0.93, (own, borrowed)

    def test_seeds_without_errors_give_the_student_t_interval(self):
        iv = verdicts.interval([Est(1.0), Est(2.0), Est(3.0)])
        half = 4.302653 * 1.0 / math.sqrt(3)
        assert (iv["low"], iv["high"]) == pytest.approx((2 - half, 2 + half), rel=1e-5)

    def test_seeds_that_agree_exactly_keep_their_shared_error(self):
        # two accuracies equal to the last digit once gave a zero-width interval
        iv = verdicts.interval([Est(-0.0084, 0.004), Est(-0.0084, 0.003)])
        half = 12.706205 * math.sqrt((0.004 ** 2 + 0.003 ** 2) / 2)
        assert (iv["low"], iv["high"]) == pytest.approx((-0.0084 - half, -0.0084 + half), rel=1e-5)

    def test_between_seed_spread_widens_the_interval(self):
        tight = verdicts.interval([Est(v, 0.1) for v in (1.0, 1.01, 0.99)])
        spread = verdicts.interval([Est(v, 0.1) for v in (0.0, 1.0, 2.0)])
        assert spread["high"] - spread["low"] > 5 * (tight["high"] - tight["low"])
        assert spread["tau"] == pytest.approx(1.0) and tight["tau"] == pytest.approx(0.01)

    def test_a_share_interval_is_cut_to_the_values_a_share_can_take_and_keeps_its_verdict(self):
        """Two seeds of a share (0.05 and 0.5): Student t on one degree of freedom reaches below 0
        and above 1; cut to [0, 1] it still straddles the claimed level, so the verdict is unchanged."""
        ests = [Est(0.05, 0.05), Est(0.5, 0.1)]
        raw, cut = verdicts.interval(ests), verdicts.interval(ests, bounds=verdicts.RANGES["share"])
        assert raw["low"] < 0 and raw["high"] > 1 and (cut["low"], cut["high"]) == (0.0, 1.0)
        assert cut["estimate"] == raw["estimate"] and cut["tau"] == raw["tau"]
        for level in (0.0, 0.5, 1.0):
            assert verdicts.verdict(cut, +1, level, 0.05) == verdicts.verdict(raw, +1, level, 0.05)
        # an interval inside the range is left alone
        inside = [Est(0.4, 0.01), Est(0.45, 0.01), Est(0.5, 0.01)]
        assert verdicts.interval(inside, bounds=(0.0, 1.0)) == verdicts.interval(inside)

    def test_cutting_can_never_change_a_verdict_of_the_book(self):
        """The verdict compares the interval with level ± threshold only; if that band lies strictly
        inside the range, cutting the interval to the range moves no comparison."""
        for e in (e for c in claims.CLAIMS for e in c.effects if e.kind in verdicts.RANGES):
            lo, hi = verdicts.RANGES[e.kind]
            delta = verdicts.THRESHOLDS[e.kind][0]
            assert lo < e.level - delta and e.level + delta < hi, e.label


class TestVerdictRule:
    @pytest.mark.parametrize("values, se, sign, level, threshold, expected", [
        ([3.0, 3.1, 2.9], 0.1, +1, 0.0, 1.0, HOLDS),  # clearly beyond +1
        ([-3.0, -3.1, -2.9], 0.1, +1, 0.0, 1.0, CONTRADICTED),  # clearly beyond -1 against the claim
        ([3.0, 3.1, 2.9], 0.1, -1, 0.0, 1.0, CONTRADICTED),  # the same numbers, claimed below
        ([0.1, -0.1, 0.0], 0.05, +1, 0.0, 1.0, NO_EFFECT),  # inside +-1
        ([0.5, 2.5, 1.5], 0.1, +1, 0.0, 1.0, INCONCLUSIVE),  # straddles the threshold
        ([1.6, 1.5, 1.4], 0.05, +1, 1.0, 0.1, HOLDS),  # a claimed level other than 0
        ([], 0.1, +1, 0.0, 1.0, NOT_MEASURED),
    ])
    def test_constructed_cases_reach_each_verdict(self, values, se, sign, level, threshold, expected):
        iv = verdicts.interval([Est(v, se) for v in values])
        assert verdicts.verdict(iv, sign, level, threshold) == expected

    def test_one_seed_without_error_is_not_judged(self):
        assert verdicts.verdict(verdicts.interval([Est(5.0)]), +1, 0.0, 1.0) == verdicts.NOT_JUDGED

    def test_claim_rule(self):
        H, C, N, I, M = HOLDS, CONTRADICTED, NO_EFFECT, INCONCLUSIVE, NOT_MEASURED
        assert verdicts.claim_verdict([H, H]) == H
        assert verdicts.claim_verdict([H, C]) == C and verdicts.claim_verdict([M, C]) == C
        assert verdicts.claim_verdict([H, M]) == M
        assert verdicts.claim_verdict([H, N]) == N and verdicts.claim_verdict([I, N]) == N
        assert verdicts.claim_verdict([H, I]) == I

    def test_thresholds_cover_every_kind_used(self):
        kinds = {e.kind for c in claims.CLAIMS for e in c.effects}
        assert kinds <= set(verdicts.THRESHOLDS)


class TestClaimsOnResults:
    def test_table1_claims(self, tmp_path):
        # q++ vs 1L: acc +0.10 and NLL +5 in every seed -> holds; p++: NLL -5 but acc +0.001 -> no effect;
        # 11L: better than 1L in both -> contradicted.
        per_seed = {
            "vae-1l": [(90, 0.80), (91, 0.80), (92, 0.80)],
            "vae-q++": [(95, 0.90), (96, 0.90), (97, 0.90)],
            "vae-p++": [(85, 0.801), (86, 0.801), (87, 0.801)],
            "vae-11l": [(80, 0.95), (81, 0.95), (82, 0.95)],
        }
        for model, rows in per_seed.items():
            for seed, (nll, acc) in enumerate(rows):
                # fold spread 0.002: accuracies as precise as 5 folds of 10,000 images give
                write_eval(tmp_path, "cpu", model, seed, nll=nll, acc=acc, acc_std=0.002)
        evidence = claims.verdict_evidence(tmp_path, "cpu")
        assert list(evidence) == [c.id for c in claims.CLAIMS]
        assert evidence["deg-q++"]["status"] == HOLDS
        assert evidence["deg-p++"]["effects"][0]["status"] == HOLDS
        assert evidence["deg-p++"]["effects"][1]["status"] == NO_EFFECT
        assert evidence["deg-p++"]["status"] == NO_EFFECT
        assert evidence["deg-p++"]["summary"] == "no effect: NLL holds, accuracy no effect"  # no part hidden
        assert evidence["deg-deep"]["status"] == CONTRADICTED
        assert evidence["scvae-best-both"]["status"] == NOT_MEASURED  # SCVAE never ran
        nll_effect = evidence["deg-q++"]["effects"][1]
        assert nll_effect["values"] == pytest.approx([5.0, 5.0, 5.0]) and nll_effect["n"] == 3
        assert nll_effect["ses"] == pytest.approx([math.sqrt(0.02)] * 3)  # 0.1 each, in quadrature
        assert evidence["table2-vamp"]["status"] == NOT_MEASURED and evidence["deg-q++"]["preset"] == "cpu"

    def test_proposition_claims_read_the_derivations(self, tmp_path):
        pair = {"eq6_within_2x": True, "fisher_decreases": True}
        for model in ("vae-11l", "vae-q++", "vae-p++"):
            for seed in SEEDS:
                write_eval(tmp_path, "cpu", model, seed, prop1_pairs=[pair] * 10 + [{**pair, "eq6_within_2x": None}])
        layers = [{"receives_skip": True, "ratio": 2.0}, {"receives_skip": True, "ratio": 0.5},
                  {"receives_skip": False, "ratio": 0.1}]
        for model in ("scvae", "scvae-l"):
            write_eval(tmp_path, "cpu", model, 0, prop3_layers=layers)
        evidence = claims.verdict_evidence(tmp_path, "cpu")
        assert evidence["prop1-eq6"]["effects"][0]["values"] == [1.0, 1.0, 1.0]
        assert evidence["prop1-eq6"]["status"] == evidence["prop1-remark2"]["status"] == HOLDS
        mean_effect, min_effect = evidence["prop3-skip-adds"]["effects"]
        assert mean_effect["values"] == pytest.approx([0.0]) and min_effect["values"] == pytest.approx([math.log10(0.5)])
        assert evidence["prop3-skip-adds"]["status"] == verdicts.NOT_JUDGED  # one seed, no spread from elsewhere

    def test_depth_claims_under_each_reading(self, tmp_path):
        """Plain loses a decade per two layers and skip keeps its level, under the model and the
        authors' readings (with errors); the empirical reading was never recorded."""
        sweep = get_preset("cpu").stage_models("depth")
        for name in sweep:
            side, depth, kind = DEPTH_MODEL.match(name).groups()
            level = -2 - ((int(depth) - 1) / 2 if kind == "plain" else 0)
            sides = {"model": (level, 0.02), "encoder": (level, 0.02), "decoder": (level, 0.02)}
            for seed in SEEDS:
                write_eval(tmp_path, "cpu", name, seed, readings={"model": sides, "authors": sides})
        evidence = claims.verdict_evidence(tmp_path, "cpu")
        plain = evidence["fisher-depth-plain-decreases"]
        assert plain["effects"][0]["values"] == pytest.approx([-0.5] * 3)
        assert plain["readings"]["model"]["status"] == plain["readings"]["authors"]["status"] == HOLDS
        assert plain["readings"]["empirical"]["status"] == NOT_MEASURED
        assert evidence["fisher-depth-skip-flat"]["status"] == HOLDS
        # one depth of the encoder's plain sweep not evaluated yet: its slope waits for it
        for seed in SEEDS:
            RunPaths(tmp_path, "cpu", "enc05-plain", seed).eval_json.unlink()
        plain = claims.verdict_evidence(tmp_path, "cpu")["fisher-depth-plain-decreases"]
        assert plain["effects"][0]["n"] == 0 and plain["effects"][1]["values"] == pytest.approx([-0.5] * 3)
        assert plain["status"] == NOT_MEASURED

    def test_robust_summary_is_preferred_to_the_layer_mean(self, tmp_path):
        for seed in SEEDS:
            write_eval(tmp_path, "cpu", "pixelvae", seed, enc=1e-3, dec=1e5,  # a heavy tail moved the mean
                       readings={"model": {"encoder": (-3.0, 0.05), "decoder": (-2.5, 0.05)}})
        effect = claims.verdict_evidence(tmp_path, "cpu")["pixelvae-encoder-negligible"]["effects"][0]
        assert effect["values"] == pytest.approx([0.5] * 3)  # robust: decoder only 10^0.5 above the encoder
        assert effect["status"] == CONTRADICTED  # level 1 (ten times), interval 0.5 +- 0.14, threshold 0.1

    def test_nll_differences_are_paired_image_by_image_where_both_runs_stored_them(self, tmp_path):
        rng = np.random.default_rng(0)
        for seed in SEEDS:
            base = rng.normal(90, 10, 64)  # images differ by far more than the two models do
            scvae = base - 2 + rng.normal(0, 0.1, 64)
            write_eval(tmp_path, "cpu", "vae-1l", seed, nll=float(base.mean()))
            write_eval(tmp_path, "cpu", "scvae", seed, nll=float(scvae.mean()))
            write_figures(tmp_path, "cpu", "vae-1l", seed, nll_per_image=base)
            write_figures(tmp_path, "cpu", "scvae", seed, nll_per_image=scvae)
        effect = claims.verdict_evidence(tmp_path, "cpu")["scvae-vs-1l"]["effects"][0]
        assert effect["paired"] == [True] * 3
        assert all(se < 0.02 for se in effect["ses"])  # 0.1 / sqrt(64), not 0.1 * sqrt(2)
        assert effect["status"] == HOLDS and effect["estimate"] == pytest.approx(-2, abs=0.05)
        RunPaths(tmp_path, "cpu", "scvae", 2).figures_npz.unlink()  # a run without them: in quadrature
        effect = claims.verdict_evidence(tmp_path, "cpu")["scvae-vs-1l"]["effects"][0]
        assert effect["paired"] == [True, True, False] and effect["ses"][2] == pytest.approx(math.sqrt(0.02))

    def test_accuracy_differences_are_paired_fold_by_fold(self, tmp_path):
        for seed in SEEDS:
            write_eval(tmp_path, "cpu", "vae-1l", seed, acc=0.91, acc_std=0.02, fold_accs=[0.89, 0.91, 0.93])
            write_eval(tmp_path, "cpu", "scvae", seed, acc=0.93, acc_std=0.02, fold_accs=[0.91, 0.93, 0.95])
        effect = claims.verdict_evidence(tmp_path, "cpu")["scvae-vs-1l"]["effects"][1]
        assert effect["paired"] == [True] * 3 and effect["ses"] == pytest.approx([0.0] * 3)
        assert effect["estimate"] == pytest.approx(0.02) and effect["status"] == HOLDS

    def test_a_single_seed_borrows_the_spread_of_the_same_effect_over_three_seeds(self, tmp_path):
        """The authors' twins of one seed, beside our three seeds at the long preset's last epoch."""
        for seed, gap in zip(SEEDS, (-2.0, -3.0, -4.0)):  # between-seed SD 1
            write_eval(tmp_path, "long", "vae-1l", seed, nll=90, epoch=100)
            write_eval(tmp_path, "long", "scvae", seed, nll=90 + gap, epoch=100)
        write_eval(tmp_path, "long", "vae-1l-authors", 0, nll=90, epoch=100)
        write_eval(tmp_path, "long", "scvae-authors", 0, nll=85, epoch=100)
        effect = claims.verdict_evidence(tmp_path, "long", "-authors")["scvae-vs-1l"]["effects"][0]
        assert "borrowed from our protocol, preset long epoch 100 (n = 3)" in effect["method"]
        half = 4.302653 * math.sqrt(1.0 + 0.02)  # t(2) with the borrowed SD and the run's own error
        assert (effect["low"], effect["high"]) == pytest.approx((-5 - half, -5 + half), rel=1e-5)
        assert effect["status"] == INCONCLUSIVE
        unborrowed = claims.verdict_evidence(tmp_path, "long", "-authors", borrow=False)["scvae-vs-1l"]
        assert unborrowed["effects"][0]["status"] == unborrowed["status"] == verdicts.NOT_JUDGED

    @pytest.mark.parametrize("twin", TWINS, ids=lambda t: t.stage)
    def test_claims_are_judged_again_on_each_twin_set(self, tmp_path, twin):
        # ours: VAE(11L) worse than VAE(1L); the twins: better. The verdicts must follow.
        for seed in SEEDS:
            write_eval(tmp_path, "cpu", "vae-1l", seed, nll=90, acc=0.9)
            write_eval(tmp_path, "cpu", "vae-11l", seed, nll=200, acc=0.1)
            write_eval(tmp_path, "cpu", "vae-1l" + twin.suffix, seed, nll=90, acc=0.9)
            write_eval(tmp_path, "cpu", "vae-11l" + twin.suffix, seed, nll=80, acc=0.95)
        ours, twins = claims.verdict_evidence(tmp_path, "cpu"), claims.verdict_evidence(tmp_path, "cpu", twin)
        assert ours["deg-deep"]["status"] == HOLDS and twins["deg-deep"]["status"] == CONTRADICTED
        assert set(twins) == {c.id for c in claims.CLAIMS if c.stage == "table1"}
        assert claims.verdict_evidence(tmp_path, "cpu", twin.suffix)["deg-deep"]["status"] == CONTRADICTED

    def test_within_run_budgets_are_judged_separately(self, tmp_path):
        for seed in SEEDS:
            for epoch, gap in ((10, 0.0), (30, 3.0), (100, 10.0)):
                write_eval(tmp_path, "long", "vae-1l", seed, nll=90 + seed, epoch=epoch)
                write_eval(tmp_path, "long", "vae-11l", seed, nll=90 + seed + gap, epoch=epoch)
        status = {e: claims.verdict_evidence(tmp_path, "long", epoch=e)["deg-deep"]["effects"][0]["status"]
                  for e in (10, 30, 100)}
        assert status == {10: NO_EFFECT, 30: HOLDS, 100: HOLDS}
        assert claims.verdict_evidence(tmp_path, "long")["deg-deep"]["epoch"] == 100
        assert ("long", 30) in claims.budgets(tmp_path)


class TestReplicateBudgets:
    @staticmethod
    def effect(n, estimate, half, status=HOLDS):
        low, high = (math.nan, math.nan) if half is None else (estimate - half, estimate + half)
        return {"n": n, "estimate": estimate, "low": low, "high": high, "sign": +1, "level": 0.0,
                "threshold": 1.0, "status": status}

    def test_estimates_are_checked_against_the_replicates_interval_seeds_and_single_runs_apart(self):
        first = {"a": {"effects": [self.effect(3, 5.0, 2.0), self.effect(3, 0.5, 1.0, INCONCLUSIVE)]},
                 "b": {"effects": [self.effect(1, 4.0, None), self.effect(1, 3.0, None)]},
                 "gone": {"effects": [self.effect(0, math.nan, None, NOT_MEASURED)]}}
        second = {"a": {"effects": [self.effect(3, 6.0, 2.0), self.effect(3, 1.8, 1.0)]},
                  "b": {"effects": [self.effect(1, 9.0, 0.1), self.effect(1, -3.0, 0.1, CONTRADICTED)]},
                  "gone": {"effects": [self.effect(3, 2.0, 0.5)]}}
        text = claims.replicate_text(first, second, ("cpu", "long, epoch 10"))
        # 5 lies in [4, 8], 0.5 not in [0.8, 2.8]; their verdicts: holds and holds, inconclusive and holds
        assert ("Effects over two or more seeds: 2. The cpu estimate lies inside the long, epoch 10 95% interval "
                "for 1; the rule gives both budgets the same verdict for 1.") in text
        # 4 not in [8.9, 9.1], 3 not in [-3.1, -2.9]; as points: holds/holds, holds/contradicted
        assert "Effects of a single seed: 2. The cpu estimate lies inside the long, epoch 10 95% interval for 0: " \
               "a single run's interval holds its estimator error" in text
        assert "As points, the two estimates give the same verdict for 1." in text
        assert claims.replicate_text({}, second, ("x", "y")) == (
            "No effect has a 95% interval at both x and y: one of them has not run, or ran one seed, which gives none.")


class TestVerdictsTable:
    def test_one_row_per_claim_and_reading_one_column_per_result_set(self, tmp_path):
        twin = TWINS[0]
        for seed in SEEDS:
            for model in ("vae-1l", "vae-11l"):
                write_eval(tmp_path, "cpu", model, seed)
                write_eval(tmp_path, "cpu", model + twin.suffix, seed)
        t = tables.build_table("verdicts", tmp_path, None)
        assert t.columns == ("Claim", "In the paper", "tanh, default init: cpu (10 epochs)",
                             f"{twin.label}: cpu (10 epochs)")
        expected = sum(len(c.readings) for c in claims.CLAIMS)
        assert len(t.rows) == expected
        names = [r[0] for r in t.rows]
        assert "fig3-enc-dec [authors]" in names and "deg-deep" in names
        deep = t.rows[names.index("deg-deep")]
        assert deep[2].startswith("no effect: ") and "(n=3)" in deep[2]
        assert t.rows[names.index("table2-vamp")][3] == "—"  # twin sets rerun Table 1 only
        assert tables.verdicts_table(tmp_path) == t  # what the book check rebuilds
