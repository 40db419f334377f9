"""The bearer gate, the query and repository calls, and the public routes."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest

from refserver.app import create_app
from refserver.config import ServerConfig
from refserver.testing import FakeClock, asgi_client, fake_app

CONFIG = ServerConfig(users={"alice": "secret"})
CHALLENGE = ('Bearer realm="mcp", '
             "resource_metadata=http://testserver/.well-known/oauth-protected-resource")


async def access_token(client: httpx.AsyncClient) -> str:
    response = await client.post("/auth/login", json={"username": "alice",
                                                       "password": "secret"})
    return str(response.json()["access_token"])


def bearer(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


async def query(client: httpx.AsyncClient, token: str, **body: Any) -> httpx.Response:
    body.setdefault("query_text", "refresh token")
    return await client.post("/api/query", json=body, headers=bearer(token))


def assert_refused(response: httpx.Response, detail: str) -> None:
    assert response.status_code == 401
    assert response.json() == {"detail": detail}
    assert response.headers["www-authenticate"] == CHALLENGE


async def test_missing_header(client: httpx.AsyncClient) -> None:
    assert_refused(await client.get("/api/repos"), "Missing authentication credentials")


@pytest.mark.parametrize("header", ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer   "])
async def test_header_without_bearer_token_counts_as_missing(
        client: httpx.AsyncClient, header: str) -> None:
    response = await client.get("/api/repos", headers={"Authorization": header})
    assert_refused(response, "Missing authentication credentials")


async def test_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    token = await access_token(client)
    for scheme in ("bearer", "BEARER", "BeArEr"):
        assert (await client.get("/api/repos", headers=bearer(token, scheme))).status_code == 200


async def test_garbage_token(client: httpx.AsyncClient) -> None:
    assert_refused(await client.get("/api/repos", headers=bearer("not.a.jwt")), "Invalid token")


async def test_token_from_another_server_is_invalid(client: httpx.AsyncClient) -> None:
    async with asgi_client(fake_app(CONFIG)) as other:
        foreign = await access_token(other)
    assert_refused(await client.get("/api/repos", headers=bearer(foreign)), "Invalid token")


async def test_unsigned_token_is_invalid(client: httpx.AsyncClient, clock: FakeClock) -> None:
    claims = {"username": "alice", "role": "admin", "exp": clock() + 60, "jti": "x"}
    forged = jwt.encode(claims, key="", algorithm="none")
    assert_refused(await client.get("/api/repos", headers=bearer(forged)), "Invalid token")


async def test_expiry_has_no_leeway(client: httpx.AsyncClient, clock: FakeClock) -> None:
    token = await access_token(client)
    clock.advance(599.999)
    assert (await client.get("/api/repos", headers=bearer(token))).status_code == 200
    clock.advance(0.001)
    assert_refused(await client.get("/api/repos", headers=bearer(token)), "Token has expired")


async def test_logout_revokes_the_token(client: httpx.AsyncClient) -> None:
    token = await access_token(client)
    response = await client.post("/auth/logout", headers=bearer(token))
    assert response.status_code == 200
    assert_refused(await client.get("/api/repos", headers=bearer(token)),
                   "Token has been revoked")
    assert (await client.get("/api/repos", headers=bearer(await access_token(client)))
            ).status_code == 200


async def test_logout_with_refresh_token_revokes_its_family(client: httpx.AsyncClient) -> None:
    session = (await client.post("/auth/login", json={"username": "alice",
                                                      "password": "secret"})).json()
    await client.post("/auth/logout", headers=bearer(session["access_token"]),
                      json={"refresh_token": session["refresh_token"]})
    response = await client.post("/api/auth/refresh",
                                 json={"refresh_token": session["refresh_token"]})
    assert response.json() == {"detail": "Refresh token revoked due to logout"}


async def test_configured_issuer_names_the_metadata_url() -> None:
    config = ServerConfig(users={"alice": "secret"}, issuer="https://cidx.example/")
    async with asgi_client(fake_app(config)) as http:
        response = await http.get("/api/repos")
    assert response.headers["www-authenticate"] == (
        'Bearer realm="mcp", '
        "resource_metadata=https://cidx.example/.well-known/oauth-protected-resource")


async def test_query_returns_canned_results(client: httpx.AsyncClient) -> None:
    response = await query(client, await access_token(client), repository_alias="backend",
                           limit=3)
    assert response.status_code == 200
    body = response.json()
    assert body["total_results"] == 3 == len(body["results"])
    hit = body["results"][0]
    assert set(hit) == {"file_path", "line_number", "code_snippet", "similarity_score",
                        "repository_alias"}
    assert hit["repository_alias"] == "backend"
    scores = [result["similarity_score"] for result in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert body["query_metadata"]["query_text"] == "refresh token"


async def test_query_filters(client: httpx.AsyncClient) -> None:
    token = await access_token(client)
    python = (await query(client, token, repository_alias="docs", language="python")).json()
    assert {hit["file_path"][-3:] for hit in python["results"]} == {".py"}
    strong = (await query(client, token, repository_alias="docs", min_score=0.8)).json()
    assert [hit["similarity_score"] for hit in strong["results"]] == [0.93, 0.86]  # not 0.74
    docs = (await query(client, token, repository_alias="docs", path_filter="docs/*")).json()
    assert [hit["file_path"] for hit in docs["results"]] == ["docs/authentication.md"]
    everywhere = (await query(client, token, limit=100)).json()
    assert everywhere["query_metadata"]["repositories_searched"] == 3


async def test_query_unknown_alias_is_404(client: httpx.AsyncClient) -> None:
    response = await query(client, await access_token(client), repository_alias="nope")
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


@pytest.mark.parametrize("body", [{"limit": 101}, {"limit": 0}, {"query_text": ""},
                                  {"min_score": 2}, {"limit": "ten"}])
async def test_query_bad_body_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await query(client, await access_token(client), **body)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_auth_comes_before_validation(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/query", json={"limit": 500})
    assert_refused(response, "Missing authentication credentials")


async def test_repos(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/repos", headers=bearer(await access_token(client)))).json()
    assert body["total"] == 3
    assert [repo["user_alias"] for repo in body["repositories"]] == ["backend", "frontend",
                                                                     "docs"]


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"


async def test_protected_resource_metadata(client: httpx.AsyncClient) -> None:
    body = (await client.get("/.well-known/oauth-protected-resource")).json()
    assert body["resource"] == "http://testserver"


async def test_hs256_mode_publishes_no_keys() -> None:
    config = ServerConfig(users={"alice": "secret"}, alg="HS256", hs256_secret="s" * 32)
    async with asgi_client(fake_app(config)) as http:
        assert (await http.get("/.well-known/jwks.json")).json() == {"keys": []}
        token = await access_token(http)
        assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
        claims = jwt.decode(token, "s" * 32, algorithms=["HS256"],
                            options={"verify_exp": False})
        assert claims["username"] == "alice"
        assert (await http.get("/api/repos", headers=bearer(token))).status_code == 200


async def test_real_clock_by_default() -> None:
    async with asgi_client(create_app(CONFIG)) as http:
        token = await access_token(http)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iat"] == pytest.approx(time.time(), abs=5)


async def test_stats_count_protected_requests(client: httpx.AsyncClient) -> None:
    token = await access_token(client)
    await client.get("/api/repos", headers=bearer(token))
    await client.get("/api/repos")
    await client.get("/health")
    stats = (await client.get("/_admin/stats")).json()
    assert stats["requests"] == 2
    assert stats["auth_401"] == 1
