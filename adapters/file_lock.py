"""The cross-process lock: flock on a stable lock file beside the data (errata #5).

Locking the data file itself excludes no one, because every write replaces it with a
new inode. The lock file is never replaced and never deleted, so every process locks
the same inode.

We open the lock file ourselves instead of through ``filelock.FileLock``: filelock 3.13
(our old floor) opens it with ``O_TRUNC`` and follows a symlink, then ``fchmod``s
the target, so a checkout shipping ``.token.lock -> ~/.bashrc`` would empty that file and
make it 0600. Here the open has ``O_NOFOLLOW`` and no ``O_TRUNC``; a link, a non-regular
file or another user's file is refused (exit 5) and never touched. Each call opens its
own descriptor, so two stores in one process exclude each other as two processes do
(flock conflicts between open file descriptions), and a lock taken on an executor
thread can be released on the event loop's thread.

A lock file of the user's own that cannot be written (immutable, on a read-only mount) is
flocked through a read-only descriptor: flock needs no write access. Where flock cannot
be had at all (a mount without flock, NFS without lockd; a missing lock file in a
directory that cannot be written), the lock falls back to filelock's ``SoftFileLock`` on
``<lock>.excl``: an ``O_EXCL`` file recording pid, host and process start time, which a
later process removes once it proves that holder dead (filelock >= 4.2.1 swaps it out
with ``renameat2(RENAME_EXCHANGE)`` and puts it back if it was not the file judged
stale). When that fails too, :class:`LockUnavailable` lets the core go on by its
ownership rule. ``filelock`` is imported only then, and on Windows.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.file_io import FILE_MODE, POSIX, correct_mode_of, ensure_private_dir, info, warn
from cidx_auth.domain.errors import LockTimeout, LockUnavailable, StorageError

if TYPE_CHECKING:
    from filelock import BaseFileLock

POLL_INTERVAL = 0.05
_OPEN_FLAGS = (
    os.O_RDWR
    | os.O_CREAT  # never O_TRUNC: the file may not be ours, and holders write nothing to it
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO planted there must not hang the open
)
_READ_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NONBLOCK", 0)
)
_NO_FLOCK = frozenset(
    getattr(errno, name)
    for name in ("EPERM", "EROFS", "ENOLCK", "EOPNOTSUPP", "ENOTSUP", "ENOSYS")
    if hasattr(errno, name)
)
"""Errors that say flock cannot be had here at all (decisions.md, "Lock trouble")."""


@contextlib.contextmanager
def file_lock(path: Path, timeout: float, what: str) -> Iterator[None]:
    """Hold the lock on ``path`` for the ``with`` block.

    Raises :class:`LockTimeout` when another holder keeps it past ``timeout`` seconds,
    :class:`StorageError` when ``path`` is not our lock file (a link, not a regular file,
    another user's) or cannot be opened, and :class:`LockUnavailable` when neither flock
    nor the ``O_EXCL`` fallback can be had here.
    """
    ensure_private_dir(path.parent)
    with contextlib.ExitStack() as held:
        if not POSIX:
            _take_with_filelock(held, path, timeout, what, soft=False)
        elif (trouble := _take_flock(held, path, timeout, what)) is not None:
            excl = path.with_name(path.name + ".excl")
            # INFO: the O_EXCL lock keeps the rule, and no user can do better on that mount.
            info("cannot flock %s (%s); using %s instead", path, trouble, excl.name)
            try:
                refuse_unless_ours(excl)
                _take_with_filelock(held, excl, timeout, what, soft=True)
            except LockUnavailable as error:
                raise LockUnavailable(
                    f"no lock can be taken for {what} here: {path}: {trouble}; {error}"
                ) from error
        yield


def _take_flock(held: contextlib.ExitStack, path: Path, timeout: float, what: str) -> str | None:
    """Flock ``path`` until the ``held`` stack closes; the reason if flock is impossible."""
    import fcntl

    refuse_unless_ours(path)
    try:
        fd = _open(path)
    except OSError as error:
        if error.errno in _NO_FLOCK:
            return _reason(error)
        raise StorageError(f"could not open {what} ({path}): {_reason(error)}") from error
    held.callback(os.close, fd)
    status = os.fstat(fd)
    refuse_unless_ours(path, status)  # whatever we opened, not what lstat saw before
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise _timeout(what, timeout) from None
            time.sleep(POLL_INTERVAL)
        except OSError as error:
            if error.errno in _NO_FLOCK:
                return _reason(error)
            raise StorageError(f"could not take {what} ({path}): {_reason(error)}") from error
    # Unlock explicitly: a forked child sharing the descriptor would keep it locked.
    held.callback(_unlock, fd, what)
    if _ours_alone(status):  # a lock file an older version, or a hand, made wider than 0600
        correct_mode_of(path, status, fd=fd)
    return None


def _open(path: Path) -> int:
    """The lock file's descriptor, created if need be. An existing file we may not write
    (immutable, read-only mount, mode 0400) is opened read-only: flock needs no write
    access, and every process then locks the same inode, as a holder that opened it
    before it became immutable does. Only where even that fails does the ``O_EXCL``
    fallback come in."""
    try:
        return os.open(path, _OPEN_FLAGS, FILE_MODE)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EACCES, errno.EROFS):
            raise
        try:
            return os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            raise error from None


def _take_with_filelock(
    held: contextlib.ExitStack, path: Path, timeout: float, what: str, *, soft: bool
) -> None:
    """filelock's ``O_EXCL`` marker lock (``soft``), or its native lock on Windows."""
    import filelock

    kind = filelock.SoftFileLock if soft else filelock.FileLock
    lock = kind(str(path), timeout=timeout, mode=FILE_MODE, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:  # before OSError: it is a TimeoutError
        raise _timeout(what, timeout) from None
    except OSError as error:
        raise LockUnavailable(f"{path}: {_reason(error)}") from error
    held.callback(_release, lock, what)


def refuse_unless_ours(path: Path, status: os.stat_result | None = None) -> None:
    """Refuse a link, a non-regular file or another user's file at ``path`` (exit 5).

    Such a file is never moved, deleted or "fixed": it may be a trap, or someone's data.
    """
    if status is None:
        try:
            status = os.lstat(path)
        except FileNotFoundError:
            return
        except OSError as error:
            raise StorageError(f"could not inspect {path}: {_reason(error)}") from error
    if stat.S_ISLNK(status.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISREG(status.st_mode):
        problem = "is not a regular file"
    elif status.st_uid not in (os.geteuid(), 0):
        problem = f"is owned by another user (uid {status.st_uid})"
    else:
        return
    raise StorageError(
        f"{path} {problem}, so it is not cidx-auth's lock file; left untouched. "
        "Remove it if you did not create it, then try again."
    )


def _ours_alone(status: os.stat_result) -> bool:
    """A file we own with no other name: a hard link would let a chmod reach a file
    elsewhere."""
    return status.st_uid == os.geteuid() and status.st_nlink == 1


def _unlock(fd: int, what: str) -> None:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError as error:  # closing the descriptor releases it anyway
        warn("could not release %s: %s", what, error.strerror)


def _release(lock: BaseFileLock, what: str) -> None:
    try:
        lock.release()
    except OSError as error:  # a dead holder's marker is removed by the next taker
        warn("could not release %s: %s", what, error.strerror)


def _timeout(what: str, timeout: float) -> LockTimeout:
    return LockTimeout(f"{what} is held by another cidx process; gave up after {timeout:.1f} s")


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__
