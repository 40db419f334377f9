"""``CountingServer`` keeps the real server's reuse rule (server-contract.md): a used
refresh token presented again revokes its whole family, and the suite's watch reads its
replays from the state file it shares with other processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from cidx_auth.domain.errors import RefreshRejected
from tests.integration.storage_helpers import ALICE, CountingServer
from tests.replay_watch import ReplayWatch


def server(tmp_path: Path) -> CountingServer:
    return CountingServer(tmp_path / "server.json", latency=(0.0, 0.0))


@pytest.mark.replays(1)
def test_reuse_revokes_the_family_and_other_families_survive(tmp_path: Path) -> None:
    auth = server(tmp_path)
    first = auth.login(ALICE).refresh_token or ""
    other = auth.login(ALICE).refresh_token or ""  # a second family
    successor = auth.refresh(first).refresh_token or ""
    with pytest.raises(RefreshRejected, match="Token replay attack detected"):
        auth.refresh(first)
    with pytest.raises(RefreshRejected, match="revoked due to replay_attack"):
        auth.refresh(successor)
    # As on the real server, a token of a revoked family is answered "revoked", not
    # counted again as a replay.
    with pytest.raises(RefreshRejected, match="revoked due to replay_attack"):
        auth.refresh(first)
    assert auth.refresh(other).refresh_token
    assert auth.stats() == {"logins": 2, "refreshes": 5, "replays": 1}


def test_an_unknown_token_is_invalid(tmp_path: Path) -> None:
    auth = server(tmp_path)
    with pytest.raises(RefreshRejected, match="Invalid refresh token"):
        auth.refresh("never-issued")
    assert auth.replays_seen() == 0


@pytest.mark.replays(1)
def test_the_watch_reads_what_another_process_recorded(tmp_path: Path) -> None:
    watch = ReplayWatch()
    watch.begin()
    mine = server(tmp_path)
    watch.add(mine)
    assert not mine.state_path.exists()  # watching writes nothing
    # Another process's server over the same file (here: another object) sees a replay.
    theirs = CountingServer(mine.state_path, latency=(0.0, 0.0))
    token = theirs.login(ALICE).refresh_token or ""
    theirs.refresh(token)
    with pytest.raises(RefreshRejected):
        theirs.refresh(token)
    failure = watch.end(0)
    assert failure is not None and "CountingServer server.json: 1" in failure
