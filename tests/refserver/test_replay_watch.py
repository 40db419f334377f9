"""The suite's watch on the reference server: each replay is charged to the test that
caused it, a reset does not hide one, a server closed or restarted inside a test still
counts, and seen must equal declared (tests/replay_watch.py)."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import httpx
import pytest

from refserver.config import ServerConfig
from refserver.harness import ReplaysUncounted, RunningServer
from refserver.stats import Stats
from tests.replay_watch import ReplayWatch, verdict

CONFIG = ServerConfig(users={"alice": "pw"})
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def replay(http: httpx.Client) -> None:
    """Log in, refresh, then present the spent refresh token again: one replay."""
    login = http.post("/auth/login", json={"username": "alice", "password": "pw"}).json()
    body = {"refresh_token": login["refresh_token"]}
    assert http.post("/api/auth/refresh", json=body).status_code == 200
    again = http.post("/api/auth/refresh", json=body)
    assert again.json() == {"detail": "Token replay attack detected"}


def test_the_verdict_wants_seen_to_equal_declared() -> None:
    assert verdict({}, 0) is None
    assert verdict({"s": 2}, 2) is None
    undeclared = verdict({"reference server http://127.0.0.1:1": 1}, 0)
    assert undeclared is not None and "saw 1 replayed" in undeclared
    assert "http://127.0.0.1:1: 1" in undeclared
    missing = verdict({}, 1)  # a declared replay that did not happen fails as well
    assert missing is not None and "saw 0 replayed" in missing and "1 declared" in missing


@pytest.mark.replays(3)  # the suite's own watch sees these Stats too
def test_replays_are_charged_to_the_test_that_caused_them() -> None:
    watch = ReplayWatch()
    shared = Stats()
    watch.add(shared)  # a module-scoped server, made before the test
    shared.bump("replays", "alice")  # an earlier test's replay
    watch.begin()
    assert watch.end(0) is None
    watch.begin()
    shared.bump("replays", "alice")
    shared.reset()  # a test that resets the counters does not hide its replay
    failure = watch.end(0)
    assert failure is not None and "in-process reference server: 1" in failure
    watch.begin()
    shared.bump("replays", "alice")
    assert watch.end(1) is None


@pytest.mark.replays(1)
def test_a_server_made_and_dropped_inside_the_test_is_still_read() -> None:
    watch = ReplayWatch()
    watch.begin()
    made = Stats()
    watch.add(made)
    made.bump("replays")
    del made
    assert watch.end(0) is not None


@pytest.mark.replays(1)
async def test_the_in_process_server_is_watched(client: httpx.AsyncClient) -> None:
    login = (await client.post("/auth/login",
                               json={"username": "alice", "password": "pw"})).json()
    body = {"refresh_token": login["refresh_token"]}
    await client.post("/api/auth/refresh", json=body)
    await client.post("/api/auth/refresh", json=body)
    assert (await client.get("/_admin/stats")).json()["replays_since_start"] == 1


@pytest.mark.slow
@pytest.mark.replays(2)
def test_a_child_server_counts_across_reset_stop_and_restart() -> None:
    server = RunningServer(CONFIG)
    with server:
        with server.client() as http:
            replay(http)
        server.reset()
        assert server.stats()["totals"]["replays"] == 0
        assert server.replays_seen() == 1
        server.stop()  # read before the process goes
        assert server.replays_seen() == 1
        server.start()
        with server.client() as http:
            replay(http)
        assert server.replays_seen() == 2
    assert server.replays_seen() == 2  # closed: the bank is what is left


@pytest.mark.slow
def test_a_server_that_died_on_its_own_is_reported_once() -> None:
    with RunningServer(CONFIG) as server:
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        assert server._process is not None
        server._process.wait()
    with pytest.raises(ReplaysUncounted, match="exited on its own"):
        server.replays_seen()
    assert server.replays_seen() == 0


def replay_on(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as http:
        login = http.post("/auth/login", json={"username": "alice", "password": "pw"}).json()
        body = {"refresh_token": login["refresh_token"]}
        http.post("/api/auth/refresh", json=body)
        http.post("/api/auth/refresh", json=body)


def died(server: RunningServer) -> None:
    assert server.pid is not None and server._process is not None
    os.kill(server.pid, signal.SIGKILL)
    server._process.wait()


def test_a_server_that_dies_mid_test_is_reported_at_the_next_read_not_read_as_zero() -> None:
    """No stop() in between: the next read, or the next start(), notices the death, so a
    module-scoped server that crashes cannot make a test's replays vanish. (Both replays
    here die with their process, so the suite's own watch sees none to declare.)"""
    with RunningServer(CONFIG) as server:
        replay_on(server)
        assert server.replays_seen() == 1
        died(server)
        with pytest.raises(ReplaysUncounted, match="exited on its own"):
            server.replays_seen()
        server.start()  # the loss was reported once; the bank still holds nothing read
        assert server.replays_seen() == 0
        replay_on(server)
        died(server)
        server.start()  # restarted without a read between: the loss is still reported
        with pytest.raises(ReplaysUncounted, match="exited on its own"):
            server.replays_seen()


def test_a_count_lower_than_at_the_start_of_a_test_is_a_loss_not_a_negative_count() -> None:
    watch = ReplayWatch()
    stats = Stats()
    stats.replays_since_start = 2  # as if two replays were seen before the test began
    watch.add(stats)
    watch.begin()
    stats.replays_since_start = 0
    problem = watch.end(declared=0)
    assert problem is not None and "lost 2 replay count(s)" in problem


INNER = '''
import httpx
import pytest

from refserver.config import ServerConfig
from refserver.testing import asgi_client, fake_app


async def replay_once():
    async with asgi_client(fake_app(ServerConfig(users={"alice": "pw"}))) as http:
        login = (await http.post("/auth/login",
                                 json={"username": "alice", "password": "pw"})).json()
        body = {"refresh_token": login["refresh_token"]}
        await http.post("/api/auth/refresh", json=body)
        await http.post("/api/auth/refresh", json=body)


async def test_undeclared():
    await replay_once()


@pytest.mark.replays(1)
async def test_declared():
    await replay_once()


@pytest.mark.replays(1)
async def test_declared_but_none():
    pass


async def test_none():
    pass
'''


@pytest.mark.slow
def test_the_suite_fails_a_test_with_an_undeclared_replay(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(textwrap.dedent('''
        from tests.conftest import no_undeclared_replays, replay_watch  # noqa: F401
        from tests.conftest import servers_saw_no_undeclared_replays  # noqa: F401
    '''))
    pytester.makeini("[pytest]\nasyncio_mode = auto\nmarkers = replays(n): declared\n")
    pytester.makepyfile(test_inner=INNER)
    env_path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    pytester._monkeypatch.setenv("PYTHONPATH", env_path)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist",
                                           "-p", "no:randomly", "-rE")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines([
        "*ERROR*test_undeclared*",
        "*ERROR*test_declared_but_none*",
    ])
    result.stdout.no_fnmatch_line("*ERROR*test_declared - *")
    result.stdout.fnmatch_lines(["*saw 1 replayed refresh token(s)*0 declared*"])
