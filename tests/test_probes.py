"""Classifiers on features (probes.py): the linear probe beside the SVM on the same folds, the
pixel baselines at smoke size, and baselines.json written and read back (`scvae baselines`)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from scvae_core import probes
from scvae_core.results import REPO_ROOT, ResultError, write_json


def rings(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric rings: an RBF SVM separates them, no linear classifier can."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = np.where(labels == 0, 1.0, 3.0) + rng.normal(scale=0.1, size=n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1), labels


@pytest.mark.unit
def test_the_linear_probe_reads_what_is_linear_and_the_svm_more():
    x, labels = rings()
    svm, linear = probes.svm_accuracy(x, labels, 3, 0), probes.linear_probe_accuracy(x, labels, 3, 0)
    assert svm["mean"] > 0.97 and linear["mean"] < 0.75, (svm, linear)
    assert len(svm["folds"]) == len(linear["folds"]) == 3
    squared = np.concatenate([x, x**2], 1)  # the rings become linearly separable
    assert probes.linear_probe_accuracy(squared, labels, 3, 0)["mean"] > 0.97


@pytest.mark.unit
def test_the_heldout_protocol_fits_on_training_labels_and_scores_the_test_set():
    x_fit, y_fit = rings(300, seed=0)
    x_test, y_test = rings(200, seed=1)
    found = probes.heldout_accuracy(x_fit, y_fit, x_test, y_test)
    assert found["acc"] > 0.97 and (found["train_size"], found["test_size"]) == (300, 200), found
    assert found["se"] == pytest.approx(np.sqrt(found["acc"] * (1 - found["acc"]) / 200))
    # Labels that say nothing about the training features: the test set is scored at chance.
    shuffled = np.random.default_rng(2).permutation(y_fit)
    assert probes.heldout_accuracy(x_fit, shuffled, x_test, y_test)["acc"] < 0.75
    assert probes.heldout_accuracy(x_fit, y_fit, x_test, y_test, "linear")["acc"] < 0.75  # rings: not linear


@pytest.mark.unit
def test_bad_features_are_refused():
    x, labels = rings(30)
    with pytest.raises(ValueError, match="classifier='tree'"):
        probes.cv_accuracy(x, labels, 3, 0, "tree")
    with pytest.raises(ValueError, match=r"features must be \(N, d\)"):
        probes.cv_accuracy(x[:, 0], labels, 3, 0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        probes.cv_accuracy(np.where(x > 0, np.nan, x), labels, 3, 0)
    with pytest.raises(ValueError, match="training features must be"):
        probes.heldout_accuracy(x[:, 0], labels, x, labels)
    with pytest.raises(ValueError, match="test features hold NaN"):
        probes.heldout_accuracy(x, labels, np.full_like(x, np.nan), labels)
    with pytest.raises(ValueError, match="same model"):
        probes.heldout_accuracy(x, labels, x[:, :1], labels)
    with pytest.raises(ValueError, match="components=0"):
        probes.pca_features(x, x, 0)


@pytest.mark.unit
def test_baselines_of_noisy_prototypes():
    """Ten binary prototypes with flipped pixels: every baseline far above chance, PCA fitted on
    other images of the same kind."""
    rng = np.random.default_rng(0)
    protos = rng.random((10, 784)) < 0.3
    labels = np.repeat(np.arange(10), 20)

    def noisy(lab):
        return (protos[lab] ^ (rng.random((len(lab), 784)) < 0.2)).astype(np.uint8)

    acc = probes.baselines(noisy(labels), labels, noisy(rng.integers(0, 10, 300)), folds=2, seed=0, components=20)
    assert set(acc) == set(probes.BASELINES)
    for name, res in acc.items():
        assert res["mean"] > 0.9 and len(res["folds"]) == 2, (name, res)


@pytest.mark.unit
def test_a_tampered_baselines_file_is_refused(tmp_path):
    fold = {"mean": 0.9, "std": 0.0, "folds": [0.9, 0.9]}
    doc = {"accuracies": dict.fromkeys(probes.BASELINES, fold), "size": 200, "folds": 2, "provenance": {}}
    write_json(probes.baselines_path(tmp_path), "baselines", doc)
    assert probes.read_baselines(tmp_path)["size"] == 200
    doc["accuracies"]["svm_pca"] = {**fold, "folds": [0.9, 1.5]}
    write_json(probes.baselines_path(tmp_path), "baselines", doc)
    with pytest.raises(ResultError, match=r"accuracies.svm_pca is not 2 fold accuracies.*scvae baselines"):
        probes.read_baselines(tmp_path)


@pytest.mark.smoke
def test_cli_baselines_at_smoke_size(tmp_path, data_dir):
    env = {**os.environ, "SCVAE_DATA": str(data_dir), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "scvae_core.cli", "baselines", "--size", "200", "--folds", "2",
           "--results-dir", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    assert done.returncode == 0, done.stderr
    doc = probes.read_baselines(tmp_path)
    assert (doc["size"], doc["folds"], doc["pca_components"]) == (200, 2, 50)
    for name in probes.BASELINES:
        assert 0.5 < doc["accuracies"][name]["mean"] <= 1, (name, doc["accuracies"][name])
    assert str(probes.baselines_path(tmp_path)) in done.stdout
    assert json.loads(probes.baselines_path(tmp_path).read_text())["provenance"]["git_revision"]
