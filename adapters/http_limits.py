"""What bounds one HTTP request: an overall deadline, and a cap on the answer's size.

httpx's timeouts bound each socket operation, not their sum: a server dripping a byte
every 20 s holds a request for ever. An :class:`Attempt` is one request's deadline,
connect to last byte. Every phase's timeout is capped by what remains of it, the body
is checked chunk by chunk, and a watchdog shuts the connection's socket when it passes,
which wakes a read blocked inside httpcore (headers dripped byte by byte never come back
to us otherwise). The socket is taken from httpcore's ``trace`` extension when the
connection is made, or from the answer's ``network_stream`` when a pooled connection is
reused. Shutting it also ends any other HTTP/2 stream on that connection: a server that
drips one answer past the deadline is not trusted with the others.

Answers are decompressed here, not by httpx, so that no answer grows past its cap in
memory: httpx inflates each chunk whole (64 KiB of gzip can be 64 MiB) and chains
encodings (``gzip, gzip`` turns kilobytes into gigabytes). A client made by
``make_client`` runs :func:`guard` on every answer, the answers to a refused token
included: gzip or deflate only, one layer, inflated at most :data:`INFLATE_STEP` bytes at a
time, and never past the cap plus one byte.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any

import httpx

MAX_AUTH_ANSWER = 64 * 1024
"""The most a login or refresh answer may hold after decompression (decisions.md)."""
MAX_API_ANSWER = 16 * 1024 * 1024
"""The most an API answer may hold after decompression (decisions.md)."""
ACCEPTED_ENCODINGS = "gzip, deflate"
INFLATE_STEP = 64 * 1024
"""The most one inflate step may produce: the memory a compressed answer costs at once,
beyond the body kept so far (64 KiB, as httpcore reads from the socket)."""
ATTEMPT = "cidx_auth.attempt"
"""The request extension that carries its :class:`Attempt` to :func:`guard`."""
_WBITS = {"": 0, "identity": 0, "gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
          "deflate": zlib.MAX_WBITS}
_SHORTEST = 0.001
"""A phase never gets a timeout of 0: to a socket that means "do not wait", not "stop"."""


class TooLate(Exception):
    """The deadline passed before the request was sent: raised from the trace hook."""


class Overdue(httpx.ReadTimeout):
    """The deadline passed while the answer was coming in."""


class BadAnswer(httpx.DecodingError):
    """An answer this client will not read; the message completes "the answer from X"."""


class Oversized(BadAnswer):
    """The answer grew past its cap; ``cap`` is the limit in bytes."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"is larger than {size_text(cap)} once decompressed")
        self.cap = cap


class Unaccepted(BadAnswer):
    """The answer came in a content encoding this client did not ask for."""


class Corrupt(BadAnswer):
    """The answer's compressed data does not inflate."""


def size_text(cap: int) -> str:
    """``65536`` as "64 KiB", ``16777216`` as "16 MiB", ``1000`` as "1000 bytes"."""
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if cap >= size and cap % size == 0:
            return f"{cap // size} {unit}"
    return f"{cap} bytes"


class Attempt:
    """One request's deadline, and the watchdog that enforces it on the socket.

    ``sent`` turns True as httpcore starts writing the request: until then a failure
    certainly left nothing on the server. ``clock`` is monotonic; the watchdog itself
    waits in real time (a test with a fake clock uses a fake transport: no socket).
    """

    def __init__(self, deadline: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline = deadline
        self._clock = clock
        self._ends = clock() + deadline
        self.sent = False
        self._guard = threading.Lock()
        self._socket: socket.socket | None = None
        self._timer: threading.Timer | None = None

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        with self._guard:
            if self._timer is not None:
                self._timer.cancel()
            if self._socket is not None:
                self._socket.close()  # our duplicate only: httpcore closes its own
                self._socket = None

    def left(self) -> float:
        """Seconds until the deadline (negative once it has passed)."""
        return self._ends - self._clock()

    def timeouts(self, connect: float, read: float, write: float, pool: float) -> httpx.Timeout:
        """These per-phase timeouts, none longer than what remains."""
        left = max(self.left(), _SHORTEST)
        return httpx.Timeout(connect=min(connect, left), read=min(read, left),
                             write=min(write, left), pool=min(pool, left))

    def extensions(self, *, asynchronous: bool = False) -> dict[str, Any]:
        """The request extensions that put this attempt in charge of a request."""
        return {"trace": self.atrace if asynchronous else self.trace, ATTEMPT: self}

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` hook: watch a new socket; send nothing after the deadline."""
        if event.endswith("connect_tcp.complete"):
            self.watch(info.get("return_value"))
        elif event.endswith("send_request_headers.started"):
            if self.left() <= 0:
                raise TooLate
            self.sent = True

    async def atrace(self, event: str, info: dict[str, Any]) -> None:
        """The same hook for an async client (httpcore awaits it)."""
        self.trace(event, info)

    def check(self) -> None:
        """Raise :class:`Overdue` once the deadline has passed."""
        if self.left() <= 0:
            raise Overdue(f"no complete answer within {self.deadline:g} s")

    def watch(self, stream: Any) -> None:
        """Shut ``stream``'s socket (an httpcore network stream) when the deadline passes."""
        # A socket.socket, or asyncio's TransportSocket (anyio's raw socket) around one.
        found = stream.get_extra_info("socket") if stream is not None else None
        if found is None:
            return
        with self._guard:
            if self._socket is not None:
                return
            # A duplicate descriptor: it still names this connection after TLS wraps
            # (and detaches) httpcore's socket object, and it is never another socket
            # reusing a closed descriptor's number.
            try:
                self._socket = socket.fromfd(found.fileno(), found.family, found.type)
            except (AttributeError, OSError):  # out of descriptors, or closed: the capped
                return  # timeouts and the checks between chunks still apply
            self._timer = threading.Timer(max(self.left(), 0.0), self._cut)
            self._timer.daemon = True
            self._timer.start()

    def _cut(self) -> None:
        """At the deadline: end the connection, waking whatever read or write is blocked."""
        with self._guard, contextlib.suppress(OSError):
            if self._socket is not None:
                self._socket.shutdown(socket.SHUT_RDWR)


class _Meter:
    """Inflates and counts one answer's body, chunk by chunk, and checks the deadline.

    Each inflate step yields at most :data:`INFLATE_STEP` bytes, whatever the chunk and
    the cap: the rest of the chunk waits in the inflater's ``unconsumed_tail`` for the
    next step, so 64 KiB of gzip that would inflate to 64 MiB never stands in memory
    whole, not even below a 16 MiB cap. The count is checked after every step."""

    def __init__(self, encoding: str, cap: int, attempt: Attempt | None) -> None:
        wbits = _WBITS[encoding]
        self._inflater = zlib.decompressobj(wbits) if wbits else None
        self._room, self._cap, self._attempt = cap, cap, attempt

    def feed(self, raw: bytes) -> Iterator[bytes]:
        """The body bytes ``raw`` stands for, in pieces of at most :data:`INFLATE_STEP`
        (a raw chunk of an uncompressed answer is passed on whole: it is in memory
        already); :class:`Oversized` as soon as the count passes the cap."""
        if self._attempt is not None:
            self._attempt.check()
        if self._inflater is None:
            yield self._count(raw)
            return
        pending = raw
        while pending:
            try:  # never more than a step, nor more than one byte past the cap
                data = self._inflater.decompress(pending, min(INFLATE_STEP, self._room + 1))
            except zlib.error as exc:
                raise Corrupt(f"is not valid compressed data ({exc})") from None
            pending = self._inflater.unconsumed_tail
            if data:
                yield self._count(data)
            elif pending:  # no output from input that is still there: cannot happen
                raise Corrupt("is not valid compressed data (no progress)")

    def _count(self, data: bytes) -> bytes:
        self._room -= len(data)
        if self._room < 0:
            raise Oversized(self._cap)
        return data


class _Guarded(httpx.SyncByteStream, httpx.AsyncByteStream):
    """An answer's raw stream, read through a :class:`_Meter`."""

    def __init__(self, raw: Any, meter: _Meter) -> None:
        self._raw, self._meter = raw, meter

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._raw:
            yield from (data for data in self._meter.feed(chunk) if data)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._raw:
            for data in self._meter.feed(chunk):
                if data:
                    yield data

    def close(self) -> None:
        self._raw.close()

    async def aclose(self) -> None:
        await self._raw.aclose()


def guard(response: httpx.Response, cap: int) -> None:
    """Make ``response`` decompress and count itself, and keep to its request's deadline.

    Run as an httpx response hook, before anything reads the body.
    """
    attempt = response.request.extensions.get(ATTEMPT)
    if isinstance(attempt, Attempt):
        attempt.watch(response.extensions.get("network_stream"))
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in _WBITS:
        raise Unaccepted(f"came in an encoding cidx-auth did not ask for ({encoding[:40]!r})")
    if encoding:
        del response.headers["Content-Encoding"]  # inflated below: httpx must not again
    meter = _Meter(encoding, cap, attempt if isinstance(attempt, Attempt) else None)
    response.stream = _Guarded(response.stream, meter)


def hooks(cap: int, *, asynchronous: bool = False) -> dict[str, list[Any]]:
    """The ``event_hooks`` that run :func:`guard` on every answer a client receives."""
    if not asynchronous:
        return {"response": [lambda response: guard(response, cap)]}

    async def aguard(response: httpx.Response) -> None:
        guard(response, cap)

    return {"response": [aguard]}
