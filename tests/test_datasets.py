"""Data sets as a run setting (--dataset): mnist-static, fashion-static, fashion-dynamic. Where
their results lie and how they are fingerprinted (unit); Fashion-MNIST's fixed split and fixed
binarization, the errors that name the fix, and each data set trained and evaluated from the CLI
at smoke (smoke: the data)."""
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from scvae_core import data, presets, train
from scvae_core.cli import main
from scvae_core.data import DataError, DynamicBinarizer, load_dataset, load_dataset_labels
from scvae_core.evaluate import permuted_test_indices
from scvae_core.presets import DATASETS, DEFAULT_DATASET, changed_settings, run_preset, settings
from scvae_core.results import ResultError, RunPaths, check_run, read_figures, read_json
from scvae_core.runs import TRAIN_KEYS, load_eval
from scvae_core.zoo import get_config

MODEL = "vae-1l"


@pytest.fixture
def fresh_fashion_cache():
    """The process's Fashion-MNIST arrays are read and checked once; a test that changes what they
    are checked against reads them anew, and leaves none of its own behind."""
    for cached in (data._fashion_set, data._fashion_static):
        cached.cache_clear()
    yield
    for cached in (data._fashion_set, data._fashion_static):
        cached.cache_clear()


# ---------------------------------------------------------------- unit: names, folders, fingerprints

@pytest.mark.unit
def test_mnist_results_stay_where_they_were_and_the_others_get_a_folder_each(tmp_path):
    assert RunPaths(tmp_path, "long", MODEL, 1).dir == tmp_path / "long" / MODEL / "seed1"
    assert RunPaths(tmp_path, "long", MODEL, 1, DEFAULT_DATASET).command("train") == \
        "scvae train vae-1l --preset long --seed 1"
    for dataset in ("fashion-static", "fashion-dynamic"):
        paths = RunPaths(tmp_path, "long", MODEL, 1, dataset)
        assert paths.dir == tmp_path / dataset / "long" / MODEL / "seed1"
        assert paths.command("evaluate") == f"scvae evaluate vae-1l --preset long --seed 1 --dataset {dataset}"


@pytest.mark.unit
def test_the_data_set_is_in_the_fingerprint_and_old_files_are_mnist_static():
    mnist, static, dynamic = (run_preset("smoke", MODEL, d) for d in DATASETS)
    assert mnist == run_preset("smoke", MODEL) and mnist.dataset == DEFAULT_DATASET == "mnist-static"
    assert mnist.data_sums == presets.DATA_SUMS  # MNIST's fingerprint as before data sets were a setting
    assert static.data_sums == dynamic.data_sums == \
        hashlib.sha256(presets.FASHION_SUMS_FILE.read_bytes()).hexdigest()[:16] != mnist.data_sums
    assert changed_settings(settings(mnist), static) == ["dataset", "data_sums"]
    assert changed_settings(settings(static), dynamic) == ["dataset"]
    # A file written before the field existed counts as mnist-static, and as nothing else.
    older = {k: v for k, v in settings(mnist).items() if k != "dataset"}
    assert changed_settings(older, mnist) == []
    assert changed_settings(older, static) == ["dataset", "data_sums"]


@pytest.mark.unit
def test_a_result_of_one_data_set_is_refused_in_another_ones_folder(tmp_path):
    preset = run_preset("smoke", MODEL)
    doc = {"kind": "train", "model": MODEL, "preset": "smoke", "seed": 0, "config": get_config(MODEL).to_dict(),
           "preset_config": preset.to_dict(), "history": [], "best_valid_elbo": -100.0, "best_epoch": 1,
           "epochs_run": 1, "stopped": "max_epochs", "wall_time_s": 1.0}
    check_run(doc, tmp_path, RunPaths(tmp_path, "smoke", MODEL, 0), ("dataset", "data_sums"), "")  # no dataset key
    with pytest.raises(ResultError, match=r"its dataset is 'mnist-static' but it lies in smoke/vae-1l/seed0 of "
                                          r"fashion-static.*other preset settings \(dataset, data_sums\)"):
        check_run(doc, tmp_path, RunPaths(tmp_path, "smoke", MODEL, 0, "fashion-static"), ("dataset", "data_sums"),
                  "")


@pytest.mark.unit
def test_an_unknown_data_set_is_refused_naming_the_choices(tmp_path, capsys):
    for call in (lambda: run_preset("smoke", MODEL, "fashion"), lambda: RunPaths(tmp_path, "smoke", MODEL, 0, "fashion"),
                 lambda: load_dataset("fashion", "train", tmp_path)):
        with pytest.raises(ValueError, match="unknown data set 'fashion': pass --dataset .*one of mnist-static, "
                                             "fashion-static, fashion-dynamic"):
            call()
    for verb in (["train", MODEL], ["evaluate", MODEL], ["reproduce", "table1"], ["status", "table1"], ["sprint"]):
        with pytest.raises(SystemExit) as exit_:
            main([*verb, "--dataset", "fashion", "--results-dir", str(tmp_path)])
        assert exit_.value.code == 2
        assert "argument --dataset: invalid choice: 'fashion' (choose from 'mnist-static', 'fashion-static', " \
               "'fashion-dynamic')" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.unit
def test_every_verb_that_runs_says_what_dataset_means(capsys):
    for verb in ("train", "evaluate", "reproduce", "status", "sprint", "compare"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--dataset DATASET" in text and "(default: mnist-static)" in text, verb
        assert all(name in text for name in DATASETS), verb


@pytest.mark.unit
def test_the_split_is_one_fixed_permutation_of_the_training_images():
    train_rows, valid_rows = data.fashion_split_rows("train"), data.fashion_split_rows("valid")
    assert len(train_rows) == 50000 and len(valid_rows) == 10000
    assert np.array_equal(np.sort(np.concatenate([train_rows, valid_rows])), np.arange(60000))  # disjoint, all
    assert np.array_equal(train_rows, data.fashion_split_rows("train"))  # fixed
    assert not np.array_equal(train_rows, np.arange(50000))  # permuted: not the file's first 50,000
    assert np.array_equal(data.fashion_split_rows("test"), np.arange(10000))


@pytest.mark.unit
def test_missing_fashion_mnist_names_the_command(tmp_path, monkeypatch, fresh_fashion_cache):
    monkeypatch.setattr(data, "FASHION_ROOT", tmp_path / "not-installed")
    for dataset in ("fashion-static", "fashion-dynamic"):
        with pytest.raises(DataError, match=r"apt-get install dataset-fashion-mnist` \(as root; `make fashion`"):
            load_dataset(dataset, "train", tmp_path)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset_labels("fashion-static", "test", tmp_path)


@pytest.mark.unit
def test_data_check_of_a_missing_fashion_mnist_says_missing_and_the_command(tmp_path, monkeypatch, capsys,
                                                                           fresh_fashion_cache):
    monkeypatch.setattr(data, "FASHION_ROOT", tmp_path / "not-installed")
    assert main(["data", "check", "--dataset", "fashion-static", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "MISSING  train images and labels" in out and "make fashion" in out, out


@pytest.mark.unit
def test_fashion_files_of_another_release_are_refused(tmp_path, monkeypatch, fresh_fashion_cache):
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "fashion-mnist"  # the data folder's copy is preferred to Debian's
    for prefix, n in (("train", 6), ("t10k", 4)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    assert data.fashion_root(tmp_path / "data") == folder
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\[.gz\]: checksum mismatch.*"
                                        r"reinstall it with `apt-get install --reinstall dataset-fashion-mnist`"):
        load_dataset("fashion-static", "test", tmp_path / "data")
    assert not data.check(tmp_path / "data", "fashion-dynamic")  # `scvae data check --dataset ...` says so too


@pytest.mark.unit
def test_binarized_mnist_has_no_training_labels():
    with pytest.raises(DataError, match="labels only for its test split"):
        load_dataset_labels(DEFAULT_DATASET, "train")
    assert not data.has_training_labels(DEFAULT_DATASET)
    assert all(data.has_training_labels(d) for d in DATASETS if d != DEFAULT_DATASET)
    with pytest.raises(DataError, match="no labels for its training images"):
        data.labelled_training_images(DEFAULT_DATASET, 10)


def write_idx(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 8, x.ndim]) + b"".join(d.to_bytes(4, "big") for d in x.shape)
    path.write_bytes(header + x.tobytes())


# ---------------------------------------------------------------- smoke: the real Fashion-MNIST

@pytest.mark.smoke
def test_the_fixed_binarization_is_the_recorded_one(fashion_dir, data_dir, monkeypatch, tmp_path, fresh_fashion_cache):
    recorded = data.load_checksums(presets.FASHION_SUMS_FILE)
    gray, _ = data._fashion_set(fashion_dir, "train")
    for part in ("train", "test"):  # drawn again from scratch, not from the loader's cache
        x = data.bernoulli_binarize(data._fashion_set(fashion_dir, part)[0],
                                    np.random.default_rng(data.FASHION_BINARIZE_SEEDS[part]))
        assert hashlib.sha256(x.tobytes()).hexdigest() == recorded[f"fashion-static/{part}-images#content"]
    train_x = load_dataset("fashion-static", "train", data_dir)
    assert train_x.shape == (50000, 784) and set(np.unique(train_x)) == {0, 1}
    assert np.array_equal(train_x, load_dataset("fashion-static", "train", data_dir))
    assert abs(train_x.mean() - gray[data.fashion_split_rows("train")].mean() / 255) < 1e-3  # Bernoulli(pixel/255)
    # fashion-dynamic validates and tests on fashion-static's images
    for split in ("valid", "test"):
        assert np.array_equal(load_dataset("fashion-dynamic", split, data_dir), load_dataset("fashion-static", split,
                                                                                            data_dir))
    # Another generator's draw is caught by the recorded digest.
    sums = tmp_path / "SHA256SUMS.fashion-mnist"
    sums.write_text(presets.FASHION_SUMS_FILE.read_text().replace(recorded["fashion-static/test-images#content"],
                                                                  "0" * 64))
    monkeypatch.setattr(data, "FASHION_SUMS_FILE", sums)
    data._fashion_static.cache_clear()
    with pytest.raises(DataError, match="fixed binarization of Fashion-MNIST's test images: checksum mismatch.*"
                                        "generator draws otherwise"):
        load_dataset("fashion-static", "test", data_dir)


@pytest.mark.smoke
@pytest.mark.parametrize("dataset", [d for d in DATASETS if d != DEFAULT_DATASET])
def test_data_check_verifies_fashion_mnist_and_prints_its_splits(dataset, data_dir, fashion_dir, capsys):
    assert main(["data", "check", "--dataset", dataset, "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    for part in ("train", "test"):
        assert f"OK       {part} images and labels" in out and f"OK       {part} fixed binarization" in out, out
    assert "train: shape (50000, 784)" in out and "valid: shape (10000, 784)" in out, out
    assert "test: shape (10000, 784); labels per class: 0:1000 1:1000" in out, out  # 1,000 per class
    assert ("(drawn anew every epoch)" in out) == (dataset == "fashion-dynamic")


@pytest.mark.smoke
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_each_data_set_trains_and_evaluates_from_the_cli(dataset, data_dir, fashion_dir, tmp_path):
    run = ["--preset", "smoke", "--dataset", dataset, "--device", "cpu", "--results-dir", str(tmp_path),
           "--data-dir", str(data_dir), "--no-progress"]
    assert main(["train", MODEL, *run]) == 0
    assert main(["evaluate", MODEL, *run]) == 0
    paths = RunPaths(tmp_path, "smoke", MODEL, 0, dataset)
    top = "smoke" if dataset == DEFAULT_DATASET else f"{dataset}/smoke"
    assert paths.dir == tmp_path / top / MODEL / "seed0" and paths.eval_json.is_file()
    trained = read_json(paths.train_json, "train", TRAIN_KEYS)
    evaluated = load_eval(tmp_path, "smoke", MODEL, 0, dataset=dataset)
    for doc in (trained, evaluated):
        assert doc["dataset"] == doc["preset_config"]["dataset"] == dataset
        assert doc["preset_config"]["data_sums"] == presets.DATASET_SUMS[dataset]
    # The figures' labels are the data set's test labels: Fashion-MNIST's from its IDX file.
    labels = read_figures(paths.figures_npz)["labels"]
    if dataset == DEFAULT_DATASET:
        truth = data.load_test_labels(data_dir)
    else:
        truth = data.read_idx(data._find_fashion_file(fashion_dir, "t10k-labels-idx1-ubyte")).astype(np.int64)
    preset = run_preset("smoke", MODEL, dataset)
    assert np.array_equal(labels, truth[permuted_test_indices()[:preset.tsne_points]])
    assert 0 < evaluated["metrics"]["nll"] < 784 * np.log(2) * 1.5  # finite, and the model saw images
    # Where training images have labels, the SVM is also fitted on them and scored on the test images.
    m = evaluated["metrics"]
    if dataset == DEFAULT_DATASET:
        assert "svm_heldout_acc" not in m
    else:
        assert 0 <= m["svm_heldout_acc"] <= 1 and m["svm_heldout_train_size"] == m["svm_size"] == preset.svm_size


@pytest.mark.smoke
def test_fashion_dynamic_draws_new_images_each_epoch_and_the_same_after_a_resume(data_dir, fashion_dir, tmp_path,
                                                                                 monkeypatch):
    drawn: list[tuple[int, str]] = []  # (epoch, digest of the images drawn) in the order training asked
    epoch = DynamicBinarizer.epoch

    def recorded(self, e):
        x = epoch(self, e)
        drawn.append((e, hashlib.sha256(x.tobytes()).hexdigest()))
        return x

    monkeypatch.setattr(DynamicBinarizer, "epoch", recorded)

    def run(results_dir, max_steps=None):
        return train.train_run(MODEL, "smoke", 0, device="cpu", results_dir=results_dir, data_dir=data_dir,
                               progress=False, max_steps=max_steps, dataset="fashion-dynamic")

    whole = run(tmp_path / "whole")
    assert [e for e, _ in drawn] == [0, 1] and drawn[0][1] != drawn[1][1]  # two epochs, two draws
    straight = dict(drawn)
    drawn.clear()
    # Killed after step 4 of 6 (mid-epoch 2: 3 batches an epoch), then resumed.
    assert run(tmp_path / "resumed", max_steps=4)["stopped"] == "max_steps"
    assert drawn == [(0, straight[0]), (1, straight[1])]
    drawn.clear()
    resumed = run(tmp_path / "resumed")
    assert drawn == [(1, straight[1])]  # the resumed epoch draws the images it drew before the kill
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in whole["history"]]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed["history"]] == strip
    a, b = (torch.load(RunPaths(tmp_path / d, "smoke", MODEL, 0, "fashion-dynamic").best_ckpt, weights_only=True)
            for d in ("whole", "resumed"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
