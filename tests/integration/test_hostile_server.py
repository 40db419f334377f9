"""The API clients, sync and async, against a hostile server on loopback.

The deadline is 1 s here (``api_deadline``): a drip of a byte every 0.2 s, well inside
every per-read timeout, ends only because of it. What is asserted is the error, that
it was not retried, and that nothing leaked; the CLI's view is in tests/e2e.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from types import SimpleNamespace
from typing import Any

import pytest

from adapters.http_settings import DeadlinePassed, UnusableAnswer
from tests.integration.hostile_server import (
    HostileServer,
    drip,
    endless,
    grant,
    respond,
)
from tests.integration.http_support import Stack, build

DEADLINE = 1.0
REPOS = {"repositories": [{"alias": "backend"}], "total": 1}


def stack_for(hostile: dict[str, HostileServer], repos: Any) -> tuple[HostileServer, Stack]:
    """A server whose ``/api/repos`` answers with ``repos``, and a client stack on it."""
    server = HostileServer({"/auth/login": grant, "/api/auth/refresh": grant, "/api/repos": repos})
    hostile["server"] = server
    return server, build(SimpleNamespace(url=server.url, ca_file=None),  # type: ignore[arg-type]
                         api_deadline=DEADLINE)


def repos_sync(stack: Stack) -> Any:
    with stack.client() as cidx:
        return cidx.repos()


def repos_async(stack: Stack) -> Any:
    async def run() -> Any:
        async with stack.aclient() as cidx:
            return await cidx.repos()

    return asyncio.run(run())


CLIENTS = pytest.mark.parametrize("repos", [repos_sync, repos_async], ids=["sync", "async"])


@CLIENTS
@pytest.mark.parametrize("status_line", [True, False], ids=["body", "headers"])
def test_a_dripping_answer_ends_at_the_deadline_and_is_not_retried(
    hostile: dict[str, HostileServer], repos: Any, status_line: bool
) -> None:
    server, stack = stack_for(hostile, drip(0.2, status_line=status_line))
    with pytest.raises(DeadlinePassed) as caught:
        repos(stack)
    assert str(caught.value) == (
        f"{server.url} did not finish GET /api/repos within 1 s; try again later")
    assert caught.value.exit_code == 4
    assert server.paths().count("/api/repos") == 1


@CLIENTS
def test_an_endless_answer_is_cut_at_16_mib_and_not_retried(
    hostile: dict[str, HostileServer], repos: Any
) -> None:
    server, stack = stack_for(hostile, endless(100 * 2**20))
    with pytest.raises(UnusableAnswer) as caught:
        repos(stack)
    assert str(caught.value) == (f"the answer from {server.url} is larger than 16 MiB once "
                                 "decompressed; check the server URL")
    assert caught.value.exit_code == 4 and server.paths().count("/api/repos") == 1


PACKED = json.dumps(REPOS).encode()


@CLIENTS
@pytest.mark.parametrize(("encoding", "body"), [
    ("gzip", gzip.compress(PACKED, mtime=0)), ("deflate", zlib.compress(PACKED)),
    ("identity", PACKED),
], ids=["gzip", "deflate", "identity"])  # the same ids in every xdist worker
def test_compressed_answers_within_the_cap_are_read(
    hostile: dict[str, HostileServer], repos: Any, encoding: str, body: bytes
) -> None:
    _, stack = stack_for(hostile, respond(200, body, Content_Encoding=encoding))
    assert repos(stack) == REPOS


@CLIENTS
@pytest.mark.parametrize(("encoding", "body", "words"), [
    ("br", b"\x0b\x02\x80{}\x03", "came in an encoding cidx-auth did not ask for ('br')"),
    ("gzip, gzip", gzip.compress(gzip.compress(PACKED, mtime=0), mtime=0),
     "came in an encoding cidx-auth did not ask for ('gzip, gzip')"),
    ("gzip", gzip.compress(PACKED, mtime=0)[:-12] + b"garbage!", "is not valid compressed data"),
], ids=["br", "gzip-twice", "corrupt-gzip"])
def test_an_answer_cidx_auth_cannot_inflate_safely_is_refused(
    hostile: dict[str, HostileServer], repos: Any, encoding: str, body: bytes, words: str
) -> None:
    server, stack = stack_for(hostile, respond(200, body, Content_Encoding=encoding))
    with pytest.raises(UnusableAnswer) as caught:
        repos(stack)
    assert str(caught.value).startswith(f"the answer from {server.url} {words}")
    assert caught.value.exit_code == 4 and server.paths().count("/api/repos") == 1


class _InflateSpy:
    """Stands in for ``zlib`` in :mod:`adapters.http_limits`: its inflaters report the
    size of what each step was given and of what it produced."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, int]] = []  # (input, output) of each decompress call
        self.error = zlib.error

    def decompressobj(self, wbits: int) -> Any:
        real, steps = zlib.decompressobj(wbits), self.steps

        class Inflater:
            def decompress(self, data: bytes, max_length: int = 0) -> bytes:
                out = real.decompress(data, max_length)
                steps.append((len(data), len(out)))
                return out

            @property
            def unconsumed_tail(self) -> bytes:
                return real.unconsumed_tail

        return Inflater()


@pytest.mark.parametrize(("route", "cap"), [("/api/repos", 16 * 2**20),
                                            ("/auth/login", 64 * 2**10)], ids=["api", "login"])
def test_a_bomb_sent_in_one_piece_inflates_a_bounded_step_at_a_time(
    hostile: dict[str, HostileServer], monkeypatch: pytest.MonkeyPatch, route: str, cap: int,
) -> None:
    """100 MiB of zeros in about 100 KB of gzip, written to the socket at once: each
    inflate step yields at most INFLATE_STEP (64 KiB), though one 64 KiB read of it
    would inflate to about 64 MiB; the answer stops at its cap with the clean error."""
    from adapters import http_limits
    from adapters.http_limits import INFLATE_STEP
    from adapters.httpx_gateway import HttpxGateway
    from cidx_auth.domain.credentials import Credentials
    from tests.integration.hostile_server import gzip_bomb

    bomb = gzip_bomb(100 * 2**20)
    assert len(bomb) < 200_000
    spy = _InflateSpy()
    monkeypatch.setattr(http_limits, "zlib", spy)
    answer = respond(200, bomb, Content_Encoding="gzip")
    server = HostileServer({"/auth/login": grant, "/api/auth/refresh": grant, route: answer})
    hostile["server"] = server
    stack = build(SimpleNamespace(url=server.url, ca_file=None),  # type: ignore[arg-type]
                  api_deadline=30.0)
    ask = (lambda: repos_sync(stack)) if route == "/api/repos" else \
        (lambda: HttpxGateway(stack.settings).login(Credentials("alice", "secret")))
    with pytest.raises(UnusableAnswer) as caught:
        ask()
    size = "16 MiB" if cap > INFLATE_STEP else "64 KiB"
    assert str(caught.value).startswith(f"the answer from {server.url} ")
    assert f" is larger than {size}" in str(caught.value)
    assert caught.value.exit_code == 4 and server.paths().count(route) == 1
    largest = max(out for _, out in spy.steps)
    assert largest <= INFLATE_STEP, largest
    assert sum(out for _, out in spy.steps) <= cap + 1  # never past the cap plus one byte
    # The bound did the work: some single read held more than one step's worth inflated.
    assert max(given for given, _ in spy.steps) * 1000 > INFLATE_STEP
