"""The :class:`~cidx_auth.ports.StateStore` contract, on every store: ``update`` calls
``change`` at least once, whatever the storage does, and returns what its last call
returned (the breaker service reads the decision ``change`` made, on the way)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.file_state_store import FileStateStore
from adapters.memory import MemoryStateStore
from cidx_auth.domain.breaker import BreakerState, Circuit
from cidx_auth.domain.client_state import ClientState
from cidx_auth.ports import StateStore

OPENED = ClientState(BreakerState(Circuit.OPEN, 5, 2_000_000_000.0))


class Recorder:
    """A change that records each state it was given and each it returned."""

    def __init__(self, rule: Callable[[ClientState], ClientState]) -> None:
        self.rule = rule
        self.given: list[ClientState] = []
        self.returned: list[ClientState] = []

    def __call__(self, state: ClientState) -> ClientState:
        self.given.append(state)
        self.returned.append(self.rule(state))
        return self.returned[-1]


def files_in(directory: Path) -> FileStateStore:
    directory.mkdir(mode=0o700, exist_ok=True)
    return FileStateStore(directory / ".state", directory / ".state.lock")


def broken_lock(directory: Path) -> FileStateStore:
    store = files_in(directory)
    store.lock_path.mkdir()  # not a lock file: the lock is refused, the update goes on
    return store


def damaged_file(directory: Path) -> FileStateStore:
    store = files_in(directory)
    store.path.write_bytes(b"{not json")
    store.path.chmod(0o600)
    return store


STORES: dict[str, Callable[[Path], StateStore]] = {
    "memory": lambda _: MemoryStateStore(),
    "files": files_in,
    "files, lock refused": broken_lock,
    "files, damaged file": damaged_file,
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    return STORES[request.param](tmp_path / ".code-indexer")


@pytest.mark.parametrize("rule", [lambda state: state, lambda _: OPENED],
                         ids=["no change", "a change"])
def test_update_calls_change_and_returns_what_its_last_call_returned(
    store: StateStore, rule: Callable[[ClientState], ClientState]
) -> None:
    change = Recorder(rule)
    result = store.update(change)
    assert len(change.given) >= 1
    assert result == change.returned[-1]
    assert change.given[0] == ClientState()  # a new (or unreadable) store starts empty


# Without its lock the file store persists nothing (a warning says so): not in this one.
@pytest.mark.parametrize("kind", sorted(set(STORES) - {"files, lock refused"}))
def test_a_second_update_is_given_what_the_first_returned(tmp_path: Path, kind: str) -> None:
    store = STORES[kind](tmp_path / ".code-indexer")
    store.update(lambda _: OPENED)
    change = Recorder(lambda state: state)
    assert store.update(change) == OPENED
    assert change.given[-1] == OPENED
