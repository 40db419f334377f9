"""Files in the CIDX client's format, for tests (unit, integration and e2e).

Written from the format documented in issue 14, not from the client's code, and with
``cryptography``'s own PBKDF2 and padding (the adapter uses ``hashlib`` and unpads by
hand), so a mistake in one is not copied into the other::

    .creds / .token   salt (32) || iv (16) || AES-256-CBC(PKCS7(JSON)), the JSON being
                      {"username", "password", "server_url", "created_at"}; in .token the
                      "password" is the token record as JSON text: json.dumps({"token",
                      "expires_at", "created_at", "version"}) (the client stores its token
                      through its credential encryption)
    key               PBKDF2-HMAC-SHA256(f"{username}:{repo_path}:{server_url}",
                                         salt, 100000 iterations, 32 bytes)
    .remote-config    JSON {"mode", "server_url", "username",
                            "encrypted_credentials" (base64 of .creds), "created_at", "updated_at"}
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

ITERATIONS = 100_000
CLIENT_DIR = ".code-indexer"


def client_key(salt: bytes, username: str, repo_path: Path, server_url: str) -> bytes:
    """The client's key for one file (its own salt)."""
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=ITERATIONS)
    return kdf.derive(f"{username}:{repo_path.absolute()}:{server_url}".encode())


def encrypt_client_bytes(
    plaintext: bytes,
    username: str,
    project_root: Path,
    server_url: str,
    *,
    salt: bytes | None = None,
    iv: bytes | None = None,
) -> bytes:
    """``plaintext`` in the client's format (random salt and iv unless given)."""
    salt = os.urandom(32) if salt is None else salt
    iv = os.urandom(16) if iv is None else iv
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    key = client_key(salt, username, project_root, server_url)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return salt + iv + encryptor.update(padded) + encryptor.finalize()


def encrypt_client_blob(
    document: dict[str, Any],
    username: str,
    project_root: Path,
    server_url: str,
    *,
    salt: bytes | None = None,
    iv: bytes | None = None,
) -> bytes:
    """``document`` as JSON in the client's format."""
    plaintext = json.dumps(document).encode()
    return encrypt_client_bytes(plaintext, username, project_root, server_url, salt=salt, iv=iv)


def write_client_project(
    root: Path,
    *,
    server_url: str,
    username: str,
    password: str,
    token: str | None = None,
    mode: str = "remote",
    creds_file: bool = True,
    embed: bool = True,
    repo_path: Path | None = None,
) -> dict[str, bytes]:
    """Write ``root/.code-indexer/`` as ``cidx init --remote`` (and a remote command) would.

    ``repo_path`` is the path the key is made for (``root`` unless given: give another
    to fake files copied from elsewhere). Returns ``{file name: bytes written}``.
    """
    key_root = root if repo_path is None else repo_path
    now = datetime.now(UTC).isoformat()
    creds = encrypt_client_blob(
        {"username": username, "password": password, "server_url": server_url,
         "created_at": now},
        username, key_root, server_url,
    )
    config: dict[str, Any] = {"mode": mode, "server_url": server_url, "username": username}
    if embed:
        config["encrypted_credentials"] = base64.b64encode(creds).decode("ascii")
    config |= {"created_at": now, "updated_at": now}
    files = {".remote-config": json.dumps(config, indent=2).encode()}
    if creds_file:
        files[".creds"] = creds
    if token is not None:
        files[".token"] = client_token_blob(token, username, key_root, server_url, now)
    directory = root / CLIENT_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, data in files.items():
        _write_private(directory / name, data)
    return files


def client_token_blob(
    token: str, username: str, key_root: Path, server_url: str, now: str | None = None
) -> bytes:
    """``.token`` as the client writes it: its token record, as JSON text, is the
    ``password`` of a credentials record encrypted like ``.creds``."""
    now = datetime.now(UTC).isoformat() if now is None else now
    record = {"token": token, "expires_at": _expiry(token), "created_at": now,
              "version": "1.0"}
    return encrypt_client_blob(
        {"username": username, "password": json.dumps(record), "server_url": server_url,
         "created_at": now},
        username, key_root, server_url,
    )


def _expiry(token: str) -> str:
    """The JWT's ``exp`` as ISO time, or ten minutes from now if it has none."""
    try:
        claims = token.split(".")[1]
        exp = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["exp"]
        return datetime.fromtimestamp(exp, UTC).isoformat()
    except (IndexError, ValueError, KeyError, TypeError):
        return (datetime.now(UTC) + timedelta(minutes=10)).isoformat()


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
