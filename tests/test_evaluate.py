"""Evaluation: the NLL estimator against an exact likelihood, the ELBO bound, active units,
the SVM, and a whole smoke-preset evaluate_run through the API and the CLI."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scvae_core import evaluate as ev
from scvae_core.models import VAE, ModelConfig
from scvae_core.presets import get_preset
from scvae_core.results import IMAGE_ARRAYS, NLL_ARRAYS, REPO_ROOT, TSNE_ARRAYS, ResultError, RunPaths, read_json, read_npz
from scvae_core.zoo import SKIPVAE, get_config



# --------------------------------------------------------------- estimator on an exact model

class LinearGaussian:
    """p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I): log p(x) is exact. The proposal q(z|x) is
    the exact posterior with its mean shifted and variances inflated, so it is NOT exact."""

    def __init__(self, d_x=5, d_z=2, s=0.5, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(d_x, d_z, generator=g, dtype=torch.float64)
        self.b = torch.randn(d_x, generator=g, dtype=torch.float64)
        self.s = s
        cov = torch.linalg.inv(torch.eye(d_z, dtype=torch.float64) + self.W.T @ self.W / s**2)
        self.post_cov = cov
        self.proposal_var = 1.5 * torch.diag(cov)

    def exact_log_px(self, x):
        cov = self.W @ self.W.T + self.s**2 * torch.eye(len(self.b), dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)

    def callables(self, x, generator):
        mean = (x - self.b) @ self.W @ self.post_cov / self.s**2 + 0.3  # (B, d_z), deliberately off
        q = torch.distributions.Normal(mean, self.proposal_var.sqrt())
        prior = torch.distributions.Normal(0.0, 1.0)

        def propose(n):
            z = mean + self.proposal_var.sqrt() * torch.randn((n, *mean.shape), generator=generator,
                                                                dtype=torch.float64)
            return z, q.log_prob(z).sum(-1)

        def log_joint(z):
            lik = torch.distributions.Normal(z @ self.W.T + self.b, self.s)
            return prior.log_prob(z).sum(-1) + lik.log_prob(x).sum(-1)

        return log_joint, propose


@pytest.mark.unit
def test_importance_estimate_converges_to_exact_log_px():
    model = LinearGaussian()
    g = torch.Generator().manual_seed(1)
    x = model.b + torch.randn(8, 5, generator=g, dtype=torch.float64)
    exact = model.exact_log_px(x)
    errors = {}
    for s in (1, 100, 50000):
        est = ev.importance_log_px(*model.callables(x, g), n_samples=s, chunk=10000)
        assert est.shape == (8,)
        errors[s] = (est - exact).abs().mean().item()
    assert errors[50000] < 0.02, errors  # Monte-Carlo error ~ 1/sqrt(S): about 0.009 here
    assert errors[50000] < errors[100] < errors[1], errors


def replayed_draws(n=300, chunk=7):
    """log_joint, n fixed proposal draws (z, log q), a propose() handing them out in order `chunk` at a
    time, and the original propose."""
    model = LinearGaussian()
    log_joint, propose = model.callables(model.b.expand(3, -1), torch.Generator().manual_seed(0))
    z, log_q = propose(n)
    starts = iter(range(0, n, chunk))

    def replay(k):
        i = next(starts)
        return z[i:i + k], log_q[i:i + k]

    return log_joint, z, log_q, replay, propose


@pytest.mark.unit
def test_chunks_combine_exactly():
    log_joint, z, log_q, replay, _ = replayed_draws()
    whole = torch.logsumexp(log_joint(z) - log_q, 0) - math.log(300)
    torch.testing.assert_close(ev.importance_log_px(log_joint, replay, n_samples=300, chunk=7), whole)


@pytest.mark.unit
def test_estimates_at_fewer_samples_are_those_of_the_first_samples():
    log_joint, z, log_q, replay, propose = replayed_draws()
    at = (1, 7, 8, 50, 300)  # 7 and 8 end and start a chunk of 7
    got = ev.importance_log_px(log_joint, replay, n_samples=300, chunk=7, at=at)
    log_w = log_joint(z) - log_q
    want = torch.stack([torch.logsumexp(log_w[:k], 0) - math.log(k) for k in at])
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="1..300"):
        ev.importance_log_px(log_joint, propose, n_samples=300, chunk=7, at=(301,))


# --------------------------------------------------------------- the VAE path

SMALL = dict(hidden=32, latent=4)


def small_vae(seed=0, **kw) -> VAE:
    torch.manual_seed(seed)
    return VAE(ModelConfig(**{**SMALL, **kw})).eval()


def binary_images(n, seed=0):
    return torch.bernoulli(torch.full((n, 784), 0.2), generator=torch.Generator().manual_seed(seed))


@pytest.mark.unit
def test_compiled_nll_matches_eager_and_falls_back_when_compiling_fails(monkeypatch):
    model, x = small_vae(), binary_images(8)
    def nll(compile):
        return ev.importance_nll(model, x, n_samples=32, generator=torch.Generator().manual_seed(0), compile=compile)
    eager = nll(False)
    torch.testing.assert_close(nll(True), eager, rtol=1e-5, atol=1e-4)

    def broken(fn):
        def fail(*args):
            raise RuntimeError("no C++ compiler")
        return fail
    monkeypatch.setattr(ev.torch, "compile", broken)
    with pytest.warns(UserWarning, match="torch.compile failed .*no C\\+\\+ compiler"):
        torch.testing.assert_close(nll(True), eager)


@pytest.mark.unit
def test_compiling_is_chosen_for_large_mlp_workloads_only():
    assert not ev.compiles_nll(small_vae(), ev.COMPILE_ROWS - 1)
    assert ev.compiles_nll(small_vae(), ev.COMPILE_ROWS)
    assert not ev.compiles_nll(small_vae(decoder="pixelcnn", pixel_layers=2, pixel_channels=4), 10**9)


@pytest.mark.unit
@pytest.mark.parametrize("kw", [{}, {"prior": "vamp", "pseudo_inputs": 5},
                                {"decoder": "pixelcnn", "pixel_layers": 2, "pixel_channels": 4}],
                         ids=["bernoulli", "vamp", "pixelcnn"])
def test_nll_is_below_negative_elbo(kw):
    model, x = small_vae(**kw), binary_images(16)
    nll = torch.stack([ev.importance_nll(model, x, n_samples=64, chunk=16, generator=torch.Generator().manual_seed(r))
                       for r in range(4)])  # (runs, B)
    assert nll.shape == (4, 16) and torch.isfinite(nll).all()
    torch.manual_seed(0)
    neg_elbo = torch.stack([-model.elbo(x)["elbo"] for _ in range(200)]).detach()  # (draws, B)
    gap = (neg_elbo.mean(0) - nll.mean(0)).mean().item()
    noise = 3 * math.sqrt((neg_elbo.var(0) / 200 + nll.var(0) / 4).sum().item()) / 16  # of the mean gap
    assert gap > -noise, (gap, noise)


@pytest.mark.unit
def test_bound_tightens_with_samples():
    model, x = small_vae(), binary_images(32)
    means = [np.mean([ev.importance_nll(model, x, s, generator=torch.Generator().manual_seed(r)).mean().item()
                      for r in range(3)]) for s in (1, 10, 100)]
    assert means[0] > means[1] > means[2], means


@pytest.mark.unit
def test_active_units_counts_varying_latent_means():
    model = small_vae(latent=6)
    with torch.no_grad():
        model.encoder.mu.weight[4:] = 0.0  # units 4 and 5: the same mean for every x
        model.encoder.mu.weight[:4] *= 20.0
    means = ev.posterior_means(model, binary_images(200))
    assert means.shape == (200, 6)
    assert ev.active_units(means) == 4
    assert ev.active_units(means, threshold=1e9) == 0


# --------------------------------------------------------------- SVM, figure helpers

@pytest.mark.unit
def test_svm_separable_clusters_near_perfect_and_random_labels_near_chance():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 40)
    centres = rng.normal(size=(10, 8)) * 10
    features = centres[labels] + rng.normal(size=(400, 8))
    res = ev.svm_accuracy(features, labels, folds=4, seed=0)
    assert res["mean"] > 0.97 and len(res["folds"]) == 4
    assert res["std"] == pytest.approx(np.std(res["folds"]))
    noise = ev.svm_accuracy(rng.normal(size=(400, 8)), rng.permutation(labels), folds=4, seed=0)
    assert 0.0 < noise["mean"] < 0.2


@pytest.mark.unit
def test_grid_shows_every_digit_first():
    labels = np.array([3, 3, 1, 0, 2, 1, 0, 9])
    assert ev.grid_indices(labels, 6).tolist() == [3, 2, 4, 0, 7, 1]


@pytest.mark.unit
def test_test_permutation_is_fixed_and_mixes_the_sorted_split():
    a = ev.permuted_test_indices()
    assert np.array_equal(a, ev.permuted_test_indices()) and sorted(a) == list(range(10000))
    assert a[:100].max() > 5000  # a prefix is not the (class-sorted) start of the split


# --------------------------------------------------------------- a whole run (smoke preset)

SMOKE = get_preset("smoke")
MODEL = "vae-1l"
METRICS = ("nll", "nll_se", "nll_samples", "nll_by_samples", "elbo", "rec", "kl", "test_size", "active_units", "au_threshold",
           "svm_acc", "svm_acc_std", "svm_fold_accs", "svm_size", "linear_probe_acc", "linear_probe_acc_std",
           "linear_probe_fold_accs")


@pytest.fixture
def smoke_run(smoke_results):
    """The session's smoke run of vae-1l, seed 0 (a figure seed), and its eval.json."""
    return smoke_results, ev.load_eval(smoke_results, "smoke", MODEL, 0)


def copy_trained(src: Path, dst: Path) -> RunPaths:
    """The trained run (train.json and checkpoints) of ``src`` under a new results root."""
    a, b = RunPaths(src, "smoke", MODEL, 0), RunPaths(dst, "smoke", MODEL, 0)
    shutil.copytree(a.dir / "checkpoints", b.dir / "checkpoints")
    shutil.copy2(a.train_json, b.train_json)
    return b


@pytest.mark.smoke
def test_evaluate_run_writes_complete_files(smoke_run, data_dir):
    results_dir, doc = smoke_run
    paths = RunPaths(results_dir, "smoke", MODEL, 0)
    assert (doc["model"], doc["preset"], doc["seed"]) == (MODEL, "smoke", 0)
    assert doc["preset_config"] == json.loads(json.dumps(SMOKE.to_dict()))
    assert set(doc["metrics"]) == set(METRICS)
    m = doc["metrics"]
    assert (m["test_size"], m["nll_samples"], m["svm_size"], len(m["svm_fold_accs"])) == (64, 8, 200, 2)
    assert 0 < m["nll"] <= -m["elbo"] + 5 * m["nll_se"]
    assert list(m["nll_by_samples"]) == ["1", "8"] and m["nll_by_samples"]["8"] == m["nll"]
    assert m["elbo"] == pytest.approx(m["rec"] - m["kl"])
    assert 0 <= m["active_units"] <= 50 and 0 <= m["svm_acc"] <= 1
    assert {"targets", "points", "layers", "encoder_mean", "decoder_mean", "model_mean"} <= set(doc["fisher"])
    assert doc["fisher"]["points"] == SMOKE.fisher_points
    assert "proposition1" in doc["derivations"]
    assert {"nll", "elbo", "svm", "fisher", "derivations", "tsne", "images"} <= set(doc["timings"])
    assert 0 <= m["linear_probe_acc"] <= 1 and len(m["linear_probe_fold_accs"]) == 2
    diag = doc["diagnostics"]  # diagnostics.py; its estimators are checked in test_diagnostics.py
    mi = diag["mutual_information"]
    assert (mi["points"], mi["log_n_bound"]) == (64, pytest.approx(math.log(64)))
    assert mi["value"] == pytest.approx(mi["mean_kl"] - mi["marginal_kl"]) and mi["value"] < mi["log_n_bound"] + 1e-9
    assert diag["active_units"]["count"] == m["active_units"] and diag["active_units"]["same_threshold"]
    per_unit = diag["kl_per_unit"]["values"]
    assert len(per_unit) == 50 and sum(per_unit) == pytest.approx(m["kl"], rel=1e-4)
    assert (diag["rate_distortion"]["rate"], diag["rate_distortion"]["distortion"]) == (m["kl"], -m["rec"])
    assert diag["bypass"]["points"] == 64 and isinstance(diag["bypass"]["ignores_z"], bool)

    figs = read_npz(paths.figures_npz)
    assert set(figs) == {"labels", *TSNE_ARRAYS, *IMAGE_ARRAYS, *NLL_ARRAYS}  # what plots and paired NLLs read
    n, k = SMOKE.tsne_points, SMOKE.grid_images
    assert figs["labels"].shape == (n,)
    for key in TSNE_ARRAYS:
        assert figs[key].shape == (n, 2) and np.isfinite(figs[key]).all(), key
    for key in ("recon_truth", "recon_model", "samples"):
        assert figs[key].shape == (k, 28, 28) and figs[key].min() >= 0 and figs[key].max() <= 1, key
    # The grid shows digits 0..k-1, each a real test image, taken from the fixed permutation.
    from scvae_core.data import load_binarized_mnist, load_test_labels

    x, labels = load_binarized_mnist("test", data_dir), load_test_labels(data_dir)
    order = ev.permuted_test_indices()
    assert np.array_equal(figs["labels"], labels[order[:n]])
    grid = order[ev.grid_indices(labels[order], k)]
    assert labels[grid].tolist() == list(range(k))
    assert np.array_equal(figs["recon_truth"].reshape(k, -1), x[grid])


@pytest.mark.smoke
def test_skipvae_models_are_evaluated_with_their_z_maps(smoke_results):
    for name in SKIPVAE:
        doc = ev.load_eval(smoke_results, "smoke", name, 0)
        layers = [layer["name"] for layer in doc["fisher"]["layers"]]
        assert [n for n in layers if ".zmaps." in n] == [f"decoder.mlp.zmaps.{k}" for k in range(10)], name
        assert doc["diagnostics"]["bypass"]["points"] == SMOKE.test_size
    assert "proposition3" in ev.load_eval(smoke_results, "smoke", "scvae+zskip", 0)["derivations"]


@pytest.mark.smoke
def test_up_to_date_eval_is_returned_without_work(smoke_run, capsys):
    results_dir, doc = smoke_run
    assert ev.evaluate_run(MODEL, "smoke", 0, device="cpu", results_dir=results_dir, progress=False) == doc
    assert "up to date" in capsys.readouterr().out


@pytest.mark.smoke
def test_outdated_eval_is_not_reused(smoke_run):
    results_dir, doc = smoke_run
    paths = RunPaths(results_dir, "smoke", MODEL, 0)
    with pytest.warns(UserWarning, match=r"other preset settings \(nll_samples\)"):
        assert ev._reusable(paths, get_preset("smoke", nll_samples=9), doc["config"]) is None
    with pytest.warns(UserWarning, match=r"other preset settings \(epochs\)"):
        assert ev._reusable(paths, get_preset("smoke", epochs=3), doc["config"]) is None


@pytest.mark.smoke
def test_eval_survives_preset_changes_that_do_not_touch_it(smoke_run):
    # A new stage or reworded budget must not throw away results whose checkpoints may be gone.
    results_dir, doc = smoke_run
    paths = RunPaths(results_dir, "smoke", MODEL, 0)
    changed = get_preset("smoke", budget="reworded", stages={**SMOKE.stages, "extra": ("vae-1l",)})
    assert ev._reusable(paths, changed, get_config(MODEL)) == doc
    with pytest.warns(UserWarning, match="another model configuration"):
        assert ev._reusable(paths, SMOKE, get_config("vae-1l-xavier")) is None


@pytest.mark.smoke
def test_eval_written_before_a_config_field_existed_is_reused(smoke_run, tmp_path):
    # Files written before ModelConfig.init existed lack it: read as the default, not stale.
    results_dir, doc = smoke_run
    paths, src = copy_trained(results_dir, tmp_path), RunPaths(results_dir, "smoke", MODEL, 0)
    shutil.copy2(src.figures_npz, paths.figures_npz)
    old = json.loads(src.eval_json.read_text())
    del old["config"]["init"]
    paths.eval_json.write_text(json.dumps(old))  # newer than the checkpoint, as it was
    assert ev._reusable(paths, SMOKE, get_config(MODEL))["config"] == old["config"]


@pytest.mark.smoke
def test_corrupt_eval_names_file_and_fix_and_is_recomputed_identically(smoke_run, tmp_path, data_dir, monkeypatch,
                                                                       worker_threads):
    results_dir, doc = smoke_run
    paths = copy_trained(results_dir, tmp_path)
    paths.eval_json.write_text('{"kind": "eval", "schema_vers')
    with pytest.raises(ResultError) as err:
        ev.load_eval(tmp_path, "smoke", MODEL, 0)
    assert str(paths.eval_json) in str(err.value) and "scvae evaluate vae-1l --preset smoke --seed 0" in str(err.value)

    # Recomputed, here as a seed without figures: every part has its own seed, so leaving
    # t-SNE out changes nothing else, and the same seed gives the same numbers.
    monkeypatch.setattr(ev, "run_preset", lambda name, model, *dataset: get_preset(name, figure_seeds=()))
    with pytest.warns(UserWarning, match="not valid JSON"):  # at the workers' thread count (worker_threads)
        again = ev.evaluate_run(MODEL, "smoke", 0, device="cpu", results_dir=tmp_path, data_dir=data_dir,
                                progress=False)
    assert again == read_json(paths.eval_json, "eval")  # returned as written
    for block in ("metrics", "fisher", "fisher_empirical", "fisher_authors", "derivations", "diagnostics"):
        assert again[block] == doc[block], block
    figs, before = read_npz(paths.figures_npz), read_npz(RunPaths(results_dir, "smoke", MODEL, 0).figures_npz)
    assert set(figs) == {"labels", *IMAGE_ARRAYS, *NLL_ARRAYS}
    for key in figs:
        assert np.array_equal(figs[key], before[key]), key


@pytest.mark.smoke
def test_cli_evaluate_after_train(smoke_run, tmp_path, data_dir, worker_threads):
    copy_trained(smoke_run[0], tmp_path)  # `scvae train` then finds it trained
    env = {**os.environ, "SCVAE_DATA": str(data_dir), "OMP_NUM_THREADS": str(worker_threads)}
    for verb in ("train", "evaluate"):
        cmd = [sys.executable, "-m", "scvae_core.cli", verb, MODEL, "--preset", "smoke", "--seed", "0",
               "--results-dir", str(tmp_path), "--device", "cpu", "--no-progress"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
        assert proc.returncode == 0, proc.stderr
    assert ev.load_eval(tmp_path, "smoke", MODEL, 0)["metrics"] == smoke_run[1]["metrics"]
