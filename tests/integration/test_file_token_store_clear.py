"""Logging out of a project: :meth:`FileTokenStore.clear` on real files.

It removes the session and every copy set aside as damaged, is a no-op when there is
nothing to remove (logging out twice), refuses another program's ``.token`` with a message
that names the file and leaves it as it was, and reports a failed removal naming the file
and the reason. After it, the store reads what is on disk again, not what it cached.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapters.fernet_cipher import FernetCipher
from adapters.file_token_store import FileTokenStore
from cidx_auth.domain.errors import StorageError
from tests.cidx_client_format import encrypt_client_blob
from tests.integration.storage_helpers import known_sessions

pytestmark = pytest.mark.posix


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    store = tmp_path / ".code-indexer"
    store.mkdir(mode=0o700)
    return store


def token_store(directory: Path, cache_ttl: float = 60.0) -> FileTokenStore:
    return FileTokenStore(directory / ".token", directory / ".token.lock",
                          FernetCipher(lambda: b"s" * 32), cache_ttl=cache_ttl)


def test_clear_removes_the_session_and_its_set_aside_copies(directory: Path) -> None:
    store = token_store(directory)
    with store.lock(5):
        store.save(known_sessions()[0])
    set_aside = directory / ".token.corrupt-1800000000"
    set_aside.write_bytes(b"a damaged copy that may still decrypt")
    with store.lock(5):
        store.clear()
    assert sorted(p.name for p in directory.iterdir()) == [".token.lock"]
    assert store.load() is None


def test_clearing_nothing_is_fine_twice(directory: Path) -> None:
    store = token_store(directory)
    with store.lock(5):
        store.clear()
        store.clear()
    assert not (directory / ".token").exists()


def test_after_clear_the_store_reads_the_next_session_from_disk(directory: Path) -> None:
    store, other_process = token_store(directory), token_store(directory)
    with store.lock(5):
        store.save(known_sessions()[0])
    assert store.load() == known_sessions()[0]  # cached now
    with store.lock(5):
        store.clear()
    with other_process.lock(5):
        other_process.save(known_sessions()[1])  # someone logs in again
    assert store.load() == known_sessions()[1]


def test_another_programs_token_is_refused_by_name_and_left_alone(
    tmp_path: Path, directory: Path
) -> None:
    theirs = encrypt_client_blob({"token": "x", "version": "1.0"}, "alice", tmp_path,
                                 "https://cidx.example")
    path = directory / ".token"
    path.write_bytes(theirs)
    store = token_store(directory)
    with store.lock(5), pytest.raises(StorageError) as caught:
        store.clear()
    assert str(caught.value) == (
        f"{path} holds another program's token (not cidx-auth's format), so cidx-auth "
        "will not overwrite it; move it away if it is not needed, then try again"
    )
    assert caught.value.exit_code == 5
    assert path.read_bytes() == theirs


def test_a_removal_that_fails_names_the_file_and_the_reason(directory: Path) -> None:
    path = directory / ".token"
    path.mkdir()  # not a file: unlink refuses it (EISDIR)
    store = token_store(directory)
    with store.lock(5), pytest.raises(StorageError) as caught:
        store.clear()
    assert str(caught.value) == f"could not remove {path}: Is a directory"
    assert path.is_dir() and os.listdir(path) == []
