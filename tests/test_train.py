"""Training: train.json schema, exact resumption, divergence, warm-up, early stopping, the CLI.
All runs use the smoke preset (300 training / 100 validation images, 3 batches an epoch)."""
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from scvae_core import train
from scvae_core.data import load_binarized_mnist
from scvae_core.models import VAE
from scvae_core.presets import PRESETS, TABLE1, TABLE2, get_preset
from scvae_core.results import ResultError, RunPaths, read_json
from scvae_core.runs import TRAIN_KEYS
from scvae_core.zoo import MODELS

MODEL = "vae-1l"


def paths(results_dir: Path, model: str = MODEL) -> RunPaths:
    return RunPaths(results_dir, "smoke", model, 0)


def weights_only(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def tensors(tree) -> list[torch.Tensor]:
    """Every tensor of a checkpoint part, in a fixed order."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for k in sorted(tree, key=str) for t in tensors(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in tensors(v)]
    return []


def smoke(monkeypatch, **changes) -> None:
    monkeypatch.setitem(PRESETS, "smoke", replace(PRESETS["smoke"], **changes))


@pytest.fixture
def run_a(smoke_results) -> tuple[Path, dict]:
    """One uninterrupted smoke run (the session's), for the tests that only read it."""
    return smoke_results, read_json(paths(smoke_results).train_json, "train", TRAIN_KEYS)


@pytest.mark.unit
def test_resolve_device():
    assert train.resolve_device("cpu") == torch.device("cpu")
    assert train.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu0'; choose one of auto, cpu, cuda, cuda:N"):
        train.resolve_device("gpu0")
    with pytest.raises(ValueError, match="unsupported device 'meta'"):
        train.resolve_device("meta")


@pytest.mark.unit
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_device_without_cuda():
    with pytest.raises(ValueError, match="'cuda' requested but torch sees no CUDA GPU here; use --device cpu"):
        train.resolve_device("cuda")


@pytest.mark.unit
def test_seed_everything_repeats_every_generator():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3).tolist()

    train.seed_everything(7)
    first = draw()
    train.seed_everything(7)
    assert draw() == first


@pytest.mark.smoke
def test_load_split_takes_the_first_rows(data_dir):
    preset = get_preset("smoke")
    x = train.load_split("train", preset, data_dir)
    assert x.dtype == torch.float32 and x.shape == (preset.train_size, 784)
    assert torch.equal(x, torch.from_numpy(load_binarized_mnist("train", data_dir)[: preset.train_size]).float())
    assert train.load_split("valid", preset, data_dir).shape == (preset.valid_size, 784)


@pytest.mark.unit
def test_kl_weight_rises_linearly_per_step():
    assert [train.kl_weight(s, 4) for s in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert train.kl_weight(0, 0) == 1.0  # no warm-up


@pytest.mark.unit
def test_epoch_order_depends_only_on_seed_and_epoch():
    order = train.epoch_order(0, 3, 300)
    assert torch.equal(order, train.epoch_order(0, 3, 300))
    assert torch.equal(order.sort().values, torch.arange(300))
    assert not torch.equal(order, train.epoch_order(0, 4, 300))
    assert not torch.equal(order, train.epoch_order(1, 3, 300))


@pytest.mark.smoke
def test_smoke_run_writes_a_complete_train_json(run_a, data_dir, capsys):
    results_dir, doc = run_a
    assert (doc["model"], doc["preset"], doc["seed"], doc["stopped"]) == (MODEL, "smoke", 0, "max_epochs")
    assert doc["config"] == MODELS[MODEL].to_dict() and doc["preset_config"]["name"] == "smoke"
    assert doc["provenance"]["seed"] == 0 and doc["provenance"]["device"] == "cpu"
    assert doc["provenance"]["git_revision"] and doc["provenance"]["versions"]["torch"]
    assert doc["epochs_run"] == len(doc["history"]) == 2 and doc["wall_time_s"] > 0
    for epoch, h in enumerate(doc["history"], 1):
        assert set(h) == {"epoch", "train_loss", "train_elbo", "valid_elbo", "rec", "kl", "beta", "seconds"}
        assert h["epoch"] == epoch and h["valid_elbo"] < 0 and h["kl"] > 0
    # beta at each epoch's last step: warm-up is one epoch of 3 steps (0, 1/3, 2/3), then 1.
    assert [h["beta"] for h in doc["history"]] == [pytest.approx(2 / 3), 1.0]
    assert doc["best_valid_elbo"] == max(h["valid_elbo"] for h in doc["history"])

    mtime = paths(results_dir).train_json.stat().st_mtime_ns
    assert train.train_run(MODEL, "smoke", 0, device="cpu", results_dir=results_dir, data_dir=data_dir,
                           progress=False) == doc
    assert "already trained" in capsys.readouterr().out
    assert paths(results_dir).train_json.stat().st_mtime_ns == mtime


@pytest.mark.smoke
def test_resumed_run_ends_with_bitwise_the_same_weights(run_a, tmp_path, data_dir, worker_threads):
    out_a, doc_a = run_a

    def run(max_steps):
        return train.train_run(MODEL, "smoke", 0, device="cpu", results_dir=tmp_path, data_dir=data_dir, progress=False,
                               max_steps=max_steps)

    # Killed after step 1 (mid-epoch 1), then after step 4 (mid-epoch 2, crossing an epoch end), then finished.
    assert run(1)["stopped"] == "max_steps"
    partial = run(3)
    assert partial["stopped"] == "max_steps" and len(partial["history"]) == 1
    assert not paths(tmp_path).train_json.exists()
    doc_b = run(None)
    assert doc_b == read_json(paths(tmp_path).train_json, "train", TRAIN_KEYS)  # returned as written

    for part in ("model", "optimizer", "best_model"):
        a, b = weights_only(paths(out_a).last_ckpt)[part], weights_only(paths(tmp_path).last_ckpt)[part]
        assert len(tensors(a)) == len(tensors(b)) > 0
        assert all(torch.equal(x, y) for x, y in zip(tensors(a), tensors(b))), part
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in doc_a["history"]]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in doc_b["history"]] == strip


@pytest.mark.smoke
def test_checkpoints_load_with_weights_only(run_a):
    results_dir, doc = run_a
    last = weights_only(paths(results_dir).last_ckpt)
    assert last["progress"]["stopped"] == "max_epochs" and last["config"] == doc["config"]
    assert isinstance(last["rng_cpu"], torch.Tensor)
    best = weights_only(paths(results_dir).best_ckpt)
    assert best["epoch"] == doc["best_epoch"]
    model = train.load_trained(MODEL, "smoke", 0, results_dir, "cpu")
    assert isinstance(model, VAE) and not model.training
    assert all(torch.equal(v, best["model"][k]) for k, v in model.state_dict().items())


@pytest.mark.unit
def test_load_trained_says_how_to_train(tmp_path):
    with pytest.raises(ResultError, match=f"not trained yet. To fix: run `scvae train {MODEL} --preset smoke "
                                          f"--seed 0 --results-dir {tmp_path}`"):
        train.load_trained(MODEL, "smoke", 0, tmp_path, "cpu")


@pytest.mark.smoke
def test_nan_loss_stops_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path, data_dir,
                                                                                  monkeypatch):
    smoke(monkeypatch, checkpoint_minutes=0.0)  # a checkpoint after every step
    real_elbo, calls = VAE.elbo, []

    def elbo(self, x, beta=1.0):
        terms = real_elbo(self, x, beta)
        calls.append(self.training)
        if sum(calls) == 5:  # the 5th training step: epoch 2, step 2
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(VAE, "elbo", elbo)
    with pytest.raises(train.TrainingDiverged, match=r"loss nan at epoch 2, step 2 of 3 .*the last good "
                                                     r"checkpoint, .*last.pt \(epoch 2, step 1\), is kept"):
        train.train_run(MODEL, "smoke", 0, device="cpu", results_dir=tmp_path, data_dir=data_dir, progress=False)
    ck = weights_only(paths(tmp_path).last_ckpt)
    assert (ck["progress"]["epoch"], ck["progress"]["step"]) == (1, 1)
    assert all(t.isfinite().all() for t in tensors(ck["model"]) + tensors(ck["optimizer"]))
    assert not paths(tmp_path).train_json.exists() and not paths(tmp_path).best_ckpt.exists()


@pytest.mark.smoke
def test_non_finite_weights_are_never_checkpointed(tmp_path, data_dir, monkeypatch):
    smoke(monkeypatch, checkpoint_minutes=0.0)
    real_step, steps = torch.optim.Adam.step, []

    def step(self, closure=None):
        real_step(self, closure)
        steps.append(1)
        if len(steps) == 2:
            self.param_groups[0]["params"][0].data.fill_(float("inf"))

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    with pytest.raises(train.TrainingDiverged, match=r"non-finite weights .* at epoch 1, step 2; the last good "
                                                     r"checkpoint, .*\(epoch 1, step 1\), is kept"):
        train.train_run(MODEL, "smoke", 0, device="cpu", results_dir=tmp_path, data_dir=data_dir, progress=False)
    assert weights_only(paths(tmp_path).last_ckpt)["progress"]["step"] == 1


@pytest.mark.smoke
@pytest.mark.parametrize("warmup, scores, stopped_after, best", [
    (0, [-100, -90, -95, -96, -80], 4, 2),  # 2 epochs without improvement after epoch 2
    (3, [-100, -105, -110, -120, -130, -80], 5, 1),  # epochs 2-3 are warm-up: not counted
])
def test_early_stopping_keeps_the_best_epoch(warmup, scores, stopped_after, best, tmp_path, data_dir,
                                             monkeypatch):
    smoke(monkeypatch, epochs=20, warmup_epochs=warmup, patience=2)
    scores, snapshots = iter(scores), []

    def validation_elbo(model, x):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return float(next(scores))

    monkeypatch.setattr(train, "validation_elbo", validation_elbo)
    doc = train.train_run(MODEL, "smoke", 0, device="cpu", results_dir=tmp_path, data_dir=data_dir, progress=False)
    assert (doc["stopped"], doc["epochs_run"], doc["best_epoch"]) == ("early_stopping", stopped_after, best)
    saved = weights_only(paths(tmp_path).best_ckpt)["model"]
    assert all(torch.equal(v, snapshots[best - 1][k]) for k, v in saved.items())


@pytest.mark.smoke
def test_changed_training_settings_refuse_the_old_checkpoint(tmp_path, data_dir, monkeypatch):
    train.train_run(MODEL, "smoke", 0, device="cpu", results_dir=tmp_path, data_dir=data_dir, progress=False,
                    max_steps=1)
    smoke(monkeypatch, lr=1e-3)
    with pytest.raises(ResultError, match="its training settings differ from what 'vae-1l' under preset 'smoke' "
                                          "has now. To fix: delete .*checkpoints"):
        train.train_run(MODEL, "smoke", 0, device="cpu", results_dir=tmp_path, data_dir=data_dir, progress=False)


@pytest.mark.smoke
def test_cli_train(tmp_path, data_dir):
    scvae = Path(sys.executable).parent / "scvae"
    env = {**os.environ, "SCVAE_DATA": str(data_dir)}
    cmd = [str(scvae), "train", MODEL, "--preset", "smoke", "--seed", "0", "--results-dir", str(tmp_path),
           "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert read_json(paths(tmp_path).train_json, "train", TRAIN_KEYS)["epochs_run"] == 2
    bad = subprocess.run([str(scvae), "train", "vae-2l", "--results-dir", str(tmp_path)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "unknown model 'vae-2l'; valid models: vae-1l" in bad.stderr


@pytest.mark.smoke
@pytest.mark.parametrize("name", TABLE1 + TABLE2)
def test_every_table_model_trains(name, tmp_path, data_dir):
    assert name in MODELS
    result = train.train_run(name, "smoke", 0, device="cpu", results_dir=tmp_path, data_dir=data_dir, progress=False,
                             max_steps=2)
    assert result["stopped"] == "max_steps"
    ck = weights_only(paths(tmp_path, name).last_ckpt)
    assert ck["progress"]["global_step"] == 2
    assert all(t.isfinite().all() for t in tensors(ck["model"]))
