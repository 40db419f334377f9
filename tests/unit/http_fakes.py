"""Fakes for the API client's unit tests: a scripted server and a client built on it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from adapters.cidx_client import CidxClient
from adapters.http_settings import HttpSettings
from cidx_auth.domain.results import QueryResult
from cidx_auth.domain.retry import RetryPolicy
from tests.unit.conftest import World

URL = "https://cidx.test"
Reply = httpx.Response | Exception
HITS = {"results": [{"file_path": "src/auth.py", "score": 0.9}], "total_results": 1,
        "query_metadata": {}}
TYPED = QueryResult.from_json(HITS)
"""What ``query`` returns for :data:`HITS` (``query_json`` returns HITS itself)."""


class Server:
    """Answers from a script (the last answer repeats) and records every request."""

    def __init__(self, *replies: Reply | Callable[[httpx.Request], Reply]) -> None:
        self.replies = list(replies) or [httpx.Response(200, json=HITS)]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if callable(reply) and not isinstance(reply, httpx.Response):
            reply = reply(request)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def status(code: int, detail: str = "x", **headers: str) -> httpx.Response:
    return httpx.Response(code, json={"detail": detail},
                          headers={k.replace("_", "-"): v for k, v in headers.items()})


def make(world: World, server: Server, attempts: int = 3, draw: float = 0.5) -> CidxClient:
    return CidxClient(HttpSettings(URL), world.provider, world.container.breaker(),
                      clock=world.clock, retry=RetryPolicy(attempts=attempts),
                      rng=lambda: draw, transport=httpx.MockTransport(server))
