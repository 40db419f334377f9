"""A misbehaving server: 429s, 5xx bursts, hangs, and a server that dies and comes back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from adapters.cidx_client import ApiUnavailable
from cidx_auth.domain.breaker import BreakerConfig, Circuit
from cidx_auth.domain.errors import CidxAuthError, CircuitOpen, ServerUnavailable
from refserver.config import ServerConfig
from refserver.runner import RunningServer
from tests.integration.http_support import OffsetClock, build

pytestmark = pytest.mark.slow

RULES = BreakerConfig()
"""The real rules: the breaker's clock is moved past the open period, not waited out."""


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with RunningServer(ServerConfig(users={"alice": "secret"}), tls=True) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_counters(server: RunningServer) -> None:
    server.reset()


def fired(server: RunningServer) -> int:
    return int(server.stats()["totals"]["faults_fired"])


def test_retry_after_from_a_429_is_honoured(server: RunningServer) -> None:
    stack = build(server)
    server.inject("rate_limit", retry_after=2, paths=["/api/query"])
    with stack.client() as cidx:
        answer = cidx.query("x", "backend")
    stack.close()
    assert answer.total_results == len(answer.hits) == 5  # the answer after the wait
    assert stack.sleeps.sleeps == [2.0] and fired(server) == 1


def test_five_5xx_open_the_breaker_and_one_probe_closes_it(server: RunningServer) -> None:
    clock = OffsetClock()
    stack = build(server, clock=clock, breaker=RULES)
    with stack.client() as cidx:
        cidx.repos()  # logged in, circuit closed
        server.inject("error", count=5, status=500, paths=["/api/"])
        with pytest.raises(ApiUnavailable):
            cidx.query("x", "backend")  # three attempts, all 500
        with pytest.raises(CircuitOpen, match="next attempt after"):
            cidx.query("x", "backend")  # two more 500s trip it; the third is refused
        assert fired(server) == 5
        requests = server.stats()["requests"]
        with pytest.raises(CircuitOpen):
            cidx.repos()  # refused without touching the server
        assert fired(server) == 5 and server.stats()["requests"] == requests
        clock.offset += RULES.first_open_period  # 30 s later
        assert stack.breaker.current().circuit is Circuit.OPEN
        cidx.repos()  # the probe
        assert stack.breaker.current().circuit is Circuit.CLOSED
    stack.close()
    assert server.stats()["requests"] == requests + 1


def test_a_hanging_server_hits_the_read_timeout_and_the_retry_succeeds(
        server: RunningServer) -> None:
    stack = build(server, read_timeout=0.5)
    with stack.client() as cidx:
        cidx.repos()
        server.inject("hang", seconds=10, paths=["/api/repos"])
        started = time.monotonic()
        assert cidx.repos()["total"] >= 1
        assert time.monotonic() - started >= 0.5  # the read timeout ran out once
    stack.close()
    assert len(stack.sleeps.sleeps) == 1


def test_a_server_that_keeps_hanging_fails_with_a_clear_error(server: RunningServer) -> None:
    stack = build(server, read_timeout=0.3)
    with stack.client() as cidx:
        cidx.repos()
        server.inject("hang", count=3, seconds=10, paths=["/api/repos"])
        with pytest.raises(ServerUnavailable, match="timed out while waiting for an answer"):
            cidx.repos()
    stack.close()
    assert fired(server) == 3


def test_a_server_that_goes_away_and_comes_back() -> None:
    outcomes: list[str] = []
    with RunningServer(ServerConfig(users={"alice": "secret"}), tls=True) as server:
        clock = OffsetClock()
        stack = build(server, clock=clock, breaker=RULES)
        with stack.client() as cidx:

            def call() -> None:
                try:
                    cidx.repos()
                    outcomes.append("ok")
                except CircuitOpen:
                    outcomes.append("open")
                except CidxAuthError as error:
                    outcomes.append(type(error).__name__)

            for _ in range(3):
                call()
            server.kill()  # a crash: no goodbye on the open HTTP/2 connection
            for _ in range(4):
                call()
            assert stack.breaker.current().circuit is Circuit.OPEN
            server.start()  # same port, same CA, but a new signing key and no sessions
            clock.offset += RULES.first_open_period
            for _ in range(5):
                call()
        stack.close()
        totals = server.stats()["totals"]
    assert outcomes[:3] == ["ok"] * 3
    # Three attempts fail on the dead server, two more trip the breaker, then it refuses.
    assert outcomes[3:7] == ["ServerUnavailable", "open", "open", "open"]
    assert outcomes[7:] == ["ok"] * 5  # nothing lost once it is back
    # The old token and refresh token mean nothing to the new process: one re-login.
    assert totals["logins"] == 1
