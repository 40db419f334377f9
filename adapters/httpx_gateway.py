"""The CIDX server's login and refresh over httpx: the ``AuthGateway`` port.

Blocking calls only: the core's renewal runs on a thread of its own for async callers.
The gateway never retries: the core's flow retries transport trouble and must never
retry a refused login (errata #11), so each call here is exactly one request.

Every answer becomes a :class:`Grant` or one of the project's errors; no httpx
exception leaves this module (errata #8), and no message holds a secret.

Each request ends within the deadline D (``HttpSettings.auth_deadline``), connect to
last byte, because the renewal holds its cross-process lock around it; its answer may
hold at most 64 KiB once decompressed. Both are enforced by ``adapters.http_limits``
(see there why per-read timeouts are not enough). The gateway keeps no idle
connections: each request makes its own, so the watchdog always has its socket. That
costs nothing real, since auth requests come minutes apart, past the 30 s keep-alive.

The server's ``detail`` is quoted only as one short line, and not at all when it holds
what was sent (a 400 or 500 that echoes the request body would print the password).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from adapters.http_limits import MAX_AUTH_ANSWER, Attempt, Oversized, TooLate, size_text
from adapters.http_settings import (
    HttpSettings,
    UnusableAnswer,
    attempt_error,
    clean,
    full_detail,
    json_body,
    make_client,
    overdue,
    ssl_context,
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
from cidx_auth.domain.moments import local_text
from cidx_auth.domain.retry import clamp_wait, parse_retry_after
from cidx_auth.domain.token import Grant

logger = logging.getLogger(__name__)

LOGIN, REFRESH = "login", "refresh"
_LOCK_SECONDS = re.compile(r"in (\d+) seconds")

AUTH_DETAIL = 80
"""The most of a login or refresh refusal's ``detail`` a message quotes."""
_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_NO_IDLE = httpx.Limits(max_keepalive_connections=0)


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
                                   limits=_NO_IDLE, cap=MAX_AUTH_ANSWER)

    def login(self, credentials: Credentials) -> Grant:
        """One login attempt; raises the project's errors only."""
        return self._post(LOGIN, self._settings.login_path, _login_body(credentials),
                          credentials.password)

    def refresh(self, refresh_token: str) -> Grant:
        """One refresh; the server rotates ``refresh_token`` whatever happens next."""
        return self._post(REFRESH, self._settings.refresh_path,
                          {"refresh_token": refresh_token}, refresh_token)

    def close(self) -> None:
        self._client.close()

    def _post(self, call: str, path: str, body: dict[str, str], secret: str) -> Grant:
        """Send one auth request and read its answer, all within D; no message quotes
        ``secret``, even when the server echoes it."""
        settings = self._settings
        with Attempt(settings.auth_deadline, self._monotonic) as attempt:
            try:
                with self._client.stream("POST", path, json=body,
                                         timeout=settings.timeouts_within(attempt),
                                         extensions=attempt.extensions()) as response:
                    answer = _read_answer(response, attempt)
            except TooLate:
                raise overdue(settings, attempt, f"the {call}", reached=False) from None
            except Oversized:
                raise UnusableAnswer(f"the answer from {settings.server} to the {call} is "
                                     f"larger than {size_text(MAX_AUTH_ANSWER)}; check the "
                                     "server URL") from None
            except httpx.HTTPError as exc:
                raise attempt_error(exc, settings, attempt, f"the {call}") from None
        return read_grant(answer, call, settings, self._now(), secrets=(secret,))


def _login_body(credentials: Credentials) -> dict[str, str]:
    return {"username": credentials.username, "password": credentials.password}


def _read_answer(response: httpx.Response, attempt: Attempt) -> httpx.Response:
    """The answer with its whole body in memory: at most 64 KiB decompressed, within D.

    The client's guard counts too; this count also holds for a body a test handed in.
    """
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_AUTH_ANSWER:
            raise Oversized(MAX_AUTH_ANSWER)
        attempt.check()
    # The body is decoded already, so the headers that framed or encoded it go.
    headers = [(key, value) for key, value in response.headers.multi_items()
               if key.lower() not in _FRAMING]
    kept = {key: value for key, value in response.extensions.items()
            if key in ("http_version", "reason_phrase")}
    return httpx.Response(response.status_code, headers=headers, content=bytes(body),
                          request=response.request, extensions=kept)


def read_grant(response: httpx.Response, call: str, settings: HttpSettings, now: float,
               secrets: Iterable[str] = ()) -> Grant:
    """Turn the answer to a login or refresh into a :class:`Grant`, or raise why not.

    ``secrets`` were sent with the request: no message may quote them.
    """
    logger.debug("%s answered %d", call, response.status_code)
    if response.status_code == 200:
        return _granted(json_body(response), response, call, settings)
    raise refusal(response, call, settings, now, secrets)


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
            now: float, secrets: Iterable[str] = ()) -> CidxAuthError:
    """The error for a non-200 answer to ``call`` (``login`` or ``refresh``)."""
    status, server, said = response.status_code, settings.server, full_detail(response)
    detail = shown_detail(said, status, secrets)
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    if status >= 500:
        return ServerUnavailable(
            f"{server} answered {status} to the {call} ({detail}); try again later", retry_after
        )
    if status == 429 and call == LOGIN and said.startswith("account_locked"):
        return _locked(said, retry_after, now)
    if status == 429:
        wait = f"in {retry_after:.0f} s" if retry_after is not None else "later"
        return RateLimited(f"{server} is limiting {call} attempts ({detail}); try again {wait}",
                           retry_after)
    if status == 401 and call == LOGIN:
        return InvalidCredentials(
            "the server refused the username or password: check them, then run "
            "`cidx-auth login` again"
        )
    if status in (401, 403) and call == REFRESH:
        return RefreshRejected(f"the server refused the refresh token ({detail})")
    if status == 403 and said.startswith("password_expired"):
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


def shown_detail(said: str, status: int, secrets: Iterable[str]) -> str:
    """What a message may quote of a login or refresh refusal's ``detail``: one short
    clean line, or only the status when the detail holds a secret that was sent (as
    is, or escaped as JSON escapes it)."""
    if any(value and (value in said or json.dumps(value)[1:-1] in said) for value in secrets):
        return f"HTTP {status} {httpx.codes.get_reason_phrase(status)}".rstrip()
    return clean(said)[:AUTH_DETAIL]


def _locked(detail: str, retry_after: float | None, now: float) -> AccountLocked:
    """The lockout, with the wait the server gave (``Retry-After``, else its detail's
    "in N seconds"). The lockout is answered before the password is checked, so it
    says nothing about the password: the caller adds what to do after the wait."""
    if retry_after is None:
        found = _LOCK_SECONDS.search(detail)
        retry_after = clamp_wait(float(found.group(1))) if found else None
    if retry_after is None:
        return AccountLocked("the server locked this account after too many failed logins, "
                             "without saying for how long (the CIDX server's lockout lasts "
                             "15 minutes): try again after that")
    retry_at = now + retry_after
    return AccountLocked(
        f"the server locked this account after too many failed logins until "
        f"{local_text(retry_at, now)} (it says: try again in {retry_after:.0f} seconds)",
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
