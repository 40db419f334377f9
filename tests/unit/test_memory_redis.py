"""The replicated Redis in memory keeps the rules the fleet simulation relies on: fenced
writes, confirmation by the replica, lost replies, failovers that lose what the replica
had not applied, and leases on the fake clock. Then the ownership rule over it: a
failover while a refresh is in flight causes no replay, unless confirmation is skipped."""

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
from adapters.memory_redis import MemoryRedis, MemoryRedisStore
from cidx_auth.app.container import Container
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import LockTimeout, StorageError
from cidx_auth.domain.rules import Rules
from cidx_auth.domain.token import Grant, Session, parse_access_token
from cidx_auth.ports import TokenStore
from cidx_auth.service.provider import TokenProvider

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


def test_each_process_store_is_a_token_store(redis: MemoryRedis) -> None:
    assert isinstance(redis.client(), TokenStore)


def test_a_write_outside_the_lock_is_not_confirmed_and_replicates_later(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    stored = session(clock)
    redis.client().save(stored)
    assert redis.primary.session == stored and redis.replica.session is None
    assert redis.unreplicated == 1
    redis.replicate()
    assert redis.replica.session == stored and redis.unreplicated == 0


def test_a_write_under_the_lock_counts_once_the_replica_has_it(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    store, stored = redis.client(), session(clock)
    with store.lock(0.0):
        assert redis.replica.lock is None  # taking the lock is not confirmed by itself
        store.save(stored)
        # WAIT confirmed everything written so far: the session and the lock before it
        assert redis.replica.session == stored and redis.replica.lock == redis.primary.lock
        assert redis.unreplicated == 0


def test_a_write_the_replica_does_not_confirm_fails_but_stays_on_the_primary(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    store, stored = redis.client(), session(clock)
    redis.lag_next = 1
    with store.lock(0.0), pytest.raises(StorageError, match="did not confirm"):
        store.save(stored)
    assert redis.primary.session == stored and redis.replica.session is None
    assert redis.faults["lag"] == 1
    redis.failover()  # before the replica caught up: the write is gone
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
    assert redis.replica.session is None  # no WAIT was sent after the lost reply
    assert redis.faults["lost_ack"] == 2


def test_a_failover_keeps_what_was_confirmed_and_loses_the_rest(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    store, confirmed, plain = redis.client(), session(clock), session(clock)
    with store.lock(0.0):
        store.save(confirmed)
    store.save(plain)  # the release and this plain SET are not confirmed
    redis.failover()
    assert redis.primary.session == confirmed
    assert redis.faults["failover"] == 1 and redis.faults["lost_writes"] == 2
    assert redis.primary.lock is not None  # the release was lost: the lock is back ...
    clock.advance(redis.lease - 0.5)
    with pytest.raises(LockTimeout):
        redis.client().lock(0.0).__enter__()
    clock.advance(0.5)  # ... until its lease runs out, counted from the release
    with redis.client().lock(0.0):
        pass


def test_writes_under_a_lock_a_failover_took_away_are_fenced_out(
    clock: FakeClock, redis: MemoryRedis
) -> None:
    first, second = redis.client(), redis.client()
    theirs = session(clock)
    with first.lock(0.0):
        redis.failover()  # the lock was never replicated: gone
        with second.lock(0.0):
            second.save(theirs)
            with pytest.raises(StorageError, match="lease"):
                first.save(session(clock))
            with pytest.raises(StorageError, match="lease"):
                first.clear()
    assert redis.primary.session == theirs and redis.faults["fenced_out"] == 2


def test_a_clear_under_the_lock_is_confirmed(clock: FakeClock, redis: MemoryRedis) -> None:
    store = redis.client()
    with store.lock(0.0):
        store.save(session(clock))
        store.clear()
        assert redis.primary.session is None and redis.replica.session is None


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
            clock.advance(5)
            holder.kill()
            raise KeyboardInterrupt  # the stack unwinds through the lock's block

    with pytest.raises(KeyboardInterrupt):
        killed_mid_refresh()
    assert redis.primary.lock is not None
    assert redis.lease_end() == clock.now() + redis.lease
    start = clock.now()
    with waiter.lock(65.0):  # waits out the lease, then takes the lock
        assert clock.now() == start + redis.lease
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
    assert redis.replica.session is None and redis.faults["lag"] == 0
    redis.failover()
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
    """A refreshes; the server rotates; Redis fails over; B asks for a token before A's
    answer arrives. With confirmed writes the failover kept A's intent (and the lock):
    B cannot send the spent refresh token. Without, it does, and the server sees it."""
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
    assert renewed != first
    if confirm_writes:
        assert server.replays == 0 and server.refreshes == 1
        assert asked == [first]  # B kept its stale token: the lock was still A's
        stored = redis.primary.session
        assert stored is not None and stored.token.raw == renewed
    else:
        assert server.replays == 1  # B presented the refresh token A had just spent
        server.expected_replays = 1
