"""The "hold" fault: a request is processed, then its answer is withheld.

This is the server side of an answer lost on its way back: a refresh held this way
has already rotated, so the client that never reads the answer has spent its token.
`/_admin/wait` is the cue tests wait on ("a held request has been processed").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from refserver.config import ServerConfig
from refserver.runner import RunningServer

PASSWORD = "secret"
CONFIG = ServerConfig(users={"alice": PASSWORD})
REFRESH = "/api/auth/refresh"


async def login(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def wait(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/_admin/wait", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.mark.replays(1)
async def test_a_held_refresh_has_rotated_before_its_answer_leaves(
    client: httpx.AsyncClient,
) -> None:
    token = (await login(client))["refresh_token"]
    armed = await client.post("/_admin/faults", json={"kind": "hold", "seconds": 30,
                                                      "paths": [REFRESH]})
    assert armed.json()["armed"]["kind"] == "hold"
    held = asyncio.create_task(client.post(REFRESH, json={"refresh_token": token}))
    cue = await wait(client, counter="held", at_least=1, timeout=10)
    assert cue == {"counter": "held", "value": 1, "reached": True}
    assert not held.done()
    # The token is spent although its answer never arrived: presenting it again is a replay.
    again = await client.post(REFRESH, json={"refresh_token": token})
    assert again.json() == {"detail": "Token replay attack detected"}
    totals = (await client.get("/_admin/stats")).json()["totals"]
    assert (totals["refreshes"], totals["replays"], totals["held"]) == (1, 1, 1)
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held


async def test_a_held_answer_is_sent_after_the_hold(client: httpx.AsyncClient) -> None:
    token = (await login(client))["refresh_token"]
    await client.post("/_admin/faults", json={"kind": "hold", "seconds": 0.1,
                                              "paths": [REFRESH]})
    started = time.perf_counter()
    response = await client.post(REFRESH, json={"refresh_token": token})
    assert time.perf_counter() - started >= 0.1
    assert response.status_code == 200 and response.json()["refresh_token"] != token
    assert response.headers["date"]
    totals = (await client.get("/_admin/stats")).json()["totals"]
    assert (totals["held"], totals["held_abandoned"], totals["faults_fired"]) == (1, 0, 1)


async def test_hold_applies_to_its_paths_only(client: httpx.AsyncClient) -> None:
    await client.post("/_admin/faults", json={"kind": "hold", "seconds": 30,
                                              "paths": [REFRESH]})
    session = await login(client)  # not held
    assert (await client.get("/health")).status_code == 200
    pending = (await client.get("/_admin/faults")).json()["pending"]
    assert [(f["kind"], f["paths"]) for f in pending] == [("hold", [REFRESH])]
    assert session["refresh_token"]


async def test_wait_answers_at_its_timeout_when_the_counter_stays_low(
    client: httpx.AsyncClient,
) -> None:
    cue = await wait(client, counter="held", at_least=1, timeout=0.05)
    assert cue == {"counter": "held", "value": 0, "reached": False}
    assert (await wait(client, counter="replays", at_least=0))["reached"] is True


@pytest.mark.parametrize("body", [{"counter": "nonsense"}, {}, {"counter": "held", "timeout": -1},
                                  {"counter": "held", "at_least": -1}])
async def test_bad_wait_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post("/_admin/wait", json=body)
    assert response.status_code == 422


# Over the wire -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with RunningServer(CONFIG) as running:
        yield running


@pytest.mark.replays(1)
@pytest.mark.slow
def test_a_client_that_leaves_a_held_refresh_has_spent_its_token(server: RunningServer) -> None:
    server.reset()
    with server.client() as http:
        token = http.post("/auth/login", json={"username": "alice",
                                               "password": PASSWORD}).json()["refresh_token"]
    server.hold(REFRESH, seconds=60)
    with server.client(timeout=httpx.Timeout(10.0, read=0.5)) as impatient, pytest.raises(
            httpx.ReadTimeout):
        impatient.post(REFRESH, json={"refresh_token": token})
    server.wait_held()
    assert server.wait_for("held_abandoned", 1) == 1  # the server saw the client go
    with server.client() as http:
        again = http.post(REFRESH, json={"refresh_token": token})
    assert again.json() == {"detail": "Token replay attack detected"}
    totals = server.stats()["totals"]
    assert (totals["refreshes"], totals["replays"]) == (1, 1)
    assert server.stats()["users"]["alice"]["replays"] == 1


@pytest.mark.slow
def test_wait_held_times_out_with_a_clear_error(server: RunningServer) -> None:
    server.reset()
    with pytest.raises(TimeoutError, match="held stayed at 0"):
        server.wait_held(1, timeout=0.05)


async def test_a_release_sends_the_held_answers_now_and_only_those(
    client: httpx.AsyncClient,
) -> None:
    token = (await login(client))["refresh_token"]
    await client.post("/_admin/faults", json={"kind": "hold", "seconds": 600, "count": 2,
                                              "paths": [REFRESH]})
    held = asyncio.create_task(client.post(REFRESH, json={"refresh_token": token}))
    await wait(client, counter="held", at_least=1, timeout=10)
    assert not held.done()
    released = await client.post("/_admin/release")
    assert released.json() == {"released": 1}
    answer = await asyncio.wait_for(held, 10)
    assert answer.status_code == 200 and answer.json()["refresh_token"] != token
    # A release is not a standing order: the next held answer waits for the next one.
    later = asyncio.create_task(
        client.post(REFRESH, json={"refresh_token": answer.json()["refresh_token"]}))
    await wait(client, counter="held", at_least=2, timeout=10)
    assert not later.done()
    assert (await client.post("/_admin/release")).json() == {"released": 1}
    assert (await asyncio.wait_for(later, 10)).status_code == 200
    totals = (await client.get("/_admin/stats")).json()["totals"]
    assert (totals["held"], totals["held_abandoned"], totals["replays"]) == (2, 0, 0)
    assert (await client.post("/_admin/release")).json() == {"released": 0}
