"""RedisTokenStore against a real redis-server: what it removes on logout, and what the
user reads when the shared session cannot be used, cannot be removed, or is served from
memory during an outage (word for word, no secrets); and the lease a live holder keeps
renewing is never longer than one lease, so a holder that dies blocks others no longer.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from adapters.fernet_cipher import FernetCipher
from adapters.redis_connection import connect
from adapters.redis_token_store import RedisTokenStore, identity_key
from cidx_auth.domain.errors import StorageError
from cidx_auth.domain.rules import Rules
from tests.integration.redis_support import RedisServer, free_port, redis_binary
from tests.integration.storage_helpers import SERVER_URL, known_sessions, wait_until

pytestmark = pytest.mark.slow

KEY = identity_key(SERVER_URL, "alice")
CORRUPT = f"{KEY}:corrupt"


@contextlib.contextmanager
def redis_server(tmp_path: Path) -> Iterator[str]:
    """A redis-server of its own on loopback, without persistence; its URL."""
    with RedisServer(redis_binary()) as server:
        yield server.url


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path) as running:
        yield running


@pytest.fixture
def client(url: str) -> Iterator[redis.Redis]:
    connection = connect(url)
    yield connection
    connection.close()


def store(client: redis.Redis, url: str, **options: Any) -> RedisTokenStore:
    options.setdefault("local_cache_ttl", 0.0)
    cipher = FernetCipher(lambda: b"s" * 32)
    return RedisTokenStore(client, KEY, cipher, url=url, rules=Rules(), **options)


def storage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "cidx_auth.storage" and r.levelno == logging.WARNING]


DAMAGED = ("the shared token in Redis at {url} could not be used (stored data cannot be "
           "decrypted here: it is damaged, or it was written for another project, server, "
           "user or machine; every host sharing it needs the same per-user secret); {outcome}")


# logging out ---------------------------------------------------------------------------

def test_logging_out_removes_the_set_aside_copy_too(client: redis.Redis, url: str) -> None:
    shared = store(client, url)
    shared.save(known_sessions()[0])
    client.set(CORRUPT, b"a damaged copy that may still decrypt", ex=3600)
    shared.clear()
    assert not client.exists(KEY) and not client.exists(CORRUPT)


def test_a_late_logout_names_the_lease_and_deletes_nothing(client: redis.Redis, url: str) -> None:
    late = store(client, url)
    with late.lock(1):
        client.delete(late.lock_name)  # the lease lost (eviction, failover, a stall)
        store(client, url).save(known_sessions()[1])  # and someone stored a session
        with pytest.raises(StorageError) as caught:
            late.clear()
    assert str(caught.value) == (
        f"the token lock's 30 s lease ran out before the session was removed from Redis at "
        f"{url}; another process holds the lock now, so nothing was deleted (raise the lease "
        "if this recurs)"
    )
    assert store(client, url).load() == known_sessions()[1]


def test_a_logout_with_redis_down_names_the_action_and_the_url() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    down = store(connect(url), url)
    with pytest.raises(StorageError) as caught:
        down.clear()
    assert str(caught.value) == (
        f"could not remove the session from Redis at {url} (ConnectionError; check that it "
        "is running and reachable)"
    )


# a damaged value ---------------------------------------------------------------------

def test_a_damaged_value_outside_the_lock_is_left_in_place_with_a_warning(
    client: redis.Redis, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client.set(KEY, b"garbage")
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert store(client, url).load() is None
    assert storage_warnings(caplog) == [DAMAGED.format(
        url=url, outcome="left it in place for the lock holder to replace")]
    assert client.get(KEY) == b"garbage"


def test_a_damaged_value_set_aside_by_the_holder_says_so(
    client: redis.Redis, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client.set(KEY, b"garbage")
    holder = store(client, url)
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"), holder.lock(1):
        assert holder.load() is None
    assert storage_warnings(caplog) == [DAMAGED.format(
        url=url, outcome="set it aside as <key>:corrupt for a day, a new one will be obtained")]
    assert client.get(CORRUPT) == b"garbage" and not client.exists(KEY)


def test_a_set_aside_that_redis_fails_leaves_the_value_in_place(
    client: redis.Redis, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client.set(KEY, b"garbage")
    holder = store(client, url)

    def redis_lost(**kwargs: object) -> object:
        raise RedisConnectionError("Connection reset by peer")

    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"), holder.lock(1):
        holder._set_aside_script = redis_lost  # type: ignore[assignment]
        assert holder.load() is None
    assert storage_warnings(caplog) == [DAMAGED.format(
        url=url, outcome="left it in place for the lock holder to replace")]
    assert client.get(KEY) == b"garbage"


def test_after_a_damaged_value_the_next_load_asks_redis_again(
    client: redis.Redis, url: str
) -> None:
    now = [1_800_000_000.0]
    cached = store(client, url, local_cache_ttl=60.0, clock=lambda: now[0])
    cached.save(known_sessions()[0])
    now[0] += 61  # the cache has run out
    client.set(KEY, b"garbage")
    assert cached.load() is None
    store(client, url).save(known_sessions()[1])  # another host logs in
    assert cached.load() == known_sessions()[1]


# an outage ---------------------------------------------------------------------------

def test_a_token_served_from_memory_in_an_outage_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    session = known_sessions()[0]
    with redis_server(tmp_path) as url:
        client = connect(url)
        shared = store(client, url, clock=lambda: session.token.exp - 200)
        shared.save(session)
    try:  # the server is gone now
        with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
            served = shared.load()
    finally:
        client.close()
    assert served is not None and served.token == session.token
    assert storage_warnings(caplog) == [
        f"Redis at {url} cannot be reached (ConnectionError); using the token this process "
        "loaded last, still valid"
    ]


# the lease ---------------------------------------------------------------------------

def test_a_renewed_lease_is_never_longer_than_one_lease(client: redis.Redis, url: str) -> None:
    """A live holder renews its lease to one lease length, not by adding one: a holder
    that then dies keeps the others out for at most one lease."""
    holder = store(client, url, lease=3.0)
    with holder.lock(1):
        first = client.pttl(holder.lock_name)
        seen = [first]

        def renewed() -> bool:
            seen.append(client.pttl(holder.lock_name))
            return seen[-1] > seen[-2]

        wait_until(renewed, "the lease keeper renewing the lease", timeout=10)
        assert seen[-1] <= 3000


# writes fenced by the lease, and Redis going away ------------------------------------

def test_a_late_save_names_the_lease_and_keeps_the_token_in_memory(
    client: redis.Redis, url: str
) -> None:
    late = store(client, url)
    with late.lock(1):
        client.delete(late.lock_name)  # the lease lost
        with pytest.raises(StorageError) as caught:
            late.save(known_sessions()[0])
    assert str(caught.value) == (
        f"the token lock's 30 s lease ran out before the session was saved to Redis at "
        f"{url}; another process holds the lock now, so this one keeps its access token in "
        "memory (raise the lease if this recurs)"
    )
    assert not client.exists(KEY)


def test_a_save_with_redis_down_names_the_action_and_the_url() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with pytest.raises(StorageError) as caught:
        store(connect(url), url).save(known_sessions()[0])
    assert str(caught.value) == (
        f"could not save the session to Redis at {url} (ConnectionError; check that it "
        "is running and reachable)"
    )


def test_a_lost_lease_is_said_while_held_and_at_release(
    client: redis.Redis, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    holder = store(client, url, lease=0.3)
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"), holder.lock(1):
        client.delete(holder.lock_name)  # eviction, failover
        wait_until(lambda: bool(storage_warnings(caplog)), "the lease keeper noticing")
    assert storage_warnings(caplog) == [
        f"the token lock's lease in Redis at {url} was lost; another process may take over",
        f"the token lock's 0.3 s lease in Redis at {url} ran out before it was released; "
        "another process may have taken over meanwhile",
    ]


def test_redis_gone_under_the_lock_is_said_and_only_redis_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    session = known_sessions()[0]
    with redis_server(tmp_path) as url:
        client = connect(url)
        holder = store(client, url, lease=0.6, clock=lambda: session.token.exp - 200)
        holder.save(session)
        assert holder.load() == session
        lock = holder.lock(5)
        lock.__enter__()
    try:  # the server is gone now, the lock still "held"
        with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
            with pytest.raises(StorageError) as caught:
                holder.load()
            wait_until(lambda: bool(storage_warnings(caplog)), "the lease keeper failing")
            lock.__exit__(None, None, None)
    finally:
        client.close()
    assert str(caught.value) == (
        f"could not read the session from Redis at {url} (ConnectionError; check that it "
        "is running and reachable)"
    )
    assert set(storage_warnings(caplog)) == {
        f"could not extend the token lock's lease in Redis at {url} (ConnectionError)",
        f"could not release the token lock in Redis at {url} (ConnectionError); it expires "
        "by itself within 0.6 s",
    }


# what is read ------------------------------------------------------------------------

def test_a_value_over_the_size_limit_is_damage_and_one_at_it_is_read(
    client: redis.Redis, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    limit = 64 * 1024
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        client.set(KEY, b"g" * (limit + 1))
        assert store(client, url).load() is None
        client.set(KEY, b"g" * limit)
        assert store(client, url).load() is None
    first, second = storage_warnings(caplog)
    assert f"could not be used (the stored value is larger than {limit} bytes; " in first
    assert "could not be used (stored data cannot be decrypted here: " in second


def test_the_cache_answers_at_the_very_moment_it_was_filled(
    client: redis.Redis, url: str
) -> None:
    now = 1_800_000_000.0
    cached = store(client, url, local_cache_ttl=60.0, clock=lambda: now)
    cached.save(known_sessions()[0])
    store(client, url).save(known_sessions()[1])  # another host, the same instant
    assert cached.load() == known_sessions()[0]


def test_after_the_session_is_gone_the_next_load_asks_redis_again(
    client: redis.Redis, url: str
) -> None:
    now = [1_800_000_000.0]
    cached = store(client, url, local_cache_ttl=60.0, clock=lambda: now[0])
    cached.save(known_sessions()[0])
    now[0] += 61
    client.delete(KEY)  # logged out elsewhere
    assert cached.load() is None
    assert cached.load() is None
    store(client, url).save(known_sessions()[1])
    assert cached.load() == known_sessions()[1]


def test_a_client_that_decodes_responses_still_reads_the_session(url: str) -> None:
    text_client = redis.Redis.from_url(url, decode_responses=True)
    try:
        shared = store(text_client, url)
        shared.save(known_sessions()[0])
        assert store(text_client, url).load() == known_sessions()[0]
    finally:
        text_client.close()


def test_the_keys_life_counts_from_the_servers_clock(client: redis.Redis, url: str) -> None:
    """A session whose server clock runs 1000 s ahead of ours expires 1000 s earlier
    here: the key lives that much less."""
    base = known_sessions()[0]
    ahead = replace(base, clock_offset=1000.0)
    now = base.token.exp - 5000
    store(client, url, clock=lambda: now).save(ahead)
    assert 7 * 24 * 3600 + 3990 <= client.ttl(KEY) <= 7 * 24 * 3600 + 4000
    assert store(client, url, clock=lambda: now).load() == ahead


def test_the_stored_payload_records_when_it_was_stored(client: redis.Redis, url: str) -> None:
    now = 1_800_000_000.0
    store(client, url, clock=lambda: now).save(known_sessions()[0])
    payload = json.loads(FernetCipher(lambda: b"s" * 32).decrypt(client.get(KEY)))
    assert payload["stored_at"] == now
