"""The composition root: the only module (with the CLI) that knows the adapters.

The container takes the ports and builds everything else, the event sinks included, so
an override of a port (say ``state_store``) reaches every service and sink using it.
``build_project`` supplies a project's files; tests and the simulation supply the
in-memory fakes (``Container(**adapters.memory.memory_ports().wiring())``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from dependency_injector import containers, providers

from adapters.events import FanOutSink, LoggingSink, StateCountingSink
from adapters.fernet_cipher import identity_cipher, project_cipher
from adapters.file_credential_store import FileCredentialStore
from adapters.file_state_store import FileStateStore
from adapters.file_token_store import FileTokenStore
from adapters.project_layout import ProjectLayout
from adapters.secret_sources import SecretSource, secret_source
from adapters.system_clock import SystemClock
from cidx_auth.domain.rules import Rules
from cidx_auth.ports import AuthGateway, Clock, CredentialStore, EventSink, StateStore, TokenStore
from cidx_auth.service.breaker import CircuitBreaker
from cidx_auth.service.provider import TokenProvider


def observed(state: StateStore, extra: Sequence[EventSink]) -> EventSink:
    """The standard sinks: the log, the persisted counters, and any extra ones."""
    return FanOutSink(LoggingSink(), StateCountingSink(state), *extra)


class Container(containers.DeclarativeContainer):
    """Ports in, services out."""

    clock = providers.Dependency(instance_of=Clock)
    token_store = providers.Dependency(instance_of=TokenStore)
    credential_store = providers.Dependency(instance_of=CredentialStore)
    state_store = providers.Dependency(instance_of=StateStore)
    gateway = providers.Dependency(instance_of=AuthGateway)
    rules = providers.Dependency(instance_of=Rules, default=Rules())
    extra_sinks = providers.Object(())

    events = providers.Singleton(observed, state=state_store, extra=extra_sinks)
    breaker = providers.Singleton(CircuitBreaker, state=state_store, clock=clock, events=events)
    token_provider = providers.Singleton(
        TokenProvider, clock=clock, store=token_store, credentials=credential_store,
        gateway=gateway, breaker=breaker, events=events, rules=rules,
    )


SharedSession = Callable[[str, SecretSource, Clock, Rules], TokenStore]
"""A token store outside the project, from the server URL, the secret, clock and rules."""


def build_project(project: Path, server_url: str, gateway: AuthGateway, *,
                  shared: SharedSession | None = None, clock: Clock | None = None,
                  extra_sinks: Sequence[EventSink] = (), rules: Rules | None = None,
                  config_dir: Path | None = None,
                  secret: SecretSource | None = None) -> Container:
    """The CLI's wiring: the project's files (``.code-indexer/``), keyed by the per-user
    secret in ``config_dir`` (or ``secret``, a source the caller has already read); the
    session in ``.token``, or where ``shared`` keeps it (:func:`in_redis`). Nothing is
    read until used."""
    clock, rules = clock or SystemClock(), rules or Rules()
    layout = ProjectLayout(project)
    secret = secret if secret is not None else secret_source(config_dir)
    cipher = project_cipher(project, server_url, secret)
    session = (shared(server_url, secret, clock, rules) if shared is not None
               else FileTokenStore(layout.token, layout.token_lock, cipher, clock=clock.now))
    return Container(
        clock=clock, token_store=session, gateway=gateway,
        credential_store=FileCredentialStore(layout.creds, cipher, clock=clock.now),
        state_store=FileStateStore(layout.state, layout.state_lock, clock=clock.now),
        extra_sinks=tuple(extra_sinks), rules=rules,
    )


def in_redis(store_url: str, username: str, *, lease: float | None = None) -> SharedSession:
    """The session in Redis, shared by every host logged in as ``username``: keyed by that
    identity, not the project, so every host needs the same per-user secret."""

    def build(server_url: str, secret: SecretSource, clock: Clock, rules: Rules) -> TokenStore:
        # Imported here: redis is an optional extra, and file users never load it.
        from adapters.redis_connection import connect
        from adapters.redis_token_store import DEFAULT_LEASE, RedisTokenStore, identity_key

        return RedisTokenStore(
            connect(store_url), identity_key(server_url, username),
            identity_cipher(server_url, username, secret),
            clock=clock.now, lease=lease or DEFAULT_LEASE, url=store_url, rules=rules,
        )

    return build
