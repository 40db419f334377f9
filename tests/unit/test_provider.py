"""The token provider's lifecycle: fast path, proactive refresh, renewal, fallbacks."""

from __future__ import annotations

import asyncio
import threading

import pytest

from adapters.memory import make_jwt
from cidx_auth.domain.breaker import BreakerState
from cidx_auth.domain.errors import (
    CircuitOpen,
    DisallowedAlgorithm,
    InvalidCredentials,
    LockTimeout,
    NotLoggedIn,
    RateLimited,
    RefreshRejected,
    ServerUnavailable,
    StorageError,
)
from cidx_auth.domain.events import AuthEvent, EventKind
from cidx_auth.domain.expiry import TokenState
from cidx_auth.domain.rules import Rules
from cidx_auth.domain.token import Grant, fingerprint_of
from tests.unit.conftest import World, make_world


def events_of(world: World, kind: EventKind) -> list[AuthEvent]:
    return [event for event in world.events.events if event.kind is kind]


def deadlines(world: World) -> tuple[float, float]:
    """(stale_at, expired_at) of the provider's token, on the client clock."""
    session = world.provider.session
    assert session is not None
    return Rules().expiry.deadlines(session.token, session.clock_offset)


def test_first_call_logs_in_and_stores_the_session(world: World) -> None:
    token = world.provider.get_token()
    assert world.gateway.logins == 1 and world.gateway.refreshes == 0
    assert world.store.session is not None and world.store.session.token.raw == token
    assert world.events[EventKind.LOGGED_IN] == 1
    assert world.state.read().counters == {"logins": 1}


def test_fresh_token_fast_path_does_no_io(world: World) -> None:
    token = world.provider.get_token()
    loads, saves = world.store.loads, world.store.saves
    world.clock.advance(299)
    assert all(world.provider.get_token() == token for _ in range(100))
    assert (world.store.loads, world.store.saves, world.gateway.calls) == (loads, saves, 1)
    assert world.provider.state() is TokenState.FRESH


def test_a_stored_session_is_reused_without_authenticating(world: World) -> None:
    stored = world.session()
    assert world.provider.get_token() == stored.token.raw
    assert world.gateway.calls == 0
    assert world.events[EventKind.ACQUIRED] == 1


def test_stale_token_is_refreshed_proactively_once(world: World) -> None:
    first = world.provider.get_token()
    world.clock.advance(301)
    assert world.provider.state() is TokenState.STALE
    second = world.provider.get_token()
    assert second != first
    assert world.gateway.refreshes == 1 and world.gateway.logins == 1
    assert world.provider.get_token() == second and world.gateway.refreshes == 1
    assert world.state.read().last_refresh == world.clock.now()


def test_failed_proactive_refresh_keeps_the_valid_token_and_backs_off(world: World) -> None:
    first = world.provider.get_token()
    world.clock.advance(301)
    world.gateway.fail_next(ServerUnavailable("refused", reached=False), times=2)
    assert world.provider.get_token() == first
    # One attempt, no waiting: the caller has a valid token to get on with.
    assert world.gateway.refreshes == 1 and world.clock.sleeps == []
    assert world.events[EventKind.REFRESH_FAILED] == 1
    # The refresh never left, so its token went back into the store, unspent.
    stored = world.store.session
    assert stored is not None and stored.refresh_token and not stored.refresh_in_flight
    world.clock.advance(10)
    assert world.provider.get_token() == first and world.gateway.refreshes == 1
    world.clock.advance(25)  # past the 30 s renewal back-off; the server is still down
    assert world.provider.get_token() == first and world.gateway.refreshes == 2
    world.clock.advance(31)
    assert world.provider.get_token() != first and world.gateway.refreshes == 3


def test_expired_token_is_refreshed_before_use(world: World) -> None:
    first = world.provider.get_token()
    world.clock.advance(575)
    assert world.provider.state() is TokenState.EXPIRED
    assert world.provider.get_token() != first
    assert world.gateway.refreshes == 1


def test_refused_refresh_falls_back_to_exactly_one_login(world: World) -> None:
    world.provider.get_token()
    world.gateway.revoke_all()
    world.clock.advance(600)
    world.provider.get_token()
    assert (world.gateway.refreshes, world.gateway.logins) == (1, 2)
    assert world.events[EventKind.REFRESH_REFUSED] == 1
    assert world.events[EventKind.RELOGGED_IN] == 1
    counters = world.state.read().counters
    assert counters["relogins"] == 1 and counters["failures"] == 1


def test_refused_relogin_is_tried_once_and_explained(world: World) -> None:
    world.provider.get_token()
    world.gateway.revoke_all()
    world.gateway.users["alice"] = "changed"
    world.clock.advance(600)
    with pytest.raises(InvalidCredentials, match="refused"):
        world.provider.get_token()
    assert (world.gateway.refreshes, world.gateway.logins) == (1, 2)
    assert world.clock.sleeps == []
    assert world.events[EventKind.LOGIN_REFUSED] == 1


def test_refresh_limiter_429_also_falls_back_to_login(world: World) -> None:
    world.provider.get_token()
    world.clock.advance(600)
    world.gateway.fail_next(RateLimited("Too many failed attempts"))
    world.provider.get_token()
    assert world.gateway.logins == 2 and world.gateway.refreshes == 1  # not retried


def test_without_credentials_the_user_is_told_to_log_in() -> None:
    world = make_world(login_as=None)
    with pytest.raises(NotLoggedIn, match="cidx-auth login"):
        world.provider.get_token()
    assert world.gateway.calls == 0


def test_transport_errors_are_retried_with_jittered_backoff(world: World) -> None:
    world.gateway.fail_next(ServerUnavailable("down"), times=2)
    assert world.provider.get_token()
    assert world.gateway.logins == 3
    assert len(world.clock.sleeps) == 2
    assert all(0 <= s <= 2 for s in world.clock.sleeps)
    assert world.events[EventKind.RETRY] == 2


def test_retry_after_is_waited_out(world: World) -> None:
    world.gateway.fail_next(ServerUnavailable("busy", retry_after=12))
    world.provider.get_token()
    assert world.clock.sleeps == [12]


def test_transport_failure_with_no_valid_token_surfaces(world: World) -> None:
    world.gateway.fail_next(ServerUnavailable("down"), times=3)
    with pytest.raises(ServerUnavailable):
        world.provider.get_token()
    assert world.gateway.logins == 3


def test_breaker_opens_after_five_failures_and_fails_fast(world: World) -> None:
    world.gateway.fail_next(ServerUnavailable("down"), times=5)
    with pytest.raises(ServerUnavailable):
        world.provider.get_token()  # 3 attempts
    with pytest.raises(CircuitOpen):
        world.provider.get_token()  # 2 more: the 5th opens the circuit, the 3rd attempt stops
    assert world.gateway.logins == 5
    assert world.events[EventKind.BREAKER] == 1
    with pytest.raises(CircuitOpen, match="next attempt after"):
        world.provider.get_token()
    assert world.gateway.logins == 5
    opened = world.container.breaker().current().open_until
    assert opened - world.clock.now() <= 30  # the first open period (retries slept some)
    world.clock.advance(opened - world.clock.now() - 0.1)
    with pytest.raises(CircuitOpen):
        world.provider.get_token()
    world.clock.advance(0.1)
    assert world.provider.get_token()  # the half-open probe succeeds
    assert world.gateway.logins == 6
    assert world.container.breaker().current().circuit.value == "closed"


def open_the_circuit(world: World, retry_after: float | None = None) -> None:
    """Five failures, through the provider's own retries."""
    world.gateway.fail_next(ServerUnavailable("down", retry_after), times=5)
    for _ in range(5):
        with pytest.raises((ServerUnavailable, CircuitOpen)):
            world.provider.get_token()
        if world.gateway.logins == 5:
            break
    assert world.container.breaker().current().circuit.value == "open"


def test_failed_probes_keep_the_circuit_open_longer_and_a_success_resets_it(
        world: World) -> None:
    open_the_circuit(world)
    breaker = world.container.breaker()
    for period in (60, 120):
        world.clock.advance(breaker.current().open_until - world.clock.now())
        probed = world.clock.now()
        world.gateway.fail_next(ServerUnavailable("still down"))
        with pytest.raises((ServerUnavailable, CircuitOpen)):
            world.provider.get_token()  # the probe fails; its retry finds the circuit open
        assert breaker.current().open_until == probed + period
    world.clock.advance(breaker.current().open_until - world.clock.now())
    assert world.provider.get_token()  # the server is back: the probe succeeds
    assert breaker.current().circuit.value == "closed"
    assert breaker.current().open_period == 30


def test_a_retry_after_of_years_holds_the_circuit_open_for_an_hour_at_most(
        world: World) -> None:
    open_the_circuit(world, retry_after=99_999_999)
    assert world.clock.sleeps == []  # nobody waits out years either: each call failed at once
    assert world.container.breaker().current().open_until == world.clock.now() + 3600
    world.clock.advance(3599)
    with pytest.raises(CircuitOpen):
        world.provider.get_token()
    world.clock.advance(1)
    assert world.provider.get_token()


def test_reset_closes_an_open_circuit(world: World) -> None:
    open_the_circuit(world)
    breaker = world.container.breaker()
    breaker.reset()
    assert breaker.current() == BreakerState()
    assert world.provider.get_token()  # no waiting: the next call goes out


def test_reload_from_store_picks_up_another_process_refresh(world: World) -> None:
    first = world.provider.get_token()
    world.clock.advance(575)
    newer = world.session()  # another process refreshed meanwhile
    assert world.provider.get_token() == newer.token.raw != first
    assert world.gateway.refreshes == 0


def test_invalidate_drops_only_the_current_token(world: World) -> None:
    first = world.provider.get_token()
    world.provider.invalidate("some.other.token")
    assert world.provider.get_token() == first and world.gateway.calls == 1
    world.provider.invalidate(first)
    second = world.provider.get_token()
    assert second != first and world.gateway.refreshes == 1
    world.provider.invalidate(first)  # a late report about the old token
    assert world.provider.get_token() == second and world.gateway.refreshes == 1
    assert world.events[EventKind.INVALIDATED] == 1


def test_invalidated_token_in_the_store_is_not_reused(world: World) -> None:
    stored = world.session()
    world.provider.invalidate(stored.token.raw)
    assert world.provider.get_token() != stored.token.raw
    assert world.gateway.refreshes == 1


def test_twenty_concurrent_invalidations_cost_one_refresh(world: World) -> None:
    token = world.provider.get_token()
    barrier = threading.Barrier(20)
    results: list[str] = []

    def report() -> None:
        barrier.wait()
        world.provider.invalidate(token)
        results.append(world.provider.get_token())

    threads = [threading.Thread(target=report) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert world.gateway.refreshes == 1
    assert len(set(results)) == 1 and results[0] != token


def test_storage_failure_degrades_to_memory_with_one_warning(world: World) -> None:
    world.store.failure = StorageError("disk full")
    first = world.provider.get_token()
    world.clock.advance(301)
    # Stale but valid, and no lock to be had: it is kept (a login per stale window in
    # every process would run a crowd into the server's login limiter).
    assert world.provider.get_token() == first and world.gateway.logins == 1
    world.clock.advance(300)  # expired now: without the lock, a login
    second = world.provider.get_token()
    assert second != first
    assert world.events[EventKind.STORAGE_DEGRADED] == 1
    # Without the lock and the intent record, the stored refresh token is not this
    # process's to send, and memory keeps none: the renewal is a login (a new family).
    assert world.gateway.refreshes == 0 and world.gateway.logins == 2


def test_lock_timeout_with_a_valid_token_uses_it() -> None:
    from cidx_auth.domain.rules import Rules

    world = make_world(rules=Rules(auth_deadline=0.01, lock_wait_margin=0.0))
    first = world.provider.get_token()
    world.clock.advance(301)
    with world.store.lock(1):
        other = threading.Thread(target=lambda: results.append(world.provider.get_token()))
        results: list[str] = []
        other.start()
        other.join()
    assert results == [first]
    assert world.events[EventKind.LOCK_TIMEOUT] == 1


def test_lock_timeout_with_an_expired_token_is_an_error() -> None:
    from cidx_auth.domain.rules import Rules

    world = make_world(rules=Rules(auth_deadline=0.01, lock_wait_margin=0.0))
    world.provider.get_token()
    world.clock.advance(600)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            world.provider.get_token()
        except LockTimeout as error:
            errors.append(error)

    with world.store.lock(1):
        t = threading.Thread(target=call)
        t.start()
        t.join()
    assert len(errors) == 1 and errors[0].exit_code == 4
    assert "another cidx process has been renewing the token" in str(errors[0])


def test_unavailable_lock_degrades_but_works(world: World) -> None:
    world.store.failure = StorageError("read-only file system")
    assert world.provider.get_token()
    assert world.events[EventKind.STORAGE_DEGRADED] == 1


def test_a_token_breaking_the_rules_is_refused(world: World) -> None:
    now = world.clock.now()
    world.gateway.answer_next(
        Grant(make_jwt({"iat": now, "exp": now + 600}, alg="none"), "r")
    )
    with pytest.raises(DisallowedAlgorithm):
        world.provider.get_token()
    assert world.store.session is None


def test_client_clock_ten_minutes_off_works(world: World) -> None:
    for offset in (600.0, -600.0):
        world = make_world()
        world.gateway.server_offset = offset
        world.gateway.send_date = True
        token = world.provider.get_token()
        assert world.provider.state() is TokenState.FRESH
        for _ in range(30):  # 30 minutes of calls, one a minute
            world.clock.advance(60)
            token = world.provider.get_token()
        assert token
        # 30 minutes of 10-minute tokens refreshed at half-life: about 6 refreshes, no loop.
        assert 5 <= world.gateway.refreshes <= 7


def test_login_and_logout(world: World) -> None:
    from cidx_auth.domain.credentials import Credentials

    world.credentials.credentials = None
    session = world.provider.login(Credentials("alice", "secret"))
    assert world.credentials.credentials == Credentials("alice", "secret")
    assert world.provider.get_token() == session.token.raw and world.gateway.logins == 1
    world.provider.logout()  # the session and the password both go (decisions.md)
    assert world.store.session is None and world.credentials.credentials is None
    with pytest.raises(NotLoggedIn):
        world.provider.get_token()


def test_login_with_wrong_password_stores_nothing(world: World) -> None:
    from cidx_auth.domain.credentials import Credentials

    world.credentials.credentials = None
    with pytest.raises(InvalidCredentials):
        world.provider.login(Credentials("alice", "wrong"))
    assert world.gateway.logins == 1
    assert world.credentials.credentials is None and world.store.session is None


def test_a_failing_event_sink_does_not_break_tokens(world: World) -> None:
    def explode(event: object) -> None:
        raise RuntimeError("observer bug")

    world.events.emit = explode  # type: ignore[method-assign]
    assert world.provider.get_token()


def test_refresh_rejected_without_stored_credentials_while_stale_keeps_token() -> None:
    world = make_world()
    first = world.provider.get_token()
    world.credentials.credentials = None
    world.gateway.fail_next(RefreshRejected("Invalid refresh token"))
    world.clock.advance(301)
    assert world.provider.get_token() == first
    assert world.events[EventKind.REFRESH_FAILED] == 1


def test_storage_coming_back_does_not_replay_a_rotated_refresh_token(world: World) -> None:
    world.provider.get_token()
    world.store.failure = StorageError("disk full")
    world.clock.advance(600)
    in_memory = world.provider.get_token()  # logged in while the store kept the old session
    world.store.failure = None
    world.clock.advance(600)
    assert world.provider.get_token() != in_memory  # the stored, unspent token refreshes
    assert world.gateway.logins == 2 and world.gateway.refreshes == 1
    assert world.store.session is not None and world.store.session.token.raw != in_memory


def test_simulated_hours_of_use_fail_nothing() -> None:
    from cidx_auth.app.simulate import simulate

    report, counts = simulate(hours=3)
    assert report.ok and report.operations > 1000
    assert counts["refreshed"] > 10 and counts["relogged_in"] >= 1


@pytest.mark.parametrize("style", ["get_token", "aget_token"])
def test_a_token_is_renewed_at_its_stale_moment_exactly(world: World, style: str) -> None:
    def call() -> str:
        if style == "aget_token":
            return asyncio.run(world.provider.aget_token())
        return world.provider.get_token()

    first = call()
    stale_at, _ = deadlines(world)
    world.clock.advance(stale_at - 0.5 - world.clock.now())
    assert call() == first and world.gateway.refreshes == 0
    world.clock.advance(0.5)
    assert world.clock.now() == stale_at
    assert call() != first and world.gateway.refreshes == 1


def test_a_token_reaching_its_expiry_during_the_back_off_is_renewed_not_handed_out(
        world: World) -> None:
    first = world.provider.get_token()
    _, expired_at = deadlines(world)
    world.clock.advance(expired_at - 10 - world.clock.now())  # stale, 10 s left
    world.gateway.fail_next(ServerUnavailable("refused", reached=False))
    assert world.provider.get_token() == first  # kept; the back-off runs past its expiry
    world.clock.advance(10)
    assert world.clock.now() == expired_at
    assert world.provider.get_token() != first and world.gateway.refreshes == 2


def test_invalidating_the_current_token_reports_it_by_fingerprint(world: World) -> None:
    first = world.provider.get_token()
    world.clock.advance(42)
    world.provider.invalidate(first)
    assert events_of(world, EventKind.INVALIDATED) == [
        AuthEvent(EventKind.INVALIDATED, world.clock.now(), "", fingerprint_of(first))
    ]


def test_the_last_32_refused_tokens_are_remembered_and_older_ones_forgotten(
        world: World) -> None:
    refused = [f"refused.token.{n}" for n in range(33)]
    for token in refused:
        world.provider.invalidate(token)
    loads = world.store.loads
    world.provider.invalidate(refused[1])  # the oldest still remembered: no store visit
    assert world.store.loads == loads
    world.provider.invalidate(refused[0])  # forgotten: marked in the store again
    assert world.store.loads == loads + 1


def test_storage_degradation_is_reported_once_with_its_cause_and_time(world: World) -> None:
    world.clock.advance(7)
    world.store.failure = StorageError("disk full")
    world.provider.get_token()
    degraded = AuthEvent(
        EventKind.STORAGE_DEGRADED, world.clock.now(), "token not loaded (StorageError: disk full)"
    )
    assert events_of(world, EventKind.STORAGE_DEGRADED) == [degraded]
    world.clock.advance(600)
    world.provider.get_token()  # still failing: no second warning
    assert events_of(world, EventKind.STORAGE_DEGRADED) == [degraded]


def test_a_failing_event_sink_is_logged_with_the_event_kind(
        caplog: pytest.LogCaptureFixture) -> None:
    from adapters.memory import MemoryStateStore, memory_ports
    from cidx_auth.service.breaker import CircuitBreaker
    from cidx_auth.service.provider import TokenProvider

    class BrokenSink:
        def emit(self, event: AuthEvent) -> None:
            raise RuntimeError("observer bug")

    ports = memory_ports()
    provider = TokenProvider(
        clock=ports.clock, store=ports.token_store, credentials=ports.credential_store,
        gateway=ports.gateway, events=BrokenSink(),
        breaker=CircuitBreaker(MemoryStateStore(), ports.clock, BrokenSink()),
    )
    with caplog.at_level("DEBUG", logger="cidx_auth.service.provider"):
        assert provider.get_token()
    failures = [r for r in caplog.records if r.name == "cidx_auth.service.provider"]
    assert [r.getMessage() for r in failures] == [
        "could not record the event logged_in (BrokenSink): RuntimeError: observer bug"]
    assert failures[0].levelname == "WARNING" and failures[0].exc_info is None  # one line
