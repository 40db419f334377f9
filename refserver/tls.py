"""Throw-away TLS material for serving HTTPS (and so HTTP/2) on loopback.

trustme makes a private CA and a server certificate for 127.0.0.1, ::1 and
localhost. Clients trust the CA file and nothing else, which is the point:
a client that ignores its CA setting fails verification instead of passing
by accident. The server's own files are reused so a restarted server keeps
the CA its clients already trust; nothing else is (see `ensure_tls_material`
and `refserver.private`).
"""

from __future__ import annotations

import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from refserver.private import Refused, create_private, open_private_directory, present, read_private

__all__ = ["CA_FILE", "CERT_FILE", "KEY_FILE", "MANIFEST_FILE", "Refused", "TlsMaterial",
           "client_context", "ensure_tls_material"]

CA_FILE = "ca.pem"
CERT_FILE = "server.pem"
KEY_FILE = "server.key"
MANIFEST_FILE = "refserver-tls.sha256"
"""Written last, with `O_EXCL`: the SHA-256 of each file the server made (the format of
`sha256sum`), which is how it recognises its own material when it starts again."""
MATERIAL_FILES = (CA_FILE, CERT_FILE, KEY_FILE)
SERVER_NAMES = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """Paths of the CA bundle (for clients) and the server's chain and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def ensure_tls_material(directory: Path) -> TlsMaterial:
    """The material in `directory`, made there first when the directory holds none.

    The directory must be the user's (or root's) and writable by nobody else; a missing
    one is made 0700. Each file is created ``O_EXCL | O_NOFOLLOW`` at 0600, then a
    manifest (`MANIFEST_FILE`) with their SHA-256 digests. Material is reused only when
    all of it and the manifest are there, regular files of this user at 0600, and match
    the manifest: anything else (a link, a planted key, a partial set) raises `Refused`,
    and nothing in the directory is changed.
    """
    material = TlsMaterial(directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE)
    descriptor, _ = open_private_directory(directory, "--tls")
    try:
        if not any(present(descriptor, name) for name in (*MATERIAL_FILES, MANIFEST_FILE)):
            _make(descriptor, directory)
        else:
            _check_made_here(descriptor, directory)
    finally:
        os.close(descriptor)
    return material


def _make(descriptor: int, directory: Path) -> None:
    authority = trustme.CA(organization_name="refserver test CA")
    leaf = authority.issue_cert(*SERVER_NAMES)
    contents = {
        CA_FILE: authority.cert_pem.bytes(),
        # The chain file holds the leaf first, then any intermediates.
        CERT_FILE: b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
        KEY_FILE: leaf.private_key_pem.bytes(),
    }
    for name, data in contents.items():
        create_private(descriptor, name, data, directory / name)
    # Last: a set without its manifest (a crash half-way) is never taken for ours.
    manifest = "".join(f"{_digest(data)}  {name}\n" for name, data in contents.items())
    create_private(descriptor, MANIFEST_FILE, manifest.encode(), directory / MANIFEST_FILE)


def _check_made_here(descriptor: int, directory: Path) -> None:
    advice = f"use a new --tls directory, or remove {directory}"
    for name in (*MATERIAL_FILES, MANIFEST_FILE):
        if present(descriptor, name):
            try:
                read_private(descriptor, name, directory / name)
            except Refused as refused:
                raise Refused(f"{refused}: the server will not use it; {advice}") from None
    if not present(descriptor, MANIFEST_FILE):
        made = next(name for name in MATERIAL_FILES if present(descriptor, name))
        raise Refused(f"{directory / made} was not made by the reference server (no "
                      f"{MANIFEST_FILE} beside it): it will not use it; {advice}")
    expected = _parse_manifest(read_private(descriptor, MANIFEST_FILE,
                                            directory / MANIFEST_FILE))
    for name in MATERIAL_FILES:
        if not present(descriptor, name):
            raise Refused(f"{directory / name} is missing: {advice}")
        if expected.get(name) != _digest(read_private(descriptor, name, directory / name)):
            raise Refused(f"{directory / name} is not what the reference server made "
                          f"there (its {MANIFEST_FILE} says otherwise): {advice}")


def _parse_manifest(raw: bytes) -> dict[str, str]:
    digests: dict[str, str] = {}
    for line in raw.decode("ascii", "replace").splitlines():
        digest, _, name = line.partition("  ")
        digests[name] = digest
    return digests


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def client_context(ca_file: Path) -> ssl.SSLContext:
    """An SSL context that trusts only the server's private CA."""
    return ssl.create_default_context(cafile=str(ca_file))
