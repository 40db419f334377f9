"""The breaker-state file when it is damaged or cannot be kept (decisions.md: the state
guards no secret, so its trouble never stops a token from being handed out).

A damaged file reads as the default state with one WARNING; what ``cidx-auth status``
reports for it is the decoder's message; a half-open breaker's probe deadline survives the
round trip; and a lock that cannot be had is one WARNING that names what is lost.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from adapters.file_lock import file_lock
from adapters.file_state_store import FileStateStore, decode_state, state_to_dict
from cidx_auth.domain.breaker import BreakerState, Circuit
from cidx_auth.domain.client_state import ClientState
from cidx_auth.domain.errors import CorruptStore
from tests.integration.immutable_files import Immutable

pytestmark = pytest.mark.posix

HALF_OPEN = ClientState(
    BreakerState(Circuit.HALF_OPEN, 3, 1_800_000_030.0, 1_800_000_040.5, 60.0),
    {"logins": 2, "refreshes": 7},
    1_800_000_000.25,
)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    store = tmp_path / ".code-indexer"
    store.mkdir(mode=0o700)
    return store


def state_store(directory: Path) -> FileStateStore:
    return FileStateStore(directory / ".state", directory / ".state.lock")


def storage_records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "cidx_auth.storage"]


def test_a_half_open_breaker_keeps_its_probe_deadline_across_processes(directory: Path) -> None:
    state_store(directory).update(lambda state: HALF_OPEN)
    assert state_store(directory).read() == HALF_OPEN  # another process reads it back


@pytest.mark.parametrize("counters", [[], "logins", None], ids=["list", "string", "null"])
def test_counters_that_are_not_a_mapping_are_damage(
    directory: Path, caplog: pytest.LogCaptureFixture, counters: object
) -> None:
    document = state_to_dict(HALF_OPEN)
    document["counters"] = counters
    (directory / ".state").write_text(json.dumps(document))
    (directory / ".state").chmod(0o600)
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert state_store(directory).read() == ClientState()
    assert storage_records(caplog) == [
        (logging.WARNING, "the state file is damaged; starting from the default state")]


def test_the_decoders_message_is_the_one_status_shows() -> None:
    with pytest.raises(CorruptStore) as caught:
        decode_state(b'{"version": 1, "breaker": {}}')
    assert str(caught.value) == "the state file is damaged"


def test_a_lock_that_cannot_be_had_is_one_warning_naming_what_is_lost(
    tmp_path: Path, directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock = directory / ".state.lock"
    lock.symlink_to(tmp_path / "elsewhere")  # refused: not cidx-auth's lock file
    store = state_store(directory)
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert store.update(lambda state: HALF_OPEN) == HALF_OPEN  # kept in memory
        store.update(lambda state: ClientState())
    assert storage_records(caplog) == [(
        logging.WARNING,
        f"breaker state and counters are not persisted: {lock} is a symbolic link, so it "
        "is not cidx-auth's lock file; left untouched. Remove it if you did not create "
        "it, then try again.",
    )]
    assert not (directory / ".state").exists() and lock.is_symlink()


def test_a_damaged_file_is_reported_once_not_on_every_read(
    directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (directory / ".state").write_text("{not json")
    (directory / ".state").chmod(0o600)
    store = state_store(directory)
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        for _ in range(3):
            assert store.read() == ClientState()
    assert storage_records(caplog) == [
        (logging.WARNING, "the state file is damaged; starting from the default state")]


def test_an_oversized_file_is_damage_named_in_the_warning(
    directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = directory / ".state"
    path.write_bytes(b" " * (64 * 1024 + 1))
    path.chmod(0o600)
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert state_store(directory).read() == ClientState()
    assert storage_records(caplog) == [(
        logging.WARNING,
        "breaker state and counters are not persisted: .state is larger than 65536 bytes; "
        "refused")]


def test_a_state_path_that_cannot_be_read_is_named_in_the_warning(
    directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = directory / ".state"
    path.mkdir()
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert state_store(directory).read() == ClientState()
    assert storage_records(caplog) == [(
        logging.WARNING,
        "breaker state and counters are not persisted: .state is not a regular file; refused")]


def test_a_state_lock_held_elsewhere_is_one_warning_naming_the_state_lock(
    directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other_process = FileStateStore(directory / ".state", directory / ".state.lock",
                                   lock_timeout=0)
    with file_lock(directory / ".state.lock", 5, "the state lock"), \
            caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert other_process.update(lambda state: HALF_OPEN) == HALF_OPEN
    assert storage_records(caplog) == [(
        logging.WARNING,
        "breaker state and counters are not persisted: the state lock is held by another "
        "cidx process; gave up after 0.0 s",
    )]


def test_a_temp_file_left_by_a_killed_writer_is_swept_under_the_lock(directory: Path) -> None:
    left = directory / ".state.tmp-killed"
    left.write_bytes(b'{"version": 1')  # young: written a moment ago
    state_store(directory).update(lambda state: HALF_OPEN)
    assert sorted(p.name for p in directory.iterdir()) == [".state", ".state.lock"]


def test_a_write_the_disk_refuses_is_one_warning_and_the_state_lives_on_in_memory(
    directory: Path, immutable: Immutable, caplog: pytest.LogCaptureFixture
) -> None:
    (directory / ".state.lock").touch(mode=0o600)
    immutable.set(directory)
    store = state_store(directory)
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert store.update(lambda state: HALF_OPEN) == HALF_OPEN
    assert storage_records(caplog) == [(
        logging.WARNING,
        "breaker state and counters are not persisted: could not write "
        f"{directory / '.state'}: Operation not permitted")]


def test_a_state_path_that_cannot_even_be_inspected_is_named_in_the_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_directory = tmp_path / "code-indexer"
    not_a_directory.write_bytes(b"a file where the store directory should be")
    store = FileStateStore(not_a_directory / ".state", not_a_directory / ".state.lock")
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert store.read() == ClientState()
    assert storage_records(caplog) == [(
        logging.WARNING,
        "breaker state and counters are not persisted: could not inspect "
        f"{not_a_directory / '.state'}: Not a directory")]


def test_a_state_file_lost_while_the_update_waits_for_the_lock_is_one_warning(
    tmp_path: Path, directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Read fine at first; by the time the lock is held its directory has been replaced
    (here, by the change itself, as another process could): the change still applies, to
    the last state known."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    store = FileStateStore(data / ".state", directory / ".state.lock")

    def count_a_login(state: ClientState) -> ClientState:
        if data.is_dir():
            data.rmdir()
            data.write_bytes(b"not a directory any more")
        return ClientState(state.breaker, {**state.counters, "logins": 1}, state.last_refresh)

    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert store.update(count_a_login) == ClientState(counters={"logins": 1})
    assert storage_records(caplog) == [(
        logging.WARNING,
        "breaker state and counters are not persisted: could not inspect "
        f"{data / '.state'}: Not a directory")]
