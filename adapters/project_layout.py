"""Where a project keeps its cidx-auth files, and its plain settings.

Everything lives in ``<project>/.code-indexer/`` (directory 0700, files 0600)::

    auth.json          settings, plain JSON (no secrets)
    .token             the session, encrypted          (adapters.file_token_store)
    .token.lock        the token lock, never deleted   (adapters.file_lock)
    .creds             username and password, encrypted
    .state             breaker state and counters, plain JSON
    .state.lock        the state lock, never deleted

``auth.json``::

    {"server_url": "https://cidx.example.com", "username": "alice",
     "allowed_algorithms": ["RS256"], "ca_bundle": null, "store_url": null}
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.file_io import read_private, write_private
from cidx_auth.domain.errors import ConfigurationError, CorruptStore

STORE_DIR = ".code-indexer"
SETTINGS_NAME = "auth.json"


@dataclass(frozen=True, slots=True)
class ProjectLayout:
    """The paths of one project's cidx-auth files."""

    root: Path

    @property
    def directory(self) -> Path:
        return self.root / STORE_DIR

    @property
    def settings(self) -> Path:
        return self.directory / SETTINGS_NAME

    @property
    def token(self) -> Path:
        return self.directory / ".token"

    @property
    def token_lock(self) -> Path:
        return self.directory / ".token.lock"

    @property
    def creds(self) -> Path:
        return self.directory / ".creds"

    @property
    def state(self) -> Path:
        return self.directory / ".state"

    @property
    def state_lock(self) -> Path:
        return self.directory / ".state.lock"


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
    allowed_algorithms: tuple[str, ...] = ("RS256",)
    ca_bundle: str | None = None
    store_url: str | None = None

    def __post_init__(self) -> None:
        if not self.server_url.startswith(("https://", "http://")):
            raise ConfigurationError(
                "the server URL must start with https:// (or http:// for a local server)"
            )
        algorithms = self.allowed_algorithms
        if not algorithms or not all(isinstance(alg, str) and alg for alg in algorithms):
            raise ConfigurationError("allowed_algorithms must list at least one JWT algorithm")
        if any(alg.lower() == "none" for alg in algorithms):
            raise ConfigurationError('the JWT algorithm "none" can never be allowed')


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
        "allowed_algorithms": list(settings.allowed_algorithms),
        "ca_bundle": settings.ca_bundle,
        "store_url": settings.store_url,
    }
    data = (json.dumps(document, indent=2) + "\n").encode()
    write_private(layout.settings, data, sweep_young=False, now=time.time())


def _fields(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict) or not isinstance(document.get("server_url"), str):
        raise ValueError("no server_url")
    algorithms = document.get("allowed_algorithms", ["RS256"])
    if not isinstance(algorithms, list):
        raise ValueError("allowed_algorithms is not a list")
    fields: dict[str, Any] = {"server_url": document["server_url"]}
    fields["allowed_algorithms"] = tuple(algorithms)
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
