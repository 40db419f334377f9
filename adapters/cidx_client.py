"""The CIDX API client, blocking and asyncio: business calls with no token in sight.

    with open_project() as project, project.client() as cidx:   # cidx_auth.open_project
        for hit in cidx.query("where is the token refreshed?", "backend", limit=5):
            print(hit.similarity_score, hit.location, hit.code_snippet)
        everywhere = cidx.query("token refresh", search_mode="hybrid", min_score=0.5)

``query`` returns a typed :class:`~cidx_auth.domain.results.QueryResult`; ``query_json``,
``repos``, ``health`` and ``request`` return the decoded JSON as the server sent it.

Each client owns an httpx client with ``auth=CidxAuth(provider, server)``, so tokens are
attached, renewed and retried after a 401 below the business code. The calls, the
retry loop and the breaker bookkeeping are the core's (``cidx_auth.service.api_calls``)
and the meaning of each answer is ``adapters.cidx_calls``'s; the two classes here only
send, sleep and wait for tokens, each with at most ``settings.max_in_flight`` requests
on the wire at once. Each send
has its own deadline, ``settings.api_deadline``, and reads at most 16 MiB of answer
(``adapters.http_limits``).

Pass the breaker the token provider uses (``container.breaker()``): login, refresh
and API calls then share one view of the server, kept in the state store.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx

from adapters.cidx_calls import (
    ApiError,
    ApiRateLimited,
    ApiUnauthorized,
    ApiUnavailable,
    answer,
    failure,
)
from adapters.http_limits import Attempt, TooLate
from adapters.http_settings import HttpSettings, make_async_client, make_client
from adapters.httpx_auth import CidxAuth, TokenSource
from cidx_auth.domain.errors import CidxAuthError, ProtocolError
from cidx_auth.domain.query import QueryRequest
from cidx_auth.domain.results import QueryResult
from cidx_auth.domain.retry import RetryPolicy
from cidx_auth.ports import Clock
from cidx_auth.service.api_calls import (
    HEALTH,
    REPOS,
    ApiPolicy,
    Call,
    Flow,
    Outcome,
    Refused,
    Send,
    Sleep,
    attempts,
    generic_call,
    query_call,
)
from cidx_auth.service.breaker import CircuitBreaker

__all__ = ["ApiError", "ApiRateLimited", "ApiUnauthorized", "ApiUnavailable",
           "AsyncCidxClient", "CidxClient", "QueryRequest", "QueryResult"]


class _Shared:
    """Construction and result checks common to both clients."""

    def __init__(
        self,
        settings: HttpSettings,
        provider: TokenSource,
        breaker: CircuitBreaker,
        *,
        clock: Clock,
        retry: RetryPolicy = RetryPolicy(),
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._policy = ApiPolicy(breaker, retry, rng)
        self._source = provider
        self._auth = CidxAuth(provider, settings.server)

    def _object(self, body: Any, call: Call) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ProtocolError(f"{self._settings.server} answered {call.method} "
                                f"{call.path} with something other than a JSON object")
        return body

    def _auth_for(self, call: Call) -> CidxAuth | None:
        # None means "no auth" to httpx: /health must not cost a login.
        return self._auth if call.authenticated else None

    def _request(self, http: httpx.Client | httpx.AsyncClient, call: Call,
                 attempt: Attempt) -> httpx.Request:
        """``call`` as a request that keeps to ``attempt``'s deadline."""
        asynchronous = isinstance(http, httpx.AsyncClient)
        return http.build_request(call.method, call.path, json=call.body,
                                  timeout=self._settings.timeouts_within(attempt),
                                  extensions=attempt.extensions(asynchronous=asynchronous))

    def _attempt(self) -> Attempt:
        return Attempt(self._settings.api_deadline)

    def _answer(self, response: httpx.Response, call: Call) -> Outcome:
        return answer(response, call, self._settings, self._clock.now())


class CidxClient(_Shared):
    """The blocking client; safe to share between threads. Get one from
    :meth:`cidx_auth.Project.client` (or ``refserver.testing.FakeCidx.client`` in tests)
    and close it (``with``).

    What every call raises (all ``CidxAuthError``): :class:`~cidx_auth.domain.query.BadQuery`
    (a ``ConfigurationError``) for a bad query value or an unknown option, before any
    request, and ``ConfigurationError`` for a ``request`` path that is not one;
    ``NotLoggedIn`` when there is nothing to log in with, and another
    ``AuthenticationError`` when the server refuses who we are (a wrong stored password,
    a locked account); :class:`ApiError` when it refuses the call itself (404 for an
    unknown alias, 422); ``TransportError`` when it cannot be used now (unreachable, 5xx
    or 429 after retries, the circuit open), or ``LockTimeout`` when another process keeps
    renewing the token; ``StorageError`` when the token store fails; ``ProtocolError``
    for an answer outside the CIDX API."""

    def __init__(self, settings: HttpSettings, provider: TokenSource, breaker: CircuitBreaker,
                 *, clock: Clock, retry: RetryPolicy = RetryPolicy(),
                 rng: Callable[[], float] = random.random,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(settings, provider, breaker, clock=clock, retry=retry, rng=rng)
        self._http = make_client(settings, auth=self._auth, transport=transport)
        self._slots = threading.BoundedSemaphore(settings.max_in_flight)

    def query(self, text: str | QueryRequest, repo: str | None = None,
              limit: int | None = None, **options: Any) -> QueryResult:
        """Search ``repo`` (every repository the user can see when None); the hits,
        typed (iterate the result). ``options`` are the server's query fields by name
        (``min_score=0.5, search_mode="hybrid"``, see
        :class:`~cidx_auth.domain.query.QueryRequest`), or pass a ``QueryRequest`` alone.
        """
        return QueryResult.from_json(self.query_json(text, repo, limit, **options))

    def query_json(self, text: str | QueryRequest, repo: str | None = None,
                   limit: int | None = None, **options: Any) -> dict[str, Any]:
        """As :meth:`query`, but the decoded JSON answer as the server sent it:
        ``{"results": [...], "total_results": n, ...}`` (what ``cidx-auth query --json``
        prints)."""
        call = query_call(text, repo, _with_limit(limit, options))
        return self._object(self._run(call), call)

    def repos(self) -> dict[str, Any]:
        """The repositories this user may query: ``{"repositories": [...], "total": n}``."""
        return self._object(self._run(REPOS), REPOS)

    def health(self) -> dict[str, Any]:
        """The server's health report (no token needed)."""
        return self._object(self._run(HEALTH), HEALTH)

    def request(self, method: str, path: str, json: Any = None) -> Any:
        """Any other call: the decoded JSON answer, None for an empty one."""
        return self._run(generic_call(method, path, json))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CidxClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _run(self, call: Call) -> Any:
        flow: Flow = attempts(call, self._policy)
        answer: Any = None
        try:
            while True:
                try:
                    step = flow.send(answer)
                except StopIteration as stop:
                    return stop.value
                if isinstance(step, Send):
                    answer = self._send(step.call)
                elif isinstance(step, Sleep):
                    self._clock.sleep(step.seconds)
                    answer = None
                else:
                    answer = self._source.get_token()
        finally:
            flow.close()

    def _send(self, call: Call) -> Outcome:
        with self._slots, self._attempt() as attempt:
            try:
                return self._answer(self._http.send(self._request(self._http, call, attempt),
                                                    auth=self._auth_for(call)), call)
            except (httpx.HTTPError, TooLate) as exc:
                return failure(exc, call, self._settings, attempt)
            except CidxAuthError as error:  # from CidxAuth: no token it could renew
                return Refused(error)


class AsyncCidxClient(_Shared):
    """The asyncio client; share one per event loop between tasks (``async with``). Its
    calls raise what :class:`CidxClient`'s do."""

    def __init__(self, settings: HttpSettings, provider: TokenSource, breaker: CircuitBreaker,
                 *, clock: Clock, retry: RetryPolicy = RetryPolicy(),
                 rng: Callable[[], float] = random.random,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(settings, provider, breaker, clock=clock, retry=retry, rng=rng)
        self._http = make_async_client(settings, auth=self._auth, transport=transport)
        self._slots = asyncio.Semaphore(settings.max_in_flight)

    async def query(self, text: str | QueryRequest, repo: str | None = None,
                    limit: int | None = None, **options: Any) -> QueryResult:
        """As :meth:`CidxClient.query`."""
        return QueryResult.from_json(await self.query_json(text, repo, limit, **options))

    async def query_json(self, text: str | QueryRequest, repo: str | None = None,
                         limit: int | None = None, **options: Any) -> dict[str, Any]:
        """As :meth:`CidxClient.query_json`."""
        call = query_call(text, repo, _with_limit(limit, options))
        return self._object(await self._run(call), call)

    async def repos(self) -> dict[str, Any]:
        """The repositories this user may query: ``{"repositories": [...], "total": n}``."""
        return self._object(await self._run(REPOS), REPOS)

    async def health(self) -> dict[str, Any]:
        """The server's health report (no token needed)."""
        return self._object(await self._run(HEALTH), HEALTH)

    async def request(self, method: str, path: str, json: Any = None) -> Any:
        """Any other call: the decoded JSON answer, None for an empty one."""
        return await self._run(generic_call(method, path, json))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncCidxClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.aclose()

    async def _run(self, call: Call) -> Any:
        flow: Flow = attempts(call, self._policy)
        answer: Any = None
        try:
            while True:
                try:
                    step = flow.send(answer)
                except StopIteration as stop:
                    return stop.value
                if isinstance(step, Send):
                    answer = await self._send(step.call)
                elif isinstance(step, Sleep):
                    await self._clock.asleep(step.seconds)
                    answer = None
                else:
                    answer = await self._source.aget_token()
        finally:
            flow.close()

    async def _send(self, call: Call) -> Outcome:
        async with self._slots:
            with self._attempt() as attempt:
                try:
                    sent = await self._http.send(self._request(self._http, call, attempt),
                                                 auth=self._auth_for(call))
                    return self._answer(sent, call)
                except (httpx.HTTPError, TooLate) as exc:
                    return failure(exc, call, self._settings, attempt)
                except CidxAuthError as error:  # from CidxAuth: no token it could renew
                    return Refused(error)


def _with_limit(limit: int | None, options: dict[str, Any]) -> dict[str, Any]:
    """``limit`` stays the third positional argument (``query(text, repo, 5)``)."""
    return options if limit is None else {**options, "limit": limit}
