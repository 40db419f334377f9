"""The login credentials in ``.code-indexer/.creds``, encrypted like the token.

Format: one Fernet token whose plaintext is
``{"version": 1, "username": ..., "password": ...}``.

Unlike a damaged token, damaged credentials are not recovered from silently: only the
user knows the password. :meth:`FileCredentialStore.load` raises
:class:`CredentialsUnreadable` with what to do, and the file is left where it is
(``cidx-auth login`` replaces it). Another program's ``.creds`` (the CIDX client's,
not a Fernet token) is not damage: :meth:`load` reports it at INFO and answers None, and
it is never overwritten or removed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.fernet_cipher import wipe
from adapters.file_io import (
    info,
    is_foreign,
    read_private,
    refuse_foreign,
    storage_error,
    write_private,
)
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import CorruptStore, CredentialsUnreadable

if TYPE_CHECKING:
    from cidx_auth.ports import Cipher

CREDENTIALS_FORMAT_VERSION = 1
UNREADABLE = "stored credentials cannot be read: run `cidx-auth login` again"


class FileCredentialStore:
    """The ``CredentialStore`` port over an encrypted file."""

    def __init__(
        self, path: Path, cipher: Cipher, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self._cipher = cipher
        self._clock = clock

    def load(self) -> Credentials | None:
        """The stored credentials, None if there are none; :class:`CredentialsUnreadable`
        if they exist but cannot be read back."""
        try:
            found = read_private(self.path, ours=lambda data: not is_foreign(data))
            if found is None:
                return None
            if is_foreign(found[0]):
                info("%s is not in cidx-auth's format (another program's file); left alone",
                     self.path)
                return None
            plaintext = bytearray(self._cipher.decrypt(found[0]))
        except CorruptStore:
            raise CredentialsUnreadable(UNREADABLE) from None
        try:
            return _credentials(json.loads(plaintext))
        except (ValueError, TypeError, RecursionError):
            raise CredentialsUnreadable(UNREADABLE) from None
        finally:
            wipe(plaintext)

    def save(self, credentials: Credentials) -> None:
        """Replace the stored credentials atomically."""
        document = {
            "version": CREDENTIALS_FORMAT_VERSION,
            "username": credentials.username,
            "password": credentials.password,
        }
        refuse_foreign(self.path, "credentials")
        plaintext = bytearray(json.dumps(document), "utf-8")
        try:
            blob = self._cipher.encrypt(bytes(plaintext))
        finally:
            wipe(plaintext)
        write_private(self.path, blob, sweep_young=False, now=self._clock())

    def clear(self) -> None:
        """Forget the stored credentials."""
        refuse_foreign(self.path, "credentials")
        try:
            self.path.unlink(missing_ok=True)
        except OSError as error:
            raise storage_error("remove", self.path, error) from error


def _credentials(document: Any) -> Credentials:
    if not isinstance(document, dict) or document.get("version") != CREDENTIALS_FORMAT_VERSION:
        raise ValueError("unknown credentials format")
    username, password = document.get("username"), document.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ValueError("credentials without a username or password")
    return Credentials(username, password)  # checks the lengths (ConfigurationError)

