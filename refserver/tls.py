"""Throw-away TLS material for serving HTTPS (and so HTTP/2) on loopback.

trustme makes a private CA and a server certificate for 127.0.0.1, ::1 and
localhost. Clients trust the CA file and nothing else, which is the point:
a client that ignores its CA setting fails verification instead of passing
by accident. Existing files are reused so a restarted server keeps the CA
its clients already trust.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

CA_FILE = "ca.pem"
CERT_FILE = "server.pem"
KEY_FILE = "server.key"
SERVER_NAMES = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """Paths of the CA bundle (for clients) and the server's chain and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def ensure_tls_material(directory: Path) -> TlsMaterial:
    """Return the material in `directory`, creating it first if any piece is missing."""
    directory.mkdir(parents=True, exist_ok=True)
    material = TlsMaterial(directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE)
    if all(path.exists() for path in (material.ca_file, material.cert_file, material.key_file)):
        return material
    authority = trustme.CA(organization_name="refserver test CA")
    leaf = authority.issue_cert(*SERVER_NAMES)
    authority.cert_pem.write_to_path(str(material.ca_file))
    # The chain file holds the leaf first, then any intermediates.
    material.cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    # Create the key file owner-only from the start rather than chmod afterwards.
    descriptor = os.open(material.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as key_out:
        key_out.write(leaf.private_key_pem.bytes())
    return material


def client_context(ca_file: Path) -> ssl.SSLContext:
    """An SSL context that trusts only the server's private CA."""
    return ssl.create_default_context(cafile=str(ca_file))
