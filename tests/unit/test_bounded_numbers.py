"""Numbers read back from files and answers are bounded (issue 20, item 4): a count
outside 0..MAX_COUNT, a time no clock shows, a bool or NaN where a number belongs is
damage, handled as any damaged file is; a failing event sink costs one line."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from adapters.events import FanOutSink
from adapters.file_state_store import decode_state, state_to_dict
from adapters.http_settings import json_body
from adapters.memory import MemoryStateStore, make_jwt
from cidx_auth.domain.bounds import MAX_COUNT, count, moment
from cidx_auth.domain.breaker import BreakerConfig, BreakerState, Circuit, record
from cidx_auth.domain.client_state import ClientState
from cidx_auth.domain.errors import CorruptStore, MalformedToken
from cidx_auth.domain.events import AuthEvent, EventKind
from cidx_auth.domain.token import (
    Session,
    TokenRules,
    parse_access_token,
    session_from_dict,
    session_to_dict,
)
from cidx_auth.service.breaker import CircuitBreaker

NOW = 1_800_000_000.0


def test_the_bound_is_the_largest_integer_every_json_reader_holds_exactly() -> None:
    assert MAX_COUNT == 9_007_199_254_740_991
    assert count(MAX_COUNT) == MAX_COUNT and count(0) == 0


@pytest.mark.parametrize("value", [MAX_COUNT + 1, -1, 10**4299, True, False, 1.0, "1", None])
def test_anything_but_a_whole_number_in_range_is_no_count(value: Any) -> None:
    with pytest.raises(ValueError, match="bad count"):
        count(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 1e12, 10**400, True, "1"])
def test_anything_but_a_time_a_clock_shows_is_no_moment(value: Any) -> None:
    with pytest.raises(ValueError, match="time"):
        moment(value)


def test_a_moment_in_range_is_a_float_and_an_offset_may_be_negative() -> None:
    assert moment(NOW) == NOW and isinstance(moment(1), float)
    assert moment(-3600, earliest=-1e11) == -3600.0


def state_file(counters: str) -> bytes:
    """A state file whose counters are the JSON text ``counters``, as planted by hand."""
    text = json.dumps(state_to_dict(ClientState(counters={"logins": 1})))
    return text.replace('{"logins": 1}', counters).encode()


@pytest.mark.parametrize("counters", [
    '{"logins": ' + "9" * 4300 + "}",  # json reads it; one more and it cannot be written
    '{"logins": ' + "9" * 4301 + "}",  # json itself refuses it (ValueError)
    '{"logins": ' + str(MAX_COUNT + 1) + "}",
    '{"logins": true}', '{"logins": 1.0}', '{"logins": -1}', '{"logins": NaN}',
    '{"logins": Infinity}',
], ids=["4300-digits", "4301-digits", "max-plus-one", "bool", "float", "negative", "nan", "inf"])
def test_a_state_file_with_a_counter_out_of_range_is_damaged(counters: str) -> None:
    with pytest.raises(CorruptStore, match="damaged"):
        decode_state(state_file(counters))


@pytest.mark.parametrize("failures", ["true", str(MAX_COUNT + 1), "2.5", "9" * 5000])
def test_a_state_file_with_a_failure_count_out_of_range_is_damaged(failures: str) -> None:
    text = json.dumps(state_to_dict(ClientState()))
    bent = text.replace('"failures": 0', f'"failures": {failures}')
    assert bent != text
    with pytest.raises(CorruptStore, match="damaged"):
        decode_state(bent.encode())


def test_counts_at_the_bound_read_back_and_stay_there() -> None:
    state = decode_state(state_file('{"logins": ' + str(MAX_COUNT) + "}"))
    assert state.counters == {"logins": MAX_COUNT}
    state = state.counted(AuthEvent(EventKind.LOGGED_IN, NOW))
    assert state.counters == {"logins": MAX_COUNT}
    assert decode_state(json.dumps(state_to_dict(state)).encode()) == state


@pytest.mark.parametrize(("before", "failures"), [
    (BreakerState(Circuit.HALF_OPEN, MAX_COUNT), MAX_COUNT),  # a failed probe opens
    (BreakerState(Circuit.CLOSED, MAX_COUNT), MAX_COUNT),  # a trip
    (BreakerState(Circuit.CLOSED, MAX_COUNT - 1), MAX_COUNT),
    (BreakerState(Circuit.CLOSED, 1), 2),  # a failure below the threshold
])
def test_the_breaker_failure_count_stops_at_the_bound(before: BreakerState, failures: int) -> None:
    assert record(before, True, NOW, BreakerConfig()).failures == failures


GOOD = make_jwt({"iat": NOW, "exp": NOW + 600, "username": "alice"})


def stored(**change: Any) -> dict[str, Any]:
    token = parse_access_token(GOOD, TokenRules(), NOW)
    document = session_to_dict(Session(token, "r-1", clock_offset=2.5), NOW)
    document.update(change)
    return document


@pytest.mark.parametrize("change", [
    {"expires_at": 1e300}, {"expires_at": float("nan")}, {"expires_at": True},
    {"expires_at": 10**400}, {"expires_at": -1.0}, {"expires_at": None},
    {"issued_at": float("inf")}, {"issued_at": False}, {"issued_at": 1e13},
    {"clock_offset": 1e300}, {"clock_offset": float("-inf")}, {"clock_offset": True},
    {"clock_offset": -(10**400)}, {"clock_offset": None},
])
def test_a_stored_session_with_a_time_out_of_range_is_malformed(change: dict[str, Any]) -> None:
    with pytest.raises(MalformedToken, match=r"stored session (is missing|has a bad)"):
        session_from_dict(stored(**change))


def test_a_stored_session_in_range_reads_back() -> None:
    session = session_from_dict(stored(clock_offset=-86400.0))
    assert (session.token.exp, session.token.iat, session.clock_offset) == (
        NOW + 600, NOW, -86400.0)
    assert session_from_dict(stored(issued_at=None)).token.iat is None


def test_an_answer_with_an_integer_json_cannot_read_is_not_json() -> None:
    body = b'{"access_token": "x", "expires_in": ' + b"9" * 5000 + b"}"
    assert json_body(httpx.Response(200, content=body)) is None
    assert json_body(httpx.Response(200, content=b'{"a": 1}')) == {"a": 1}


class BrokenSink:
    def emit(self, event: AuthEvent) -> None:
        raise ValueError("Exceeds the limit (4300 digits)\nsecond line of the story")


class KeepingSink:
    def __init__(self) -> None:
        self.events: list[AuthEvent] = []

    def emit(self, event: AuthEvent) -> None:
        self.events.append(event)


def test_a_failing_sink_costs_one_warning_line_and_the_other_sinks_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kept = KeepingSink()
    event = AuthEvent(EventKind.LOGGED_IN, NOW, "user alice")
    with caplog.at_level(logging.DEBUG, logger="cidx_auth"):
        FanOutSink(BrokenSink(), kept).emit(event)
    assert kept.events == [event]
    assert [(r.levelno, r.getMessage(), r.exc_info) for r in caplog.records] == [(
        logging.WARNING,
        "could not record the event logged_in (BrokenSink): "
        "ValueError: Exceeds the limit (4300 digits)", None)]


def test_a_sink_whose_error_cannot_be_shown_is_named_by_its_type(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    class Sink:
        def emit(self, event: AuthEvent) -> None:
            raise Unprintable

    with caplog.at_level(logging.DEBUG, logger="cidx_auth"):
        FanOutSink(Sink()).emit(AuthEvent(EventKind.LOGGED_IN, NOW))
    assert [r.getMessage() for r in caplog.records] == [
        "could not record the event logged_in (Sink): Unprintable"]


def test_a_breaker_whose_sink_fails_still_opens_and_says_so_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Clock:
        def now(self) -> float:
            return NOW

    state = MemoryStateStore()
    breaker = CircuitBreaker(state, Clock(), BrokenSink())  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG, logger="cidx_auth"):
        for _ in range(5):
            breaker.record(failed=True)
    assert state.read().breaker.circuit is Circuit.OPEN
    assert [(r.levelno, r.exc_info) for r in caplog.records] == [(logging.WARNING, None)]
    assert caplog.records[0].getMessage().startswith(
        "could not record the event breaker (BrokenSink): ValueError")
