"""Result files: where they live, how they are written (atomically, with provenance)
and read (schema-checked). The one way data flows: run -> results/<preset>/ -> book."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = REPO_ROOT / "results"
PAPER_REPORTED = REPO_ROOT / "data" / "paper_reported.json"
PUBLISHED = REPO_ROOT / "data" / "published_nll.json"  # other papers' numbers, for comparison


class ResultError(Exception):
    """A result file that is missing, corrupt or of another schema; says how to fix it."""


@dataclass(frozen=True)
class RunPaths:
    """Files of one (preset, model, seed) run under ``root/<preset>/<model>/seed<k>/``."""

    root: Path
    preset: str
    model: str
    seed: int

    @property
    def dir(self) -> Path:
        return Path(self.root) / self.preset / self.model / f"seed{self.seed}"

    train_json = property(lambda self: self.dir / "train.json")
    eval_json = property(lambda self: self.dir / "eval.json")
    figures_npz = property(lambda self: self.dir / "figures.npz")
    # Checkpoints are large and machine-local: git ignores them (see .gitignore).
    last_ckpt = property(lambda self: self.dir / "checkpoints" / "last.pt")
    best_ckpt = property(lambda self: self.dir / "checkpoints" / "best.pt")

    # A preset with eval_epochs keeps the best-so-far weights at each of them and evaluates each.
    def best_ckpt_at(self, epoch: int | None) -> Path:
        return self.best_ckpt if epoch is None else self.dir / "checkpoints" / f"best-e{epoch:03d}.pt"

    def eval_json_at(self, epoch: int | None) -> Path:
        return self.eval_json if epoch is None else self.dir / f"eval-e{epoch:03d}.json"

    def figures_npz_at(self, epoch: int | None) -> Path:
        return self.figures_npz if epoch is None else self.dir / f"figures-e{epoch:03d}.npz"

    def command(self, verb: str) -> str:
        """The command that (re)creates this run's files: quoted in error messages."""
        return f"scvae {verb} {self.model} --preset {self.preset} --seed {self.seed}"


def _git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def describe_device(device: str = "cpu") -> str:
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})"


def provenance(seed: int | None = None, device: str = "cpu") -> dict:
    """Who made a result: code revision, versions, machine, seed, time."""
    versions = {}
    for pkg in ("scvae-core", "torch", "numpy", "scikit-learn", "openTSNE", "scipy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "git_revision": _git_revision(),
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": describe_device(device),
        "seed": seed,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, fsync, then rename: a reader
    sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, kind: str, payload: dict) -> None:
    doc = {"schema_version": SCHEMA_VERSION, "kind": kind, **payload}
    data = json.dumps(doc, indent=1, sort_keys=False, default=_jsonable).encode() + b"\n"
    _atomic_write(path, lambda f: f.write(data))


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot store {type(o).__name__} in a result file")


def read_json(path: Path, kind: str, required: tuple[str, ...] = (), fix: str = "") -> dict:
    """Load a result file and check it is the ``kind`` and schema this code writes."""
    path = Path(path)
    hint = f" To fix: {fix}" if fix else " Re-create it with the scvae command that wrote it."
    if not path.exists():
        raise ResultError(f"{path}: missing.{hint}")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultError(f"{path}: not valid JSON ({e}); the file is corrupt.{hint}") from None
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise ResultError(f"{path}: expected a {kind!r} result, found {doc.get('kind') if isinstance(doc, dict) else type(doc).__name__!r}.{hint}")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ResultError(
            f"{path}: schema version {doc.get('schema_version')} but this code reads {SCHEMA_VERSION}; "
            f"the file is outdated.{hint}"
        )
    missing = [k for k in ("provenance", *required) if k not in doc]
    if missing:
        raise ResultError(f"{path}: incomplete, missing {', '.join(missing)}.{hint}")
    return doc


def write_npz(path: Path, **arrays) -> None:
    def write(f):
        np.savez_compressed(f, **arrays)

    _atomic_write(path, write)


def read_npz(path: Path, required: tuple[str, ...] = (), fix: str = "") -> dict[str, np.ndarray]:
    path = Path(path)
    hint = f" To fix: {fix}" if fix else ""
    if not path.exists():
        raise ResultError(f"{path}: missing.{hint}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise ResultError(f"{path}: unreadable npz ({e}); the file is corrupt.{hint}") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ResultError(f"{path}: missing arrays {', '.join(missing)}.{hint}")
    return arrays
