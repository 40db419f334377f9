"""Login, refresh and logout, answering exactly as the real CIDX server does.

Order matters on login and mirrors the real server: the body is validated
first (a 422 costs nothing), then the bucket, then the lockout, and only
then the (deliberately slow) password check.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from refserver.protected import authenticate
from refserver.ratelimit import REFRESH_LIMIT_DETAIL
from refserver.sessions import LOGOUT_REASON, RefreshRejected, Rotation
from refserver.state import ServerState
from refserver.validation import Field, ValidationFailed, check_fields, read_body

LOGIN_FIELDS = (
    Field("username", str, min_length=1, max_length=255),
    Field("password", str, min_length=1, max_length=1000),
)
REFRESH_FIELDS = (Field("refresh_token", str, min_length=1),)
PASSWORD_EXPIRED_DETAIL = (
    "password_expired: The password for this account has expired and must be changed "
    "before logging in."
)


class AuthEndpoints:
    """The unauthenticated session endpoints, bound to one server's state."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        """Starlette routes for these endpoints."""
        return [
            Route("/auth/login", self.login, methods=["POST"]),
            Route("/api/auth/refresh", self.refresh, methods=["POST"]),
            Route("/auth/refresh", self.legacy_refresh, methods=["POST"]),
            Route("/auth/logout", self.logout, methods=["POST"]),
        ]

    async def login(self, request: Request) -> Response:
        """`POST /auth/login`: trade a password for an access and a refresh token."""
        body = await read_body(request, LOGIN_FIELDS)
        username, password = body["username"], body["password"]
        state = self.state
        refusal = state.login_guard.admit(username, state.clock.now())
        if refusal is not None:
            locked = refusal.detail.startswith("account_locked")
            state.stats.bump("locked_logins" if locked else "rate_limited_logins")
            return JSONResponse({"detail": refusal.detail}, 429,
                                headers={"Retry-After": str(refusal.retry_after)})
        if state.config.login_delay:
            await asyncio.sleep(state.config.login_delay)
        if not state.password_matches(username, password):
            state.login_guard.record_failure(username, state.clock.now())
            state.stats.bump("failed_logins", username)
            return JSONResponse({"detail": "Invalid credentials"}, 401,
                                headers={"WWW-Authenticate": "Bearer"})
        state.login_guard.record_success(username)
        if username in state.config.expired_password_users:
            return JSONResponse({"detail": PASSWORD_EXPIRED_DETAIL}, 403)
        if username in state.config.mfa_users:
            return JSONResponse({"mfa_required": True, "mfa_token": secrets.token_urlsafe(32)})
        return JSONResponse(self._open_session(username))

    async def refresh(self, request: Request) -> Response:
        """`POST /api/auth/refresh`: rotate a refresh token, minting a new access token."""
        outcome = await self._rotate(request)
        if isinstance(outcome, Response):
            return outcome
        return JSONResponse(self._rotation_body(outcome, outcome.refresh_token))

    async def legacy_refresh(self, request: Request) -> Response:
        """`POST /auth/refresh`: the old route that spends the token and returns none."""
        outcome = await self._rotate(request)
        if isinstance(outcome, Response):
            return outcome
        return JSONResponse(self._rotation_body(outcome, None))

    async def logout(self, request: Request) -> Response:
        """`POST /auth/logout`: blacklist this access token (and a given refresh family)."""
        claims = authenticate(self.state, request)
        if isinstance(claims, Response):
            return claims
        self.state.tokens.revoke(str(claims.get("jti")))
        token = await _optional_refresh_token(request)
        if token is not None:
            self.state.sessions.revoke_token_family(token, LOGOUT_REASON)
        return JSONResponse({"message": "Successfully logged out"})

    def _open_session(self, username: str) -> dict[str, Any]:
        state = self.state
        now = state.clock.now()
        role = state.config.role_of(username)
        created_at = state.accounts_created_at
        state.stats.bump("logins", username)
        return {
            "access_token": state.tokens.issue(username, role, created_at, now),
            "token_type": "bearer",
            "user": {"username": username, "role": role, "created_at": created_at},
            "refresh_token": state.sessions.open(username, role, now),
            "refresh_token_expires_in": state.sessions.lifetime,
        }

    async def _rotate(self, request: Request) -> Rotation | Response:
        body = await read_body(request, REFRESH_FIELDS)
        state = self.state
        now = state.clock.now()
        try:
            rotation = state.sessions.rotate(body["refresh_token"], now)
        except RefreshRejected as rejected:
            return self._refresh_failure(rejected, now)
        state.stats.bump("refreshes", rotation.username)
        return rotation

    def _refresh_failure(self, rejected: RefreshRejected, now: float) -> Response:
        stats = self.state.stats
        stats.bump("failed_refreshes", rejected.username)
        if rejected.replay:
            stats.bump("replays", rejected.username)
        limiter = self.state.refresh_limiter
        if limiter.blocked(now):
            # The real server sends no Retry-After here; neither do we.
            stats.bump("rate_limited_refreshes")
            return JSONResponse({"detail": REFRESH_LIMIT_DETAIL}, 429)
        limiter.record_failure(now)
        return JSONResponse({"detail": rejected.detail}, 401)

    def _rotation_body(self, rotation: Rotation, refresh_token: str | None) -> dict[str, Any]:
        state = self.state
        access = state.tokens.issue(rotation.username, rotation.role, None, state.clock.now())
        return {
            "access_token": access,
            "refresh_token": refresh_token,
            "token_type": "bearer",
            "user": {"username": rotation.username, "role": rotation.role},
            "access_token_expires_in": state.tokens.lifetime,
            "refresh_token_expires_in": state.sessions.lifetime,
        }


async def _optional_refresh_token(request: Request) -> str | None:
    """The `refresh_token` of a logout body, if one was sent and is well formed."""
    try:
        body = check_fields(await request.json(), REFRESH_FIELDS)
    except (ValueError, ValidationFailed):
        return None
    token = body["refresh_token"]
    return token if isinstance(token, str) else None
