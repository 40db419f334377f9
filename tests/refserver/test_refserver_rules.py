"""Properties of the pure rules: the login bucket, the lockout, refresh families, and
which access tokens a test's refusal reaches."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refserver.config import ServerConfig
from refserver.ratelimit import LoginGuard, RefreshLimiter, TokenBucket
from refserver.sessions import RefreshRejected, RefreshSessions
from refserver.testing import asgi_client, fake_app
from refserver.tokens import AccessTokens, TokenRejected

gaps = st.lists(st.floats(min_value=0, max_value=30, allow_nan=False), max_size=60)


@given(gaps)
def test_bucket_never_grants_more_than_capacity_plus_refill(steps: list[float]) -> None:
    bucket = TokenBucket(10, 6.0, 10, 0.0)
    now, granted = 0.0, 0
    for gap in steps:
        now += gap
        if bucket.take(now) == 0:
            granted += 1
        assert granted <= 10 + now / 6.0


@given(gaps)
def test_bucket_wait_is_honest(steps: list[float]) -> None:
    bucket = TokenBucket(10, 6.0, 10, 0.0)
    now = 0.0
    for gap in steps:
        now += gap
        wait = bucket.take(now)
        if wait > 0:
            assert bucket.take(now + wait + 1e-6) == 0
            now += wait + 1e-6


@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), min_size=1,
                max_size=30))
def test_lockout_countdown_never_exceeds_fifteen_minutes(steps: list[float]) -> None:
    guard = LoginGuard()
    now = 0.0
    for gap in steps:
        now += gap
        refusal = guard.admit("alice", now)
        if refusal is None:
            guard.record_failure("alice", now)
        else:
            assert 1 <= refusal.retry_after <= 900


def test_shifting_the_clock_back_does_not_drain_the_bucket() -> None:
    bucket = TokenBucket(10, 6.0, 10, 100.0)
    assert bucket.take(50.0) == 0
    assert bucket.tokens == 9


@given(st.integers(min_value=1, max_value=12))
def test_a_family_stays_valid_until_a_token_is_reused(rotations: int) -> None:
    sessions = RefreshSessions(lifetime=100)
    tokens = [sessions.open("alice", "normal_user", 0.0)]
    for _ in range(rotations):
        tokens.append(sessions.rotate(tokens[-1], 1.0).refresh_token)
    reused = tokens[rotations // 2]
    with pytest.raises(RefreshRejected, match="Token replay attack detected"):
        sessions.rotate(reused, 2.0)
    for token in tokens:
        with pytest.raises(RefreshRejected, match="revoked due to replay_attack"):
            sessions.rotate(token, 3.0)


def test_refresh_limiter_counts_only_inside_its_window() -> None:
    limiter = RefreshLimiter()
    for second in range(9):
        limiter.record_failure(float(second))
    limiter.record_failure(400.0)
    assert not limiter.blocked(400.0)


@pytest.mark.replays(1)
async def test_two_concurrent_refreshes_with_one_token_log_each_other_out() -> None:
    async with asgi_client(fake_app(ServerConfig(users={"alice": "pw"}))) as http:
        session = (await http.post("/auth/login", json={"username": "alice",
                                                         "password": "pw"})).json()
        body = {"refresh_token": session["refresh_token"]}
        first, second = await asyncio.gather(http.post("/api/auth/refresh", json=body),
                                             http.post("/api/auth/refresh", json=body))
        assert sorted([first.status_code, second.status_code]) == [200, 401]
        winner = first if first.status_code == 200 else second
        later = await http.post("/api/auth/refresh",
                                json={"refresh_token": winner.json()["refresh_token"]})
        assert later.json() == {"detail": "Refresh token revoked due to replay_attack"}
        assert isinstance(later, httpx.Response)


def test_revoke_issued_counts_and_keeps_only_the_live_tokens() -> None:
    """Only a still-valid token is refused anew and counted, and the tokens kept for
    that are pruned as they expire: a long-running server does not grow without end."""
    tokens = AccessTokens("HS256", lifetime=600)
    old = tokens.issue("alice", "normal_user", None, now=0.0)
    for second in range(1, 1000):  # a token a second, each living 600 s
        tokens.issue("alice", "normal_user", None, now=float(second))
    assert tokens.tracked == 600  # issued at 400..999: the rest expired and were dropped
    assert tokens.revoke_issued(now=1000.0) == 599  # the one issued at 400 expired now
    assert tokens.revoke_issued(now=1000.0) == 0 and tokens.tracked == 0
    with pytest.raises(TokenRejected, match="Token has expired"):
        tokens.verify(old, now=1000.0)


def test_revoke_issued_refuses_a_live_token_and_skips_one_logged_out() -> None:
    tokens = AccessTokens("HS256", lifetime=600)
    live = tokens.issue("alice", "normal_user", None, now=0.0)
    out = tokens.issue("bob", "normal_user", None, now=0.0)
    tokens.revoke(str(tokens.verify(out, now=1.0)["jti"]))
    assert tokens.revoke_issued(now=1.0) == 1
    with pytest.raises(TokenRejected, match="Token has been revoked"):
        tokens.verify(live, now=2.0)
    later = tokens.issue("alice", "normal_user", None, now=2.0)
    assert tokens.verify(later, now=3.0)["username"] == "alice"  # issued after: good
