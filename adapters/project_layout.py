"""Where a project keeps its cidx-auth files, and its plain settings.

Everything lives in ``<project>/.code-indexer/`` (directory 0700, files 0600)::

    auth.json          settings, plain JSON (no secrets)
    .token             the session, encrypted          (adapters.file_token_store)
    .token.lock        the token lock, never deleted   (adapters.file_lock)
    .creds             username and password, encrypted
    .state             breaker state and counters, plain JSON
    .state.lock        the state lock, never deleted

**A project the CIDX client set up** (``cidx init --remote``) already holds the client's
own ``.creds`` and ``.token`` (another format, another key), beside ``.remote-config``.
There every cidx-auth file but ``auth.json`` takes a name of its own, so neither program
ever overwrites the other's: ``.cidx-auth.token``, ``.cidx-auth.token.lock``,
``.cidx-auth.creds``, ``.cidx-auth.state``, ``.cidx-auth.state.lock``. The rule: own names
when ``.remote-config`` is there, or when cidx-auth's own-named files already are (so a
project keeps its names if ``.remote-config`` is removed later).

``auth.json``::

    {"server_url": "https://cidx.example.com", "username": "alice",
     "allowed_algorithms": ["HS256"], "ca_bundle": null, "store_url": null,
     "plain_http": false}

``allowed_algorithms`` is the algorithm pin: null until the first login, which pins the
algorithm of the token it got (or the ones given with ``login --allow-alg``).
``plain_http`` records ``login --allow-plain-http``: the user's consent to send the
password and tokens in clear text to a non-loopback ``http://`` server.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.file_io import read_private, write_private
from cidx_auth.domain.errors import ConfigurationError, CorruptStore
from cidx_auth.domain.token import JWS_ALGORITHMS

STORE_DIR = ".code-indexer"
SETTINGS_NAME = "auth.json"
CIDX_CLIENT_MARK = ".remote-config"
OWN_PREFIX = ".cidx-auth"
"""The prefix of cidx-auth's file names in a project the CIDX client set up."""


@dataclass(frozen=True, slots=True)
class ProjectLayout:
    """The paths of one project's cidx-auth files.

    ``beside_cidx_client`` is found on the disk unless given: True when the CIDX
    client's files are (or cidx-auth's own-named ones already are) in the directory.
    """

    root: Path
    beside_cidx_client: bool | None = None

    def __post_init__(self) -> None:
        if self.beside_cidx_client is None:
            directory = self.root / STORE_DIR
            shared = any(
                os.path.lexists(directory / name)
                for name in (CIDX_CLIENT_MARK, f"{OWN_PREFIX}.creds", f"{OWN_PREFIX}.token")
            )
            object.__setattr__(self, "beside_cidx_client", shared)

    @property
    def directory(self) -> Path:
        return self.root / STORE_DIR

    @property
    def settings(self) -> Path:
        return self.directory / SETTINGS_NAME

    @property
    def token(self) -> Path:
        return self._own(".token")

    @property
    def token_lock(self) -> Path:
        return self._own(".token.lock")

    @property
    def creds(self) -> Path:
        return self._own(".creds")

    @property
    def state(self) -> Path:
        return self._own(".state")

    @property
    def state_lock(self) -> Path:
        return self._own(".state.lock")

    @property
    def remote_config(self) -> Path:
        """The CIDX client's settings (read, never written by cidx-auth)."""
        return self.directory / CIDX_CLIENT_MARK

    def _own(self, name: str) -> Path:
        return self.directory / (OWN_PREFIX + name if self.beside_cidx_client else name)


def find_project_root(start: Path) -> Path:
    """The nearest directory from ``start`` upwards holding ``.code-indexer/``, else ``start``."""
    start = start.absolute()
    for candidate in (start, *start.parents):
        if (candidate / STORE_DIR).is_dir():
            return candidate
    return start


@dataclass(frozen=True, slots=True)
class ProjectSettings:
    """What ``cidx-auth login`` records about a project; validated on construction."""

    server_url: str
    username: str | None = None
    allowed_algorithms: tuple[str, ...] | None = None
    """The algorithm pin; None until the first login pins one (any JWS algorithm until then)."""
    ca_bundle: str | None = None
    store_url: str | None = None
    plain_http: bool = False
    """The user opted in to plain http to a host other than this machine."""

    def __post_init__(self) -> None:
        if not self.server_url.startswith(("https://", "http://")):
            raise ConfigurationError(
                "the server URL must start with https:// (or http:// for a local server)"
            )
        algorithms = self.allowed_algorithms
        if algorithms is None:
            return
        if not algorithms or not all(isinstance(alg, str) and alg for alg in algorithms):
            raise ConfigurationError("allowed_algorithms must list at least one JWT algorithm")
        if any(alg.lower() == "none" for alg in algorithms):
            raise ConfigurationError('the JWT algorithm "none" can never be allowed')

    @property
    def algorithms(self) -> tuple[str, ...]:
        """What tokens may be signed with now: the pin, or any JWS algorithm before it."""
        return self.allowed_algorithms or JWS_ALGORITHMS


def load_settings(layout: ProjectLayout) -> ProjectSettings | None:
    """The project's settings; None if it has none yet."""
    try:
        found = read_private(layout.settings)
    except CorruptStore as damage:
        raise _invalid(layout, str(damage)) from None
    if found is None:
        return None
    try:
        document = json.loads(found[0])
        return ProjectSettings(**_fields(document))
    except (ValueError, TypeError) as error:  # ConfigurationError is a ValueError
        raise _invalid(layout, str(error)) from None


def save_settings(layout: ProjectLayout, settings: ProjectSettings) -> None:
    """Write the settings atomically (0600)."""
    document = {
        "server_url": settings.server_url,
        "username": settings.username,
        "allowed_algorithms": (
            None if settings.allowed_algorithms is None else list(settings.allowed_algorithms)
        ),
        "ca_bundle": settings.ca_bundle,
        "store_url": settings.store_url,
        "plain_http": settings.plain_http,
    }
    data = (json.dumps(document, indent=2) + "\n").encode()
    write_private(layout.settings, data, sweep_young=False, now=time.time())


def _fields(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict) or not isinstance(document.get("server_url"), str):
        raise ValueError("no server_url")
    algorithms = document.get("allowed_algorithms")
    if algorithms is not None and not isinstance(algorithms, list):
        raise ValueError("allowed_algorithms is not a list")
    fields: dict[str, Any] = {"server_url": document["server_url"]}
    fields["allowed_algorithms"] = None if algorithms is None else tuple(algorithms)
    plain_http = document.get("plain_http", False)
    if not isinstance(plain_http, bool):
        raise ValueError("plain_http is not true or false")
    fields["plain_http"] = plain_http
    for name in ("username", "ca_bundle", "store_url"):
        value = document.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} is not a string")
        fields[name] = value
    return fields


def _invalid(layout: ProjectLayout, reason: str) -> ConfigurationError:
    return ConfigurationError(
        f"{layout.settings} is not valid ({reason}); fix it, or run `cidx-auth login` "
        "to write it again"
    )
