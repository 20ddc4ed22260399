"""Shared fixtures."""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data: $SCVAE_DATA, else the shared folder ../shared/data beside the repository.
    Absent data fails the tests that need it, never skips them."""
    path = Path(os.environ.get("SCVAE_DATA") or REPO_ROOT.parent / "shared" / "data").resolve()
    if not (path / "binarized_mnist").is_dir() or not (path / "mnist").is_dir():
        pytest.fail(f"test data not found in {path}: set SCVAE_DATA to a folder holding binarized_mnist/ "
                    "and mnist/ (the project's shared data folder), or run `scvae data download`")
    return path
