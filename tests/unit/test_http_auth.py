"""CidxAuth: the bearer header, one retry after a 401, and no blind resend of a stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from adapters.httpx_auth import CidxAuth, NeedToken, Refused, TokenSource, bearer_flow
from cidx_auth.domain.errors import ProtocolError
from cidx_auth.domain.events import EventKind
from tests.unit.conftest import World

URL = "https://cidx.test"


class Wire(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Consumes the body stream as a socket would; MockTransport buffers it instead,
    which would make every body look replayable."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        return self.server.answer(request, b"".join(request.stream))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # let every concurrent task reach the server first
        assert isinstance(request.stream, httpx.AsyncByteStream)
        body = b"".join([chunk async for chunk in request.stream])
        await asyncio.sleep(0)
        return self.server.answer(request, body)


class Server:
    """Refuses the tokens in ``refused`` (all of them with ``refuse_all``), counts requests."""

    def __init__(self, refuse_all: bool = False) -> None:
        self.refused: set[str] = set()
        self.refuse_all = refuse_all
        self.seen: list[str] = []
        self.bodies: list[bytes] = []

    def answer(self, request: httpx.Request, body: bytes) -> httpx.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.seen.append(token)
        self.bodies.append(body)
        if self.refuse_all or token in self.refused:
            return httpx.Response(401, json={"detail": "Token has expired"},
                                  headers={"WWW-Authenticate": 'Bearer realm="mcp"'})
        return httpx.Response(200, json={"ok": True})


def client(world: World, server: Server) -> httpx.Client:
    return httpx.Client(base_url=URL, auth=CidxAuth(world.provider, URL),
                        transport=Wire(server))


def aclient(world: World, server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=URL, auth=CidxAuth(world.provider, URL),
                             transport=Wire(server))


def test_the_provider_is_a_token_source(world: World) -> None:
    assert isinstance(world.provider, TokenSource)


def test_bearer_token_is_added(world: World) -> None:
    server = Server()
    response = client(world, server).get("/api/repos")
    assert response.status_code == 200
    assert server.seen == [world.provider.get_token()]
    assert world.gateway.logins == 1


def test_401_invalidates_that_token_and_retries_once(world: World) -> None:
    server = Server()
    first = world.provider.get_token()
    server.refused.add(first)
    response = client(world, server).post("/api/query", json={"query_text": "x"})
    assert response.status_code == 200
    assert len(server.seen) == 2 and server.seen[0] == first and server.seen[1] != first
    assert server.bodies[0] == server.bodies[1] != b""  # the same body, sent again
    assert world.events[EventKind.INVALIDATED] == 1
    assert world.gateway.refreshes == 1


def test_second_401_is_returned_without_a_third_try(world: World) -> None:
    server = Server(refuse_all=True)
    response = client(world, server).get("/api/repos")
    assert response.status_code == 401
    assert len(server.seen) == 2
    assert world.gateway.refreshes == 1


def test_a_streamed_body_is_not_sent_again(world: World) -> None:
    server = Server()
    server.refused.add(world.provider.get_token())

    def upload() -> Iterator[bytes]:
        yield b"chunk-1"
        yield b"chunk-2"

    with pytest.raises(ProtocolError, match="cannot be sent again"):
        client(world, server).post("/api/upload", content=upload())
    assert len(server.seen) == 1
    assert world.events[EventKind.INVALIDATED] == 1  # the next call gets a new token


def test_a_read_stream_is_replayable(world: World) -> None:
    server = Server()
    server.refused.add(world.provider.get_token())
    http = client(world, server)
    request = http.build_request("POST", "/api/upload", content=iter([b"a", b"b"]))
    request.read()
    assert http.send(request).status_code == 200
    assert server.bodies == [b"ab", b"ab"]


def test_same_token_again_is_not_resent() -> None:
    flow = bearer_flow(httpx.Request("GET", URL))
    assert isinstance(next(flow), NeedToken)
    request = flow.send("t1")
    assert isinstance(request, httpx.Request)
    assert request.headers["Authorization"] == "Bearer t1"
    assert flow.send(httpx.Response(401)) == Refused("t1")
    assert isinstance(flow.send(None), NeedToken)
    with pytest.raises(StopIteration):
        flow.send("t1")


def test_auth_flow_drives_like_the_sync_driver(world: World) -> None:
    flow = CidxAuth(world.provider, URL).auth_flow(httpx.Request("GET", URL))
    request = next(flow)
    assert request.headers["Authorization"] == f"Bearer {world.provider.get_token()}"
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200))


async def test_async_bearer_and_single_retry(world: World) -> None:
    server = Server()
    first = await world.provider.aget_token()
    server.refused.add(first)
    async with aclient(world, server) as http:
        response = await http.get("/api/repos")
    assert response.status_code == 200
    assert server.seen[0] == first and len(server.seen) == 2
    assert world.gateway.refreshes == 1


async def test_async_second_401_surfaces(world: World) -> None:
    server = Server(refuse_all=True)
    async with aclient(world, server) as http:
        assert (await http.get("/api/repos")).status_code == 401
    assert len(server.seen) == 2


async def test_async_stream_is_not_replayed(world: World) -> None:
    server = Server()
    server.refused.add(await world.provider.aget_token())

    async def upload() -> AsyncIterator[bytes]:
        yield b"chunk"

    async with aclient(world, server) as http:
        with pytest.raises(ProtocolError):
            await http.post("/api/upload", content=upload())
    assert len(server.seen) == 1


async def test_fifty_concurrent_401s_cause_one_renewal(world: World) -> None:
    server = Server()
    server.refused.add(await world.provider.aget_token())
    async with aclient(world, server) as http:
        answers = await asyncio.gather(*(http.get("/api/repos") for _ in range(50)))
    assert all(response.status_code == 200 for response in answers)
    assert world.gateway.refreshes == 1 and world.gateway.logins == 1
    assert len(server.seen) == 100


def test_the_token_goes_only_to_the_bound_origin(world: World) -> None:
    seen: dict[str, list[str | None]] = {"cidx": [], "other": []}

    def handler(request: httpx.Request) -> httpx.Response:
        url = request.url
        ours = (url.scheme, url.host, url.port) in {("https", "cidx.test", None),
                                                    ("https", "cidx.test", 443)}
        side = "cidx" if ours else "other"
        seen[side].append(request.headers.get("Authorization"))
        return httpx.Response(401 if side == "other" else 200)

    auth = CidxAuth(world.provider, "https://cidx.test")
    with httpx.Client(auth=auth, transport=httpx.MockTransport(handler)) as http:
        assert http.get("https://cidx.test/api/repos").status_code == 200
        assert http.get("https://other.test/api/x").status_code == 401  # returned as is
        assert http.get("http://cidx.test/api/x").status_code == 401  # another scheme
        assert http.get("https://cidx.test:8443/api/x").status_code == 401  # another port
        assert http.get("https://cidx.test:443/api/repos").status_code == 200  # same origin
    assert seen["other"] == [None, None, None]  # never the CIDX token
    assert all(value and value.startswith("Bearer ") for value in seen["cidx"])
    assert world.events[EventKind.INVALIDATED] == 0  # their 401s renewed nothing
    assert world.gateway.calls == 1  # the first login only


def test_a_401_after_a_redirect_to_another_origin_refuses_nothing(world: World) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        if request.url.host == "cidx.test":
            return httpx.Response(302, headers={"Location": "https://other.test/login"})
        return httpx.Response(401)

    auth = CidxAuth(world.provider, "https://cidx.test")
    with httpx.Client(auth=auth, transport=httpx.MockTransport(handler),
                      follow_redirects=True) as http:
        assert http.get("https://cidx.test/api/repos").status_code == 401
    assert seen[0] is not None and seen[1] is None  # httpx drops it on the way out
    assert len(seen) == 2  # not sent again: the refusal was not the CIDX server's
    assert world.events[EventKind.INVALIDATED] == 0 and world.gateway.calls == 1


async def test_the_async_flow_keeps_the_token_to_its_origin_too(world: World) -> None:
    seen: list[str | None] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(401 if request.url.host == "other.test" else 200)

    auth = CidxAuth(world.provider, "https://cidx.test")
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(handler)) as http:
        assert (await http.get("https://cidx.test/api/repos")).status_code == 200
        assert (await http.get("https://other.test/x")).status_code == 401
    assert seen[0] is not None and seen[0].startswith("Bearer ") and seen[1] is None
    assert world.events[EventKind.INVALIDATED] == 0
