"""Classifiers read on features: the paper's SVM protocol, the linear probe, and the baselines
that give the paper's SVM accuracy its context (``scvae baselines`` ->
results/baselines/baselines.json).

Torch-free: the baselines never touch a model, and the tables read baselines.json through
:func:`read_baselines`. scikit-learn is imported where it is used: slow to import, and only
evaluation needs it.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .results import DEFAULT_RESULTS_DIR, provenance, read_json, write_json

SPLIT_SEED = 0  # the test permutation and the SVM folds: the same for every model, seed and baseline
CLASSIFIERS = ("svm", "linear")
PCA_COMPONENTS = 50  # as many as the models' latent units
LINEAR_MAX_ITER = 2000  # room for lbfgs on 784 standardised pixels: no ConvergenceWarning on all 10,000 images
BASELINES = ("svm_pixels", "svm_pca", "linear_pixels")
SVM_PROTOCOL = ("the paper's SVM protocol (probes.svm_accuracy, as every evaluation): features standardised per "
                "fold, an RBF SVC with scikit-learn's default C and gamma, stratified folds shuffled with "
                "SPLIT_SEED, on the first test images of the fixed test permutation (the same images and folds "
                "as every model's svm_acc)")


def permuted_test_indices(n: int = 10000) -> np.ndarray:
    """The fixed order in which test points are used (subsets are its prefixes): the test split's
    rows are sorted by digit, and every model, seed and baseline must see the same points."""
    return np.random.default_rng(SPLIT_SEED).permutation(n)


def _classifier(kind: str):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    return SVC() if kind == "svm" else LogisticRegression(max_iter=LINEAR_MAX_ITER)


def cv_accuracy(features: np.ndarray, labels: np.ndarray, folds: int, seed: int, classifier: str = "svm") -> dict:
    """Stratified ``folds``-fold CV accuracy of ``classifier`` ("svm": an RBF SVC with default C;
    "linear": L2 logistic regression) on standardised features: {"mean", "std", "folds"}.
    One function for both, so that the SVM and the linear probe see the same folds."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier={classifier!r}; choose one of {CLASSIFIERS}")
    features, labels = np.asarray(features), np.asarray(labels)
    if features.ndim != 2 or labels.shape != (len(features),):
        raise ValueError(f"features must be (N, d) and labels (N,), got {features.shape} and {labels.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features hold NaN or infinite values (a diverged model's latent means?)")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    accs = cross_val_score(make_pipeline(StandardScaler(), _classifier(classifier)), features, labels, cv=cv)
    return {"mean": float(accs.mean()), "std": float(accs.std()), "folds": [float(a) for a in accs]}


def svm_accuracy(features: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> dict:
    """The paper's protocol: :func:`cv_accuracy` with an RBF SVC."""
    return cv_accuracy(features, labels, folds, seed, "svm")


def linear_probe_accuracy(features: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> dict:
    """The same folds with logistic regression: what is linearly readable, which an RBF SVM can
    hide (it separates almost anything given enough points)."""
    return cv_accuracy(features, labels, folds, seed, "linear")


def heldout_accuracy(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
                     test_labels: np.ndarray, classifier: str = "svm") -> dict:
    """Fit ``classifier`` on labelled training features, score it on the test features: the
    protocol the paper most likely used where training labels exist (Fashion-MNIST; binarized
    MNIST has none). {"acc", "se" (binomial, over test points), "train_size", "test_size"}."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier={classifier!r}; choose one of {CLASSIFIERS}")
    for name, f, y in (("training", train_features, train_labels), ("test", test_features, test_labels)):
        f, y = np.asarray(f), np.asarray(y)
        if f.ndim != 2 or y.shape != (len(f),):
            raise ValueError(f"{name} features must be (N, d) and labels (N,), got {f.shape} and {y.shape}")
        if not np.isfinite(f).all():
            raise ValueError(f"{name} features hold NaN or infinite values (a diverged model's latent means?)")
    if np.asarray(train_features).shape[1] != np.asarray(test_features).shape[1]:
        raise ValueError(f"training features have {np.asarray(train_features).shape[1]} columns, test features "
                         f"{np.asarray(test_features).shape[1]}: they must come from the same model")
    fitted = make_pipeline(StandardScaler(), _classifier(classifier)).fit(train_features, train_labels)
    acc = float(fitted.score(test_features, test_labels))
    m = len(test_labels)
    return {"acc": acc, "se": float(np.sqrt(acc * (1 - acc) / m)), "train_size": len(train_labels), "test_size": m}


def pca_features(fit: np.ndarray, x: np.ndarray, components: int = PCA_COMPONENTS, seed: int = 0) -> np.ndarray:
    """x projected on the first ``components`` principal components of ``fit`` (the training
    images, as the VAEs are fitted to them: no test image shapes the projection)."""
    from sklearn.decomposition import PCA

    if not 1 <= components <= min(fit.shape):
        raise ValueError(f"components={components}: must lie in 1..{min(fit.shape)} for {fit.shape[0]} fitting "
                         f"images of {fit.shape[1]} pixels")
    return PCA(n_components=components, random_state=seed).fit(fit.astype(np.float64)).transform(
        x.astype(np.float64))


def baselines(x: np.ndarray, labels: np.ndarray, x_fit: np.ndarray, folds: int, seed: int,
              components: int = PCA_COMPONENTS) -> dict:
    """The paper's SVM on the raw binary pixels and on their ``components`` principal components
    (fitted on ``x_fit``), and logistic regression on the raw pixels (the linear probe's context),
    each on the same folds: {name: {"mean", "std", "folds"}}."""
    return {"svm_pixels": svm_accuracy(x, labels, folds, seed),
            "svm_pca": svm_accuracy(pca_features(x_fit, x, components, seed), labels, folds, seed),
            "linear_pixels": linear_probe_accuracy(x, labels, folds, seed)}


def baselines_path(results_dir: str | Path = DEFAULT_RESULTS_DIR) -> Path:
    return Path(results_dir) / "baselines" / "baselines.json"


def write_baselines(results_dir: str | Path = DEFAULT_RESULTS_DIR, size: int | None = None, folds: int = 5,
                    components: int = PCA_COMPONENTS, data_dir: str | Path | None = None) -> Path:
    """Compute :func:`baselines` on the first ``size`` images of the fixed test permutation (None:
    all 10,000) and write them, with their settings and provenance, to baselines.json."""
    from .data import load_binarized_mnist, load_test_labels

    if folds < 2:
        raise ValueError(f"folds={folds}: cross-validation needs at least 2 folds")
    if size is not None and not 10 * folds <= size <= 10000:
        raise ValueError(f"size={size}: must lie in {10 * folds}..10000 (every digit in every fold)")
    start = time.perf_counter()
    idx = permuted_test_indices()[:size]
    x, labels = load_binarized_mnist("test", data_dir)[idx], load_test_labels(data_dir)[idx]
    accuracies = baselines(x, labels, load_binarized_mnist("train", data_dir), folds, SPLIT_SEED, components)
    path = baselines_path(results_dir)
    write_json(path, "baselines", {
        "protocol": SVM_PROTOCOL, "size": len(idx), "folds": folds, "split_seed": SPLIT_SEED,
        "pca_components": components, "pca_fitted_on": "the 50,000 training images", "accuracies": accuracies,
        "provenance": provenance(SPLIT_SEED), "wall_time_s": round(time.perf_counter() - start, 3)})
    return path


def read_baselines(results_dir: str | Path = DEFAULT_RESULTS_DIR) -> dict:
    """baselines.json, checked: every baseline with an accuracy in 0..1 per fold."""
    from .results import ResultError

    path = baselines_path(results_dir)
    fix = f"run `scvae baselines --results-dir {results_dir}`"
    doc = read_json(path, "baselines", ("accuracies", "size", "folds"), fix=fix)
    for name in BASELINES:
        acc = doc["accuracies"].get(name)
        folds = acc.get("folds") if isinstance(acc, dict) else None
        if not isinstance(folds, list) or len(folds) != doc["folds"] or not all(
                isinstance(a, float) and 0 <= a <= 1 for a in folds):
            raise ResultError(f"{path}: refused: accuracies.{name} is not {doc['folds']} fold accuracies in 0..1. "
                              f"To fix: {fix}")
    return doc
