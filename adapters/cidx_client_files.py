"""The CIDX client's own files in ``.code-indexer/``: read them, and prune them on request.

The CIDX client (``cidx init --remote``, code-indexer 11.x) keeps, by its documented
format (issue 14; none of its code is used here)::

    .remote-config  JSON {"mode": "remote", "server_url", "username",
                          "encrypted_credentials": base64 of the .creds bytes, ...}
    .creds          salt (32) || iv (16) || AES-256-CBC(PKCS7(JSON)), JSON
                    {"username", "password", "server_url", "created_at"}
    .token          the same scheme and the same record as .creds, with the token record
                    as the *text* of its "password": json.dumps({"token", "expires_at",
                    "created_at", "version"}) (the client stores its token through its
                    credential encryption; code-indexer 11.79's PersistentTokenManager)

with the key ``PBKDF2-HMAC-SHA256(f"{username}:{repo_path}:{server_url}", salt,
100000, 32)``. Everything in that key is public, so anyone who can read the files can
decrypt them (errata #14): cidx-auth imports the password into its own store and, only
for ``cidx-auth login --migrate``, removes the weak copies (:func:`remove_weak_copies`).

cidx-auth's own encrypted files are Fernet tokens (URL-safe base64 text starting with
``gAAAAA``); the client's are random binary. That is how the two are told apart.

Rules: these files belong to another program. Every reader opens with ``O_NOFOLLOW``,
accepts only a regular file of at most 64 KiB owned by the user (or root), and never
writes, renames or corrects the mode of anything. ``cryptography`` and ``logging`` are
imported on first use: the CLI's fast path may import this module to tell formats apart.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.digests import pbkdf2_sha256
from adapters.file_io import (
    POSIX,
    info,
    is_foreign,
    is_own_format,
    read_regular,
    storage_error,
    write_private,
)
from adapters.project_layout import server_url_problem
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import (
    ConfigurationError,
    CorruptStore,
    NotLoggedIn,
    StorageError,
)

REMOTE_CONFIG = ".remote-config"
CLIENT_CREDS = ".creds"
CLIENT_TOKEN = ".token"  # noqa: S105 - a file name, not a secret
CLIENT_PBKDF2_ITERATIONS = 100_000
_SALT, _IV, _BLOCK = 32, 16, 16
_HEADER = _SALT + _IV
_OPAQUE = "the CIDX client's file cannot be decrypted here"
_UNREADABLE = (
    "the CIDX client's saved password in {path} cannot be read for this project "
    "(it was written for another directory, server or user): run `cidx-auth login`"
)
_FIX_CONFIG = (
    "repair it with the CIDX client (`cidx init --remote`), "
    "or run `cidx-auth login --server URL --username NAME`"
)


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    """What ``.remote-config`` says about the server; built by :func:`read_remote_config`."""

    server_url: str
    """Without a trailing "/"."""
    username: str
    encrypted_credentials: bytes | None = field(default=None, repr=False)
    """The client's ``.creds`` bytes (base64-decoded), if the file embeds them."""
    written_server_url: str | None = None
    """``server_url`` exactly as in the file: the client's key is derived from it."""

    def __post_init__(self) -> None:
        # The one server-URL rule (project_layout.server_url_problem): a user:pass@ is
        # never shown, stored or sent; a control character never reaches a request.
        problem = server_url_problem(self.server_url)
        if problem:
            raise ConfigurationError(f"has a server_url that {problem}")
        if not self.username:
            raise ConfigurationError("has an empty username")

    def key_server_urls(self) -> tuple[str, ...]:
        """The spellings of the URL to try in the client's key, most likely first."""
        first = self.written_server_url or self.server_url
        return tuple(dict.fromkeys((first, self.server_url, self.server_url + "/")))


class _Refused(Exception):
    """A file that is not one the client could have written (a link, a FIFO, too big)."""


def read_remote_config(directory: Path) -> RemoteConfig | None:
    """The client's ``.remote-config`` in ``directory``; None if there is none.

    :class:`ConfigurationError` (exit 2), naming the file but none of its content, when
    it is refused or does not describe a remote project; :class:`StorageError` (exit 5)
    when ``directory`` is a symbolic link. Nothing is written.
    """
    path = directory / REMOTE_CONFIG
    found = _read_config(path)
    return None if found is None else _remote_config(path, _document(path, found[0]))


def _read_config(path: Path) -> tuple[bytes, os.stat_result] | None:
    _check_directory(path.parent)
    try:
        return _read_regular(path)
    except _Refused as refusal:
        raise _bad_config(path, str(refusal)) from None


def _document(path: Path, data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):  # a UnicodeDecodeError is a ValueError
        raise _bad_config(path, "is not valid JSON") from None
    if not isinstance(document, dict):
        raise _bad_config(path, "is not a JSON object")
    return document


def _remote_config(path: Path, document: dict[str, Any]) -> RemoteConfig:
    if document.get("mode") != "remote":
        raise ConfigurationError(
            f"the CIDX client's file {path} is not in remote mode: a local-mode project "
            "has no server to log in to; run `cidx-auth login --server URL --username NAME`"
        )
    server_url, username = document.get("server_url"), document.get("username")
    if not isinstance(server_url, str):
        raise _bad_config(path, "has no server_url (or it is not a string)")
    if not isinstance(username, str):
        raise _bad_config(path, "has no username (or it is not a string)")
    embedded = _embedded(path, document.get("encrypted_credentials"))
    try:
        return RemoteConfig(server_url.rstrip("/"), username, embedded, server_url)
    except ConfigurationError as problem:
        raise _bad_config(path, str(problem)) from None


def _embedded(path: Path, value: Any) -> bytes | None:
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return base64.b64decode(value, validate=True) or None
    except (binascii.Error, ValueError):
        pass
    info("%s: encrypted_credentials is not base64 text; not used", path)
    return None


def _bad_config(path: Path, problem: str) -> ConfigurationError:
    return ConfigurationError(f"the CIDX client's file {path} {problem}: {_FIX_CONFIG}")


def decrypt_client_blob(
    blob: bytes, username: str, project_root: Path, server_url: str
) -> dict[str, Any]:
    """The JSON object in a blob of the client's format; :class:`CorruptStore` otherwise.

    Every failure (too short, wrong key, bad padding, not a UTF-8 JSON object) gives the
    same message: it must not tell which check failed.
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from adapters.fernet_cipher import wipe

    if not _client_shaped(blob):
        raise CorruptStore(_OPAQUE)
    body = memoryview(blob)[_HEADER:]
    padded = bytearray(len(body) + _BLOCK - 1)  # update_into wants a block of slack
    text = bytearray()
    try:
        key = _client_key(blob[:_SALT], username, project_root, server_url)
        decryptor = Cipher(algorithms.AES(key), modes.CBC(blob[_SALT:_HEADER])).decryptor()
        size = decryptor.update_into(body, padded)
        decryptor.finalize()
        # Unpadded by hand, in place: cryptography's unpadder returns bytes we cannot wipe.
        text = padded[: _unpadded_size(padded, size)]
        document = json.loads(text.decode("utf-8"))
    except Exception:  # whatever failed, the answer is the same and reveals nothing
        raise CorruptStore(_OPAQUE) from None
    finally:
        wipe(padded)
        wipe(text)
    if not isinstance(document, dict):
        raise CorruptStore(_OPAQUE)
    return document


def _client_shaped(data: bytes) -> bool:
    """Salt, iv and at least one whole AES block: the only shape the client writes."""
    return len(data) >= _HEADER + _BLOCK and (len(data) - _HEADER) % _BLOCK == 0


def _client_key(salt: bytes, username: str, project_root: Path, server_url: str) -> bytes:
    secret = f"{username}:{project_root.absolute()}:{server_url}".encode()
    return pbkdf2_sha256(secret, salt, CLIENT_PBKDF2_ITERATIONS)


def _unpadded_size(padded: bytearray, size: int) -> int:
    count = padded[size - 1] if size else 0
    if not 1 <= count <= _BLOCK or any(byte != count for byte in padded[size - count : size]):
        raise ValueError("bad padding")
    return size - count


def client_password_saved(directory: Path, remote: RemoteConfig) -> bool:
    """Whether the client saved a password here (its ``.creds``, or
    ``encrypted_credentials``), without reading or decrypting it (``status``)."""
    return os.path.lexists(directory / CLIENT_CREDS) or bool(remote.encrypted_credentials)


def read_client_credentials(
    directory: Path, project_root: Path, remote: RemoteConfig
) -> Credentials:
    """The password the client saved: its ``.creds``, else ``encrypted_credentials``.

    Only a blob that decrypts under this project's path, and names ``remote.username``,
    is accepted: that shows the user's own client wrote it here. :class:`NotLoggedIn`
    (exit 3) otherwise, without any secret in the message.
    """
    creds = directory / CLIENT_CREDS
    stored = _read_quietly(creds)
    blobs = [blob for blob in (stored, remote.encrypted_credentials) if blob]
    if not blobs:
        raise NotLoggedIn(
            f"the CIDX client has no saved password in {directory}: run `cidx-auth login`"
        )
    for blob in dict.fromkeys(blobs):  # .creds and the embedded copy are usually equal
        found = _credentials(_decrypt_for_project(blob, project_root, remote), remote.username)
        if found is not None:
            return found
    raise NotLoggedIn(_UNREADABLE.format(path=creds if stored else directory / REMOTE_CONFIG))


def _credentials(document: dict[str, Any] | None, username: str) -> Credentials | None:
    if document is None or document.get("username") != username:
        return None
    password = document.get("password")
    try:
        return Credentials(username, password) if isinstance(password, str) else None
    except ConfigurationError:  # empty or over-long: not something to log in with
        return None


def read_client_token(directory: Path, project_root: Path, remote: RemoteConfig) -> str | None:
    """The access token in the client's ``.token``; None if absent or unreadable (INFO).

    The client writes it as a credentials record (``username``, ``password``, ...) whose
    ``password`` is the token record as JSON text; only that shape is read, for
    ``remote.username``. A record with ``token`` at the top level is not read: no version
    of the client writes one. A ``.token`` in cidx-auth's own format is not the client's.
    """
    path = directory / CLIENT_TOKEN
    data = _read_quietly(path)
    if data is None:
        return None
    document = _decrypt_for_project(data, project_root, remote)
    if document is None:
        info("%s cannot be read for this project; the CIDX client's token is not used", path)
        return None
    token, problem = _client_token(document, remote.username)
    if token is None:
        info("%s %s; the CIDX client's token is not used", path, problem)
    return token


MAX_TOKEN_RECORD = 16 * 1024
"""The longest token record read from a ``password`` field (a JWT is well under 4 KiB)."""


def _client_token(document: dict[str, Any], username: str) -> tuple[str | None, str]:
    """The token in a decrypted ``.token`` record, or None and why (no secret in it)."""
    if document.get("username") != username:
        return None, "names another user (or none)"
    text = document.get("password")
    if not isinstance(text, str):
        return None, "holds no token record (no password text)"
    if len(text) > MAX_TOKEN_RECORD:
        return None, "holds a token record over 16 KiB"
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        return None, "holds a token record that is not JSON"
    if not isinstance(record, dict):
        return None, "holds a token record that is not a JSON object"
    token = record.get("token")
    if not isinstance(token, str) or not token:
        return None, "holds a token record without a token"
    return token, ""


def _decrypt_for_project(
    blob: bytes, project_root: Path, remote: RemoteConfig
) -> dict[str, Any] | None:
    """The blob's JSON under any spelling of this project's key; None if none fits.

    The root is tried as given and resolved (the client may have seen either), the URL
    as written and with or without its trailing "/": usually one PBKDF2 run, at most four.
    """
    if not _client_shaped(blob):  # fail before paying for PBKDF2
        return None
    try:
        roots = dict.fromkeys((project_root.absolute(), project_root.resolve()))
    except (OSError, RuntimeError):  # a symlink loop: the path as given is all there is
        roots = {project_root.absolute(): None}
    for root in roots:
        for url in remote.key_server_urls():
            try:
                return decrypt_client_blob(blob, remote.username, root, url)
            except CorruptStore:
                continue
    return None


def remove_weak_copies(directory: Path) -> list[str]:
    """For ``cidx-auth login --migrate``: remove the client's weakly encrypted password.

    Deletes ``.creds`` if it really is the client's (foreign, client-shaped) and drops
    ``encrypted_credentials`` from ``.remote-config`` (every other field and the file's
    mode kept, replaced atomically). ``.token`` is never touched. Returns what was
    removed, for the CLI to print; empty if there was nothing.
    """
    removed: list[str] = []
    config = directory / REMOTE_CONFIG
    if _drop_embedded_password(config):
        removed.append(f"the saved password (encrypted_credentials) in {config}")
    creds = directory / CLIENT_CREDS
    if _is_client_blob_file(creds):
        try:
            creds.unlink()
        except OSError as error:
            raise storage_error("remove", creds, error) from error
        removed.append(f"the CIDX client's saved password file {creds}")
    return removed


def _drop_embedded_password(path: Path) -> bool:
    found = _read_config(path)
    if found is None:
        return False
    data, status = found
    document = _document(path, data)
    _remote_config(path, document)  # refuse to rewrite what we would not read
    if "encrypted_credentials" not in document:
        return False
    del document["encrypted_credentials"]
    text = json.dumps(document, indent=2) + ("\n" if data.endswith(b"\n") else "")
    write_private(path, text.encode(), sweep_young=False, now=time.time(),
                  mode=stat.S_IMODE(status.st_mode))
    return True


def _is_client_blob_file(path: Path) -> bool:
    """Really the client's file: regular, binary, and of the only shape it writes."""
    try:
        found = _read_regular(path)
    except (_Refused, StorageError):
        return False
    if found is None:
        return False
    return is_foreign(found[0])


def _read_regular(path: Path) -> tuple[bytes, os.stat_result] | None:
    """The bytes and status of the file at ``path``; None if missing.

    :class:`_Refused` for a link, a non-regular file, one over 64 KiB or one owned by
    another user; :class:`StorageError` if the read fails. Nothing is changed, the mode
    included: the file is not cidx-auth's.
    """
    found = read_regular(path, refuse=_Refused)
    if found is not None and POSIX and found[1].st_uid not in (os.geteuid(), 0):
        raise _Refused(f"is owned by another user (uid {found[1].st_uid})")
    return found


def _check_directory(directory: Path) -> None:
    """A symbolic link in place of ``.code-indexer`` is refused, not resolved (exit 5)."""
    if os.path.islink(directory):
        raise StorageError(
            f"{directory} is a symbolic link; cidx-auth does not follow it: "
            "replace it with a real directory"
        )


def _read_quietly(path: Path) -> bytes | None:
    """The client's file at ``path``, or None (INFO) when absent, refused or not the client's."""
    try:
        found = _read_regular(path)
    except (_Refused, StorageError) as problem:
        info("%s not read: %s", path, problem)
        return None
    if found is not None and is_own_format(found[0]):
        info("%s is cidx-auth's own file, not the CIDX client's", path)
        return None
    return None if found is None else found[0]
