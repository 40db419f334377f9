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
