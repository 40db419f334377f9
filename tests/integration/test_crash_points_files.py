"""The crash-point exploration of ``tests/unit/test_crash_points.py``, on the real file
token store: its cache and identity checks, atomic fsynced writes, flock, set-aside.

Every fault at every port call of a renewal, each followed by a crash at every later
call; the next process on the same files must get a valid token with no replay.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from adapters.fernet_cipher import FernetCipher
from adapters.file_token_store import FileTokenStore
from adapters.memory import FakeClock
from cidx_auth.ports import TokenStore
from tests.unit.test_crash_points import STARTS, explore

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("start_kind", STARTS)
def test_no_crash_point_on_the_file_store_causes_a_replay(
    start_kind: str, tmp_path: Path
) -> None:
    key = os.urandom(32)
    numbers = itertools.count()

    def on_files(clock: FakeClock) -> TokenStore:
        directory = tmp_path / f"world-{next(numbers)}" / ".code-indexer"
        return FileTokenStore(directory / ".token", directory / ".token.lock",
                              FernetCipher(lambda: key), clock=clock.now)

    assert explore(start_kind, on_files) > 100
