"""Caps, clamps and quotes for what a server sends: pure checks, no sockets."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator

import httpx
import pytest

from adapters.http_limits import Oversized, Unaccepted
from adapters.http_settings import HttpSettings, json_body, make_client
from adapters.httpx_gateway import AUTH_DETAIL, shown_detail
from cidx_auth.app.cli import HEADER_LOGGERS, _configure_logging
from cidx_auth.domain.retry import MAX_SERVER_WAIT, parse_retry_after

CAP = 1000
PASSWORD = 'pa"ss\\word'


class Raw(httpx.SyncByteStream):
    """A body httpx has not read yet, in small pieces, as from a socket."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), 7):
            yield self.data[start:start + 7]


def fetch(body: bytes, **headers: str) -> bytes:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Raw(body), headers=headers)

    with make_client(HttpSettings("https://cidx.test"), transport=httpx.MockTransport(answer),
                     cap=CAP) as http:
        return http.get("/").content


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_the_cap_admits_its_size_and_refuses_one_byte_more(encoding: str | None) -> None:
    def packed(data: bytes) -> bytes:
        return gzip.compress(data) if encoding else data

    headers = {"Content-Encoding": encoding} if encoding else {}
    assert fetch(packed(b"x" * CAP), **headers) == b"x" * CAP
    with pytest.raises(Oversized, match="larger than 1000 bytes once decompressed"):
        fetch(packed(b"x" * (CAP + 1)), **headers)


def test_an_encoding_not_asked_for_is_refused_before_reading() -> None:
    with pytest.raises(Unaccepted, match="'br'"):
        fetch(b"\x0b", **{"Content-Encoding": "br"})


def test_only_gzip_and_deflate_are_asked_for() -> None:
    with make_client(HttpSettings("https://cidx.test")) as http:
        assert http.headers["Accept-Encoding"] == "gzip, deflate"


def test_json_nested_past_the_parsers_stack_is_not_json() -> None:
    assert json_body(httpx.Response(200, text="[" * 100_000)) is None


@pytest.mark.parametrize(("value", "expected"), [
    ("1e300", MAX_SERVER_WAIT), ("86401", MAX_SERVER_WAIT), ("-1e300", 0.0), ("30", 30.0),
])
def test_retry_after_is_clamped_to_a_day(value: str, expected: float) -> None:
    assert parse_retry_after(value, 0.0) == expected


@pytest.mark.parametrize("said", [
    f"cannot parse {{'password': '{PASSWORD}'}}",
    'cannot parse {"password": "pa\\"ss\\\\word"}',  # as JSON escapes it
])
def test_a_refusal_that_echoes_the_secret_is_quoted_by_status_only(said: str) -> None:
    assert shown_detail(said, 400, [PASSWORD]) == "HTTP 400 Bad Request"


def test_a_refusal_is_quoted_on_one_short_line() -> None:
    shown = shown_detail("bad\x1b[31m\nthing " + "x" * 500, 403, [PASSWORD])
    assert shown.startswith("bad [31m thing x") and len(shown) == AUTH_DETAIL


@pytest.fixture
def logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level,
             {name: logging.getLogger(name).level for name in (*HEADER_LOGGERS, "filelock")})
    yield
    root.handlers[:], _, levels = saved
    root.setLevel(saved[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("logging_restored")
@pytest.mark.parametrize("verbose", [0, 1, 2, 3, 5])
def test_no_verbosity_lets_the_http_stack_log_headers(verbose: int) -> None:
    _configure_logging(verbose, quiet=False)
    for name in HEADER_LOGGERS:
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG)
    assert logging.getLogger("cidx_auth").isEnabledFor(logging.DEBUG) is (verbose >= 2)
