"""The scripted gateway keeps the real server's rules that matter (server-contract.md):
the lockout, refresh-token expiry, and injected grants whose refresh tokens are issued
like any other. The lockout is checked against the reference server's own rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.memory import (
    LOCKOUT_SECONDS,
    REFRESH_LIFETIME,
    FakeClock,
    ScriptedGateway,
    make_jwt,
)
from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import AccountLocked, InvalidCredentials, RefreshRejected
from cidx_auth.domain.token import Grant
from refserver.ratelimit import LoginGuard

RIGHT = Credentials("alice", "secret")
WRONG = Credentials("alice", "wrong")


def server() -> tuple[FakeClock, ScriptedGateway]:
    clock = FakeClock()
    return clock, ScriptedGateway(clock, {"alice": "secret"})


def fail(gateway: ScriptedGateway, times: int, who: Credentials = WRONG) -> None:
    for _ in range(times):
        with pytest.raises(InvalidCredentials):
            gateway.login(who)


# ---- lockout ---------------------------------------------------------------------------


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one() -> None:
    clock, gateway = server()
    fail(gateway, 5)
    with pytest.raises(AccountLocked, match="try again in 900 seconds") as locked:
        gateway.login(RIGHT)
    assert locked.value.retry_at == clock.now() + LOCKOUT_SECONDS
    assert "secret" not in str(locked.value)
    clock.advance(LOCKOUT_SECONDS - 1)
    with pytest.raises(AccountLocked, match="try again in 1 seconds"):
        gateway.login(RIGHT)
    clock.advance(1)
    assert gateway.login(RIGHT).refresh_token
    assert gateway.logins == 8  # every attempt reached the server


def test_four_wrong_passwords_do_not_lock_and_a_right_one_clears_the_count() -> None:
    _, gateway = server()
    fail(gateway, 4)
    gateway.login(RIGHT)
    fail(gateway, 4)
    assert gateway.login(RIGHT).refresh_token


def test_failures_older_than_the_window_do_not_count() -> None:
    clock, gateway = server()
    fail(gateway, 4)
    clock.advance(900)
    fail(gateway, 1)
    assert gateway.login(RIGHT).refresh_token


def test_unknown_usernames_lock_too_and_other_names_are_not_affected() -> None:
    _, gateway = server()
    fail(gateway, 5, Credentials("mallory", "guess"))
    with pytest.raises(AccountLocked):
        gateway.login(Credentials("mallory", "guess"))
    assert gateway.login(RIGHT).refresh_token


@given(st.lists(st.tuples(st.booleans(), st.integers(6, 400)), max_size=30))
def test_the_lockout_answers_as_the_reference_server_does(
    attempts: list[tuple[bool, int]]
) -> None:
    # Six seconds or more between attempts keep the server's login bucket full, so only
    # the lockout can refuse: both must refuse exactly the same attempts.
    clock, gateway = server()
    guard = LoginGuard()
    for right, wait in attempts:
        clock.advance(wait)
        now = clock.now()
        refused = guard.admit("alice", now)
        if refused is None:
            if right:
                guard.record_success("alice")
            else:
                guard.record_failure("alice", now)
        expected = "locked" if refused is not None else "ok" if right else "wrong"
        try:
            gateway.login(RIGHT if right else WRONG)
            outcome = "ok"
        except AccountLocked:
            outcome = "locked"
        except InvalidCredentials:
            outcome = "wrong"
        assert outcome == expected


# ---- refresh-token expiry ------------------------------------------------------------


def test_a_refresh_token_expires_after_seven_days_on_the_fake_clock() -> None:
    clock, gateway = server()
    first = gateway.login(RIGHT)
    clock.advance(REFRESH_LIFETIME - 1)
    second = gateway.refresh(first.refresh_token or "")
    clock.advance(REFRESH_LIFETIME - 1)  # the new token lives seven days from its issue
    third = gateway.refresh(second.refresh_token or "")
    clock.advance(REFRESH_LIFETIME)
    with pytest.raises(RefreshRejected, match="Refresh token has expired"):
        gateway.refresh(third.refresh_token or "")
    assert gateway.replays == 0


def test_the_refresh_lifetime_can_be_set() -> None:
    clock = FakeClock()
    gateway = ScriptedGateway(clock, {"alice": "secret"}, refresh_lifetime=60)
    grant = gateway.login(RIGHT)
    clock.advance(60)
    with pytest.raises(RefreshRejected, match="expired"):
        gateway.refresh(grant.refresh_token or "")


# ---- injected grants -----------------------------------------------------------------


def injected(clock: FakeClock, refresh: str) -> Grant:
    now = clock.now()
    return Grant(make_jwt({"username": "alice", "iat": now, "exp": now + 600}), refresh)


def test_an_injected_grant_s_refresh_token_works_once_then_is_a_replay() -> None:
    clock, gateway = server()
    gateway.answer_next(injected(clock, "r-injected"))
    assert gateway.login(RIGHT).refresh_token == "r-injected"
    successor = gateway.refresh("r-injected")
    assert successor.refresh_token not in (None, "r-injected")
    gateway.expected_replays = 1
    with pytest.raises(RefreshRejected, match="Token replay attack detected"):
        gateway.refresh("r-injected")
    assert gateway.replays == 1
    # The family is revoked, as on the real server: the successor is dead too.
    with pytest.raises(RefreshRejected, match="revoked due to replay_attack"):
        gateway.refresh(successor.refresh_token or "")


def test_a_grant_injected_into_a_refresh_continues_that_family() -> None:
    clock, gateway = server()
    first = gateway.login(RIGHT)
    gateway.answer_next(injected(clock, "r-next"))
    assert gateway.refresh(first.refresh_token or "").refresh_token == "r-next"
    gateway.expected_replays = 1
    with pytest.raises(RefreshRejected, match="replay"):
        gateway.refresh(first.refresh_token or "")
    with pytest.raises(RefreshRejected, match="revoked due to replay_attack"):
        gateway.refresh("r-next")


def test_an_injected_refresh_token_expires_like_any_other() -> None:
    clock, gateway = server()
    gateway.answer_next(injected(clock, "r-injected"))
    gateway.login(RIGHT)
    clock.advance(REFRESH_LIFETIME)
    with pytest.raises(RefreshRejected, match="expired"):
        gateway.refresh("r-injected")


def test_a_token_injected_again_is_a_new_token() -> None:
    clock, gateway = server()
    gateway.answer_next(injected(clock, "r-same"))
    gateway.login(RIGHT)
    gateway.answer_next(injected(clock, "r-same"))
    gateway.refresh("r-same")  # answered with the same string: issued anew
    assert gateway.refresh("r-same").refresh_token
    assert gateway.replays == 0


def test_a_token_the_server_never_issued_is_invalid_not_a_replay() -> None:
    _, gateway = server()
    for _ in range(2):
        with pytest.raises(RefreshRejected, match="Invalid refresh token"):
            gateway.refresh("planted-by-a-test")
    assert gateway.replays == 0
