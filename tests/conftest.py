"""Suite-wide guards.

Every :class:`ScriptedGateway` a test makes is checked when the test ends: a refresh
token presented twice (a replay, which the real server punishes by revoking the whole
session family) fails the test unless the test declared it in ``expected_replays``.
So no test can pass while the code under test causes one.

Hypothesis runs without its per-example deadline: that is a timing upper bound, which a
busy machine (the suite runs on every core) breaks without any change in behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from adapters.memory import ScriptedGateway
from tests.integration.hostile_server import HostileServer

# No time limits in tests: a busy machine must not fail an example for being slow.
settings.register_profile("cidx-auth", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("cidx-auth")


@pytest.fixture(autouse=True)
def no_undeclared_replays(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    made: list[ScriptedGateway] = []
    original = ScriptedGateway.__init__

    def tracked(self: ScriptedGateway, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ScriptedGateway, "__init__", tracked)
    yield
    for gateway in made:
        assert gateway.replays == gateway.expected_replays, (
            f"the fake server saw {gateway.replays} replayed refresh token(s), "
            f"{gateway.expected_replays} declared"
        )


@pytest.fixture
def hostile() -> Iterator[dict[str, HostileServer]]:
    """Hostile loopback servers a test starts (by name), closed when it ends."""
    servers: dict[str, HostileServer] = {}
    yield servers
    for server in servers.values():
        server.close()
