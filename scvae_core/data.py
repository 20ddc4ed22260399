"""Data layer: statically binarized MNIST (.mat, or the upstream .amat text files), its test
labels, the grayscale MNIST test set, Fashion-MNIST, dynamic binarization, and the data sets a
run trains on (``presets.DATASETS``, read by :func:`load_dataset`).

Every file of the data folder is checked against ``data/SHA256SUMS`` before use, and
``scvae data download|check`` fetch and inspect that folder (see data/README.md). Fashion-MNIST
(Debian's ``dataset-fashion-mnist``) and its fixed binarization are checked against
``data/SHA256SUMS.fashion-mnist``.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.request
import zlib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import scipy.io
from tqdm import tqdm

from .presets import DATASETS, DEFAULT_DATASET, FASHION_SUMS_FILE, check_dataset
from .results import REPO_ROOT, clean_stale_temporaries, honour_umask, temp_prefix

SUMS_FILE = REPO_ROOT / "data" / "SHA256SUMS"
SPLIT_SIZES = {"train": 50000, "valid": 10000, "test": 10000}
N_PIXELS = 784
# A SHA256SUMS path with this suffix holds the sha256 of the parsed uint8 (N, 784) array in
# C order rather than of the file's bytes: .amat text can vary in layout, the data cannot.
CONTENT = "#content"
LABELS = "binarized_mnist/binarized_mnist_test_labels.txt"
MNIST_IMAGES = "mnist/t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "mnist/t10k-labels-idx1-ubyte.gz"
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def split_path(split: str, ext: Literal[".mat", ".amat"]) -> str:
    """Path of a binarized MNIST split relative to the data folder."""
    return f"binarized_mnist/binarized_mnist_{split}{ext}"


# Where `scvae data download` gets each file when no --mirror is given. The test labels
# have no upstream source: they are derived locally (derive_test_labels) and then verified.
_AMAT_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
UPSTREAM_URLS = {
    **{split_path(s, ".amat"): f"{_AMAT_URL}binarized_mnist_{s}.amat" for s in SPLIT_SIZES},
    MNIST_IMAGES: _MNIST_URL + "t10k-images-idx3-ubyte.gz",
    MNIST_LABELS: _MNIST_URL + "t10k-labels-idx1-ubyte.gz",
}


# Sizes of the files SHA256SUMS lists: a download stops beyond them, so that a mirror that
# streams forever cannot fill the disk. An .amat's layout may vary: twice the bytes of its
# values with one separator each is allowed.
FILE_BYTES = {
    split_path("train", ".mat"): 2852060, split_path("valid", ".mat"): 571883, split_path("test", ".mat"): 490132,
    LABELS: 20000, MNIST_IMAGES: 1648877, MNIST_LABELS: 4542,
    **{split_path(s, ".amat"): 2 * 2 * n * N_PIXELS for s, n in SPLIT_SIZES.items()},
}


class DataError(Exception):
    """A data file or folder that is missing, corrupt or malformed; the message says how to fix it."""


def _data_dir_path(data_dir: str | Path | None) -> Path:
    if data_dir is None:
        data_dir = os.environ.get("SCVAE_DATA") or REPO_ROOT / "data"
    return Path(data_dir).expanduser().resolve()


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data folder: ``data_dir``, else $SCVAE_DATA, else the repository's data/."""
    path = _data_dir_path(data_dir)
    if path.exists() and not path.is_dir():
        source = ("--data-dir (data_dir=)" if data_dir is not None else
                  "SCVAE_DATA" if os.environ.get("SCVAE_DATA") else "the default data folder")
        raise DataError(f"data folder {path} (from {source}) is a file, not a folder: point {source} at the folder "
                        f"that holds the data files (binarized_mnist/ and the labels), e.g. {path.parent}")
    if not path.is_dir():
        raise DataError(
            f"data folder {path} does not exist: pass --data-dir (or data_dir=) with a folder "
            f"holding the data, set SCVAE_DATA to one, or run `scvae data download --data-dir {path}`"
        )
    return path


def _how_to_obtain(root: Path) -> str:
    return (
        f"run `scvae data download --data-dir {root}` (needs internet), or point --data-dir / "
        "SCVAE_DATA at a folder that has the data (e.g. the project's shared data folder)"
    )


def _existing(root: Path, rel: str) -> Path:
    path = root / rel
    if not path.is_file():
        raise DataError(f"{path} is missing. To obtain it, {_how_to_obtain(root)}.")
    return path


# ---------------------------------------------------------------- checksums

def load_checksums(sums_file: Path | None = None) -> dict[str, str]:
    """Relative path -> sha256 hex digest, as listed in data/SHA256SUMS (or ``sums_file``)."""
    sums_file = sums_file or SUMS_FILE
    try:
        lines = sums_file.read_text().splitlines()
    except OSError as e:
        raise DataError(f"cannot read the checksum list {sums_file} ({e}); it ships with the repository") from e
    sums = {}
    for line in filter(str.strip, lines):
        fields = line.split(maxsplit=1)
        if len(fields) != 2:
            raise DataError(f"{sums_file}: malformed line {line!r}, expected '<sha256>  <path>'")
        sums[fields[1].removeprefix("*")] = fields[0]  # sha256sum marks binary mode with '*'
    return sums


def _mismatch(rel: str, actual: str, sums_file: Path | None = None) -> str | None:
    """None if ``actual`` is the digest listed for ``rel``, else a description of the mismatch."""
    expected = load_checksums(sums_file).get(rel)
    if expected is None:
        return f"{sums_file or SUMS_FILE} lists no checksum for {rel}"
    if actual != expected:
        return f"checksum mismatch: expected sha256 {expected} (listed for {rel}), got {actual}"
    return None


# Digests by (path, size, mtime): loading a split again in the same process costs no re-hash.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _array_sha256(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def _file_problem(path: Path, rel: str, name: str) -> str | None:
    """Why the file at ``path`` is not the ``rel`` that SHA256SUMS lists, or None if it is.
    A malformed .amat raises DataError (using ``name`` for the file) instead."""
    if rel.endswith(".amat"):
        return _mismatch(rel + CONTENT, _array_sha256(_parse_amat(path.read_bytes(), name)))
    return _mismatch(rel, _file_sha256(path))


def _verify(path: Path, rel: str, root: Path) -> None:
    problem = _mismatch(rel, _file_sha256(path))
    if problem:
        raise DataError(f"{path}: {problem}; the file is truncated or corrupt. "
                        f"To replace it, {_how_to_obtain(root)}.")


# ---------------------------------------------------------------- binarized MNIST

def _read_mat(path: Path, root: Path) -> np.ndarray:
    try:
        return scipy.io.loadmat(path)["X"]
    except KeyError:
        raise DataError(f"{path}: no array 'X' in this .mat file, so it is not a binarized MNIST "
                        f"split. To replace it, {_how_to_obtain(root)}.") from None
    except Exception as e:  # scipy reports corrupt files as ValueError, TypeError, OSError, zlib.error...
        raise DataError(f"{path}: unreadable .mat file ({type(e).__name__}: {e}); it is corrupt. "
                        f"To replace it, {_how_to_obtain(root)}.") from e


def _parse_amat(raw: bytes, name: str) -> np.ndarray:
    """Upstream .amat text: one image per line, 784 whitespace-separated 0/1 values.
    Parsed on the raw bytes with numpy, as np.loadtxt takes minutes on the 110 MB train file."""
    b = np.frombuffer(raw, np.uint8)
    is_bit = (b == ord("0")) | (b == ord("1"))
    is_space = np.isin(b, np.frombuffer(b" \t\r\n", np.uint8))
    # A value must be a single 0/1 character: anything else, or two in a row ("10"), is not binary.
    bad = ~(is_bit | is_space)
    bad[1:] |= is_bit[1:] & is_bit[:-1]
    if bad.any():
        at = int(bad.argmax())
        start = max(raw.rfind(c, 0, at) for c in (b" ", b"\t", b"\r", b"\n")) + 1
        token = raw[start:start + 32].split()[0].decode(errors="replace")
        line = raw.count(b"\n", 0, at) + 1
        raise DataError(f"{name}: line {line} holds {token!r}, not a 0 or 1: not a binarized MNIST .amat file")
    newlines = np.flatnonzero(b == ord("\n"))
    starts = np.concatenate([[0], newlines + 1])
    starts = starts[starts < len(b)]
    per_line = np.add.reduceat(is_bit, starts, dtype=np.int64) if len(b) else np.zeros(0, np.int64)
    wrong = np.flatnonzero((per_line != N_PIXELS) & (per_line != 0))  # blank lines are skipped
    if wrong.size:
        line = int(wrong[0]) + 1
        raise DataError(f"{name}: line {line} has {per_line[wrong[0]]} values, expected {N_PIXELS}")
    return (b[is_bit] - ord("0")).reshape(-1, N_PIXELS)


def _check_split(x: np.ndarray, path: Path, split: str) -> np.ndarray:
    expected = (SPLIT_SIZES[split], N_PIXELS)
    if x.shape != expected:
        raise DataError(f"{path}: array has shape {x.shape}, expected {expected} for the {split} split")
    if not ((x == 0) | (x == 1)).all():
        bad = x[(x != 0) & (x != 1)][0]
        raise DataError(f"{path}: holds values other than 0 and 1 (e.g. {bad}), so it is not statically binarized")
    return np.ascontiguousarray(x, dtype=np.uint8)


def _split_file(root: Path, split: str) -> str:
    """The file a split is read from: its .mat file, else its .amat file if that exists."""
    mat, amat = split_path(split, ".mat"), split_path(split, ".amat")
    return amat if (root / amat).is_file() and not (root / mat).is_file() else mat


def load_binarized_mnist(split: str, data_dir: str | Path | None = None, verify: bool = True) -> np.ndarray:
    """One split of statically binarized MNIST as uint8 0/1, shape (N, 784), rows in row-major
    28x28 order. Reads the .mat file, else the upstream .amat text file."""
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be one of {list(SPLIT_SIZES)}, not {split!r}")
    root = resolve_data_dir(data_dir)
    rel = _split_file(root, split)
    path = root / rel
    if not path.is_file():
        raise DataError(f"the {split} split of binarized MNIST is missing: neither {path} nor its .amat "
                        f"version exists. To obtain it, {_how_to_obtain(root)}.")
    if rel.endswith(".mat"):
        if verify:
            _verify(path, rel, root)
        return _check_split(_read_mat(path, root), path, split)
    x = _check_split(_parse_amat(path.read_bytes(), str(path)), path, split)
    if verify:
        problem = _mismatch(rel + CONTENT, _array_sha256(x))
        if problem:
            raise DataError(f"{path}: {problem}; its data differ from the published split. "
                            f"To replace it, {_how_to_obtain(root)}.")
    return x


def load_test_labels(data_dir: str | Path | None = None, verify: bool = True) -> np.ndarray:
    """Digit labels (int64, 0-9) of the binarized test split's rows, in row order."""
    root = resolve_data_dir(data_dir)
    path = _existing(root, LABELS)
    if verify:
        _verify(path, LABELS, root)
    try:
        labels = np.loadtxt(path, dtype=np.int64, ndmin=1)
    except ValueError as e:
        raise DataError(f"{path}: not one integer label per line ({e})") from e
    n = SPLIT_SIZES["test"]
    if labels.shape != (n,) or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: expected {n} labels in 0-9, found {labels.size}"
                        f"{'' if not labels.size else f' in {labels.min()}-{labels.max()}'}")
    return labels


# ---------------------------------------------------------------- IDX (grayscale MNIST, Fashion-MNIST)

def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's format), gzip-compressed if it ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read it ({e}); the file is truncated or corrupt") from e
    # Header: two zero bytes, type 0x08 (unsigned byte), number of dims, then big-endian int32 dims.
    if len(raw) < 4 or raw[:3] != b"\0\0\x08" or len(raw) < 4 + 4 * raw[3]:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (header {raw[:4].hex()})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(raw[3]))
    offset = 4 + 4 * len(dims)
    if len(raw) - offset != int(np.prod(dims)):
        raise DataError(f"{path}: header announces shape {dims} but the file holds {len(raw) - offset} "
                        "data bytes; it is truncated or corrupt")
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(dims).copy()


def _read_image_set(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: shape {images.shape}, expected (N, 28, 28) images")
    if labels.shape != (len(images),) or (labels.size and labels.max() > 9):
        raise DataError(f"{labels_path}: expected {len(images)} labels in 0-9 to match {images_path.name}, "
                        f"found shape {labels.shape}")
    return images, labels.astype(np.int64)


def load_mnist_test(data_dir: str | Path | None = None, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Grayscale MNIST test set: images uint8 (10000, 28, 28) and labels int64 (10000,)."""
    root = resolve_data_dir(data_dir)
    paths = [_existing(root, rel) for rel in (MNIST_IMAGES, MNIST_LABELS)]
    if verify:
        for path, rel in zip(paths, (MNIST_IMAGES, MNIST_LABELS)):
            _verify(path, rel, root)
    images, labels = _read_image_set(*paths)
    if len(images) != SPLIT_SIZES["test"]:
        raise DataError(f"{paths[0]}: {len(images)} images, expected {SPLIT_SIZES['test']}")
    return images, labels


def derive_test_labels(binarized_test: np.ndarray, gray_images: np.ndarray, gray_labels: np.ndarray) -> np.ndarray:
    """Label each binarized image with the label of the grayscale image under which it is most
    likely as independent Bernoulli(gray/255) pixels (each was sampled from one of them)."""
    x = binarized_test.reshape(len(binarized_test), -1).astype(np.float32)
    p = np.clip(gray_images.reshape(len(gray_images), -1) / 255.0, 1e-6, 1 - 1e-6)
    # log p(x) = x.log(p) + (1-x).log(1-p) = x.logit(p) + sum(log(1-p)): one matrix product.
    logit = (np.log(p) - np.log1p(-p)).T.astype(np.float32)
    bias = np.log1p(-p).sum(axis=1).astype(np.float32)
    best = np.concatenate([(x[i:i + 2000] @ logit + bias).argmax(axis=1)  # blocks bound memory
                           for i in range(0, len(x), 2000)])
    return np.asarray(gray_labels, dtype=np.int64)[best]


def bernoulli_binarize(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One Bernoulli(pixel/255) draw per pixel of uint8 grayscale images, as uint8 0/1."""
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 grayscale images, got {images.dtype}")
    # u uniform on {0..254} gives P(u < pixel) = pixel/255 exactly, at one byte per draw.
    return (rng.integers(0, 255, size=images.shape, dtype=np.uint8) < images).astype(np.uint8)


class DynamicBinarizer:
    """Dynamic binarization: a fresh Bernoulli(pixel/255) sample of grayscale images per epoch,
    drawn from a generator seeded by (seed, epoch), so any epoch can be reproduced on its own."""

    def __init__(self, images: np.ndarray, seed: int = 0):
        self.images = np.asarray(images)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def epoch(self, epoch: int) -> np.ndarray:
        return bernoulli_binarize(self.images, np.random.default_rng([self.seed, epoch]))


def _find_fashion_file(root: Path, name: str) -> Path:
    for folder in (root, root / "FashionMNIST" / "raw"):  # Debian's layout, torchvision's layout
        for path in (folder / name, folder / f"{name}.gz"):
            if path.is_file():
                return path
    raise DataError(
        f"Fashion-MNIST file {name}[.gz] not found in {root} or {root / 'FashionMNIST' / 'raw'}. "
        f"Install it with `apt-get install dataset-fashion-mnist` (as root; `make fashion` does it; files go to "
        f"{FASHION_ROOT}), or put the IDX files in the data folder's fashion-mnist/ (a torchvision FashionMNIST "
        "root works too)."
    )


def load_fashion_mnist(
    split: str,
    root: str | Path | None = None,
    binarize: Literal["none", "static", "dynamic"] = "none",
    seed: int = 0,
) -> tuple[np.ndarray | DynamicBinarizer, np.ndarray]:
    """Fashion-MNIST ``split`` ("train" or "test") as (images (N, 784) uint8, labels int64).
    binarize: "none" keeps grayscale 0-255, "static" samples 0/1 once from ``seed``, "dynamic"
    returns a DynamicBinarizer in place of the images."""
    if split not in FASHION_FILES:
        raise ValueError(f"split must be one of {list(FASHION_FILES)}, not {split!r}")
    if binarize not in ("none", "static", "dynamic"):
        raise ValueError(f"binarize must be 'none', 'static' or 'dynamic', not {binarize!r}")
    folder = Path(root).expanduser() if root is not None else FASHION_ROOT
    images, labels = _read_image_set(*(_find_fashion_file(folder, name) for name in FASHION_FILES[split]))
    images = images.reshape(len(images), -1)
    if binarize == "static":
        return bernoulli_binarize(images, np.random.default_rng(seed)), labels
    if binarize == "dynamic":
        return DynamicBinarizer(images, seed), labels
    return images, labels


# ---------------------------------------------------------------- the data sets of a run

# Fashion-MNIST as a run reads it: its 60,000 training images split 50,000 / 10,000 into train and
# validation by one fixed permutation, its 10,000 test images the test set. fashion-static binarizes
# each grayscale image once with a fixed seed (a seed per IDX file, so that the test draws are not
# the training draws' first rows again); the digests of those arrays are recorded in
# FASHION_SUMS_FILE, so that another numpy whose generator drew otherwise would be caught.
FASHION_SPLIT_SEED = 20240601
FASHION_BINARIZE_SEEDS = {"train": 20240602, "test": 20240603}
FASHION_TRAIN = SPLIT_SIZES["train"]  # the first of the permuted training images; the rest validate
STATIC = "fashion-static/{part}-images"  # FASHION_SUMS_FILE's name of a fixed binarization (+ CONTENT)
_REINSTALL = "reinstall it with `apt-get install --reinstall dataset-fashion-mnist` (as root)"


def fashion_root(data_dir: str | Path | None = None) -> Path:
    """Where a run finds Fashion-MNIST: the data folder's fashion-mnist/ if there is one, else
    Debian's FASHION_ROOT (``make fashion``)."""
    local = _data_dir_path(data_dir) / "fashion-mnist"
    return local if local.is_dir() else FASHION_ROOT


def fashion_split_rows(split: str) -> np.ndarray:
    """Which of the 60,000 training images (train, valid) form a split; the test images in order."""
    if split == "test":
        return np.arange(SPLIT_SIZES["test"])
    order = np.random.default_rng(FASHION_SPLIT_SEED).permutation(FASHION_TRAIN + SPLIT_SIZES["valid"])
    return order[:FASHION_TRAIN] if split == "train" else order[FASHION_TRAIN:]


def _check_content(x: np.ndarray, rel: str, where: str, fix: str) -> None:
    problem = _mismatch(rel + CONTENT, _array_sha256(x), FASHION_SUMS_FILE)
    if problem:
        raise DataError(f"{where}: {problem}. To fix: {fix}")


@lru_cache(maxsize=2)
def _fashion_set(root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Grayscale images (N, 784) and labels of Fashion-MNIST's ``part`` ("train" or "test"), checked
    against FASHION_SUMS_FILE; read-only, as they are shared."""
    images, labels = load_fashion_mnist(part, root)
    for x, name in zip((images, labels.astype(np.uint8)), FASHION_FILES[part]):
        _check_content(x, name, f"{root / name}[.gz]", f"the file is corrupt or another release: {_REINSTALL}")
    for x in (images, labels):
        x.setflags(write=False)
    return images, labels


@lru_cache(maxsize=2)
def _fashion_static(root: Path, part: str) -> np.ndarray:
    """The fixed binarization of Fashion-MNIST's ``part``, checked against its recorded digest."""
    x = bernoulli_binarize(_fashion_set(root, part)[0], np.random.default_rng(FASHION_BINARIZE_SEEDS[part]))
    _check_content(x, STATIC.format(part=part), f"the fixed binarization of Fashion-MNIST's {part} images",
                   "this numpy's generator draws otherwise than the one that recorded it; use the numpy of "
                   "pyproject.toml, or results on fashion-static would not be comparable")
    x.setflags(write=False)
    return x


def load_dataset(dataset: str, split: str, data_dir: str | Path | None = None,
                 seed: int = 0) -> np.ndarray | DynamicBinarizer:
    """Split ``split`` ("train", "valid" or "test") of a run's data set (presets.DATASETS) as uint8
    0/1 rows (N, 784); fashion-dynamic's training split as a DynamicBinarizer seeded by the run's
    ``seed`` (its other splits are fashion-static's)."""
    check_dataset(dataset)
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be one of {list(SPLIT_SIZES)}, not {split!r}")
    if dataset == DEFAULT_DATASET:
        return load_binarized_mnist(split, data_dir)
    root, part = fashion_root(data_dir), "test" if split == "test" else "train"
    rows = fashion_split_rows(split)
    if dataset == "fashion-dynamic" and split == "train":
        return DynamicBinarizer(_fashion_set(root, part)[0][rows], seed)
    return _fashion_static(root, part)[rows]  # indexing copies: the caller's own array


def load_dataset_labels(dataset: str, split: str = "test", data_dir: str | Path | None = None) -> np.ndarray:
    """Class labels (int64, 0-9) of a data set's split, in the rows' order: binarized MNIST's test
    labels (derived, data/README.md), Fashion-MNIST's from its IDX label files."""
    check_dataset(dataset)
    if dataset == DEFAULT_DATASET:
        if split != "test":
            raise DataError(f"binarized MNIST has labels only for its test split, not {split!r}: its training and "
                            "validation images come without them (data/README.md)")
        return load_test_labels(data_dir)
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be one of {list(SPLIT_SIZES)}, not {split!r}")
    return _fashion_set(fashion_root(data_dir), "test" if split == "test" else "train")[1][fashion_split_rows(split)]


def has_training_labels(dataset: str) -> bool:
    """Whether a data set's training images come with labels (Fashion-MNIST's do; binarized
    MNIST's do not), so that a classifier can be fitted on them and scored on the test set."""
    check_dataset(dataset)
    return dataset != DEFAULT_DATASET


def labelled_training_images(dataset: str, n: int, data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` images of a data set's training split with their labels, binarized once
    (fashion-dynamic's too: a classifier is fitted on one fixed draw, as its test images are)."""
    if not has_training_labels(dataset):
        raise DataError(f"{dataset} has no labels for its training images (data/README.md); only its test split "
                        "is labelled")
    fixed = "fashion-static"  # fashion-dynamic's fixed draw of its training images is fashion-static's
    return load_dataset(fixed, "train", data_dir)[:n], load_dataset_labels(fixed, "train", data_dir)[:n]


# ---------------------------------------------------------------- download

def _install(root: Path, rel: str, source: str, write: Callable[[BinaryIO], None]) -> None:
    """Write root/rel through a temp file in the same folder, verify it, then rename it into place:
    a failed or bad transfer never leaves a partial or wrong file under the real name."""
    dest = root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(dest, ".part")  # of downloads killed before they could remove them
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=temp_prefix(dest), suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        problem = _file_problem(Path(tmp), rel, source)
        if problem:
            raise DataError(f"{source}: {problem}; nothing was written to {dest}")
        honour_umask(tmp)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    print(f"OK       {rel}")


def _stream(url: str, out: BinaryIO, label: str, limit: int | None = None) -> None:
    """Copy ``url`` into ``out``; more than ``limit`` bytes (announced or sent) is refused."""
    too_long = f"{url}: more than the {limit} bytes this file has; nothing was written (a wrong or broken mirror?)"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            if limit is not None and total is not None and total > limit:
                raise DataError(too_long)
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=label, leave=False) as bar:
                while block := response.read(1 << 20):
                    received += len(block)
                    if limit is not None and received > limit:
                        raise DataError(too_long)
                    out.write(block)
                    bar.update(len(block))
    except (OSError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
        raise DataError(f"{url}: download failed ({e}); nothing was written") from e
    # http.client returns a short body without error when the server closes early.
    if total is not None and received != total:
        raise DataError(f"{url}: connection closed after {received} of {total} bytes; "
                        "nothing was written, try again")


def _present(root: Path, rel: str) -> bool:
    path = root / rel
    try:
        return path.is_file() and _file_problem(path, rel, str(path)) is None
    except DataError:
        return False


def _fetch(url: str, root: Path, rel: str) -> None:
    if _present(root, rel):
        print(f"present  {rel}")
        return
    _install(root, rel, url, lambda f: _stream(url, f, rel, FILE_BYTES.get(rel)))


def download(data_dir: str | Path | None = None, mirror: str | None = None) -> Path:
    """Fill the data folder: from ``mirror``/<path> for every file SHA256SUMS lists, else from the
    upstream sources plus locally derived test labels. Valid files already there are kept."""
    root = _data_dir_path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    if mirror:
        for rel in (r for r in load_checksums() if not r.endswith(CONTENT)):
            _fetch(f"{mirror.rstrip('/')}/{rel}", root, rel)
        return root
    for split in SPLIT_SIZES:
        mat, amat = split_path(split, ".mat"), split_path(split, ".amat")
        if _present(root, mat):
            print(f"present  {mat}")
            continue
        _fetch(UPSTREAM_URLS[amat], root, amat)
        if (root / mat).exists():  # a corrupt .mat would shadow the good .amat: loading prefers .mat
            (root / mat).unlink()
            print(f"removed  {mat} (corrupt; {amat} replaces it)")
    for rel in (MNIST_IMAGES, MNIST_LABELS):
        _fetch(UPSTREAM_URLS[rel], root, rel)
    if _present(root, LABELS):
        print(f"present  {LABELS}")
    else:
        labels = derive_test_labels(load_binarized_mnist("test", root), *load_mnist_test(root))
        _install(root, LABELS, "test labels derived from the test split and MNIST t10k",
                 lambda f: np.savetxt(f, labels, fmt="%d"))
    return root


# ---------------------------------------------------------------- check and CLI

def check(data_dir: str | Path | None = None, dataset: str = DEFAULT_DATASET) -> bool:
    """Print each needed file's checksum status, each split's shape and the test label counts;
    True if all is well."""
    if check_dataset(dataset) != DEFAULT_DATASET:
        return check_fashion(data_dir, dataset)
    root = resolve_data_dir(data_dir)
    print(f"data folder: {root}")
    ok = True
    for rel in [*(_split_file(root, s) for s in SPLIT_SIZES), LABELS, MNIST_IMAGES, MNIST_LABELS]:
        if not (root / rel).is_file():
            status, problem = "MISSING", None
        else:
            try:
                problem = _file_problem(root / rel, rel, str(root / rel))
            except DataError as e:
                problem = str(e)
            status = "MISMATCH" if problem else "OK"
        ok &= status == "OK"
        print(f"{status:8} {rel}" + (f"  ({problem})" if problem else ""))
    # Shapes and labels are read without verification: the statuses above already report that.
    try:
        for split in SPLIT_SIZES:
            print(f"{split}: shape {load_binarized_mnist(split, root, verify=False).shape}")
        counts = np.bincount(load_test_labels(root, verify=False), minlength=10)
        print("test labels per digit: " + " ".join(f"{d}:{n}" for d, n in enumerate(counts)))
    except DataError as e:
        print(f"error: {e}")
        ok = False
    return ok


def check_fashion(data_dir: str | Path | None, dataset: str) -> bool:
    """`data check` for a Fashion-MNIST data set: the IDX files and the fixed binarizations
    against FASHION_SUMS_FILE, then each split's shape and label counts; True if all is well."""
    root = fashion_root(data_dir)
    print(f"Fashion-MNIST folder: {root}")
    ok = True
    for part in FASHION_FILES:
        for what, load, names in ((f"{part} images and labels", _fashion_set, FASHION_FILES[part]),
                                  (f"{part} fixed binarization", _fashion_static, (STATIC.format(part=part),))):
            try:
                load(root, part)
                status, problem = "OK", None
            except DataError as e:
                status, problem = ("MISSING" if "not found" in str(e) else "MISMATCH"), str(e)
            ok &= problem is None
            print(f"{status:8} {what} ({', '.join(names)})" + (f"  ({problem})" if problem else ""))
            if problem and status == "MISSING":
                return False  # the other checks read the same files
    if ok:
        for split in SPLIT_SIZES:
            x = load_dataset(dataset, split, data_dir)
            counts = np.bincount(load_dataset_labels(dataset, split, data_dir), minlength=10)
            shape = (len(x), len(x.images[0])) if isinstance(x, DynamicBinarizer) else x.shape
            drawn = " (drawn anew every epoch)" if isinstance(x, DynamicBinarizer) else ""
            print(f"{split}: shape {tuple(shape)}{drawn}; labels per class: "
                  + " ".join(f"{d}:{n}" for d, n in enumerate(counts)))
    return ok


# A DataError raised here is reported by the CLI's main, which exits non-zero.
def _run_download(args: argparse.Namespace) -> int:
    print(f"data ready in {download(args.data_dir, args.mirror)}")
    return 0


def _run_check(args: argparse.Namespace) -> int:
    return 0 if check(args.data_dir, args.dataset) else 1


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `data download` and `data check`; each sets ``func(args) -> exit code``."""
    parser = subparsers.add_parser("data", help="download or check the data sets",
                                   description="Obtain and verify the data sets (see data/README.md).")
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="{download,check}")
    folder_help = "data folder (default: $SCVAE_DATA, else the repository's data/)"
    fetch = commands.add_parser(
        "download", help="fetch the data and verify it against data/SHA256SUMS",
        description="Fetch every data file (upstream sources by default; the test labels are then "
                    "derived locally), verify it, and move it into place. Valid files are kept.")
    fetch.add_argument("--data-dir", type=Path, help=folder_help)
    fetch.add_argument("--mirror", metavar="URL",
                       help="fetch the files as laid out in SHA256SUMS from URL/<path> instead")
    fetch.set_defaults(func=_run_download)
    verify = commands.add_parser(
        "check", help="verify the data folder and print shapes and label counts",
        description="Print each file's checksum status (OK / MISSING / MISMATCH), each split's "
                    "shape and the test label counts; exit non-zero on any problem.")
    verify.add_argument("--data-dir", type=Path, help=folder_help)
    verify.add_argument("--dataset", default=DEFAULT_DATASET, choices=DATASETS, metavar="DATASET",
                        help=f"the data set to check: {' | '.join(DATASETS)} (default: {DEFAULT_DATASET}); "
                             "Fashion-MNIST's are read from the data folder's fashion-mnist/, else from Debian's "
                             f"{FASHION_ROOT} (`make fashion`)")
    verify.set_defaults(func=_run_check)
