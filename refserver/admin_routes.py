"""Test controls under `/_admin`: statistics, faults (and releasing held answers),
revocation, reset, clock, and the last query body a client sent.

`POST /_admin/wait` is the cue tests wait on instead of sleeping: it answers
as soon as a counter reaches a value (say, `held` once a held refresh has
rotated), or after `timeout` with `reached: false`.

These exist only on the reference server, and only for its owner: a request
must come from loopback and carry the server's admin token (drawn at start, see
`refserver.runner`) in the `ADMIN_TOKEN_HEADER` header. Anything else is
answered before the handler runs (403 from elsewhere, 401 without the token,
403 with a wrong one), so another user of the machine can neither read the
last query nor revoke anyone's sessions.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from ipaddress import ip_address
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from refserver.clock import iso
from refserver.faults import FAULT_KINDS, FaultRule
from refserver.sessions import ADMIN_REASON
from refserver.state import ServerState
from refserver.stats import TOTAL_ONLY, USER_COUNTERS
from refserver.validation import Field, ValidationFailed, read_body

Endpoint = Callable[[Request], Awaitable[Response]]

FAULT_FIELDS = (
    Field("kind", str),
    Field("count", int, required=False, ge=1, default=1),
    Field("status", int, required=False, ge=400, le=599, default=500),
    Field("retry_after", int, required=False, ge=0, default=1),
    Field("seconds", float, required=False, ge=0.0, default=60.0),
)
REVOKE_FIELDS = (Field("username", str, min_length=1),)
CLOCK_FIELDS = (Field("offset", float),)
LIFETIME_FIELDS = (Field("seconds", int, ge=1, le=86_400),)
WAIT_FIELDS = (
    Field("counter", str),
    Field("at_least", int, required=False, ge=0, default=1),
    Field("timeout", float, required=False, ge=0.0, le=300.0, default=10.0),
)
ADMIN_TOKEN_HEADER = "X-Admin-Token"
"""The header that carries the admin token (not `Authorization`, which the API's own
bearer tokens use, so one test client can send both)."""

WAIT_POLL_SECONDS = 0.005
"""How often a wait looks at the counter: the counters are plain integers, and a
few milliseconds of lag on a cue is nothing next to the processes a test starts."""


def new_admin_token() -> str:
    """A fresh random admin token."""
    return secrets.token_urlsafe(32)


def _guarded(endpoint: Endpoint, token: str) -> Endpoint:
    expected = token.encode()

    async def guarded(request: Request) -> Response:
        host = request.client.host if request.client else ""
        try:
            allowed = ip_address(host).is_loopback
        except ValueError:
            allowed = host == "localhost"
        if not allowed:
            return JSONResponse({"detail": "Admin endpoints answer loopback clients only"}, 403)
        given = request.headers.get(ADMIN_TOKEN_HEADER)
        if given is None:
            return JSONResponse({"detail": f"Admin endpoints need the {ADMIN_TOKEN_HEADER} "
                                           "header"}, 401)
        if not hmac.compare_digest(given.encode(), expected):
            return JSONResponse({"detail": "Wrong admin token"}, 403)
        return await endpoint(request)

    return guarded


class AdminEndpoints:
    """The `/_admin` routes, bound to one server's state."""

    def __init__(self, state: ServerState, token: str) -> None:
        if not token:
            raise ValueError("the admin token cannot be empty")
        self.state = state
        self.token = token

    def routes(self) -> list[Route]:
        """Starlette routes for these endpoints, all loopback-only and behind the token."""
        table: list[tuple[str, Endpoint, str]] = [
            ("/_admin/stats", self.stats, "GET"),
            ("/_admin/faults", self.list_faults, "GET"),
            ("/_admin/faults", self.add_fault, "POST"),
            ("/_admin/faults", self.clear_faults, "DELETE"),
            ("/_admin/release", self.release, "POST"),
            ("/_admin/revoke", self.revoke, "POST"),
            ("/_admin/reset", self.reset, "POST"),
            ("/_admin/clock", self.clock, "GET"),
            ("/_admin/clock", self.set_clock, "POST"),
            ("/_admin/token-lifetime", self.set_token_lifetime, "POST"),
            ("/_admin/wait", self.wait, "POST"),
            ("/_admin/last-query", self.last_query, "GET"),
        ]
        return [Route(path, _guarded(endpoint, self.token), methods=[method])
                for path, endpoint, method in table]

    async def stats(self, request: Request) -> Response:
        """Per-user and total counters."""
        return JSONResponse(self.state.stats.snapshot())

    async def last_query(self, request: Request) -> Response:
        """The body of the last `POST /api/query` (null before any), as it arrived."""
        return JSONResponse({"body": self.state.last_query})

    async def list_faults(self, request: Request) -> Response:
        """The faults still armed."""
        return JSONResponse({"pending": self.state.faults.pending()})

    async def add_fault(self, request: Request) -> Response:
        """Arm a fault for the next `count` matching requests."""
        body = await read_body(request, FAULT_FIELDS)
        raw = await request.json()
        paths = raw.get("paths") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ValidationFailed([{"type": "list_type", "loc": ["body", "paths"],
                                     "msg": "Input should be a valid list of strings"}])
        if body["kind"] not in FAULT_KINDS:
            msg = "Input should be " + ", ".join(repr(kind) for kind in FAULT_KINDS)
            raise ValidationFailed([{"type": "literal_error", "loc": ["body", "kind"],
                                     "msg": msg}])
        rule = FaultRule(kind=body["kind"], remaining=body["count"], status=body["status"],
                         retry_after=body["retry_after"], seconds=float(body["seconds"]),
                         paths=tuple(paths))
        self.state.faults.add(rule)
        return JSONResponse({"armed": rule.describe(), "pending": self.state.faults.pending()})

    async def clear_faults(self, request: Request) -> Response:
        """Disarm every fault."""
        self.state.faults.clear()
        return JSONResponse({"pending": []})

    async def release(self, request: Request) -> Response:
        """Send every answer a "hold" fault is withholding now."""
        return JSONResponse({"released": self.state.faults.release()})

    async def revoke(self, request: Request) -> Response:
        """Revoke every refresh family of a user, as an administrator would."""
        body = await read_body(request, REVOKE_FIELDS)
        count = self.state.sessions.revoke_user(body["username"], ADMIN_REASON)
        return JSONResponse({"username": body["username"], "revoked_families": count})

    async def reset(self, request: Request) -> Response:
        """Zero the counters and forget limiters, lockouts and faults."""
        self.state.reset()
        return JSONResponse({"reset": True})

    async def clock(self, request: Request) -> Response:
        """The server clock's offset and current reading."""
        return JSONResponse(self._clock_body())

    async def set_clock(self, request: Request) -> Response:
        """Shift the server clock by `offset` seconds from the real time."""
        body = await read_body(request, CLOCK_FIELDS)
        self.state.clock.offset = float(body["offset"])
        return JSONResponse(self._clock_body())

    async def set_token_lifetime(self, request: Request) -> Response:
        """Change the lifetime of access tokens issued from now on (tests, the demo)."""
        body = await read_body(request, LIFETIME_FIELDS)
        self.state.tokens.lifetime = body["seconds"]
        return JSONResponse({"token_lifetime": self.state.tokens.lifetime})

    async def wait(self, request: Request) -> Response:
        """Answer once the total `counter` reaches `at_least`, or at `timeout`."""
        body = await read_body(request, WAIT_FIELDS)
        counter = body["counter"]
        if counter not in USER_COUNTERS + TOTAL_ONLY:
            msg = "Input should be " + ", ".join(repr(c) for c in USER_COUNTERS + TOTAL_ONLY)
            raise ValidationFailed([{"type": "literal_error", "loc": ["body", "counter"],
                                     "msg": msg}])
        deadline = time.monotonic() + float(body["timeout"])
        stats = self.state.stats
        while stats.total(counter) < body["at_least"] and time.monotonic() < deadline:
            await asyncio.sleep(WAIT_POLL_SECONDS)
        value = stats.total(counter)
        return JSONResponse({"counter": counter, "value": value,
                             "reached": value >= body["at_least"]})

    def _clock_body(self) -> dict[str, Any]:
        now = self.state.clock.now()
        return {"offset": self.state.clock.offset, "now": now, "iso": iso(now)}
