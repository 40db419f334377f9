"""The per-user secret every project key is derived from (errata #14).

32 random bytes in ``user.secret`` in the user's configuration directory
(``$CIDX_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/cidx``, else ``~/.config/cidx``),
directory 0700, file 0600. It lives outside every project, so a project directory
that is copied, shared or committed carries nothing that opens its own files, and a
copy taken to another user or machine meets a different secret.

Creation is race-free without a lock: the secret is written in full to a private temp
file, which is then published with ``os.link``. A link fails if the name exists, so
when fifty processes start at once exactly one link succeeds, the others read the
winner's file, and nobody ever reads a half-written one. Where hard links are not
supported, an ``O_EXCL`` create is the fallback, and readers wait briefly for the
winner to finish writing.

Another user must not be able to choose it (they could then decrypt the password):
the secret, and the directory holding it, must be the user's (this uid or root) and
writable by no one else; the configuration directory's own directory must not be
writable by every user (unless sticky, like ``/tmp``). Anything else is refused (exit 5,
:func:`adapters.file_io.check_trusted`), never "corrected". Missing directories are
created 0700, each of them, whatever the umask.

The secret is held in an immutable ``bytes`` for the life of the process: Python
gives no way to wipe it (errata #13).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from pathlib import Path

from adapters.cached_secret import SECRET_SIZE, CachedSecret
from adapters.file_io import (
    FILE_MODE,
    check_trusted,
    ensure_private_dir,
    fsync_dir,
    read_private,
    storage_error,
    sweep_temps,
)
from cidx_auth.domain.errors import CorruptStore, StorageError

SECRET_NAME = "user.secret"  # noqa: S105  (a file name, not a password)
SECRET_ROLE = "the per-user secret"  # noqa: S105  (how messages name it)
SECRET_DIR_ROLE = "the per-user secret's directory"  # noqa: S105
_PUBLISH_WAIT = 2.0
"""How long a reader waits for an ``O_EXCL`` winner to finish writing (fallback only)."""


def default_config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the user's cidx configuration lives, from the environment."""
    env = os.environ if environ is None else environ
    if env.get("CIDX_CONFIG_DIR"):
        return Path(env["CIDX_CONFIG_DIR"])
    if env.get("XDG_CONFIG_HOME"):
        return Path(env["XDG_CONFIG_HOME"]) / "cidx"
    return Path.home() / ".config" / "cidx"


class UserSecret(CachedSecret):
    """The user's secret, read (or created) on first use and kept for the process."""

    def __init__(self, directory: Path | None = None) -> None:
        super().__init__()
        self.path = (directory if directory is not None else default_config_dir()) / SECRET_NAME

    def _read(self) -> bytes:
        return self._stored() or self._create()

    def _stored(self) -> bytes | None:
        check_trusted(self.path.parent, SECRET_DIR_ROLE, group_may_write=True, link_ok=True)
        check_trusted(self.path, SECRET_ROLE)  # and its directory: nobody else writes there
        try:
            found = read_private(self.path, limit=SECRET_SIZE, secret=True)
        except CorruptStore:
            raise self._damaged() from None
        if found is None:
            return None
        if len(found[0]) != SECRET_SIZE:
            raise self._damaged()
        return found[0]

    def _damaged(self) -> StorageError:
        # Replacing the secret would make every stored token and password unreadable
        # without telling anyone why: the user decides.
        return StorageError(
            f"the per-user secret {self.path} is damaged; move it away and run "
            "`cidx-auth login --server URL --username NAME` again in each project (the "
            "settings signed with the old secret no longer verify)"
        )

    def _create(self) -> bytes:
        directory = self.path.parent
        ensure_private_dir(directory, what=SECRET_DIR_ROLE, link_ok=True)
        import secrets  # imported here: only the first process of a user creates it
        import tempfile

        temp: str | None = None
        try:
            fd, temp = tempfile.mkstemp(prefix=f"{SECRET_NAME}.tmp-", dir=directory)
            try:
                os.write(fd, secrets.token_bytes(SECRET_SIZE))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temp, self.path)
            except FileExistsError:
                pass  # another process won the race: use its secret
            except OSError:
                self._create_exclusive()
            fsync_dir(directory)
        except OSError as error:
            raise storage_error("create", self.path, error) from error
        finally:
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
        sweep_temps(directory, f"{SECRET_NAME}.tmp-", keep_young=True, now=time.time())
        return self._await_complete()

    def _create_exclusive(self) -> None:
        """Fallback for file systems without hard links: the first ``O_EXCL`` wins."""
        import secrets

        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self.path, flags, FILE_MODE)
        except FileExistsError:
            return
        try:
            os.write(fd, secrets.token_bytes(SECRET_SIZE))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _await_complete(self) -> bytes:
        deadline = time.monotonic() + _PUBLISH_WAIT
        while True:
            try:
                value = self._stored()
            except StorageError:
                value = None
                if time.monotonic() >= deadline:
                    raise
            if value is not None:
                return value
            if time.monotonic() >= deadline:
                raise StorageError(f"the per-user secret {self.path} could not be created")
            time.sleep(0.01)
