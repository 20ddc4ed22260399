"""Data layer: loading, validation, checksums, download (against loopback servers only) and CLI."""
import functools
import gzip
import hashlib
import os
import re
import shutil
import threading
import types
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from scvae_core import data
from scvae_core.cli import main
from scvae_core.data import (
    SPLIT_SIZES,
    DataError,
    DynamicBinarizer,
    derive_test_labels,
    load_binarized_mnist,
    load_fashion_mnist,
    load_mnist_test,
    load_test_labels,
    resolve_data_dir,
)

TRAIN_MAT = "binarized_mnist/binarized_mnist_train.mat"
VALID_MAT = "binarized_mnist/binarized_mnist_valid.mat"
TEST_MAT = "binarized_mnist/binarized_mnist_test.mat"


# ---------------------------------------------------------------- helpers

def copy_data(src: Path, dst: Path) -> Path:
    """A writable copy of the (read-only) data folder."""
    shutil.copytree(src, dst, copy_function=shutil.copyfile)
    for path in [dst, *dst.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dst


def flip_byte(path: Path, at: int = 1000) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


def write_amat(path: Path, x: np.ndarray) -> None:
    """Upstream .amat layout: one image per line, values separated by single spaces."""
    text = np.full((len(x), 2 * x.shape[1]), ord(" "), np.uint8)
    text[:, 0::2] = x + ord("0")
    text[:, -1] = ord("\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.tobytes())


def write_idx(path: Path, arr: np.ndarray) -> None:
    raw = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape) + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def sha(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def no_partial_files(root: Path) -> bool:
    return not list(root.rglob("*.part"))


class _Handler(SimpleHTTPRequestHandler):
    """Serves a folder; paths in ``truncate`` get the full Content-Length but half the body."""

    truncate: frozenset = frozenset()
    requests: list

    def log_message(self, *args):
        pass

    def do_GET(self):
        rel = self.path.lstrip("/")
        self.requests.append(rel)
        if rel not in self.truncate:
            return super().do_GET()
        body = (Path(self.directory) / rel).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True


@pytest.fixture
def serve(monkeypatch):
    """serve(folder, truncate=()) -> (base URL, list of requested paths); loopback only."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    running = []

    def start(root: Path, truncate=()):
        handler = type("Handler", (_Handler,), {"truncate": frozenset(truncate), "requests": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}", handler.requests

    yield start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------- data folder

@pytest.mark.unit
def test_resolve_data_dir_order(tmp_path, monkeypatch):
    env, arg = tmp_path / "env", tmp_path / "arg"
    env.mkdir(), arg.mkdir()
    monkeypatch.setenv("SCVAE_DATA", str(env))
    assert resolve_data_dir(arg) == arg
    assert resolve_data_dir() == env
    monkeypatch.delenv("SCVAE_DATA")
    assert resolve_data_dir() == data.REPO_ROOT / "data"


@pytest.mark.unit
def test_missing_folder_says_how_to_fix(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as e:
        load_binarized_mnist("train", missing)
    for part in (str(missing), "--data-dir", "SCVAE_DATA", "scvae data download"):
        assert part in str(e.value)


@pytest.mark.smoke
def test_repo_checksums_match_shared_list(data_dir):
    shared = dict(reversed(line.split()) for line in (data_dir / "SHA256SUMS").read_text().splitlines())
    ours = data.load_checksums()
    assert {rel: ours[rel] for rel in shared} == shared
    assert {rel for rel in ours if rel not in shared} == {
        f"binarized_mnist/binarized_mnist_{s}.amat#content" for s in SPLIT_SIZES}


# ---------------------------------------------------------------- the real data

@pytest.fixture(scope="session")
def splits(data_dir):
    return {split: load_binarized_mnist(split, data_dir) for split in SPLIT_SIZES}


@pytest.mark.smoke
def test_splits_have_standard_shapes(splits):
    assert {s: x.shape for s, x in splits.items()} == {
        "train": (50000, 784), "valid": (10000, 784), "test": (10000, 784)}
    for x in splits.values():
        assert x.dtype == np.uint8 and x.flags.c_contiguous and x.max() == 1


@pytest.mark.smoke
def test_test_labels_match_mnist(data_dir):
    labels = load_test_labels(data_dir)
    gray, gray_labels = load_mnist_test(data_dir)
    assert labels.dtype == np.int64 and labels.shape == (10000,)
    assert gray.shape == (10000, 28, 28) and gray.dtype == np.uint8 and gray_labels.dtype == np.int64
    assert (np.diff(labels) >= 0).all()  # the test file is sorted by class
    assert np.bincount(labels).tolist() == np.bincount(gray_labels).tolist()


@pytest.mark.smoke
def test_derive_test_labels_reproduces_labels_file(data_dir, splits):
    gray, gray_labels = load_mnist_test(data_dir)
    derived = derive_test_labels(splits["test"], gray, gray_labels)
    assert (derived == load_test_labels(data_dir)).all()


@pytest.mark.smoke
def test_amat_content_hashes_are_those_of_the_mat_arrays(splits):
    sums = data.load_checksums()
    for split, x in splits.items():
        assert sums[f"binarized_mnist/binarized_mnist_{split}.amat{data.CONTENT}"] == sha(x)


@pytest.mark.smoke
def test_amat_file_loads_like_mat(splits, tmp_path):
    write_amat(tmp_path / "binarized_mnist/binarized_mnist_test.amat", splits["test"])
    assert (load_binarized_mnist("test", tmp_path) == splits["test"]).all()  # content hash verified


@pytest.mark.smoke
def test_mat_is_preferred_over_amat(data_dir, tmp_path):
    (tmp_path / "binarized_mnist").mkdir()
    shutil.copyfile(data_dir / TEST_MAT, tmp_path / TEST_MAT)
    (tmp_path / "binarized_mnist/binarized_mnist_test.amat").write_text("garbage\n")
    assert load_binarized_mnist("test", tmp_path).shape == (10000, 784)


@pytest.mark.smoke
def test_verification_is_cached_per_path_size_and_mtime(data_dir, tmp_path, monkeypatch):
    shutil.copyfile(data_dir / VALID_MAT, tmp_path / "v.mat")
    (tmp_path / "binarized_mnist").mkdir()
    os.replace(tmp_path / "v.mat", tmp_path / VALID_MAT)
    hashed = []

    def counting_sha256(*args):
        hashed.append(1)
        return hashlib.sha256(*args)

    monkeypatch.setattr(data, "hashlib", types.SimpleNamespace(sha256=counting_sha256))
    load_binarized_mnist("valid", tmp_path)
    load_binarized_mnist("valid", tmp_path)
    assert len(hashed) == 1
    os.utime(tmp_path / VALID_MAT, ns=(0, 10**9))  # a changed file must be hashed again
    load_binarized_mnist("valid", tmp_path)
    assert len(hashed) == 2


# ---------------------------------------------------------------- bad inputs

@pytest.fixture
def bad_copy(data_dir, tmp_path):
    return copy_data(data_dir, tmp_path / "data")


@pytest.mark.smoke
def test_wrong_checksum_names_file_digests_and_fix(bad_copy):
    flip_byte(bad_copy / TRAIN_MAT)
    with pytest.raises(DataError) as e:
        load_binarized_mnist("train", bad_copy)
    message = str(e.value)
    actual = hashlib.sha256((bad_copy / TRAIN_MAT).read_bytes()).hexdigest()
    for part in (str(bad_copy / TRAIN_MAT), data.load_checksums()[TRAIN_MAT], actual, "scvae data download"):
        assert part in message


@pytest.mark.smoke
def test_missing_files(bad_copy):
    (bad_copy / VALID_MAT).unlink()
    (bad_copy / data.LABELS).unlink()
    with pytest.raises(DataError, match=r"valid split of binarized MNIST is missing.*scvae data download"):
        load_binarized_mnist("valid", bad_copy)
    with pytest.raises(DataError, match=re.escape(f"{bad_copy / data.LABELS} is missing")):
        load_test_labels(bad_copy)


@pytest.mark.smoke
def test_truncated_gzip(bad_copy):
    path = bad_copy / data.MNIST_IMAGES
    path.write_bytes(path.read_bytes()[:100000])
    with pytest.raises(DataError, match="checksum mismatch"):
        load_mnist_test(bad_copy)
    with pytest.raises(DataError, match=re.escape(str(path)) + r": cannot read it .*truncated or corrupt"):
        load_mnist_test(bad_copy, verify=False)


@pytest.mark.unit
def test_bad_idx_header(tmp_path):
    for header in (b"\0\0\x0d\x01" + b"\0" * 8, b"\0\0\x08"):  # type 0x0d (floats); cut short
        (tmp_path / "x.idx").write_bytes(header)
        with pytest.raises(DataError, match="not an IDX file of unsigned bytes"):
            data.read_idx(tmp_path / "x.idx")
    write_idx(tmp_path / "y.idx", np.zeros((3, 28, 28), np.uint8))
    (tmp_path / "y.idx").write_bytes((tmp_path / "y.idx").read_bytes()[:-5])
    with pytest.raises(DataError, match=r"announces shape \(3, 28, 28\).*truncated"):
        data.read_idx(tmp_path / "y.idx")


@pytest.mark.unit
@pytest.mark.parametrize("case, content, message", [
    ("wrong shape", {"X": np.zeros((10, 784), np.uint8)}, r"shape \(10, 784\), expected \(3, 784\)"),
    ("non-binary", {"X": np.full((3, 784), 2, np.uint8)}, "values other than 0 and 1 .*not statically binarized"),
    ("no X", {"Y": np.zeros((3, 784), np.uint8)}, "no array 'X'"),
    ("corrupt", b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 4, "unreadable .mat file"),
])
def test_bad_mat_files(tmp_path, monkeypatch, case, content, message):
    monkeypatch.setitem(SPLIT_SIZES, "valid", 3)
    path = tmp_path / VALID_MAT
    path.parent.mkdir()
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        scipy.io.savemat(path, content)
    with pytest.raises(DataError, match=re.escape(str(path)) + ".*" + message):
        load_binarized_mnist("valid", tmp_path, verify=False)
    with pytest.raises(DataError, match="checksum mismatch"):  # verification catches it first
        load_binarized_mnist("valid", tmp_path)


@pytest.mark.unit
@pytest.mark.parametrize("line, message", [
    ("0 1 2", r"line 2 holds '2', not a 0 or 1"),
    ("0 10 1", r"line 2 holds '10', not a 0 or 1"),
    ("0.5 1", r"line 2 holds '0.5', not a 0 or 1"),
    ("0 1 1", r"line 2 has 3 values, expected 784"),
])
def test_bad_amat_files(tmp_path, line, message):
    path = tmp_path / "binarized_mnist/binarized_mnist_valid.amat"
    write_amat(path, np.zeros((1, 784), np.uint8))
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(DataError, match=re.escape(str(path)) + ": " + message):
        load_binarized_mnist("valid", tmp_path)


@pytest.mark.unit
def test_amat_with_other_data_fails_content_check(tmp_path, monkeypatch):
    monkeypatch.setitem(SPLIT_SIZES, "valid", 2)
    write_amat(tmp_path / "binarized_mnist/binarized_mnist_valid.amat", np.ones((2, 784), np.uint8))
    with pytest.raises(DataError, match=r"checksum mismatch: expected sha256 069b4f0b.*amat#content"):
        load_binarized_mnist("valid", tmp_path)
    assert load_binarized_mnist("valid", tmp_path, verify=False).sum() == 2 * 784


@pytest.mark.smoke
def test_bad_labels_file(bad_copy):
    path = bad_copy / data.LABELS
    path.write_text("\n".join(["3"] * 9999) + "\n")
    with pytest.raises(DataError, match="checksum mismatch"):
        load_test_labels(bad_copy)
    with pytest.raises(DataError, match=re.escape(str(path)) + ": expected 10000 labels in 0-9, found 9999"):
        load_test_labels(bad_copy, verify=False)
    path.write_text("3\nseven\n")
    with pytest.raises(DataError, match="not one integer label per line"):
        load_test_labels(bad_copy, verify=False)


# ---------------------------------------------------------------- Fashion-MNIST and dynamic binarization

@pytest.fixture
def fashion(tmp_path):
    rng = np.random.default_rng(0)
    sets = {split: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8))
            for split, n in (("train", 6), ("test", 4))}
    for split, (images, labels) in sets.items():
        prefix = "train" if split == "train" else "t10k"
        write_idx(tmp_path / "debian" / f"{prefix}-images-idx3-ubyte.gz", images)  # Debian: gzipped
        write_idx(tmp_path / "debian" / f"{prefix}-labels-idx1-ubyte.gz", labels)
        raw = tmp_path / "torchvision" / "FashionMNIST" / "raw"  # torchvision: extracted
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return tmp_path, sets


@pytest.mark.unit
def test_fashion_mnist_layouts(fashion):
    root, sets = fashion
    for layout in ("debian", "torchvision"):
        for split, (images, labels) in sets.items():
            x, y = load_fashion_mnist(split, root / layout)
            assert x.shape == (len(images), 784) and x.dtype == np.uint8 and (x == images.reshape(len(x), -1)).all()
            assert y.dtype == np.int64 and (y == labels).all()


@pytest.mark.unit
def test_fashion_mnist_binarization(fashion):
    root = fashion[0] / "debian"
    a, _ = load_fashion_mnist("train", root, binarize="static", seed=1)
    b, _ = load_fashion_mnist("train", root, binarize="static", seed=1)
    c, _ = load_fashion_mnist("train", root, binarize="static", seed=2)
    assert set(np.unique(a)) <= {0, 1} and (a == b).all() and (a != c).any()
    dynamic, labels = load_fashion_mnist("train", root, binarize="dynamic")
    assert isinstance(dynamic, DynamicBinarizer) and len(dynamic) == len(labels) == 6
    assert (dynamic.epoch(3) == dynamic.epoch(3)).all() and (dynamic.epoch(3) != dynamic.epoch(4)).any()


@pytest.mark.unit
def test_fashion_mnist_errors(fashion, tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path / "empty")
    root = fashion[0] / "debian"
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="expected 4 labels in 0-9 to match t10k-images"):
        load_fashion_mnist("test", root)


@pytest.mark.smoke
def test_dynamic_binarizer_samples_pixel_over_255(data_dir):
    images = np.zeros((500, 784), np.uint8)
    images[:, 100:] = 255
    images[:, 200:] = 64
    x = DynamicBinarizer(images, seed=5).epoch(0)
    assert x.dtype == np.uint8 and (x[:, :100] == 0).all() and (x[:, 100:200] == 1).all()
    assert abs(x[:, 200:].mean() - 64 / 255) < 0.005
    gray, _ = load_mnist_test(data_dir)  # grayscale MNIST works the same, any shape
    sample = DynamicBinarizer(gray).epoch(0)
    assert sample.shape == gray.shape and abs(sample.mean() - gray.mean() / 255) < 0.002


# ---------------------------------------------------------------- download

@pytest.mark.smoke
def test_download_from_mirror(data_dir, tmp_path, serve):
    url, requests = serve(copy_data(data_dir, tmp_path / "served"))
    out = tmp_path / "out"
    assert main(["data", "download", "--data-dir", str(out), "--mirror", url]) == 0
    for rel in (r for r in data.load_checksums() if not r.endswith(data.CONTENT)):
        assert (out / rel).read_bytes() == (data_dir / rel).read_bytes()
    assert data.check(out) and no_partial_files(out)
    requests.clear()
    assert main(["data", "download", "--data-dir", str(out), "--mirror", url]) == 0
    assert requests == []  # present and valid files are kept


@pytest.mark.smoke
def test_download_short_read_leaves_no_file(data_dir, tmp_path, serve):
    url, _ = serve(copy_data(data_dir, tmp_path / "served"), truncate={TRAIN_MAT})
    out = tmp_path / "out"
    size = (data_dir / TRAIN_MAT).stat().st_size
    with pytest.raises(DataError, match=rf"{TRAIN_MAT}: connection closed after {size // 2} of {size} bytes"):
        data.download(out, mirror=url)
    assert not (out / TRAIN_MAT).exists() and no_partial_files(out)


@pytest.mark.smoke
def test_download_bad_checksum_leaves_no_file(data_dir, tmp_path, serve):
    served = copy_data(data_dir, tmp_path / "served")
    flip_byte(served / data.MNIST_LABELS)
    url, _ = serve(served)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=rf"{data.MNIST_LABELS}: checksum mismatch.*nothing was written"):
        data.download(out, mirror=url)
    assert not (out / data.MNIST_LABELS).exists() and no_partial_files(out)


@pytest.mark.unit
def test_download_http_error(tmp_path, serve):
    url, _ = serve(tmp_path)
    with pytest.raises(DataError, match="download failed .*404"):
        data.download(tmp_path / "out", mirror=url)
    assert no_partial_files(tmp_path)


@pytest.fixture
def upstream(data_dir, splits, tmp_path, monkeypatch):
    """A fake upstream: tiny train/valid .amat files, the real test split as .amat, MNIST t10k."""
    tiny = {"train": np.eye(3, 784, dtype=np.uint8), "valid": np.eye(2, 784, k=5, dtype=np.uint8)}
    served = tmp_path / "upstream"
    for split, x in {**tiny, "test": splits["test"]}.items():
        write_amat(served / f"binarized_mnist_{split}.amat", x)
    for rel in (data.MNIST_IMAGES, data.MNIST_LABELS):
        shutil.copyfile(data_dir / rel, served / Path(rel).name)
    sums = data.load_checksums() | {f"binarized_mnist/binarized_mnist_{s}.amat#content": sha(x) for s, x in tiny.items()}
    (tmp_path / "SHA256SUMS").write_text("".join(f"{d}  {rel}\n" for rel, d in sums.items()))
    monkeypatch.setattr(data, "SUMS_FILE", tmp_path / "SHA256SUMS")
    for split, x in tiny.items():
        monkeypatch.setitem(SPLIT_SIZES, split, len(x))
    return served, tiny


@pytest.mark.smoke
def test_download_from_upstream_derives_labels(data_dir, splits, tmp_path, upstream, serve, monkeypatch):
    served, tiny = upstream
    url, _ = serve(served)
    for rel in data.UPSTREAM_URLS:
        monkeypatch.setitem(data.UPSTREAM_URLS, rel, f"{url}/{Path(rel).name}")
    out = tmp_path / "out"
    (out / "binarized_mnist").mkdir(parents=True)
    (out / TEST_MAT).write_bytes(b"corrupt")  # must not shadow the downloaded .amat
    data.download(out)
    assert not (out / TEST_MAT).exists()
    assert (out / data.LABELS).read_bytes() == (data_dir / data.LABELS).read_bytes()
    assert (load_binarized_mnist("test", out) == splits["test"]).all()
    assert (load_binarized_mnist("train", out) == tiny["train"]).all()
    assert data.check(out) and no_partial_files(out)


@pytest.mark.smoke
def test_download_upstream_amat_with_other_data_leaves_no_file(tmp_path, upstream, serve, monkeypatch):
    served, _ = upstream
    write_amat(served / "binarized_mnist_valid.amat", np.zeros((2, 784), np.uint8))
    url, _ = serve(served)
    for rel in data.UPSTREAM_URLS:
        monkeypatch.setitem(data.UPSTREAM_URLS, rel, f"{url}/{Path(rel).name}")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"binarized_mnist_valid.amat: checksum mismatch.*amat#content"):
        data.download(out)
    assert (out / "binarized_mnist/binarized_mnist_train.amat").is_file()
    assert not (out / "binarized_mnist/binarized_mnist_valid.amat").exists() and no_partial_files(out)


# ---------------------------------------------------------------- CLI

@pytest.mark.smoke
def test_cli_check_reports_shapes_labels_and_checksums(data_dir, capsys):
    assert main(["data", "check", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    for part in ("(50000, 784)", "(10000, 784)", f"OK       {TRAIN_MAT}",
                 "0:980 1:1135 2:1032 3:1010 4:982 5:892 6:958 7:1028 8:974 9:1009"):
        assert part in out


@pytest.mark.smoke
def test_cli_check_fails_on_problems(bad_copy, capsys):
    (bad_copy / VALID_MAT).unlink()
    flip_byte(bad_copy / data.MNIST_IMAGES)
    assert main(["data", "check", "--data-dir", str(bad_copy)]) != 0
    out = capsys.readouterr().out
    assert f"MISSING  {VALID_MAT}" in out and f"MISMATCH {data.MNIST_IMAGES}" in out and f"OK       {TEST_MAT}" in out
    assert main(["data", "check", "--data-dir", str(bad_copy / "nowhere")]) != 0


@pytest.mark.unit
@pytest.mark.parametrize("argv", [["data"], ["data", "download"], ["data", "check"]])
def test_cli_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0 and f"usage: scvae {' '.join(argv)}" in capsys.readouterr().out
