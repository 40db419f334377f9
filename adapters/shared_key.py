"""Keys for a token that several hosts share, and a secret that can be handed to them.

The file store's key is salted with the project's path (:func:`project_salt`), so a
token opens only in the project that wrote it. A token kept in Redis for a fleet must
open on every host that shares the service identity, whatever its checkout path, so
its key is salted with that identity instead: the server URL and the username
(:func:`identity_salt`). The per-user secret stays the other half of the key. Every
host therefore needs the *same* secret, which a fleet gets in one of two ways:

* ``CIDX_SECRET_FILE`` names a file holding it, written from a CI secret: 32 raw
  bytes, or their base64 (standard or URL-safe alphabet) on one line, which is what
  a CI secret variable can carry. Make one with ``head -c 32 /dev/urandom | base64``.
* ``CIDX_CONFIG_DIR`` points every host at a copy of the same ``user.secret`` (or the
  OS keyring holds the same value on each, see :mod:`adapters.keyring_secret`).

``CIDX_SECRET_FILE`` is held to the per-user secret's rule: the file and the directory
holding it must be the user's (or root's) and writable by no one else (a sticky
directory such as ``/tmp`` may hold it); anything else is refused (exit 5).

A host with another secret cannot read the shared token: it sets it aside with a
warning and logs in, and every other host then does the same. That churn is the
symptom of a fleet whose secrets differ.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from pathlib import Path
from typing import Protocol

from adapters.fernet_cipher import FernetCipher, derive_key, project_salt
from adapters.file_io import check_trusted, read_private
from adapters.user_secret import SECRET_SIZE
from cidx_auth.domain.errors import CorruptStore, StorageError

_IDENTITY_LABEL = b"cidx-auth shared identity key v1\0"
_MAX_SECRET_FILE = 1024
"""A base64 secret with a newline is 45 bytes; anything much larger is not one."""
_UNSET = "Or unset CIDX_SECRET_FILE to use your own per-user secret."


class SecretSource(Protocol):
    """Where the 32 bytes of the per-user secret come from."""

    def value(self) -> bytes: ...


def normalized_server(server_url: str) -> str:
    """The server URL as both the key salt and the Redis key name spell it."""
    return server_url.strip().rstrip("/")


def identity_salt(server_url: str, username: str) -> bytes:
    """A salt naming one service identity, the same on every host and in every project."""
    url = normalized_server(server_url).encode("utf-8")
    return hashlib.sha256(_IDENTITY_LABEL + url + b"\0" + username.encode("utf-8")).digest()


def identity_cipher(server_url: str, username: str, secret: SecretSource) -> FernetCipher:
    """The cipher for a token shared by every host logged in as ``username``."""
    salt = identity_salt(server_url, username)
    return FernetCipher(lambda: derive_key(secret.value(), salt))


def project_cipher(project: Path, server_url: str, secret: SecretSource) -> FernetCipher:
    """:meth:`FernetCipher.for_project` for any :class:`SecretSource`, not just a file."""
    salt = project_salt(project, server_url)
    return FernetCipher(lambda: derive_key(secret.value(), salt))


class FileSecret:
    """The secret read from ``CIDX_SECRET_FILE``: never created, only read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._value: bytes | None = None
        self._mutex = threading.Lock()

    def value(self) -> bytes:
        """The 32 secret bytes; :class:`StorageError` if the file is missing or wrong."""
        with self._mutex:
            if self._value is None:
                self._value = self._read()
            return self._value

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


def decode_secret(data: bytes, error: StorageError) -> bytes:
    """32 raw bytes as they are, or decoded from base64 text; else raise ``error``."""
    if len(data) == SECRET_SIZE:
        return data
    text = data.strip()
    padded = text + b"=" * (-len(text) % 4)
    for alphabet in (b"+/", b"-_"):  # standard base64, then the URL-safe variant
        try:
            decoded = base64.b64decode(padded, altchars=alphabet, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(decoded) == SECRET_SIZE:
            return decoded
    raise error
