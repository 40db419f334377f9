"""The CIDX API client: calls, bodies, errors, and retries with Retry-After."""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from adapters.cidx_client import (
    ApiError,
    ApiRateLimited,
    ApiUnauthorized,
    ApiUnavailable,
    AsyncCidxClient,
    CidxClient,
)
from adapters.http_settings import HttpSettings
from cidx_auth.domain.errors import ConfigurationError, ProtocolError, ServerUnavailable
from tests.unit.conftest import World, make_world
from tests.unit.http_fakes import HITS, TYPED, URL, Server, make, status


def test_query_posts_the_contract_body_with_a_token(world: World) -> None:
    server = Server()
    with make(world, server) as cidx:
        assert cidx.query("token refresh", "backend", limit=5, min_score=0.5,
                          language=None) == TYPED
    request = server.requests[0]
    assert (request.method, request.url.path) == ("POST", "/api/query")
    assert server.body() == {"query_text": "token refresh", "repository_alias": "backend",
                             "limit": 5, "min_score": 0.5}
    assert request.headers["Authorization"] == f"Bearer {world.provider.get_token()}"
    assert request.headers["User-Agent"].startswith("cidx-auth/")


def test_the_limit_is_still_the_third_positional_argument(world: World) -> None:
    server = Server()
    with make(world, server) as cidx:
        cidx.query("token refresh", "backend", 5)
        cidx.query("token refresh")  # every repository, the server's default limit
    assert server.body(0) == {"query_text": "token refresh", "repository_alias": "backend",
                              "limit": 5}
    assert server.body(1) == {"query_text": "token refresh", "limit": 10}


def test_repos_health_and_generic_requests(world: World) -> None:
    repos = {"repositories": [{"alias": "backend"}], "total": 1}
    server = Server(httpx.Response(200, json=repos), httpx.Response(200, json={"ok": 1}),
                    httpx.Response(200, json={"job": "done"}), httpx.Response(204))
    cidx = make(world, server)
    assert cidx.repos() == repos
    assert cidx.health() == {"ok": 1}
    assert cidx.request("get", "/api/jobs/7/status") == {"job": "done"}
    assert cidx.request("POST", "/api/repos/activate", json={"alias": "x"}) is None
    methods = [(r.method, r.url.path, "authorization" in r.headers) for r in server.requests]
    assert methods == [("GET", "/api/repos", True), ("GET", "/health", False),
                       ("GET", "/api/jobs/7/status", True),
                       ("POST", "/api/repos/activate", True)]
    assert server.body() == {"alias": "x"}


def test_health_needs_no_login() -> None:
    world = make_world(login_as=None)
    assert make(world, Server(httpx.Response(200, json={"ok": 1}))).health() == {"ok": 1}
    assert world.gateway.calls == 0


@pytest.mark.parametrize(("call", "words"), [
    (lambda c: c.query("", "backend"), "text"),
    (lambda c: c.query("x", "backend", limit=101), "1 to 100"),
    (lambda c: c.request("GET", "https://elsewhere.test/steal"), "not a path"),
    (lambda c: c.request("GET", "//elsewhere.test/steal"), "not a path"),
    (lambda c: c.request("GET", 5), "not a path"),
    (lambda c: c.request(None, "/api/repos"), "not an HTTP method"),
    (lambda c: c.request("GET /x", "/api/repos"), "not an HTTP method"),
    (lambda c: c.request("GÉT", "/api/repos"), "not an HTTP method"),  # not httpcore's
    (lambda c: c.request("GET", "/api/repos\n"), "control character"),  # not InvalidURL
    (lambda c: c.request("POST", "/api/x", json={1, 2}), "cannot be sent as JSON"),
    (lambda c: c.request("POST", "/api/x", json=float("nan")), "cannot be sent as JSON"),
    (lambda c: c.query(42), "must be text, not int"),
])
def test_bad_arguments_send_nothing(world: World, call: Callable[[CidxClient], Any],
                                    words: str) -> None:
    server = Server()
    with pytest.raises(ConfigurationError, match=words):
        call(make(world, server))
    assert server.requests == []


def test_4xx_is_an_api_error_with_status_and_detail_and_is_not_retried(world: World) -> None:
    server = Server(status(404, "Repository 'nope' not found"))
    with pytest.raises(ApiError) as caught:
        make(world, server).query("x", "nope")
    assert (caught.value.status, caught.value.detail) == (404, "Repository 'nope' not found")
    assert caught.value.exit_code == 6 and len(server.requests) == 1


def test_401_after_the_single_retry_says_to_log_in(world: World) -> None:
    server = Server(status(401, "Token has been revoked"))
    with pytest.raises(ApiUnauthorized, match="cidx-auth login") as caught:
        make(world, server).repos()
    assert caught.value.exit_code == 3 and len(server.requests) == 2
    assert world.provider.get_token() not in str(caught.value)


def test_non_json_success_is_a_protocol_error(world: World) -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        make(world, Server(httpx.Response(200, text="<html/>"))).request("GET", "/x")
    with pytest.raises(ProtocolError, match="JSON object"):
        make(world, Server(httpx.Response(200, json=[1]))).repos()


def test_retry_after_seconds_is_honoured_on_the_fake_clock(world: World) -> None:
    server = Server(status(429, "slow down", Retry_After="7"), httpx.Response(200, json=HITS))
    assert make(world, server).query("x", "backend") == TYPED
    assert world.clock.sleeps == [7.0] and len(server.requests) == 2


def test_retry_after_on_a_503_and_an_http_date(world: World) -> None:
    later = email.utils.formatdate(world.clock.now() + 12, usegmt=True)
    server = Server(status(503, "maintenance", Retry_After=later), httpx.Response(200, json={}))
    assert make(world, server).request("GET", "/api/repos") == {}
    assert world.clock.sleeps == [pytest.approx(12)]


def test_retry_after_beyond_the_cap_fails_at_once(world: World) -> None:
    server = Server(status(429, "later", Retry_After="600"))
    with pytest.raises(ApiRateLimited) as caught:
        make(world, server).repos()
    assert caught.value.retry_after == 600 and world.clock.sleeps == []


def test_5xx_and_timeouts_back_off_with_full_jitter_then_fail(world: World) -> None:
    server = Server(status(500), httpx.ReadTimeout("slow"), status(502, "bad gateway"))
    with pytest.raises(ApiUnavailable, match="502") as caught:
        make(world, server, draw=0.5).query("x", "backend")
    assert world.clock.sleeps == [0.5, 1.0]  # draw * 1, draw * 2
    assert len(server.requests) == 3 and caught.value.exit_code == 4


def test_network_errors_are_server_unavailable_naming_the_server(world: World) -> None:
    server = Server(httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(ServerUnavailable, match=URL) as caught:
        make(world, server).repos()
    assert not isinstance(caught.value, ApiError) and len(server.requests) == 3


def test_a_post_the_server_may_have_seen_is_not_sent_twice(world: World) -> None:
    server = Server(status(500))
    with pytest.raises(ApiUnavailable):
        make(world, server).request("POST", "/api/repos/activate", json={"alias": "x"})
    assert len(server.requests) == 1


def test_a_post_that_never_left_is_retried(world: World) -> None:
    server = Server(httpx.ConnectError("refused"), httpx.Response(200, json={"ok": 1}))
    assert make(world, server).request("POST", "/api/repos/activate") == {"ok": 1}
    assert len(server.requests) == 2


async def test_async_client_shares_the_behaviour(world: World) -> None:
    server = Server(status(429, "wait", Retry_After="3"), httpx.Response(200, json=HITS),
                    httpx.Response(200, json={"ok": 1}))
    async with AsyncCidxClient(HttpSettings(URL), world.provider, world.container.breaker(),
                               clock=world.clock, transport=httpx.MockTransport(server)) as cidx:
        assert await cidx.query("x", "backend") == TYPED
        assert await cidx.health() == {"ok": 1}
        assert await cidx.repos() == {"ok": 1}
        assert await cidx.request("GET", "/api/repos") == {"ok": 1}
    assert world.clock.sleeps == [3.0]
    assert "authorization" not in server.requests[2].headers


def test_a_dropped_pooled_connection_is_retried_at_once_and_not_counted(world: World) -> None:
    server = Server(httpx.RemoteProtocolError("Server disconnected"),
                    httpx.Response(200, json={"ok": 1}))
    assert make(world, server).repos() == {"ok": 1}
    assert len(server.requests) == 2 and world.clock.sleeps == []
    assert world.container.breaker().current().failures == 0


def test_a_dropped_post_is_not_resent(world: World) -> None:
    server = Server(httpx.WriteError("EOF"), httpx.Response(200, json={"ok": 1}))
    with pytest.raises(ServerUnavailable):
        make(world, server).request("POST", "/api/repos/activate")
    assert len(server.requests) == 1
