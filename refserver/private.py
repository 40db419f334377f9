"""Files only the server's owner may see or change: the TLS key and the admin token.

A server run by one user on a machine others share must not write where another user
points it (a symbolic link to a victim file), read what another user planted (a key
whose private half they keep), or leave a secret others can read. So a directory is
used only when it is this user's (or root's) and nobody else can write it, it is opened
once and everything below goes through that descriptor (no path is looked up twice),
and each file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` at 0600: an existing
file or link is never truncated, followed or replaced.

The client has rules of its own for the same questions (`adapters.files`); these are
written out again here because the server is a separate program.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

PRIVATE_MODE = 0o600
DIRECTORY_MODE = 0o700
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_OPEN_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(Exception):
    """A file or directory the server will not use; the message is one line that says
    what is wrong and what to do."""


@dataclass(frozen=True, slots=True)
class Made:
    """A file this process created: where, and which inode it is."""

    path: Path
    device: int
    inode: int

    def remove(self) -> None:
        """Unlink the file if the path still names the very file made (never another)."""
        try:
            found = os.lstat(self.path)
        except FileNotFoundError:
            return
        if (found.st_dev, found.st_ino) == (self.device, self.inode):
            self.path.unlink(missing_ok=True)


def trusted_owner(uid: int) -> bool:
    """Owned by the user running the server, or by root."""
    return uid in (os.getuid(), 0)


def owner_problem(uid: int) -> str | None:
    """Why a file or directory owned by `uid` is not the user's, or None."""
    return None if trusted_owner(uid) else f"is owned by another user (uid {uid})"


def check_holder(directory: Path, found: os.stat_result | None = None) -> None:
    """Refuse a directory holding private files that another user could rename them out
    of: not the user's or root's, or writable by group or others without the sticky bit
    (``/tmp`` is fine: there nobody may rename what another user made). `found` is its
    stat when the caller has it open."""
    found = found or os.stat(directory)
    problem = owner_problem(found.st_uid)
    if problem is None and found.st_mode & 0o022 and not found.st_mode & stat.S_ISVTX:
        problem = f"can be written by others (mode {stat.S_IMODE(found.st_mode):04o})"
    if problem is not None:
        raise Refused(f"{directory} {problem}: another user could swap what the server "
                      "keeps there; use a directory of your own")


def write_new_private(path: Path, data: bytes) -> Made:
    """Create the file `path` (0600, `O_EXCL | O_NOFOLLOW`) holding `data`, in a
    directory no other user can swap it out of."""
    holder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        check_holder(path.parent, os.fstat(holder))
        return create_private(holder, path.name, data, path)
    finally:
        os.close(holder)


def open_private_directory(directory: Path, purpose: str) -> tuple[int, bool]:
    """A descriptor on `directory`, made 0700 when missing, and whether it was made.

    Refused: a symbolic link, not a directory, owned by another user, or writable by
    group or others (a sticky ``/tmp`` too: anyone could plant files in it).
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    check_holder(directory.parent)
    made = False
    try:
        os.mkdir(directory, DIRECTORY_MODE)
        made = True
    except FileExistsError:
        pass
    try:
        descriptor = os.open(directory, _OPEN_DIRECTORY)
    except OSError as error:
        if os.path.islink(directory):
            raise Refused(f"{directory} is a symbolic link: the server does not follow "
                          f"one; give a real directory for {purpose}") from None
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise Refused(f"{directory} is not a directory: give a directory for "
                          f"{purpose}") from None
        raise error
    found = os.fstat(descriptor)
    problem = owner_problem(found.st_uid)
    if problem is None and stat.S_IMODE(found.st_mode) & 0o022:
        problem = (f"can be written by group or others (mode "
                   f"{stat.S_IMODE(found.st_mode):04o}), so anyone could plant files in it")
    if problem is not None:
        os.close(descriptor)
        raise Refused(f"{directory} {problem}: use a new directory that only you can "
                      f"write for {purpose}")
    if made:
        os.fchmod(descriptor, DIRECTORY_MODE)  # whatever the umask took away or left
    return descriptor, made


def create_private(directory_fd: int, name: str, data: bytes, shown: Path) -> Made:
    """Create `name` under the open directory, 0600, and write `data`; never an
    existing file or link (`shown` is the path the error names)."""
    try:
        descriptor = os.open(name, _CREATE, PRIVATE_MODE, dir_fd=directory_fd)
    except FileExistsError:
        raise Refused(f"{shown} already exists: the server writes only new files; remove "
                      "it or choose another place") from None
    try:
        os.fchmod(descriptor, PRIVATE_MODE)  # the umask may have taken bits away
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view):]
        found = os.fstat(descriptor)
    finally:
        os.close(descriptor)
    return Made(shown, found.st_dev, found.st_ino)


def present(directory_fd: int, name: str) -> bool:
    """Whether anything (a dangling link too) has `name` in the open directory."""
    try:
        os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def read_private(directory_fd: int, name: str, shown: Path) -> bytes:
    """The content of `name`, which must be a file this user could have made here: a
    regular file (not a link), the user's, 0600, with no other hard link."""
    found = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
    problem = _private_file_problem(found)
    if problem is None:
        descriptor = os.open(name, _READ, dir_fd=directory_fd)
        try:
            opened = os.fstat(descriptor)
            if (opened.st_dev, opened.st_ino) != (found.st_dev, found.st_ino):
                problem = "changed while the server looked at it"
            else:
                return _read_all(descriptor)
        finally:
            os.close(descriptor)
    raise Refused(f"{shown} {problem}")


def _private_file_problem(found: os.stat_result) -> str | None:
    if stat.S_ISLNK(found.st_mode):
        return "is a symbolic link"
    if not stat.S_ISREG(found.st_mode):
        return "is not a regular file"
    if found.st_uid != os.getuid():
        return f"is owned by another user (uid {found.st_uid})"
    if stat.S_IMODE(found.st_mode) != PRIVATE_MODE:
        return f"has mode {stat.S_IMODE(found.st_mode):04o}, not 0600"
    if found.st_nlink != 1:
        return "has other hard links"
    return None


def _read_all(descriptor: int) -> bytes:
    chunks = []
    while chunk := os.read(descriptor, 65536):
        chunks.append(chunk)
    return b"".join(chunks)
