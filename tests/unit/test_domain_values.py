"""Small domain values: typed text, the open-circuit error, and the persisted counters."""

from __future__ import annotations

import pytest

from cidx_auth.domain.client_state import ClientState
from cidx_auth.domain.errors import CircuitOpen, TransportError
from cidx_auth.domain.events import AuthEvent, EventKind
from cidx_auth.domain.text import is_utf8

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("text", "sendable"), [
    ("alice", True),
    ("café ☕ 日本", True),
    ("", True),
    ("caf\udce9", False),  # the byte 0xe9 on a command line, as Python decodes it
    ("\ud83d", False),  # half of a surrogate pair
], ids=["ascii", "non-ascii", "empty", "lone-low-surrogate", "lone-high-surrogate"])
def test_only_text_without_lone_surrogates_is_utf8(text: str, sendable: bool) -> None:
    assert is_utf8(text) is sendable


def test_an_open_circuit_keeps_the_moment_of_the_next_attempt() -> None:
    error = CircuitOpen(NOW + 30, NOW)
    assert error.retry_at == NOW + 30 and error.failures == 0
    assert isinstance(error, TransportError) and error.exit_code == 4


@pytest.mark.parametrize(("failures", "said"), [
    (0, "stopped the call (nothing was sent); next attempt"),
    (1, "stopped the call (nothing was sent) after 1 failed call in a row; next attempt"),
    (2, "stopped the call (nothing was sent) after 2 failed calls in a row; next attempt"),
])
def test_an_open_circuit_says_how_many_failures_opened_it(failures: int, said: str) -> None:
    text = str(CircuitOpen(NOW + 30, NOW, failures=failures))
    assert text.startswith("server unavailable: this machine's circuit breaker " + said)
    assert text.endswith("; to try now, run `cidx-auth login` (it resets the breaker)")


def test_each_counted_event_adds_one_to_its_counter() -> None:
    state = ClientState()
    for moment in (NOW, NOW + 1, NOW + 2):
        state = state.counted(AuthEvent(EventKind.LOGGED_IN, moment))
    state = state.counted(AuthEvent(EventKind.LOGIN_REFUSED, NOW + 3))
    state = state.counted(AuthEvent(EventKind.REFRESH_FAILED, NOW + 4))
    assert state.counters == {"logins": 3, "failures": 2}


def test_only_a_refresh_moves_the_last_refresh_time() -> None:
    state = ClientState().counted(AuthEvent(EventKind.REFRESHED, NOW))
    assert state.last_refresh == NOW
    for kind in (EventKind.LOGGED_IN, EventKind.RELOGGED_IN, EventKind.REFRESH_FAILED):
        state = state.counted(AuthEvent(kind, NOW + 60))
    assert state.last_refresh == NOW and state.counters["refreshes"] == 1


def test_an_event_that_is_not_counted_leaves_the_state_as_it_was() -> None:
    state = ClientState(counters={"logins": 1}, last_refresh=NOW)
    assert state.counted(AuthEvent(EventKind.RETRY, NOW + 5)) is state
