"""Redis with a replica, and a Sentinel failover in the middle of a refresh.

Redis replicates asynchronously: a write the primary acknowledged can be lost when a
replica is promoted. The store therefore counts a write under the lock only once every
connected replica confirmed it (``WAIT``), and the renewal never sends the stored
refresh token behind an intent that was not confirmed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.fernet_cipher import identity_cipher
from adapters.memory import FakeClock, ScriptedGateway
from adapters.redis_connection import connect
from adapters.redis_token_store import RedisTokenStore, identity_key
from adapters.secret_sources import secret_source
from adapters.session_codec import decode_session
from cidx_auth.app.container import build_project, in_redis
from cidx_auth.domain.rules import Rules
from refserver.config import ServerConfig
from refserver.harness import RunningServer
from tests.integration.redis_support import (
    Host,
    RedisServer,
    ReplicatedRedis,
    await_until,
    info,
    make_fleet,
    redis_binary,
)
from tests.integration.storage_helpers import ALICE, SERVER_URL

pytestmark = [pytest.mark.slow, pytest.mark.posix]

PASSWORD = "pw-1234"


@pytest.fixture
def stopped_replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and its replica, synchronised; the test may stop the replica (SIGSTOP)."""
    binary = redis_binary()
    with RedisServer(binary) as primary, RedisServer(
        binary, extra=["--replicaof", "127.0.0.1", str(primary.port)]
    ) as replica:
        await_until(lambda: info(replica, "master_link_status") == "up",
                    "the replica never synchronised with the primary")
        assert replica.process is not None
        try:
            yield primary, replica
        finally:
            os.kill(replica.process.pid, signal.SIGCONT)


def test_a_write_under_the_lock_waits_for_the_replica(
    tmp_path: Path, stopped_replica: tuple[RedisServer, RedisServer]
) -> None:
    primary, replica = stopped_replica
    gateway = ScriptedGateway(FakeClock(), users={ALICE.username: ALICE.password})
    container = build_project(tmp_path, SERVER_URL, gateway, clock=gateway.clock,
                              shared=in_redis(primary.url, ALICE.username))
    container.credential_store().save(ALICE)
    token = container.token_provider().get_token()
    # Confirmed means the replica has it now, not eventually.
    stored = replica.client().get(identity_key(SERVER_URL, ALICE.username))
    assert stored is not None
    session = decode_session(stored, container.token_store()._cipher)
    assert session.token.raw == token and session.refresh_token is not None


def test_an_intent_the_replica_does_not_confirm_is_never_followed_by_the_refresh(
    tmp_path: Path, stopped_replica: tuple[RedisServer, RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    primary, replica = stopped_replica
    gateway = ScriptedGateway(FakeClock(), users={ALICE.username: ALICE.password})

    def process() -> object:  # one more cidx process on this host
        container = build_project(tmp_path, SERVER_URL, gateway, clock=gateway.clock,
                                  shared=in_redis(primary.url, ALICE.username))
        container.credential_store().save(ALICE)
        return container.token_provider()

    first = process().get_token()  # type: ignore[attr-defined]
    assert (gateway.logins, gateway.refreshes) == (1, 0)
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGSTOP)  # connected, but confirms nothing
    gateway.clock.advance(3600)  # the stored token is dead; its refresh token is not
    with caplog.at_level(logging.WARNING):
        second = process().get_token()  # type: ignore[attr-defined]
    assert second != first
    # The stored refresh token stayed home: a promoted replica may still hold it.
    assert (gateway.logins, gateway.refreshes, gateway.replays) == (2, 0, 0)
    assert "was confirmed by 0 of 1 replica(s) within 1 s, so it does not count as " \
           "written (a failover could lose it)" in caplog.text
    assert "refresh not recorded before sending" in caplog.text


def cli(host: Host, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cidx_auth", "--project", str(host.project), *args],
        input=stdin, capture_output=True, text=True, env=host_env(host), timeout=120,
        check=False,
    )


def start_cli(host: Host, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cidx_auth", "--project", str(host.project), *args],
        env=host_env(host), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def host_env(host: Host) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIDX_")}
    env["CIDX_CONFIG_DIR"] = str(host.config)
    return env


def test_a_failover_while_a_refresh_is_held_causes_no_replay_on_four_hosts(
    tmp_path: Path,
) -> None:
    hosts = make_fleet(tmp_path, 4)
    first = hosts[0]
    with ReplicatedRedis(redis_binary()) as redis_set, \
            RunningServer(ServerConfig(users={ALICE.username: PASSWORD})) as auth:
        for host in hosts:
            login = cli(host, "login", "--server", auth.url, "--username", ALICE.username,
                        "--password-stdin", "--store", redis_set.url, stdin=f"{PASSWORD}\n")
            assert login.returncode == 0, login.stderr
        key = identity_key(auth.url, ALICE.username)
        cipher = identity_cipher(auth.url, ALICE.username, secret_source(first.config, {}))
        auth.hold(seconds=600)  # the next refresh rotates, and its answer waits
        refreshing = start_cli(first, "token", "--refresh")
        others: list[subprocess.Popen[str]] = []
        try:
            auth.wait_held()  # the server has spent the stored refresh token
            # The intent reached the replica before the refresh token left.
            intent = decode_session(redis_set.replica.client().get(key), cipher)
            assert intent.refresh_token is None and intent.refresh_in_flight
            redis_set.kill_primary()
            redis_set.await_failover()
            # The worst case: the lock's last write was lost with the primary, as any
            # unreplicated write may be, so the other hosts take the lock at once.
            assert redis_set.replica.client().delete(f"{key}:lock") == 1
            others = [start_cli(host, "token", "--refresh") for host in hosts[1:]]
            for other in others:
                _, err = other.communicate(timeout=120)
                assert other.returncode == 0, err
            assert auth.release_held() == 1
            out, err = refreshing.communicate(timeout=120)
        finally:
            for process in (refreshing, *others):
                process.kill()
        assert refreshing.returncode == 0, err
        assert out.strip().count(".") == 2  # its token, kept in memory
        assert "lease ran out before the session was saved to" in err
        for host in hosts:
            for command in (["token"], ["query", "authentication"], ["status"]):
                done = cli(host, *command)
                assert done.returncode == 0, (command, done.stderr)
        totals = auth.stats()["totals"]
        stored = RedisTokenStore(connect(redis_set.url), key, cipher, rules=Rules()).load()
    # Host 0's refresh token was spent, and the intent kept every other host from it.
    assert (totals["replays"], totals["held"], totals["held_abandoned"]) == (0, 1, 0)
    assert totals["logins"] == 4 + 1, totals  # the four logins, and one after the failover
    assert stored is not None and stored.refresh_token is not None
