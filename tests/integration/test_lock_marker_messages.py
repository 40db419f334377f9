"""What a lock timeout on the ``O_EXCL`` fallback marker tells the user (decisions.md,
"Lock trouble").

Where flock cannot be had, the lock is a marker file beside the lock file; when a wait for
it runs out, the message names the marker, says who it names as its holder (in words, from
no more than the first KiB of a file anyone may have written) and how to remove it. The
marker itself is never touched. flock is refused as on NFS without lockd; holders are
markers written by hand, naming another host so that filelock waits for them.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

import pytest

from adapters.file_lock import _marker_timeout, file_lock
from cidx_auth.domain.errors import LockTimeout
from tests.integration.immutable_files import Immutable

pytestmark = pytest.mark.posix


def refuse_flock(*args: object) -> None:
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))


@pytest.fixture
def lock_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    store = tmp_path / ".code-indexer"
    store.mkdir(mode=0o700)
    path = store / ".token.lock"
    path.touch(mode=0o600)
    monkeypatch.setattr(fcntl, "flock", refuse_flock)
    return path


def timeout_naming(lock_path: Path, content: bytes) -> str:
    """The message of a 0 s wait for the lock while a marker with ``content`` is there;
    the marker is left exactly as it was."""
    marker = lock_path.with_name(lock_path.name + ".excl")
    marker.write_bytes(content)
    with pytest.raises(LockTimeout) as caught, file_lock(lock_path, 0, "the token lock"):
        pytest.fail("the lock was taken past a holder's marker")
    assert marker.read_bytes() == content
    return str(caught.value)


LONG_HOST = "build-" + "x" * 94  # 100 characters


@pytest.mark.parametrize(
    ("content", "holder"),
    [
        (b"filelock/2\npid=4242\nhost=elsewhere.example\nmode=exclusive\n",
         "it names pid 4242 on host elsewhere.example"),
        (b"pid=17\nhost=elsewhere\n", "it names pid 17 on host elsewhere"),
        (b"1234\nelsewhere\n", "it names pid 1234 on host elsewhere"),  # filelock's older record
        (b"1234\nelsewhere\n1700000000.5\n", "it names pid 1234 on host elsewhere"),
        (b"pid=8\nhost=rack=b\n", "it names pid 8 on host rack=b"),  # only the first '=' splits
        (b"pid=5\nhost=caf\xe9\n", "it names pid 5 on host caf\ufffd"),  # not UTF-8: replaced
        (f"pid=7\nhost={LONG_HOST}\n".encode(), f"it names pid 7 on host {LONG_HOST[:64]}"),
        (b"pid=abc\nhost=elsewhere\n", "it names no holder"),  # not a pid
        (b"abc\nelsewhere\n", "it names no holder"),
        (b"pid=9\n", "it names no holder"),  # no host
        (b"something else entirely", "it names no holder"),
    ],
    ids=["filelock-2", "fields", "older-record", "older-record-with-start", "equals-in-value",
         "not-utf8", "long-host", "pid-not-digits", "older-pid-not-digits", "no-host",
         "garbage"],
)
def test_a_timeout_names_the_holder_the_marker_names(
    lock_path: Path, content: bytes, holder: str
) -> None:
    marker = lock_path.with_name(lock_path.name + ".excl")
    assert timeout_naming(lock_path, content) == (
        "the token lock is held by another cidx process; gave up after 0.0 s; "
        f"the lock marker {marker} is still there ({holder}); if no cidx process is "
        f"running, remove it (rm -- {marker}) and try again"
    )


def test_only_the_first_kib_of_a_marker_is_read(lock_path: Path) -> None:
    """A marker is anyone's file: the holder is read from its first 1024 bytes only."""
    head = b"pid=12\n"
    filler = b"#" * (1024 - len(head) - len(b"\nhost=")) + b"\n"
    content = head + filler + b"host=" + b"elsewhere\n"
    assert len(head + filler + b"host=") == 1024  # the host's first letter is byte 1025
    assert "(it names no holder)" in timeout_naming(lock_path, content)


def test_a_marker_gone_by_the_time_it_is_named_is_said_to_be_gone(tmp_path: Path) -> None:
    marker = tmp_path / ".token.lock.excl"
    error = _marker_timeout(marker, "the token lock", 2.5)
    assert str(error) == (
        "the token lock is held by another cidx process; gave up after 2.5 s; "
        f"the lock marker {marker} is still there (gone now); if no cidx process is "
        f"running, remove it (rm -- {marker}) and try again"
    )


def test_a_marker_that_cannot_be_read_is_said_to_be_unreadable(tmp_path: Path) -> None:
    marker = tmp_path / ".token.lock.excl"
    marker.mkdir()  # opens, but reading it fails (EISDIR)
    error = _marker_timeout(marker, "the token lock", 1)
    assert f"the lock marker {marker} is still there (unreadable); " in str(error)
    assert marker.is_dir()


def test_a_marker_that_cannot_be_removed_at_release_is_a_warning(
    lock_path: Path, immutable: Immutable, caplog: pytest.LogCaptureFixture
) -> None:
    """The lock is let go all the same: a dead holder's marker is taken by the next one."""
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        with file_lock(lock_path, 1, "the token lock"):
            immutable.set(lock_path.parent)  # the marker can no longer be unlinked
        immutable.release()
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "could not release the token lock: Operation not permitted"]
