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

filelock never breaks an *empty* marker (a holder from before filelock 3.22 keeps its
marker empty for as long as it holds it), so one left empty by a crash would block every
renewal for good. Ours is taken over (:func:`_clear_abandoned_marker`) when it is a
regular file of the current user with one name, empty, and older than the longest
anyone may hold the lock (the token lock's wait, 2D + 5 s): no live holder it could name
has held it that long. The takeover swaps an empty placeholder of our own in with
``renameat2(RENAME_EXCHANGE)`` and keeps what it took only if it is the very file judged
(same inode, still empty, same mtime); otherwise it swaps it back, so a holder's fresh
marker is never taken and the lock path never stands empty. Where the exchange is
refused (NFS), the marker is renamed aside instead and, if it was not the one judged,
linked back (never over a successor's). Takers go one at a time, each holding the guard
``<marker>.takeover``, and judge the marker again under it, its age on the file
system's clock (the guard's mtime). A marker that names a holder is left to
filelock (a dead one on this host it takes over; a live one, or one on another host, it
waits for), and a wait that runs out names the marker and how to remove it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Callable, Iterator
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
def file_lock(
    path: Path,
    timeout: float,
    what: str,
    *,
    abandoned_after: float | None = None,
    now: Callable[[], float] = time.time,
) -> Iterator[None]:
    """Hold the lock on ``path`` for the ``with`` block.

    Raises :class:`LockTimeout` when another holder keeps it past ``timeout`` seconds,
    :class:`StorageError` when ``path`` is not our lock file (a link, not a regular file,
    another user's) or cannot be opened, and :class:`LockUnavailable` when neither flock
    nor the ``O_EXCL`` fallback can be had here. An empty ``O_EXCL`` marker of ours whose
    mtime is more than ``abandoned_after`` seconds (default: the token lock's wait,
    2D + 5 s) before ``now()`` is taken over.
    """
    ensure_private_dir(path.parent)
    with contextlib.ExitStack() as held:
        if not POSIX:
            _take_with_filelock(held, path, timeout, what)
        elif (trouble := _take_flock(held, path, timeout, what)) is not None:
            excl = path.with_name(path.name + ".excl")
            # INFO: the O_EXCL lock keeps the rule, and no user can do better on that mount.
            info("cannot flock %s (%s); using %s instead", path, trouble, excl.name)
            age = _longest_hold() if abandoned_after is None else abandoned_after
            try:
                refuse_unless_ours(excl)
                _take_marker(held, excl, timeout, what, lambda: now() - age)
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


def _take_with_filelock(held: contextlib.ExitStack, path: Path, timeout: float, what: str) -> None:
    """filelock's native lock (Windows)."""
    import filelock

    lock = filelock.FileLock(str(path), timeout=timeout, mode=FILE_MODE, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:  # before OSError: it is a TimeoutError
        raise _timeout(what, timeout) from None
    except OSError as error:
        raise LockUnavailable(f"{path}: {_reason(error)}") from error
    held.callback(_release, lock, what)


def _take_marker(
    held: contextlib.ExitStack, path: Path, timeout: float, what: str,
    abandoned_before: Callable[[], float],
) -> None:
    """filelock's ``O_EXCL`` marker lock, polled here so that an empty marker that ages
    past the threshold during the wait is taken over then; a timeout names the marker."""
    import filelock

    lock = filelock.SoftFileLock(str(path), timeout=timeout, mode=FILE_MODE,
                                 thread_local=False)
    deadline = time.monotonic() + timeout
    while True:
        if _clear_abandoned_marker(path, abandoned_before()):
            info("took over %s: it was empty and older than anyone may hold %s", path, what)
        try:
            lock.acquire(timeout=0)  # one try; filelock still takes over a dead holder's
            break
        except filelock.Timeout:  # before OSError: it is a TimeoutError
            if time.monotonic() >= deadline:
                raise _marker_timeout(path, what, timeout) from None
            time.sleep(POLL_INTERVAL)
        except OSError as error:
            raise LockUnavailable(f"{path}: {_reason(error)}") from error
    mine: os.stat_result | None = None
    with contextlib.suppress(OSError):
        mine = os.lstat(path)  # the marker just made (O_EXCL): ours
    held.callback(_release, lock, what, path, mine)


def _longest_hold() -> float:
    """The longest a holder may legitimately hold any of our locks: the token lock's
    wait (one refresh and one login, each bounded by D, plus a margin)."""
    from cidx_auth.domain.rules import Rules

    return Rules().lock_wait


_MARKER_READ = _READ_FLAGS


def _clear_abandoned_marker(path: Path, abandoned_before: float) -> bool:
    """Remove the marker at ``path`` if it is abandoned: a regular file of this user with
    one name, empty, last changed before ``abandoned_before``. True if it was removed.

    Never follows a link (``O_NOFOLLOW`` open, renames of the name itself), never
    touches another user's file, and takes only the very file it judged. Takers go one
    at a time (:func:`_guarded`), and judge the marker's age again under the guard on
    the clock of the file system that holds it: the guard's own mtime says what time it
    is there (an NFS server's clock, not this host's, stamps the marker).
    """
    try:
        fd = os.open(path, _MARKER_READ)  # pins the inode: its number cannot be reused
    except OSError:  # gone, a link (ELOOP), unreadable: nothing to take over
        return False
    try:
        judged = os.fstat(fd)
        if not (_abandoned(judged, abandoned_before)
                and os.path.samestat(os.lstat(path), judged)):
            return False
        with _guarded(path) as server_now:
            if server_now is None:  # another taker is at it (or was killed at it)
                return False
            on_its_clock = abandoned_before + (server_now - time.time())
            current = os.lstat(path)
            if not (_same_marker(current, judged) and _abandoned(current, on_its_clock)):
                return False  # taken over by another meanwhile, or not old there
            return _swap_out(path, judged)
    except FileNotFoundError:  # a peer took it first
        return False
    except OSError as error:
        info("could not take over %s: %s", path, _reason(error))
        return False
    finally:
        os.close(fd)


@contextlib.contextmanager
def _guarded(path: Path) -> Iterator[float | None]:
    """Hold the takeover guard ``<marker>.takeover`` (``O_EXCL``) for the block; yields
    the guard's mtime (the file system's time now), or None when another taker holds it.

    One taker at a time: two that judged the same abandoned marker could otherwise each
    take something off the path (the second, a marker or placeholder made after the first
    one's step), and two processes would hold the lock, or a placeholder would be left on
    the path. Under the guard nobody else removes an empty marker (filelock never breaks
    one; only a takeover does), so the judged marker, found again at the path, is the
    file taken. A guard left by a taker killed in those few system calls stops later
    takeovers, never the lock itself: the timeout message names it."""
    guard = _guard_of(path)
    try:
        fd = os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, FILE_MODE)
    except FileExistsError:
        yield None
        return
    try:
        mine = os.fstat(fd)
    finally:
        os.close(fd)
    try:
        yield mine.st_mtime
    finally:
        _unlink_if(guard, mine)


def _abandoned(status: os.stat_result, abandoned_before: float) -> bool:
    return (stat.S_ISREG(status.st_mode) and status.st_uid == os.geteuid()
            and status.st_nlink == 1 and status.st_size == 0
            and status.st_mtime < abandoned_before)


def _same_marker(status: os.stat_result, judged: os.stat_result) -> bool:
    return (os.path.samestat(status, judged) and status.st_size == 0
            and status.st_mtime_ns == judged.st_mtime_ns)


def _swap_out(path: Path, judged: os.stat_result) -> bool:
    """Take the judged marker off ``path`` (the caller holds the guard): exchanged for an
    empty placeholder of ours (which no one takes over: it is fresh), or, where the
    exchange is refused, renamed aside. What was taken is kept only if it is the judged
    file; anything else goes back."""
    import secrets

    aside = path.with_name(f"{path.name}.takeover.{os.getpid()}.{secrets.token_hex(8)}")
    placeholder = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, FILE_MODE)
    mine = os.fstat(placeholder)
    try:
        if _exchange(aside, path):
            if not _same_marker(os.lstat(aside), judged):
                _exchange(aside, path)  # a holder's marker: back at once; ours stayed there
                _unlink_if(aside, mine)
                return False
            os.unlink(aside)  # the abandoned marker
            _unlink_if(path, mine)  # our placeholder: nobody else removes a fresh empty file
            return True
        # No exchange on this mount (NFS): the marker is renamed aside, which leaves the
        # path empty for a moment (safe only because takers go one at a time).
        os.unlink(aside)
        os.rename(path, aside)
        if _same_marker(os.lstat(aside), judged):
            os.unlink(aside)
            return True
        with contextlib.suppress(FileExistsError):  # never over a successor's marker
            os.link(aside, path, follow_symlinks=False)
        os.unlink(aside)
        return False
    finally:
        os.close(placeholder)
        _unlink_if(aside, mine)  # our placeholder, if a step above failed


def _guard_of(path: Path) -> Path:
    return path.with_name(path.name + ".takeover")


def _unlink_if(path: Path, expected: os.stat_result) -> None:
    with contextlib.suppress(FileNotFoundError):
        if os.path.samestat(os.lstat(path), expected):
            os.unlink(path)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(source: Path, target: Path) -> bool:
    """Swap two names atomically (Linux ``renameat2``); False where that is refused
    (NFS, an old kernel or C library, another system)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    import ctypes

    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(source), at_fdcwd, os.fsencode(target),
                 _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(source))


_RENAMEAT2: list[Callable[..., int] | None] = []


def _renameat2() -> Callable[..., int] | None:
    if not _RENAMEAT2:
        found = None
        import sys

        if sys.platform == "linux":
            import ctypes

            with contextlib.suppress(AttributeError, OSError):
                function = ctypes.CDLL(None, use_errno=True).renameat2
                function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                     ctypes.c_char_p, ctypes.c_uint]
                function.restype = ctypes.c_int
                found = function
        _RENAMEAT2.append(found)
    return _RENAMEAT2[0]


def _marker_timeout(path: Path, what: str, timeout: float) -> LockTimeout:
    holder = _holder_named(path)
    names = [path, *([_guard_of(path)] if os.path.lexists(_guard_of(path)) else [])]
    left = "" if len(names) == 1 else f", and so is {names[1]} (left by an interrupted takeover)"
    remedy = (
        f"the lock marker {path} is still there ({holder}){left}; if no cidx process is "
        f"running, remove {'it' if len(names) == 1 else 'them'} "
        f"(rm -- {' '.join(_quoted(name) for name in names)}) and try again"
    )
    error = LockTimeout(
        f"{what} is held by another cidx process; gave up after {timeout:.1f} s; {remedy}"
    )
    error.remedy = remedy
    return error


def _holder_named(path: Path) -> str:
    """Who the marker says holds it, in words (no more than its first KiB is read)."""
    try:
        fd = os.open(path, _MARKER_READ)
    except OSError:
        return "gone now"
    try:
        content = os.read(fd, 1024).decode("utf-8", "replace")
    except OSError:
        return "unreadable"
    finally:
        os.close(fd)
    lines = content.splitlines()
    fields = dict(line.partition("=")[::2] for line in lines if "=" in line)
    pid, host = fields.get("pid"), fields.get("host")
    if pid is None and len(lines) >= 2:  # filelock's older record: pid, host[, start]
        pid, host = lines[0], lines[1]
    if not content:
        return "empty: it names no holder"
    if pid and pid.isdigit() and host:
        return f"it names pid {pid} on host {host[:64]}"
    return "it names no holder"


def _quoted(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


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


def _release(lock: BaseFileLock, what: str, marker: Path | None = None,
             mine: os.stat_result | None = None) -> None:
    """Let go of ``lock``; for a ``marker``, make sure the one we made (``mine``) is gone:
    some filelock versions swallow a failed unlink, so it is tried once more here, and a
    failure is a warning either way."""
    try:
        lock.release()
        if marker is not None and mine is not None:
            _unlink_if(marker, mine)
    except OSError as error:  # a dead holder's marker is removed by the next taker
        warn("could not release %s: %s", what, error.strerror)


def _timeout(what: str, timeout: float) -> LockTimeout:
    return LockTimeout(f"{what} is held by another cidx process; gave up after {timeout:.1f} s")


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__
