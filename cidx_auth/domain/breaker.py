"""The circuit breaker as a table: no I/O, no clock, time passed in.

Rules (errata #9, #12, #16)::

    CLOSED     --failure-->       CLOSED     one more consecutive failure
    CLOSED     --trip-->          OPEN       the 5th consecutive failure: open 30 s
    CLOSED     --success-->       CLOSED     the count starts again
    OPEN       --cooldown_over--> HALF_OPEN  the open period has passed
    HALF_OPEN  --probe-->         HALF_OPEN  exactly one caller is let through
    HALF_OPEN  --probe_lost-->    HALF_OPEN  the probe never reported back in 90 s, or was
                                             stopped first (Ctrl-C, SIGTERM); allow another
    HALF_OPEN  --success-->       CLOSED     failures 0; the next opening is 30 s again
    HALF_OPEN  --failure-->       OPEN       open again for twice as long: 60, 120, 240, 300 s

The open period grows only while the server stays down: 30 s at the trip, doubled by each
failed probe, capped at 300 s. A short outage therefore costs at most 30 s after the
server is back, where a fixed 300 s, once persisted across processes, held every command
out for 5 minutes (errata #16). A ``Retry-After`` on a failure that opens the circuit
lengthens that one opening, never shortens it, and is capped at 1 hour; it does not feed
the doubling. Every ``login`` resets the breaker to ``BreakerState()``: closed, 30 s next.
An ``open_until`` or ``probe_until`` further ahead than these rules allow (the clock was
set back, or a file written by an older version with no cap) has ended.

Any pair not in the table leaves the state as it is: a late answer from a call
started before the circuit opened does not close it; only the probe decides.
Failures are network errors, timeouts and 5xx answers; a 4xx answer is the server
working as designed and counts as a success for the circuit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from cidx_auth.domain.bounds import counted

FAILURE_THRESHOLD = 5
FIRST_OPEN_PERIOD = 30.0
MAX_OPEN_PERIOD = 300.0
"""The story's 5 minutes: the longest the doubling goes."""
MAX_RETRY_AFTER = 3600.0
"""A server's ``Retry-After`` is honoured up to an hour, never for years."""
PROBE_TIMEOUT = 90.0
"""A probe that has not reported back after this long is taken as lost (its process
died); longer than one attempt can take (``retry.API_DEADLINE``, 60 s). An API call sent
again on a fresh connection can outlive it, and then a second probe may go out while the
first still waits: two requests to a recovering server, never a refresh token sent twice
(the renewal's lock and intent decide that, not the breaker)."""


class Circuit(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Signal(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    TRIP = "trip"
    COOLDOWN_OVER = "cooldown_over"
    PROBE = "probe"
    PROBE_LOST = "probe_lost"


class Period(enum.Enum):
    """What a transition does to the open period."""

    KEEP = "keep"
    FIRST = "first"
    """Back to the first open period (30 s)."""
    DOUBLE = "double"
    """Twice the last one, capped."""


TRANSITIONS: dict[tuple[Circuit, Signal], tuple[Circuit, Period]] = {
    (Circuit.CLOSED, Signal.FAILURE): (Circuit.CLOSED, Period.KEEP),
    (Circuit.CLOSED, Signal.TRIP): (Circuit.OPEN, Period.FIRST),
    (Circuit.CLOSED, Signal.SUCCESS): (Circuit.CLOSED, Period.FIRST),
    (Circuit.OPEN, Signal.COOLDOWN_OVER): (Circuit.HALF_OPEN, Period.KEEP),
    (Circuit.HALF_OPEN, Signal.PROBE): (Circuit.HALF_OPEN, Period.KEEP),
    (Circuit.HALF_OPEN, Signal.PROBE_LOST): (Circuit.HALF_OPEN, Period.KEEP),
    (Circuit.HALF_OPEN, Signal.SUCCESS): (Circuit.CLOSED, Period.FIRST),
    (Circuit.HALF_OPEN, Signal.FAILURE): (Circuit.OPEN, Period.DOUBLE),
}


class Admission(enum.Enum):
    ALLOW = "allow"
    PROBE = "probe"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = FAILURE_THRESHOLD
    first_open_period: float = FIRST_OPEN_PERIOD
    max_open_period: float = MAX_OPEN_PERIOD
    max_retry_after: float = MAX_RETRY_AFTER
    probe_timeout: float = PROBE_TIMEOUT

    def __post_init__(self) -> None:
        if not 0 < self.first_open_period <= self.max_open_period <= self.max_retry_after:
            raise ValueError("need 0 < first_open_period <= max_open_period <= max_retry_after")


@dataclass(frozen=True, slots=True)
class BreakerState:
    """The whole breaker state; small enough to persist beside the token."""

    circuit: Circuit = Circuit.CLOSED
    failures: int = 0
    open_until: float = 0.0
    probe_until: float | None = None
    """Set while the one half-open probe is out, until it is presumed lost."""
    open_period: float = FIRST_OPEN_PERIOD
    """The last open period set by the doubling (``Retry-After`` aside); the next failed
    probe doubles it."""


def step(
    state: BreakerState,
    signal: Signal,
    now: float,
    config: BreakerConfig,
    retry_after: float | None = None,
) -> BreakerState:
    """Apply one signal through the table; the fields follow the target state."""
    row = TRANSITIONS.get((state.circuit, signal))
    if row is None:
        return state
    target, rule = row
    period = _period(state.open_period, rule, config)
    if target is Circuit.OPEN:
        asked = min(max(retry_after or 0.0, 0.0), config.max_retry_after)
        until = now + max(period, asked)
        return BreakerState(Circuit.OPEN, counted(state.failures), until, None, period)
    if target is Circuit.HALF_OPEN:
        probe_until = now + config.probe_timeout if signal is Signal.PROBE else None
        return replace(state, circuit=Circuit.HALF_OPEN, probe_until=probe_until,
                       open_period=period)
    if signal is Signal.FAILURE:
        return replace(state, failures=counted(state.failures), open_period=period)
    return BreakerState(open_period=period)


def _period(last: float, rule: Period, config: BreakerConfig) -> float:
    """The open period after a transition; a value no rule could make starts over."""
    if rule is Period.FIRST or not config.first_open_period <= last <= config.max_open_period:
        return config.first_open_period
    if rule is Period.DOUBLE:
        return min(last * 2, config.max_open_period)
    return last


def admit(state: BreakerState, now: float, config: BreakerConfig) -> tuple[Admission, BreakerState]:
    """May a call go out at ``now``? Returns the decision and the state to keep."""
    if state.circuit is Circuit.CLOSED:
        return Admission.ALLOW, state
    if state.circuit is Circuit.OPEN:
        if now < state.open_until <= now + config.max_retry_after:
            return Admission.REJECT, state
        state = step(state, Signal.COOLDOWN_OVER, now, config)
    if state.probe_until is not None:
        if now < state.probe_until <= now + config.probe_timeout:
            return Admission.REJECT, state
        state = step(state, Signal.PROBE_LOST, now, config)
    return Admission.PROBE, step(state, Signal.PROBE, now, config)


def record(
    state: BreakerState,
    failed: bool,
    now: float,
    config: BreakerConfig,
    retry_after: float | None = None,
) -> BreakerState:
    """Fold one call's outcome into the state."""
    if not failed:
        return step(state, Signal.SUCCESS, now, config)
    tripping = state.circuit is Circuit.CLOSED and state.failures + 1 >= config.failure_threshold
    return step(state, Signal.TRIP if tripping else Signal.FAILURE, now, config, retry_after)


def abandon(state: BreakerState, now: float, config: BreakerConfig,
            mine: float | None) -> BreakerState:
    """The probe out, the one whose ``probe_until`` is ``mine``, was stopped before it
    could report (its caller was interrupted or cancelled): it is lost now, not in
    ``probe_timeout``, so the next call may probe. Another caller's probe (admitted after
    this one was presumed lost), or any other state, stays as it is."""
    if (state.circuit is Circuit.HALF_OPEN and state.probe_until is not None
            and state.probe_until == mine):
        return step(state, Signal.PROBE_LOST, now, config)
    return state


def retry_at(state: BreakerState) -> float:
    """When the next call may be attempted, for the user's message."""
    if state.circuit is Circuit.OPEN:
        return state.open_until
    return state.probe_until or 0.0


def next_probe(state: BreakerState, now: float, config: BreakerConfig) -> float | None:
    """When the next probe may go: ``None`` while closed, ``now`` if it may go already."""
    if state.circuit is Circuit.CLOSED:
        return None
    decision, _ = admit(state, now, config)
    return now if decision is Admission.PROBE else retry_at(state)
