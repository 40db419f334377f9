"""The reference server's ASGI application, assembled.

`create_app` is the composition root: it builds one `ServerState`, binds
the three groups of endpoints to it and wraps them in the fault layer.
Tests call it directly with a fake clock and talk to it through
`httpx.ASGITransport`; the runner calls it with a connection dropper.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from refserver.admin_routes import AdminEndpoints, new_admin_token
from refserver.api_routes import ApiEndpoints
from refserver.auth_routes import AuthEndpoints
from refserver.clock import Clock
from refserver.config import ServerConfig
from refserver.faults import ConnectionDropper, FaultMiddleware
from refserver.state import ServerState
from refserver.validation import ValidationFailed, validation_response


async def _on_validation_failed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationFailed)
    return validation_response(exc.errors)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    # The real server is FastAPI, whose 404s and 405s are JSON with a string detail.
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)


def create_app(config: ServerConfig, clock: Clock = time.time,
               dropper: ConnectionDropper | None = None, admin_token: str | None = None,
               ) -> Starlette:
    """A fresh server app; its state is reachable with `server_state(app)`.

    `/_admin` wants `admin_token` (a random one when None: see `admin_token(app)`).
    """
    state = ServerState.build(config, clock)
    admin = AdminEndpoints(state, new_admin_token() if admin_token is None else admin_token)
    routes = [
        *AuthEndpoints(state).routes(),
        *ApiEndpoints(state).routes(),
        *admin.routes(),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(ServerDate, clock=state.clock.now),
                    Middleware(FaultMiddleware, book=state.faults, stats=state.stats,
                               dropper=dropper)],
        exception_handlers={ValidationFailed: _on_validation_failed,
                            HTTPException: _on_http_error},
    )
    app.state.refserver = state
    app.state.admin_token = admin.token
    return app


class ServerDate:
    """Adds the ``Date`` header from the server's clock (which the admin may shift), so a
    client sees one consistent server time in the header and in token ``iat``."""

    def __init__(self, app: ASGIApp, clock: Callable[[], float]) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                date = formatdate(self.clock(), usegmt=True).encode()
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", date)]}
            await send(message)

        await self.app(scope, receive, dated)


def server_state(app: Starlette) -> ServerState:
    """The state behind an app made by `create_app` (for tests and tooling)."""
    state = app.state.refserver
    assert isinstance(state, ServerState)
    return state


def admin_token(app: Starlette) -> str:
    """The token `/_admin` wants from callers of an app made by `create_app`."""
    token = app.state.admin_token
    assert isinstance(token, str)
    return token
