"""Where the per-user secret comes from, and the choice among the sources.

Every key cidx-auth uses is derived from 32 secret bytes of the user's
(:mod:`adapters.fernet_cipher`). :func:`secret_source` picks their source from the
environment:

* ``CIDX_SECRET_FILE`` names a file holding them (:class:`FileSecret`), written from a
  CI secret: 32 raw bytes, or their base64 (standard or URL-safe alphabet) on one line,
  which is what a CI secret variable can carry. Make one with
  ``head -c 32 /dev/urandom | base64``. A fleet that shares one session in Redis hands
  every host the same secret this way (or points every host's ``CIDX_CONFIG_DIR`` at a
  copy of the same ``user.secret``, or keeps the same value in each OS keyring).
* otherwise ``CIDX_SECRET_BACKEND``: ``file`` (the default) for ``user.secret`` in the
  configuration directory (:class:`adapters.user_secret.UserSecret`), ``keyring`` for
  the OS keyring (:class:`adapters.keyring_secret.KeyringSecret`).

``CIDX_SECRET_FILE`` is held to the per-user secret's rule: the file and the directory
holding it must be the user's (or root's) and writable by no one else (a sticky
directory such as ``/tmp`` may hold it); anything else is refused (exit 5).

Each source reads its secret once, on first use, and keeps it for the process
(:class:`adapters.cached_secret.CachedSecret`): Python gives no way to wipe it anyway
(errata #13).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from adapters.cached_secret import CachedSecret, decode_secret
from adapters.file_io import check_trusted, read_private
from adapters.keyring_secret import KeyringSecret
from adapters.user_secret import UserSecret
from cidx_auth.domain.errors import ConfigurationError, CorruptStore, StorageError

BACKENDS = ("file", "keyring")
_MAX_SECRET_FILE = 1024
"""A base64 secret with a newline is 45 bytes; anything much larger is not one."""
_UNSET = "Or unset CIDX_SECRET_FILE to use your own per-user secret."


class SecretSource(Protocol):
    """Where the 32 bytes of the per-user secret come from."""

    def value(self) -> bytes: ...


def secret_source(
    config_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> SecretSource:
    """The per-user secret the environment asks for (see the module docstring)."""
    env = os.environ if environ is None else environ
    if env.get("CIDX_SECRET_FILE"):
        return FileSecret(Path(env["CIDX_SECRET_FILE"]))
    choice = env.get("CIDX_SECRET_BACKEND", "file").strip().lower() or "file"
    if choice not in BACKENDS:
        raise ConfigurationError(
            f"CIDX_SECRET_BACKEND must be one of {', '.join(BACKENDS)}, not {choice!r}"
        )
    if choice == "keyring":  # chosen, so required: not a silent fall back to the file
        from adapters.extras import require

        require("keyring", "CIDX_SECRET_BACKEND=keyring", "set CIDX_SECRET_BACKEND=file")
    file_secret = UserSecret(config_dir)
    return KeyringSecret(file_secret) if choice == "keyring" else file_secret


class FileSecret(CachedSecret):
    """The secret read from ``CIDX_SECRET_FILE``: never created, only read."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def _read(self) -> bytes:
        check_trusted(self.path, "CIDX_SECRET_FILE", elsewhere=_UNSET)
        try:
            found = read_private(self.path, limit=_MAX_SECRET_FILE, secret=True)
        except CorruptStore:
            raise self._unusable("is not a regular file of at most 1 KiB") from None
        if found is None:
            raise self._unusable("does not exist")
        return decode_secret(found[0], self._unusable("does not hold 32 bytes or their base64"))

    def _unusable(self, why: str) -> StorageError:
        return StorageError(
            f"CIDX_SECRET_FILE {self.path} {why}; write the fleet's shared secret there "
            f"(32 bytes, or base64 of them). {_UNSET}"
        )
