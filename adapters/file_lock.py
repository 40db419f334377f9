"""The cross-process lock: filelock on a stable lock file beside the data (errata #5).

Locking the data file itself excludes no one, because every write replaces it with a
new inode. The lock file is never replaced and never deleted (filelock's flock backend
leaves it in place on release), so every process locks the same inode.

Each call makes a new ``FileLock`` with ``thread_local=False``: two stores in one
process then exclude each other as two processes do (flock conflicts between open
file descriptions), and a lock taken on an executor thread can be released on the
event loop's thread. ``filelock`` is imported on first use: it is slow to import, and
a process that only reads a valid token never locks anything.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from adapters.file_io import FILE_MODE, POSIX, ensure_private_dir, warn
from cidx_auth.domain.errors import LockTimeout, StorageError


@contextlib.contextmanager
def file_lock(path: Path, timeout: float, what: str) -> Iterator[None]:
    """Hold the lock on ``path`` for the ``with`` block.

    Raises :class:`LockTimeout` when another holder keeps it past ``timeout`` seconds
    and :class:`StorageError` when the lock file cannot be created or locked at all.
    """
    import filelock

    ensure_private_dir(path.parent)
    lock = filelock.FileLock(str(path), timeout=timeout, mode=FILE_MODE, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise LockTimeout(
            f"{what} is held by another cidx process; gave up after {timeout:.1f} s"
        ) from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise StorageError(f"could not take {what} ({path}): {reason}") from error
    try:
        _correct_mode(path)
        yield
    finally:
        try:
            lock.release()
        except OSError as error:  # the kernel drops the lock when the process ends anyway
            warn("could not release %s: %s", what, error.strerror)


def _correct_mode(path: Path) -> None:
    """A lock file created by an older version, or by hand, may be wider than 0600."""
    if not POSIX:
        return
    with contextlib.suppress(OSError):
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        if mode != FILE_MODE:
            warn("%s had mode %03o; setting it to %03o", path, mode, FILE_MODE)
            os.chmod(path, FILE_MODE)
