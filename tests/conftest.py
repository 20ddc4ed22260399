"""Shared fixtures, and the test tiers: every test carries exactly one of the markers
registered in pyproject.toml (unit, smoke, book); `make test-fast` runs the unit tier."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from scvae_core.runner.executor import DEFAULT_THREADS
from scvae_core.results import REPO_ROOT, processor_name

TIERS = ("unit", "smoke", "book")
# The fixtures that need the data or run a workload: a smoke test uses one, a unit test none.
HEAVY = ("data_dir", "fashion_dir", "smoke_results", "quick_run")


# Free disk the smoke and book tiers need under the temporary folder: the shared smoke results
# (~2 GB, kept for the session) and the largest test's own folder (~1 GB, removed when it passes).
NEEDED_GIB = 3


def _free_gib() -> float:
    return shutil.disk_usage(tempfile.gettempdir()).free / 2**30


def pytest_report_header():
    # What differs between the machines this suite runs on, printed first so a failed log says it.
    return f"processor: {processor_name()}, {os.cpu_count()} CPUs; free disk under {tempfile.gettempdir()}: {_free_gib():.1f} GiB"


def pytest_collection_finish(session):
    # A disk that fills mid-run fails tests anywhere with unrelated errors (CI of eea30d0): say so first.
    heavy = any(item.get_closest_marker(tier) for item in session.items for tier in ("smoke", "book"))
    if heavy and (free := _free_gib()) < NEEDED_GIB:
        raise pytest.UsageError(
            f"only {free:.1f} GiB free under {tempfile.gettempdir()}, and the smoke and book tests need about "
            f"{NEEDED_GIB} GiB there: free some space (old clones, /tmp/pytest-of-*), or point TMPDIR at a larger "
            "disk; `make test-fast` (the unit tier) needs none")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: every collected test is checked
def pytest_collection_modifyitems(items):
    wrong = []
    for item in items:
        tiers = {m.name for m in item.iter_markers()} & set(TIERS)
        heavy = bool(set(HEAVY) & set(item.fixturenames))  # fixturenames: with those they use
        if len(tiers) != 1:
            wrong.append(f"{item.nodeid}: marked {sorted(tiers) or 'with no tier'}")
        elif tiers == {"unit"} and heavy:
            wrong.append(f"{item.nodeid}: marked unit, but it uses the data or runs a workload (mark it smoke)")
        elif tiers == {"smoke"} and not heavy:
            wrong.append(f"{item.nodeid}: marked smoke, but it uses neither data nor a workload (mark it unit)")
    if wrong:
        raise pytest.UsageError("each test needs exactly one tier marker (unit: no data, no book; smoke: the "
                                "data or a workload; book: the built book), e.g. `pytestmark = pytest.mark.unit`:\n  "
                                + "\n  ".join(wrong))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data: $SCVAE_DATA, else the shared folder ../shared/data beside the repository.
    Absent data fails the tests that need it, never skips them."""
    path = Path(os.environ.get("SCVAE_DATA") or REPO_ROOT.parent / "shared" / "data").resolve()
    if not (path / "binarized_mnist").is_dir() or not (path / "mnist").is_dir():
        pytest.fail(f"test data not found in {path}: set SCVAE_DATA to a folder holding binarized_mnist/ "
                    "and mnist/ (the project's shared data folder), or run `scvae data download`")
    return path


@pytest.fixture(scope="session")
def fashion_dir(data_dir) -> Path:
    """Fashion-MNIST's IDX files where a run finds them (the data folder's fashion-mnist/, else
    Debian's dataset-fashion-mnist). Absent, the tests that need them fail, never skip."""
    from scvae_core.data import FASHION_FILES, DataError, _find_fashion_file, fashion_root

    root = fashion_root(data_dir)
    try:
        for name in (name for names in FASHION_FILES.values() for name in names):
            _find_fashion_file(root, name)
    except DataError as e:
        pytest.fail(f"{e} (`make fashion` installs it; the Makefile's pytest target does so first)")
    return root


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory, data_dir) -> Path:
    """Every stage of the smoke presets (smoke, smoke-long) on the CPU, produced once per test
    run by the CLI as a reader would. Shared: a test that changes a run copies it first."""
    results_dir = tmp_path_factory.mktemp("smoke-results")
    for preset in ("smoke", "smoke-long"):
        cmd = [sys.executable, "-m", "scvae_core.cli", "reproduce", "all", "--preset", preset, "--device", "cpu",
               "--results-dir", str(results_dir), "--data-dir", str(data_dir), "--no-progress"]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
        if done.returncode != 0:
            pytest.fail(f"scvae reproduce all --preset {preset} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return results_dir


@pytest.fixture
def worker_threads():
    """This process at the thread count of the `scvae reproduce` workers that wrote the session's
    smoke results, for tests that compare with them bitwise: float sums agree only at one thread
    count (on an Intel Xeon with AVX-512, 1 and 2 threads part by 1e-5 in two smoke epochs; on the
    AMD EPYC they did not). Yields the count, for subprocesses' OMP_NUM_THREADS."""
    before = torch.get_num_threads()
    torch.set_num_threads(DEFAULT_THREADS)
    yield DEFAULT_THREADS
    torch.set_num_threads(before)
