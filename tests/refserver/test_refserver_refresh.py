"""POST /api/auth/refresh: rotation, reuse detection, expiry and the failure limiter."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest

from refserver.config import ServerConfig
from refserver.testing import FakeClock

ALICE_PASSWORD = "secret"
CONFIG = ServerConfig(users={"alice": ALICE_PASSWORD, "bob": "pw"}, roles={"bob": "power_user"})


async def login(client: httpx.AsyncClient, username: str = "alice",
                password: str = ALICE_PASSWORD) -> dict[str, Any]:
    response = await client.post("/auth/login", json={"username": username,
                                                       "password": password})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates_and_reports_lifetimes(client: httpx.AsyncClient) -> None:
    first = await login(client, "bob", "pw")
    response = await refresh(client, first["refresh_token"])
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "user",
                         "access_token_expires_in", "refresh_token_expires_in"}
    assert body["refresh_token"] != first["refresh_token"]
    assert len(body["refresh_token"]) == 86
    assert body["token_type"] == "bearer"
    assert body["user"] == {"username": "bob", "role": "power_user"}
    assert body["access_token_expires_in"] == 600
    assert isinstance(body["access_token_expires_in"], int)
    assert body["refresh_token_expires_in"] == 604800
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["created_at"] is None
    assert claims["username"] == "bob"


async def test_each_new_token_works_once(client: httpx.AsyncClient) -> None:
    token = (await login(client))["refresh_token"]
    for _ in range(3):
        response = await refresh(client, token)
        assert response.status_code == 200
        token = response.json()["refresh_token"]


@pytest.mark.replays(1)
async def test_reuse_revokes_the_whole_family(client: httpx.AsyncClient) -> None:
    old = (await login(client))["refresh_token"]
    new = (await refresh(client, old)).json()["refresh_token"]
    replay = await refresh(client, old)
    assert replay.status_code == 401
    assert replay.json() == {"detail": "Token replay attack detected"}
    assert "www-authenticate" not in replay.headers
    after = await refresh(client, new)
    assert after.status_code == 401
    assert after.json() == {"detail": "Refresh token revoked due to replay_attack"}
    again = await refresh(client, old)
    assert again.json() == {"detail": "Refresh token revoked due to replay_attack"}


@pytest.mark.replays(1)
async def test_other_families_survive_a_replay(client: httpx.AsyncClient) -> None:
    victim = (await login(client))["refresh_token"]
    bystander = (await login(client))["refresh_token"]
    await refresh(client, victim)
    await refresh(client, victim)
    assert (await refresh(client, bystander)).status_code == 200


async def test_unknown_token(client: httpx.AsyncClient) -> None:
    response = await refresh(client, "no-such-token")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid refresh token"}
    assert "www-authenticate" not in response.headers


async def test_expired_token(client: httpx.AsyncClient, clock: FakeClock) -> None:
    token = (await login(client))["refresh_token"]
    clock.advance(604800)
    response = await refresh(client, token)
    assert response.status_code == 401
    assert response.json() == {"detail": "Refresh token has expired"}


@pytest.mark.parametrize("body", [{"refresh_token": ""}, {}, {"refresh_token": 5}])
async def test_bad_body_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post("/api/auth/refresh", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_failure_limiter_blocks_failures_but_not_good_refreshes(
        client: httpx.AsyncClient, clock: FakeClock) -> None:
    token = (await login(client))["refresh_token"]
    for _ in range(10):
        assert (await refresh(client, "bogus")).status_code == 401
    limited = await refresh(client, "bogus")
    assert limited.status_code == 429
    assert limited.json() == {"detail": "Too many failed attempts. Try again in 5 minutes."}
    assert "retry-after" not in limited.headers
    good = await refresh(client, token)
    assert good.status_code == 200
    clock.advance(299)
    assert (await refresh(client, "bogus")).status_code == 429
    clock.advance(1)
    assert (await refresh(client, "bogus")).status_code == 401


async def test_failures_spread_over_time_do_not_trip_the_limiter(
        client: httpx.AsyncClient, clock: FakeClock) -> None:
    for _ in range(12):
        assert (await refresh(client, "bogus")).status_code == 401
        clock.advance(34)


async def test_admin_revoke_keeps_access_tokens_valid(client: httpx.AsyncClient) -> None:
    session = await login(client)
    revoked = await client.post("/_admin/revoke", json={"username": "alice"})
    assert revoked.json() == {"username": "alice", "revoked_families": 1}
    response = await refresh(client, session["refresh_token"])
    assert response.json() == {"detail": "Refresh token revoked due to admin_revoke"}
    repos = await client.get("/api/repos",
                             headers={"Authorization": f"Bearer {session['access_token']}"})
    assert repos.status_code == 200


@pytest.mark.replays(1)
async def test_legacy_route_spends_the_token_and_returns_none(
        client: httpx.AsyncClient) -> None:
    token = (await login(client))["refresh_token"]
    legacy = await client.post("/auth/refresh", json={"refresh_token": token})
    assert legacy.status_code == 200
    assert legacy.json()["refresh_token"] is None
    assert (await refresh(client, token)).json()["detail"] == "Token replay attack detected"


@pytest.mark.replays(1)
async def test_stats_count_refresh_outcomes(client: httpx.AsyncClient) -> None:
    old = (await login(client))["refresh_token"]
    await refresh(client, old)
    await refresh(client, old)
    await refresh(client, "bogus")
    stats = (await client.get("/_admin/stats")).json()
    assert stats["users"]["alice"] == {"logins": 1, "failed_logins": 0, "refreshes": 1,
                                       "failed_refreshes": 1, "replays": 1}
    assert stats["totals"]["failed_refreshes"] == 2
