"""What a refused login or refresh tells the user, word for word.

Each refusal says what happened and what to do; the wait is the server's; the server's
own words are quoted unless they hold what was sent. Built through :func:`refusal`, the
gateway's one mapping from a non-200 answer to an error.
"""

from __future__ import annotations

import time

import httpx
import pytest

from adapters.http_settings import HttpSettings
from adapters.httpx_gateway import LOGIN, REFRESH, refusal
from cidx_auth.domain.errors import (
    AccountLocked,
    AuthenticationError,
    ConfigurationError,
    PasswordExpired,
    ProtocolError,
    RateLimited,
    RefreshRejected,
    ServerUnavailable,
)

URL = "https://cidx.test"
SETTINGS = HttpSettings(URL, login_path="/auth/login", refresh_path="/api/auth/refresh")
NOON = time.mktime((2027, 1, 15, 12, 0, 0, 0, 0, -1))  # local noon: a wait stays that day


def answer(status: int, detail: str | None = None, **headers: str) -> httpx.Response:
    body = {} if detail is None else {"detail": detail}
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize("status", [500, 502, 599])
def test_a_server_error_is_unavailable_and_says_try_again_later(status: int) -> None:
    error = refusal(answer(status, "database down"), LOGIN, SETTINGS, NOON)
    assert isinstance(error, ServerUnavailable)
    assert str(error) == f"{URL} answered {status} to the login (database down); try again later"


def test_a_server_error_echoing_the_password_quotes_only_the_status() -> None:
    said = "cannot parse {'password': 'hunter2-secret'}"
    error = refusal(answer(500, said), LOGIN, SETTINGS, NOON, secrets=("hunter2-secret",))
    assert str(error) == (f"{URL} answered 500 to the login (HTTP 500 Internal Server Error); "
                          "try again later")


def test_a_status_without_a_reason_phrase_is_quoted_without_a_trailing_space() -> None:
    error = refusal(answer(599, "echo: tok"), REFRESH, SETTINGS, NOON, secrets=("tok",))
    assert str(error) == f"{URL} answered 599 to the refresh (HTTP 599); try again later"


def test_a_one_character_secret_does_not_hide_the_servers_reason() -> None:
    error = refusal(answer(403, "account disabled"), LOGIN, SETTINGS, NOON, secrets=("x",))
    assert str(error) == ("the server refused this account (account disabled); "
                          "ask its administrator, then run `cidx-auth login`")


@pytest.mark.parametrize(("retry_after", "wait", "seconds"),
                         [("30", "in 30 s", 30.0), (None, "later", None)])
def test_rate_limiting_says_when_to_try_again(
    retry_after: str | None, wait: str, seconds: float | None
) -> None:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    error = refusal(answer(429, "too many requests", **headers), REFRESH, SETTINGS, NOON)
    assert isinstance(error, RateLimited)
    assert str(error) == (f"{URL} is limiting refresh attempts (too many requests); "
                          f"try again {wait}")
    assert error.retry_after == seconds


def test_a_lockout_with_retry_after_says_until_when() -> None:
    error = refusal(answer(429, "account_locked", **{"Retry-After": "120"}), LOGIN, SETTINGS,
                    NOON)
    assert isinstance(error, AccountLocked)
    assert str(error) == ("the server locked this account after too many failed logins until "
                          "12:02:00 (it says: try again in 120 seconds)")
    assert error.retry_at == NOON + 120


def test_a_lockout_with_the_wait_in_its_detail_says_until_when() -> None:
    error = refusal(answer(429, "account_locked: try again in 900 seconds"), LOGIN, SETTINGS,
                    NOON)
    assert str(error) == ("the server locked this account after too many failed logins until "
                          "12:15:00 (it says: try again in 900 seconds)")


def test_a_lockout_without_a_wait_gives_the_servers_usual_one() -> None:
    error = refusal(answer(429, "account_locked"), LOGIN, SETTINGS, NOON)
    assert isinstance(error, AccountLocked)
    assert str(error) == ("the server locked this account after too many failed logins, "
                          "without saying for how long (the CIDX server's lockout lasts "
                          "15 minutes): try again after that")


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_refresh_is_rejected_with_the_servers_words(status: int) -> None:
    error = refusal(answer(status, "token revoked"), REFRESH, SETTINGS, NOON)
    assert isinstance(error, RefreshRejected)
    assert str(error) == "the server refused the refresh token (token revoked)"


def test_an_expired_password_says_where_to_change_it() -> None:
    error = refusal(answer(403, "password_expired"), LOGIN, SETTINGS, NOON)
    assert isinstance(error, PasswordExpired)
    assert str(error) == ("the server says this account's password has expired: change it on "
                          "the server, then run `cidx-auth login`")


def test_a_refused_account_says_ask_the_administrator() -> None:
    error = refusal(answer(403, "account disabled"), LOGIN, SETTINGS, NOON)
    assert isinstance(error, AuthenticationError)
    assert str(error) == ("the server refused this account (account disabled); "
                          "ask its administrator, then run `cidx-auth login`")


def test_a_rejected_login_request_says_check_what_was_given() -> None:
    error = refusal(answer(422, "username too long"), LOGIN, SETTINGS, NOON)
    assert isinstance(error, ConfigurationError)
    assert str(error) == ("the server rejected the login request (username too long); "
                          "check the username and password given to `cidx-auth login`")


@pytest.mark.parametrize(("call", "path"), [(LOGIN, "/auth/login"),
                                            (REFRESH, "/api/auth/refresh")])
@pytest.mark.parametrize("status", [404, 405])
def test_a_missing_endpoint_names_the_path_that_was_asked(call: str, path: str,
                                                          status: int) -> None:
    error = refusal(answer(status), call, SETTINGS, NOON)
    assert isinstance(error, ConfigurationError)
    assert str(error) == (f"{URL}{path} answered {status}: check the server URL "
                          f"and the {call} path setting")


def test_an_unexpected_status_is_a_protocol_error() -> None:
    error = refusal(answer(418, "teapot"), REFRESH, SETTINGS, NOON)
    assert isinstance(error, ProtocolError)
    assert str(error) == f"{URL} answered 418 to the refresh (teapot)"
