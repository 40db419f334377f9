"""A fleet sharing one identity through Redis: 4 hosts x 10 processes, one refresh in all;
a lock holder killed mid-refresh; Redis restarted under a running provider."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.events import CountingSink
from adapters.memory import FakeClock, ScriptedGateway
from cidx_auth.app.container import build_project, in_redis
from cidx_auth.domain.events import EventKind
from tests.integration.redis_support import (
    RedisServer,
    fleet_container,
    make_fleet,
    redis_binary,
    run_together,
    seed_fleet,
    start_children,
)
from tests.integration.storage_helpers import (
    ALICE,
    SERVER_URL,
    wait_for,
)

pytestmark = pytest.mark.slow

HOSTS, PER_HOST = 4, 10


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer(redis_binary()) as running:
        yield running


@pytest.mark.crowd
def test_forty_processes_on_four_hosts_refresh_an_expired_token_once(
    tmp_path: Path, server: RedisServer
) -> None:
    fleet, auth = seed_fleet(tmp_path, server.url, HOSTS)
    asking = tmp_path / "asking"
    asking.mkdir()
    # The auth server answers nobody until all forty are inside get_token: they all race.
    commands = [
        ["race", server.url, str(host.project), str(host.config), str(auth.state_path), "30",
         str(tmp_path / "ready"), str(tmp_path / "go"), str(asking), str(HOSTS * PER_HOST)]
        for host in fleet for _ in range(PER_HOST)
    ]
    reports = run_together(commands, tmp_path / "ready", tmp_path / "go")

    assert len(reports) == HOSTS * PER_HOST
    assert len({report["token"] for report in reports}) == 1
    stats = auth.stats()
    assert stats["refreshes"] + stats["logins"] == 1, stats
    assert stats["replays"] == 0
    first_done = min(report["done"] for report in reports)
    racing = sum(report["started"] < first_done for report in reports)
    assert racing == HOSTS * PER_HOST, f"only {racing} processes overlapped"
    stored = fleet_container(server.url, fleet[-1], auth).token_store().load()
    assert stored is not None and stored.token.raw == reports[0]["token"]


@pytest.mark.posix
def test_a_holder_killed_mid_refresh_loses_its_lease_and_another_host_completes(
    tmp_path: Path, server: RedisServer
) -> None:
    fleet, auth = seed_fleet(tmp_path, server.url, 2)
    stuck_host, other = fleet
    ready, go, entered = tmp_path / "ready", tmp_path / "go", tmp_path / "entered"
    ready.mkdir()
    waiter = start_children(["race", server.url, str(other.project), str(other.config),
                             str(auth.state_path), "2", str(ready), str(go)])
    while not any(ready.iterdir()):  # the waiter is up before the holder takes the lock
        assert waiter.poll() is None, waiter.communicate()[1]
        time.sleep(0.02)
    holder = start_children(["stuck", server.url, str(stuck_host.project),
                             str(stuck_host.config), str(auth.state_path), "2", str(entered)])
    try:
        wait_for(entered, timeout=30)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        lock_name = fleet_container(server.url, other, auth).token_store().lock_name
        assert server.client().pttl(lock_name) > 0  # the dead holder's lease still runs
        go.touch()
        out, err = waiter.communicate(timeout=30)
    finally:
        for child in (holder, waiter):
            if child.poll() is None:
                child.kill()
                child.wait()
        for child in (holder, waiter):
            for stream in (child.stdout, child.stderr):
                if stream is not None:
                    stream.close()
    assert waiter.returncode == 0, err
    report = json.loads(out)
    assert len(report["waits"]) == 1  # it took the lock once the dead holder's lease ran out
    # The dead holder had recorded its refresh as in flight: nobody presents that token
    # again (it may have reached the server), the other host logs in instead.
    assert auth.stats() == {"logins": 1, "refreshes": 0, "replays": 0}
    stored = fleet_container(server.url, stuck_host, auth).token_store().load()
    assert stored is not None and stored.token.raw == report["token"]


def test_a_redis_restart_is_ridden_out_on_the_cached_token_then_recovered(
    tmp_path: Path, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    host = make_fleet(tmp_path, 1)[0]
    clock = FakeClock(time.time())
    gateway = ScriptedGateway(clock, {ALICE.username: ALICE.password})
    events = CountingSink()
    container = build_project(host.project, SERVER_URL, gateway, clock=clock,
                              shared=in_redis(server.url, ALICE.username),
                              config_dir=host.config, extra_sinks=(events,))
    container.credential_store().save(ALICE)
    provider = container.token_provider()
    first = provider.get_token()

    server.stop()
    clock.advance(100)
    assert provider.get_token() == first  # fresh: memory alone
    clock.advance(250)  # stale: no lock can be had, and the valid token will do
    with caplog.at_level(logging.WARNING, logger="cidx_auth.storage"):
        assert provider.get_token() == first
    assert "using the token this process loaded last" in caplog.text
    clock.advance(300)  # expired: the renewal cannot lock or save, yet hands out a token
    renewed = provider.get_token()  # by a login: without the lock no refresh token is sent
    assert renewed != first
    assert events[EventKind.STORAGE_DEGRADED] == 1

    server.start()  # same port, empty: nothing was persisted
    clock.advance(350)
    recovered = provider.get_token()
    assert recovered != renewed
    other_process = build_project(host.project, SERVER_URL, gateway, clock=clock,
                                  shared=in_redis(server.url, ALICE.username),
                                  config_dir=host.config)
    assert other_process.token_provider().get_token() == recovered  # from Redis, no call
    # Memory keeps no refresh token, and Redis came back empty: each renewal logged in.
    assert (gateway.logins, gateway.refreshes, gateway.replays) == (3, 0, 0)
