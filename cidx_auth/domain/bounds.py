"""The ranges every number read back from a file must fall in, decided once.

Anything outside them (or of the wrong type: a ``bool`` is not a count, NaN and the
infinities are no time) is damage, handled as any other damaged file is: the file is
read as the default it stands for. A counter of 4,300 digits would otherwise stop
every command that prints or writes it (``int`` to text is capped at 4,300 digits).
"""

from __future__ import annotations

import math
from typing import Any

MAX_COUNT = 2**53 - 1
"""The largest count kept: every JSON reader holds it exactly (a double's integers), and
no process counts that far (one event a microsecond would take 285 years). A count that
would pass it stays there."""

LATEST_TIME = 253402300799.0
"""9999-12-31 23:59:59 UTC: the last moment every platform's clock functions can show."""


def count(value: Any) -> int:
    """``value`` as a count, 0 to :data:`MAX_COUNT`; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ValueError("bad count")
    return value


def moment(value: Any, latest: float = LATEST_TIME, earliest: float = 0.0) -> float:
    """``value`` as seconds, ``earliest`` to ``latest``; ValueError otherwise (a huge int
    included: no float could hold it)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("bad time")
    if isinstance(value, int) and not earliest <= value <= latest:
        raise ValueError("impossible time")  # before float(), which overflows past 1e308
    number = float(value)
    if not (math.isfinite(number) and earliest <= number <= latest):
        raise ValueError("impossible time")
    return number


def counted(value: int) -> int:
    """One more than ``value``, never past :data:`MAX_COUNT`."""
    return min(value + 1, MAX_COUNT)
