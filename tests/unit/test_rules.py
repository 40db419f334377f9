"""Expiry, breaker and retry rules: examples plus properties over all times and sequences."""

from __future__ import annotations

import email.utils
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cidx_auth.domain import breaker as br
from cidx_auth.domain.breaker import Admission, BreakerConfig, BreakerState, Circuit
from cidx_auth.domain.errors import (
    InvalidCredentials,
    RateLimited,
    RefreshRejected,
    ServerUnavailable,
)
from cidx_auth.domain.expiry import ExpiryPolicy, TokenState
from cidx_auth.domain.retry import RetryPolicy, is_retryable, parse_retry_after
from cidx_auth.domain.token import AccessToken

NOW = 1_800_000_000.0
POLICY = ExpiryPolicy()
CONFIG = BreakerConfig()


def token(lifetime: float = 600.0, iat: float = NOW) -> AccessToken:
    return AccessToken("h.c.s", "RS256", iat + lifetime, iat, None, None)


# --- expiry -------------------------------------------------------------------------


def test_ten_minute_token_states() -> None:
    t = token()
    assert POLICY.state(t, NOW) is TokenState.FRESH
    assert POLICY.state(t, NOW + 299.9) is TokenState.FRESH
    assert POLICY.state(t, NOW + 300) is TokenState.STALE
    assert POLICY.state(t, NOW + 569.9) is TokenState.STALE
    # errata #1: unusable 30 s *before* exp, not after it.
    assert POLICY.state(t, NOW + 570) is TokenState.EXPIRED
    assert POLICY.state(t, NOW + 630) is TokenState.EXPIRED
    # With no offset given, the client's clock is taken to agree with the server's.
    assert POLICY.deadlines(t) == (NOW + 300, NOW + 570)
    assert POLICY.seconds_left(t, NOW + 100) == 470


def test_offset_moves_the_judgement_to_the_server_clock() -> None:
    t = token()
    # Client clock 10 minutes slow: server time is client + 600.
    assert POLICY.state(t, NOW - 600, clock_offset=600) is TokenState.FRESH
    assert POLICY.state(t, NOW - 30, clock_offset=600) is TokenState.EXPIRED
    # Client clock 10 minutes fast.
    assert POLICY.state(t, NOW + 600, clock_offset=-600) is TokenState.FRESH
    assert POLICY.seconds_left(t, NOW + 600, clock_offset=-600) == pytest.approx(570)


def test_short_lived_tokens_scale_the_margins() -> None:
    t = token(lifetime=4)
    assert POLICY.margins(t) == (0.4, 2.0)
    assert POLICY.state(t, NOW + 1) is TokenState.FRESH
    assert POLICY.state(t, NOW + 2.5) is TokenState.STALE
    assert POLICY.state(t, NOW + 3.6) is TokenState.EXPIRED


def test_token_without_iat_uses_the_plain_constants() -> None:
    t = AccessToken("h.c.s", "RS256", NOW + 600, None, None, None)
    assert POLICY.margins(t) == (30.0, 300.0)


@given(
    lifetime=st.floats(min_value=0.01, max_value=86_400),
    at=st.floats(min_value=-90_000, max_value=90_000),
    offset=st.floats(min_value=-3600, max_value=3600),
)
def test_expiry_properties(lifetime: float, at: float, offset: float) -> None:
    t = token(lifetime)
    now = NOW + at
    state = POLICY.state(t, now, offset)
    server_now = now + offset
    skew, window = POLICY.margins(t)
    assert 0 < skew <= window <= max(POLICY.refresh_window, skew)
    # A token is never sent when it dies within the skew: errata #1.
    if state is not TokenState.EXPIRED:
        assert server_now + skew < t.exp + 1e-6
        assert POLICY.seconds_left(t, now, offset) > 0
    else:
        assert server_now + skew >= t.exp - 1e-6
        assert POLICY.seconds_left(t, now, offset) == 0  # never "1 s left" once expired
    # Time only moves a token forward through the states.
    order = [TokenState.FRESH, TokenState.STALE, TokenState.EXPIRED]
    assert order.index(POLICY.state(t, now + 1, offset)) >= order.index(state)


# --- breaker ------------------------------------------------------------------------


def fail(state: BreakerState, now: float = NOW, retry_after: float | None = None) -> BreakerState:
    return br.record(state, True, now, CONFIG, retry_after)


def tripped(now: float = NOW, retry_after: float | None = None) -> BreakerState:
    state = BreakerState()
    for _ in range(CONFIG.failure_threshold):
        state = fail(state, now, retry_after)
    return state


def probe_and_fail(state: BreakerState) -> BreakerState:
    """Wait out the open period, send the one probe, and have it fail."""
    decision, state = br.admit(state, state.open_until, CONFIG)
    assert decision is Admission.PROBE
    return fail(state, state.open_until)


def test_opens_for_30_s_after_exactly_five_consecutive_failures() -> None:
    state = BreakerState()
    for _ in range(4):
        state = fail(state)
        assert br.admit(state, NOW, CONFIG)[0] is Admission.ALLOW
    state = fail(state)
    assert state.circuit is Circuit.OPEN
    assert br.admit(state, NOW + 29.9, CONFIG)[0] is Admission.REJECT
    assert br.retry_at(state) == NOW + 30
    assert br.admit(state, NOW + 30, CONFIG)[0] is Admission.PROBE


def test_a_success_resets_the_count() -> None:
    state = BreakerState()
    for _ in range(4):
        state = fail(state)
    state = br.record(state, False, NOW, CONFIG)
    for _ in range(4):
        state = fail(state)
    assert state.circuit is Circuit.CLOSED


def test_each_failed_probe_doubles_the_open_period_up_to_300_s() -> None:
    state = tripped()
    periods = []
    for _ in range(6):
        opened_at = state.open_until
        state = probe_and_fail(state)
        assert state.circuit is Circuit.OPEN
        periods.append(state.open_until - opened_at)
        assert br.admit(state, state.open_until - 0.1, CONFIG)[0] is Admission.REJECT
    assert periods == [60, 120, 240, 300, 300, 300]


def test_a_successful_probe_closes_and_the_next_opening_is_30_s_again() -> None:
    state = probe_and_fail(probe_and_fail(tripped()))  # open for 120 s now
    decision, state = br.admit(state, state.open_until, CONFIG)
    assert decision is Admission.PROBE
    state = br.record(state, False, state.open_until, CONFIG)
    assert state == BreakerState()  # closed, failures 0, open period 30 s
    later = NOW + 10_000
    assert tripped(later).open_until == later + 30


def test_half_open_lets_exactly_one_probe_through() -> None:
    state = tripped()
    decision, state = br.admit(state, NOW + 30, CONFIG)
    assert decision is Admission.PROBE and state.circuit is Circuit.HALF_OPEN
    assert br.admit(state, NOW + 31, CONFIG)[0] is Admission.REJECT
    assert br.retry_at(state) == NOW + 30 + CONFIG.probe_timeout
    closed = br.record(state, False, NOW + 32, CONFIG)
    assert closed == BreakerState()
    reopened = fail(state, NOW + 32)
    assert reopened.circuit is Circuit.OPEN and reopened.open_until == NOW + 32 + 60


def test_a_lost_probe_is_replaced_after_its_timeout() -> None:
    state = BreakerState(Circuit.HALF_OPEN, 5, NOW, probe_until=NOW + 90)
    assert br.admit(state, NOW + 89, CONFIG)[0] is Admission.REJECT
    decision, state = br.admit(state, NOW + 90, CONFIG)
    assert decision is Admission.PROBE and state.probe_until == NOW + 180


def test_retry_after_lengthens_the_open_period_up_to_an_hour() -> None:
    state = BreakerState(failures=4)
    assert fail(state, retry_after=900).open_until == NOW + 900
    assert fail(state, retry_after=10).open_until == NOW + 30
    assert fail(state, retry_after=99_999_999).open_until == NOW + 3600
    assert fail(state, retry_after=-5).open_until == NOW + 30


def test_retry_after_does_not_feed_the_doubling() -> None:
    state = tripped(retry_after=99_999_999)
    assert state.open_until == NOW + 3600 and state.open_period == 30
    assert probe_and_fail(state).open_until == NOW + 3600 + 60


def test_an_opening_longer_than_any_rule_allows_has_ended() -> None:
    # A file from before the cap (Retry-After: 99999999), or a clock set back.
    stuck = BreakerState(Circuit.OPEN, 5, NOW + 99_999_999)
    decision, state = br.admit(stuck, NOW, CONFIG)
    assert decision is Admission.PROBE and state.probe_until == NOW + 90
    lost = BreakerState(Circuit.HALF_OPEN, 5, NOW, probe_until=NOW + 10_000)
    assert br.admit(lost, NOW, CONFIG)[0] is Admission.PROBE


def test_an_opening_of_exactly_the_retry_after_cap_is_honoured_from_its_first_moment() -> None:
    state = fail(BreakerState(failures=4), retry_after=3600)
    assert br.admit(state, NOW, CONFIG)[0] is Admission.REJECT
    assert br.admit(state, NOW + 3599.9, CONFIG)[0] is Admission.REJECT
    assert br.admit(state, NOW + 3600, CONFIG)[0] is Admission.PROBE


def test_a_planted_open_period_no_rule_could_make_starts_over() -> None:
    for bogus in (0.0, -1.0, 1e9, float("nan"), float("inf")):
        state = BreakerState(Circuit.HALF_OPEN, 5, NOW, None, bogus)
        assert fail(state).open_until == NOW + 30


def test_late_answers_do_not_close_an_open_circuit() -> None:
    state = BreakerState(Circuit.OPEN, 5, NOW + 30)
    assert br.record(state, False, NOW, CONFIG) == state
    assert fail(state) == state


def test_next_probe_for_status() -> None:
    assert br.next_probe(BreakerState(), NOW, CONFIG) is None
    assert br.retry_at(BreakerState()) == 0.0  # a closed circuit makes nobody wait
    state = tripped()
    assert br.next_probe(state, NOW, CONFIG) == NOW + 30
    assert br.next_probe(state, NOW + 45, CONFIG) == NOW + 45  # it may go now
    _, probing = br.admit(state, NOW + 30, CONFIG)
    assert br.next_probe(probing, NOW + 31, CONFIG) == NOW + 30 + 90


# (first_open_period, max_open_period, max_retry_after)
@pytest.mark.parametrize("periods", [
    (600, 300, 3600), (0, 300, 3600), (-1, 300, 3600), (30, 3601, 3600), (40, 35, 3600),
])
def test_the_config_refuses_periods_out_of_order(periods: tuple[float, float, float]) -> None:
    message = "need 0 < first_open_period <= max_open_period <= max_retry_after"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        BreakerConfig(5, *periods)


@pytest.mark.parametrize("periods", [
    (0.5, 300, 3600), (300, 300, 3600), (30, 3600, 3600), (60, 60, 60),
])
def test_the_config_accepts_periods_in_order_equal_ones_included(
    periods: tuple[float, float, float],
) -> None:
    config = BreakerConfig(5, *periods)
    assert (config.first_open_period, config.max_open_period, config.max_retry_after) == periods


@pytest.mark.parametrize("retry_after", [None, 0.0, 0.25])
def test_a_sub_second_first_open_period_is_not_rounded_up(retry_after: float | None) -> None:
    quick = BreakerConfig(failure_threshold=1, first_open_period=0.5, max_open_period=2)
    state = br.record(BreakerState(), True, NOW, quick, retry_after)
    assert state.circuit is Circuit.OPEN and state.open_until == NOW + 0.5


# Every (circuit, signal) pair, written out from the rules in the module docstring, not read
# from the table: the resulting circuit, open period and failure count from a state with 2
# failures whose last open period was 60 s (so "back to 30 s", "keep 60 s" and "double to
# 120 s" differ); None: nothing changes.
C, S = Circuit, br.Signal
EXPECTED_STEPS: dict[tuple[Circuit, br.Signal], tuple[Circuit, float, int] | None] = {
    (C.CLOSED, S.FAILURE): (C.CLOSED, 60, 3), (C.CLOSED, S.TRIP): (C.OPEN, 30, 3),
    (C.CLOSED, S.SUCCESS): (C.CLOSED, 30, 0), (C.CLOSED, S.COOLDOWN_OVER): None,
    (C.CLOSED, S.PROBE): None, (C.CLOSED, S.PROBE_LOST): None,
    (C.OPEN, S.FAILURE): None, (C.OPEN, S.TRIP): None, (C.OPEN, S.SUCCESS): None,
    (C.OPEN, S.COOLDOWN_OVER): (C.HALF_OPEN, 60, 2), (C.OPEN, S.PROBE): None,
    (C.OPEN, S.PROBE_LOST): None,
    (C.HALF_OPEN, S.FAILURE): (C.OPEN, 120, 3), (C.HALF_OPEN, S.TRIP): None,
    (C.HALF_OPEN, S.SUCCESS): (C.CLOSED, 30, 0), (C.HALF_OPEN, S.COOLDOWN_OVER): None,
    (C.HALF_OPEN, S.PROBE): (C.HALF_OPEN, 60, 2),
    (C.HALF_OPEN, S.PROBE_LOST): (C.HALF_OPEN, 60, 2),
}


@pytest.mark.parametrize(("pair", "expected"), EXPECTED_STEPS.items(), ids=str)
def test_each_signal_in_each_circuit(
    pair: tuple[Circuit, br.Signal], expected: tuple[Circuit, float, int] | None
) -> None:
    circuit, signal = pair
    probe_out = NOW + 30 if circuit is Circuit.HALF_OPEN else None
    before = BreakerState(circuit, 2, NOW + 60, probe_out, 60.0)
    after = br.step(before, signal, NOW, CONFIG, retry_after=None)
    if expected is None:
        assert after == before
        return
    assert (after.circuit, after.open_period, after.failures) == expected
    if after.circuit is Circuit.OPEN:
        assert after.open_until == NOW + expected[1]
    assert after.probe_until == (NOW + 90 if signal is S.PROBE else None)  # the probe's 90 s


def test_every_pair_is_listed() -> None:
    assert set(EXPECTED_STEPS) == {(c, s) for c in Circuit for s in br.Signal}


RETRY_AFTER = st.one_of(st.none(), st.floats(-10, 1e9, allow_nan=False))
OPS = st.tuples(st.sampled_from(["ok", "fail", "admit"]), st.floats(0, 1000), RETRY_AFTER)


@given(st.lists(OPS, max_size=60))
def test_breaker_properties(ops: list[tuple[str, float, float | None]]) -> None:
    state, now, streak = BreakerState(), NOW, 0
    for op, dt, retry_after in ops:
        now += dt
        if op == "admit":
            decision, new = br.admit(state, now, CONFIG)
            if decision is Admission.PROBE:
                assert state.circuit is not Circuit.CLOSED
                assert state.probe_until is None or now >= state.probe_until
            if decision is Admission.REJECT:
                assert new.circuit is not Circuit.CLOSED
            state = new
            continue
        before = state
        state = br.record(state, op == "fail", now, CONFIG, retry_after)
        # The doubling stays within [30, 300] s, and an opening within [30 s, 1 h].
        assert CONFIG.first_open_period <= state.open_period <= CONFIG.max_open_period
        if state.circuit is Circuit.OPEN and before.circuit is not Circuit.OPEN:
            period = state.open_until - now
            asked = min(max(retry_after or 0, 0), CONFIG.max_retry_after)
            assert period == pytest.approx(max(state.open_period, asked))
            assert CONFIG.first_open_period - 1e-6 <= period <= CONFIG.max_retry_after + 1e-6
            if before.circuit is Circuit.HALF_OPEN:  # a failed probe: twice as long, capped
                assert state.open_period == min(2 * before.open_period, CONFIG.max_open_period)
            else:
                assert state.open_period == CONFIG.first_open_period
        if state.circuit is Circuit.CLOSED:
            assert state.open_period == CONFIG.first_open_period
        if before.circuit is Circuit.CLOSED:
            streak = streak + 1 if op == "fail" else 0
            # Open exactly when the fifth consecutive failure lands.
            assert (state.circuit is Circuit.OPEN) == (streak >= CONFIG.failure_threshold)
            if state.circuit is Circuit.OPEN:
                streak = 0
        if before.circuit is Circuit.OPEN:
            assert state == before
        if before.circuit is Circuit.HALF_OPEN and op == "ok":
            assert state == BreakerState()


# --- retry --------------------------------------------------------------------------


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    policy = RetryPolicy()
    assert policy.backoff(1, 0.999) == pytest.approx(0.999)
    assert policy.backoff(2, 0.5) == pytest.approx(1.0)
    assert policy.backoff(3, 0.5) == pytest.approx(2.0)
    assert policy.backoff(20, 0.999) == pytest.approx(59.94)
    assert policy.backoff(2, 0.0) == 0.0


def test_three_attempts_then_give_up() -> None:
    policy = RetryPolicy()
    error = ServerUnavailable("down")
    assert policy.delay(error, 1, 0.5) is not None
    assert policy.delay(error, 2, 0.5) is not None
    assert policy.delay(error, 3, 0.5) is None


def test_refusals_are_never_retried() -> None:
    policy = RetryPolicy()
    assert policy.delay(InvalidCredentials("no"), 1, 0.5) is None
    assert policy.delay(RefreshRejected("no"), 1, 0.5) is None
    assert not is_retryable(InvalidCredentials("no"))


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy()
    assert policy.delay(RateLimited("slow down", retry_after=7), 1, 0.1) == 7
    assert policy.delay(ServerUnavailable("503", retry_after=60), 1, 0.1) == 60
    assert policy.delay(RateLimited("slow down", retry_after=61), 1, 0.1) is None


def test_parse_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after(" 0 ", NOW) == 0
    assert parse_retry_after("-5", NOW) == 0
    date = email.utils.formatdate(NOW + 90, usegmt=True)
    assert parse_retry_after(date, NOW) == pytest.approx(90)
    assert parse_retry_after(email.utils.formatdate(NOW - 90, usegmt=True), NOW) == 0
    for bad in (None, "soon", "", "inf", "Mon, 99 Foo 2026 00:00:00"):
        assert parse_retry_after(bad, NOW) is None
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37", NOW) is None  # no zone


@given(failures=st.integers(1, 50), draw=st.floats(0, 0.999999))
def test_backoff_properties(failures: int, draw: float) -> None:
    policy = RetryPolicy()
    delay = policy.backoff(failures, draw)
    assert 0 <= delay <= policy.cap
    assert delay <= policy.base * policy.factor ** (failures - 1) + 1e-9


@pytest.mark.parametrize("stored_period", [3600.0, 0.5, float("nan")])
def test_an_open_period_no_rule_could_make_starts_over_when_the_cool_down_ends(
    stored_period: float,
) -> None:
    """A state file may hold an open period the doubling never makes (up to the
    Retry-After cap, or damaged): the half-open step sets it to the first one, so the
    failed probe that follows opens for twice that, 60 s, like any first failed probe."""
    stored = BreakerState(Circuit.OPEN, 5, NOW - 1, None, stored_period)
    decision, probing = br.admit(stored, NOW, CONFIG)
    assert decision is Admission.PROBE and probing.open_period == CONFIG.first_open_period
    reopened = br.record(probing, True, NOW, CONFIG)
    assert (reopened.circuit, reopened.open_until) == (Circuit.OPEN, NOW + 60.0)


@pytest.mark.parametrize("stored_period", [3600.0, 0.5, float("nan")])
def test_a_failure_below_the_threshold_starts_a_planted_open_period_over(
    stored_period: float,
) -> None:
    """A closed circuit's failure keeps its period only when a rule could have made it:
    the state written after it holds the first period again, not the planted one."""
    stored = BreakerState(Circuit.CLOSED, 1, 0.0, None, stored_period)
    after = br.step(stored, br.Signal.FAILURE, NOW, CONFIG)
    assert (after.circuit, after.failures) == (Circuit.CLOSED, 2)
    assert after.open_period == CONFIG.first_open_period
