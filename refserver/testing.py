"""Shipped test helpers: a fake CIDX server for your tests, a fake clock, an app client.

For tests of code that uses cidx-auth, :class:`FakeCidx` is the one to reach for: the
reference server in this process on a fake clock, with real ``CidxClient``,
``AsyncCidxClient`` and ``httpx`` clients wired to it, and one call each to make tokens
expire, have a token refused (401), revoke the refresh tokens or cut the server off
(see ``refserver.inprocess``; it needs the ``server`` extra)::

    from refserver.testing import FakeCidx

    def test_search_survives_expiry():
        with FakeCidx(users={"alice": "secret"}) as cidx, cidx.client("alice") as client:
            client.query("retry", "backend")
            cidx.expire_tokens()
            assert client.query("retry", "backend").hits
            assert cidx.stats()["totals"]["refreshes"] == 1

Lower down, tests (this project's and anyone's) drive time by hand with `FakeClock` (the
client's own fake, `adapters.memory.FakeClock`: one fake clock for both sides) instead
of sleeping, and reach an app through `httpx.ASGITransport` so no socket or process is
involved. That client carries the app's admin token.
"""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from adapters.memory import FakeClock
from refserver.admin_routes import ADMIN_TOKEN_HEADER
from refserver.app import admin_token, create_app
from refserver.config import ServerConfig
from refserver.inprocess import DEFAULT_EPOCH, LOOPBACK_PEER, FakeCidx

__all__ = ["DEFAULT_EPOCH", "LOOPBACK_PEER", "FakeCidx", "FakeClock", "asgi_client",
           "fake_app"]


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
