"""`FakeCidx`: the reference server in this process, on a fake clock, with real clients.

For tests of code that calls `CidxClient` (or `AsyncCidxClient`, or `CidxAuth` in its
own `httpx.Client`). The server is the reference server itself, so it keeps the CIDX
server's rules: refresh tokens rotate on every use, a replayed one revokes its family,
five failed logins lock the account, and so on (`server-contract.md`). Its clients are
the real ones, built as `open_project` builds them, with the session, the password and
the breaker in memory instead of a project's files. Time is one `FakeClock` for both
sides, so a test moves it instead of sleeping:

    with FakeCidx(users={"alice": "secret"}) as cidx, cidx.client("alice") as client:
        client.query("retry", "backend")
        cidx.expire_tokens()                  # the token expired: renewed by a refresh
        client.query("retry", "backend")

No socket and no process: the app runs on an event loop in a thread of its own, and
the clients reach it through an httpx transport. Like the suite's `ScriptedGateway`,
closing a `FakeCidx` fails (AssertionError) if the server saw a refresh token presented
twice that the test did not declare in `expected_replays`: code under test that causes
a replay cannot pass.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from starlette.applications import Starlette

from adapters.cidx_client import AsyncCidxClient, CidxClient
from adapters.http_settings import HttpSettings
from adapters.httpx_auth import CidxAuth
from adapters.httpx_gateway import HttpxGateway
from adapters.memory import FakeClock, MemoryCredentialStore, MemoryStateStore, MemoryTokenStore
from cidx_auth.app.container import Container
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import ConfigurationError
from cidx_auth.domain.rules import Rules
from cidx_auth.service.provider import TokenProvider
from refserver.app import create_app, server_state
from refserver.config import DEFAULT_REPOSITORIES, DEFAULT_TOKEN_LIFETIME, ServerConfig
from refserver.faults import FaultRule
from refserver.sessions import ADMIN_REASON
from refserver.state import ServerState

T = TypeVar("T")

DEFAULT_EPOCH = 1_767_225_600.0
"""2026-01-01T00:00:00Z: a fixed, readable starting point for fake time."""
LOOPBACK_PEER = ("127.0.0.1", 50_000)
URL = "http://cidx.invalid"
"""The fake server's URL: `.invalid` never resolves, so nothing can reach a real host."""
UNTIL_RESTORED = 1_000_000_000
"""An outage without a count lasts this many requests: until `restore()`."""


class _Loop:
    """An event loop in a thread of its own, where the app runs and its state changes."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-cidx",
                                        daemon=True)
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    async def arun(self, work: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.loop))

    def call(self, change: Callable[[], T]) -> T:
        async def called() -> T:
            return change()
        return self.run(called())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class _Bridge(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport, blocking and async, that hands each request to the app."""

    def __init__(self, app: Starlette, loop: _Loop) -> None:
        self._asgi = httpx.ASGITransport(app=app, client=LOOPBACK_PEER)
        self._loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._loop.run(self._serve(request, request.read()))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._loop.arun(self._serve(request, await request.aread()))

    async def _serve(self, request: httpx.Request, body: bytes) -> httpx.Response:
        inner = httpx.Request(request.method, request.url, headers=request.headers,
                              content=body)
        try:
            answer = await self._asgi.handle_async_request(inner)
        except Exception as error:  # a "drop" fault: what httpx says of a cut connection
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                            request=request) from error
        content = b"".join([chunk async for chunk in answer.stream])  # type: ignore[union-attr]
        return httpx.Response(answer.status_code, headers=answer.headers.raw,
                              stream=httpx.ByteStream(content))


def _is_int(value: object, low: int, high: int | None = None) -> bool:
    """``value`` is an int (not a bool) from ``low`` to ``high``."""
    return (isinstance(value, int) and not isinstance(value, bool) and low <= value
            and (high is None or value <= high))


def _check_arguments(users: object, token_lifetime: object, repositories: object) -> None:
    """FakeCidx's arguments, each refused with what to give instead."""
    if not isinstance(users, Mapping) or not all(
            isinstance(name, str) and isinstance(password, str)
            for name, password in users.items()):
        raise ConfigurationError("FakeCidx(users=...) takes a mapping of user names to "
                                 "passwords, both text: {'alice': 'secret'}")
    if not _is_int(token_lifetime, 1):
        raise ConfigurationError(f"FakeCidx(token_lifetime=...) takes whole seconds, 1 or "
                                 f"more (600 by default), not {token_lifetime!r}")
    if isinstance(repositories, str) or not isinstance(repositories, Sequence) or not all(
            isinstance(alias, str) for alias in repositories):
        raise ConfigurationError(f"FakeCidx(repositories=...) takes a sequence of aliases "
                                 f"({repositories!r} would not do): a one-repository server "
                                 f"is repositories=('backend',)")


class FakeCidx:
    """A CIDX server in this process, and clients of it that share its fake clock.

    ``users`` maps each user to a password (``{"alice": "secret"}`` by default);
    ``token_lifetime`` is the access tokens' (600 s, as the real server's);
    ``repositories`` the aliases every user can query. Use it as a context manager, or
    call :meth:`close`. ``clock`` is the :class:`FakeClock` both sides read; ``state``
    the reference server's own state (faults, sessions, statistics), for what the
    methods here do not cover. A bad argument is a ``ConfigurationError`` saying what
    to give instead.
    """

    def __init__(self, users: Mapping[str, str] | None = None, *,
                 token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
                 repositories: Sequence[str] = DEFAULT_REPOSITORIES,
                 clock: FakeClock | None = None) -> None:
        users = {"alice": "secret"} if users is None else users
        _check_arguments(users, token_lifetime, repositories)
        self.clock = clock or FakeClock(DEFAULT_EPOCH)
        self.users = dict(users)
        config = ServerConfig(users=self.users, token_lifetime=token_lifetime, alg="HS256",
                              repositories=tuple(repositories))
        self.app = create_app(config, clock=self.clock)
        self.state: ServerState = server_state(self.app)
        self.expected_replays = 0
        """How many replayed refresh tokens the test provokes on purpose; :meth:`close`
        fails on any other number."""
        self._loop = _Loop()
        self._bridge = _Bridge(self.app, self._loop)
        self._settings = HttpSettings(URL, environ={})
        self._closing: list[Callable[[], None]] = []
        self._closed = False

    # Clients ---------------------------------------------------------------

    def provider(self, username: str = "alice", password: str | None = None) -> TokenProvider:
        """A token provider logged in as ``username`` (with its password unless
        ``password`` is given: a wrong one provokes a refusal, then a lockout), with
        its session, password and breaker in memory: one process, as the CLI's. It logs
        in at its first use."""
        provider: TokenProvider = self._wired(username, password).token_provider()
        return provider

    def client(self, username: str = "alice", password: str | None = None) -> CidxClient:
        """A blocking :class:`CidxClient` of ``username`` (see :meth:`provider`); closed
        with this server if not before."""
        wired = self._wired(username, password)
        client = CidxClient(self._settings, wired.token_provider(), wired.breaker(),
                            clock=self.clock, transport=self._bridge)
        self._closing.append(client.close)
        return client

    def async_client(self, username: str = "alice",
                     password: str | None = None) -> AsyncCidxClient:
        """An :class:`AsyncCidxClient` of ``username``; close it (``async with``)."""
        wired = self._wired(username, password)
        return AsyncCidxClient(self._settings, wired.token_provider(), wired.breaker(),
                               clock=self.clock, transport=self._bridge)

    def httpx_client(self, username: str = "alice", password: str | None = None,
                     ) -> httpx.Client:
        """An ``httpx.Client`` of one's own, with :class:`CidxAuth` of ``username``
        and this server as its base URL; closed with this server if not before."""
        provider = self.provider(username, password)
        http = httpx.Client(base_url=URL, auth=CidxAuth(provider, URL), transport=self._bridge)
        self._closing.append(http.close)
        return http

    def _wired(self, username: str, password: str | None) -> Container:
        """The composition root over memory stores and a gateway to this server."""
        if password is None and username not in self.users:
            raise ConfigurationError(
                f"{username!r} is not one of this FakeCidx's users "
                f"({', '.join(map(repr, self.users))}): name them in FakeCidx(users=...), "
                f"or give a password (client({username!r}, password='wrong')) to provoke "
                "the server's refusal")
        secret = self.users[username] if password is None else password
        gateway = HttpxGateway(self._settings, now=self.clock.now, transport=self._bridge)
        self._closing.append(gateway.close)
        return Container(
            clock=self.clock, gateway=gateway, token_store=MemoryTokenStore(),
            credential_store=MemoryCredentialStore(Credentials(username, secret)),
            state_store=MemoryStateStore(), rules=Rules.pinned(["HS256"]))

    # What a test provokes --------------------------------------------------

    def expire_tokens(self) -> None:
        """Move time on by an access token's lifetime: every token issued so far has
        expired, and the clients renew theirs (with a refresh) at their next call."""
        self.clock.advance(self.state.tokens.lifetime)

    def refuse_tokens(self) -> int:
        """Make the server refuse (401) every access token still valid, while the
        clients still think theirs good: each renews at its next call, after the 401,
        and retries. How many tokens that refused (expired ones are refused already, and
        not counted: right after :meth:`expire_tokens`, 0)."""
        return self._loop.call(lambda: self.state.tokens.revoke_issued(self.state.clock.now()))

    def revoke(self, username: str = "alice") -> int:
        """Revoke every refresh token family of ``username``, as an administrator
        would: the next renewal's refresh is refused, and the client logs in again with
        the stored password. How many families that revoked."""
        return self._loop.call(lambda: self.state.sessions.revoke_user(username, ADMIN_REASON))

    def outage(self, requests: int | None = None, status: int = 503) -> None:
        """The next ``requests`` requests (all of them until :meth:`restore` when None)
        are answered ``status``. A client tries each call 3 times, and its breaker
        opens after 5 failures in a row (move ``clock`` on 30 s to let it probe)."""
        if requests is not None and not _is_int(requests, 1):
            raise ConfigurationError(f"outage(requests=...) takes a count of 1 or more, or "
                                     f"None for every request until restore(), not "
                                     f"{requests!r}")
        if not _is_int(status, 400, 599):
            raise ConfigurationError(f"outage(status=...) takes an HTTP error status from 400 "
                                     f"to 599 (503 by default), not {status!r}")
        rule = FaultRule("error", UNTIL_RESTORED if requests is None else requests,
                         status=status)
        self._loop.call(lambda: self.state.faults.add(rule))

    def restore(self) -> None:
        """End an outage: every fault still armed is cleared."""
        self._loop.call(self.state.faults.clear)

    def stats(self) -> dict[str, Any]:
        """The server's counters: ``{"totals": {"logins", "refreshes", "replays",
        "failed_logins", "queries", ...}, "users": {name: {...}}, "auth_401": n, ...}``."""
        return self._loop.call(self.state.stats.snapshot)

    @property
    def last_query(self) -> Any:
        """The body of the last ``POST /api/query`` as the server received it."""
        return self.state.last_query

    # Lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Close the clients this server made and stop it. Raises AssertionError when
        the server saw a number of replayed refresh tokens other than
        :attr:`expected_replays` (the clients are closed all the same)."""
        replays = self._stop()
        if replays not in (None, self.expected_replays):  # raised, not assert: -O keeps it
            raise AssertionError(
                f"the fake CIDX server saw {replays} replayed refresh token(s), "
                f"{self.expected_replays} declared (expected_replays)")

    def _stop(self) -> int | None:
        """Close everything once; the replays the server saw (None if closed before)."""
        if self._closed:
            return None
        self._closed = True
        try:
            replays: int = self.stats()["totals"]["replays"]
        finally:
            for close in reversed(self._closing):
                close()
            self._loop.close()
        return replays

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if error is None:
            self.close()
        else:  # the test failed already: its own error says more than a replay count
            self._stop()
