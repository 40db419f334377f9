"""Moments as cidx-auth shows them: local time for people, ISO 8601 for programs.

One place, so that ``status``, ``login``, the lockout message and the open circuit's
message agree. A person sees ``HH:MM:SS`` for a moment today and the date too for any
other day: a lockout the server sets for 23 hours, or a wait clamped to a day, ends at
an earlier hour tomorrow, and "until 14:05:00" alone would read as today. A program
sees UTC with its offset (``2026-11-30T14:05:00+00:00``): the same text on every
machine, sortable as text. A moment no calendar can show (a damaged file, a hostile
server) is said in words, or is None: never an exception.
"""

from __future__ import annotations

from datetime import UTC, datetime, timezone

BEYOND = "beyond any date"
"""What a person sees for a moment no calendar can show."""


def _moment(epoch: float, zone: timezone | None = None) -> datetime | None:
    try:
        return datetime.fromtimestamp(epoch, zone)
    except (OverflowError, OSError, ValueError):  # NaN, infinities, past the year 9999
        return None


def local_text(epoch: float, now: float | None = None) -> str:
    """``epoch`` in local time: ``HH:MM:SS`` when it falls on the same local day as
    ``now``, with the date before it otherwise (and always, without a ``now``)."""
    moment = _moment(epoch)
    if moment is None:
        return BEYOND
    today = _moment(now) if now is not None else None
    same_day = today is not None and moment.date() == today.date()
    return moment.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S")


def iso_utc(epoch: float) -> str | None:
    """``epoch`` as ISO 8601 in UTC, to the second, with its ``+00:00`` offset; None
    when no calendar can show it."""
    moment = _moment(epoch, UTC)
    return None if moment is None else moment.isoformat(timespec="seconds")


def epoch_of(iso: str) -> float:
    """The moment an :func:`iso_utc` text names, as epoch seconds."""
    return datetime.fromisoformat(iso).timestamp()
