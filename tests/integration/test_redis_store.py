"""RedisTokenStore against a real redis-server on loopback: format, TTL, damage, lock."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from adapters.fernet_cipher import FernetCipher
from adapters.file_token_store import FileTokenStore
from adapters.redis_connection import check_store_url, connect, ping, redact_url
from adapters.redis_token_store import (
    REFRESH_MARGIN,
    RedisTokenStore,
    identity_key,
)
from cidx_auth.domain.errors import ConfigurationError, LockTimeout, StorageError
from cidx_auth.domain.rules import Rules
from cidx_auth.domain.token import session_from_dict
from tests.integration.redis_support import RedisServer, free_port, redis_binary
from tests.integration.storage_helpers import SERVER_URL, known_sessions, wait_until

pytestmark = pytest.mark.slow

KEY = identity_key(SERVER_URL, "alice")


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer(redis_binary()) as running:
        yield running


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    connection = connect(server.url)
    connection.flushall()
    yield connection
    connection.close()


def cipher(secret: bytes = b"s" * 32) -> FernetCipher:
    return FernetCipher(lambda: secret)


def store(client: redis.Redis, **options: Any) -> RedisTokenStore:
    options.setdefault("local_cache_ttl", 0.0)
    options.setdefault("rules", Rules())
    return RedisTokenStore(client, KEY, options.pop("cipher", cipher()), **options)


def test_a_session_round_trips_between_stores_and_carries_a_ttl(client: redis.Redis) -> None:
    session = known_sessions()[0]
    now = session.token.exp - 100  # 100 s of access-token life left
    writer = store(client, clock=lambda: now)
    with writer.lock(1):
        writer.save(session)
    assert store(client).load() == session
    assert REFRESH_MARGIN + 95 <= client.ttl(KEY) <= REFRESH_MARGIN + 101
    assert not client.exists(f"{KEY}:lock")  # released


def test_an_expired_session_still_keeps_the_refresh_margin(client: redis.Redis) -> None:
    session = known_sessions()[0]
    writer = store(client, clock=lambda: session.token.exp + 3600)
    writer.save(session)
    assert REFRESH_MARGIN - 5 <= client.ttl(KEY) <= REFRESH_MARGIN


def test_the_payload_is_the_file_stores_payload(client: redis.Redis, tmp_path: Path) -> None:
    session = known_sessions()[1]
    files = FileTokenStore(tmp_path / ".token", tmp_path / ".token.lock", cipher())
    with files.lock(1):
        files.save(session)
    client.set(KEY, (tmp_path / ".token").read_bytes())
    assert store(client).load() == session
    store(client).save(known_sessions()[0])
    plaintext = cipher().decrypt(client.get(KEY))
    assert session_from_dict(json.loads(plaintext)) == known_sessions()[0]


def test_keys_name_the_identity_and_keep_it_private() -> None:
    assert identity_key(SERVER_URL + "/", "alice") == KEY
    assert identity_key(SERVER_URL, "bob") != KEY
    assert KEY.startswith("cidx-auth:token:{") and KEY.endswith("}")
    assert "alice" not in KEY and "cidx.test" not in KEY


@pytest.mark.parametrize("payload", [b"garbage", b"x" * 70_000, None])
def test_a_damaged_or_foreign_value_reads_as_none_with_a_warning(
    client: redis.Redis, caplog: pytest.LogCaptureFixture, payload: bytes | None
) -> None:
    if payload is None:  # written by a host whose per-user secret differs
        store(client, cipher=cipher(b"o" * 32)).save(known_sessions()[0])
    else:
        client.set(KEY, payload)
    with caplog.at_level(logging.WARNING, logger="cidx_auth.storage"):
        assert store(client).load() is None
    assert "could not be used" in caplog.text and "left it in place" in caplog.text
    assert client.exists(KEY)  # not ours to remove without the lock


def test_a_damaged_value_is_set_aside_by_the_lock_holder(
    client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    client.set(KEY, b"garbage", ex=60)
    holder = store(client)
    with caplog.at_level(logging.WARNING, logger="cidx_auth.storage"), holder.lock(1):
        assert holder.load() is None
    assert not client.exists(KEY)
    assert client.get(f"{KEY}:corrupt") == b"garbage"
    assert 0 < client.ttl(f"{KEY}:corrupt") <= 24 * 3600
    assert "set it aside" in caplog.text
    assert "garbage" not in caplog.text


def test_the_lock_times_out_as_lock_timeout(client: redis.Redis) -> None:
    first, second = store(client), store(client)
    with first.lock(1):
        started = time.monotonic()
        with pytest.raises(LockTimeout, match="held by another cidx process"), second.lock(0.3):
            pass
        assert time.monotonic() - started > 0.2  # it waited, not gave up at once


def test_a_lost_lease_is_a_warning_and_fences_the_late_save(
    client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    late, next_holder = store(client, lease=0.2), store(client)
    with caplog.at_level(logging.WARNING, logger="cidx_auth.storage"), late.lock(1):
        # A live holder keeps its lease; here Redis loses it anyway (eviction, failover):
        client.delete(late.lock_name)
        wait_until(lambda: "was lost" in caplog.text, "the lease keeper noticing")
        with next_holder.lock(1):
            next_holder.save(known_sessions()[1])
            with pytest.raises(StorageError, match="lease ran out"):
                late.save(known_sessions()[0])
    assert "ran out before it was released" in caplog.text
    assert "lease in Redis" in caplog.text and "was lost" in caplog.text
    assert store(client).load() == known_sessions()[1]


def test_the_cache_serves_reads_outside_the_lock_only(client: redis.Redis) -> None:
    cached = store(client, local_cache_ttl=60)
    cached.save(known_sessions()[0])
    store(client).save(known_sessions()[1])  # another host refreshed
    assert cached.load() == known_sessions()[0]
    with cached.lock(1):
        assert cached.load() == known_sessions()[1]


def test_clear_removes_the_session_under_the_lock(client: redis.Redis) -> None:
    shared = store(client)
    shared.save(known_sessions()[0])
    with shared.lock(1):
        shared.clear()
        assert client.exists(shared.lock_name)  # the lock itself is left alone
    assert shared.load() is None and not client.exists(KEY)


def test_clear_outside_the_lock_removes_the_session(client: redis.Redis) -> None:
    shared = store(client)
    shared.save(known_sessions()[0])
    shared.clear()
    assert shared.load() is None and not client.exists(KEY)


def test_a_lost_lease_fences_the_late_clear(server: RedisServer, client: redis.Redis) -> None:
    late, next_holder = store(client), store(client)
    with late.lock(1):
        client.delete(late.lock_name)  # lost (eviction, failover, a stall past the lease)
        with next_holder.lock(1):
            next_holder.save(known_sessions()[1])
            with pytest.raises(StorageError, match=r"lease ran out.*nothing was deleted"):
                late.clear()
    other_host = connect(server.url)
    try:
        assert store(other_host).load() == known_sessions()[1]
    finally:
        other_host.close()


def test_writes_right_after_the_lease_is_lost_are_fenced(client: redis.Redis) -> None:
    shared = store(client)
    shared.save(known_sessions()[1])
    with shared.lock(1):
        client.delete(shared.lock_name)  # nobody holds it yet: still not this holder's
        with pytest.raises(StorageError, match="lease ran out"):
            shared.save(known_sessions()[0])
        with pytest.raises(StorageError, match="nothing was deleted"):
            shared.clear()
    assert store(client).load() == known_sessions()[1]


def test_unreachable_redis_is_a_storage_error_naming_the_url_without_password() -> None:
    url = f"redis://worker:hunter2@127.0.0.1:{free_port()}/3"
    down = store(connect(url), url=url)
    for attempt in (down.load, lambda: down.save(known_sessions()[0]), down.clear):
        with pytest.raises(StorageError) as caught:
            attempt()
        assert f"redis://127.0.0.1:{url.rsplit(':', 1)[1]}" in str(caught.value)
        assert "hunter2" not in str(caught.value) and "worker" not in str(caught.value)
    with pytest.raises(StorageError, match="take the token lock"), down.lock(1):
        pass
    with pytest.raises(StorageError, match=r"did not answer .*running and reachable"):
        ping(url)


def test_a_wrong_password_is_named_as_such_and_not_printed(server: RedisServer) -> None:
    url = server.url.replace("redis://", "redis://worker:hunter2@")
    with pytest.raises(StorageError, match="user, and the password in CIDX_STORE_PASSWORD") \
            as caught:
        store(connect(url), url=url).load()
    assert "hunter2" not in str(caught.value)


def test_under_the_lock_only_redis_answers(server: RedisServer) -> None:
    session = known_sessions()[0]
    with RedisServer(server.binary) as own:
        shared = store(connect(own.url), clock=lambda: session.token.exp - 200)
        shared.save(session)
        assert shared.load() == session  # cached now
        with shared.lock(5):
            own.stop()
            with pytest.raises(StorageError, match="read the session"):
                shared.load()  # no stale copy stands in for the shared session


def test_a_valid_cached_token_outlives_an_outage(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    session = known_sessions()[0]
    clock = [session.token.exp - 200]
    with RedisServer(server.binary) as own:
        shared = store(connect(own.url), clock=lambda: clock[0])
        shared.save(session)
        own.stop()
        with caplog.at_level(logging.WARNING, logger="cidx_auth.storage"):
            cached = shared.load()
        assert cached is not None and cached.token == session.token
        assert cached.refresh_token is None  # another host may have spent it meanwhile
        assert "cannot be reached" in caplog.text
        clock[0] = session.token.exp  # no longer valid: nothing to fall back on
        with pytest.raises(StorageError, match="read the session"):
            shared.load()


@pytest.mark.parametrize("url", ["http://h:1", "redis://", "redis://h:x/0", "redis://h/db",
                                 " file:///tmp/x"])
def test_store_urls_other_than_redis_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"redis://|database"):
        check_store_url(url)


def test_urls_are_printed_without_credentials() -> None:
    assert redact_url("rediss://u:p@[::1]:6380/2?password=p") == "rediss://[::1]:6380/2"
    assert redact_url("redis://:p@h/0") == "redis://h/0"
    assert check_store_url(" redis://h:6379/1 ") == "redis://h:6379/1"


def test_a_live_holder_keeps_its_lease_past_its_length(client: redis.Redis) -> None:
    holder, other = store(client, lease=0.3), store(client)
    with holder.lock(1):
        time.sleep(1.0)  # a slow renewal: three lease lengths
        with pytest.raises(LockTimeout), other.lock(0.1):
            pass  # still held: the lease was extended, nobody else got in
        holder.save(known_sessions()[0])  # and the fenced save still lands
    assert store(client).load() == known_sessions()[0]
