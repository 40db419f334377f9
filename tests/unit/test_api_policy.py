"""The API call's rules in the core (``cidx_auth.service.api_calls``), driven by hand.

No HTTP here: each test answers the loop's ``Send`` with the outcome an adapter would
report, and reads what the loop did with it (slept, gave up, sent again, told the breaker).
"""

from __future__ import annotations

from typing import Any

import pytest

from adapters.events import CountingSink
from adapters.memory import FakeClock, MemoryStateStore
from cidx_auth.domain.breaker import Circuit
from cidx_auth.domain.errors import (
    CidxAuthError,
    CircuitOpen,
    ConfigurationError,
    ProtocolError,
    RateLimited,
    ServerUnavailable,
)
from cidx_auth.service.api_calls import (
    HEALTH,
    REPOS,
    Answer,
    ApiPolicy,
    Call,
    Failure,
    Outcome,
    Refused,
    Send,
    Sleep,
    Warm,
    attempts,
    breaker_failure,
    generic_call,
    may_send_again,
)
from cidx_auth.service.breaker import CircuitBreaker

POST = Call("POST", "/api/query", {"query_text": "x"}, idempotent=False)
DOWN = ServerUnavailable("the server is down")


def policy(state: MemoryStateStore | None = None, clock: FakeClock | None = None) -> ApiPolicy:
    breaker = CircuitBreaker(state or MemoryStateStore(), clock or FakeClock(), CountingSink())
    return ApiPolicy(breaker, rng=lambda: 0.5)


def drive(call: Call, rules: ApiPolicy, outcomes: list[Outcome]) -> tuple[Any, list[Any]]:
    """Run the loop, answering each send with the next outcome; (result, steps taken)."""
    flow = attempts(call, rules)
    steps: list[Any] = []
    answer: Any = None
    while True:
        try:
            step = flow.send(answer)
        except StopIteration as stop:
            return stop.value, steps
        steps.append(step)
        answer = outcomes.pop(0) if isinstance(step, Send) else None


def sends(steps: list[Any]) -> int:
    return sum(isinstance(step, Send) for step in steps)


def test_an_answer_is_the_result_and_the_server_counts_as_up() -> None:
    state = MemoryStateStore()
    result, steps = drive(REPOS, policy(state), [Answer({"total": 0})])
    assert result == {"total": 0}
    assert steps == [Warm(), Send(REPOS)]
    assert state.read().breaker.failures == 0


def test_health_needs_no_token() -> None:
    _, steps = drive(HEALTH, policy(), [Answer(None)])
    assert steps == [Send(HEALTH)]


def test_an_unwell_server_is_tried_three_times_then_the_error_goes_up() -> None:
    state = MemoryStateStore()
    with pytest.raises(ServerUnavailable) as caught:
        drive(REPOS, policy(state), [Failure(DOWN)] * 3)
    assert caught.value is DOWN
    assert state.read().breaker.failures == 3


def test_backoff_is_full_jitter_between_attempts() -> None:
    _, steps = drive(REPOS, policy(), [Failure(DOWN), Failure(DOWN), Answer([])])
    assert [step.seconds for step in steps if isinstance(step, Sleep)] == [0.5, 1.0]


def test_a_refusal_is_not_tried_again_and_does_not_count_against_the_server() -> None:
    state = MemoryStateStore()
    refused = CidxAuthError("403: not yours")
    with pytest.raises(CidxAuthError) as caught:
        drive(REPOS, policy(state), [Failure(refused)])
    assert caught.value is refused
    assert state.read().breaker.failures == 0


def test_a_rate_limit_waits_as_long_as_the_server_asked() -> None:
    _, steps = drive(POST, policy(), [Failure(RateLimited("429", retry_after=7.0)), Answer({})])
    assert Sleep(7.0) in steps


def test_a_call_the_server_may_have_started_is_not_sent_twice() -> None:
    with pytest.raises(ServerUnavailable):
        drive(POST, policy(), [Failure(DOWN)])


def test_a_call_the_server_never_saw_may_be_sent_again() -> None:
    result, steps = drive(POST, policy(), [Failure(DOWN, unsent=True), Answer({"ok": 1})])
    assert result == {"ok": 1}
    assert sends(steps) == 2


def test_a_final_failure_is_never_sent_again() -> None:
    with pytest.raises(ServerUnavailable):
        drive(REPOS, policy(), [Failure(DOWN, unsent=True, final=True)])


def test_a_dropped_connection_is_tried_once_more_within_the_same_attempt() -> None:
    state = MemoryStateStore()
    result, steps = drive(REPOS, policy(state), [Failure(DOWN, dropped=True), Answer([])])
    assert result == []
    assert sends(steps) == 2
    assert not any(isinstance(step, Sleep) for step in steps)
    assert state.read().breaker.failures == 0  # the fresh connection worked: no outage


def test_a_dropped_connection_of_a_post_is_not_resent() -> None:
    with pytest.raises(ServerUnavailable):
        drive(POST, policy(), [Failure(DOWN, dropped=True)])


def test_the_token_layer_giving_up_ends_the_call() -> None:
    gave_up = CidxAuthError("run `cidx-auth login`")
    with pytest.raises(CidxAuthError) as caught:
        drive(REPOS, policy(), [Refused(gave_up)])
    assert caught.value is gave_up


def test_a_probe_refused_only_because_it_held_the_probe_goes_once_more() -> None:
    state, clock = MemoryStateStore(), FakeClock()
    rules = policy(state, clock)
    for _ in range(5):
        rules.breaker.record(True)
    assert state.read().breaker.circuit is Circuit.OPEN
    clock.advance(60)  # past the open period: the next admission is the probe
    blocked = CircuitOpen(0.0, 0.0)
    result, steps = drive(REPOS, rules, [Refused(blocked), Answer({"again": True})])
    assert result == {"again": True}
    assert sends(steps) == 2
    assert state.read().breaker.circuit is Circuit.CLOSED


def test_what_counts_against_the_server() -> None:
    assert breaker_failure(DOWN)
    assert not breaker_failure(RateLimited("429"))
    assert not breaker_failure(ProtocolError("not JSON"))
    assert not breaker_failure(None)


def test_when_a_call_may_be_sent_again() -> None:
    get = Call("GET", "/api/repos")
    assert may_send_again(get, Failure(DOWN))
    assert not may_send_again(POST, Failure(DOWN))
    assert may_send_again(POST, Failure(DOWN, unsent=True))
    assert may_send_again(POST, Failure(RateLimited("429")))
    assert not may_send_again(get, Failure(DOWN, unsent=True, final=True))


@pytest.mark.parametrize(("method", "idempotent"),
                         [("get", True), ("PUT", True), ("DELETE", True), ("post", False),
                          ("PATCH", False)])
def test_idempotency_follows_the_method(method: str, idempotent: bool) -> None:
    call = generic_call(method, "/api/x", None)
    assert call.method == method.upper()
    assert call.idempotent is idempotent


@pytest.mark.parametrize("path", ["https://elsewhere.test/api", "//elsewhere.test/api", "api"])
def test_a_path_off_the_server_is_refused(path: str) -> None:
    with pytest.raises(ConfigurationError, match="not a path on the CIDX server"):
        generic_call("GET", path, None)
