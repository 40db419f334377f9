"""The bearer-token gate in front of every protected route.

The real server answers before the handler runs, with one of four details
and a `WWW-Authenticate` challenge pointing at its protected-resource
metadata. The challenge's `resource_metadata` value is unquoted on the real
server, so it is unquoted here too: clients must cope with what exists.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from refserver.state import ServerState
from refserver.tokens import TokenRejected

MISSING_DETAIL = "Missing authentication credentials"


def issuer_of(state: ServerState, request: Request) -> str:
    """The configured issuer, or the base URL this request arrived at."""
    if state.config.issuer:
        return state.config.issuer.rstrip("/")
    return str(request.base_url).rstrip("/")


def challenge(state: ServerState, request: Request) -> str:
    """The `WWW-Authenticate` value of a protected route's 401."""
    metadata = f"{issuer_of(state, request)}/.well-known/oauth-protected-resource"
    return f'Bearer realm="mcp", resource_metadata={metadata}'


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer` header (scheme in any case)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def authenticate(state: ServerState, request: Request) -> dict[str, Any] | JSONResponse:
    """The token's claims, or the 401 to send instead; counts both in the stats."""
    state.stats.requests += 1
    token = bearer_token(request)
    if token is None:
        return _refuse(state, request, MISSING_DETAIL)
    try:
        claims = state.tokens.verify(token, state.clock.now())
    except TokenRejected as rejected:
        return _refuse(state, request, rejected.detail)
    if claims["username"] not in state.config.users:
        return _refuse(state, request, "User not found")
    return claims


def _refuse(state: ServerState, request: Request, detail: str) -> JSONResponse:
    state.stats.auth_401 += 1
    headers = {"WWW-Authenticate": challenge(state, request)}
    return JSONResponse({"detail": detail}, status_code=401, headers=headers)
