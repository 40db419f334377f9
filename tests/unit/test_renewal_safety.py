"""A rotated refresh token is never presented twice, whatever goes wrong around it.

The server revokes the whole token family when a used refresh token comes back, so each
of these failure paths must leave no used refresh token where someone will send it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from adapters.events import CountingSink
from adapters.memory import make_jwt
from cidx_auth.domain.breaker import Admission
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import (
    AccountLocked,
    InvalidCredentials,
    LockTimeout,
    LockUnavailable,
    LoggedOut,
    MalformedToken,
    NotLoggedIn,
    ServerUnavailable,
    StorageError,
    UnusableLifetime,
)
from cidx_auth.domain.events import AuthEvent, EventKind
from cidx_auth.domain.rules import Rules
from cidx_auth.domain.token import Grant, Session, TokenRules, fingerprint_of, parse_access_token
from cidx_auth.service.provider import TokenProvider
from cidx_auth.service.renewal import Outcome, Renewal
from tests.unit.conftest import World, make_world


def another_process(world: World, events: CountingSink | None = None) -> TokenProvider:
    """A second provider over the same store, credentials and server."""
    return TokenProvider(
        clock=world.clock, store=world.store, credentials=world.credentials,
        gateway=world.gateway, breaker=world.container.breaker(),
        events=events or CountingSink(),
    )


def the_event(world: World, kind: EventKind) -> AuthEvent:
    """The one event of ``kind`` the provider emitted."""
    found = [event for event in world.events.events if event.kind is kind]
    assert len(found) == 1, found
    return found[0]


def lock_waits(world: World) -> list[float]:
    """From now on, record how long each caller is prepared to wait for the token lock."""
    waits: list[float] = []
    real_lock = world.store.lock

    def lock(timeout: float) -> Iterator[None]:
        waits.append(timeout)
        with real_lock(timeout):
            yield

    world.store.lock = contextlib.contextmanager(lock)  # type: ignore[method-assign]
    return waits


def in_a_thread(call: Callable[[], str]) -> tuple[threading.Thread, list[str]]:
    """Start ``call`` on a thread of its own; its result lands in the list."""
    results: list[str] = []
    thread = threading.Thread(target=lambda: results.append(call()))
    thread.start()
    return thread, results


DISK_FULL = "No space left on device"
LOCK_TIMED_OUT = (
    "another cidx process has been renewing the token for 65 s; try again, or look for a "
    "stuck cidx process"
)


def test_a_refresh_whose_answer_was_lost_is_not_sent_again(world: World) -> None:
    world.provider.get_token()
    world.clock.advance(600)
    world.gateway.lose_answers = 1
    assert world.provider.get_token()
    assert world.gateway.refreshes == 1  # not retried with the same refresh token
    assert world.gateway.logins == 2  # logged in instead
    assert world.gateway.replays == 0


def test_a_lost_refresh_answer_forgets_the_spent_refresh_token(world: World) -> None:
    world.provider.get_token()
    world.clock.advance(600)
    world.gateway.lose_answers = 1
    world.gateway.users["alice"] = "changed"  # and the login that follows fails
    with pytest.raises(InvalidCredentials):
        world.provider.get_token()
    assert world.store.session is not None and world.store.session.refresh_token is None
    world.gateway.users["alice"] = "secret"
    world.credentials.credentials = Credentials("alice", "secret")  # `cidx-auth login`
    another_process(world).get_token()  # logs in: nothing spent is sent again
    assert world.gateway.replays == 0 and world.gateway.refreshes == 1


def test_a_refused_refresh_token_is_not_sent_again(world: World) -> None:
    world.provider.get_token()
    world.gateway.revoke_all()
    world.clock.advance(600)
    world.gateway.users["alice"] = "changed"  # and the stored password no longer works
    with pytest.raises(InvalidCredentials, match="forgotten"):
        world.provider.get_token()
    assert world.store.session is not None and world.store.session.refresh_token is None
    assert world.credentials.credentials is None  # never sent again: no lockout
    with pytest.raises(NotLoggedIn, match="cidx-auth login"):
        another_process(world).get_token()
    assert (world.gateway.refreshes, world.gateway.logins) == (1, 2)


def test_a_refresh_that_never_left_is_retried(world: World) -> None:
    world.provider.get_token()
    world.clock.advance(600)
    start = world.clock.now()
    world.gateway.fail_next(ServerUnavailable("connection refused", reached=False), times=2)
    world.provider.get_token()
    assert world.gateway.refreshes == 3 and world.gateway.logins == 1
    first, second = world.clock.sleeps  # each retry says when it comes, before waiting
    assert [e for e in world.events.events if e.kind is EventKind.RETRY] == [
        AuthEvent(EventKind.RETRY, start, f"ServerUnavailable, next try in {first:.1f} s"),
        AuthEvent(
            EventKind.RETRY, start + first, f"ServerUnavailable, next try in {second:.1f} s"
        ),
    ]


def test_a_grant_breaking_the_rules_keeps_its_rotated_refresh_token(world: World) -> None:
    first = world.provider.get_token()
    world.clock.advance(301)  # stale: a failed renewal keeps the current token
    world.gateway.alg = "HS256"  # the server starts signing with an algorithm we refuse
    assert world.provider.get_token() == first
    assert world.gateway.refreshes == 1
    world.gateway.alg = "RS256"
    world.clock.advance(300)
    assert world.provider.get_token() != first
    assert world.gateway.replays == 0 and world.gateway.logins == 1


def test_a_failed_save_after_a_refresh_leaves_no_spent_token_behind(world: World) -> None:
    world.provider.get_token()
    world.clock.advance(600)
    real_save = world.store.save
    saves: list[Session] = []

    def intent_only(session: Session) -> None:
        if saves:  # the intent record is written; the rotated session is not
            raise StorageError("No space left on device")
        saves.append(session)
        real_save(session)

    world.store.save = intent_only  # type: ignore[method-assign]
    assert world.provider.get_token()
    world.store.save = real_save  # type: ignore[method-assign]
    assert world.gateway.refreshes == 1
    stored = world.store.session
    assert stored is not None and stored.refresh_token is None and stored.refresh_in_flight
    later = CountingSink()
    another_process(world, later).get_token()
    assert world.gateway.refreshes == 1 and world.gateway.logins == 2
    assert [e for e in later.events if e.kind is EventKind.REFRESH_ABANDONED] == [AuthEvent(
        EventKind.REFRESH_ABANDONED, world.clock.now(),
        "an earlier refresh never stored its answer; logging in", stored.token.fingerprint,
    )]


def test_no_refresh_leaves_without_its_intent_on_record(world: World) -> None:
    world.provider.get_token()
    world.clock.advance(600)

    def full_disk(session: object) -> None:
        raise StorageError("No space left on device")

    real_save, world.store.save = world.store.save, full_disk  # type: ignore[method-assign]
    assert world.provider.get_token()
    world.store.save = real_save  # type: ignore[method-assign]
    assert world.gateway.refreshes == 0 and world.gateway.logins == 2  # logged in instead
    assert world.events[EventKind.REFRESH_ABANDONED] == 1
    stored = world.store.session  # still the first session, its refresh token unspent
    assert stored is not None and stored.refresh_token and not stored.refresh_in_flight
    another_process(world).get_token()
    assert world.gateway.refreshes == 1 and world.gateway.logins == 2


def test_logout_in_another_process_is_not_undone(world: World) -> None:
    world.provider.get_token()
    world.store.session = None  # `cidx-auth logout --forget` elsewhere
    world.credentials.credentials = None
    world.clock.advance(600)
    with pytest.raises(NotLoggedIn, match="cidx-auth login"):
        world.provider.get_token()
    assert world.store.session is None


def test_a_logout_elsewhere_ends_a_running_process_at_its_next_renewal(world: World) -> None:
    """decisions.md, "Logout": after `cidx-auth logout` in another process, a process that
    was running neither refreshes (the store is empty) nor logs in (the password is gone),
    writes nothing back, and stops using the token it holds in memory when that goes stale,
    instead of keeping it until it expires."""
    running = world.provider
    token = running.get_token()
    another_process(world).logout()
    assert world.store.session is None and world.credentials.credentials is None
    assert running.get_token() == token  # fresh in memory: no I/O at all before it is stale
    world.clock.advance(301)  # stale, still valid: this used to be kept until it expired
    calls = world.gateway.calls
    for _ in range(2):
        with pytest.raises(LoggedOut, match="run `cidx-auth login`"):
            running.get_token()
    with pytest.raises(LoggedOut):
        asyncio.run(running.aget_token())
    assert world.gateway.calls == calls  # nothing sent: no refresh, no login
    assert world.store.session is None and world.credentials.credentials is None
    assert running.session is None  # memory forgot it too


def test_a_renewal_running_when_logout_comes_is_removed_with_the_rest(world: World) -> None:
    """logout waits for the token lock: a renewal that holds it finishes, and its new
    session (with a new refresh token) is then removed, never left behind."""
    running = world.provider
    running.get_token()
    world.clock.advance(601)  # expired: the next use renews
    world.gateway.gate = threading.Event()
    renewing, results = in_a_thread(running.get_token)
    assert world.gateway.at_gate.wait(10)
    logging_out = threading.Thread(target=another_process(world).logout)
    logging_out.start()
    world.gateway.gate.set()
    renewing.join(10)
    logging_out.join(10)
    assert results and world.store.session is None and world.credentials.credentials is None
    world.clock.advance(601)
    with pytest.raises(LoggedOut):
        running.get_token()


def test_a_token_refused_during_a_failed_renewal_is_not_handed_out() -> None:
    world = make_world()
    first = world.provider.get_token()
    world.clock.advance(301)
    world.gateway.gate = threading.Event()
    world.gateway.fail_next(ServerUnavailable("down", reached=False), times=3)
    results: list[object] = []

    def renew() -> None:
        try:
            results.append(world.provider.get_token())
        except ServerUnavailable as error:
            results.append(error)

    leader = threading.Thread(target=renew)
    leader.start()
    assert world.gateway.at_gate.wait(10)
    world.provider.invalidate(first)  # a 401 for it arrives meanwhile
    world.gateway.gate.set()
    leader.join(10)
    assert len(results) == 1 and isinstance(results[0], ServerUnavailable)
    assert world.provider.session is None  # the refused token is dropped, not kept
    assert world.provider.get_token() != first  # the next call renews instead


async def test_sync_callers_on_the_default_executor_cannot_starve_an_async_renewal() -> None:
    world = make_world()
    world.session()
    world.clock.advance(600)
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    leader = asyncio.create_task(world.provider.aget_token())
    await asyncio.sleep(0)  # the leader has started its renewal
    # The only default worker now waits for that renewal: the renewal must not need it.
    follower = loop.run_in_executor(None, world.provider.get_token)
    token = await asyncio.wait_for(leader, 15)
    assert await asyncio.wait_for(follower, 15) == token


def test_absurd_numbers_are_refused_cleanly() -> None:
    with pytest.raises(UnusableLifetime):
        parse_access_token(make_jwt({"exp": 10**400, "iat": 1}), TokenRules(), 1.0)
    # An unusable iat counts as none: the lifetime is then judged from now.
    token = parse_access_token(
        make_jwt({"exp": 1_800_000_600, "iat": -(10**400)}), TokenRules(), 1_800_000_000.0
    )
    assert token.iat is None


def test_deeply_nested_json_is_refused_cleanly() -> None:
    import base64

    deep = base64.urlsafe_b64encode(b"[" * 100_000 + b"]" * 100_000).decode().rstrip("=")
    with pytest.raises(MalformedToken):
        parse_access_token(f"{deep}.{deep}.sig", TokenRules(), 1_800_000_000.0)


def test_grant_rejection_raises_when_nothing_usable(world: World) -> None:
    now = world.clock.now()
    world.gateway.answer_next(Grant(make_jwt({"iat": now, "exp": now + 90_000}), "r"))
    with pytest.raises(UnusableLifetime):
        world.provider.get_token()


def test_without_the_lock_the_stored_refresh_token_is_never_sent(world: World) -> None:
    world.session()
    world.clock.advance(600)
    world.store.lock_failure = LockUnavailable("immutable lock file")
    token = world.provider.get_token()
    assert world.gateway.refreshes == 0 and world.gateway.logins == 1  # a new family
    assert world.events[EventKind.STORAGE_DEGRADED] == 1
    stored = world.store.session  # the login's session, saved without the lock
    assert stored is not None and stored.token.raw == token and stored.refresh_token
    world.store.lock_failure = None
    world.clock.advance(600)
    another_process(world).get_token()  # with the lock back, the stored token refreshes
    assert world.gateway.refreshes == 1


def test_a_lock_that_cannot_be_had_in_time_is_not_a_reason_to_send(world: World) -> None:
    stored = world.session()
    world.clock.advance(400)  # stale but valid: this caller does not wait for the lock
    waits = lock_waits(world)
    world.store.lock_failure = LockTimeout("held elsewhere")
    token = world.provider.get_token()
    assert world.gateway.calls == 0 and token == stored.token.raw
    assert waits == [0.0]
    assert the_event(world, EventKind.LOCK_TIMEOUT) == AuthEvent(
        EventKind.LOCK_TIMEOUT, world.clock.now(), "another process is renewing",
        stored.token.fingerprint,
    )


def test_a_leader_interrupted_mid_refresh_leaves_no_flight_and_no_token_to_replay(
    world: World,
) -> None:
    world.provider.get_token()
    world.clock.advance(600)
    world.gateway.gate = threading.Event()
    world.gateway.lose_answers = 1  # the server rotates; then the leader is stopped

    interrupted: list[str] = []

    def lead() -> None:
        try:
            world.provider.get_token()
        except KeyboardInterrupt:
            interrupted.append("ctrl-c")

    real_refresh = world.gateway.refresh

    def refresh_then_ctrl_c(token: str) -> Grant:
        with contextlib.suppress(ServerUnavailable):
            real_refresh(token)
        raise KeyboardInterrupt

    world.gateway.refresh = refresh_then_ctrl_c  # type: ignore[method-assign]
    leader = threading.Thread(target=lead)
    leader.start()
    assert world.gateway.at_gate.wait(10)
    world.gateway.gate.set()
    leader.join(10)
    assert interrupted == ["ctrl-c"]
    stored = world.store.session
    assert stored is not None and stored.refresh_in_flight and stored.refresh_token is None
    world.gateway.refresh = real_refresh  # type: ignore[method-assign]
    assert world.provider.get_token()  # no flight left hanging: this call renews
    assert world.gateway.logins == 2 and world.gateway.refreshes == 1


@pytest.mark.parametrize(("detail", "news"), [
    ("Token replay attack detected", 1),
    ("Refresh token revoked due to replay_attack", 1),
    ("Invalid refresh token", 0),
])
def test_a_replay_the_server_reports_is_told_to_the_user(
    world: World, detail: str, news: int
) -> None:
    from cidx_auth.domain.errors import RefreshRejected
    from cidx_auth.service.renewal import REPLAY_NEWS

    world.provider.get_token()
    world.clock.advance(600)
    world.gateway.fail_next(RefreshRejected(f"the server refused the refresh token ({detail})"))
    assert world.provider.get_token()
    assert world.gateway.logins == 2  # recovered by logging in
    reported = [e for e in world.events.events if e.kind is EventKind.REPLAY_REPORTED]
    assert len(reported) == news
    if news:
        assert reported[0].detail == REPLAY_NEWS and reported[0].fingerprint is not None


def test_a_refused_token_is_marked_in_the_store_and_no_process_hands_it_out(
    world: World,
) -> None:
    token = world.provider.get_token()
    world.provider.invalidate(token)  # the API said 401
    stored = world.store.session
    assert stored is not None and stored.refused and stored.token.raw == token
    assert stored.refresh_token  # the session's refresh token is still good to renew with
    fresh = another_process(world).get_token()  # it never saw the 401 itself
    assert fresh != token and world.gateway.refreshes == 1
    assert world.store.session is not None and not world.store.session.refused


def test_a_refusal_is_recorded_without_waiting_for_a_held_lock(world: World) -> None:
    token = world.provider.get_token()
    with world.store.lock(1):  # another process is renewing right now
        waits = lock_waits(world)
        done = threading.Thread(target=world.provider.invalidate, args=(token,))
        done.start()
        done.join(10)
        assert not done.is_alive()
    assert waits == [0.0]
    assert world.store.session is not None and not world.store.session.refused


@pytest.mark.parametrize("renewed_elsewhere", [True, False])
def test_a_refusal_of_a_token_no_longer_stored_leaves_the_store_alone(
    world: World, renewed_elsewhere: bool
) -> None:
    old = world.provider.get_token()
    # Since then another process renewed the session, or logged out.
    newer = world.session() if renewed_elsewhere else None
    world.store.session = newer
    world.provider.invalidate(old)
    assert world.store.session == newer  # the newer session is not marked refused


# ---- the lock-free peek, and the re-check under the lock ------------------------------


def test_a_session_another_process_renewed_is_taken_without_the_lock_or_the_server(
    world: World,
) -> None:
    world.provider.get_token()
    world.clock.advance(400)  # stale here; another process has renewed meanwhile
    renewed = world.session()
    with world.store.lock(1):  # and still holds the lock: taking the store's session needs none
        world.store.lock_wanted.clear()
        assert world.provider.get_token() == renewed.token.raw
    assert not world.store.lock_wanted.is_set()
    assert world.gateway.calls == 1  # the first login only
    assert the_event(world, EventKind.ACQUIRED) == AuthEvent(
        EventKind.ACQUIRED, world.clock.now(), "token taken from the store",
        renewed.token.fingerprint,
    )
    assert world.provider.session == replace(renewed, refresh_token=None)  # memory: none


def test_a_process_that_waited_for_the_lock_takes_the_session_renewed_meanwhile(
    world: World,
) -> None:
    world.provider.get_token()
    world.clock.advance(600)  # expired: this process must wait for the renewing one
    with world.store.lock(1):
        world.store.lock_wanted.clear()
        waiter, results = in_a_thread(world.provider.get_token)
        assert world.store.lock_wanted.wait(10)  # it has looked, and waits for the lock
        renewed = world.session()  # the holder stores its renewal, then lets go
    waiter.join(10)
    assert results == [renewed.token.raw]
    assert (world.gateway.logins, world.gateway.refreshes) == (1, 0)  # not refreshed again
    assert the_event(world, EventKind.ACQUIRED) == AuthEvent(
        EventKind.ACQUIRED, world.clock.now(), "token taken from the store",
        renewed.token.fingerprint,
    )


def test_a_clock_set_back_during_the_lock_wait_does_not_announce_the_held_token(
    world: World,
) -> None:
    held = world.provider.get_token()
    world.clock.advance(600)
    with world.store.lock(1):
        world.store.lock_wanted.clear()
        waiter, results = in_a_thread(world.provider.get_token)
        assert world.store.lock_wanted.wait(10)
        world.clock.advance(-600)  # the system clock is set back: the token is fresh again
    waiter.join(10)
    assert results == [held] and world.gateway.calls == 1
    assert world.events[EventKind.ACQUIRED] == 0  # nothing new came from the store


def test_the_stored_session_the_caller_already_holds_is_not_announced_as_acquired(
    world: World,
) -> None:
    renewal = Renewal(
        clock=world.clock, store=world.store, credentials=world.credentials,
        gateway=world.gateway, breaker=world.container.breaker(), emit=world.events.emit,
        degrade=lambda detail: None, rules=Rules(), rng=lambda: 0.5,
    )
    held = replace(world.session(), refresh_token=None)
    assert renewal.acquire(held, frozenset()) == Outcome(held)
    assert world.events[EventKind.ACQUIRED] == 0 and world.gateway.calls == 0


# ---- falling back to a still-valid token ----------------------------------------------


@pytest.mark.parametrize(("offset", "left", "stored_wins"), [
    (-300.0, 250.0, True),  # written by a host whose server clock reads 5 min behind ours
    (200.0, 100.0, False),
])
def test_the_fallback_is_the_valid_token_that_lasts_longest_on_this_clock(
    world: World, offset: float, left: float, stored_wins: bool
) -> None:
    held = world.provider.get_token()
    world.clock.advance(450)  # 150 s left on the held token
    now = world.clock.now()
    exp = now + offset + left  # server time
    raw = make_jwt({"username": "alice", "iat": exp - 600, "exp": exp})
    token = parse_access_token(raw, TokenRules(), now + offset)
    world.store.session = Session(token, "r-other", offset, "alice")
    world.store.lock_failure = LockTimeout("held elsewhere")
    assert world.provider.get_token() == (raw if stored_wins else held)
    assert the_event(world, EventKind.LOCK_TIMEOUT).fingerprint == fingerprint_of(
        raw if stored_wins else held
    )


def test_without_the_lock_a_valid_token_is_kept_rather_than_logging_in(world: World) -> None:
    first = world.provider.get_token()
    world.clock.advance(301)
    world.store.lock_failure = LockUnavailable("immutable lock file")
    assert world.provider.get_token() == first
    assert world.gateway.calls == 1
    assert the_event(world, EventKind.REFRESH_FAILED) == AuthEvent(
        EventKind.REFRESH_FAILED, world.clock.now(),
        "LockUnavailable: the token lock is unavailable; keeping the valid token",
        fingerprint_of(first),
    )
    degraded = the_event(world, EventKind.STORAGE_DEGRADED)
    assert degraded.detail == "token lock unavailable (immutable lock file)"


# ---- storage trouble ------------------------------------------------------------------


def test_an_unreadable_store_is_reported_and_a_token_still_obtained(world: World) -> None:
    world.store.failure = StorageError("Input/output error")
    assert world.provider.get_token()
    degraded = the_event(world, EventKind.STORAGE_DEGRADED)  # the first failure: the read
    assert degraded.detail == "token not loaded (StorageError: Input/output error)"


def test_an_unsent_refresh_token_that_cannot_be_put_back_is_reported_and_not_sent(
    world: World,
) -> None:
    world.session()
    world.clock.advance(600)
    real_save = world.store.save
    saves: list[Session] = []

    def put_back_fails(session: Session) -> None:
        saves.append(session)
        if len(saves) == 2:  # the intent is recorded; putting the token back fails
            raise StorageError(DISK_FULL)
        real_save(session)

    world.store.save = put_back_fails  # type: ignore[method-assign]
    world.gateway.fail_next(ServerUnavailable("connection refused", reached=False))
    assert world.provider.get_token()
    degraded = the_event(world, EventKind.STORAGE_DEGRADED)
    assert degraded.detail == f"token not saved (StorageError: {DISK_FULL})"
    # The retry finds the intent on record, so it logs in rather than refresh again.
    assert (world.gateway.refreshes, world.gateway.logins, world.gateway.replays) == (1, 1, 0)


# ---- login and logout -----------------------------------------------------------------


@pytest.mark.parametrize("command", [
    pytest.param(lambda provider: provider.login(Credentials("bob", "hunter2")), id="login"),
    pytest.param(lambda provider: provider.logout(), id="logout"),
])
def test_login_and_logout_stop_when_the_lock_wait_runs_out(
    world: World, command: Callable[[TokenProvider], object]
) -> None:
    stored = world.session()
    waits = lock_waits(world)
    world.store.lock_failure = LockTimeout("token lock not acquired within 65 s")
    with pytest.raises(LockTimeout) as timed_out:
        command(world.provider)
    assert str(timed_out.value) == LOCK_TIMED_OUT
    assert waits == [Rules().lock_wait]
    assert world.gateway.calls == 0
    assert world.store.session == stored  # nothing changed
    assert world.credentials.credentials == Credentials("alice", "secret")


def test_a_lock_timeout_that_names_its_marker_keeps_the_way_out(world: World) -> None:
    """A timeout on an ``O_EXCL`` marker says which file and how to remove it; the
    renewal's message keeps that instead of the generic advice."""
    world.session()
    world.clock.advance(600)  # nothing usable: the renewal waits for the lock
    remedy = ("the lock marker /p/.token.lock.excl is still there (empty: it names no "
              "holder); if no cidx process is running, remove it (rm -- /p/.token.lock.excl) "
              "and try again")
    failure = LockTimeout("the token lock is held by another cidx process; " + remedy)
    failure.remedy = remedy
    world.store.lock_failure = failure
    with pytest.raises(LockTimeout) as timed_out:
        world.provider.get_token()
    assert str(timed_out.value) == (
        "another cidx process has been renewing the token for 65 s; " + remedy)
    assert timed_out.value.remedy == remedy and timed_out.value.exit_code == 4
    assert world.gateway.calls == 0


def test_login_waits_out_transport_trouble_and_says_when_it_tries_again(
    world: World,
) -> None:
    world.credentials.credentials = None
    start = world.clock.now()
    world.gateway.fail_next(ServerUnavailable("connection refused", reached=False))
    session = world.provider.login(Credentials("alice", "secret"))
    assert world.gateway.logins == 2
    [delay] = world.clock.sleeps
    assert the_event(world, EventKind.RETRY) == AuthEvent(
        EventKind.RETRY, start, f"ServerUnavailable, next try in {delay:.1f} s"
    )
    assert the_event(world, EventKind.LOGGED_IN) == AuthEvent(
        EventKind.LOGGED_IN, start + delay, "user alice", session.token.fingerprint
    )
    assert world.credentials.credentials == Credentials("alice", "secret")


def test_a_locked_account_at_login_says_to_log_in_again_once_it_ends(world: World) -> None:
    world.credentials.credentials = None
    world.gateway.fail_next(AccountLocked("the account is locked for 15 minutes"))
    with pytest.raises(AccountLocked) as locked:
        world.provider.login(Credentials("alice", "secret"))
    assert str(locked.value) == (
        "the account is locked for 15 minutes; then run `cidx-auth login` again"
    )
    assert world.credentials.credentials is None


def test_a_store_that_cannot_be_read_is_no_logout(world: World) -> None:
    """Only a store read and found empty, with no password either, is a logout: one that
    cannot be read says nothing of the kind (review of issue 22), so the error is the
    plain "no stored credentials", and the password, were there one, would be used."""
    world.provider.get_token()
    world.credentials.credentials = None
    world.clock.advance(700)  # expired: a renewal is needed
    world.store.failure = StorageError("the disk is gone")
    with pytest.raises(NotLoggedIn) as refused:
        world.provider.get_token()
    assert not isinstance(refused.value, LoggedOut)
    assert str(refused.value) == "no stored credentials for this project: run `cidx-auth login`"


def test_a_logout_that_fails_halfway_has_forgotten_the_password_first(world: World) -> None:
    """The password is what logs in: a logout whose session removal fails must not leave
    it behind for the next command to log in with."""
    world.provider.get_token()
    original = world.store.clear

    def failing_clear() -> None:
        raise StorageError("cannot remove .token")

    world.store.clear = failing_clear  # type: ignore[method-assign]
    with pytest.raises(StorageError):
        world.provider.logout()
    assert world.credentials.credentials is None
    world.store.clear = original  # type: ignore[method-assign]


def test_a_renewal_probe_stopped_by_ctrl_c_gives_its_turn_back(world: World) -> None:
    """The half-open probe is this renewal's request; Ctrl-C before the server answered
    must not leave the other processes refused for 90 s while no probe is out."""
    world.provider.get_token()
    breaker = world.container.breaker()
    for _ in range(5):
        breaker.record(True)
    world.clock.advance(600)  # the open period is over and the token has expired

    def ctrl_c(token: str) -> Grant:
        raise KeyboardInterrupt

    world.gateway.refresh = ctrl_c  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        world.provider.get_token()
    assert breaker.current().probe_until is None
    assert breaker.admit() is Admission.PROBE
