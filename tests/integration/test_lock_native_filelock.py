"""The lock through filelock's native ``FileLock``, as :func:`file_lock` takes it on
Windows (decisions.md, "Lock trouble").

The function is platform-neutral, so it is run here on the POSIX host directly: the lock
file is private (0600), a second taker waits and then gets the plain timeout, a lock taken
on one thread can be released on another (the event loop's), a path that cannot be
locked is ``LockUnavailable`` naming it, and a failed release is a WARNING, not an error.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import threading
from pathlib import Path

import pytest

from adapters.file_lock import _take_with_filelock
from cidx_auth.domain.errors import LockTimeout, LockUnavailable

pytestmark = pytest.mark.posix


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / ".token.lock"


def taken(lock_path: Path, timeout: float = 0) -> contextlib.ExitStack:
    """The lock, held until the returned stack is closed."""
    held = contextlib.ExitStack()
    _take_with_filelock(held, lock_path, timeout, "the token lock")
    return held


def test_the_lock_file_is_private_and_a_second_taker_times_out(lock_path: Path) -> None:
    with taken(lock_path, 5):
        assert stat.S_IMODE(os.lstat(lock_path).st_mode) == 0o600
        with pytest.raises(LockTimeout) as caught, taken(lock_path, 0.1):
            pytest.fail("two holders at once")
    assert str(caught.value) == (
        "the token lock is held by another cidx process; gave up after 0.1 s"
    )
    assert caught.value.exit_code == 4
    with taken(lock_path):  # released when the first holder's block ended
        pass


def test_a_lock_taken_on_one_thread_is_released_on_another(lock_path: Path) -> None:
    """As a lock taken on an executor thread is released on the event loop's thread,
    while that executor thread lives on."""
    held = contextlib.ExitStack()
    locked, done = threading.Event(), threading.Event()

    def take_and_live_on() -> None:
        _take_with_filelock(held, lock_path, 5, "the token lock")
        locked.set()
        done.wait(30)

    taker = threading.Thread(target=take_and_live_on)
    taker.start()
    try:
        assert locked.wait(30)
        with pytest.raises(LockTimeout):  # it is held...
            taken(lock_path)
        held.close()  # ...and this thread lets it go
        with taken(lock_path):
            pass
    finally:
        done.set()
        taker.join()


def test_a_path_that_cannot_be_locked_is_lock_unavailable(tmp_path: Path) -> None:
    with pytest.raises(LockUnavailable) as caught:
        taken(tmp_path)  # a directory: it cannot be opened for writing
    assert str(caught.value) == f"{tmp_path}: Is a directory"
    assert caught.value.exit_code == 5


def test_a_release_that_fails_is_a_warning(
    lock_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_flock(*args: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"), taken(lock_path):
        monkeypatch.setattr(fcntl, "flock", broken_flock)  # the unlock fails
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "could not release the token lock: Input/output error")
    ]
