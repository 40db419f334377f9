"""Private files on disk: read without following links, write atomically, set aside.

Every file cidx-auth keeps goes through here, so the rules live in one place:

* the directory is 0700 and every file 0600: set on each write, and corrected with a
  WARNING when a read or a write finds them wrong;
* a file is opened with ``O_NOFOLLOW`` and must be a regular file (``fstat``) of at
  most 64 KiB, so a symlink or a FIFO planted in the project cannot redirect a read,
  hang it, or make it swallow a huge file;
* a write goes to a unique temp file in the same directory, is flushed and fsynced,
  then replaces the old file with one ``os.replace``, and the directory is fsynced so
  the rename survives a crash (errata #6). A reader sees the old file or the new one,
  never a mix; a failed write leaves the old file and no temp file behind. Temp files
  that a killed writer left behind are swept by the next successful write.

Damaged files are set aside by :mod:`adapters.file_quarantine`.

**Trust** (decisions.md, "Trust boundaries"): cidx-auth never uses what another user
could have chosen. What it opens, and the directory holding it, must be owned by the user
(this uid, or root) and not writable by every user; a directory writable by others is
fine as a parent only with the sticky bit (``/tmp``). :func:`check_trusted` is that rule,
and a refusal is a :class:`StorageError` (exit 5) that says what to do. A directory is
never chmod'ed unless the user owns it.

The configuration directory may be a symlink (dotfile managers link ``~/.config``); a
project's ``.code-indexer`` and every file may not. POSIX-only calls are guarded so the
module imports on Windows, where mode bits mean little and are not enforced.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from cidx_auth.domain.errors import CidxAuthError, CorruptStore, StorageError

MAX_FILE_SIZE = 64 * 1024
DIR_MODE = 0o700
FILE_MODE = 0o600
STALE_TEMP_AGE = 60.0
"""A temp file this old belongs to no live writer (a write takes milliseconds)."""

POSIX = os.name == "posix"
_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO must fail the S_ISREG check, not block open
    | getattr(os, "O_BINARY", 0)
)
_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.EBADF, getattr(errno, "ENOTSUP", errno.EINVAL)}

Identity = tuple[int, int, int, int]
"""(st_dev, st_ino, st_mtime_ns, st_size): changes whenever a writer replaces the file."""


OWN_FORMAT_PREFIX = b"gAAAAA"
"""How every encrypted file cidx-auth writes begins: a Fernet token, version byte 0x80."""
_CLIENT_HEADER = 48
"""The CIDX client's files: a 32-byte salt and a 16-byte IV, then whole AES blocks."""


def is_own_format(data: bytes) -> bool:
    """Whether ``data`` may be cidx-auth's own (whole, truncated or damaged after its first
    bytes). An empty file counts as ours."""
    return OWN_FORMAT_PREFIX.startswith(data[: len(OWN_FORMAT_PREFIX)])


def is_foreign(data: bytes) -> bool:
    """Whether ``data`` is another program's file rather than damage to one of ours: not
    cidx-auth's format, and shaped like the CIDX client's (random salt and IV, then whole
    16-byte blocks). A zero-filled or truncated file of ours is damage, not foreign."""
    if is_own_format(data) or len(data) < _CLIENT_HEADER + 16:
        return False
    return (len(data) - _CLIENT_HEADER) % 16 == 0 and len(set(data[:_CLIENT_HEADER])) > 8


def refuse_foreign(path: Path, what: str) -> None:
    """Raise :class:`StorageError` if ``path`` holds another program's file: cidx-auth
    never overwrites or removes a file it did not write (the CIDX client's ``.creds``)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return  # absent, a link, unreadable: the write itself reports what is wrong
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        data = os.read(fd, MAX_FILE_SIZE + 1)
    except OSError:
        return
    finally:
        os.close(fd)
    if is_foreign(data):
        raise StorageError(
            f"{path} holds another program's {what} (not cidx-auth's format), so cidx-auth "
            "will not overwrite it; move it away if it is not needed, then try again"
        )


def info(message: str, *args: object) -> None:
    """Log an INFO line for the storage adapters (never with a secret in ``args``)."""
    _say(_INFO, message, args)


def warn(message: str, *args: object) -> None:
    """Log a WARNING for the storage adapters (never with a secret in ``args``)."""
    _say(_WARNING, message, args)


_INFO, _WARNING = 20, 30  # logging's levels, without importing logging
_HEARD: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("heard", default=None)


@contextlib.contextmanager
def held_back() -> Iterator[list[str]]:
    """Inside the block the storage adapters log nothing: a warning is kept in the list
    instead (formatted), and an INFO line is dropped, as an unconfigured logging drops it.
    ``status``'s fast path leaves any warning to the full path, which says it in its own
    format."""
    heard: list[str] = []
    token = _HEARD.set(heard)
    try:
        yield heard
    finally:
        _HEARD.reset(token)


def _say(level: int, message: str, args: tuple[object, ...]) -> None:
    heard = _HEARD.get()
    if heard is not None:
        if level >= _WARNING:
            heard.append(message % args if args else message)
        return
    import logging  # on first use: a process that only reads a valid token logs nothing

    logging.getLogger("cidx_auth.storage").log(level, message, *args)


_READ_ONLY: contextvars.ContextVar[str | None] = contextvars.ContextVar("read_only", default=None)


@contextlib.contextmanager
def read_only(why: str) -> Iterator[None]:
    """Inside the block nothing on disk changes: no mode is corrected, and anything that
    would create a directory, a file or a lock raises :class:`StorageError` saying ``why``
    (``cidx-auth status`` answers questions; it never repairs or creates)."""
    token = _READ_ONLY.set(why)
    try:
        yield
    finally:
        _READ_ONLY.reset(token)


class WouldChange(StorageError):
    """Inside :func:`read_only`, something on disk (or in the keyring) would change."""


def refuse_if_read_only(what: Path | str) -> None:
    """Raise :class:`WouldChange` inside :func:`read_only`: ``what`` would change."""
    why = _READ_ONLY.get()
    if why is not None:
        raise WouldChange(f"{what} would have to change, and {why}")


def identity_of(status: os.stat_result) -> Identity:
    """The :data:`Identity` of a ``stat`` result."""
    return (status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size)


def storage_error(action: str, path: Path, error: OSError) -> StorageError:
    """Our error for a failed system call: names the file and the reason, nothing else."""
    reason = error.strerror or type(error).__name__
    return StorageError(f"could not {action} {path}: {reason}")


def stat_identity(path: Path) -> Identity | None:
    """The identity of whatever is at ``path`` (a link is not followed); None if nothing."""
    try:
        return identity_of(os.lstat(path))
    except FileNotFoundError:
        return None
    except OSError as error:
        raise storage_error("inspect", path, error) from error


def trust_problem(
    status: os.stat_result, *, group_may_write: bool = True, sticky_ok: bool = False,
    owner_only: bool = False,
) -> str | None:
    """Why another user could have chosen or could change what has ``status``; None if
    nothing. Owned by this uid or root is the user's; write access for every user (and for
    the group, unless ``group_may_write``) is not, except on a sticky directory
    (``sticky_ok``), where others may add names but not replace the user's.
    ``owner_only``: check the owner alone."""
    if not POSIX:
        return None
    if status.st_uid not in (os.geteuid(), 0):
        return f"is owned by another user (uid {status.st_uid})"
    if owner_only:
        return None
    mode = stat.S_IMODE(status.st_mode)
    writers = mode & (stat.S_IWOTH if group_may_write else stat.S_IWOTH | stat.S_IWGRP)
    if writers and not (sticky_ok and mode & stat.S_ISVTX):
        who = "every user" if writers & stat.S_IWOTH else "its group"
        return f"can be written by {who} (mode {mode:03o})"
    return None


def _fix(path: Path, status: os.stat_result) -> str:
    """What the user can do about ``path``, refused for ``status``."""
    if trust_problem(status, owner_only=True):
        return "If you did not create it, do not use it: remove it, or ask its owner to."
    return f"If it is yours, run `chmod go-w {path}` and check what is in it."


def check_trusted(
    path: Path, what: str, *, group_may_write: bool = False, link_ok: bool = False,
    elsewhere: str = "",
) -> os.stat_result | None:
    """Refuse ``path`` (:class:`StorageError`, exit 5) if another user could have put it
    there or can change it: its directory first (see :func:`trust_problem`; sticky is
    fine there), then ``path`` itself, a link unless ``link_ok``. Reads only.

    ``what`` names it for the user ("the project directory"); ``elsewhere`` adds a way
    out to the advice. Returns what is at ``path`` (through a link), None if nothing.
    """
    parent = path.parent
    found = _status(parent, follow=True)
    if found and (problem := trust_problem(found, group_may_write=group_may_write,
                                           sticky_ok=True)):
        fix = (f"Keep it in a directory of your own, or run `chmod go-w {parent}` if that "
               "directory is yours and nobody else should write to it.")
        raise _untrusted(what, path, f"is in {parent}, which {problem}", fix, elsewhere)
    found = _status(path, follow=False)
    if found is not None and stat.S_ISLNK(found.st_mode):
        if not link_ok:
            fix = "Replace the link with what it points to (cidx-auth does not follow it)."
            raise _untrusted(what, path, "is a symbolic link", fix, elsewhere)
        found = _status(path, follow=True)
    if found and (problem := trust_problem(found, group_may_write=group_may_write)):
        raise _untrusted(what, path, problem, _fix(path, found), elsewhere)
    return found


def _status(path: Path, *, follow: bool) -> os.stat_result | None:
    try:
        return os.stat(path) if follow else os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise storage_error("inspect", path, error) from error


def _untrusted(what: str, path: Path, problem: str, fix: str, elsewhere: str) -> StorageError:
    return StorageError(
        f"{what} {path} {problem}: cidx-auth will not use it, since another user could "
        f"have put it there or could change it. {fix}{elsewhere and ' ' + elsewhere}"
    )


def ensure_private_dir(directory: Path, *, what: str = "the directory", link_ok: bool = False
                       ) -> None:
    """Create ``directory`` (0700) if needed, refuse it if another user controls it
    (:func:`check_trusted`; group-writable is tightened, not refused), and correct its
    mode if the user widened it. ``link_ok``: it may be a symlink (the config directory)."""
    not_a_directory = StorageError(f"{directory} is not a directory; move it away")
    refuse_if_read_only(directory)  # every write and every lock starts here
    # Nothing is created in a place another user controls; then what is there is judged.
    check_trusted(directory, what, group_may_write=True, link_ok=link_ok)
    _make_private_dirs(directory)
    status = check_trusted(directory, what, group_may_write=True, link_ok=link_ok)
    if status is None or not stat.S_ISDIR(status.st_mode):
        raise not_a_directory
    # The CIDX client's own directory keeps the mode it chose: not cidx-auth's to change.
    theirs = os.path.lexists(directory / ".remote-config")
    if not theirs and status.st_uid == os.geteuid():
        correct_mode_of(directory, status, DIR_MODE)


def _make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and each missing parent at 0700 (``mkdir(parents=True)`` gives
    the parents 0777 less the umask: under umask 000, anyone's)."""
    missing = []
    for candidate in (directory, *directory.parents):
        if os.path.isdir(candidate):
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        try:
            os.mkdir(candidate, DIR_MODE)
        except FileExistsError:  # a racing process, or a file: the check says which
            pass
        except OSError as error:
            raise storage_error("create", candidate, error) from error


def read_private(
    path: Path, limit: int = MAX_FILE_SIZE, *, ours: Callable[[bytes], bool] | None = None,
    secret: bool = False,
) -> tuple[bytes, Identity] | None:
    """The bytes of the regular file at ``path`` and its identity; None if it is missing.

    Raises :class:`CorruptStore` for a link, a non-regular file or one over ``limit``
    (the caller sets it aside) and :class:`StorageError` when the read itself fails or
    the file is refused (:func:`read_regular`, ``secret``). A mode wider than 0600 is
    corrected, unless ``ours`` says the content is another program's: a file cidx-auth
    did not write is never changed.
    """
    found = read_regular(path, limit, correct_mode=ours or (lambda _: True), secret=secret)
    return None if found is None else (found[0], identity_of(found[1]))


def read_regular(
    path: Path,
    limit: int = MAX_FILE_SIZE,
    *,
    refuse: Callable[[str], Exception] | None = None,
    correct_mode: Callable[[bytes], bool] | None = None,
    secret: bool = False,
) -> tuple[bytes, os.stat_result] | None:
    """The bytes and status of the regular file at ``path``, never through a link; None
    if it is missing.

    A link, a non-regular file or one over ``limit`` raises ``refuse(reason)`` (by
    default a :class:`CorruptStore` naming the file); a failed read, :class:`StorageError`.
    A file another user owns (or, for a ``secret``, one group or others can write: they
    could have chosen it) raises ``refuse(reason)``, by default a :class:`StorageError`:
    it is never set aside. The file is left exactly as it is, unless ``correct_mode(data)``
    says it is ours: then a mode wider than 0600 is corrected through the descriptor.
    """

    def refused(reason: str) -> Exception:
        if refuse is not None:
            return refuse(reason)
        return CorruptStore(f"{path.name} {reason}; refused")

    if not POSIX and os.path.islink(path):  # no O_NOFOLLOW there: check first
        raise refused("is a symbolic link")
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as error:
        if os.path.islink(path):
            raise refused("is a symbolic link") from None
        raise storage_error("read", path, error) from error
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise refused("is not a regular file")
        owner_only = not secret  # a secret's group and others may not write it either
        if problem := trust_problem(status, group_may_write=False, owner_only=owner_only):
            if refuse is not None:
                raise refuse(problem)
            raise _untrusted("the file", path, problem, _fix(path, status), "")
        too_big = f"is larger than {limit} bytes"
        if status.st_size > limit:
            raise refused(too_big)
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, limit + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # it grew after fstat: still too big to trust
                raise refused(too_big)
        data = b"".join(chunks)
        if correct_mode is not None and correct_mode(data):
            correct_mode_of(path, status, fd=fd)
        return data, status
    except CidxAuthError:
        raise
    except OSError as error:
        raise storage_error("read", path, error) from error
    finally:
        os.close(fd)


def correct_mode_of(path: Path, status: os.stat_result, wanted: int = FILE_MODE, *,
                    fd: int | None = None) -> None:
    """Set ``wanted`` on ``path`` (found with ``status``) if it has another mode, with a
    warning; a failure is only a warning. Through ``fd`` when given, so no link swapped
    in meanwhile can lead the change elsewhere. Never while writing nothing (``status``),
    and the caller decides whose file may be corrected."""
    mode = stat.S_IMODE(status.st_mode)
    if not POSIX or mode == wanted or _READ_ONLY.get() is not None:
        return
    warn("%s had mode %03o; setting it to %03o", path, mode, wanted)
    try:
        if fd is None:
            os.chmod(path, wanted)
        else:
            os.fchmod(fd, wanted)
    except OSError as error:
        warn("could not correct the mode of %s: %s", path, error.strerror)


def write_private(
    path: Path, data: bytes, *, sweep_young: bool, now: float, mode: int = FILE_MODE
) -> Identity:
    """Replace ``path`` with ``data`` atomically (0600, or ``mode`` to keep another
    program's choice); returns the new file's identity.

    ``sweep_young`` also removes recent temp files: right only for a writer holding the
    lock that every writer of ``path`` takes, since then no other write is in flight.
    """
    import tempfile  # only writers pay for it: a reading process never needs it

    directory = path.parent
    ensure_private_dir(directory)
    prefix = f"{path.name}.tmp-"
    temp: str | None = None
    try:
        fd, temp = tempfile.mkstemp(prefix=prefix, dir=directory)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            if hasattr(os, "fchmod"):
                os.fchmod(fd, mode)
            written = identity_of(os.fstat(fd))
        finally:
            os.close(fd)
        replace_file(temp, path)
        temp = None
        fsync_dir(directory)
    except OSError as error:
        raise storage_error("write", path, error) from error
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
    sweep_temps(directory, prefix, keep_young=not sweep_young, now=now)
    return written


WINDOWS_RETRY_SECONDS = 1.0


def replace_file(source: str | Path, target: Path) -> None:
    """``os.replace``, patient on Windows.

    There a file another process has open (a lock-free reader of ``.token``) cannot be
    replaced for a moment: PermissionError. Readers hold it for microseconds, so a short
    retry turns that into a brief wait instead of a failed save.
    """
    if POSIX:
        os.replace(source, target)
        return
    import time

    deadline = time.monotonic() + WINDOWS_RETRY_SECONDS
    while True:
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable; a no-op where directories cannot be opened."""
    if not POSIX:
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in _FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def sweep_temps(directory: Path, prefix: str, *, keep_young: bool, now: float) -> None:
    """Remove temp files a killed writer left behind; ``keep_young`` spares recent ones."""
    with contextlib.suppress(OSError):
        names = os.listdir(directory)
        for name in names:
            if not name.startswith(prefix):
                continue
            with contextlib.suppress(OSError):  # another process may sweep it first
                temp = directory / name
                if keep_young and now - os.lstat(temp).st_mtime < STALE_TEMP_AGE:
                    continue
                os.unlink(temp)
