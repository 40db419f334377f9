"""Suite-wide guards.

Every server a test talks to is checked when the test ends: a refresh token presented
twice (a replay, which the real server punishes by revoking the whole session family)
fails the test unless the test declared it. A :class:`ScriptedGateway` is declared in its
``expected_replays``; the reference server (in a child process or in this one) and
``CountingServer`` with ``@pytest.mark.replays(n)`` (see ``tests/replay_watch.py``).
So no test can pass while the code under test causes one: the check runs in the test's
teardown, so pytest reports such a test with an ERROR at teardown, and the run fails.

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
from tests.replay_watch import MARKER, ReplayWatch, declared, install

pytest_plugins = ("pytester",)

# No time limits in tests: a busy machine must not fail an example for being slow.
settings.register_profile("cidx-auth", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("cidx-auth")


@pytest.fixture(scope="session", autouse=True)
def replay_watch() -> Iterator[ReplayWatch]:
    """Knows every reference server and ``CountingServer`` made in this process: installed
    before any module-scoped fixture can start one."""
    watch = ReplayWatch()
    with pytest.MonkeyPatch.context() as patch:
        install(watch, patch.setattr)
        yield watch


@pytest.fixture(autouse=True)
def servers_saw_no_undeclared_replays(
    replay_watch: ReplayWatch, request: pytest.FixtureRequest
) -> Iterator[None]:
    replay_watch.begin()
    yield
    failure = replay_watch.end(declared(request.node.iter_markers(MARKER)))
    if failure is not None:
        pytest.fail(failure, pytrace=False)


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
        if gateway.replays != gateway.expected_replays:  # not an assert: -O must not drop it
            pytest.fail(f"the fake server saw {gateway.replays} replayed refresh token(s), "
                        f"{gateway.expected_replays} declared")


@pytest.fixture
def hostile() -> Iterator[dict[str, HostileServer]]:
    """Hostile loopback servers a test starts (by name), closed when it ends."""
    servers: dict[str, HostileServer] = {}
    yield servers
    for server in servers.values():
        server.close()
