"""The service's circuit breaker (``cidx_auth.service.breaker``): what it announces, what it
tells a refused caller, and what it leaves alone in the shared state."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest

from adapters.events import CountingSink
from adapters.memory import FakeClock, MemoryStateStore
from cidx_auth.domain.breaker import Admission, BreakerState, Circuit
from cidx_auth.domain.client_state import ClientState
from cidx_auth.domain.errors import CircuitOpen
from cidx_auth.domain.events import AuthEvent, EventKind
from cidx_auth.service.breaker import CircuitBreaker

NOON = datetime(2027, 1, 15, 12, 0, 0).timestamp()
"""Local noon: 30 s or 5 minutes later is still the same local day in any zone."""


Guard = tuple[CircuitBreaker, FakeClock, CountingSink]


def breaker(state: MemoryStateStore | None = None) -> Guard:
    clock, events = FakeClock(NOON), CountingSink()
    return CircuitBreaker(state or MemoryStateStore(), clock, events), clock, events


def trip(guard: CircuitBreaker, clock: FakeClock) -> None:
    """Five failures one second apart: the fifth, at NOON + 4, opens the circuit."""
    for failure in range(5):
        clock.advance(1 if failure else 0)
        guard.record(True)


def changes(events: CountingSink) -> list[AuthEvent]:
    return [event for event in events.events if event.kind is EventKind.BREAKER]


def test_each_change_of_circuit_is_announced_with_its_moment_and_direction() -> None:
    guard, clock, events = breaker()
    trip(guard, clock)
    clock.advance(30)
    assert guard.admit() is Admission.PROBE  # the admission itself half-opens the circuit
    clock.advance(2)
    guard.record(True)  # the probe failed: open again, for 60 s
    clock.advance(60)
    assert guard.admit() is Admission.PROBE
    clock.advance(1)
    guard.record(False)
    assert events.events == [  # the failures that did not trip it announced nothing
        AuthEvent(EventKind.BREAKER, NOON + 4, "closed -> open"),
        AuthEvent(EventKind.BREAKER, NOON + 34, "open -> half_open"),
        AuthEvent(EventKind.BREAKER, NOON + 36, "half_open -> open"),
        AuthEvent(EventKind.BREAKER, NOON + 96, "open -> half_open"),
        AuthEvent(EventKind.BREAKER, NOON + 97, "half_open -> closed"),
    ]


def test_login_closing_an_open_circuit_is_announced_and_a_closed_one_is_left_quiet() -> None:
    guard, clock, events = breaker()
    trip(guard, clock)
    clock.advance(10)
    guard.reset()
    assert guard.current() == BreakerState()
    assert changes(events)[-1] == AuthEvent(EventKind.BREAKER, NOON + 14, "open -> closed")
    guard.reset()
    assert len(changes(events)) == 2


def test_a_refused_call_is_told_the_moment_of_the_next_attempt_without_today_s_date() -> None:
    guard, clock, _ = breaker()
    trip(guard, clock)
    clock.advance(10)
    with pytest.raises(CircuitOpen) as refused:
        guard.admit()
    assert refused.value.retry_at == NOON + 34 and refused.value.failures == 5
    assert str(refused.value) == (
        "server unavailable: this machine's circuit breaker stopped the call (nothing was "
        "sent) after 5 failed calls in a row; next attempt after 12:00:34, when the first "
        "command probes the server; to try now, run `cidx-auth login` (it resets the breaker)")


def test_a_refused_second_probe_is_told_when_the_first_is_presumed_lost() -> None:
    guard, clock, _ = breaker()
    trip(guard, clock)
    clock.advance(30)
    assert guard.admit() is Admission.PROBE
    with pytest.raises(CircuitOpen) as refused:
        guard.admit()
    assert refused.value.retry_at == NOON + 34 + 90 and refused.value.failures == 5
    assert str(refused.value) == (
        "server unavailable: this machine's circuit breaker stopped the call (nothing was "
        "sent) after 5 failed calls in a row; another command is probing the server now; "
        "next attempt after 12:02:04 at the latest; to try now, run `cidx-auth login` "
        "(it resets the breaker)")


def test_a_failed_probe_counts_in_the_failures_the_message_gives() -> None:
    guard, clock, _ = breaker()
    trip(guard, clock)
    clock.advance(30)
    assert guard.admit() is Admission.PROBE
    guard.record(True)  # open again, for 60 s
    with pytest.raises(CircuitOpen) as refused:
        guard.admit()
    assert refused.value.failures == 6 and refused.value.retry_at == NOON + 34 + 60
    assert "after 6 failed calls in a row; next attempt after 12:01:34, " in str(refused.value)


def test_the_command_the_message_names_does_close_the_circuit() -> None:
    guard, clock, _ = breaker()
    trip(guard, clock)
    with pytest.raises(CircuitOpen, match="run `cidx-auth login`"):
        guard.admit()
    guard.reset()  # what every `cidx-auth login` does first (cli.login)
    assert guard.admit() is Admission.ALLOW


def test_a_change_of_circuit_keeps_the_counters_and_the_last_refresh() -> None:
    store = MemoryStateStore(ClientState(counters={"logins": 2}, last_refresh=NOON - 60))
    guard, clock, _ = breaker(store)
    trip(guard, clock)
    assert store.read().breaker.circuit is Circuit.OPEN
    assert store.read().counters == {"logins": 2}
    assert store.read().last_refresh == NOON - 60


def test_a_probe_given_back_lets_the_next_call_probe_at_once() -> None:
    guard, clock, _ = breaker()
    trip(guard, clock)
    clock.advance(30)
    assert guard.admit() is Admission.PROBE
    guard.abandon_probe()  # its caller was interrupted before it reported
    assert guard.admit() is Admission.PROBE  # not refused until NOON + 124
    assert guard.current().circuit is Circuit.HALF_OPEN


@pytest.mark.parametrize("opened", [False, True], ids=["closed", "open"])
def test_giving_back_a_probe_that_is_not_out_changes_nothing(opened: bool) -> None:
    guard, clock, _ = breaker()
    if opened:
        trip(guard, clock)
    before = guard.current()
    guard.abandon_probe()
    assert guard.current() == before


def test_giving_back_a_probe_never_raises() -> None:
    class Broken(MemoryStateStore):
        def update(self, change: object) -> ClientState:  # type: ignore[override]
            raise OSError("disk gone")

    CircuitBreaker(Broken(), FakeClock(NOON), CountingSink()).abandon_probe()


def test_an_interrupted_probe_gives_back_its_own_probe_only() -> None:
    """A probes; 90 s on it is presumed lost and B probes; then A is interrupted: B's
    probe is still out, so C is refused (one probe at a time), until B gives it back."""
    guard, clock, _ = breaker()
    trip(guard, clock)
    clock.advance(30)
    admitted, interrupted = threading.Event(), threading.Event()
    seen: list[Admission] = []

    def first_caller() -> None:  # A: admitted, then interrupted long after
        seen.append(guard.admit())
        admitted.set()
        interrupted.wait(10)
        guard.abandon_probe()

    first = threading.Thread(target=first_caller)
    first.start()
    admitted.wait(10)
    assert seen == [Admission.PROBE]
    clock.advance(91)  # A never reported: presumed lost
    assert guard.admit() is Admission.PROBE  # B, in this thread
    interrupted.set()
    first.join(10)
    with pytest.raises(CircuitOpen):
        guard.admit()  # C: B's probe is still out
    guard.abandon_probe()  # B gives its own back
    assert guard.admit() is Admission.PROBE
