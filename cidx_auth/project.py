"""One project's wiring for the CLI: settings, file stores, httpx, the API client.

This is composition-root code (it imports adapters); the core never sees it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters.cidx_client import AsyncCidxClient, CidxClient
from adapters.http_settings import HttpSettings
from adapters.httpx_gateway import HttpxGateway
from adapters.project_layout import ProjectLayout, ProjectSettings, load_settings
from cidx_auth.container import Container, build_files, build_redis
from cidx_auth.domain.errors import ConfigurationError, NotLoggedIn
from cidx_auth.domain.token import TokenRules
from cidx_auth.ports import EventSink
from cidx_auth.service.provider import TokenProvider
from cidx_auth.service.renewal import Rules

logger = logging.getLogger("cidx_auth")


@dataclass
class Project:
    """Everything a command needs for one project, built once per process."""

    root: Path
    settings: ProjectSettings
    container: Container
    http: HttpSettings
    gateway: HttpxGateway
    shared_store: str | None = None
    """The Redis URL when the session lives in a shared store, else None (files)."""

    @property
    def layout(self) -> ProjectLayout:
        return ProjectLayout(self.root)

    @property
    def provider(self) -> TokenProvider:
        provider: TokenProvider = self.container.token_provider()
        return provider

    def client(self) -> CidxClient:
        """A blocking API client whose calls carry (and renew) the token."""
        return CidxClient(
            self.http, self.provider, self.container.breaker(), clock=self.container.clock()
        )

    def async_client(self) -> AsyncCidxClient:
        return AsyncCidxClient(
            self.http, self.provider, self.container.breaker(), clock=self.container.clock()
        )

    def close(self) -> None:
        self.gateway.close()


def open_project(
    root: Path,
    settings: ProjectSettings | None = None,
    extra_sinks: Sequence[EventSink] = (),
) -> Project:
    """Wire a project from its saved settings (or the ones given, for ``login``)."""
    settings = settings or load_settings(ProjectLayout(root))
    if settings is None:
        raise NotLoggedIn(
            f"no cidx-auth settings in {root}: run "
            "`cidx-auth login --server URL --username NAME` first"
        )
    store_url = shared_store_url(settings)
    ca_bundle = Path(settings.ca_bundle) if settings.ca_bundle else None
    http = HttpSettings(settings.server_url, ca_bundle=ca_bundle)
    gateway = HttpxGateway(http)
    rules = Rules(tokens=TokenRules(frozenset(settings.allowed_algorithms)))
    if store_url and settings.username:  # the session lives in a shared Redis store
        container = build_redis(
            store_url, settings.server_url, settings.username, gateway,
            project=root, extra_sinks=extra_sinks, rules=rules,
        )
    else:
        container = build_files(
            root, settings.server_url, gateway, extra_sinks=extra_sinks, rules=rules
        )
    return Project(root, settings, container, http, gateway, store_url)


def shared_store_url(settings: ProjectSettings) -> str | None:
    """The Redis store the session lives in, if any: ``CIDX_STORE_URL`` wins over the
    settings file. Checked before anything is opened."""
    url = os.environ.get("CIDX_STORE_URL") or settings.store_url
    if not url:
        return None
    from adapters.redis_connection import check_store_url  # redis only when it is used

    if not settings.username:
        raise ConfigurationError(
            "a shared token store is keyed by the username: run "
            "`cidx-auth login --server URL --username NAME --store URL`"
        )
    return check_store_url(url)
