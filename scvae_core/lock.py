"""The per-run lock: one writer per ``results/<preset>/<model>/seed<k>/`` at a time.

``train_run`` and ``evaluate_run`` hold it while they work, and so does the executor's task
around both, so two processes, two workers or two threads never write the same run. It is
an ``flock`` on ``<run>/.lock``, a file that also records the holder (host, PID, since when).
The kernel drops an ``flock`` when its process dies, however it dies: a lock file left
behind by a killed process is therefore free, and the next writer takes it over (and says
so), with no guessing from PIDs or ages. On NFS, Linux maps ``flock`` to the server's
byte-range locks, so the lock also holds between hosts sharing the results folder; a file
system without locks (e.g. Lustre mounted without ``flock``) is refused with a message.

Re-entrant within a thread: the executor takes the lock for a whole run, and the
``train_run`` and ``evaluate_run`` it calls take it again without waiting on themselves.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .results import IrregularFile, check_writable, open_regular, read_regular

LOCK_NAME = ".lock"
POLL_S = 0.5  # how often a waiting writer tries again

_held: dict[str, tuple[int, int]] = {}  # lock path -> (thread id, depth), for re-entrancy
_held_guard = threading.Lock()


class LockError(RuntimeError):
    """The run's lock cannot be taken; the message says why and how to fix it."""


class RunLocked(LockError):
    """Another live process (or thread) is writing this run."""


def holder_record() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "thread": threading.current_thread().name,
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def read_holder(run_dir: Path | str) -> dict | None:
    """What the lock file of ``run_dir`` says about its (last) holder, or None."""
    try:
        text = read_regular(Path(run_dir) / LOCK_NAME, 4096)
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def live_holder(run_dir: Path | str) -> dict | None:
    """The holder of ``run_dir``'s lock if one is writing it now (for ``scvae status`` and
    for cleaning a dead writer's leftovers), else None; takes nothing."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = open_regular(path)  # a FIFO planted there must not block `scvae status`
    except OSError:  # none, or not a lock file of ours (a writer refuses it with a message)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: cannot be had while a writer holds it
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        return read_holder(run_dir) or {}
    finally:
        os.close(fd)


def describe(holder: dict | None) -> str:
    if not holder:
        return "an unknown process"
    return f"PID {holder.get('pid')} on {holder.get('host')} (since {holder.get('since')})"


def _try_flock(fd: int, path: Path) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL):
            raise LockError(f"{path}: this file system does not support file locks ({e.strerror}), so two writers "
                            "of one run could not be kept apart. To fix: put --results-dir on a file system with locks "
                            "(local disk, NFS with lockd, Lustre mounted with -o flock)") from None
        raise


def _open_lock(path: Path) -> int:
    """The lock file, created if missing, never through a symbolic link: a ``.lock`` planted as a
    link to another file would have the holder record written into that file."""
    try:
        return open_regular(path, os.O_RDWR | os.O_CREAT)
    except IrregularFile as e:
        raise LockError(f"{path}: refused: the lock file is {e.strerror}, so this run is not taken (nothing is "
                        f"written through it). To fix: remove it (`rm {path}`) and run again") from None


def _acquire(path: Path) -> tuple[int, dict | None]:
    """(fd holding the flock, record of a dead holder taken over or None); raises BlockingIOError
    while another holder is alive."""
    while True:
        try:
            fd = _open_lock(path)
        except FileNotFoundError:  # its folder, left empty, was just removed by a writer that failed
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        try:
            if not _try_flock(fd, path):
                raise BlockingIOError
            # The file may have been unlinked (released) between our open and flock: then we
            # hold a lock on a file nobody else sees; start again on the current one.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            left = os.read(fd, 4096)
            stale = None
            if left.strip():
                try:
                    stale = json.loads(left)
                except ValueError:
                    stale = {}
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(holder_record()).encode())
            os.fsync(fd)
            return fd, stale
        except BaseException:
            os.close(fd)
            raise


def remove_if_free(run_dir: Path | str) -> bool:
    """Remove ``run_dir``'s lock file if no process holds it (one left by a killed worker); True
    if removed. Taken and unlinked as a release does, so that a writer that opened the file
    meanwhile starts again on a new one (the inode check in ``_acquire``)."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = open_regular(path, os.O_RDWR)
    except OSError:  # none, or not ours to remove (a writer refuses it with a message)
        return False
    try:
        if not _try_flock(fd, path) or os.stat(path).st_ino != os.fstat(fd).st_ino:
            return False
        path.unlink()
        return True
    except (OSError, LockError):
        return False
    finally:
        os.close(fd)


@contextmanager
def run_lock(run_dir: Path | str, wait: float = 0.0) -> Iterator[None]:
    """Hold the lock of ``run_dir`` (created if missing; refused with results.check_writable's
    message if it cannot be written) for the ``with`` block.

    If another process or thread holds it: raise :class:`RunLocked` naming the holder
    (``wait`` 0), or try again every ``POLL_S`` for up to ``wait`` seconds (``float("inf")``:
    until it is free). A lock file of a dead holder is taken over with a message.
    """
    run_dir = Path(run_dir)
    created = [d for d in (run_dir, *run_dir.parents) if not d.exists()]  # removed again if left empty
    run_dir = check_writable(run_dir, 0)  # a folder we can write in, or a ResultError saying what is wrong
    path = run_dir / LOCK_NAME
    key, me = str(path.resolve()), threading.get_ident()
    with _held_guard:
        owner = _held.get(key)
        if owner and owner[0] == me:
            _held[key] = (me, owner[1] + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] = (me, _held[key][1] - 1)  # the outermost block releases the lock
        return

    try:
        fd, stale = _wait_for(path, key, me, wait)
    except BaseException:
        _remove_empty(created)
        raise
    if stale is not None:
        print(f"{run_dir}: took over the lock left by {describe(stale)}, which is no longer running")
    try:
        yield
    finally:
        with _held_guard:
            del _held[key]
            # Unlink while still holding the flock, so that a waiter that opened this file
            # sees it replaced (the inode check in _acquire) rather than sharing it.
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            os.close(fd)
        _remove_empty(created)  # a run that failed before writing anything leaves no empty seed<k>/


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:  # not empty: the run wrote something, or another writer is in it
            break


def _wait_for(path: Path, key: str, me: int, wait: float) -> tuple[int, dict | None]:
    """:func:`_acquire` the lock file ``path``, waiting up to ``wait`` seconds for another holder."""
    run_dir = path.parent
    deadline, announced = time.monotonic() + wait, False
    while True:
        with _held_guard:
            other_thread = key in _held  # flock does not keep threads of one process apart on NFS
            if not other_thread:
                try:
                    fd, stale = _acquire(path)
                    _held[key] = (me, 1)
                    return fd, stale
                except BlockingIOError:
                    pass
        holder = read_holder(run_dir)
        if time.monotonic() >= deadline:
            raise RunLocked(f"{run_dir}: another writer holds this run: {describe(holder)}. Wait for it to finish, "
                            f"or stop that process; a lock left by a dead process is taken over by itself "
                            f"(lock file {path})")
        if not announced:
            print(f"{run_dir}: waiting for {describe(holder)}, which holds this run")
            announced = True
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
