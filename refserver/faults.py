"""Fault injection: make the next N requests fail in a chosen way.

Kinds, and what a client sees:

    error       an HTTP error status (500 unless told) with a JSON detail
    rate_limit  429 with a Retry-After header
    hang        nothing for `seconds`, then the normal answer; a client that
                gives up first has simply hit its read timeout
    drop        the connection closes with no response at all
    hold        the request IS processed (a refresh rotates, a login counts), then
                the answer is withheld for `seconds`, until the client leaves, or
                until a test releases every held answer (`FaultBook.release`);
                `held` in the stats counts requests processed and now held, and
                `held_abandoned` those whose client left before the answer went out

"hang" models a request lost on its way in; "hold" models an answer lost on its
way out, which is what spends a refresh token without the client knowing.

A "drop" needs the server's help, since ASGI gives an app no way to close
its connection: the runner passes a `ConnectionDropper` that can find the
socket behind a request. Without one (e.g. under `httpx.ASGITransport`) the
middleware raises `ConnectionDropped`, which an in-process client receives
as an exception and a foreign server turns into a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from refserver.stats import Stats

FaultKind = Literal["error", "rate_limit", "hang", "drop", "hold"]
FAULT_KINDS: tuple[FaultKind, ...] = ("error", "rate_limit", "hang", "drop", "hold")
ADMIN_PREFIX = "/_admin"

ConnectionDropper = Callable[[Scope], bool]
"""Cuts the connection carrying a request; True when it did."""


class ConnectionDropped(ConnectionAbortedError):
    """Raised for a "drop" fault when nothing can cut the connection."""


@dataclass(slots=True)
class FaultRule:
    """One armed fault: its kind, how many more requests it hits, and where."""

    kind: FaultKind
    remaining: int
    status: int = 500
    retry_after: int = 1
    seconds: float = 60.0
    paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if self.remaining < 1:
            raise ValueError("count must be at least 1")
        if not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if self.retry_after < 0 or self.seconds < 0:
            raise ValueError("retry_after and seconds cannot be negative")

    def matches(self, path: str) -> bool:
        """Whether this rule applies to a request for `path` (no paths: all of them)."""
        return not self.paths or any(path.startswith(prefix) for prefix in self.paths)

    def describe(self) -> dict[str, object]:
        """The rule as JSON, for the admin API."""
        return {"kind": self.kind, "remaining": self.remaining, "status": self.status,
                "retry_after": self.retry_after, "seconds": self.seconds,
                "paths": list(self.paths)}


class FaultBook:
    """The armed faults, consulted in the order they were added."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._released: asyncio.Event | None = None
        self.holding = 0
        """Answers held right now."""

    def released(self) -> asyncio.Event:
        """Set when a test releases the answers held now; later holds wait for the next."""
        if self._released is None:
            self._released = asyncio.Event()
        return self._released

    def release(self) -> int:
        """Send every held answer now; how many were held."""
        held, event, self._released = self.holding, self._released, None
        if event is not None:
            event.set()
        return held

    def add(self, rule: FaultRule) -> None:
        """Arm one more fault."""
        self._rules.append(rule)

    def clear(self) -> None:
        """Disarm everything."""
        self._rules.clear()

    def pending(self) -> list[dict[str, object]]:
        """The faults still armed, as JSON."""
        return [rule.describe() for rule in self._rules]

    def take(self, path: str) -> FaultRule | None:
        """Spend one hit of the first rule matching `path`, if any."""
        for rule in self._rules:
            if rule.matches(path):
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._rules.remove(rule)
                return rule
        return None


class FaultMiddleware:
    """ASGI middleware that applies armed faults to non-admin requests."""

    def __init__(self, app: ASGIApp, book: FaultBook, stats: Stats,
                 dropper: ConnectionDropper | None = None) -> None:
        self.app = app
        self.book = book
        self.stats = stats
        self.dropper = dropper

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rule = None
        if scope["type"] == "http" and not scope["path"].startswith(ADMIN_PREFIX):
            rule = self.book.take(scope["path"])
        if rule is None:
            await self.app(scope, receive, send)
            return
        self.stats.bump("faults_fired")
        if rule.kind == "error":
            detail = f"Injected fault: HTTP {rule.status}"
            await JSONResponse({"detail": detail}, rule.status)(scope, receive, send)
        elif rule.kind == "rate_limit":
            headers = {"Retry-After": str(rule.retry_after)}
            body = {"detail": "Too many requests (injected fault)."}
            await JSONResponse(body, 429, headers=headers)(scope, receive, send)
        elif rule.kind == "hang":
            replay = await _stall(rule.seconds, receive)
            if replay is not None:
                await self.app(scope, replay, send)
        elif rule.kind == "hold":
            await self._hold(rule.seconds, scope, receive, send)
        elif self.dropper is None or not self.dropper(scope):
            raise ConnectionDropped("drop fault: the connection could not be cut")

    async def _hold(self, seconds: float, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, then keep its answer back for `seconds` or until the client leaves."""
        answer: list[Message] = []

        async def withhold(message: Message) -> None:
            answer.append(message)

        await self.app(scope, receive, withhold)
        released = self.book.released()
        self.book.holding += 1
        self.stats.bump("held")
        try:
            left = await _client_left(seconds, receive, [], released)
        finally:
            self.book.holding -= 1
        if left:
            self.stats.bump("held_abandoned")
            return
        for message in answer:
            await send(message)


async def _client_left(seconds: float, receive: Receive, unread: list[Message],
                       released: asyncio.Event | None = None) -> bool:
    """Wait up to `seconds` (or until `released` is set) for the client to leave; True
    when it did.

    Leaving shows up in ASGI only through `receive`, so any request body not
    yet read is read here and kept in `unread`.
    """

    async def until_disconnect() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            unread.append(message)

    leaving = asyncio.ensure_future(until_disconnect())
    waiting = [leaving] if released is None else [leaving, asyncio.ensure_future(released.wait())]
    try:
        done, _ = await asyncio.wait(waiting, timeout=seconds,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waiting:
            task.cancel()
    return leaving in done


async def _stall(seconds: float, receive: Receive) -> Receive | None:
    """Wait `seconds`, or less if the client leaves; None when it left.

    The request body is read while waiting, so the returned callable hands
    it on to the app.
    """
    held: list[Message] = []
    if await _client_left(seconds, receive, held):
        return None

    async def replay() -> Message:
        return held.pop(0) if held else await receive()

    return replay
