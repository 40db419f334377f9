"""The CIDX server's login and refresh over httpx: the ``AuthGateway`` port.

Blocking calls only: the core's renewal runs on a thread of its own for async callers.
The gateway never retries: the core's flow retries transport trouble and must never
retry a refused login (errata #11), so each call here is exactly one request.

Every answer becomes a :class:`Grant` or one of the project's errors; no httpx
exception leaves this module (errata #8), and no message holds a secret.

Each request ends within the deadline D (``HttpSettings.auth_deadline``), connect to
last byte, because the renewal holds its cross-process lock around it. httpx's timeouts
bound each socket operation, not their sum: a server dripping a byte every 20 s would
hold the request, and the lock, for ever. So every phase's timeout is capped by what
remains of D, the body is read chunk by chunk (and at most 64 KiB of it, decompressed),
and a watchdog shuts the connection's socket when D passes, which wakes a read blocked
inside httpcore (headers dripped byte by byte never come back here otherwise). The
socket comes from httpcore's ``trace`` extension when the connection is made, so the
gateway keeps no idle connections: each request makes its own. That costs nothing
real, since auth requests come minutes apart, past the 30 s keep-alive anyway.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx

from adapters.http_settings import (
    HttpSettings,
    detail_of,
    json_body,
    make_client,
    ssl_context,
    transport_error,
)
from adapters.system_clock import SystemClock
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
from cidx_auth.domain.retry import parse_retry_after
from cidx_auth.domain.token import Grant

logger = logging.getLogger(__name__)

LOGIN, REFRESH = "login", "refresh"
_LOCK_SECONDS = re.compile(r"in (\d+) seconds")

MAX_AUTH_ANSWER = 64 * 1024
"""The most an auth answer's body may hold after decompression (decisions.md)."""
_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_NO_IDLE = httpx.Limits(max_keepalive_connections=0)
_SHORTEST = 0.001
"""A phase never gets a timeout of 0: to a socket that means "do not wait", not "stop"."""


class HttpxGateway:
    """Implements :class:`AuthGateway` over HTTP."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        now: Callable[[], float] | None = None,
        transport: httpx.BaseTransport | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._now = now or SystemClock().now  # for Retry-After dates and lock-out times
        self._monotonic = monotonic  # for the deadline D
        context = ssl_context(settings) if transport is None else None
        self._client = make_client(settings, transport=transport, context=context,
                                   limits=_NO_IDLE)

    def login(self, credentials: Credentials) -> Grant:
        """One login attempt; raises the project's errors only."""
        return self._post(LOGIN, self._settings.login_path, _login_body(credentials))

    def refresh(self, refresh_token: str) -> Grant:
        """One refresh; the server rotates ``refresh_token`` whatever happens next."""
        return self._post(REFRESH, self._settings.refresh_path, {"refresh_token": refresh_token})

    def close(self) -> None:
        self._client.close()

    def _post(self, call: str, path: str, body: dict[str, str]) -> Grant:
        """Send one auth request and read its answer, all within D."""
        settings = self._settings
        with _Attempt(settings.auth_deadline, self._monotonic) as attempt:
            try:
                with self._client.stream("POST", path, json=body,
                                         timeout=attempt.timeouts(settings),
                                         extensions={"trace": attempt.trace}) as response:
                    answer = _read_answer(response, call, settings, attempt)
            except _TooLate:
                raise _overdue(call, settings, reached=False) from None
            except httpx.HTTPError as exc:
                error = transport_error(exc, settings)
                if isinstance(error, ServerUnavailable) and attempt.left() <= 0:
                    error = _overdue(call, settings, reached=attempt.sent or error.reached)
                raise error from None
        return read_grant(answer, call, settings, self._now())


class _TooLate(Exception):
    """D passed before the request was sent: raised from the trace hook, never leaves."""


class _Attempt:
    """One auth request's deadline, and the watchdog that enforces it on the socket.

    ``sent`` turns True as httpcore starts writing the request: until then a failure
    certainly left nothing on the server. ``clock`` is monotonic; the watchdog itself
    waits in real time (a test with a fake clock uses a fake transport: no socket).
    """

    def __init__(self, deadline: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._ends = clock() + deadline
        self.sent = False
        self._guard = threading.Lock()
        self._socket: socket.socket | None = None
        self._timer: threading.Timer | None = None

    def __enter__(self) -> _Attempt:
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
        """Seconds until D passes (negative once it has)."""
        return self._ends - self._clock()

    def timeouts(self, settings: HttpSettings) -> httpx.Timeout:
        """The settings' per-phase timeouts, none longer than what remains of D."""
        left = max(self.left(), _SHORTEST)
        return httpx.Timeout(connect=min(settings.connect_timeout, left),
                             read=min(settings.read_timeout, left),
                             write=min(settings.write_timeout, left),
                             pool=min(settings.pool_timeout, left))

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` hook: watch the new socket; send nothing after D."""
        if event.endswith("connect_tcp.complete"):
            stream = info.get("return_value")
            found = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(found, socket.socket):
                self._watch(found)
        elif event.endswith("send_request_headers.started"):
            if self.left() <= 0:
                raise _TooLate
            self.sent = True

    def _watch(self, sock: socket.socket) -> None:
        with self._guard:
            if self._socket is not None:
                return
            # A duplicate descriptor: it still names this connection after TLS wraps
            # (and detaches) httpcore's socket object, and it is never another socket
            # reusing a closed descriptor's number.
            try:
                self._socket = sock.dup()
            except OSError:  # out of descriptors: the capped timeouts still apply
                return
            self._timer = threading.Timer(max(self.left(), 0.0), self._cut)
            self._timer.daemon = True
            self._timer.start()

    def _cut(self) -> None:
        """At D: end the connection, waking whatever read or write is blocked on it."""
        with self._guard, contextlib.suppress(OSError):
            if self._socket is not None:
                self._socket.shutdown(socket.SHUT_RDWR)


def _login_body(credentials: Credentials) -> dict[str, str]:
    return {"username": credentials.username, "password": credentials.password}


def _read_answer(response: httpx.Response, call: str, settings: HttpSettings,
                 attempt: _Attempt) -> httpx.Response:
    """The answer with its whole body in memory: at most 64 KiB decompressed, within D."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_AUTH_ANSWER:
            raise ProtocolError(f"the answer from {settings.server} to the {call} is larger "
                                "than 64 KiB; check the server URL")
        if attempt.left() <= 0:
            raise _overdue(call, settings, reached=True)
    # The body is decoded already, so the headers that framed or encoded it go.
    headers = [(key, value) for key, value in response.headers.multi_items()
               if key.lower() not in _FRAMING]
    kept = {key: value for key, value in response.extensions.items()
            if key in ("http_version", "reason_phrase")}
    return httpx.Response(response.status_code, headers=headers, content=bytes(body),
                          request=response.request, extensions=kept)


def _overdue(call: str, settings: HttpSettings, *, reached: bool) -> ServerUnavailable:
    """The error for a request that D cut short: an answer lost, when ``reached``."""
    return ServerUnavailable(f"{settings.server} did not finish the {call} within "
                             f"{settings.auth_deadline:g} s; try again later", reached=reached)


def read_grant(response: httpx.Response, call: str, settings: HttpSettings, now: float) -> Grant:
    """Turn the answer to a login or refresh into a :class:`Grant`, or raise why not."""
    logger.debug("%s answered %d", call, response.status_code)
    if response.status_code == 200:
        return _granted(json_body(response), response, call, settings)
    raise refusal(response, call, settings, now)


def _granted(body: Any, response: httpx.Response, call: str, settings: HttpSettings) -> Grant:
    if isinstance(body, dict) and body.get("mfa_required") is True:
        raise MfaRequired(
            "this account needs a second factor (MFA), which cidx-auth cannot supply "
            "without a person at the keyboard; use an account without MFA for this client"
        )
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ProtocolError(
            f"{settings.server} answered the {call} without an access token; "
            "check that the server URL points at a CIDX server"
        )
    refresh = body.get("refresh_token")
    return Grant(
        access_token=token,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_in=_seconds(body.get("access_token_expires_in", body.get("expires_in"))),
        server_date=server_date(response.headers.get("Date")),
    )


def refusal(response: httpx.Response, call: str, settings: HttpSettings,
            now: float) -> CidxAuthError:
    """The error for a non-200 answer to ``call`` (``login`` or ``refresh``)."""
    status, detail, server = response.status_code, detail_of(response), settings.server
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    if status >= 500:
        return ServerUnavailable(
            f"{server} answered {status} to the {call} ({detail}); try again later", retry_after
        )
    if status == 429 and call == LOGIN and detail.startswith("account_locked"):
        return _locked(detail, retry_after, now)
    if status == 429:
        wait = f"in {retry_after:.0f} s" if retry_after is not None else "later"
        return RateLimited(f"{server} is limiting {call} attempts ({detail}); try again {wait}",
                           retry_after)
    if status == 401 and call == LOGIN:
        return InvalidCredentials(
            "the server refused the username or password: run `cidx-auth login` again"
        )
    if status in (401, 403) and call == REFRESH:
        return RefreshRejected(f"the server refused the refresh token ({detail})")
    if status == 403 and detail.startswith("password_expired"):
        return PasswordExpired("the server says this account's password has expired: change "
                               "it on the server, then run `cidx-auth login`")
    if status == 403:
        return AuthenticationError(f"the server refused this account ({detail}); "
                                   "ask its administrator, then run `cidx-auth login`")
    if status == 422 and call == LOGIN:
        return ConfigurationError(f"the server rejected the login request ({detail}); "
                                  "check the username and password given to `cidx-auth login`")
    if status in (404, 405):
        path = settings.login_path if call == LOGIN else settings.refresh_path
        return ConfigurationError(f"{server}{path} answered {status}: check the server URL "
                                  f"and the {call} path setting")
    return ProtocolError(f"{server} answered {status} to the {call} ({detail})")


def _locked(detail: str, retry_after: float | None, now: float) -> AccountLocked:
    if retry_after is None:
        found = _LOCK_SECONDS.search(detail)
        retry_after = float(found.group(1)) if found else None
    if retry_after is None:
        return AccountLocked("the server locked this account after too many failed logins; "
                             "wait 15 minutes, check the password, then run `cidx-auth login`")
    retry_at = now + retry_after
    until = time.strftime("%H:%M:%S", time.localtime(retry_at))
    return AccountLocked(
        f"the server locked this account after too many failed logins until {until}; "
        "check the password, then run `cidx-auth login` after that time",
        retry_at=retry_at,
    )


def server_date(value: str | None) -> float | None:
    """The ``Date`` header as epoch seconds; None when absent or unreadable."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)
