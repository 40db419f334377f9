"""The circuit breaker as a table: no I/O, no clock, time passed in.

Rules (errata #9, #12)::

    CLOSED     --failure-->       CLOSED     one more consecutive failure
    CLOSED     --trip-->          OPEN       the 5th consecutive failure
    CLOSED     --success-->       CLOSED     the count starts again
    OPEN       --cooldown_over--> HALF_OPEN  300 s passed (longer if Retry-After said so)
    HALF_OPEN  --probe-->         HALF_OPEN  exactly one caller is let through
    HALF_OPEN  --probe_lost-->    HALF_OPEN  the probe never reported back; allow another
    HALF_OPEN  --success-->       CLOSED
    HALF_OPEN  --failure-->       OPEN       a new cooldown starts

Any pair not in the table leaves the state as it is: a late answer from a call
started before the circuit opened does not close it; only the probe decides.
Failures are network errors, timeouts and 5xx answers; a 4xx answer is the server
working as designed and counts as a success for the circuit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

FAILURE_THRESHOLD = 5
RECOVERY_TIMEOUT = 300.0
PROBE_TIMEOUT = 90.0
"""A probe that has not reported back after this long is taken as lost (its process
died); longer than any single call can take with the client's timeouts."""


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


TRANSITIONS: dict[tuple[Circuit, Signal], Circuit] = {
    (Circuit.CLOSED, Signal.FAILURE): Circuit.CLOSED,
    (Circuit.CLOSED, Signal.TRIP): Circuit.OPEN,
    (Circuit.CLOSED, Signal.SUCCESS): Circuit.CLOSED,
    (Circuit.OPEN, Signal.COOLDOWN_OVER): Circuit.HALF_OPEN,
    (Circuit.HALF_OPEN, Signal.PROBE): Circuit.HALF_OPEN,
    (Circuit.HALF_OPEN, Signal.PROBE_LOST): Circuit.HALF_OPEN,
    (Circuit.HALF_OPEN, Signal.SUCCESS): Circuit.CLOSED,
    (Circuit.HALF_OPEN, Signal.FAILURE): Circuit.OPEN,
}


class Admission(enum.Enum):
    ALLOW = "allow"
    PROBE = "probe"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = FAILURE_THRESHOLD
    recovery_timeout: float = RECOVERY_TIMEOUT
    probe_timeout: float = PROBE_TIMEOUT


@dataclass(frozen=True, slots=True)
class BreakerState:
    """The whole breaker state; small enough to persist beside the token."""

    circuit: Circuit = Circuit.CLOSED
    failures: int = 0
    open_until: float = 0.0
    probe_until: float | None = None
    """Set while the one half-open probe is out, until it is presumed lost."""


def step(
    state: BreakerState,
    signal: Signal,
    now: float,
    config: BreakerConfig,
    retry_after: float | None = None,
) -> BreakerState:
    """Apply one signal through the table; the fields follow the target state."""
    target = TRANSITIONS.get((state.circuit, signal))
    if target is None:
        return state
    if target is Circuit.OPEN:
        cooldown = max(config.recovery_timeout, retry_after or 0.0)
        return BreakerState(Circuit.OPEN, state.failures + 1, now + cooldown, None)
    if target is Circuit.HALF_OPEN:
        probe_until = now + config.probe_timeout if signal is Signal.PROBE else None
        return replace(state, circuit=Circuit.HALF_OPEN, probe_until=probe_until)
    if signal is Signal.FAILURE:
        return replace(state, failures=state.failures + 1)
    return BreakerState()


def admit(state: BreakerState, now: float, config: BreakerConfig) -> tuple[Admission, BreakerState]:
    """May a call go out at ``now``? Returns the decision and the state to keep."""
    if state.circuit is Circuit.CLOSED:
        return Admission.ALLOW, state
    if state.circuit is Circuit.OPEN:
        if now < state.open_until:
            return Admission.REJECT, state
        state = step(state, Signal.COOLDOWN_OVER, now, config)
    if state.probe_until is not None:
        if now < state.probe_until:
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


def retry_at(state: BreakerState) -> float:
    """When the next call may be attempted, for the user's message."""
    if state.circuit is Circuit.OPEN:
        return state.open_until
    return state.probe_until or 0.0
