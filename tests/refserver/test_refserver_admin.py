"""The /_admin controls: faults, clock, reset, revocation and the loopback rule."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from refserver.app import server_state
from refserver.config import ServerConfig
from refserver.faults import ConnectionDropped
from refserver.testing import DEFAULT_EPOCH, FakeClock, asgi_client, fake_app

PASSWORD = "secret"
CONFIG = ServerConfig(users={"alice": PASSWORD})


async def arm(client: httpx.AsyncClient, **fault: Any) -> dict[str, Any]:
    response = await client.post("/_admin/faults", json=fault)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(client: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/auth/login", json={"username": "alice", "password": password})


async def test_error_fault_hits_the_next_n_requests(client: httpx.AsyncClient) -> None:
    armed = await arm(client, kind="error", count=2, status=503)
    assert armed["armed"]["remaining"] == 2
    for _ in range(2):
        response = await client.get("/health")
        assert response.status_code == 503
        assert "detail" in response.json()
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/_admin/stats")).json()["totals"]["faults_fired"] == 2


async def test_error_fault_defaults_to_500(client: httpx.AsyncClient) -> None:
    await arm(client, kind="error")
    assert (await client.get("/health")).status_code == 500


async def test_rate_limit_fault_sends_retry_after(client: httpx.AsyncClient) -> None:
    await arm(client, kind="rate_limit", count=1, retry_after=7)
    response = await login(client)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert (await login(client)).status_code == 200


async def test_paths_limit_where_a_fault_applies(client: httpx.AsyncClient) -> None:
    await arm(client, kind="error", count=1, paths=["/api/auth/refresh"])
    assert (await client.get("/health")).status_code == 200
    assert (await login(client)).status_code == 200
    response = await client.post("/api/auth/refresh", json={"refresh_token": "x"})
    assert response.status_code == 500


async def test_admin_routes_are_never_faulted(client: httpx.AsyncClient) -> None:
    await arm(client, kind="error", count=1)
    assert (await client.get("/_admin/stats")).status_code == 200
    pending = (await client.get("/_admin/faults")).json()["pending"]
    assert [fault["kind"] for fault in pending] == ["error"]


async def test_delete_clears_faults(client: httpx.AsyncClient) -> None:
    await arm(client, kind="error", count=5)
    assert (await client.delete("/_admin/faults")).json() == {"pending": []}
    assert (await client.get("/health")).status_code == 200


async def test_hang_delays_then_answers(client: httpx.AsyncClient) -> None:
    await arm(client, kind="hang", count=1, seconds=0.1)
    started = time.perf_counter()
    response = await login(client)
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.1


async def test_drop_without_a_dropper_raises(client: httpx.AsyncClient) -> None:
    await arm(client, kind="drop", count=1)
    with pytest.raises(ConnectionDropped):
        await client.get("/health")
    assert (await client.get("/health")).status_code == 200


@pytest.mark.parametrize("fault", [{"kind": "explode"}, {"kind": "error", "count": 0},
                                   {"kind": "error", "status": 200},
                                   {"kind": "error", "paths": "/health"}, {}])
async def test_bad_fault_is_422(client: httpx.AsyncClient, fault: dict[str, Any]) -> None:
    response = await client.post("/_admin/faults", json=fault)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_clock_offset_shifts_expiry(client: httpx.AsyncClient) -> None:
    token = (await login(client)).json()["access_token"]
    shifted = await client.post("/_admin/clock", json={"offset": 600})
    assert shifted.json()["offset"] == 600
    response = await client.get("/api/repos", headers={"Authorization": f"Bearer {token}"})
    assert response.json() == {"detail": "Token has expired"}
    assert (await client.get("/_admin/clock")).json()["offset"] == 600
    await client.post("/_admin/clock", json={"offset": 0})
    response = await client.get("/api/repos", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


async def test_clock_offset_from_config() -> None:
    clock = FakeClock(DEFAULT_EPOCH)
    config = ServerConfig(users={"alice": "secret"}, clock_offset=-30)
    async with asgi_client(fake_app(config, clock)) as http:
        body = (await http.get("/_admin/clock")).json()
    assert body["now"] == clock() - 30


async def test_reset_clears_lockouts_counters_and_faults(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        await login(client, "wrong")
    assert (await login(client)).status_code == 429
    await arm(client, kind="error", count=3)
    assert (await client.post("/_admin/reset")).json() == {"reset": True}
    stats = (await client.get("/_admin/stats")).json()
    assert stats["users"] == {}
    assert stats["totals"]["faults_fired"] == 0
    assert (await login(client)).status_code == 200


async def test_revoke_unknown_user_revokes_nothing(client: httpx.AsyncClient) -> None:
    response = await client.post("/_admin/revoke", json={"username": "nobody"})
    assert response.json() == {"username": "nobody", "revoked_families": 0}


async def test_admin_answers_loopback_only() -> None:
    app = fake_app(CONFIG)
    async with asgi_client(app, peer=("192.0.2.10", 4000)) as outsider:
        assert (await outsider.get("/_admin/stats")).status_code == 403
        assert (await outsider.post("/_admin/reset")).status_code == 403
        assert (await outsider.get("/health")).status_code == 200
    async with asgi_client(app, peer=("::1", 4000)) as local:
        assert (await local.get("/_admin/stats")).status_code == 200


async def test_unknown_routes_answer_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
    assert (await client.get("/auth/login")).status_code == 405


async def test_server_state_is_reachable(clock: FakeClock) -> None:
    app = fake_app(CONFIG, clock)
    assert server_state(app).clock.now() == clock()
