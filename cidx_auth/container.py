"""The composition root: the only module (with the CLI) that knows the adapters.

The container declares each port as a dependency that must be supplied, and builds
the services from them. ``build_memory`` supplies the in-memory adapters (tests,
the in-process demo); the CLI supplies files, Fernet and httpx.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from adapters.events import CountingSink, FanOutSink, LoggingSink, StateCountingSink
from adapters.memory import (
    FakeClock,
    MemoryCredentialStore,
    MemoryStateStore,
    MemoryTokenStore,
    ScriptedGateway,
)
from cidx_auth.domain.credentials import Credentials
from cidx_auth.ports import (
    AsyncAuthGateway,
    AuthGateway,
    Clock,
    CredentialStore,
    EventSink,
    StateStore,
    TokenStore,
)
from cidx_auth.service.breaker import CircuitBreaker
from cidx_auth.service.flow import Rules
from cidx_auth.service.provider import TokenProvider


class Container(containers.DeclarativeContainer):
    """Ports in, services out."""

    clock = providers.Dependency(instance_of=Clock)
    token_store = providers.Dependency(instance_of=TokenStore)
    credential_store = providers.Dependency(instance_of=CredentialStore)
    state_store = providers.Dependency(instance_of=StateStore)
    gateway = providers.Dependency(instance_of=AuthGateway)
    agateway = providers.Dependency(instance_of=AsyncAuthGateway)
    events = providers.Dependency(instance_of=EventSink)
    rules = providers.Dependency(instance_of=Rules, default=Rules())

    breaker = providers.Singleton(CircuitBreaker, state=state_store, clock=clock, events=events)
    token_provider = providers.Singleton(
        TokenProvider,
        clock=clock,
        store=token_store,
        credentials=credential_store,
        gateway=gateway,
        agateway=agateway,
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
        agateway=gateway,
        events=observed(state, counting),
        rules=rules or Rules(),
    )
    return container, clock, gateway, counting
