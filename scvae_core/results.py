"""Result files: where they live, how they are written (atomically, with provenance)
and read (schema-checked). The one way data flows: run -> results/<preset>/ -> book."""
from __future__ import annotations

import errno
import glob
import json
import math
import os
import platform
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from .presets import DEFAULT_DATASET, check_dataset

SCHEMA_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS_DIR = REPO_ROOT / "results"
PAPER_REPORTED = REPO_ROOT / "data" / "paper_reported.json"
PUBLISHED = REPO_ROOT / "data" / "published_nll.json"  # other papers' numbers, for comparison


class ResultError(Exception):
    """A result file that is missing, corrupt or of another schema; says how to fix it."""


def preset_dir(results_dir: Path | str, preset: str, dataset: str = DEFAULT_DATASET) -> Path:
    """Where a preset's runs on ``dataset`` lie: ``results_dir/<preset>/`` for mnist-static (where
    every result lay before the data set was a setting), else ``results_dir/<dataset>/<preset>/``,
    the same layout below a folder of the data set's own."""
    return Path(results_dir) / ("" if dataset == DEFAULT_DATASET else dataset) / preset


@dataclass(frozen=True)
class RunPaths:
    """Files of one (preset, model, seed) run on a data set under
    ``preset_dir(results_dir, preset, dataset)/<model>/seed<k>/``."""

    results_dir: Path
    preset: str
    model: str
    seed: int
    dataset: str = DEFAULT_DATASET

    def __post_init__(self):
        check_seed(self.seed)
        check_dataset(self.dataset)

    @property
    def dir(self) -> Path:
        return preset_dir(self.results_dir, self.preset, self.dataset) / self.model / f"seed{self.seed}"

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
        dataset = "" if self.dataset == DEFAULT_DATASET else f" --dataset {self.dataset}"
        return f"scvae {verb} {self.model} --preset {self.preset} --seed {self.seed}{dataset}"


MAX_SEED = 2**32 - 1  # numpy's and torch's seeds are 32-bit


def check_seed(seed, option: str = "--seed") -> int:
    """A seed as every command takes it: an int in 0..2**32-1 (a bool or a string is refused)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{option} must be an integer in 0..{MAX_SEED}, got {seed!r}")
    return seed


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


def processor_name(device: str = "cpu") -> str:
    """The chip's model name: the GPU's, or the CPU's from /proc/cpuinfo."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def describe_device(device: str = "cpu") -> str:
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return processor_name(device)
    return f"{processor_name(device)} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})"


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


def current_umask() -> int:
    """The process's umask, read without changing it (os.umask can only set it) where Linux allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: Path | str) -> None:
    """mkstemp creates 0600 files; give a finished file the mode a plain open() would have,
    so that a shared results or data folder stays readable by the group the umask allows."""
    os.chmod(path, 0o666 & ~current_umask())


# A temporary whose writer cannot be asked (another machine on a shared folder, or older code
# that did not tag it) is stale once untouched this long; writing one takes seconds.
STALE_UNTAGGED_S = 3600


def temp_prefix(path: Path) -> str:
    """Hidden temporary of ``path`` tagged with the writer's host and pid, so that a later writer
    can tell a dead writer's leftover (a killed run's half checkpoint) from a live one's."""
    return f".{path.name}.{socket.gethostname()}-pid{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clean_stale_temporaries(path: Path, suffix: str = ".tmp") -> list[Path]:
    """Remove the temporaries of ``path`` left by writers that are dead; returns them."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    tagged = re.compile(rf"^\.{re.escape(path.name)}\.(.+)-pid(\d+)\.[^/]*{re.escape(suffix)}$")
    here = socket.gethostname()
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*{suffix}"):
        m = tagged.match(tmp.name)
        try:
            if m and m.group(1) == here:
                stale = not _alive(int(m.group(2)))
            else:
                stale = time.time() - tmp.stat().st_mtime > STALE_UNTAGGED_S
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except OSError:  # gone already, or not ours to remove
            pass
    return removed


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, fsync, then rename: a reader
    sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        honour_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """A copy of a result file's bytes, written atomically (``scvae compare --adopt``)."""
    _atomic_write(path, lambda f: f.write(data))


RESULTS_MARKER = ".scvae-results"  # in a results folder that scvae created (params.py trusts it)


def make_results_dir(results_dir: Path | str) -> None:
    """Create the results folder ``results_dir`` if it does not exist yet, with the marker file
    that says scvae made it: a notebook writes only into the repository's results/ or into
    such a folder, unless told otherwise (``params.py``). An existing folder is left as it is;
    one that cannot be made is left to :func:`check_writable` to report."""
    folder = Path(results_dir)
    if folder.exists():
        return
    try:
        folder.mkdir(parents=True)
        (folder / RESULTS_MARKER).write_text("Results written by scvae (scvae_core), which created this folder.\n")
    except OSError:
        pass


def check_writable(folder: Path | str, need_bytes: int, option: str = "--results-dir") -> Path:
    """Fail now, not after an hour of work, if results cannot be written under ``folder``:
    it must be (or become) a folder we can create files in, with ``need_bytes`` free."""
    folder = Path(folder)
    fix = f"pass {option} a writable folder with space, or free some"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=temp_prefix(folder / "probe"), suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except (FileExistsError, NotADirectoryError):
        raise ResultError(f"{option} {folder}: a file is in the way, not a folder. To fix: {fix}") from None
    except OSError as e:
        raise ResultError(f"{option} {folder}: cannot write there ({e.strerror or e}). To fix: {fix}") from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise ResultError(f"{option} {folder}: {free / 2**20:.1f} MiB free, but this run writes about "
                          f"{need_bytes / 2**20:.1f} MiB there. To fix: {fix}")
    return folder


# What a reader takes at most from one result file: a result JSON of the largest preset is well
# under 1 MiB and its figures.npz under 2 MiB (evaluate.RESULT_BYTES budgets both with a margin).
JSON_BYTES = 16 * 2**20
NPZ_BYTES = 64 * 2**20  # a figures.npz on disk ...
NPZ_ARRAY_BYTES = 256 * 2**20  # ... and all its arrays together, as their headers declare them


class IrregularFile(OSError):
    """Something where a result or lock file should be that is not a regular file (a symbolic
    link, a folder, a FIFO, a device) or is too large; its message says what it is."""


def _kind(mode: int) -> str | None:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def open_regular(path: Path | str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """``path`` opened (a file descriptor) without following a symbolic link, and only if it is a
    regular file: a link planted where a result or lock file goes must not redirect a write into
    its target, a FIFO must not block a reader, a folder is no result. Raises
    :class:`IrregularFile` saying what ``path`` is instead."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP and os.path.islink(path):
            raise IrregularFile(errno.ELOOP, f"a symbolic link (to {os.readlink(path)}), not a file", str(path)) \
                from None
        if e.errno == errno.EISDIR:
            raise IrregularFile(errno.EISDIR, "a folder, not a file", str(path)) from None
        raise
    kind = _kind(os.fstat(fd).st_mode)
    if kind:
        os.close(fd)
        raise IrregularFile(errno.EINVAL, f"{kind}, not a file", str(path))
    return fd


def read_regular(path: Path | str, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (see :func:`open_regular`), if it holds at most ``limit``."""
    with os.fdopen(open_regular(path), "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise IrregularFile(errno.EFBIG, f"larger than the {limit / 2**20:.0f} MiB a result file may have",
                            str(path))
    return data


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


_RECREATE = " Re-create it with the scvae command that wrote it."


def _open_result(path: Path, hint: str):
    """A result file opened for reading (:func:`open_regular`); missing, not a regular file or not
    openable, the ResultError that says which, with ``hint``."""
    try:
        return os.fdopen(open_regular(path), "rb")
    except FileNotFoundError:
        raise ResultError(f"{path}: missing.{hint}") from None
    except IrregularFile as e:
        raise ResultError(f"{path}: refused: it is {e.strerror}.{hint}") from None
    except OSError as e:
        raise ResultError(f"{path}: unreadable ({e.strerror or e}).{hint}") from None


def read_json(path: Path, kind: str, required: tuple[str, ...] = (), fix: str = "") -> dict:
    """Load a result file and check it is the ``kind`` and schema this code writes."""
    path = Path(path)
    hint = f" To fix: {fix}" if fix else _RECREATE
    try:
        with _open_result(path, hint) as f:
            data = f.read(JSON_BYTES + 1)
    except OSError as e:
        raise ResultError(f"{path}: unreadable ({e.strerror or e}).{hint}") from None
    if len(data) > JSON_BYTES:
        raise ResultError(f"{path}: refused: larger than the {JSON_BYTES / 2**20:.0f} MiB a result file may have.{hint}")
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultError(f"{path}: not valid JSON ({e}); the file is corrupt.{hint}") from None
    except RecursionError:
        raise ResultError(f"{path}: refused: nested too deeply to be a result file (corrupt or planted).{hint}") \
            from None
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


# Every string of a run's result file is a name (model, preset, layer, config value) except in
# prose: the provenance, the preset's settings and the fields named in PROSE_KEYS, which the
# code never parses. Prose may not hold markup (the book escapes it too, where it shows it).
NAME = re.compile(r"^[A-Za-z0-9_.+\-]*$")
PROSE = ("provenance", "preset_config")  # top-level fields that are prose throughout
# prose fields anywhere (the descriptions of fisher.py, evaluate.py and diagnostics.py)
PROSE_KEYS = ("gradient", "source", "tsne_skipped", "estimator", "not_defined")
MARKUP = re.compile(r"[<>&]")
NUMBER, INT = (int, float), int  # JSON writes 90.0 as a float and 90 as an int: both are numbers
TYPE_NAMES = {NUMBER: "a number", INT: "an integer", list: "a list", dict: "a dict"}
# The typed fields the tables and plots read, by kind: (path, type, (lowest, highest) or None).
FIELDS = {
    "eval": [*((("metrics", k), NUMBER, None) for k in ("nll_se", "elbo", "rec", "kl")),
             (("metrics", "nll"), NUMBER, (0, math.inf)), (("metrics", "svm_acc"), NUMBER, (0, 1)),
             *((("metrics", k), INT, (0, math.inf)) for k in ("active_units", "test_size", "nll_samples")),
             *((("fisher", k), NUMBER, (0, math.inf)) for k in ("encoder_mean", "decoder_mean", "model_mean")),
             (("fisher", "layers"), list, None), (("derivations",), dict, None), (("wall_time_s",), NUMBER, None)],
    "train": [(("history",), list, None), (("best_valid_elbo",), NUMBER, None), (("best_epoch",), INT, (1, math.inf)),
              (("epochs_run",), INT, (0, math.inf)), (("wall_time_s",), NUMBER, None)],
}
# Typed like FIELDS, but only where present: files written before these fields existed stay valid.
OPTIONAL_FIELDS = {
    "eval": [(("metrics", "linear_probe_acc"), NUMBER, (0, 1)), (("metrics", "linear_probe_fold_accs"), list, None),
             (("diagnostics",), dict, None), (("diagnostics", "mutual_information", "value"), NUMBER, None),
             (("diagnostics", "active_units", "count"), INT, (0, math.inf)),
             (("diagnostics", "rate_distortion", "rate"), NUMBER, None),
             (("diagnostics", "bypass", "mean_abs_change"), NUMBER, (0, 1))],
}
STOPPED = ("max_epochs", "early_stopping", "time_budget")  # time_budget: train_run(budget_s=...), the GPU sprint


def _get(doc, path):
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return KeyError
        doc = doc[key]
    return doc


def _text_problem(text: str, prose: bool) -> str | None:
    if prose:
        return "prose holding markup characters (<, >, &)" if MARKUP.search(text) else None
    return None if NAME.match(text) else f"not a plain name (prose goes in {', '.join(PROSE_KEYS)})"


def _walk(node, where: tuple, problems: list, prose: bool = False) -> None:
    """Outside prose, every number finite and every string and key a plain name; in prose, no markup."""
    prose = prose or bool(where) and (where[0] in PROSE or where[-1] in PROSE_KEYS)
    shown = ".".join(map(str, where)) or "the top level"
    if isinstance(node, dict):
        for key, value in node.items():
            if problem := _text_problem(str(key), prose):
                problems.append(f"{shown} has a key {_short(key)}, {problem}")
            _walk(value, (*where, key), problems, prose)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _walk(value, (*where, i), problems, prose)
    elif isinstance(node, float) and not math.isfinite(node) and not prose:
        problems.append(f"{shown} is {node}, not a finite number")
    elif isinstance(node, str) and (problem := _text_problem(node, prose)):
        problems.append(f"{shown} is {_short(node)}, {problem}")


def _short(value) -> str:
    """A value as an error message quotes it: a planted string is shown, not swallowed."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _typed(value, kind) -> bool:
    return not isinstance(value, bool) and isinstance(value, kind)


def check_run(doc: dict, path: Path, paths: RunPaths, fields: tuple[str, ...], hint: str, settings=None,
              config=None) -> dict:
    """A run's train.json or eval.json must agree with where it lies (preset, model, seed), with
    the model's config and the preset's ``fields`` (``config``/``settings`` default to the
    registry's: ``run_preset``), and hold typed, finite values; otherwise it is refused, so that
    no copied, stale or planted file reaches a table."""
    from .config import same_config
    from .presets import PRESETS, changed_settings, run_preset
    from .zoo import MODELS

    problems = []
    where = f"{paths.preset}/{paths.model}/seed{paths.seed}" + (
        "" if paths.dataset == DEFAULT_DATASET else f" of {paths.dataset}")
    # A file written before the data set was a setting is of mnist-static, as its folder says.
    identity = {"preset": paths.preset, "model": paths.model, "seed": paths.seed, "dataset": paths.dataset}
    for key, expected in identity.items():
        value = doc.get(key, DEFAULT_DATASET) if key == "dataset" else doc.get(key)
        if type(value) is not type(expected) or value != expected:
            problems.append(f"its {key} is {_short(value)} but it lies in {where}")
    if paths.model not in MODELS or paths.preset not in PRESETS:
        problems.append(f"{where} names no model and preset of the registry (`scvae models`)")
    else:
        if not same_config(doc.get("config"), config or MODELS[paths.model]):
            problems.append(f"it was computed for another model configuration than {paths.model!r} has now")
        stored = doc.get("preset_config")
        changed = changed_settings(stored if isinstance(stored, dict) else {},
                                   settings or run_preset(paths.preset, paths.model, paths.dataset), fields)
        if changed:
            problems.append(f"it was computed under other preset settings ({', '.join(changed)}) than "
                            f"{paths.preset!r} has now")
    _walk(doc, (), problems)
    optional = [(f, k, b, True) for f, k, b in OPTIONAL_FIELDS.get(doc.get("kind"), ())]
    for field, kind, bounds, may_lack in [(f, k, b, False) for f, k, b in FIELDS.get(doc.get("kind"), ())] + optional:
        value = _get(doc, field)
        if value is KeyError and may_lack:
            continue
        if value is KeyError or not _typed(value, kind):
            shown = "missing" if value is KeyError else _short(value)
            problems.append(f"{'.'.join(field)} is {shown}, not {TYPE_NAMES[kind]}")
        elif bounds and not bounds[0] <= value <= bounds[1]:
            problems.append(f"{'.'.join(field)} is {value}, outside {bounds[0]}..{bounds[1]}")
    by_samples = _get(doc, ("metrics", "nll_by_samples"))
    if by_samples is not KeyError and (not isinstance(by_samples, dict) or not all(
            k.isdigit() and _typed(v, NUMBER) for k, v in by_samples.items())):
        problems.append("metrics.nll_by_samples is not a map of sample counts to numbers")
    if doc.get("kind") == "train" and doc.get("stopped") not in STOPPED:
        problems.append(f"stopped is {_short(doc.get('stopped'))}, not one of {', '.join(STOPPED)}")
    if problems:
        raise ResultError(f"{path}: refused: {'; '.join(problems[:4])}"
                          f"{f' (and {len(problems) - 4} more)' if len(problems) > 4 else ''}.{hint}")
    return doc


def read_run(path: Path, paths: RunPaths, kind: str, required: tuple[str, ...], fields: tuple[str, ...],
             fix: str = "", settings=None, config=None) -> dict:
    """A run's result file ``path``, read as :func:`read_json` does and checked by :func:`check_run`."""
    doc = read_json(path, kind, required, fix)
    hint = f" To fix: {fix}" if fix else _RECREATE
    try:
        return check_run(doc, path, paths, fields, hint, settings, config)
    except RecursionError:  # parsed, but too deep for the checks: no result file of ours is
        raise ResultError(f"{path}: refused: nested too deeply to be a result file (corrupt or planted).{hint}") \
            from None


def write_npz(path: Path, **arrays) -> None:
    def write(f):
        np.savez_compressed(f, **arrays)

    _atomic_write(path, write)


def read_npz(path: Path, required: tuple[str, ...] = (), fix: str = "") -> dict[str, np.ndarray]:
    path = Path(path)
    hint = f" To fix: {fix}" if fix else ""
    opened = _open_result(path, hint)
    try:
        with opened as f:
            if os.fstat(f.fileno()).st_size > NPZ_BYTES:
                raise ResultError(f"{path}: refused: larger than the {NPZ_BYTES / 2**20:.0f} MiB a figures file may "
                                  f"have.{hint}")
            problem = _npz_headers_problem(f)
            if problem:
                raise ResultError(f"{path}: refused: {problem}; the file is corrupt or not ours.{hint}")
            f.seek(0)
            with np.load(f, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise ResultError(f"{path}: unreadable npz ({type(e).__name__}: {e}); the file is truncated or corrupt."
                          f"{hint}") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ResultError(f"{path}: missing arrays {', '.join(missing)}.{hint}")
    return arrays


def _npz_headers_problem(f) -> str | None:
    """Why an npz's arrays must not be loaded, read from their .npy headers alone: a header may
    declare gigabytes that a few compressed megabytes stand for, and loading would allocate them."""
    from numpy.lib import format as npy

    declared = 0
    with zipfile.ZipFile(f) as zf:
        for info in zf.infolist():
            with zf.open(info) as member:
                version = npy.read_magic(member)
                read_header = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
                if read_header is None:
                    return f"{info.filename} is of .npy version {version}, which this code does not write"
                shape, _, dtype = read_header(member)
            if dtype.hasobject:
                return f"{info.filename} holds Python objects, not numbers"
            size = math.prod(shape) * dtype.itemsize
            declared += size
            if declared > NPZ_ARRAY_BYTES:
                return (f"{info.filename} declares an array of shape {shape} ({size / 2**30:.1f} GiB), more than "
                        f"the {NPZ_ARRAY_BYTES / 2**20:.0f} MiB a figures file holds")
    return None


TSNE_ARRAYS = ("tsne_raw", "tsne_first", "tsne_middle", "tsne_last", "tsne_latent")
IMAGE_ARRAYS = ("recon_truth", "recon_model", "samples")
NLL_ARRAYS = ("nll_per_image", "nll_test_index")  # each evaluated test image's NLL, and which image


def figures_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """Why figures.npz's arrays cannot be plotted (shapes, dtypes, finiteness), or None."""
    labels = arrays.get("labels")
    if labels is None or labels.ndim != 1 or labels.dtype.kind not in "iu" or (labels.size and not
                                                                             0 <= labels.min() <= labels.max() <= 9):
        return "labels must be a 1-D array of digits 0-9"
    for key in TSNE_ARRAYS:
        if key in arrays and arrays[key].shape != (len(labels), 2):
            return f"{key} has shape {arrays[key].shape}, expected ({len(labels)}, 2) (one point per label)"
    shapes = {arrays[k].shape for k in IMAGE_ARRAYS if k in arrays}
    if len(shapes) > 1 or any(len(sh) != 3 or sh[1:] != (28, 28) for sh in shapes):
        return f"the image grids have shapes {sorted(shapes)}, expected one (k, 28, 28)"
    nll_shapes = {arrays[k].shape for k in NLL_ARRAYS if k in arrays}
    if nll_shapes and (len(nll_shapes) > 1 or not all(k in arrays for k in NLL_ARRAYS)
                       or len(next(iter(nll_shapes))) != 1):
        return f"{' and '.join(NLL_ARRAYS)} must be two 1-D arrays of one length, got shapes {sorted(nll_shapes)}"
    for key, a in arrays.items():
        if a.dtype.kind not in "biuf":
            return f"{key} is of dtype {a.dtype}, not numbers"
        # A collapsed layer's points all coincide and have no t-SNE embedding: all NaN is
        # that, and honest; some NaN is a corrupt file.
        collapsed = key in TSNE_ARRAYS and np.isnan(a).all()
        if a.dtype.kind == "f" and not collapsed and not np.isfinite(a).all():
            return f"{key} holds NaN or infinite values"
    return None


def read_figures(path: Path, required: tuple[str, ...] = IMAGE_ARRAYS, fix: str = "") -> dict[str, np.ndarray]:
    """figures.npz, checked to be plottable: a truncated or wrong-shaped file is refused here,
    naming the file and the fix, not deep in the plot code."""
    arrays = read_npz(path, ("labels", *required), fix)
    problem = figures_problem(arrays)
    if problem:
        raise ResultError(f"{path}: refused: {problem}.{f' To fix: {fix}' if fix else ''}")
    return arrays


# The model registry as a result file, results/models/models.json (`scvae models --write`): the
# book shows the models' sizes from it, since the book never builds a model (it does not import torch).
MODELS_FIX = "run `scvae models --write`"


def models_path(results_dir: str | Path) -> Path:
    return Path(results_dir) / "models" / "models.json"


def write_models(results_dir: str | Path) -> Path:
    """Every named model's configuration and parameter count, with provenance, to models.json."""
    from .zoo import MODELS, parameter_count  # builds each model: torch, only here

    path = models_path(results_dir)
    models = {name: {"config": cfg.to_dict(), "parameters": parameter_count(name)} for name, cfg in MODELS.items()}
    write_json(path, "models", {"models": models, "provenance": provenance()})
    return path


def read_models(results_dir: str | Path) -> dict[str, dict]:
    """models.json's models, checked: each a known model whose recorded configuration is today's
    and whose parameter count is a positive integer (a stale file names its fix)."""
    from .zoo import MODELS

    path = models_path(results_dir)
    models = read_json(path, "models", ("models",), fix=MODELS_FIX)["models"]
    names = sorted(models) if isinstance(models, dict) else []
    if names != sorted(MODELS):
        raise ResultError(f"{path}: refused: its models are not today's zoo ({len(names)} recorded, {len(MODELS)} "
                          f"named); the file is stale. To fix: {MODELS_FIX}")
    for name, entry in models.items():
        if not (isinstance(entry, dict) and entry.get("config") == MODELS[name].to_dict()
                and type(entry.get("parameters")) is int and entry["parameters"] > 0):
            raise ResultError(f"{path}: refused: {name!r} is recorded without today's configuration or a positive "
                              f"parameter count; the file is stale or edited. To fix: {MODELS_FIX}")
    return models
