"""Shared builders for unit tests: everything in memory, time on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from adapters.events import CountingSink
from adapters.memory import (
    FakeClock,
    MemoryCredentialStore,
    MemoryStateStore,
    MemoryTokenStore,
    ScriptedGateway,
    memory_ports,
)
from cidx_auth.app.container import Container
from cidx_auth.domain.rules import Rules
from cidx_auth.domain.token import Session
from cidx_auth.service.provider import TokenProvider


@dataclass
class World:
    container: Container
    clock: FakeClock
    gateway: ScriptedGateway
    events: CountingSink

    @property
    def provider(self) -> TokenProvider:
        return self.container.token_provider()  # type: ignore[no-any-return]

    @property
    def store(self) -> MemoryTokenStore:
        return self.container.token_store()  # type: ignore[no-any-return]

    @property
    def credentials(self) -> MemoryCredentialStore:
        return self.container.credential_store()  # type: ignore[no-any-return]

    @property
    def state(self) -> MemoryStateStore:
        return self.container.state_store()  # type: ignore[no-any-return]

    def session(self) -> Session:
        """A real session from the scripted server, stored as another process would."""
        grant = self.gateway.login(self.credentials.credentials)  # type: ignore[arg-type]
        self.gateway.logins -= 1  # set-up, not a call the provider made
        from cidx_auth.domain.token import parse_access_token

        token = parse_access_token(grant.access_token, Rules().tokens, self.clock.now())
        session = Session(token, grant.refresh_token, token.iat - self.clock.now(), "alice")
        self.store.session = session
        return session


def make_world(rules: Rules | None = None, **kwargs: object) -> World:
    """The container over the in-memory ports, its events counted as well."""
    ports = memory_ports(**kwargs)  # type: ignore[arg-type]
    counting = CountingSink()
    container = Container(**ports.wiring(), extra_sinks=(counting,), rules=rules or Rules())
    return World(container, ports.clock, ports.gateway, counting)


@pytest.fixture
def world() -> World:
    return make_world()
