"""The renewal's single steps: adopting a grant, the write-ahead intent, the refresh and
login calls, and the events and messages each of them leaves behind."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from adapters.memory import make_jwt
from cidx_auth.domain.errors import (
    AccountLocked,
    InvalidCredentials,
    NotLoggedIn,
    RateLimited,
    RefreshRejected,
    StorageError,
    UnusableLifetime,
)
from cidx_auth.domain.events import AuthEvent, EventKind
from cidx_auth.domain.token import Grant, Session, fingerprint_of
from cidx_auth.service.renewal import RELOGIN_AFTER_LOCK, REPLAY_NEWS
from tests.unit.conftest import World

DISK_FULL = "No space left on device"


def the_event(world: World, kind: EventKind) -> AuthEvent:
    """The one event of ``kind`` the provider emitted."""
    found = [event for event in world.events.events if event.kind is kind]
    assert len(found) == 1, found
    return found[0]


def answer_with(world: World, date: float | None = None, expires_in: float | None = None,
                **claims: Any) -> str:
    """Script the server's next answer: a token with exactly ``claims`` (and Date header
    ``date``); returns the raw token."""
    raw = make_jwt(claims)
    world.gateway.answer_next(Grant(raw, "r-next", expires_in, date))
    return raw


def stored(world: World) -> Session:
    session = world.store.session
    assert session is not None
    return session


# ---- adopting a grant: the server clock ---------------------------------------------


@pytest.mark.parametrize(("iat_ahead", "date_ahead"), [
    (20.0, 5.0),  # a proxy's Date a little behind the token
    (590.0, 600.0),  # a server 10 minutes ahead; its Date vouches for the iat
    (-300.0, 0.0),  # a server 5 minutes behind, and a proxy writing our time as Date
])
def test_the_clock_offset_follows_the_tokens_iat_not_a_disagreeing_date(
    world: World, iat_ahead: float, date_ahead: float
) -> None:
    now = world.clock.now()
    iat = now + iat_ahead
    answer_with(world, date=now + date_ahead, iat=iat, exp=iat + 600, username="alice")
    world.provider.get_token()
    assert stored(world).clock_offset == iat_ahead


@pytest.mark.parametrize("date_ahead", [90.0, -90.0])
def test_without_iat_the_date_header_gives_the_clock_offset(
    world: World, date_ahead: float
) -> None:
    now = world.clock.now()
    answer_with(world, date=now + date_ahead, exp=now + date_ahead + 600, username="alice")
    world.provider.get_token()
    assert stored(world).clock_offset == date_ahead


def test_without_iat_or_date_the_clocks_are_taken_to_agree(world: World) -> None:
    now = world.clock.now()
    answer_with(world, exp=now + 600, username="alice")
    world.provider.get_token()
    assert stored(world).clock_offset == 0.0


@pytest.mark.parametrize("date_ahead", [None, 0.0, -100.0])
def test_an_iat_beyond_the_skew_is_refused_when_no_date_vouches_for_it(
    world: World, date_ahead: float | None
) -> None:
    now = world.clock.now()
    date = None if date_ahead is None else now + date_ahead
    answer_with(world, date=date, iat=now + 30.5, exp=now + 630, username="alice")
    with pytest.raises(UnusableLifetime, match="issued in the future"):
        world.provider.get_token()
    assert world.store.session is None


def test_a_jwt_without_exp_lives_for_the_grants_expires_in(world: World) -> None:
    now = world.clock.now()
    answer_with(world, expires_in=600, iat=now, username="alice")
    world.provider.get_token()
    assert stored(world).token.exp == now + 600


# ---- adopting a grant: the user, the event, the save -----------------------------------


def test_a_login_names_the_session_after_the_login_when_the_token_names_nobody(
    world: World,
) -> None:
    now = world.clock.now()
    raw = answer_with(world, iat=now, exp=now + 600)
    assert world.provider.get_token() == raw
    assert stored(world).username == "alice"
    event = the_event(world, EventKind.LOGGED_IN)
    assert (event.at, event.detail, event.fingerprint) == (now, "user alice", fingerprint_of(raw))


@pytest.mark.parametrize(("username", "detail"), [("alice", "user alice"), (None, "user ?")])
def test_a_refresh_keeps_the_stored_sessions_user(
    world: World, username: str | None, detail: str
) -> None:
    world.store.session = replace(world.session(), username=username)
    world.clock.advance(600)
    now = world.clock.now()
    raw = answer_with(world, iat=now, exp=now + 600)  # a token that names nobody
    assert world.provider.get_token() == raw
    assert world.gateway.refreshes == 1
    assert stored(world).username == username
    event = the_event(world, EventKind.REFRESHED)
    assert (event.at, event.detail, event.fingerprint) == (now, detail, fingerprint_of(raw))


def test_a_session_that_cannot_be_saved_is_used_and_the_failure_reported(
    world: World,
) -> None:
    def full_disk(session: Session) -> None:
        raise StorageError(DISK_FULL)

    world.store.save = full_disk  # type: ignore[method-assign]
    assert world.provider.get_token()
    degraded = the_event(world, EventKind.STORAGE_DEGRADED)
    assert degraded.detail == f"token not saved (StorageError: {DISK_FULL})"


# ---- the write-ahead intent -----------------------------------------------------------


def stored_at_each(world: World, call: str) -> list[Session | None]:
    """What the store holds each time the server's ``call`` (refresh, login) is made."""
    real = getattr(world.gateway, call)
    seen: list[Session | None] = []

    def watched(*args: Any) -> Grant:
        seen.append(world.store.session)
        return real(*args)

    setattr(world.gateway, call, watched)
    return seen


def test_the_intent_is_stored_before_the_refresh_token_leaves(world: World) -> None:
    first = world.session()
    world.clock.advance(600)
    on_record = stored_at_each(world, "refresh")
    world.provider.get_token()
    assert on_record == [replace(first, refresh_token=None, refresh_in_flight=True)]
    assert stored(world).refresh_token and not stored(world).refresh_in_flight


def test_a_refresh_whose_answer_is_lost_leaves_the_intent_and_says_so(world: World) -> None:
    first = world.session()
    world.clock.advance(600)
    now = world.clock.now()
    world.gateway.lose_answers = 1
    at_login = stored_at_each(world, "login")
    world.provider.get_token()
    assert at_login == [replace(first, refresh_token=None, refresh_in_flight=True)]
    failed = the_event(world, EventKind.REFRESH_FAILED)
    assert failed == AuthEvent(
        EventKind.REFRESH_FAILED, now, "answer lost: read timed out: the answer was lost",
        first.token.fingerprint,
    )
    assert world.events[EventKind.RELOGGED_IN] == 1


def test_an_intent_that_cannot_be_stored_stops_the_refresh_and_says_so(world: World) -> None:
    first = world.session()
    world.clock.advance(600)
    now = world.clock.now()

    def full_disk(session: Session) -> None:
        raise StorageError(DISK_FULL)

    world.store.save = full_disk  # type: ignore[method-assign]
    assert world.provider.get_token()
    assert world.gateway.refreshes == 0 and world.gateway.logins == 1
    assert the_event(world, EventKind.REFRESH_ABANDONED) == AuthEvent(
        EventKind.REFRESH_ABANDONED, now, "the refresh could not be recorded first; logging in",
        first.token.fingerprint,
    )
    degraded = the_event(world, EventKind.STORAGE_DEGRADED)  # the first failure is reported
    assert degraded.detail == f"refresh not recorded before sending ({DISK_FULL})"


# ---- a refused refresh ----------------------------------------------------------------


@pytest.mark.parametrize("error", [
    RefreshRejected("Invalid refresh token"),
    RateLimited("too many refresh attempts"),
])
def test_a_refused_refresh_is_reported_with_the_servers_words(
    world: World, error: Exception
) -> None:
    first = world.session()
    world.clock.advance(600)
    now = world.clock.now()
    world.gateway.fail_next(error)  # type: ignore[arg-type]
    world.provider.get_token()
    assert the_event(world, EventKind.REFRESH_REFUSED) == AuthEvent(
        EventKind.REFRESH_REFUSED, now, str(error), first.token.fingerprint
    )
    assert world.events[EventKind.REPLAY_REPORTED] == 0
    assert world.gateway.logins == 1


def test_a_replay_the_server_reports_is_an_event_at_that_moment(world: World) -> None:
    first = world.session()
    world.clock.advance(600)
    now = world.clock.now()
    world.gateway.fail_next(RefreshRejected("Token replay attack detected"))
    world.provider.get_token()
    assert the_event(world, EventKind.REPLAY_REPORTED) == AuthEvent(
        EventKind.REPLAY_REPORTED, now, REPLAY_NEWS, first.token.fingerprint
    )


# ---- logging in with the stored credentials -------------------------------------------


def test_a_refused_login_is_reported_and_the_password_forgotten(world: World) -> None:
    now = world.clock.now()
    world.gateway.users["alice"] = "changed"
    with pytest.raises(InvalidCredentials) as refused:
        world.provider.get_token()
    assert str(refused.value) == (
        "the server refused the username or password (the stored password has been forgotten)"
    )
    assert world.credentials.credentials is None
    assert the_event(world, EventKind.LOGIN_REFUSED) == AuthEvent(
        EventKind.LOGIN_REFUSED, now, "user alice: the server refused the username or password"
    )


def test_a_refused_login_is_reported_even_when_the_password_cannot_be_forgotten(
    world: World,
) -> None:
    def broken_clear() -> None:
        raise StorageError("read-only file system")

    world.credentials.clear = broken_clear  # type: ignore[method-assign]
    world.gateway.users["alice"] = "changed"
    with pytest.raises(InvalidCredentials) as refused:
        world.provider.get_token()
    assert world.events[EventKind.LOGIN_REFUSED] == 1
    assert str(refused.value) == (
        "the server refused the username or password (the stored password could not be "
        "removed, so the next command sends it again: run `cidx-auth login` to replace it)"
    )


def test_a_locked_account_keeps_the_stored_password_and_says_what_happens_next(
    world: World,
) -> None:
    world.gateway.fail_next(AccountLocked("the account is locked for 15 minutes"))
    with pytest.raises(AccountLocked) as locked:
        world.provider.get_token()
    assert str(locked.value) == f"the account is locked for 15 minutes; {RELOGIN_AFTER_LOCK}"
    assert world.credentials.credentials is not None


def test_without_stored_credentials_the_user_is_told_to_log_in(world: World) -> None:
    world.credentials.credentials = None
    with pytest.raises(NotLoggedIn) as missing:
        world.provider.get_token()
    assert str(missing.value) == (  # nothing stored at all: a logout, said so
        "not logged in (nothing stored for this project: logged out): run `cidx-auth login`"
    )
