"""A pytest plugin for ``make mutate``: a mutant's tests run fastest first.

mutmut 3 runs the tests that reach a mutant with ``-x`` in collection order, so a
mutant that a unit test kills in a millisecond could first wait for every integration
test collected before it. With the durations mutmut measured in its stats run
(``mutmut-stats.json`` in the tree it runs in), this sorts a mutant's tests by
duration. The stats run itself (no mutant active) keeps the collection order.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

STATS = Path("mutmut-stats.json")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    try:
        durations: dict[str, float] = json.loads(STATS.read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return
    items.sort(key=lambda item: durations.get(item.nodeid, math.inf))
