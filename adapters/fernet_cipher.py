"""Fernet encryption under a key that belongs to one user and one project (errata #14).

The key is PBKDF2-HMAC-SHA256 of the per-user secret (:mod:`adapters.user_secret`),
salted with the project's identity: its resolved path and its server URL. So a token
file copied into another project, or pointed at another server, does not decrypt
there, and one taken to another user or machine does not decrypt anywhere
(:func:`project_cipher`).

A token kept in Redis for a fleet must open on every host that shares the service
identity, whatever its checkout path, so its key is salted with that identity instead:
the server URL and the username (:func:`identity_cipher`). The per-user secret stays
the other half of the key, so every host needs the *same* secret
(:mod:`adapters.secret_sources` says how a fleet hands it out). A host with another
secret cannot read the shared token: it sets it aside with a warning and logs in, and
every other host then does the same; that churn is the symptom of a fleet whose
secrets differ.

Iterations: PBKDF2's stretching slows down guessing a *low-entropy* input such as a
password. Our input is 256 random bits, which nobody can guess at any speed, so the
count buys no security; it only costs start-up time in every CLI process that reads
the token. :data:`PBKDF2_ITERATIONS` is therefore small (1,000, well under a
millisecond). PBKDF2 is kept, rather than a bare hash, because it is the standard
keyed derivation the user story asks for; it comes from cryptography, already loaded
for Fernet (:mod:`adapters.digests`).

Any decryption failure (damaged, truncated, foreign key, tampered) is one opaque
:class:`CorruptStore` that says nothing about which check failed.

Memory (errata #13): the stores wipe the plaintext buffers they own with :func:`wipe`
(:data:`MEMORY_CLEAR_ITERATIONS` passes). What Python cannot wipe stays in memory until
the allocator reuses it: the ``str`` that ``json.dumps`` returns, the ``bytes`` handed
to and returned by Fernet, the key and the secret, and the token as the provider holds
it. Wiping narrows the window; it does not close it.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet

from adapters.digests import pbkdf2_sha256, sha256
from cidx_auth.domain.errors import CorruptStore

if TYPE_CHECKING:
    from adapters.secret_sources import SecretSource

PBKDF2_ITERATIONS = 1_000
MEMORY_CLEAR_ITERATIONS = 3
_SALT_LABEL = b"cidx-auth project key v1\0"
_IDENTITY_LABEL = b"cidx-auth shared identity key v1\0"
_WIPE_PATTERNS = (0x00, 0xFF, 0x00)


def wipe(buffer: bytearray) -> None:
    """Overwrite ``buffer`` in place, :data:`MEMORY_CLEAR_ITERATIONS` times."""
    size = len(buffer)
    for index in range(MEMORY_CLEAR_ITERATIONS):
        buffer[:] = bytes([_WIPE_PATTERNS[index % len(_WIPE_PATTERNS)]]) * size


def project_salt(project: Path, server_url: str) -> bytes:
    """The project's identity as a salt: resolved path and server URL, unambiguously joined."""
    path = str(project.resolve()).encode("utf-8", "surrogateescape")
    url = normalized_server(server_url).encode("utf-8")
    return sha256(_SALT_LABEL + path + b"\0" + url)


def normalized_server(server_url: str) -> str:
    """The server URL as the key salts and the Redis key name spell it."""
    return server_url.strip().rstrip("/")


def identity_salt(server_url: str, username: str) -> bytes:
    """A salt naming one service identity, the same on every host and in every project."""
    url = normalized_server(server_url).encode("utf-8")
    return sha256(_IDENTITY_LABEL + url + b"\0" + username.encode("utf-8"))


def derive_key(secret: bytes, salt: bytes, iterations: int = PBKDF2_ITERATIONS) -> bytes:
    """32 key bytes from the user's secret and a project salt."""
    return pbkdf2_sha256(secret, salt, iterations)


class FernetCipher:
    """Authenticated encryption (AES-128-CBC + HMAC-SHA256) behind the ``Cipher`` port.

    ``key`` returns the 32 raw key bytes; it is called once, on first use, so building
    a container costs no file I/O. It may raise :class:`StorageError` (no secret): that
    is a storage failure, not a damaged file, and is passed on as it is.
    """

    def __init__(self, key: Callable[[], bytes]) -> None:
        self._key = key
        self._fernet: Fernet | None = None
        self._mutex = threading.Lock()

    def encrypt(self, plaintext: bytes) -> bytes:
        return self._cipher().encrypt(plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        fernet = self._cipher()
        try:
            return fernet.decrypt(ciphertext)
        except Exception:  # whatever failed, the answer is the same and reveals nothing
            raise CorruptStore(
                "stored data cannot be decrypted here: it is damaged, or it was written "
                "for another project, server, user or machine"
            ) from None

    def _cipher(self) -> Fernet:
        with self._mutex:
            if self._fernet is None:
                self._fernet = Fernet(base64.urlsafe_b64encode(self._key()))
            return self._fernet


def project_cipher(project: Path, server_url: str, secret: SecretSource) -> FernetCipher:
    """The cipher for ``project`` talking to ``server_url``, keyed by ``secret``."""
    return _keyed(secret, project_salt(project, server_url))


def identity_cipher(server_url: str, username: str, secret: SecretSource) -> FernetCipher:
    """The cipher for a token shared by every host logged in as ``username``."""
    return _keyed(secret, identity_salt(server_url, username))


def _keyed(secret: SecretSource, salt: bytes) -> FernetCipher:
    # The secret is read on first use, not here: building a container costs no I/O.
    return FernetCipher(lambda: derive_key(secret.value(), salt))
