"""Shipped test helpers: a fake clock and an in-process client.

Tests (this project's and anyone's) drive time by hand with `FakeClock` (the
client's own fake, `adapters.memory.FakeClock`: one fake clock for both sides)
instead of sleeping, and reach an app through `httpx.ASGITransport` so no
socket or process is involved. That client carries the app's admin token.
"""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from adapters.memory import FakeClock
from refserver.admin_routes import ADMIN_TOKEN_HEADER
from refserver.app import admin_token, create_app
from refserver.config import ServerConfig

DEFAULT_EPOCH = 1_767_225_600.0
"""2026-01-01T00:00:00Z: a fixed, readable starting point for fake time."""

LOOPBACK_PEER = ("127.0.0.1", 50_000)

__all__ = ["DEFAULT_EPOCH", "LOOPBACK_PEER", "FakeClock", "asgi_client", "fake_app"]


def fake_app(config: ServerConfig, clock: FakeClock | None = None) -> Starlette:
    """An app whose time is `clock` (a fresh `FakeClock` by default)."""
    return create_app(config, clock=clock or FakeClock(DEFAULT_EPOCH))


def asgi_client(app: Starlette, peer: tuple[str, int] = LOOPBACK_PEER, *,
                admin: bool = True) -> httpx.AsyncClient:
    """An async httpx client that calls `app` in-process, appearing to come from `peer`;
    it sends the app's admin token on every request unless `admin` is False."""
    transport = httpx.ASGITransport(app=app, client=peer)
    headers = {ADMIN_TOKEN_HEADER: admin_token(app)} if admin else {}
    return httpx.AsyncClient(transport=transport, base_url="http://testserver",
                             headers=headers)
