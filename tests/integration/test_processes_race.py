"""Many CLI processes at once: one refresh in total, one per-user secret, no lost counts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cidx_auth.app.container import build_project
from tests.integration.storage_helpers import (
    ALICE,
    SERVER_URL,
    CountingServer,
    session_of,
    start_together,
)

pytestmark = pytest.mark.slow

PROCESSES = 50


@pytest.mark.crowd
def test_fifty_processes_with_an_expired_token_refresh_it_exactly_once(
    tmp_path: Path, project: Path, config_dir: Path
) -> None:
    server = CountingServer(tmp_path / "server.json")
    expired = session_of(server.seed(ALICE.username, issued_at=time.time() - 3600))
    container = build_project(project, SERVER_URL, server, config_dir=config_dir)
    with container.token_store().lock(5):
        container.token_store().save(expired)
    container.credential_store().save(ALICE)

    asking = tmp_path / "asking"
    asking.mkdir()
    # The server answers nobody until all fifty are inside get_token: they all race.
    results = start_together(
        PROCESSES,
        ["race", str(project), str(config_dir), str(server.state_path),
         str(tmp_path / "ready"), str(tmp_path / "go"), str(asking), str(PROCESSES)],
        tmp_path / "ready", tmp_path / "go",
    )

    assert [code for code, _, _ in results] == [0] * PROCESSES, results[0][2]
    lines = [out.split() for _, out, _ in results]
    tokens = {token for token, _, _ in lines}
    assert len(tokens) == 1
    first_done = min(float(done) for _, _, done in lines)
    racing = sum(float(start) < first_done for _, start, _ in lines)
    assert racing == PROCESSES, f"only {racing} processes overlapped"
    stats = server.stats()
    assert stats["logins"] + stats["refreshes"] == 1, stats
    assert stats["replays"] == 0
    stored = container.token_store().load()
    assert stored is not None
    assert tokens == {stored.token.raw}


@pytest.mark.crowd
def test_fifty_processes_creating_the_user_secret_agree_on_one(
    tmp_path: Path, config_dir: Path
) -> None:
    results = start_together(
        PROCESSES,
        ["secret", str(config_dir), str(tmp_path / "ready"), str(tmp_path / "go")],
        tmp_path / "ready", tmp_path / "go",
    )
    assert [code for code, _, _ in results] == [0] * PROCESSES, results[0][2]
    digests = {out.strip() for _, out, _ in results}
    assert len(digests) == 1
    assert sorted(p.name for p in config_dir.iterdir()) == ["user.secret"]  # no temp left
    assert (config_dir / "user.secret").stat().st_size == 32
