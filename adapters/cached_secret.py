"""What every source of the per-user secret shares: its size, the read-once cache, and
the decoding of a secret written as text.

The sources build on it: :class:`adapters.user_secret.UserSecret`,
:class:`adapters.keyring_secret.KeyringSecret` (which falls back to the former) and
``CIDX_SECRET_FILE``'s :class:`adapters.secret_sources.FileSecret`. The choice among them,
:func:`adapters.secret_sources.secret_source`, imports the sources, so the imports run
one way: chooser, then sources, then this module. (It was once part of the chooser, and
the sources imported the module that imported them.)
"""

from __future__ import annotations

import base64
import binascii
import threading

from cidx_auth.domain.errors import StorageError

SECRET_SIZE = 32


class CachedSecret:
    """A source that reads its secret on first use (``_read``) and keeps it."""

    def __init__(self) -> None:
        self._value: bytes | None = None
        self._mutex = threading.Lock()

    def value(self) -> bytes:
        """The 32 secret bytes; :class:`StorageError` if they cannot be had."""
        with self._mutex:
            if self._value is None:
                self._value = self._read()
            return self._value

    def _read(self) -> bytes:
        raise NotImplementedError


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
