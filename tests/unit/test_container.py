"""The composition root builds every service and sink from its ports, so an override
of a port reaches all of them."""

from __future__ import annotations

from adapters.events import CountingSink
from adapters.memory import MemoryStateStore, memory_ports
from cidx_auth.app.container import Container
from cidx_auth.domain.breaker import Circuit
from cidx_auth.domain.events import EventKind


def test_an_overridden_state_store_receives_the_counters_and_the_breaker() -> None:
    ports = memory_ports()
    container = Container(**ports.wiring())
    replacement = MemoryStateStore()
    container.state_store.override(replacement)
    container.token_provider().get_token()  # a login: counted by the persisted counters
    for _ in range(5):
        container.breaker().record(True)
    assert replacement.read().counters == {"logins": 1}
    assert replacement.read().breaker.circuit is Circuit.OPEN
    assert ports.state_store.read().counters == {}  # the store it replaced saw nothing


def test_extra_sinks_hear_every_event_beside_the_standard_ones() -> None:
    ports, extra = memory_ports(), CountingSink()
    container = Container(**ports.wiring(), extra_sinks=(extra,))
    container.token_provider().get_token()
    assert extra[EventKind.LOGGED_IN] == 1
    assert ports.state_store.read().counters == {"logins": 1}
