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

from adapters.fernet_cipher import FernetCipher, identity_cipher
from adapters.memory import FakeClock, ScriptedGateway
from adapters.redis_connection import connect, ping, redact_url
from adapters.redis_token_store import RedisTokenStore, identity_key
from adapters.secret_sources import secret_source
from adapters.session_codec import decode_session
from cidx_auth.app.container import build_project, in_redis
from cidx_auth.domain.rules import Rules
from cidx_auth.service.provider import TokenProvider
from refserver.config import ServerConfig
from refserver.harness import RunningServer
from tests.integration.redis_support import (
    Host,
    RedisServer,
    ReplicatedRedis,
    make_fleet,
    redis_binary,
    replicating,
)
from tests.integration.storage_helpers import ALICE, SERVER_URL, known_sessions, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.posix]

PASSWORD = "pw-1234"


@pytest.fixture
def stopped_replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and its replica, synchronised; the test may stop the replica (SIGSTOP)."""
    binary = redis_binary()
    with RedisServer(binary) as primary, RedisServer(
        binary, extra=["--replicaof", "127.0.0.1", str(primary.port)]
    ) as replica:
        wait_until(lambda: replicating(primary, replica),
                   "the replica's first synchronisation with the primary", 30, 0.05)
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
    before = waits(primary)
    token = container.token_provider().get_token()
    # The login's save, under the lock, asked the replica (loopback replication is too
    # quick for "the replica has it" alone to prove that anything waited).
    assert waits(primary) == before + 1
    stored = read(replica, identity_key(SERVER_URL, ALICE.username))
    session = decode_session(stored, container.token_store()._cipher)  # type: ignore[attr-defined]
    assert session.token.raw == token and session.refresh_token is not None


def waits(server: RedisServer) -> int:
    """How many WAIT commands ``server`` has run."""
    client = server.client()
    try:
        return int(client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))
    finally:
        client.close()


def read(server: RedisServer, key: str) -> bytes:
    client = server.client()
    try:
        value = client.get(key)
    finally:
        client.close()
    assert isinstance(value, bytes), f"{key} is not on the server"
    return value


def test_an_intent_the_replica_does_not_confirm_is_never_followed_by_the_refresh(
    tmp_path: Path, stopped_replica: tuple[RedisServer, RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    primary, replica = stopped_replica
    gateway = ScriptedGateway(FakeClock(), users={ALICE.username: ALICE.password})

    def process() -> TokenProvider:  # one more cidx process on this host
        container = build_project(tmp_path, SERVER_URL, gateway, clock=gateway.clock,
                                  shared=in_redis(primary.url, ALICE.username))
        container.credential_store().save(ALICE)
        provider: TokenProvider = container.token_provider()
        return provider

    first = process().get_token()
    assert (gateway.logins, gateway.refreshes) == (1, 0)
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGSTOP)  # connected, but confirms nothing
    gateway.clock.advance(3600)  # the stored token is dead; its refresh token is not
    with caplog.at_level(logging.WARNING):
        second = process().get_token()
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
        try:
            auth.wait_held()  # the server has spent the stored refresh token
            # The intent reached the replica before the refresh token left.
            intent = decode_session(read(redis_set.replica, key), cipher)
            assert intent.refresh_token is None and intent.refresh_in_flight
            redis_set.kill_primary()
            redis_set.await_failover()
            # The worst case: the lock is gone from the promoted replica (its lease ran
            # out during the election, as with Sentinel's default 30 s), so the other
            # hosts take it at once.
            promoted = redis_set.replica.client()
            try:
                promoted.delete(f"{key}:lock")
            finally:
                promoted.close()
            # Behind Sentinel a write needs a replica's word, and none is left: the intent
            # is not confirmed, so the stored refresh token stays home and host 1 logs in.
            alone = cli(hosts[1], "token", "--refresh")
            assert alone.returncode == 0, alone.stderr
            assert "was confirmed by 0 of 1 replica(s)" in alone.stderr
            # Host 0's answer arrives at last: the lock it held is gone, so its save fails
            # and it keeps the new token in memory (the one it prints).
            assert auth.release_held() == 1
            out, err = refreshing.communicate(timeout=120)
            redis_set.rejoin()  # a replica again: writes under the lock are confirmed
            for host in hosts[2:]:  # each refreshes the token the one before it stored
                renewed = cli(host, "token", "--refresh")
                assert renewed.returncode == 0, renewed.stderr
        finally:
            refreshing.kill()
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
    assert totals["logins"] == 4 + 1, totals  # the four logins, and host 1's after the failover
    assert totals["refreshes"] == 1 + 2, totals  # host 0's (spent, held), hosts 2 and 3
    assert stored is not None and stored.refresh_token is not None


@pytest.mark.parametrize(("replicated", "waited"), [(False, 0), (True, 1)])
def test_a_redis_user_that_may_not_run_role_still_saves(
    stopped_replica: tuple[RedisServer, RedisServer], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, replicated: bool, waited: int,
) -> None:
    """ROLE is an @dangerous command that a least-privilege user may lack: a plain
    primary's writes then count on its acknowledgement (as before replicas were asked),
    and behind Sentinel they still wait for one replica."""
    primary, _ = stopped_replica
    admin = primary.client()
    try:
        admin.execute_command("ACL", "SETUSER", "app", "on", ">app-pw", "~*", "+@all",
                              "-@dangerous")
    finally:
        admin.close()
    monkeypatch.setenv("CIDX_STORE_PASSWORD", "app-pw")
    url = f"redis://app@127.0.0.1:{primary.port}/0"
    session = known_sessions()[0]
    writer = RedisTokenStore(connect(url), "cidx-auth:token:{acl}",
                             FernetCipher(lambda: b"s" * 32), clock=lambda: session.token.exp - 60,
                             url=url, rules=Rules(), replicated=replicated)
    before = waits(primary)
    with caplog.at_level(logging.INFO), writer.lock(5):
        writer.save(session)
        writer.save(session)  # ROLE is asked once: the answer does not change
    assert writer.load() == session
    assert waits(primary) - before == 2 * waited
    refusals = [r.getMessage() for r in caplog.records if "may not run ROLE" in r.getMessage()]
    assert refusals == [
        f"the Redis user of the store at {redact_url(url)} may not run ROLE; " + (
            "writes wait for one replica (Sentinel)" if replicated else
            "writes count on the primary's acknowledgement (grant +role to have them "
            "confirmed by its replicas)")]


def test_the_redis_user_readme_documents_is_enough(
    stopped_replica: tuple[RedisServer, RedisServer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    primary, _ = stopped_replica
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    grant = readme.split("`ACL SETUSER cidx on >PASSWORD ", 1)[1].split("`", 1)[0].split()
    admin = primary.client()
    try:
        admin.execute_command("ACL", "SETUSER", "cidx", "on", ">cidx-pw", *grant)
    finally:
        admin.close()
    monkeypatch.setenv("CIDX_STORE_PASSWORD", "cidx-pw")
    url = f"redis://cidx@127.0.0.1:{primary.port}/0"
    session = known_sessions()[0]
    key = identity_key(SERVER_URL, ALICE.username)
    store = RedisTokenStore(connect(url), key, FernetCipher(lambda: b"s" * 32),
                            clock=lambda: session.token.exp - 60, url=url, rules=Rules(),
                            local_cache_ttl=0.0)
    before = waits(primary)
    with store.lock(5):
        store.save(session)
        assert store.load() == session
        store.clear()
    assert store.load() is None
    ping(url)
    assert waits(primary) - before == 2  # ROLE was allowed: the replica confirmed both
