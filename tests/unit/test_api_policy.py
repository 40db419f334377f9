"""The API call's rules in the core (``cidx_auth.service.api_calls``), driven by hand.

No HTTP here: each test answers the loop's ``Send`` with the outcome an adapter would
report, and reads what the loop did with it (slept, gave up, sent again, told the breaker).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from adapters.events import CountingSink
from adapters.memory import FakeClock, MemoryStateStore
from cidx_auth.domain.breaker import Admission, Circuit
from cidx_auth.domain.errors import (
    CidxAuthError,
    CircuitOpen,
    ConfigurationError,
    ProtocolError,
    RateLimited,
    RefreshRejected,
    ServerUnavailable,
)
from cidx_auth.domain.query import QueryRequest
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
    query_call,
)
from cidx_auth.service.breaker import CircuitBreaker

POST = Call("POST", "/api/query", {"query_text": "x"}, idempotent=False)
DOWN = ServerUnavailable("the server is down")


def policy(state: MemoryStateStore | None = None, clock: FakeClock | None = None) -> ApiPolicy:
    breaker = CircuitBreaker(state or MemoryStateStore(), clock or FakeClock(), CountingSink())
    return ApiPolicy(breaker, rng=lambda: 0.5)


def drive(call: Call, rules: ApiPolicy, outcomes: list[Outcome],
          on_warm: Callable[[], None] = lambda: None) -> tuple[Any, list[Any]]:
    """Run the loop, answering each send with the next outcome; (result, steps taken).
    ``on_warm`` runs at each ``Warm``: what the token layer (or another process) does then."""
    flow = attempts(call, rules)
    steps: list[Any] = []
    answer: Any = None
    while True:
        try:
            step = flow.send(answer)
        except StopIteration as stop:
            return stop.value, steps
        steps.append(step)
        if isinstance(step, Warm):
            on_warm()
        answer = outcomes.pop(0) if isinstance(step, Send) else None


def sends(steps: list[Any]) -> int:
    return sum(isinstance(step, Send) for step in steps)


def make_half_open(rules: ApiPolicy, clock: FakeClock) -> None:
    """Trip the circuit and let its open period pass: the next admission is the probe."""
    for _ in range(5):
        rules.breaker.record(True)
    clock.advance(60)


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
    make_half_open(rules, clock)
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


@pytest.mark.parametrize(("path", "shown"), [
    ("https://alice:hunter2@elsewhere.test/api?token=s3cret", "'https://elsewhere.test/api'"),
    ("//alice:pa/ss@elsewhere.test/api", "'//elsewhere.test/api'"),
    ("api/jobs?token=s3cret#s3cret", "'api/jobs'"),
    ("api/jobs#s3cret", "'api/jobs'"),
    ("api/jobs#s3cret#top", "'api/jobs'"),
    ("api/jobs?token=s3cret?x=1", "'api/jobs'"),
    ("https://alice:hun@ter2@elsewhere.test/api", "'https://elsewhere.test/api'"),
    ("https://alice:hunter2@elsewhere.test//api", "'https://elsewhere.test//api'"),
    ("http:/alice:hunter2@elsewhere.test/api", "'elsewhere.test/api'"),
])
def test_a_refused_path_is_shown_without_password_or_query(path: str, shown: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        generic_call("GET", path, None)
    assert str(refused.value) == f"{shown} is not a path on the CIDX server (start it with /)"


@pytest.mark.parametrize("method", ["GÉT", "G\u0130T", "GET1", "GE T", ""])
def test_a_method_of_anything_but_ascii_letters_is_refused(method: str) -> None:
    """httpcore would raise TypeError for the non-ASCII ones, deep inside a send."""
    with pytest.raises(ConfigurationError, match="is not an HTTP method"):
        generic_call(method, "/api/x", None)


@pytest.mark.parametrize(("path", "where"), [
    ("/api/a\nb", r"'\n' at position 6"), ("/api\x00", r"'\x00' at position 4"),
    ("/\x7f", r"'\x7f' at position 1"), ("/a\x85", r"'\x85' at position 2"),
    ("https://x.test/\r", r"'\r' at position 15"), ("/\x1f", r"'\x1f' at position 1"),
    ("/a\x9f", r"'\x9f' at position 2"),
])
def test_a_control_character_in_the_path_is_refused(path: str, where: str) -> None:
    """Not httpx's InvalidURL from inside the send: a ConfigurationError, before it."""
    with pytest.raises(ConfigurationError) as refused:
        generic_call("GET", path, None)
    assert str(refused.value) == (f"the path given to request() holds a control character "
                                  f"({where}); percent-encode it (%0A for a newline) or "
                                  "leave it out")


@pytest.mark.parametrize("path", ["/api/a b", "/api/~", "/api/\xa0", "/api/caf\xe9"])
def test_a_printable_character_in_the_path_is_left_for_httpx_to_encode(path: str) -> None:
    """A space, ``~`` (the last before DEL) and the no-break space (the first after the
    C1 controls) are no control characters: httpx percent-encodes them."""
    assert generic_call("GET", path, None).path == path


def test_a_path_that_is_not_text_is_refused_by_its_type() -> None:
    with pytest.raises(ConfigurationError) as refused:
        generic_call("GET", b"/api/x", None)  # type: ignore[arg-type]
    assert str(refused.value) == ("a bytes is not a path on the CIDX server: give request() "
                                  "text starting with /")


def _cycle() -> list[Any]:
    looped: list[Any] = []
    looped.append(looped)
    return looped


@pytest.mark.parametrize(("body", "why"), [
    ({1, 2}, "Object of type set is not JSON serializable"),
    (float("nan"), "Out of range float values are not JSON compliant"),
    ({"x": [float("inf")]}, "Out of range float values"),
    ({(1, 2): "tuple key"}, "keys must be str"),
    ({"x": "\ud800"}, "a lone surrogate"),
    (_cycle(), "Circular reference detected"),
])
def test_a_body_json_cannot_carry_is_refused_without_its_values(body: Any, why: str) -> None:
    with pytest.raises(ConfigurationError, match="cannot be sent as JSON") as refused:
        generic_call("POST", "/api/x", body)
    assert why in str(refused.value)
    assert "tuple key" not in str(refused.value)


def _nested(depth: int) -> list[Any]:
    deep: list[Any] = []
    for _ in range(depth):
        deep = [deep]
    return deep


@pytest.mark.parametrize(("make_body", "why"), [
    (lambda: {"x": "\ud800"}, "a string with a lone surrogate, which UTF-8 cannot encode"),
    (lambda: _nested(100_000), "lists or objects nested too deeply"),
    # Python's reason stops at its first colon: newer Pythons put the value after it
    (lambda: type("Row: id 7: s3cret", (), {})(), "Object of type Row"),
])
def test_a_body_json_cannot_carry_is_refused_word_for_word(make_body: Callable[[], Any],
                                                           why: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        generic_call("POST", "/api/x", make_body())
    assert str(refused.value) == (f"the json body given to request() cannot be sent as JSON "
                                  f"({why}); give it lists, dicts with text keys, text, "
                                  "finite numbers, booleans and None")


def test_a_body_json_can_carry_is_kept_as_given() -> None:
    body = {"text": "é", "n": [1, 2.5, None, True]}
    assert generic_call("POST", "/api/x", body).body is body


def test_the_probe_goes_once_more_only_once() -> None:
    """Another process may reopen the circuit meanwhile; the call must not loop on it."""
    clock = FakeClock()
    rules = policy(clock=clock)
    make_half_open(rules, clock)
    warms = 0

    def another_process_reopens_it() -> None:
        nonlocal warms
        warms += 1
        if warms == 2:
            make_half_open(rules, clock)

    first, second = CircuitOpen(0.0, 0.0), CircuitOpen(1.0, 1.0)
    with pytest.raises(CircuitOpen) as caught:
        drive(REPOS, rules, [Refused(first), Refused(second), Answer({})],
              on_warm=another_process_reopens_it)
    assert caught.value is second


@pytest.mark.parametrize(("probing", "error"),
                         [(False, CircuitOpen(0.0, 0.0)),
                          (True, RefreshRejected("run `cidx-auth login`"))],
                         ids=["blocked-outside-a-probe", "probe-refused-for-another-reason"])
def test_the_token_layer_giving_up_is_final_unless_it_was_blocked_by_its_own_probe(
    probing: bool, error: CidxAuthError
) -> None:
    clock = FakeClock()
    rules = policy(clock=clock)
    if probing:
        make_half_open(rules, clock)
    with pytest.raises(CidxAuthError) as caught:
        drive(REPOS, rules, [Refused(error), Answer({})])
    assert caught.value is error


def test_a_503s_retry_after_holds_the_opened_circuit_that_long() -> None:
    clock = FakeClock()
    rules = policy(clock=clock)
    for _ in range(4):
        rules.breaker.record(True)
    busy = ServerUnavailable("503", retry_after=45.0)  # longer than the first 30 s opening
    with pytest.raises(CircuitOpen) as caught:  # the 5th failure opens it; the retry is held
        drive(REPOS, rules, [Failure(busy)])
    assert caught.value.retry_at == clock.now() + 45.0


@pytest.mark.parametrize("text", ["x", QueryRequest("x")], ids=["text", "request"])
def test_a_query_is_a_post_to_the_query_endpoint(text: str | QueryRequest) -> None:
    assert query_call(text) == Call("POST", "/api/query", {"query_text": "x", "limit": 10})


@pytest.mark.parametrize(("repo", "options"), [("docs", None), (None, {"fuzzy": True})])
def test_a_request_object_with_separate_options_is_refused(
    repo: str | None, options: dict[str, Any] | None
) -> None:
    message = "pass either a QueryRequest or the text and options, not both"
    with pytest.raises(ConfigurationError, match=f"^{re.escape(message)}$"):
        query_call(QueryRequest("x"), repo, options)


def test_a_probe_whose_caller_is_interrupted_gives_its_turn_back() -> None:
    """Ctrl-C, SIGTERM or a cancelled task while the probe is out: the driver closes the
    flow, and the next call probes at once instead of being refused for 90 s."""
    state, clock = MemoryStateStore(), FakeClock()
    rules = policy(state, clock)
    make_half_open(rules, clock)
    flow = attempts(REPOS, rules)
    assert flow.send(None) == Warm()
    assert flow.send(None) == Send(REPOS)  # admitted as the probe, now out
    assert state.read().breaker.probe_until is not None
    flow.close()
    after = state.read().breaker
    assert (after.circuit, after.probe_until) == (Circuit.HALF_OPEN, None)
    assert rules.breaker.admit() is Admission.PROBE


def test_an_interrupted_call_that_was_not_the_probe_changes_nothing() -> None:
    state = MemoryStateStore()
    rules = policy(state)
    flow = attempts(REPOS, rules)
    flow.send(None)
    flow.send(None)
    before = state.read()
    flow.close()
    assert state.read() == before
