"""The state every process of a project shares: the breaker and the counters.

It is not an event: the state store keeps it (``ports.StateStore``), the breaker
guard changes its breaker part, and the counting sink folds events into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cidx_auth.domain.bounds import counted
from cidx_auth.domain.breaker import BreakerState
from cidx_auth.domain.events import COUNTED, AuthEvent, EventKind


@dataclass(frozen=True, slots=True)
class ClientState:
    """Breaker state and counters, persisted so the next CLI process sees them."""

    breaker: BreakerState = BreakerState()
    counters: dict[str, int] = field(default_factory=dict)
    last_refresh: float | None = None

    def counted(self, event: AuthEvent) -> ClientState:
        """This state with ``event`` added to the counters (each stops at ``MAX_COUNT``,
        :mod:`cidx_auth.domain.bounds`)."""
        name = COUNTED.get(event.kind)
        if name is None:
            return self
        counters = dict(self.counters)
        counters[name] = counted(counters.get(name, 0))  # stays at MAX_COUNT
        last = event.at if event.kind is EventKind.REFRESHED else self.last_refresh
        return ClientState(self.breaker, counters, last)
