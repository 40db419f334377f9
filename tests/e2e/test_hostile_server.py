"""The CLI against a hostile server on loopback: bounded memory, clean errors, no echoes.

Memory is bounded by running the CLI under ``RLIMIT_AS`` (512 MiB): inflating the
1 GiB bomb whole, or reading the 100 MiB body whole and then parsing it, could not
happen under it. What is asserted is the clean error and its exit code, never a duration.
"""

from __future__ import annotations

import gzip
import json
import resource
import subprocess
import sys
from collections.abc import Iterator

import pytest

from adapters.cidx_calls import ApiError
from cidx_auth.domain.errors import ProtocolError
from refserver.config import ServerConfig
from refserver.harness import RunningServer
from tests.e2e.conftest import PASSWORD, USER, Cli
from tests.integration.hostile_server import (
    HostileServer,
    endless,
    grant,
    gzip_bomb,
    respond,
)

MEMORY = 512 * 2**20
NESTED = "[" * 60_000  # under the 64 KiB cap of an auth answer, far past any parser stack
LOCKED = '{"detail": "account_locked: Too many failed attempts."}'


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def run_limited(cli: Cli, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``cidx-auth ARGS`` in a child that may not map more than 512 MiB."""
    return subprocess.run(
        [sys.executable, "-m", "cidx_auth", "--project", str(cli.project), *args],
        input=stdin, capture_output=True, text=True, env=cli.env, timeout=120, check=False,
        preexec_fn=_limit_memory,
    )


def login(cli: Cli, server: HostileServer) -> subprocess.CompletedProcess[str]:
    return run_limited(cli, "login", "--server", server.url, "--username", USER,
                       "--password-stdin", stdin=PASSWORD + "\n")


def clean_failure(done: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    """Exit ``code``, one error line holding ``words``, no traceback, no password."""
    assert done.returncode == code, done.stderr
    assert words in done.stderr
    assert "Traceback" not in done.stderr and PASSWORD not in done.stdout + done.stderr


def serve(hostile: dict[str, HostileServer], **routes: object) -> HostileServer:
    """A hostile server with ``routes`` (``api_x`` is ``/api/x``) and a working login."""
    paths = {"/" + name.replace("_", "/"): answer for name, answer in routes.items()}
    hostile["server"] = HostileServer({"/auth/login": grant, **paths})  # type: ignore[dict-item]
    return hostile["server"]


@pytest.mark.parametrize("encoding", ["gzip", "gzip, gzip"])
def test_a_gzip_bomb_answering_login_is_refused_in_bounded_memory(
    cli: Cli, hostile: dict[str, HostileServer], encoding: str
) -> None:
    bomb = gzip_bomb()
    if encoding == "gzip, gzip":  # a few kilobytes that would inflate to gigabytes
        bomb = gzip.compress(bomb)
    server = serve(hostile, auth_login=respond(200, bomb, Content_Encoding=encoding))
    done = login(cli, server)
    words = "larger than 64 KiB" if encoding == "gzip" else "an encoding cidx-auth did not ask"
    clean_failure(done, 4, words)
    assert not cli.token_file.exists()


def test_an_endless_api_answer_is_cut_at_16_mib_and_not_asked_again(
    cli: Cli, hostile: dict[str, HostileServer]
) -> None:
    server = serve(hostile, api_big=endless(100 * 2**20))
    assert login(cli, server).returncode == 0
    done = run_limited(cli, "request", "GET", "/api/big")
    clean_failure(done, 4, f"the answer from {server.url} is larger than 16 MiB")
    assert server.paths().count("/api/big") == 1  # a cap hit is not retried


def test_a_gzip_bomb_answering_an_api_call_in_one_piece_is_refused_in_bounded_memory(
    cli: Cli, hostile: dict[str, HostileServer]
) -> None:
    """100 MiB of zeros in about 100 KB, written at once: inflated a step at a time."""
    bomb = respond(200, gzip_bomb(100 * 2**20), Content_Encoding="gzip")
    server = serve(hostile, api_bomb=bomb)
    assert login(cli, server).returncode == 0
    done = run_limited(cli, "request", "GET", "/api/bomb")
    clean_failure(done, 4, f"the answer from {server.url} is larger than 16 MiB")
    assert len(done.stderr.splitlines()) == 1
    assert server.paths().count("/api/bomb") == 1


def test_a_refused_token_with_an_endless_body_is_cut_too(
    cli: Cli, hostile: dict[str, HostileServer]
) -> None:
    """httpx reads a 401's body before the retry with a renewed token: guarded as well."""
    server = serve(hostile, api_repos=endless(100 * 2**20, status=401), api_auth_refresh=grant)
    assert login(cli, server).returncode == 0
    done = run_limited(cli, "request", "GET", "/api/repos")
    clean_failure(done, 4, "larger than 16 MiB")
    assert server.paths().count("/api/auth/refresh") == 1


@pytest.mark.parametrize("retry_after", ["1e300", "99999999999999999999"])
def test_an_absurd_retry_after_on_a_locked_account_is_a_clean_refusal(
    cli: Cli, hostile: dict[str, HostileServer], retry_after: str
) -> None:
    server = serve(hostile, auth_login=respond(429, LOCKED, Retry_After=retry_after))
    done = login(cli, server)
    clean_failure(done, 3, "the server locked this account after too many failed logins until")


def test_an_absurd_lockout_in_the_detail_is_a_clean_refusal(
    cli: Cli, hostile: dict[str, HostileServer]
) -> None:
    detail = '{"detail": "account_locked: try again in ' + "9" * 400 + ' seconds"}'
    done = login(cli, serve(hostile, auth_login=respond(429, detail)))
    clean_failure(done, 3, "locked this account")


@pytest.mark.parametrize("status", [429, 503])
def test_an_absurd_retry_after_on_an_api_call_is_a_clean_error(
    cli: Cli, hostile: dict[str, HostileServer], status: int
) -> None:
    server = serve(hostile, api_repos=respond(status, '{"detail": "busy"}', Retry_After="1e300"))
    assert login(cli, server).returncode == 0
    done = run_limited(cli, "request", "GET", "/api/repos")
    clean_failure(done, 4, f"answered {status} to GET /api/repos (busy)")
    assert server.paths().count("/api/repos") == 1  # a day is not waited out


def test_deeply_nested_json_answering_login_is_a_clean_error(
    cli: Cli, hostile: dict[str, HostileServer]
) -> None:
    done = login(cli, serve(hostile, auth_login=respond(200, NESTED)))
    clean_failure(done, ProtocolError.exit_code, "answered the login without an access token")


@pytest.mark.parametrize(("status", "words", "code"), [
    (200, "with something that is not JSON", ProtocolError.exit_code),
    (400, "answered 400 to GET /api/deep: Whatever", ApiError.exit_code),
])
def test_deeply_nested_json_answering_an_api_call_is_a_clean_error(
    cli: Cli, hostile: dict[str, HostileServer], status: int, words: str, code: int
) -> None:
    server = serve(hostile, api_deep=respond(status, '{"detail": ' + NESTED))
    assert login(cli, server).returncode == 0
    clean_failure(run_limited(cli, "request", "GET", "/api/deep"), code, words)


ECHOES = [
    '{"detail": "cannot parse {\\"username\\": \\"alice\\", \\"password\\": \\"%s\\"}"}',
    '{"detail": [{"loc": ["body", "%s"], "msg": "bad field", "input": "x"}]}',
]


@pytest.mark.parametrize("echo", ECHOES)
@pytest.mark.parametrize(("status", "code", "shown"), [
    (400, ProtocolError.exit_code, "answered 400 to the login (HTTP 400 Bad Request)"),
    (500, 4, "answered 500 to the login (HTTP 500 Internal Server Error)"),
])
def test_a_login_refusal_that_echoes_the_password_does_not_print_it(
    cli: Cli, hostile: dict[str, HostileServer], status: int, code: int, shown: str,
    echo: str,
) -> None:
    server = serve(hostile, auth_login=respond(status, echo % PASSWORD))
    done = login(cli, server)
    clean_failure(done, code, shown)
    verbose = run_limited(cli, "-vv", "login", "--server", server.url, "--username", USER,
                          "--password-stdin", stdin=PASSWORD + "\n")
    assert verbose.returncode == code and PASSWORD not in verbose.stderr


def test_a_long_login_refusal_is_quoted_on_one_short_line(
    cli: Cli, hostile: dict[str, HostileServer]
) -> None:
    detail = "no\x1b]8;;https://evil\x07 such\nuser " + "x" * 500
    server = serve(hostile, auth_login=respond(403, json.dumps({"detail": detail})))
    done = login(cli, server)
    clean_failure(done, 3, "the server refused this account (no ]8;;https://evil  such user xx")
    assert "x" * 81 not in done.stderr and "\x1b" not in done.stderr


# -vvv over HTTP/2: the HTTP stack's loggers see the headers, so they never log them.


@pytest.fixture(scope="module")
def h2_server() -> Iterator[RunningServer]:
    with RunningServer(ServerConfig(users={USER: PASSWORD}), tls=True) as running:
        yield running


def test_the_most_verbose_run_over_http2_logs_no_secret(cli: Cli, h2_server: RunningServer) -> None:
    assert h2_server.ca_file is not None
    logged = cli.run("-vvv", "login", "--server", h2_server.url, "--username", USER,
                     "--password-stdin", "--ca-bundle", str(h2_server.ca_file),
                     stdin=PASSWORD + "\n")
    assert logged.returncode == 0, logged.stderr
    first = cli.run("token").stdout.strip()
    renewed = cli.run("-vvv", "token", "--refresh")  # a refresh: the refresh token is sent
    called = cli.run("-vvv", "request", "GET", "/api/repos")  # the bearer token is sent
    assert renewed.returncode == 0 and called.returncode == 0, renewed.stderr + called.stderr
    token = renewed.stdout.strip()
    assert token and token != first
    stderr = logged.stderr + renewed.stderr + called.stderr
    assert '"HTTP/2 200 OK"' in called.stderr  # httpx's INFO line: it was HTTP/2
    assert "DEBUG" in stderr  # -vvv is on: cidx-auth's own debug lines are there
    for secret in (PASSWORD, first, token, first.split(".")[2], token.split(".")[2]):
        assert secret not in stderr
    # What hpack, h2 and httpcore print at DEBUG (the encoded header block among it).
    third_party = ("Encoded header block", "Adding b'", "Decoded (", "Send frame",
                   "send_request_headers", "receive_response_headers", "connect_tcp")
    assert not [line for line in stderr.splitlines() if any(m in line for m in third_party)]
