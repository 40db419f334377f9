"""The breaker guard: the domain's table, kept in the state store.

Keeping the state behind the :class:`StateStore` port is what lets the next CLI
process see an open circuit (errata #12) instead of starting closed every time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar

from cidx_auth.domain import breaker as table
from cidx_auth.domain.breaker import Admission, BreakerConfig, BreakerState, Circuit
from cidx_auth.domain.client_state import ClientState
from cidx_auth.domain.errors import CircuitOpen
from cidx_auth.domain.events import AuthEvent, EventKind, sink_failure
from cidx_auth.ports import Clock, EventSink, StateStore

logger = logging.getLogger(__name__)


class CircuitBreaker:
    """Admits calls and records their outcome, persisting every change."""

    def __init__(
        self,
        state: StateStore,
        clock: Clock,
        events: EventSink,
        config: BreakerConfig = BreakerConfig(),
    ) -> None:
        self._state = state
        self._clock = clock
        self._events = events
        self._config = config
        self._probe: ContextVar[float | None] = ContextVar(f"cidx-probe-{id(self)}",
                                                           default=None)
        """The ``probe_until`` of the probe this thread or task was admitted as: what an
        interrupted caller may give back, and nothing else."""

    def current(self) -> BreakerState:
        """The persisted state, as the next call would see it."""
        return self._state.read().breaker

    def admit(self) -> Admission:
        """Let a call through (``ALLOW`` or the one ``PROBE``) or raise :class:`CircuitOpen`."""
        now = self._clock.now()
        decision = Admission.REJECT

        def decide(breaker: BreakerState) -> BreakerState:
            nonlocal decision
            decision, breaker = table.admit(breaker, now, self._config)
            return breaker

        after = self._change(decide, now)
        if decision is Admission.PROBE:
            self._probe.set(after.probe_until)
        if decision is Admission.REJECT:
            raise CircuitOpen(table.retry_at(after), now, failures=after.failures,
                              probe_out=after.circuit is Circuit.HALF_OPEN)
        return decision

    def record(self, failed: bool, retry_after: float | None = None) -> None:
        """Fold a finished call into the state: ``failed`` for network errors and 5xx."""
        now = self._clock.now()
        self._change(
            lambda breaker: table.record(breaker, failed, now, self._config, retry_after), now
        )

    def abandon_probe(self) -> None:
        """The probe this caller was admitted as was stopped before its outcome was
        known (Ctrl-C, SIGTERM, a cancelled task): give it back, so the next call probes
        at once instead of being refused for ``probe_timeout`` (90 s) while no probe is
        out. Never raises: it runs while an interruption goes on up."""
        now, mine = self._clock.now(), self._probe.get()
        try:
            self._change(lambda breaker: table.abandon(breaker, now, self._config, mine), now)
        except Exception as error:  # the interruption matters more than the state
            logger.debug("could not give the interrupted probe back: %s", error)

    def reset(self) -> None:
        """Close the circuit, forget failures and start the open period over (at ``login``).

        An explicit login is the user saying the server is worth trying now; a circuit
        opened by an outage, a mistyped URL or a server that is back must not refuse it.
        """
        self._change(lambda _: BreakerState(), self._clock.now())

    def _change(self, rule: Callable[[BreakerState], BreakerState], now: float) -> BreakerState:
        """Apply ``rule`` atomically in the store; announce a change of circuit."""
        before = BreakerState()

        def change(state: ClientState) -> ClientState:
            nonlocal before
            before = state.breaker
            after = rule(before)
            if after == before:
                return state
            return ClientState(after, state.counters, state.last_refresh)

        after = self._state.update(change).breaker
        if before.circuit is not after.circuit:
            detail = f"{before.circuit.value} -> {after.circuit.value}"
            event = AuthEvent(EventKind.BREAKER, now, detail)
            try:
                self._events.emit(event)
            except Exception as error:  # an observer must never break a call
                logger.warning("%s", sink_failure(event, self._events, error))
        return after
