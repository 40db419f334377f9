"""The guard every answer passes: one layer of gzip or deflate, inflated a step at a
time, never past its cap, and within its request's deadline. Driven through ``guard``
on hand-made answers whose bodies arrive in pieces, as from a socket."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import zlib
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from adapters.http_limits import (
    ATTEMPT,
    INFLATE_STEP,
    Attempt,
    Corrupt,
    Overdue,
    Oversized,
    Unaccepted,
    guard,
    hooks,
)

BODY = b'{"access_token": "x"}' * 50


class Raw(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body not read yet, in pieces of ``size`` bytes."""

    def __init__(self, data: bytes, size: int = 7) -> None:
        self.data, self.size = data, size
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.size):
            yield self.data[start:start + self.size]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self:
            yield chunk

    def close(self) -> None:
        self.closed = True


def answer(body: bytes, encoding: str | None = None, attempt: Attempt | None = None,
           size: int = 7) -> httpx.Response:
    extensions = {} if attempt is None else {ATTEMPT: attempt}
    request = httpx.Request("GET", "https://cidx.test/", extensions=extensions)
    headers = {} if encoding is None else {"Content-Encoding": encoding}
    return httpx.Response(200, stream=Raw(body, size), headers=headers, request=request)


def read(response: httpx.Response, cap: int = 1 << 20) -> list[bytes]:
    guard(response, cap)
    return list(response.iter_bytes())


def deflate(data: bytes) -> bytes:
    return zlib.compress(data)


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [(None, bytes), ("identity", bytes), ("gzip", gzip.compress), ("x-gzip", gzip.compress),
     ("deflate", deflate), (" GZip ", gzip.compress), ("DEFLATE", deflate)],
)
def test_one_layer_of_an_encoding_asked_for_is_inflated(encoding: str | None, pack: object) -> None:
    response = answer(pack(BODY), encoding)  # type: ignore[operator]
    assert b"".join(read(response)) == BODY
    assert "content-encoding" not in response.headers  # httpx must not inflate it again


@pytest.mark.parametrize("encoding", ["br", "gzip, gzip", "compress", "zstd"])
def test_an_encoding_not_asked_for_is_refused_in_those_words(encoding: str) -> None:
    with pytest.raises(Unaccepted) as caught:
        guard(answer(b"x", encoding), 1000)
    assert str(caught.value) == f"came in an encoding cidx-auth did not ask for ({encoding!r})"


def test_a_long_encoding_is_quoted_in_its_first_40_characters() -> None:
    with pytest.raises(Unaccepted) as caught:
        guard(answer(b"x", "a" * 100), 1000)
    assert str(caught.value) == f"came in an encoding cidx-auth did not ask for ({'a' * 40!r})"


@pytest.mark.parametrize(("encoding", "damaged"),
                         [("gzip", b"not gzip at all"), ("deflate", b"\x00\x01\x02\x03")])
def test_data_that_does_not_inflate_is_corrupt(encoding: str, damaged: bytes) -> None:
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    with pytest.raises(zlib.error) as zlib_says:
        zlib.decompressobj(wbits).decompress(damaged)
    with pytest.raises(Corrupt) as caught:
        read(answer(damaged, encoding, size=len(damaged)))
    assert str(caught.value) == f"is not valid compressed data ({zlib_says.value})"


def test_a_compressed_answer_is_inflated_a_step_at_a_time() -> None:
    """A megabyte of zeros gzips to about a kilobyte: it never stands in memory whole."""
    bomb = gzip.compress(bytes(1 << 20))
    pieces = read(answer(bomb, "gzip", size=len(bomb)), cap=2 << 20)
    assert sum(map(len, pieces)) == 1 << 20
    assert max(map(len, pieces)) == INFLATE_STEP
    assert len(pieces) == (1 << 20) // INFLATE_STEP


@pytest.mark.parametrize("encoding", [None, "gzip", "deflate"])
def test_the_cap_admits_its_size_and_refuses_one_byte_more(encoding: str | None) -> None:
    pack = {None: bytes, "gzip": gzip.compress, "deflate": deflate}[encoding]
    cap = 3 * INFLATE_STEP + 5  # past several inflate steps
    assert sum(map(len, read(answer(pack(bytes(cap)), encoding, size=999), cap))) == cap
    with pytest.raises(Oversized) as caught:
        read(answer(pack(bytes(cap + 1)), encoding, size=999), cap)
    assert caught.value.cap == cap
    assert str(caught.value) == f"is larger than {cap} bytes once decompressed"


def test_an_answer_still_coming_at_the_deadline_is_overdue() -> None:
    now = [0.0]
    attempt = Attempt(5.0, lambda: now[0])
    response = answer(BODY, None, attempt)
    guard(response, 1 << 20)
    pieces = response.iter_bytes()
    assert next(pieces)  # in time
    now[0] = 5.0
    with pytest.raises(Overdue, match="no complete answer within 5 s"):
        list(pieces)


def test_the_hooks_guard_every_answer_sync_and_async() -> None:
    sync_hook = hooks(100)["response"]
    assert len(sync_hook) == 1
    response = answer(gzip.compress(bytes(101)), "gzip")
    sync_hook[0](response)
    with pytest.raises(Oversized):
        list(response.iter_bytes())

    async_hook = hooks(100, asynchronous=True)["response"]
    assert len(async_hook) == 1

    async def run() -> bytes:
        guarded = answer(gzip.compress(bytes(100)), "gzip")
        await async_hook[0](guarded)
        return b"".join([chunk async for chunk in guarded.aiter_bytes()])

    assert asyncio.run(run()) == bytes(100)


def test_a_reused_connection_is_cut_at_the_deadline() -> None:
    """A pooled connection makes no new socket for the trace hook to see: the guard
    takes it from the answer's ``network_stream``, so the deadline still cuts it."""

    class Stream:
        def __init__(self, sock: socket.socket) -> None:
            self._sock = sock

        def get_extra_info(self, name: str) -> object:
            return self._sock if name == "socket" else None

    ours, server = socket.socketpair()
    with ours, server:
        now = [0.0]
        attempt = Attempt(5.0, lambda: now[0])
        response = answer(BODY, None, attempt)
        response.extensions["network_stream"] = Stream(ours)
        before = set(threading.enumerate())
        now[0] = 6.0  # the deadline passed while the answer was awaited
        with attempt:
            guard(response, 1 << 20)
            watchdogs = [thread for thread in threading.enumerate()
                         if thread not in before and isinstance(thread, threading.Timer)]
            assert len(watchdogs) == 1
            watchdogs[0].join(timeout=10)
        server.settimeout(10)
        assert server.recv(16) == b""  # shut down: the server sees the connection end
