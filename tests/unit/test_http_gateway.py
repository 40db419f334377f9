"""The httpx auth gateway: every answer the server can give, mapped to a Grant or an error."""

from __future__ import annotations

import email.utils
import gzip
import json
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from adapters.http_settings import HttpSettings
from adapters.httpx_gateway import MAX_AUTH_ANSWER, HttpxGateway, server_date
from adapters.memory import FakeClock, make_jwt
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import (
    AccountLocked,
    AuthenticationError,
    CidxAuthError,
    ConfigurationError,
    InvalidCredentials,
    MfaRequired,
    PasswordExpired,
    ProtocolError,
    RateLimited,
    RefreshRejected,
    ServerUnavailable,
)
from cidx_auth.domain.token import Grant
from cidx_auth.ports import AuthGateway

URL = "https://cidx.test"
ALICE = Credentials("alice", "s3cret-password")
REFRESH = "r" * 86
TOKEN = make_jwt({"username": "alice", "iat": 1, "exp": 601})
DATE = "Fri, 15 Jan 2027 08:00:00 GMT"

Handler = Callable[[httpx.Request], httpx.Response]


class Server:
    """A MockTransport that records requests and answers from a script."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def body(self, index: int = 0) -> Any:
        return json.loads(self.requests[index].content)


def gateway(server: Server, clock: FakeClock | None = None) -> HttpxGateway:
    transport = httpx.MockTransport(server)
    return HttpxGateway(HttpSettings(URL), now=(clock or FakeClock()).now, transport=transport)


def answer(status: int, body: Any = None, **headers: str) -> httpx.Response:
    headers = {key.replace("_", "-"): value for key, value in headers.items()}
    if body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def login(server: Server, clock: FakeClock | None = None) -> Grant:
    return gateway(server, clock).login(ALICE)


def test_implements_the_port() -> None:
    gw = gateway(Server(answer(200, {})))
    assert isinstance(gw, AuthGateway)


def test_login_posts_credentials_and_reads_the_grant() -> None:
    body = {"access_token": TOKEN, "token_type": "bearer", "refresh_token": REFRESH,
            "refresh_token_expires_in": 604800, "user": {"username": "alice"}}
    server = Server(answer(200, body, Date=DATE))
    grant = login(server)
    request = server.requests[0]
    assert (request.method, request.url.path) == ("POST", "/auth/login")
    assert server.body() == {"username": "alice", "password": "s3cret-password"}
    assert grant == Grant(TOKEN, REFRESH, None, email.utils.parsedate_to_datetime(DATE)
                          .timestamp())
    assert "authorization" not in request.headers


def test_refresh_posts_the_token_and_reads_the_lifetime() -> None:
    body = {"access_token": TOKEN, "refresh_token": "new", "access_token_expires_in": 600}
    server = Server(answer(200, body))
    grant = gateway(server).refresh(REFRESH)
    assert server.requests[0].url.path == "/api/auth/refresh"
    assert server.body() == {"refresh_token": REFRESH}
    assert (grant.refresh_token, grant.expires_in, grant.server_date) == ("new", 600.0, None)


def test_paths_come_from_settings() -> None:
    server = Server(answer(200, {"access_token": TOKEN}))
    settings = HttpSettings(URL + "/", login_path="/api/auth/login")
    HttpxGateway(settings, transport=httpx.MockTransport(server)).login(ALICE)
    assert str(server.requests[0].url) == URL + "/api/auth/login"


@pytest.mark.parametrize("body", [{"access_token": TOKEN, "expires_in": 90},
                                  {"access_token": TOKEN, "expires_in": True},
                                  {"access_token": TOKEN, "refresh_token": None}])
def test_optional_fields_are_read_defensively(body: dict[str, Any]) -> None:
    grant = login(Server(answer(200, body)))
    assert grant.expires_in == (90.0 if body.get("expires_in") == 90 else None)
    assert grant.refresh_token is None


def test_mfa_answer_is_reported_clearly() -> None:
    with pytest.raises(MfaRequired, match="second factor"):
        login(Server(answer(200, {"mfa_required": True, "mfa_token": "m" * 40})))


@pytest.mark.parametrize("response", [
    answer(200, {"token_type": "bearer"}),
    answer(200, {"access_token": ""}),
    answer(200, ["not", "an", "object"]),
    httpx.Response(200, text="<html>login page</html>"),
    answer(302, Location="/login"),
])
def test_answers_without_a_token_are_protocol_errors(response: httpx.Response) -> None:
    with pytest.raises(ProtocolError, match=URL):
        login(Server(response))


def test_login_401_is_invalid_credentials_with_the_exact_message() -> None:
    server = Server(answer(401, {"detail": "Invalid credentials"}, WWW_Authenticate="Bearer"))
    with pytest.raises(InvalidCredentials) as caught:
        login(server)
    assert str(caught.value) == ("the server refused the username or password: check them, "
                                 "then run `cidx-auth login` again")
    assert len(server.requests) == 1  # one attempt; the gateway never retries


@pytest.mark.parametrize("detail", ["Invalid refresh token", "Token replay attack detected",
                                    "Refresh token revoked due to replay_attack"])
def test_refresh_401_is_refresh_rejected_with_the_detail(detail: str) -> None:
    with pytest.raises(RefreshRejected, match=detail):
        gateway(Server(answer(401, {"detail": detail}))).refresh(REFRESH)


def test_expired_password() -> None:
    server = Server(answer(403, {"detail": "password_expired: change it"}))
    with pytest.raises(PasswordExpired, match="cidx-auth login"):
        login(server)


def test_other_403_is_an_authentication_error() -> None:
    with pytest.raises(AuthenticationError, match="Account disabled"):
        login(Server(answer(403, {"detail": "Account disabled"})))


def test_login_422_is_a_configuration_error_without_the_echoed_input() -> None:
    detail = [{"loc": ["body", "password"], "msg": "String should have at least 1 character",
               "type": "string_too_short", "input": "s3cret-password"}]
    server = Server(answer(422, {"error": "validation_error", "detail": detail}))
    with pytest.raises(ConfigurationError, match="at least 1 character") as caught:
        login(server)
    assert "s3cret" not in str(caught.value)


def test_refresh_422_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="422"):
        gateway(Server(answer(422, {"detail": [{"msg": "empty"}]}))).refresh(REFRESH)


def test_lockout_gives_the_time_it_ends() -> None:
    clock = FakeClock()
    detail = "account_locked: Too many failed attempts. Try again in 899 seconds."
    with pytest.raises(AccountLocked) as caught:
        login(Server(answer(429, {"detail": detail}, Retry_After="899")), clock)
    until = time.strftime("%H:%M:%S", time.localtime(clock.now() + 899))
    assert caught.value.retry_at == clock.now() + 899
    assert until in str(caught.value) and "try again in 899 seconds" in str(caught.value)
    assert "password" not in str(caught.value)  # the lockout comes before any password check


def test_lockout_without_retry_after_reads_the_detail() -> None:
    clock = FakeClock()
    detail = "account_locked: Too many failed attempts. Try again in 120 seconds."
    with pytest.raises(AccountLocked) as caught:
        login(Server(answer(429, {"detail": detail})), clock)
    assert caught.value.retry_at == clock.now() + 120
    assert "try again in 120 seconds" in str(caught.value)


def test_a_lockout_ending_another_day_carries_its_date() -> None:
    clock = FakeClock()
    detail = "account_locked: Too many failed attempts. Try again in 99999999 seconds."
    with pytest.raises(AccountLocked) as caught:
        login(Server(answer(429, {"detail": detail}, Retry_After="99999999")), clock)
    day = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(clock.now() + 86400))
    assert f"until {day} (it says: try again in 86400 seconds)" in str(caught.value)


def test_lockout_without_any_wait_names_the_usual_one_and_not_the_password() -> None:
    detail = "account_locked: Too many failed attempts."
    with pytest.raises(AccountLocked) as caught:
        login(Server(answer(429, {"detail": detail})))
    assert caught.value.retry_at is None and "15 minutes" in str(caught.value)
    assert "password" not in str(caught.value)


def test_bucket_429_with_seconds() -> None:
    server = Server(answer(429, {"detail": "Too many login attempts. Please try again later."},
                           Retry_After="6"))
    with pytest.raises(RateLimited) as caught:
        login(server)
    assert caught.value.retry_after == 6.0 and not isinstance(caught.value, AccountLocked)


def test_bucket_429_with_an_http_date() -> None:
    clock = FakeClock()
    later = email.utils.formatdate(clock.now() + 42, usegmt=True)
    with pytest.raises(RateLimited) as caught:
        login(Server(answer(429, {"detail": "slow down"}, Retry_After=later)), clock)
    assert caught.value.retry_after == pytest.approx(42)


def test_refresh_429_without_retry_after() -> None:
    detail = "Too many failed attempts. Try again in 5 minutes."
    with pytest.raises(RateLimited) as caught:
        gateway(Server(answer(429, {"detail": detail}))).refresh(REFRESH)
    assert caught.value.retry_after is None


@pytest.mark.parametrize(("headers", "expected"), [({}, None), ({"Retry-After": "30"}, 30.0)])
def test_5xx_is_server_unavailable(headers: dict[str, str], expected: float | None) -> None:
    server = Server(httpx.Response(503, json={"detail": "maintenance"}, headers=headers))
    with pytest.raises(ServerUnavailable, match="503") as caught:
        login(server)
    assert caught.value.retry_after == expected


@pytest.mark.parametrize("status", [404, 405])
def test_wrong_path_is_a_configuration_error(status: int) -> None:
    with pytest.raises(ConfigurationError, match="/auth/login"):
        login(Server(answer(status, {"detail": "Not Found"})))


def test_unexpected_status_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="418"):
        login(Server(answer(418, {"detail": "teapot"})))


@pytest.mark.parametrize(("error", "words"), [
    (httpx.ReadTimeout("timed out"), "timed out while waiting for an answer"),
    (httpx.ConnectTimeout("timed out"), "timed out while connecting"),
    (httpx.PoolTimeout("timed out"), "waiting for a free connection"),
    (httpx.ConnectError("[Errno 111] Connection refused"), "could not connect"),
    (httpx.RemoteProtocolError("Server disconnected"), "RemoteProtocolError"),
    (httpx.ReadError("reset by peer"), "ReadError"),
])
def test_transport_failures_are_server_unavailable(error: Exception, words: str) -> None:
    with pytest.raises(ServerUnavailable, match=words) as caught:
        login(Server(error))
    assert URL in str(caught.value)
    assert not isinstance(caught.value.__cause__, httpx.HTTPError)


def test_untrusted_certificate_says_to_pass_a_ca_bundle() -> None:
    error = httpx.ConnectError("handshake failed")
    error.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
    with pytest.raises(ConfigurationError, match="--ca-bundle"):
        login(Server(error))


def test_no_secret_in_any_error_message() -> None:
    answers: list[httpx.Response | Exception] = [
        answer(401, {"detail": "Invalid credentials"}), answer(500, {"detail": "boom"}),
        answer(429, {"detail": "x"}), httpx.ReadTimeout("t"), answer(200, {"mfa_required": True}),
    ]
    for reply in answers:
        gw = gateway(Server(reply))
        for call in (gw.login, gw.refresh):
            with pytest.raises(CidxAuthError) as caught:
                call(ALICE if call == gw.login else REFRESH)  # type: ignore[arg-type]
            assert ALICE.password not in str(caught.value) and REFRESH not in str(caught.value)


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", None), ("yesterday", None), ("Fri, 15 Jan 2027 08:00:00 -0000", None),
    (DATE, email.utils.parsedate_to_datetime(DATE).timestamp()),
])
def test_server_date(value: str | None, expected: float | None) -> None:
    assert server_date(value) == expected


# The deadline D and the 64 KiB cap on auth answers.


class Chunks(httpx.SyncByteStream):
    """A response body in pieces, with something to do before each; records closing."""

    def __init__(self, *chunks: bytes, before: Callable[[], None] = lambda: None) -> None:
        self.chunks, self.before, self.closed = chunks, before, False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.before()
            yield chunk

    def close(self) -> None:
        self.closed = True


def timed(server: Server | Handler, clock: FakeClock, **settings: Any) -> HttpxGateway:
    """A gateway whose deadline runs on ``clock`` (monotonic time, faked)."""
    return HttpxGateway(HttpSettings(URL, **settings), now=clock.now, monotonic=clock.now,
                        transport=httpx.MockTransport(server))


def test_deadline_setting_defaults_to_d_and_must_be_positive() -> None:
    assert HttpSettings(URL).auth_deadline == 30.0
    with pytest.raises(ConfigurationError, match="positive"):
        HttpSettings(URL, auth_deadline=0)


@pytest.mark.parametrize(("deadline", "expected"), [
    (30.0, {"connect": 10.0, "read": 30.0, "write": 10.0, "pool": 5.0}),
    (2.0, {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}),
])
def test_no_phase_timeout_outlasts_d(deadline: float, expected: dict[str, float]) -> None:
    server = Server(answer(200, {"access_token": TOKEN}))
    timed(server, FakeClock(), auth_deadline=deadline).refresh(REFRESH)
    assert server.requests[0].extensions["timeout"] == expected


@pytest.mark.parametrize("call", ["login", "refresh"])
def test_an_answer_over_64_kib_is_a_protocol_error(call: str) -> None:
    stream = Chunks(b"{" + b" " * MAX_AUTH_ANSWER, b"}")
    gw = gateway(Server(httpx.Response(200, stream=stream)))
    with pytest.raises(ProtocolError) as caught:
        gw.login(ALICE) if call == "login" else gw.refresh(REFRESH)
    assert str(caught.value) == (
        f"the answer from {URL} to the {call} is larger than 64 KiB; check the server URL")
    assert stream.closed


def test_an_answer_of_65_kib_is_refused_whole() -> None:
    body = json.dumps({"access_token": TOKEN, "pad": "x" * 65 * 1024}).encode()
    with pytest.raises(ProtocolError, match="larger than 64 KiB"):
        login(Server(httpx.Response(200, content=body)))


def test_the_cap_counts_bytes_after_decompression() -> None:
    bomb = gzip.compress(json.dumps({"access_token": TOKEN, "pad": " " * 70_000}).encode())
    assert len(bomb) < 2048  # small on the wire, 70 KB once inflated
    with pytest.raises(ProtocolError, match="larger than 64 KiB"):
        login(Server(httpx.Response(200, content=bomb, headers={"Content-Encoding": "gzip"})))


def test_a_compressed_answer_under_the_cap_is_read() -> None:
    body = gzip.compress(json.dumps({"access_token": TOKEN, "pad": " " * 60_000}).encode())
    refused = gzip.compress(json.dumps({"detail": "Invalid refresh token"}).encode())
    server = Server(httpx.Response(200, content=body, headers={"Content-Encoding": "gzip"}),
                    httpx.Response(401, content=refused, headers={"Content-Encoding": "gzip"}))
    gw = gateway(server)
    assert gw.login(ALICE).access_token == TOKEN
    with pytest.raises(RefreshRejected, match="Invalid refresh token"):
        gw.refresh(REFRESH)


def test_a_body_still_arriving_at_d_is_a_lost_answer() -> None:
    clock = FakeClock()
    stream = Chunks(b'{"access_token": ', b'"x', b'"}', before=lambda: clock.advance(12))
    gw = timed(Server(httpx.Response(200, stream=stream)), clock)
    with pytest.raises(ServerUnavailable) as caught:
        gw.refresh(REFRESH)
    assert str(caught.value) == (
        f"{URL} did not finish the refresh within 30 s; try again later")
    assert caught.value.reached and stream.closed
    assert REFRESH not in str(caught.value)


def test_a_body_finished_within_d_is_read() -> None:
    clock = FakeClock()
    stream = Chunks(b'{"access_token": ', f'"{TOKEN}"}}'.encode(),
                    before=lambda: clock.advance(14))
    assert timed(Server(httpx.Response(200, stream=stream)), clock).login(ALICE).access_token


def late(error: Exception, clock: FakeClock) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        clock.advance(30)
        raise error
    return handler


@pytest.mark.parametrize(("error", "reached"), [
    (httpx.ReadTimeout("timed out"), True),
    (httpx.RemoteProtocolError("Server disconnected"), True),
    (httpx.ConnectTimeout("timed out"), False),
])
def test_a_transport_failure_at_d_names_the_deadline(error: Exception, reached: bool) -> None:
    clock = FakeClock()
    with pytest.raises(ServerUnavailable) as caught:
        timed(late(error, clock), clock, auth_deadline=1.5).login(ALICE)
    assert str(caught.value) == f"{URL} did not finish the login within 1.5 s; try again later"
    assert caught.value.reached is reached
    assert ALICE.password not in str(caught.value)


def test_a_transport_failure_before_d_keeps_its_own_message() -> None:
    clock = FakeClock()
    with pytest.raises(ServerUnavailable, match="timed out while connecting") as caught:
        timed(Server(httpx.ConnectTimeout("timed out")), clock).login(ALICE)
    assert not caught.value.reached


def test_an_untrusted_certificate_at_d_still_says_so() -> None:
    clock = FakeClock()
    error = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    with pytest.raises(ConfigurationError, match="--ca-bundle"):
        timed(late(error, clock), clock).login(ALICE)


def test_nothing_is_sent_once_d_has_passed() -> None:
    """httpcore calls the ``trace`` hook before writing a request; past D it goes no further."""
    clock, written = FakeClock(), []

    def connection(request: httpx.Request) -> httpx.Response:
        trace = request.extensions["trace"]
        trace("connection.connect_tcp.complete", {"return_value": None})
        clock.advance(31)  # a slow TLS handshake
        trace("http11.send_request_headers.started", {"request": request})
        written.append(request)
        return answer(200, {"access_token": TOKEN})

    with pytest.raises(ServerUnavailable, match="within 30 s") as caught:
        timed(connection, clock).refresh(REFRESH)
    assert not caught.value.reached and written == []
