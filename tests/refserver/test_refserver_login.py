"""POST /auth/login: success, refusals, validation, rate limits and lockout."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest

from refserver.config import ServerConfig
from refserver.testing import FakeClock, asgi_client, fake_app

USERS = {"alice": "secret", "bob": "pw", "carol": "otp", "dave": "old"}
CONFIG = ServerConfig(users=USERS, roles={"bob": "admin"}, mfa_users=frozenset({"carol"}),
                      expired_password_users=frozenset({"dave"}))


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/auth/login", json={"username": username, "password": password})


async def test_success_returns_tokens_without_expires_in(client: httpx.AsyncClient) -> None:
    response = await login(client, "bob", "pw")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "user", "refresh_token",
                         "refresh_token_expires_in"}
    assert body["token_type"] == "bearer"
    assert body["refresh_token_expires_in"] == 604800
    assert body["user"]["username"] == "bob"
    assert body["user"]["role"] == "admin"
    assert isinstance(body["user"]["created_at"], str)
    assert len(body["refresh_token"]) == 86


async def test_access_token_claims(client: httpx.AsyncClient, clock: FakeClock) -> None:
    body = (await login(client, "alice", "secret")).json()
    jwks = (await client.get("/.well-known/jwks.json")).json()
    key = jwt.PyJWK(jwks["keys"][0])
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "RS256"
    assert header["kid"] == jwks["keys"][0]["kid"]
    claims = jwt.decode(body["access_token"], key, algorithms=["RS256"],
                        options={"verify_exp": False})
    assert claims["username"] == "alice"
    assert claims["role"] == "normal_user"
    assert claims["created_at"] == body["user"]["created_at"]
    assert isinstance(claims["exp"], float)
    assert isinstance(claims["iat"], float)
    assert claims["iat"] == pytest.approx(clock())
    assert claims["exp"] - claims["iat"] == pytest.approx(600)
    assert uuid.UUID(claims["jti"]).version == 4


async def test_bad_password_is_401_with_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await login(client, "alice", "wrong")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid credentials"}
    assert response.headers["www-authenticate"] == "Bearer"


async def test_unknown_user_is_401(client: httpx.AsyncClient) -> None:
    response = await login(client, "mallory", "secret")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid credentials"}


@pytest.mark.parametrize(
    ("content", "loc", "kind"),
    [
        (b'{"password": "secret"}', ["body", "username"], "missing"),
        (b'{"username": "", "password": "secret"}', ["body", "username"], "string_too_short"),
        (b'{"username": "alice", "password": ""}', ["body", "password"], "string_too_short"),
        (b'{"username": 7, "password": "secret"}', ["body", "username"], "string_type"),
        (b'{"username": "alice", "password": null}', ["body", "password"], "string_type"),
        (b'{"username": "' + b"a" * 256 + b'", "password": "x"}', ["body", "username"],
         "string_too_long"),
        (b'["alice", "secret"]', ["body"], "model_attributes_type"),
        (b"", ["body"], "missing"),
        (b"{not json", ["body", 1], "json_invalid"),
    ],
)
async def test_malformed_bodies_are_422(client: httpx.AsyncClient, content: bytes,
                                        loc: list[object], kind: str) -> None:
    response = await client.post("/auth/login", content=content,
                                 headers={"content-type": "application/json"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert isinstance(body["message"], str)
    assert body["detail"][0]["loc"] == loc
    assert body["detail"][0]["type"] == kind
    assert isinstance(body["detail"][0]["msg"], str)
    assert "secret" not in response.text


async def test_validation_errors_do_not_count_as_failures(client: httpx.AsyncClient) -> None:
    for _ in range(8):
        await client.post("/auth/login", json={"username": "alice", "password": ""})
    assert (await login(client, "alice", "secret")).status_code == 200
    stats = (await client.get("/_admin/stats")).json()
    assert stats["users"]["alice"]["failed_logins"] == 0


async def test_mfa_user_gets_mfa_token_and_no_access_token(client: httpx.AsyncClient) -> None:
    response = await login(client, "carol", "otp")
    assert response.status_code == 200
    body = response.json()
    assert body["mfa_required"] is True
    assert body["mfa_token"]
    assert "access_token" not in body


async def test_expired_password_is_403(client: httpx.AsyncClient) -> None:
    response = await login(client, "dave", "old")
    assert response.status_code == 403
    assert response.json()["detail"].startswith("password_expired:")


async def test_lockout_after_five_failures_even_with_right_password(
        client: httpx.AsyncClient, clock: FakeClock) -> None:
    for _ in range(5):
        assert (await login(client, "alice", "wrong")).status_code == 401
    clock.advance(1)
    locked = await login(client, "alice", "secret")
    assert locked.status_code == 429
    assert locked.json() == {
        "detail": "account_locked: Too many failed attempts. Try again in 899 seconds."}
    assert locked.headers["retry-after"] == "899"
    clock.advance(99)
    later = await login(client, "alice", "secret")
    assert later.headers["retry-after"] == "800"
    assert "800 seconds" in later.json()["detail"]
    clock.advance(800)
    assert (await login(client, "alice", "secret")).status_code == 200


async def test_lockout_applies_to_unknown_names_and_is_per_name(
        client: httpx.AsyncClient) -> None:
    for _ in range(5):
        await login(client, "ghost", "x")
    assert (await login(client, "ghost", "x")).status_code == 429
    assert (await login(client, "alice", "secret")).status_code == 200


async def test_success_clears_the_failure_count(client: httpx.AsyncClient) -> None:
    for _ in range(4):
        await login(client, "alice", "wrong")
    assert (await login(client, "alice", "secret")).status_code == 200
    for _ in range(4):
        assert (await login(client, "alice", "wrong")).status_code == 401


async def test_failures_older_than_the_window_are_forgotten(
        client: httpx.AsyncClient, clock: FakeClock) -> None:
    for _ in range(4):
        await login(client, "alice", "wrong")
    clock.advance(901)
    assert (await login(client, "alice", "wrong")).status_code == 401
    assert (await login(client, "alice", "secret")).status_code == 200


async def test_bucket_refuses_the_eleventh_attempt_first(
        client: httpx.AsyncClient, clock: FakeClock) -> None:
    statuses = [(await login(client, "bob", "wrong")).status_code for _ in range(10)]
    assert statuses == [401] * 5 + [429] * 5
    refused = await login(client, "bob", "pw")
    assert refused.status_code == 429
    assert refused.json() == {"detail": "Too many login attempts. Please try again later."}
    assert refused.headers["retry-after"] == "6"
    clock.advance(6)
    # A token is back, so the bucket lets it through and the lockout answers.
    assert (await login(client, "bob", "pw")).json()["detail"].startswith("account_locked")


async def test_bucket_refills_one_attempt_every_six_seconds(
        client: httpx.AsyncClient, clock: FakeClock) -> None:
    for _ in range(10):
        assert (await login(client, "alice", "secret")).status_code == 200
    assert (await login(client, "alice", "secret")).status_code == 429
    clock.advance(3)
    assert (await login(client, "alice", "secret")).headers["retry-after"] == "3"
    clock.advance(3)
    assert (await login(client, "alice", "secret")).status_code == 200


async def test_login_delay_models_bcrypt() -> None:
    config = ServerConfig(users=USERS, login_delay=0.05)
    async with asgi_client(fake_app(config)) as http:
        started = time.perf_counter()
        assert (await login(http, "alice", "secret")).status_code == 200
        assert time.perf_counter() - started >= 0.05
