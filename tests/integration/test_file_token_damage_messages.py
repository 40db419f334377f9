"""A damaged ``.token`` (errata #7): the WARNING says why it could not be used and what
was done with it, word for word, and says "moved" only when it was moved."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import adapters.file_token_store as file_token_store_module
from adapters.fernet_cipher import FernetCipher
from adapters.file_token_store import FileTokenStore
from cidx_auth.domain.errors import StorageError

pytestmark = pytest.mark.posix

REASON = ("stored data cannot be decrypted here: it is damaged, or it was written for "
          "another project, server, user or machine")
LEFT = "left it in place (it changed meanwhile, or another process holds the lock)"


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    store = tmp_path / ".code-indexer"
    store.mkdir(mode=0o700)
    (store / ".token").write_bytes(b"garbage")
    (store / ".token").chmod(0o600)
    return store


def token_store(directory: Path) -> FileTokenStore:
    return FileTokenStore(directory / ".token", directory / ".token.lock",
                          FernetCipher(lambda: b"s" * 32), quarantine_timeout=0)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "cidx_auth.storage" and r.levelno == logging.WARNING]


def set_aside(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob(".token.corrupt-*"))


def test_a_damaged_token_moved_aside_says_so(
    directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert token_store(directory).load() is None
    assert warnings_of(caplog) == [
        f"the stored token could not be used ({REASON}); moved it aside, a new one will be "
        "obtained"]
    assert len(set_aside(directory)) == 1 and not (directory / ".token").exists()


def test_a_damaged_token_left_while_another_holds_the_lock_says_so(
    directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with token_store(directory).lock(5), \
            caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert token_store(directory).load() is None
    assert warnings_of(caplog) == [f"the stored token could not be used ({REASON}); {LEFT}"]
    assert set_aside(directory) == [] and (directory / ".token").read_bytes() == b"garbage"


def test_a_set_aside_the_disk_refuses_is_not_said_to_be_done(
    directory: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def disk_refuses(*args: object) -> bool:
        raise StorageError(f"could not rename {directory / '.token'}: Read-only file system")

    monkeypatch.setattr(file_token_store_module, "quarantine", disk_refuses)
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert token_store(directory).load() is None
    assert warnings_of(caplog) == [f"the stored token could not be used ({REASON}); {LEFT}"]
    assert (directory / ".token").read_bytes() == b"garbage"


def test_a_damaged_token_read_under_the_stores_own_lock_is_moved_aside(
    directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The core reloads under the lock before it decides to refresh."""
    holder = token_store(directory)
    with holder.lock(5), caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert holder.load() is None
    assert warnings_of(caplog) == [
        f"the stored token could not be used ({REASON}); moved it aside, a new one will be "
        "obtained"]
    assert len(set_aside(directory)) == 1 and not (directory / ".token").exists()
