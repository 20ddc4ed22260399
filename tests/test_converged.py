"""The `converged` preset: the authors' protocol trained as they trained it (issue 25): AdamNormGrad,
KL warm-up by epoch, early stopping after the warm-up, one final evaluation with every test image's
estimate stored; and the committed results of other presets keep their meaning."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scvae_core import train
from scvae_core.presets import (TRAINING_FIELDS, changed_settings, get_preset, run_preset)
from scvae_core.results import RunPaths, read_json, read_npz
from scvae_core.zoo import get_config

REPO_ROOT = Path(__file__).resolve().parent.parent


class TestGradientNormalisation:
    pytestmark = pytest.mark.unit

    def test_each_tensor_is_divided_by_its_norm_as_computed_by_hand(self):
        a = torch.nn.Parameter(torch.zeros(2))
        b = torch.nn.Parameter(torch.zeros(2, 2))
        c = torch.nn.Parameter(torch.zeros(3))  # no gradient: left alone
        a.grad = torch.tensor([3.0, 4.0])  # norm 5
        b.grad = torch.tensor([[0.0, 0.0], [0.0, 0.0]])  # norm 0: stays 0, no division by zero
        train.normalize_gradients([a, b, c])
        assert torch.allclose(a.grad, torch.tensor([3.0, 4.0]) / (5 + 1e-7), rtol=0, atol=1e-9)
        assert torch.equal(b.grad, torch.zeros(2, 2)) and c.grad is None

    def test_a_converged_step_hands_adam_unit_norm_gradients_and_a_long_step_does_not(self, tmp_path):
        seen = {}
        for name in ("converged", "long"):
            preset = run_preset(name, "vae-1l-authors")
            run = train._Run(RunPaths(tmp_path, name, "vae-1l-authors", 0), get_config("vae-1l-authors"), preset,
                             torch.device("cpu"))
            adam_step = run.opt.step
            run.opt.step = lambda: (seen.__setitem__(name, [p.grad.norm().item() for p in run.model.parameters()]),
                                    adam_step())
            torch.manual_seed(0)
            run.step((torch.rand(8, 784) < 0.3).float(), n_batches=500)
        assert seen["converged"] == pytest.approx([1.0] * len(seen["converged"]), abs=1e-5)
        assert max(abs(n - 1) for n in seen["long"]) > 0.1


class TestWarmupAndSettings:
    pytestmark = pytest.mark.unit

    def test_warmup_by_epoch_holds_beta_for_a_whole_epoch(self):
        converged, long = get_preset("converged"), get_preset("long")
        assert [train.preset_kl_weight(converged, e, 0, 500) for e in (0, 0, 49, 99, 150)] == [0.01, 0.01, 0.5, 1, 1]
        assert train.preset_kl_weight(converged, 0, 499, 500) == 0.01  # the epoch's last step as its first
        # by step, as every earlier preset trained: 3 warm-up epochs of 500 steps
        assert train.preset_kl_weight(long, 1, 750, 500) == 0.5

    def test_the_protocol(self):
        p = run_preset("converged", "scvae-authors")
        assert (p.optimizer, p.lr, p.warmup_by, p.warmup_epochs, p.patience, p.epochs, p.batch_size) == \
            ("adam-normgrad", 1e-3, "epoch", 100, 50, 2000, 100)
        assert p.test_size is None and p.nll_samples_at(None, 1) == 1000 and p.nll_samples_at(None, 0) == 5000
        assert p.stages["authors"][:2] == ("vae-1l-authors", "scvae-authors")  # the headline pair first

    def test_committed_results_of_other_presets_keep_their_meaning(self):
        """The new training fields count with their defaults in files written before them."""
        checked = 0
        for path in sorted((REPO_ROOT / "results").glob("*/*/seed*/train.json")):
            doc = json.loads(path.read_text())
            preset = run_preset(doc["preset"], doc["model"])
            assert not changed_settings(doc["preset_config"], preset, TRAINING_FIELDS), path
            checked += 1
        assert checked >= 50  # the cpu and long runs are committed


@pytest.fixture(scope="module")
def converged_results(tmp_path_factory, data_dir) -> Path:
    """`scvae reproduce all --preset smoke-converged`, as a reader runs it."""
    out = tmp_path_factory.mktemp("converged")
    cmd = [sys.executable, "-m", "scvae_core.cli", "reproduce", "all", "--preset", "smoke-converged", "--device",
           "cpu", "--results-dir", str(out), "--data-dir", str(data_dir), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


@pytest.mark.smoke
class TestSmokeConverged:
    @pytest.mark.parametrize("model", ["vae-1l-authors", "scvae-authors"])
    def test_trains_with_the_protocol_and_records_where_and_why_it_stopped(self, converged_results, model):
        paths = RunPaths(converged_results, "smoke-converged", model, 0)
        doc = read_json(paths.train_json, "train")
        assert doc["stopped"] in ("early_stopping", "max_epochs")
        assert doc["preset_config"]["optimizer"] == "adam-normgrad"
        assert [h["beta"] for h in doc["history"]][:3] == [0.5, 1.0, 1.0]  # warm-up of 2 epochs, by epoch
        if doc["stopped"] == "early_stopping":  # patience 1, counted after the warm-up
            assert doc["epochs_run"] == max(doc["best_epoch"], 2) + 1 < 6
        assert doc["best_valid_elbo"] == max(h["valid_elbo"] for h in doc["history"])

    def test_the_evaluation_stores_every_test_images_estimate(self, converged_results):
        paths = RunPaths(converged_results, "smoke-converged", "scvae-authors", 0)
        ev = read_json(paths.eval_json, "eval")
        arrays = read_npz(paths.figures_npz)
        per_image, index = arrays["nll_per_image"], arrays["nll_test_index"]
        assert per_image.shape == index.shape == (ev["metrics"]["test_size"],)
        assert np.isclose(per_image.mean(), ev["metrics"]["nll"], rtol=0, atol=1e-9)
        assert ev["metrics"]["nll_samples"] == 12  # seed 0: the estimator check's S
