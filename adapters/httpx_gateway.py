"""The CIDX server's login and refresh over httpx: the ``AuthGateway`` port.

Blocking calls only: the core's renewal runs on a thread of its own for async callers.
The gateway never retries: the core's flow retries transport trouble and must never
retry a refused login (errata #11), so each call here is exactly one request.

Every answer becomes a :class:`Grant` or one of the project's errors; no httpx
exception leaves this module (errata #8), and no message holds a secret.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
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


class HttpxGateway:
    """Implements :class:`AuthGateway` over HTTP."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        now: Callable[[], float] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._now = now or SystemClock().now  # for Retry-After dates and lock-out times
        context = ssl_context(settings) if transport is None else None
        self._client = make_client(settings, transport=transport, context=context)

    def login(self, credentials: Credentials) -> Grant:
        """One login attempt; raises the project's errors only."""
        try:
            response = self._client.post(self._settings.login_path, json=_login_body(credentials))
        except httpx.HTTPError as exc:
            raise transport_error(exc, self._settings) from None
        return read_grant(response, LOGIN, self._settings, self._now())

    def refresh(self, refresh_token: str) -> Grant:
        """One refresh; the server rotates ``refresh_token`` whatever happens next."""
        try:
            response = self._client.post(
                self._settings.refresh_path, json={"refresh_token": refresh_token}
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, self._settings) from None
        return read_grant(response, REFRESH, self._settings, self._now())

    def close(self) -> None:
        self._client.close()


def _login_body(credentials: Credentials) -> dict[str, str]:
    return {"username": credentials.username, "password": credentials.password}


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
