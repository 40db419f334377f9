"""Builders for the HTTP integration tests: the real gateway and client on a loopback server.

Token state lives in memory (the file stores are tested elsewhere); everything that
crosses the wire is real: the reference server in a child process, TLS with its
private CA, HTTP/2, the real token provider and breaker.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from adapters.cidx_client import AsyncCidxClient, CidxClient
from adapters.events import CountingSink
from adapters.http_settings import HttpSettings
from adapters.httpx_gateway import HttpxGateway
from adapters.memory import MemoryCredentialStore, MemoryStateStore, MemoryTokenStore
from cidx_auth.app.container import Container
from cidx_auth.domain.breaker import BreakerConfig
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.rules import Rules
from cidx_auth.ports import Clock
from cidx_auth.service.breaker import CircuitBreaker
from cidx_auth.service.provider import TokenProvider
from refserver.runner import RunningServer

PASSWORD = "secret"  # alice's password on the reference server (its default user)


class OffsetClock:
    """The real clock, ``offset`` seconds wrong, as on a badly set laptop."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class NoWaitClock(OffsetClock):
    """Real time, but backoff sleeps are recorded and skipped: the tests stay fast."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)


@dataclass
class Stack:
    """One client's worth of wiring against one server."""

    settings: HttpSettings
    provider: TokenProvider
    breaker: CircuitBreaker
    gateway: HttpxGateway
    events: CountingSink
    sleeps: NoWaitClock = field(default_factory=NoWaitClock)

    def client(self, **options: Any) -> CidxClient:
        options.setdefault("clock", self.sleeps)
        return CidxClient(self.settings, self.provider, self.breaker, **options)

    def aclient(self, **options: Any) -> AsyncCidxClient:
        options.setdefault("clock", self.sleeps)
        return AsyncCidxClient(self.settings, self.provider, self.breaker, **options)

    def close(self) -> None:
        self.gateway.close()

    async def aclose(self) -> None:
        # An HTTP/2 connection left open makes the server's graceful stop wait it out.
        self.gateway.close()


def settings_for(server: RunningServer, **overrides: Any) -> HttpSettings:
    return HttpSettings(server.url, ca_bundle=server.ca_file, **overrides)


def build(server: RunningServer, *, password: str = PASSWORD, clock: Clock | None = None,
          breaker: BreakerConfig | None = None, **overrides: Any) -> Stack:
    """A token provider and breaker over the real gateway, through the container."""
    clock = clock or OffsetClock()
    settings = settings_for(server, **overrides)
    gateway = HttpxGateway(settings, now=clock.now)
    state, events = MemoryStateStore(), CountingSink()
    container = Container(
        clock=clock, token_store=MemoryTokenStore(), state_store=state,
        credential_store=MemoryCredentialStore(Credentials("alice", password)),
        gateway=gateway, events=events, rules=Rules(),
    )
    if breaker is not None:
        container.breaker.override(CircuitBreaker(state, clock, events, breaker))
    return Stack(settings, container.token_provider(), container.breaker(), gateway, events)
