"""Shipped test helpers: a fake clock and an in-process client.

Tests (this project's and anyone's) drive time by hand with `FakeClock`
instead of sleeping, and reach an app through `httpx.ASGITransport` so no
socket or process is involved.
"""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from refserver.app import create_app
from refserver.config import ServerConfig

DEFAULT_EPOCH = 1_767_225_600.0
"""2026-01-01T00:00:00Z: a fixed, readable starting point for fake time."""

LOOPBACK_PEER = ("127.0.0.1", 50_000)


class FakeClock:
    """A clock that moves only when told to; call it for the current time."""

    def __init__(self, start: float = DEFAULT_EPOCH) -> None:
        self.current = start

    def __call__(self) -> float:
        return self.current

    def advance(self, seconds: float) -> None:
        """Move time forward (or back, with a negative number)."""
        self.current += seconds


def fake_app(config: ServerConfig, clock: FakeClock | None = None) -> Starlette:
    """An app whose time is `clock` (a fresh `FakeClock` by default)."""
    return create_app(config, clock=clock or FakeClock())


def asgi_client(app: Starlette, peer: tuple[str, int] = LOOPBACK_PEER) -> httpx.AsyncClient:
    """An async httpx client that calls `app` in-process, appearing to come from `peer`."""
    transport = httpx.ASGITransport(app=app, client=peer)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")
