"""Within-run budgets (preset `long`: evaluated at epochs 10, 30 and 100 from one run) and the
authors' protocol twins (ReLU, He init, lr 1e-3), on the session's smoke-sized `smoke-long` runs."""
import shutil
from pathlib import Path

import pytest
import torch

from scvae_core import evaluate as ev
from scvae_core.presets import get_preset, run_preset
from scvae_core.runner.reproduce import run_status
from scvae_core.results import RunPaths, read_json
from scvae_core.runs import collect
from scvae_core.zoo import TABLE1, TWINS, build, get_config, twin_of

AUTHORS = next(t for t in TWINS if t.suffix == "-authors")


def weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.fixture
def long_run(smoke_results) -> Path:
    """The session's runs: vae-1l-authors under smoke-long (4 epochs, evaluated at 2 and 4)
    beside the same model and seed under smoke (2 epochs)."""
    return smoke_results


class TestWithinRunBudgets:
    @pytest.mark.smoke
    def test_the_first_epochs_of_a_long_run_are_the_short_run(self, long_run, smoke_results):
        short = RunPaths(smoke_results, "smoke", "vae-1l-authors", 0)
        long = RunPaths(long_run, "smoke-long", "vae-1l-authors", 0)
        a, b = weights(short.best_ckpt), weights(long.best_ckpt_at(2))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bitwise
        assert not all(torch.equal(a[k], v) for k, v in weights(long.best_ckpt_at(4)).items())

    @pytest.mark.smoke
    def test_each_budget_has_its_own_evaluation_with_its_epoch(self, long_run):
        paths = RunPaths(long_run, "smoke-long", "vae-1l-authors", 0)
        preset = get_preset("smoke-long")
        for epoch in preset.eval_epochs:
            doc = read_json(paths.eval_json_at(epoch), "eval")
            assert doc["epochs_trained"] == epoch and doc["epoch"] <= epoch
            assert doc["metrics"]["nll_samples"] == preset.nll_samples_at(epoch, 0)
            assert paths.figures_npz_at(epoch).exists()
        assert not paths.eval_json.exists()  # a long run has no undated eval.json
        # the estimator check: seed 0 gets its S at the last epoch, and the S of the others inside it
        last = read_json(paths.eval_json_at(4), "eval")["metrics"]
        assert last["nll_samples"] == 16 and "12" not in last["nll_by_samples"]  # nested counts only

    @pytest.mark.smoke
    def test_the_same_short_evaluation_is_the_cpu_comparable_one(self, long_run, smoke_results):
        short = read_json(RunPaths(smoke_results, "smoke", "vae-1l-authors", 0).eval_json, "eval")
        at2 = read_json(RunPaths(long_run, "smoke-long", "vae-1l-authors", 0).eval_json_at(2), "eval")
        assert short["metrics"]["nll_samples"] == at2["metrics"]["nll_samples"]
        assert short["metrics"]["nll"] == at2["metrics"]["nll"]  # same weights, same seeded estimator

    @pytest.mark.smoke
    def test_tables_read_a_chosen_budget(self, long_run):
        by_epoch = {e: collect(long_run, "smoke-long", ["vae-1l-authors"], epoch=e)["vae-1l-authors"]
                    for e in (2, 4)}
        assert [d["epochs_trained"] for d in by_epoch[2] + by_epoch[4]] == [2, 4]
        assert collect(long_run, "smoke-long", ["vae-1l-authors"])["vae-1l-authors"][0]["epochs_trained"] == 4
        with pytest.raises(ValueError, match="evaluates at epochs"):
            collect(long_run, "smoke-long", ["vae-1l-authors"], epoch=3)

    @pytest.mark.smoke
    def test_status_is_done_only_when_every_budget_is_evaluated(self, long_run, tmp_path):
        assert run_status(long_run, "smoke-long", "vae-1l-authors", 0) == "done"
        run = RunPaths(long_run, "smoke-long", "vae-1l-authors", 0).dir
        shutil.copytree(run, tmp_path / run.relative_to(long_run))  # changed on a copy
        RunPaths(tmp_path, "smoke-long", "vae-1l-authors", 0).eval_json_at(2).unlink()
        assert run_status(tmp_path, "smoke-long", "vae-1l-authors", 0) == "partial"

    @pytest.mark.unit
    def test_a_stage_may_train_shorter(self):
        assert run_preset("long", "enc05-plain").epochs == 30
        assert run_preset("long", "enc05-plain").eval_epochs == (10, 30)
        # epoch 30 of a 30-epoch stage is evaluated as epoch 30 of a 100-epoch run: S = 200, no check
        long, depth = get_preset("long"), run_preset("long", "enc05-plain")
        assert [depth.nll_samples_at(e, 0) for e in depth.eval_epochs] == [long.nll_samples] * 2
        assert run_preset("long", "vae-1l").nll_samples_at(100, 0) == long.check_nll_samples[0]
        assert run_preset("long", "vae-1l").eval_epochs == (10, 30, 100)

    @pytest.mark.smoke
    def test_an_epoch_the_preset_does_not_keep_is_refused(self, long_run, data_dir):
        with pytest.raises(ValueError, match="only at epochs"):
            ev.evaluate_run("vae-1l-authors", "smoke-long", 0, device="cpu", results_dir=long_run, data_dir=data_dir,
                            progress=False, epoch=3)


class TestAuthorsTwins:
    @pytest.mark.unit
    def test_every_table1_model_has_a_twin_in_its_stage(self):
        assert AUTHORS.models() == get_preset("cpu").stage_models("authors")
        for m in TABLE1:
            cfg = get_config(m + "-authors")
            assert (cfg.activation, cfg.init) == ("relu", "he")
            assert twin_of(m + "-authors") is AUTHORS

    @pytest.mark.unit
    def test_training_changes_live_with_the_twin(self):
        assert run_preset("cpu", "vae-1l-authors").lr == 1e-3
        assert run_preset("cpu", "vae-1l").lr == get_preset("cpu").lr == 5e-4

    @pytest.mark.smoke
    def test_the_run_records_the_lr_it_trained_with(self, smoke_results):
        doc = read_json(RunPaths(smoke_results, "smoke", "vae-1l-authors", 0).train_json, "train")
        assert doc["preset_config"]["lr"] == 1e-3

    @pytest.mark.unit
    def test_he_init_is_kaiming_normal_fan_in(self):
        torch.manual_seed(0)
        layer = build("vae-11l-authors").encoder.mlp.layers[3]
        std = layer.weight.std().item()
        assert abs(std - (2 / layer.in_features) ** 0.5) < 0.02 * std
        torch.manual_seed(0)
        default = build("vae-11l").encoder.mlp.layers[3].weight.std().item()
        assert default < 0.7 * std  # PyTorch's default: uniform with bound 1/sqrt(fan_in)

    @pytest.mark.smoke
    def test_every_new_evaluation_records_three_readings_and_the_robust_summary(self, smoke_results):
        doc = read_json(RunPaths(smoke_results, "smoke", "vae-1l-authors", 0).eval_json, "eval")
        assert doc["fisher"]["targets"] == "model" and doc["fisher_empirical"]["targets"] == "empirical"
        for side in ("encoder", "decoder", "model"):
            for block in ("fisher", "fisher_empirical"):
                assert {"log10_mean_of_points", "log10_se", "log10_ci", "median_log10"} <= set(doc[block]["sides"][side])
            assert doc["fisher_authors"][side]["with_first"]["value"] > 0
        assert doc["fisher_authors"]["encoder"]["strict"] is None  # one hidden layer: not defined
        assert doc["fisher_authors"]["batches"] == 3  # smoke has 3 training minibatches an epoch
