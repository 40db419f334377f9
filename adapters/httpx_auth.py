"""A drop-in ``httpx.Auth`` that sends the provider's bearer token and survives a 401.

    client = httpx.Client(base_url=url, auth=CidxAuth(provider, url))

The token goes only to the CIDX server's origin (scheme, host and port of the URL it is
bound to): a request to any other origin passes untouched, and its 401 never reports,
drops or renews anything. A client that talks to two hosts must not hand the second one
the CIDX token, nor pay a refresh for every refusal of a token that was never its own.

The logic lives once, in :func:`bearer_flow`, a generator that yields either a request
to send or a question for the token source (a token, please; this one was refused).
:meth:`CidxAuth.sync_auth_flow` and :meth:`CidxAuth.async_auth_flow` only answer the
questions, blocking or awaiting, as httpx's own ``Auth`` drivers do for ``auth_flow``.

On a 401 the refused token is reported to the source (which drops it only if it is
still the current one, so fifty callers refused together cause one renewal), and the
request is sent once more with the next token. Only once: a second 401 is returned
to the caller as it is. A request whose body is a stream has already been consumed
by the first send and cannot be sent again; rather than send an empty or partial body
we raise :class:`ProtocolError`. Buffering every body up front (``requires_request_body``)
would make uploads replayable, at the price of holding each one in memory: callers who
want that can read the body themselves (``request.read()``) before sending.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx

from cidx_auth.domain.errors import ProtocolError


@runtime_checkable
class TokenSource(Protocol):
    """What :class:`CidxAuth` needs; :class:`TokenProvider` is one."""

    def get_token(self) -> str: ...
    async def aget_token(self) -> str: ...
    def invalidate(self, token: str) -> None: ...


@dataclass(frozen=True, slots=True)
class NeedToken:
    """Answer: a token that is safe to send now."""


@dataclass(frozen=True, slots=True)
class Refused:
    """The server refused ``token``: tell the source. Answer: None."""

    token: str = field(repr=False)


Step = httpx.Request | NeedToken | Refused
Flow = Generator[Step, Any, None]

NOT_REPLAYABLE = (
    "the server refused the token and the request body is a stream that cannot be sent "
    "again; retry the call (a fresh token will be used)"
)


def bearer_flow(request: httpx.Request) -> Flow:
    """Authorize ``request``; on a 401, report the token and send it once more."""
    token = yield NeedToken()
    _authorize(request, token)
    response: httpx.Response = yield request
    if response.status_code != httpx.codes.UNAUTHORIZED:
        return
    if _answered_from_elsewhere(response, request):
        return  # a redirect led elsewhere (the token was not sent there): not our refusal
    yield Refused(token)
    if not replayable(request):
        raise ProtocolError(NOT_REPLAYABLE)
    fresh = yield NeedToken()
    if fresh == token:  # the source has nothing better: sending it again would fail alike
        return
    _authorize(request, fresh)
    yield request


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the default port made explicit, as browsers compare."""
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def _answered_from_elsewhere(response: httpx.Response, request: httpx.Request) -> bool:
    """Whether a redirect took ``request`` to another origin before this answer."""
    try:
        final = response.request
    except RuntimeError:  # a response made by hand, with no request: ours
        return False
    return origin(final.url) != origin(request.url)


def replayable(request: httpx.Request) -> bool:
    """Whether the body can be sent again: bytes in memory, not a consumed stream."""
    return isinstance(request.stream, httpx.ByteStream)


def _authorize(request: httpx.Request, token: str) -> None:
    request.headers["Authorization"] = f"Bearer {token}"


class CidxAuth(httpx.Auth):
    """Bearer authentication from a :class:`TokenSource` (``Project.provider``), for
    ``Client`` and ``AsyncClient``; only requests to ``server``'s origin get the token.

    A request raises :class:`ProtocolError` when its token was refused and its body was a
    stream that cannot be sent again, and what the source raises when it cannot renew
    (``NotLoggedIn``, ``AuthenticationError``, ``TransportError``, ``StorageError``)."""

    def __init__(self, source: TokenSource, server: str | httpx.URL) -> None:
        self._source = source
        self._origin = origin(httpx.URL(server))

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response,
                                                                   None]:
        if origin(request.url) != self._origin:
            yield request  # another host: no token, and its 401 is its own business
            return
        flow = bearer_flow(request)
        answer: Any = None
        try:
            while True:
                try:
                    step = flow.send(answer)
                except StopIteration:
                    return
                if isinstance(step, httpx.Request):
                    answer = yield step
                elif isinstance(step, Refused):
                    self._source.invalidate(step.token)
                    answer = None
                else:
                    answer = self._source.get_token()
        finally:
            flow.close()

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request,
                                                                             httpx.Response]:
        if origin(request.url) != self._origin:
            yield request
            return
        flow = bearer_flow(request)
        answer: Any = None
        try:
            while True:
                try:
                    step = flow.send(answer)
                except StopIteration:
                    return
                if isinstance(step, httpx.Request):
                    answer = yield step
                elif isinstance(step, Refused):
                    # Reporting may touch the store (the refusal is recorded there): not
                    # on the event loop's thread. It never waits for a lock or a renewal.
                    await asyncio.to_thread(self._source.invalidate, step.token)
                    answer = None
                else:
                    answer = await self._source.aget_token()
        finally:
            flow.close()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # httpx itself calls the two drivers above; this is for code that drives an
        # Auth by hand, and it blocks like the sync driver.
        return (yield from self.sync_auth_flow(request))
