"""The read cache, the lock within one process, and the persisted breaker state."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest

from adapters.fernet_cipher import FernetCipher, derive_key, project_salt
from adapters.file_state_store import FileStateStore
from adapters.file_token_store import FileTokenStore
from adapters.memory import FakeClock
from adapters.project_layout import ProjectLayout
from adapters.user_secret import UserSecret
from cidx_auth.domain.breaker import BreakerState, Circuit
from cidx_auth.domain.client_state import ClientState
from cidx_auth.domain.errors import LockTimeout, StorageError
from cidx_auth.domain.events import EventKind
from tests.integration.conftest import Files
from tests.integration.storage_helpers import (
    ALICE,
    SERVER_URL,
    CountingServer,
    known_sessions,
    session_of,
)


class CountingCipher(FernetCipher):
    """Counts decryptions: a cache hit decrypts nothing."""

    decrypts = 0

    def decrypt(self, ciphertext: bytes) -> bytes:
        self.decrypts += 1
        return super().decrypt(ciphertext)


def bump(state: ClientState) -> ClientState:
    """One more login in the counters."""
    logins = state.counters.get("logins", 0) + 1
    return ClientState(state.breaker, {**state.counters, "logins": logins}, state.last_refresh)


def counting_store(project: Path, config_dir: Path, clock: FakeClock) -> FileTokenStore:
    layout = ProjectLayout(project)
    secret = UserSecret(config_dir)
    cipher = CountingCipher(lambda: derive_key(secret.value(), project_salt(project, SERVER_URL)))
    return FileTokenStore(layout.token, layout.token_lock, cipher, clock=clock.now)


def test_the_cache_serves_repeat_loads_for_its_ttl(project: Path, config_dir: Path) -> None:
    clock = FakeClock()
    writer = counting_store(project, config_dir, clock)
    reader = counting_store(project, config_dir, clock)
    with writer.lock(5):
        writer.save(known_sessions()[0])

    for _ in range(3):
        assert reader.load() == known_sessions()[0]
    assert reader._cipher.decrypts == 1  # type: ignore[attr-defined]

    clock.advance(61)
    assert reader.load() == known_sessions()[0]
    assert reader._cipher.decrypts == 2  # type: ignore[attr-defined]
    assert writer._cipher.decrypts == 0  # type: ignore[attr-defined]  # its own save is cached


def test_the_cache_drops_as_soon_as_another_writer_replaces_the_file(
    project: Path, config_dir: Path
) -> None:
    clock = FakeClock()
    writer = counting_store(project, config_dir, clock)
    reader = counting_store(project, config_dir, clock)
    first, second = known_sessions()
    with writer.lock(5):
        writer.save(first)
    assert reader.load() == first
    with writer.lock(5):
        writer.save(second)
    assert reader.load() == second  # no waiting for the TTL


def test_two_stores_in_one_process_exclude_each_other(project: Path, config_dir: Path) -> None:
    clock = FakeClock()
    first = counting_store(project, config_dir, clock)
    second = counting_store(project, config_dir, clock)
    with (
        first.lock(5),
        pytest.raises(LockTimeout, match="held by another cidx process"),
        second.lock(0.2),
    ):
        pass
    with second.lock(0.2):  # released: free again
        pass


def test_a_lock_that_cannot_be_created_is_a_storage_error(project: Path, config_dir: Path) -> None:
    (project / ".code-indexer").write_text("a file where the directory should be")
    store = counting_store(project, config_dir, FakeClock())
    with pytest.raises(StorageError, match="is not a directory"), store.lock(1):
        pass


async def test_two_async_providers_in_one_process_refresh_once(
    project: Path, config_dir: Path, tmp_path: Path
) -> None:
    from cidx_auth.app.container import build_project

    server = CountingServer(tmp_path / "server.json", latency=(0.05, 0.05))
    expired = session_of(server.seed(ALICE.username, issued_at=1_000_000_000.0))
    providers = []
    for _ in range(2):
        container = build_project(project, SERVER_URL, server, config_dir=config_dir)
        providers.append(container.token_provider())
    with container.token_store().lock(5):
        container.token_store().save(expired)
    container.credential_store().save(ALICE)

    tokens = await asyncio.gather(*(p.aget_token() for p in providers for _ in range(5)))

    assert len(set(tokens)) == 1
    assert server.stats() == {"logins": 0, "refreshes": 1, "replays": 0}


def test_state_round_trips_and_an_unchanged_update_writes_nothing(
    project: Path, config_dir: Path
) -> None:
    layout = ProjectLayout(project)
    store = FileStateStore(layout.state, layout.state_lock)
    opened = BreakerState(Circuit.OPEN, 7, 1_800_000_300.0, None, 120.0)
    state = ClientState(opened, {"logins": 2, "refreshes": 7}, 1_800_000_000.5)
    store.update(lambda _: state)
    identity = os.stat(layout.state)

    again = store.update(lambda current: current)

    assert again == state
    assert os.stat(layout.state).st_mtime_ns == identity.st_mtime_ns
    assert os.stat(layout.state).st_ino == identity.st_ino
    assert FileStateStore(layout.state, layout.state_lock).read() == state
    document = json.loads(layout.state.read_text())
    assert document["version"] == 1
    assert document["breaker"]["circuit"] == "open"
    assert document["breaker"]["open_period"] == 120.0
    assert document["counters"] == {"logins": 2, "refreshes": 7}


def test_a_state_file_from_before_the_open_period_reads_it_as_30_s(project: Path) -> None:
    layout = ProjectLayout(project)
    layout.directory.mkdir(mode=0o700)
    breaker = {"circuit": "open", "failures": 5, "open_until": 1_800_000_300.0,
               "probe_until": None}
    layout.state.write_text(json.dumps(
        {"version": 1, "breaker": breaker, "counters": {"logins": 1}, "last_refresh": None}))
    state = FileStateStore(layout.state, layout.state_lock).read()
    assert state.breaker == BreakerState(Circuit.OPEN, 5, 1_800_000_300.0, None, 30.0)
    assert state.counters == {"logins": 1}


def test_a_damaged_state_file_reads_as_the_default_with_a_warning(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    layout = ProjectLayout(project)
    layout.directory.mkdir(mode=0o700)
    layout.state.write_text('{"version": 1, "breaker": "nonsense"}')
    store = FileStateStore(layout.state, layout.state_lock)
    with caplog.at_level(logging.WARNING, logger="cidx_auth.storage"):
        assert store.read() == ClientState()
    assert "state file is damaged" in caplog.text
    updated = store.update(bump)
    assert updated.counters == {"logins": 1}
    assert FileStateStore(layout.state, layout.state_lock).read() == updated


def test_state_survives_a_lock_it_cannot_take_in_memory_with_one_warning(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    layout = ProjectLayout(project)
    holder = FileStateStore(layout.state, layout.state_lock)
    store = FileStateStore(layout.state, layout.state_lock, lock_timeout=0.1)
    from adapters.file_lock import file_lock

    with (
        caplog.at_level(logging.WARNING, logger="cidx_auth.storage"),
        file_lock(layout.state_lock, 1, "the state lock"),
    ):
        assert store.update(bump).counters == {"logins": 1}
        assert store.update(bump).counters == {"logins": 1}  # from the file, not persisted
    assert caplog.text.count("not persisted") == 1
    assert holder.read() == ClientState()


def test_the_breaker_state_is_shared_between_providers_through_the_file(
    files: Files, project: Path, config_dir: Path
) -> None:
    from cidx_auth.domain.errors import CircuitOpen, ServerUnavailable, TransportError

    files.provider.login(ALICE)
    files.gateway.fail_next(ServerUnavailable("down"), times=50)
    files.clock.advance(700)  # expired: every call must go to the server
    for _ in range(2):
        with pytest.raises(TransportError):
            files.provider.get_token()
    # 2 tries x 3 attempts: the 5th consecutive failure opened the circuit.
    assert files.events[EventKind.BREAKER] == 1
    other = Files(project, config_dir)  # as the next CLI process would see it
    assert other.state.read().breaker.circuit is Circuit.OPEN
    with pytest.raises(CircuitOpen):
        other.container.breaker().admit()


def test_a_no_op_update_takes_no_lock(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    from adapters.file_lock import file_lock

    layout = ProjectLayout(project)
    store = FileStateStore(layout.state, layout.state_lock, lock_timeout=0.2)
    store.update(bump)
    with caplog.at_level(logging.WARNING), \
            file_lock(layout.state_lock, 1, "the state lock"):  # held by someone else
        assert store.update(lambda state: state).counters == {"logins": 1}
        assert caplog.text == ""  # it did not wait for the lock, let alone time out
        assert store.update(bump).counters == {"logins": 2}  # a real change does wait
        assert "not persisted" in caplog.text and "state lock" in caplog.text
