"""The MAC that makes ``auth.json`` part of what the per-user secret protects.

``auth.json`` is plain JSON, but it decides where the session lives (``store_url``) and
which CA vouches for the server (``ca_bundle``): whoever can change it could move the
session to their own Redis or trust their own certificate. So every write signs the
whole document and every read checks it, before any field is used:

* the key is HMAC-SHA256 of the per-user secret over a label and the project's resolved
  path (:func:`settings_key`), so an ``auth.json`` copied into another project, or
  written under another user's secret, does not verify;
* the MAC is HMAC-SHA256 under that key of the canonical JSON of every other field
  (sorted keys, no spaces), stored in the same file as ``"mac"`` (hex). Fields added by
  later versions are covered without a change here.

Only ``cidx-auth login`` writes the file (and adopting a CIDX client's project, and
recording the algorithm pin after a first login, which reads and checks the file
first), so a hand edit stops working: :func:`check` refuses it and names the way out,
``login``, which writes a new signed file without trusting the old one. A file written
before settings were signed is refused the same way. A signed file with no per-user
secret to check it is refused too (the secret is never created just to read settings).

The CA bundle is pinned by the SHA-256 of its content (:func:`ca_digest`), recorded at
login; :func:`read_ca_bundle` reads it once, checks it, and the TLS context is built from
those bytes: trusting a file by its path alone trusts whoever can write that file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from adapters.digests import hmac_matches, hmac_sha256, sha256
from cidx_auth.domain.errors import ConfigurationError

MAC_FIELD = "mac"
_KEY_LABEL = b"cidx-auth settings v1\0"
_LOGIN = (
    "run `cidx-auth login --server URL --username NAME` (with --store and --ca-bundle if "
    "you use them) to record the settings again"
)


def settings_key(secret: bytes, root: Path) -> bytes:
    """The MAC key for one project's settings: the secret bound to the project's path."""
    path = str(root.resolve()).encode("utf-8", "surrogateescape")
    return hmac_sha256(secret, _KEY_LABEL + path)


def seal(document: Mapping[str, Any], root: Path, secret: bytes) -> dict[str, Any]:
    """``document`` with its ``"mac"`` field for the project at ``root`` (an old one is
    replaced)."""
    return seal_with(document, settings_key(secret, root))


def check(
    document: Mapping[str, Any], path: Path, root: Path, secret: Callable[[], bytes]
) -> None:
    """Refuse ``document`` (read from ``path``) unless its MAC matches every other field.
    ``secret`` is only asked for when there is a MAC to check."""
    if document.get(MAC_FIELD) is None:
        raise _unsigned(path)
    if not verifies(document, settings_key(secret(), root)):
        raise _changed(path)


def seal_with(document: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """``document`` with its ``"mac"`` field under ``key``: the same seal for a file that
    belongs to no project (the list of approved servers)."""
    fields = _fields(document)
    return {**fields, MAC_FIELD: _mac(fields, key)}


def verifies(document: Mapping[str, Any], key: bytes) -> bool:
    """Whether ``document`` carries a MAC under ``key`` that matches every other field."""
    mac = document.get(MAC_FIELD)
    return isinstance(mac, str) and _hex(mac) and hmac_matches(
        key, _canonical(_fields(document)), bytes.fromhex(mac)
    )


def _fields(document: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in document.items() if name != MAC_FIELD}


def _canonical(fields: Mapping[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _mac(fields: Mapping[str, Any], key: bytes) -> str:
    return hmac_sha256(key, _canonical(fields)).hex()


def _hex(text: str) -> bool:
    """Lowercase hex digits, as :func:`_mac` writes them (and ``bytes.fromhex`` reads)."""
    return bool(text) and len(text) % 2 == 0 and set(text) <= set("0123456789abcdef")


def _unsigned(path: Path) -> ConfigurationError:
    return ConfigurationError(
        f"{path} is not signed: an earlier cidx-auth or a hand edit wrote it, so its "
        f"settings (store, CA bundle, server) are not used; {_LOGIN}"
    )


def _changed(path: Path) -> ConfigurationError:
    return ConfigurationError(
        f"{path} was changed outside cidx-auth, copied from another project, or written "
        f"under another per-user secret, so its settings (store, CA bundle, server) are "
        f"not used. Settings change only through login: {_LOGIN}"
    )


def no_secret(path: Path, secret: Path | None) -> ConfigurationError:
    """``secret``: the file that is missing; None for the OS keyring's entry."""
    where = secret if secret is not None else "in the OS keyring"
    return ConfigurationError(
        f"{path} cannot be checked: the per-user secret {where} is missing (so nothing "
        f"stored for this project opens either); {_LOGIN}"
    )


def ca_digest(path: Path) -> str:
    """The SHA-256 (hex) of the CA bundle's content."""
    return sha256(_read_ca(path)).hex()


def read_ca_bundle(path: Path, pinned: str | None) -> bytes:
    """The CA bundle's content, read once, refused unless it still has the SHA-256
    recorded at login (``pinned``; None: trusted by its path, as a library caller chose).
    The TLS context is built from these same bytes, so a swap after the check is moot."""
    content = _read_ca(path)
    if pinned is not None and sha256(content).hex() != pinned:
        raise ConfigurationError(  # a public hash: no timing to hide
            f"the CA bundle {path} is not the file `cidx-auth login` recorded (its content "
            "changed): it is not trusted. If the change is yours, run "
            "`cidx-auth login --ca-bundle ...` again to accept it"
        )
    return content


def _read_ca(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigurationError(
            f"the CA bundle {path} cannot be read ({error.strerror or type(error).__name__}); "
            "run `cidx-auth login --ca-bundle FILE` again with a readable PEM file"
        ) from None
