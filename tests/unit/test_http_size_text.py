"""Sizes in messages ("larger than 64 KiB"): the largest whole unit, else bytes."""

from __future__ import annotations

import pytest

from adapters.http_limits import Oversized, size_text


@pytest.mark.parametrize(
    ("cap", "text"),
    [
        (1024, "1 KiB"),
        (65536, "64 KiB"),
        (2**20, "1 MiB"),
        (16 * 2**20, "16 MiB"),
        (1536, "1536 bytes"),  # not a whole KiB
        (2**20 + 1, "1048577 bytes"),
        (2**20 + 1024, "1025 KiB"),
        (1000, "1000 bytes"),
        (0, "0 bytes"),
    ],
)
def test_size_text(cap: int, text: str) -> None:
    assert size_text(cap) == text


def test_oversized_says_and_carries_its_cap() -> None:
    error = Oversized(65536)
    assert str(error) == "is larger than 64 KiB once decompressed"
    assert error.cap == 65536
