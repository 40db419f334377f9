"""The suite's watch on every server a test talks to: no undeclared refresh-token replay.

The promise of the project is that a refresh token reaches the server at most once. The
client falls back to a login when its refresh is refused, so a replay rarely fails a test
by itself: the servers have to be watched. Three kinds are, besides ``ScriptedGateway``
(checked on its own in ``conftest.py``):

- the reference server as a child process (``refserver.harness.RunningServer``), read
  through ``/_admin/stats`` (the harness sends the admin token; a stop or a kill inside a
  test reads the count first, so a server closed by the test still counts);
- the reference server in this process (``refserver.testing.fake_app``, ``create_app``,
  ``serve_async``): its ``Stats`` object, read directly (the server's state has slots);
- ``CountingServer`` (tests/integration/storage_helpers.py), read from its state file.

Each counts replays in a number no reset zeroes (``replays_seen()``). The watch reads every
server it knows before a test and after it, and the difference is that test's replays:
a module-scoped server shared by many tests charges each replay to the test that caused
it. A test that provokes replays on purpose declares how many with
``@pytest.mark.replays(n)``; seen must equal declared, so a declared replay that does not
happen fails the test too.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from refserver.harness import ReplaysUncounted, RunningServer
from refserver.stats import Stats
from tests.integration.storage_helpers import CountingServer

MARKER = "replays"


class Watched(Protocol):
    def replays_seen(self) -> int: ...


def describe(server: object) -> str:
    """A name for a server in a failure message (never a token or password)."""
    if isinstance(server, RunningServer):
        return f"reference server {server.url or '(not started)'}"
    if isinstance(server, Stats):
        return "in-process reference server"
    if isinstance(server, CountingServer):
        return f"CountingServer {server.state_path.name}"
    return type(server).__name__


def verdict(seen: dict[str, int], declared: int) -> str | None:
    """Why a test fails the watch (None when it passes): ``seen`` maps each server that
    saw replays during the test to how many."""
    total = sum(seen.values())
    if total == declared:
        return None
    where = ", ".join(f"{name}: {count}" for name, count in seen.items()) or "none"
    return (f"the servers saw {total} replayed refresh token(s) during this test, "
            f"{declared} declared with @pytest.mark.{MARKER}(n) ({where})")


class ReplayWatch:
    """Every watched server made in this process, and their counts when a test began."""

    def __init__(self) -> None:
        self._known: weakref.WeakSet[Any] = weakref.WeakSet()
        self._made: list[Watched] = []
        """Strong references to the servers made since the current test began, so one
        closed and dropped inside the test is still read at its end."""
        self._start: dict[object, int] = {}
        self._lock = threading.Lock()

    def add(self, server: Watched) -> None:
        start = _read(server)
        with self._lock:
            self._known.add(server)
            self._made.append(server)
            self._start.setdefault(_key(server), start)

    def begin(self) -> None:
        """Note what every server has seen so far."""
        for key, server in self._servers().items():
            self._start[key] = _read(server)

    def end(self, declared: int) -> str | None:
        """This test's verdict; forget this test's servers."""
        servers = self._servers()
        with self._lock:
            start, self._start, self._made = self._start, {}, []
        seen: dict[str, int] = {}
        lost: list[str] = []
        for key, server in servers.items():
            try:
                count = server.replays_seen() - start.get(key, 0)
            except ReplaysUncounted as error:
                lost.append(str(error))
                continue
            if count < 0:  # fewer than when the test began: a count went with its process
                lost.append(f"{describe(server)} lost {-count} replay count(s)")
                continue
            if count:
                name = describe(server)
                seen[name] = seen.get(name, 0) + count
        if lost:
            return "; ".join(lost) + ": its replays cannot be checked"
        return verdict(seen, declared)

    def _servers(self) -> dict[object, Watched]:
        """One of each server: objects over one ``CountingServer`` file are one server."""
        with self._lock:
            every = [*self._known, *self._made]
        return {_key(server): server for server in every}


def _key(server: Watched) -> object:
    if isinstance(server, CountingServer):
        return server.state_path.resolve()
    return server


def _read(server: Watched) -> int:
    try:
        return server.replays_seen()
    except ReplaysUncounted:
        # Lost outside any test (a fixture stopped it): nothing to charge it to. The harness
        # reports a loss once; the next read counts on from what was banked.
        return server.replays_seen()


def install(watch: ReplayWatch, patch: Callable[[type, str, Any], None]) -> None:
    """Make every new watched server known to ``watch`` (``patch`` is
    ``MonkeyPatch.setattr``)."""

    def tracking(cls: type) -> None:
        original = cls.__init__

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            watch.add(self)

        patch(cls, "__init__", init)

    for cls in (RunningServer, CountingServer, Stats):
        tracking(cls)


def declared(markers: Iterable[Any]) -> int:
    """The replays a test declares (0 without the marker)."""
    for marker in markers:
        return int(marker.args[0]) if marker.args else int(marker.kwargs["count"])
    return 0
