"""The composition root: the only module (with the CLI) that knows the adapters.

The container declares each port as a dependency that must be supplied, and builds
the services from them. ``build_memory`` supplies the in-memory adapters (tests,
the in-process demo); the CLI supplies files, Fernet and httpx.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dependency_injector import containers, providers

from adapters.events import CountingSink, FanOutSink, LoggingSink, StateCountingSink
from adapters.file_credential_store import FileCredentialStore
from adapters.file_state_store import FileStateStore
from adapters.file_token_store import FileTokenStore
from adapters.keyring_secret import secret_source
from adapters.memory import (
    FakeClock,
    MemoryCredentialStore,
    MemoryStateStore,
    MemoryTokenStore,
    ScriptedGateway,
)
from adapters.project_layout import ProjectLayout
from adapters.shared_key import identity_cipher, project_cipher
from adapters.system_clock import SystemClock
from cidx_auth.domain.credentials import Credentials
from cidx_auth.ports import (
    AuthGateway,
    Clock,
    CredentialStore,
    EventSink,
    StateStore,
    TokenStore,
)
from cidx_auth.service.breaker import CircuitBreaker
from cidx_auth.service.provider import TokenProvider
from cidx_auth.service.renewal import Rules


class Container(containers.DeclarativeContainer):
    """Ports in, services out."""

    clock = providers.Dependency(instance_of=Clock)
    token_store = providers.Dependency(instance_of=TokenStore)
    credential_store = providers.Dependency(instance_of=CredentialStore)
    state_store = providers.Dependency(instance_of=StateStore)
    gateway = providers.Dependency(instance_of=AuthGateway)
    events = providers.Dependency(instance_of=EventSink)
    rules = providers.Dependency(instance_of=Rules, default=Rules())

    breaker = providers.Singleton(CircuitBreaker, state=state_store, clock=clock, events=events)
    token_provider = providers.Singleton(
        TokenProvider,
        clock=clock,
        store=token_store,
        credentials=credential_store,
        gateway=gateway,
        breaker=breaker,
        events=events,
        rules=rules,
    )


def observed(state: StateStore, *extra: EventSink) -> EventSink:
    """The standard sinks: the log, the persisted counters, and any extra ones."""
    return FanOutSink(LoggingSink(), StateCountingSink(state), *extra)


def build_memory(
    users: dict[str, str] | None = None,
    login_as: str | None = "alice",
    lifetime: float = 600.0,
    rules: Rules | None = None,
) -> tuple[Container, FakeClock, ScriptedGateway, CountingSink]:
    """A container over in-memory adapters, a fake clock and a scripted server."""
    users = users if users is not None else {"alice": "secret"}
    clock = FakeClock()
    gateway = ScriptedGateway(clock, users, lifetime)
    counting = CountingSink()
    state = MemoryStateStore()
    credentials = None
    if login_as is not None:
        credentials = Credentials(login_as, users[login_as])
    container = Container(
        clock=clock,
        token_store=MemoryTokenStore(),
        credential_store=MemoryCredentialStore(credentials),
        state_store=state,
        gateway=gateway,
        events=observed(state, counting),
        rules=rules or Rules(),
    )
    return container, clock, gateway, counting


def build_files(
    project: Path,
    server_url: str,
    gateway: AuthGateway,
    *,
    clock: Clock | None = None,
    extra_sinks: Sequence[EventSink] = (),
    rules: Rules | None = None,
    config_dir: Path | None = None,
) -> Container:
    """A container over the project's files (``.code-indexer/``): the CLI's wiring.

    The key comes from the per-user secret in ``config_dir`` (default: the user's
    configuration directory) and the project's identity; nothing is read until used.
    """
    clock = clock or SystemClock()
    layout = ProjectLayout(project)
    cipher = project_cipher(project, server_url, secret_source(config_dir))
    state = FileStateStore(layout.state, layout.state_lock, clock=clock.now)
    return Container(
        clock=clock,
        token_store=FileTokenStore(layout.token, layout.token_lock, cipher, clock=clock.now),
        credential_store=FileCredentialStore(layout.creds, cipher, clock=clock.now),
        state_store=state,
        gateway=gateway,
        events=observed(state, *extra_sinks),
        rules=rules or Rules(),
    )


# ---- the session in Redis, shared by a fleet ----------------------------------------


def build_redis(
    store_url: str,
    server_url: str,
    username: str,
    gateway: AuthGateway,
    *,
    project: Path,
    clock: Clock | None = None,
    extra_sinks: Sequence[EventSink] = (),
    rules: Rules | None = None,
    config_dir: Path | None = None,
    lease: float | None = None,
) -> Container:
    """A container whose session lives in Redis at ``store_url``, shared by every host
    logged in as ``username`` on ``server_url``; credentials and breaker state stay in
    the project's files. The session's key is salted with the identity, not the
    project, so every host needs the same per-user secret (:mod:`adapters.shared_key`).
    """
    # Imported here: redis is an optional extra, and file users never load it.
    from adapters.redis_connection import connect
    from adapters.redis_token_store import DEFAULT_LEASE, RedisTokenStore, identity_key

    clock = clock or SystemClock()
    layout = ProjectLayout(project)
    secret = secret_source(config_dir)
    store = RedisTokenStore(
        connect(store_url), identity_key(server_url, username),
        identity_cipher(server_url, username, secret),
        clock=clock.now, lease=lease or DEFAULT_LEASE, url=store_url,
    )
    state = FileStateStore(layout.state, layout.state_lock, clock=clock.now)
    return Container(
        clock=clock,
        token_store=store,
        credential_store=FileCredentialStore(
            layout.creds, project_cipher(project, server_url, secret), clock=clock.now
        ),
        state_store=state,
        gateway=gateway,
        events=observed(state, *extra_sinks),
        rules=rules or Rules(),
    )
