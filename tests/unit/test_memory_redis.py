"""The replicated Redis in memory keeps the rules the fleet simulation relies on: fenced
writes, confirmation by the replica (and by none while none is connected, behind
Sentinel), lost replies, leases extended by a keeper on the fake clock, and failovers
that take time, lose what the replica had not applied, and promote a lock that may have
expired meanwhile. Then the ownership rule over it: a failover while a refresh is in
flight causes no replay, unless confirmation is skipped."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest

from adapters.memory import (
    FakeClock,
    MemoryCredentialStore,
    MemoryStateStore,
    ScriptedGateway,
    make_jwt,
)
from adapters.memory_redis import FAILOVER_TAKES, Keyspace, Lock, MemoryRedis, MemoryRedisStore
from cidx_auth.app.container import Container
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import LockTimeout, LockUnavailable, StorageError
from cidx_auth.domain.rules import Rules
from cidx_auth.domain.token import Grant, Session, parse_access_token
from cidx_auth.ports import TokenStore
from cidx_auth.service.provider import RENEWAL_BACKOFF, TokenProvider

_serials = itertools.count()


def session(clock: FakeClock) -> Session:
    """A distinct session, issued now, with a refresh token."""
    now = clock.now()
    raw = make_jwt({"username": "alice", "iat": now, "exp": now + 600, "jti": str(next(_serials))})
    return Session(parse_access_token(raw, Rules().tokens, now), f"refresh-{raw[-12:]}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis(clock: FakeClock) -> MemoryRedis:
    return MemoryRedis(clock)


def replica(redis: MemoryRedis) -> Keyspace:
    """The replica's keyspace, which the test expects to be connected."""
    assert redis.replica is not None
    return redis.replica


def promoted(clock: FakeClock, redis: MemoryRedis) -> None:
    """A failover, and the time it takes, until the replica is the primary."""
    redis.failover()
    clock.advance(redis.failover_takes)
    assert redis.available


def test_each_process_store_is_a_token_store(redis: MemoryRedis) -> None:
    assert isinstance(redis.client(), TokenStore)


def test_the_defaults_are_the_redis_store_s(redis: MemoryRedis) -> None:
    redis_store = pytest.importorskip("adapters.redis_token_store")
    assert redis.lease == redis_store.DEFAULT_LEASE
    assert redis.replica_wait == redis_store.REPLICA_WAIT
    assert redis.failover_takes == FAILOVER_TAKES > 30.0  # Sentinel's down-after, then more


def test_a_write_outside_the_lock_is_not_confirmed_and_replicates_later(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    stored = session(clock)
    redis.client().save(stored)
    assert redis.primary.session == stored and replica(redis).session is None
    assert redis.unreplicated == 1
    redis.replicate()
    assert replica(redis).session == stored and redis.unreplicated == 0


def test_a_write_under_the_lock_counts_once_the_replica_has_it(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    store, stored = redis.client(), session(clock)
    with store.lock(0.0):
        assert replica(redis).lock is None  # taking the lock is not confirmed by itself
        store.save(stored)
        # WAIT confirmed everything written so far: the session and the lock before it
        assert replica(redis).session == stored and replica(redis).lock == redis.primary.lock
        assert redis.unreplicated == 0


def test_a_write_the_replica_does_not_confirm_fails_but_stays_on_the_primary(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    store, stored = redis.client(), session(clock)
    redis.lag_next = 1
    start = clock.now()
    with store.lock(0.0), pytest.raises(StorageError, match="did not confirm"):
        store.save(stored)
    assert clock.now() == start + redis.replica_wait  # WAIT waited for its bound
    assert redis.primary.session == stored and replica(redis).session is None
    assert redis.faults["lag"] == 1
    promoted(clock, redis)  # before the replica caught up: the write is gone
    # the lock taken, the session, the lock released: none reached the replica
    assert redis.primary.session is None and redis.faults["lost_writes"] == 3


def test_a_lost_reply_is_an_error_although_the_write_happened(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    store, first, second = redis.client(), session(clock), session(clock)
    redis.lose_acks_next = 1
    with pytest.raises(StorageError, match="reply"):
        store.save(first)
    assert redis.primary.session == first
    redis.lose_acks_next = 1
    with store.lock(0.0), pytest.raises(StorageError, match="reply"):
        store.save(second)
    assert redis.primary.session == second
    assert replica(redis).session is None  # no WAIT was sent after the lost reply
    assert redis.faults["lost_ack"] == 2


def test_no_primary_answers_while_a_failover_is_under_way(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    """Sentinel's down-after, then its election: locks, writes and reads under the lock
    fail as with Redis down; a read outside it gets the process's last loaded session
    while it is still usable, without its refresh token."""
    store, stored = redis.client(), session(clock)
    with store.lock(0.0):
        store.save(stored)
    assert store.load() == stored
    redis.failover()
    assert not redis.available and not redis.can_fail_over
    with pytest.raises(RuntimeError, match="under way"):
        redis.failover()
    with pytest.raises(LockUnavailable):
        store.lock(0.0).__enter__()
    with pytest.raises(StorageError, match="primary is down"):
        store.save(session(clock))
    copy = store.load()
    assert copy is not None and copy.token == stored.token and copy.refresh_token is None
    with pytest.raises(StorageError, match="primary is down"):
        redis.client().load()  # a process that never loaded it has no copy
    clock.advance(redis.failover_takes - 1)
    assert not redis.available
    clock.advance(1)
    assert redis.available and store.load() == stored  # the confirmed save was kept
    assert redis.faults["unavailable"] == 3


def test_a_failover_outlasting_the_lease_drops_the_lock_whose_release_it_lost(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    store, confirmed, plain = redis.client(), session(clock), session(clock)
    with store.lock(0.0):
        store.save(confirmed)
    store.save(plain)  # the release and this plain SET are not confirmed
    assert redis.failover_takes > redis.lease
    promoted(clock, redis)
    assert redis.primary.session == confirmed
    assert redis.faults["failover"] == 1 and redis.faults["lost_writes"] == 2
    assert redis.primary.lock is None  # back on the replica, but expired by its promotion
    with redis.client().lock(0.0):
        pass


def test_a_quick_failover_brings_back_a_lost_release_until_its_lease_runs_out(
    clock: FakeClock,
) -> None:
    redis = MemoryRedis(clock, failover_takes=5.0)
    store = redis.client()
    with store.lock(0.0):
        store.save(session(clock))  # confirmed: the lock with it, expiring in 30 s
    taken = clock.now()
    promoted(clock, redis)  # the release was not replicated: the lock is back ...
    assert redis.lease_end() == taken + redis.lease
    with pytest.raises(LockTimeout):
        redis.client().lock(0.0).__enter__()
    clock.advance(taken + redis.lease - clock.now())  # ... until its lease runs out
    with redis.client().lock(0.0):
        pass


def test_a_live_holder_s_keeper_extends_the_lease_and_the_replica_follows(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    holder = redis.client()
    with holder.lock(0.0):
        taken = clock.now()
        clock.advance(25)
        assert redis.primary.lock == Lock(redis.primary.lock.token, taken + 20 + redis.lease)
        assert replica(redis).lock is None  # the extensions are not replicated yet
        redis.replicate()
        assert replica(redis).lock == redis.primary.lock
        assert redis.lease_end() == math.inf  # the keeper will extend it in time
    assert redis.primary.lock is None and redis.unreplicated == 1  # the release


def test_a_holder_loses_a_lock_a_failover_promoted_expired(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    """The replica's lock expires a lease after the last extension it received; the
    failover outlasts that, so the lock is gone when the replica is promoted. The
    holder's keeper finds it gone; its fenced writes fail; another process takes over."""
    first, second, theirs = redis.client(), redis.client(), session(clock)
    with first.lock(0.0):
        first.save(session(clock))  # confirmed: the replica has the lock, 30 s ahead
        clock.advance(12)  # one extension, 10 s in, not replicated yet
        redis.failover()
        clock.advance(redis.failover_takes)  # its keeper could not reach Redis meanwhile
        assert redis.primary.lock is None
        clock.advance(redis.lease / 3)  # its next turn finds the lock gone: it stops
        assert redis.faults["lease_lost"] == 1
        with second.lock(0.0):
            redis.sentinel = False  # no replica yet: let the primary's word count here
            second.save(theirs)
            with pytest.raises(StorageError, match="lease"):
                first.save(session(clock))
            with pytest.raises(StorageError, match="lease"):
                first.clear()
    assert redis.primary.session == theirs and redis.faults["fenced_out"] == 2


def test_a_lock_outlives_a_failover_shorter_than_its_replicated_lease(
    clock: FakeClock,
) -> None:
    redis = MemoryRedis(clock, failover_takes=12.0)
    holder = redis.client()
    with holder.lock(0.0):
        clock.advance(10)  # extended to 40 s from the start
        redis.replicate()
        clock.advance(5)
        redis.failover()  # the extension at 20 s fails; promoted at 27 s, before 40 s
        clock.advance(redis.failover_takes + 5)
        token = redis.primary.lock.token if redis.primary.lock else None
        assert token is not None and redis.lease_end() == math.inf  # extended at 30 s
        assert redis.faults["lease_lost"] == 0
        with pytest.raises(LockTimeout):
            redis.client().lock(0.0).__enter__()


def test_behind_sentinel_no_replica_means_no_confirmed_write_until_the_old_primary_rejoins(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    store = redis.client()
    promoted(clock, redis)
    assert redis.replica is None and not redis.can_fail_over
    stored = session(clock)
    with store.lock(0.0):
        start = clock.now()
        with pytest.raises(StorageError, match="0 of 1 replica"):
            store.save(stored)
        assert clock.now() == start + redis.replica_wait
    assert redis.primary.session == stored  # not confirmed, but on the primary
    assert redis.faults["no_replica"] == 1
    clock.advance(redis.rejoin_after)
    assert replica(redis).session == stored and redis.can_fail_over  # a full sync
    with store.lock(0.0):
        store.save(session(clock))


def test_a_lone_primary_not_behind_sentinel_counts_on_its_own_word(clock: FakeClock) -> None:
    redis = MemoryRedis(clock, sentinel=False)
    promoted(clock, redis)
    store, stored = redis.client(), session(clock)
    with store.lock(0.0):
        store.save(stored)
    assert redis.primary.session == stored and redis.faults["no_replica"] == 0


def test_a_release_during_a_failover_is_lost(clock: FakeClock) -> None:
    redis = MemoryRedis(clock, failover_takes=5.0)
    store = redis.client()
    with store.lock(0.0):
        store.save(session(clock))
        redis.failover()
    clock.advance(5)
    assert redis.primary.lock is not None  # the confirmed lock, never released
    clock.advance(redis.lease - 5)
    assert redis.primary.lock is None  # its lease ran out


def test_a_clear_under_the_lock_is_confirmed(clock: FakeClock, redis: MemoryRedis) -> None:
    store = redis.client()
    with store.lock(0.0):
        store.save(session(clock))
        store.clear()
        assert redis.primary.session is None and replica(redis).session is None


def test_a_live_holder_keeps_its_lease_and_a_waiter_times_out(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    holder, waiter = redis.client(), redis.client()
    with holder.lock(0.0):
        clock.advance(10 * redis.lease)
        with pytest.raises(LockTimeout):
            waiter.lock(0.0).__enter__()
        start = clock.now()
        with pytest.raises(LockTimeout, match=r"gave up after 65\.0 s"):
            waiter.lock(65.0).__enter__()
        assert clock.now() == start + 65.0  # one thread: it slept the whole wait
    with waiter.lock(0.0):
        pass


def test_a_killed_holder_releases_nothing_and_its_lease_runs_out(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    holder, waiter = redis.client(), redis.client()

    def killed_mid_refresh() -> None:
        with holder.lock(0.0):
            clock.advance(15)  # its keeper extended the lease once, at 10 s
            holder.kill()
            raise KeyboardInterrupt  # the stack unwinds through the lock's block

    with pytest.raises(KeyboardInterrupt):
        killed_mid_refresh()
    assert redis.primary.lock is not None
    assert redis.lease_end() == clock.now() - 5 + redis.lease  # the last extension's
    start = clock.now()
    with waiter.lock(65.0):  # waits out the lease, then takes the lock
        assert clock.now() == start + redis.lease - 5
    with pytest.raises(StorageError, match="dead"):
        holder.save(session(clock))


def test_a_wait_too_short_for_the_lease_times_out(clock: FakeClock, redis: MemoryRedis) -> None:
    holder = redis.client()
    with holder.lock(0.0):
        holder.kill()
    with pytest.raises(LockTimeout):
        redis.client().lock(redis.lease - 1).__enter__()


def test_a_would_be_waiter_is_handed_to_the_driver(clock: FakeClock, redis: MemoryRedis) -> None:
    seen: list[tuple[float, float]] = []

    def on_wait(lease_end: float, timeout: float) -> None:
        seen.append((lease_end, timeout))
        raise RuntimeError("rescheduled")

    redis.on_wait = on_wait
    with redis.client().lock(0.0), pytest.raises(RuntimeError):
        redis.client().lock(65.0).__enter__()
    assert seen == [(math.inf, 65.0)]


def test_without_confirmation_the_primary_alone_acknowledges(clock: FakeClock) -> None:
    redis = MemoryRedis(clock, confirm_writes=False, lag=1.0)
    store, stored = redis.client(), session(clock)
    with store.lock(0.0):
        store.save(stored)  # no WAIT: lag never shows
    assert replica(redis).session is None and redis.faults["lag"] == 0
    promoted(clock, redis)
    assert redis.primary.session is None


def test_random_faults_follow_their_rates(clock: FakeClock) -> None:
    draws = iter([0.5, 0.01, 0.5, 0.5])
    redis = MemoryRedis(clock, lag=0.1, lost_acks=0.1, draw=lambda: next(draws))
    store = redis.client()
    with store.lock(0.0):
        with pytest.raises(StorageError, match="did not confirm"):
            store.save(session(clock))  # reply arrived (0.5), WAIT lagged (0.01)
        store.save(session(clock))  # 0.5, 0.5: acknowledged and confirmed
    assert redis.faults == {"lag": 1}


# ---- the ownership rule over the replicated store ----------------------------------


class Wire:
    """The server, with something that happens while a refresh's answer is on its way."""

    def __init__(self, server: ScriptedGateway) -> None:
        self.server = server
        self.during_refresh: Callable[[], None] | None = None

    def login(self, credentials: Credentials) -> Grant:
        return self.server.login(credentials)

    def refresh(self, refresh_token: str) -> Grant:
        grant = self.server.refresh(refresh_token)
        during, self.during_refresh = self.during_refresh, None
        if during is not None:
            during()
        return grant


def process(clock: FakeClock, store: MemoryRedisStore, wire: Wire) -> TokenProvider:
    container = Container(
        clock=clock, token_store=store, gateway=wire, state_store=MemoryStateStore(),
        credential_store=MemoryCredentialStore(Credentials("alice", "secret")),
    )
    return container.token_provider()  # type: ignore[no-any-return]


@pytest.mark.parametrize("confirm_writes", [True, False])
def test_a_failover_while_a_refresh_is_in_flight(clock: FakeClock, confirm_writes: bool) -> None:
    """A refreshes; the server rotates; Redis fails; B asks for a token before A's answer
    arrives, and A's answer cannot be saved. Once the replica is promoted, B renews. With
    confirmed writes the replica had A's intent: B logs in. Without, it had the session
    with the refresh token A spent: B sends it, and the server sees a replay."""
    server = ScriptedGateway(clock)
    redis = MemoryRedis(clock, confirm_writes=confirm_writes)
    wire = Wire(server)
    a = process(clock, redis.client(), wire)
    b = process(clock, redis.client(), Wire(server))
    first = a.get_token()
    redis.replicate()
    assert b.get_token() == first
    clock.advance(301)  # both stale: whoever asks first refreshes
    asked: list[str] = []

    def failover_then_b_asks() -> None:
        redis.failover()
        asked.append(b.get_token())

    wire.during_refresh = failover_then_b_asks
    renewed = a.get_token()
    assert renewed != first  # A has it, in its memory only: the save failed
    assert asked == [first]  # B kept its stale token: no lock to be had
    assert server.refreshes == 1 and server.logins == 1
    clock.advance(redis.failover_takes + RENEWAL_BACKOFF)  # B's back-off is over
    assert b.get_token() not in (first, renewed)
    if confirm_writes:
        assert server.replays == 0 and server.logins == 2  # B found the intent
        stored = redis.primary.session
        assert stored is not None and stored.refresh_token is not None
    else:
        assert server.replays == 1  # B presented the refresh token A had just spent
        server.expected_replays = 1
