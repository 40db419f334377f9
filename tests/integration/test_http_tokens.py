"""Tokens over the wire: expiry mid-run, a burst of 401s, a wrong password, a wrong clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from adapters.http_settings import make_async_client
from adapters.httpx_auth import CidxAuth
from cidx_auth.domain.errors import CidxAuthError, InvalidCredentials
from cidx_auth.domain.events import EventKind
from refserver.config import ServerConfig
from refserver.runner import RunningServer
from tests.integration.http_support import OffsetClock, Stack, build

pytestmark = pytest.mark.slow

LIFETIME = 2  # seconds: short enough to expire many times in one test
PATIENCE = 60.0
"""How long a loop may wait for its cue (a number of refreshes) before the test fails."""


@pytest.fixture(scope="module")
def short_lived() -> Iterator[RunningServer]:
    with RunningServer(ServerConfig(users={"alice": "secret"}, token_lifetime=LIFETIME),
                       tls=True) as server:
        yield server


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with RunningServer(ServerConfig(users={"alice": "secret"}), tls=True) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_counters(request: pytest.FixtureRequest) -> None:
    for name in ("short_lived", "server"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


def totals(server: RunningServer) -> dict[str, int]:
    stats = server.stats()
    return {**stats["totals"], "auth_401": stats["auth_401"], "requests": stats["requests"]}


def refreshed(stack: Stack, times: int) -> bool:
    """The cue that ends a loop: the client has renewed its token ``times`` times."""
    return stack.events[EventKind.REFRESHED] >= times


async def test_tokens_expiring_mid_run_fail_no_call(short_lived: RunningServer) -> None:
    stack = build(short_lived)
    failures: list[BaseException] = []
    deadline = time.monotonic() + PATIENCE

    async def worker(cidx: object) -> None:
        while not refreshed(stack, 3):  # three expiries in the middle of the calls
            assert time.monotonic() < deadline, "three refreshes never came"
            try:
                await cidx.query("token refresh", "backend")  # type: ignore[attr-defined]
            except CidxAuthError as error:
                failures.append(error)
            await asyncio.sleep(0.01)

    async with stack.aclient() as cidx:
        await asyncio.gather(*(worker(cidx) for _ in range(5)))
    await stack.aclose()
    seen = totals(short_lived)
    assert failures == []
    assert seen["logins"] == 1 and seen["refreshes"] == stack.events[EventKind.REFRESHED]
    # (a caller may still send the old token in its last 0.2 s and meet one 401: recovered)
    assert seen["replays"] == 0 and seen["failed_refreshes"] == 0


def test_sync_client_across_expiries(short_lived: RunningServer) -> None:
    stack = build(short_lived)
    deadline = time.monotonic() + PATIENCE
    with stack.client() as cidx:
        results = []
        while not refreshed(stack, 2):
            assert time.monotonic() < deadline, "two refreshes never came"
            results.append(cidx.repos())
            time.sleep(0.02)
    stack.close()
    seen = totals(short_lived)
    assert all(result["total"] >= 1 for result in results)
    assert seen["logins"] == 1 and seen["refreshes"] == stack.events[EventKind.REFRESHED]
    assert seen["failed_refreshes"] == 0


async def test_fifty_requests_refused_together_cause_one_refresh(server: RunningServer) -> None:
    stack = build(server)
    token = await stack.provider.aget_token()
    with server.client() as admin:  # the server now refuses this token ("revoked")
        admin.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
    before = totals(server)
    # The drop-in auth on a bare client: no in-flight limit, so all fifty carry the
    # revoked token at once and are refused together.
    auth = CidxAuth(stack.provider, stack.settings.server)
    async with make_async_client(stack.settings, auth=auth) as http:
        answers = await asyncio.gather(*(http.get("/api/repos") for _ in range(50)))
    await stack.aclose()
    after = totals(server)
    assert [response.status_code for response in answers] == [200] * 50
    assert after["auth_401"] - before["auth_401"] == 50
    assert after["refreshes"] - before["refreshes"] == 1 and after["logins"] == before["logins"]


def test_a_wrong_password_costs_exactly_one_login_attempt(server: RunningServer) -> None:
    stack = build(server, password="not-the-password")
    with stack.client() as cidx, pytest.raises(InvalidCredentials, match="cidx-auth login"):
        cidx.query("anything", "backend")
    stack.close()
    seen = totals(server)
    assert seen["failed_logins"] == 1 and seen["logins"] == 0 and seen["requests"] == 0
    assert stack.breaker.current().failures == 0  # a refusal is not an outage


def calls_then_half_a_lifetime_later(stack: Stack, clock: OffsetClock) -> list[int]:
    """Five calls, the client's clock moved on by half a token lifetime (300 s, without
    waiting), five more: the server's refresh count after each call."""
    counts = []
    with stack.client() as cidx:
        for call in range(10):
            if call == 5:
                clock.offset += 301  # the token is due for renewal now
            cidx.repos()
            counts.append(stack.events[EventKind.REFRESHED])
    stack.close()
    return counts


@pytest.mark.parametrize("offset", [600.0, -600.0], ids=["fast", "slow"])
def test_a_client_clock_ten_minutes_off_still_works(server: RunningServer,
                                                    offset: float) -> None:
    clock = OffsetClock(offset)
    stack = build(server, clock=clock)
    counts = calls_then_half_a_lifetime_later(stack, clock)
    session = stack.provider.session  # estimated again at the renewal, from its iat
    assert session is not None and session.clock_offset == pytest.approx(-offset - 301, abs=2)
    # No refresh loop: a fresh token is reused; one renewal once it is due, then reused.
    assert counts == [0] * 5 + [1] * 5
    seen = totals(server)
    assert seen["logins"] == 1 and seen["refreshes"] == 1 and seen["auth_401"] == 0


def test_the_server_sees_the_bearer_token_over_http2(server: RunningServer) -> None:
    stack = build(server)
    with httpx.Client(base_url=server.url, verify=server.verify(), http2=True,
                      auth=CidxAuth(stack.provider, stack.settings.server)) as http:
        response = http.get("/api/repos")
    stack.close()
    assert response.status_code == 200 and response.http_version == "HTTP/2"


@pytest.mark.parametrize("offset", [-600.0, 600.0], ids=["server-slow", "server-fast"])
def test_a_server_clock_ten_minutes_off_still_works(server: RunningServer,
                                                    offset: float) -> None:
    server.set_clock_offset(offset)
    clock = OffsetClock()
    stack = build(server, clock=clock)
    try:
        counts = calls_then_half_a_lifetime_later(stack, clock)
    finally:
        server.set_clock_offset(0.0)
    session = stack.provider.session
    assert session is not None and session.clock_offset == pytest.approx(offset - 301, abs=2)
    assert counts == [0] * 5 + [1] * 5
    seen = totals(server)
    assert seen["logins"] == 1 and seen["refreshes"] == 1 and seen["auth_401"] == 0


def test_a_second_local_server_gets_no_token_and_its_401_renews_nothing(
    server: RunningServer,
) -> None:
    import http.server
    import threading

    seen: list[str | None] = []

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    stack = build(server)
    try:
        before = server.stats()["users"].get("alice", {})
        with httpx.Client(verify=server.verify(),
                          auth=CidxAuth(stack.provider, stack.settings.server)) as http:
            assert http.get(f"{server.url}/api/repos").status_code == 200
            for _ in range(3):
                answer = http.get(f"http://127.0.0.1:{other.server_port}/anything")
                assert answer.status_code == 401
        after = server.stats()["users"]["alice"]
    finally:
        other.shutdown()
        other.server_close()
        stack.close()
    assert seen == [None, None, None]
    assert after.get("refreshes", 0) == before.get("refreshes", 0)
    assert after["logins"] == before.get("logins", 0) + 1  # the first token only
