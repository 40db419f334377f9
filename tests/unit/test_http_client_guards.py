"""The API client's guards: the breaker (open, half-open, probe) and the in-flight limit."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from adapters.cidx_client import ApiError, ApiUnavailable, AsyncCidxClient
from adapters.http_settings import HttpSettings
from cidx_auth.domain.breaker import Circuit
from cidx_auth.domain.errors import CircuitOpen, InvalidCredentials, RefreshRejected
from cidx_auth.domain.retry import RetryPolicy
from tests.unit.conftest import World, make_world
from tests.unit.http_fakes import HITS, URL, Server, make, status


def test_breaker_opens_after_exactly_five_failures_and_spares_the_transport(
        world: World) -> None:
    server = Server(status(500))
    cidx = make(world, server, attempts=1)
    for _ in range(5):
        with pytest.raises(ApiUnavailable):
            cidx.repos()
    with pytest.raises(CircuitOpen, match="next attempt after"):
        cidx.repos()
    assert len(server.requests) == 5
    assert world.container.breaker().current().circuit is Circuit.OPEN


def test_breaker_counts_attempts_so_retries_trip_it_mid_call(world: World) -> None:
    server = Server(status(500))
    cidx = make(world, server)
    with pytest.raises(ApiUnavailable):
        cidx.repos()
    with pytest.raises(CircuitOpen):
        cidx.repos()  # attempts 4 and 5 fail; the third is refused by the open circuit
    assert len(server.requests) == 5


def test_4xx_does_not_count_against_the_breaker(world: World) -> None:
    server = Server(*([status(500)] * 4), status(404), *([status(500)] * 4))
    cidx = make(world, server, attempts=1)
    for _ in range(9):
        with pytest.raises(ApiError):
            cidx.repos()
    assert world.container.breaker().current().circuit is Circuit.CLOSED


def test_half_open_probe_closes_the_circuit() -> None:
    world = make_world(lifetime=3600.0)  # the token stays fresh through the cool-down
    server = Server(*([status(500)] * 5), httpx.Response(200, json={"ok": 1}))
    cidx = make(world, server, attempts=1)
    for _ in range(5):
        with pytest.raises(ApiUnavailable):
            cidx.repos()
    world.clock.advance(30)  # the first open period
    assert cidx.repos() == {"ok": 1}
    assert world.container.breaker().current().circuit is Circuit.CLOSED
    assert len(server.requests) == 6


def test_failed_probe_reopens_the_circuit() -> None:
    world = make_world(lifetime=3600.0)
    server = Server(status(500))
    cidx = make(world, server, attempts=1)
    for _ in range(5):
        with pytest.raises(ApiUnavailable):
            cidx.repos()
    world.clock.advance(30)  # the first open period
    with pytest.raises(ApiUnavailable):
        cidx.repos()
    world.clock.advance(59.9)  # a failed probe doubles it
    with pytest.raises(CircuitOpen):
        cidx.repos()
    assert len(server.requests) == 6
    world.clock.advance(0.1)
    with pytest.raises(ApiUnavailable):
        cidx.repos()  # the second probe
    assert len(server.requests) == 7


def test_an_expired_token_renews_through_the_probe_instead_of_being_refused(
        world: World) -> None:
    server = Server(*([status(500)] * 5), httpx.Response(200, json={"ok": 1}))
    cidx = make(world, server, attempts=1)
    for _ in range(5):
        with pytest.raises(ApiUnavailable):
            cidx.repos()
    world.clock.advance(601)  # the 10-minute token has died meanwhile
    assert cidx.repos() == {"ok": 1}  # the refresh was the probe; then the call went out
    assert world.gateway.refreshes == 1
    assert world.container.breaker().current().circuit is Circuit.CLOSED


def test_a_probe_answered_401_closes_the_circuit_then_renews() -> None:
    world = make_world(lifetime=3600.0)
    cidx = make(world, Server(status(500)), attempts=1)
    for _ in range(5):
        with pytest.raises(ApiUnavailable):
            cidx.repos()
    world.clock.advance(300)
    old = world.provider.get_token()
    server = Server(lambda request: status(401, "Invalid token")
                    if request.headers["Authorization"] == f"Bearer {old}"
                    else httpx.Response(200, json={"ok": 1}))
    # The 401 sends the provider renewing while this call holds the one probe, so the
    # breaker refuses the renewal; the answer itself proves the server is back.
    assert make(world, server, attempts=1).repos() == {"ok": 1}
    assert world.gateway.refreshes == 1
    assert world.container.breaker().current().circuit is Circuit.CLOSED


def test_a_renewal_refused_for_credentials_surfaces_and_is_no_outage(world: World) -> None:
    world.provider.get_token()
    world.gateway.fail_next(RefreshRejected("Invalid refresh token"))
    world.gateway.fail_next(InvalidCredentials("the server refused the username or password"))
    with pytest.raises(InvalidCredentials):
        make(world, Server(status(401, "Invalid token"))).repos()
    assert world.container.breaker().current().failures == 0


class Gauge:
    """An async handler that holds each request until ten are in flight together."""

    def __init__(self, hold_until: int = 10) -> None:
        self.in_flight = 0
        self.peak = 0
        self.calls = 0
        self.hold_until = hold_until
        self.crowded = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= self.hold_until:
            self.crowded.set()
        await self.crowded.wait()
        for _ in range(5):  # give any request the limit failed to hold back a chance
            await asyncio.sleep(0)
        self.in_flight -= 1
        return httpx.Response(200, json=HITS)


async def test_at_most_ten_requests_are_in_flight(world: World) -> None:
    gauge = Gauge()
    await world.provider.aget_token()
    cidx = AsyncCidxClient(HttpSettings(URL), world.provider, world.container.breaker(),
                           clock=world.clock, transport=httpx.MockTransport(gauge))
    results = await asyncio.gather(*(cidx.query("x", "backend") for _ in range(40)))
    assert len(results) == 40 and gauge.calls == 40
    assert gauge.peak == 10
    await cidx.aclose()


async def test_the_limit_is_a_setting(world: World) -> None:
    gauge = Gauge(hold_until=3)
    cidx = AsyncCidxClient(HttpSettings(URL, max_in_flight=3), world.provider,
                           world.container.breaker(), clock=world.clock,
                           transport=httpx.MockTransport(gauge))
    await asyncio.gather(*(cidx.repos() for _ in range(12)))
    assert gauge.peak == 3


def test_sync_client_limits_threads_too(world: World) -> None:
    lock = threading.Lock()
    crowded = threading.Event()
    counts = {"now": 0, "peak": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            counts["now"] += 1
            counts["peak"] = max(counts["peak"], counts["now"])
            if counts["now"] >= 10:
                crowded.set()
        crowded.wait(timeout=5)
        with lock:
            counts["now"] -= 1
        return httpx.Response(200, json=HITS)

    world.provider.get_token()
    cidx = make(world, Server(handler))
    with ThreadPoolExecutor(max_workers=25) as pool:
        list(pool.map(lambda _: cidx.repos(), range(25)))
    assert counts["peak"] == 10


async def test_half_open_lets_exactly_one_probe_through() -> None:
    world = make_world(lifetime=3600.0)
    server = Server(*([status(500)] * 5))
    failing = AsyncCidxClient(HttpSettings(URL), world.provider, world.container.breaker(),
                              clock=world.clock, retry=RetryPolicy(attempts=1),
                              transport=httpx.MockTransport(server))
    for _ in range(5):
        with pytest.raises(ApiUnavailable):
            await failing.repos()
    world.clock.advance(300)
    gauge = Gauge(hold_until=1)
    cidx = AsyncCidxClient(HttpSettings(URL), world.provider, world.container.breaker(),
                           clock=world.clock, retry=RetryPolicy(attempts=1),
                           transport=httpx.MockTransport(gauge))
    outcomes = await asyncio.gather(*(cidx.repos() for _ in range(8)), return_exceptions=True)
    assert gauge.calls == 1
    assert sum(isinstance(o, CircuitOpen) for o in outcomes) == 7
    assert world.container.breaker().current().circuit is Circuit.CLOSED
