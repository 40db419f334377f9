"""How times are shown (issue 11, items 3 and 4): local time with the date when not
today, ISO 8601 in UTC for programs, and nothing a calendar cannot show ever raising."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from cidx_auth.domain.credentials import Credentials
from cidx_auth.domain.errors import CircuitOpen, ConfigurationError
from cidx_auth.domain.moments import BEYOND, epoch_of, iso_utc, local_text


@pytest.fixture
def in_paris() -> Iterator[None]:
    """Local time is Europe/Paris for the test (a zone with an offset from UTC)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Paris"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def at(text: str) -> float:
    """A local wall-clock time as epoch seconds."""
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.usefixtures("in_paris")
def test_a_time_today_shows_the_hour_only_even_far_from_now() -> None:
    now = at("2026-11-30 23:00:00")
    assert local_text(at("2026-11-30 00:30:00"), now) == "00:30:00"  # 22.5 h ago, today


@pytest.mark.usefixtures("in_paris")
def test_a_time_on_another_day_shows_its_date_even_near_now() -> None:
    now = at("2026-11-30 23:00:00")
    assert local_text(at("2026-12-01 01:00:00"), now) == "2026-12-01 01:00:00"  # in 2 h
    assert local_text(at("2026-11-29 23:59:59"), at("2026-11-30 00:00:01")) \
        == "2026-11-29 23:59:59"


@pytest.mark.usefixtures("in_paris")
def test_without_now_the_date_is_always_shown() -> None:
    assert local_text(at("2026-11-30 14:05:00")) == "2026-11-30 14:05:00"


@pytest.mark.usefixtures("in_paris")
def test_iso_is_utc_with_its_offset_and_reads_back() -> None:
    moment = at("2026-11-30 14:05:00")  # 13:05 UTC in winter
    shown = iso_utc(moment)
    assert shown == "2026-11-30T13:05:00+00:00"
    parsed = datetime.fromisoformat(shown)
    assert parsed.utcoffset() == timedelta(0) and epoch_of(shown) == moment


@pytest.mark.parametrize("absurd", [1e20, -1e20, float("inf"), float("-inf"), float("nan"),
                                    253402300800.0 + 86400])
def test_what_no_calendar_shows_never_raises(absurd: float) -> None:
    assert local_text(absurd, 0.0) == BEYOND
    assert iso_utc(absurd) is None


@pytest.mark.usefixtures("in_paris")
def test_an_open_circuit_ending_tomorrow_says_the_date() -> None:
    now = at("2026-11-30 23:59:00")
    assert "next attempt after 23:59:30, " in str(CircuitOpen(now + 30, now))
    assert "next attempt after 2026-12-01 00:01:00, " in str(CircuitOpen(now + 120, now))


@pytest.mark.parametrize("typed", ["  alice", "alice  ", "\talice\n", " alice "])
def test_a_username_is_kept_trimmed_and_the_password_as_given(typed: str) -> None:
    credentials = Credentials(typed, " pass word ")
    assert credentials.username == "alice" and credentials.password == " pass word "


@pytest.mark.parametrize("typed", ["", " ", "\t \n"])
def test_an_empty_username_is_a_usage_error(typed: str) -> None:
    with pytest.raises(ConfigurationError, match="username is empty") as caught:
        Credentials(typed, "secret")
    assert caught.value.exit_code == 2 and "secret" not in str(caught.value)


def test_people_read_lists_and_yes_or_no_in_status() -> None:
    from cidx_auth.app.status import lines

    shown = lines({"algorithms": ["RS256", "ES256"], "plain_http": False,
                   "logged_in": True, "findings": []}, 0.0)
    assert shown == ["        algorithms: RS256, ES256", "        plain http: no",
                     "         logged in: yes", "           finding: -"]
