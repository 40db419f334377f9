"""How a 200 answer to a login or refresh becomes a Grant, or a refusal worded for the
user: the MFA wall, an answer that is not a CIDX server's, and the optional fields."""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import json
import logging
from typing import Any

import httpx
import pytest

from adapters.http_settings import HttpSettings
from adapters.httpx_gateway import LOGIN, MAX_AUTH_ANSWER, REFRESH, HttpxGateway, read_grant
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import (
    AuthenticationError,
    CidxAuthError,
    MfaRequired,
    ProtocolError,
)
from cidx_auth.domain.token import Grant

URL = "https://cidx.test"
SETTINGS = HttpSettings(URL)
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
DATE = "Fri, 15 Jan 2027 08:00:00 GMT"


def grant(body: Any, call: str = LOGIN, **headers: str) -> Grant:
    return read_grant(httpx.Response(200, json=body, headers=headers), call, SETTINGS, 0.0)


def test_an_mfa_answer_says_this_client_cannot_supply_a_second_factor() -> None:
    with pytest.raises(MfaRequired) as caught:
        grant({"mfa_required": True, "mfa_token": "m" * 40, "access_token": TOKEN})
    assert str(caught.value) == (
        "this account needs a second factor (MFA), which cidx-auth cannot supply without a "
        "person at the keyboard; use an account without MFA for this client"
    )


@pytest.mark.parametrize("flag", [False, None, "true", 1])
def test_only_mfa_required_true_is_the_mfa_wall(flag: object) -> None:
    assert grant({"mfa_required": flag, "access_token": TOKEN}).access_token == TOKEN


@pytest.mark.parametrize("body", [{}, {"access_token": ""}, {"access_token": 5},
                                  {"access_token": None}, [TOKEN], TOKEN])
@pytest.mark.parametrize("call", [LOGIN, REFRESH])
def test_an_answer_without_an_access_token_says_check_the_server_url(
    body: Any, call: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        grant(body, call)
    assert str(caught.value) == (
        f"{URL} answered the {call} without an access token; "
        "check that the server URL points at a CIDX server"
    )


@pytest.mark.parametrize(
    ("extra", "refresh", "expires_in"),
    [
        ({"refresh_token": "r1", "access_token_expires_in": 600, "expires_in": 90}, "r1", 600.0),
        ({"expires_in": 90}, None, 90.0),
        ({"expires_in": 1.5}, None, 1.5),
        ({"expires_in": 1}, None, 1.0),
        ({"expires_in": 0.5}, None, 0.5),
        ({"access_token_expires_in": None, "expires_in": 90}, None, None),
        ({"expires_in": 0}, None, None),
        ({"expires_in": -60}, None, None),
        ({"expires_in": True}, None, None),
        ({"expires_in": "600"}, None, None),
        ({"refresh_token": ""}, None, None),
        ({"refresh_token": 7}, None, None),
    ],
)
def test_optional_fields_are_taken_only_when_usable(
    extra: dict[str, Any], refresh: str | None, expires_in: float | None
) -> None:
    found = grant({"access_token": TOKEN} | extra, REFRESH)
    assert found == Grant(TOKEN, refresh, expires_in, None)


def test_the_servers_date_is_kept() -> None:
    found = grant({"access_token": TOKEN}, Date=DATE)
    assert found.server_date == email.utils.parsedate_to_datetime(DATE).timestamp()


def test_a_refused_refresh_never_quotes_the_refresh_token_it_echoes() -> None:
    from cidx_auth.domain.errors import RefreshRejected

    refresh_token = "r" * 40 + "-rotating"

    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"detail": f"unknown token {refresh_token}"})

    gateway = HttpxGateway(SETTINGS, transport=httpx.MockTransport(server))
    with pytest.raises(RefreshRejected) as caught:
        gateway.refresh(refresh_token)
    assert str(caught.value) == "the server refused the refresh token (HTTP 401 Unauthorized)"


@pytest.mark.parametrize(("status", "call"), [(200, LOGIN), (401, REFRESH), (503, LOGIN)])
def test_each_answer_is_one_debug_line_with_the_call_and_status(
    status: int, call: str, caplog: pytest.LogCaptureFixture
) -> None:
    response = httpx.Response(status, json={"access_token": TOKEN, "detail": "no"})
    with caplog.at_level(logging.DEBUG, logger="adapters.httpx_gateway"), \
            contextlib.suppress(CidxAuthError):  # the refusals: only the line matters here
        read_grant(response, call, SETTINGS, 0.0)
    lines = [(record.levelno, record.getMessage()) for record in caplog.records
             if record.name == "adapters.httpx_gateway"]
    assert lines == [(logging.DEBUG, f"{call} answered {status}")]


# --- through the gateway: the answer as read off the wire -----------------------------


def gateway_answering(response: httpx.Response) -> HttpxGateway:
    return HttpxGateway(SETTINGS, transport=httpx.MockTransport(lambda request: response))


def test_a_compressed_grant_is_read() -> None:
    body = json.dumps({"access_token": TOKEN, "refresh_token": "r2"}).encode()
    response = httpx.Response(200, content=gzip.compress(body),
                              headers={"Content-Encoding": "gzip", "Date": DATE})
    found = gateway_answering(response).refresh("r1")
    assert (found.access_token, found.refresh_token) == (TOKEN, "r2")
    assert found.server_date == email.utils.parsedate_to_datetime(DATE).timestamp()


def test_an_answer_of_exactly_64_kib_is_read() -> None:
    body = json.dumps({"access_token": TOKEN}).encode()
    body += b" " * (MAX_AUTH_ANSWER - len(body))
    assert len(body) == 64 * 1024
    assert gateway_answering(httpx.Response(200, content=body)).refresh("r1").access_token == TOKEN


def test_the_servers_own_reason_phrase_is_quoted_when_it_gives_no_detail() -> None:
    response = httpx.Response(403, content=b"", extensions={"reason_phrase": b"Account Suspended"})
    with pytest.raises(AuthenticationError) as caught:
        gateway_answering(response).login(Credentials("alice", "pw"))
    assert str(caught.value) == ("the server refused this account (Account Suspended); "
                                 "ask its administrator, then run `cidx-auth login`")
