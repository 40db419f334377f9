"""Another process holds the token lock: use a still-valid token, fail clearly otherwise,
and never move a file without the lock."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cidx_auth.domain.errors import LockTimeout
from cidx_auth.domain.events import EventKind
from cidx_auth.domain.rules import Rules
from tests.integration.conftest import Files
from tests.integration.storage_helpers import ALICE, HELPERS, wait_for

pytestmark = pytest.mark.slow

WAITING = Rules(auth_deadline=0.2, lock_wait_margin=0.1)
"""A lock wait of 2 * 0.2 + 0.1 = 0.5 s instead of the real 65 s."""


def test_a_valid_token_is_used_while_another_process_holds_the_lock(
    project: Path, config_dir: Path, tmp_path: Path
) -> None:
    files = Files(project, config_dir)  # the real 65 s wait: a valid token never waits
    token = files.provider.login(ALICE).token.raw
    files.clock.advance(400)  # stale (refresh due at 300 s) but valid until 570 s
    with _holding(files, tmp_path):
        assert files.provider.get_token() == token
    assert files.events[EventKind.LOCK_TIMEOUT] == 1
    assert files.gateway.calls == 1  # the login only: no refresh behind the lock's back


def test_an_expired_token_with_the_lock_held_elsewhere_is_a_clear_error(
    project: Path, config_dir: Path, tmp_path: Path
) -> None:
    files = Files(project, config_dir, WAITING)
    files.provider.login(ALICE)
    files.clock.advance(600)
    with _holding(files, tmp_path):
        started = time.monotonic()
        with pytest.raises(LockTimeout, match="another cidx process has been renewing") as e:
            files.provider.get_token()
        waited = time.monotonic() - started
    assert waited >= WAITING.lock_wait * 0.9 and e.value.exit_code == 4
    assert files.gateway.calls == 1
    files.provider.get_token()  # the lock is free again: the refresh goes ahead
    assert files.gateway.refreshes == 1


def test_a_damaged_token_is_not_moved_while_another_process_holds_the_lock(
    project: Path, config_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = Files(project, config_dir)
    files.store.path.parent.mkdir(mode=0o700)
    files.store.path.write_bytes(b"damaged")
    with _holding(files, tmp_path), caplog.at_level(logging.WARNING):
        assert files.store.load() is None
        assert files.store.path.read_bytes() == b"damaged"
    assert not list(files.store.path.parent.glob(".token.corrupt-*"))
    assert "left it in place" in caplog.text
    assert files.store.load() is None  # the lock is free now: set aside this time
    assert not files.store.path.exists()


class _holding:
    """Context manager: a separate process holds the token lock meanwhile."""

    def __init__(self, files: Files, tmp_path: Path) -> None:
        self._lock_path = files.store.lock_path
        self._ready = tmp_path / "holding"
        self._holder: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> None:
        self._lock_path.parent.mkdir(mode=0o700, exist_ok=True)
        self._holder = subprocess.Popen(
            [sys.executable, str(HELPERS), "hold-lock", str(self._lock_path), str(self._ready)],
            stdin=subprocess.PIPE,
        )
        wait_for(self._ready, timeout=30)

    def __exit__(self, *_: object) -> None:
        assert self._holder is not None and self._holder.stdin is not None
        self._holder.stdin.close()  # the holder lets go when its stdin closes
        self._holder.wait(timeout=30)
        self._ready.unlink()
