"""Hours of simulated use in a second: the provider through the container, in memory.

Everything a real session meets happens on a fake clock: tokens expiring every ten
minutes, 401s for tokens the server dropped, a revoked refresh token, bursts of
server errors, a broken disk. Every token handed out is checked against the time
it is used at; the run fails if any operation failed or any token was unusable.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from adapters.events import CountingSink
from adapters.memory import memory_ports
from cidx_auth.app.container import Container
from cidx_auth.domain.errors import CidxAuthError, ServerUnavailable, StorageError
from cidx_auth.domain.events import EventKind
from cidx_auth.domain.token import TokenRules, parse_access_token


@dataclass
class SimulationReport:
    hours: float
    operations: int = 0
    failed: int = 0
    unusable_tokens: int = 0
    replays: int = 0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.unusable_tokens == 0 and self.replays == 0


def simulate(hours: float = 8.0, seed: int = 7) -> tuple[SimulationReport, dict[str, int]]:
    """Run the simulation; returns the report and the provider's event counts."""
    ports, events = memory_ports(), CountingSink()
    clock, gateway, store = ports.clock, ports.gateway, ports.token_store
    provider = Container(**ports.wiring(), extra_sinks=(events,)).token_provider()
    rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not a secret
    report = SimulationReport(hours)
    rules = TokenRules()

    def check(token: str) -> None:
        report.operations += 1
        parsed = parse_access_token(token, rules, clock.now())
        if clock.now() >= parsed.exp:
            report.unusable_tokens += 1

    async def burst(size: int) -> list[str]:
        return await asyncio.gather(*(provider.aget_token() for _ in range(size)))

    end = clock.now() + hours * 3600
    minute = 0
    while clock.now() < end:
        minute += 1
        clock.advance(rng.uniform(5, 55))
        try:
            if minute % 47 == 0:  # the server revokes our refresh tokens
                gateway.revoke_all()
            if minute % 61 == 0:  # a short outage the retries ride out
                gateway.fail_next(ServerUnavailable("502 Bad Gateway"), times=2)
            store.failure = StorageError("disk full") if minute % 90 < 3 else None
            token = provider.get_token()
            check(token)
            if rng.random() < 0.1:  # the API said 401: the server dropped this token
                provider.invalidate(token)
                check(provider.get_token())
            for token in asyncio.run(burst(rng.randint(1, 20))):
                check(token)
        except CidxAuthError:
            report.failed += 1
    report.replays = gateway.replays
    counts = {kind.value: events[kind] for kind in EventKind if events[kind]}
    counts["gateway_logins"] = gateway.logins
    counts["gateway_refreshes"] = gateway.refreshes
    counts["replays_detected"] = gateway.replays
    return report, counts
