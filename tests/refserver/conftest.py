"""Shared fixtures: each test module names its server in a module-level ``CONFIG``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from refserver.testing import DEFAULT_EPOCH, FakeClock, asgi_client, fake_app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(DEFAULT_EPOCH)


@pytest.fixture
async def client(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of a fresh app built from the test module's ``CONFIG``."""
    async with asgi_client(fake_app(request.module.CONFIG, clock)) as http:
        yield http
