"""cidx-auth's files beside the CIDX client's: names of their own, and the client's files
(another format) never read as damage, never set aside, overwritten, removed or chmod'ed."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from adapters.project_layout import ProjectLayout
from cidx_auth.domain.errors import StorageError
from tests.cidx_client_format import encrypt_client_blob, write_client_project
from tests.integration.conftest import Files
from tests.integration.storage_helpers import ALICE, known_sessions


def test_own_names_beside_the_cidx_client_and_the_story_names_elsewhere(tmp_path: Path) -> None:
    plain = ProjectLayout(tmp_path / "plain")
    assert plain.token.name == ".token" and plain.creds.name == ".creds"
    shared = tmp_path / "shared"
    write_client_project(shared, server_url="https://cidx.example", username="alice",
                         password="pw")
    layout = ProjectLayout(shared)
    names = {layout.token.name, layout.token_lock.name, layout.creds.name,
             layout.state.name, layout.state_lock.name}
    assert names == {".cidx-auth.token", ".cidx-auth.token.lock", ".cidx-auth.creds",
                     ".cidx-auth.state", ".cidx-auth.state.lock"}
    assert layout.settings.name == "auth.json"


def test_own_names_stick_once_used(tmp_path: Path) -> None:
    write_client_project(tmp_path, server_url="https://cidx.example", username="alice",
                         password="pw")
    ProjectLayout(tmp_path).creds.write_bytes(b"gAAAAA...")
    ProjectLayout(tmp_path).remote_config.unlink()  # `cidx` no longer set up here
    assert ProjectLayout(tmp_path).creds.name == ".cidx-auth.creds"


@pytest.fixture
def foreign(tmp_path: Path) -> bytes:
    return encrypt_client_blob({"token": "x", "version": "1.0"}, "alice", tmp_path,
                               "https://cidx.example")


def test_another_programs_token_file_is_left_alone(
    files: Files, foreign: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    files.store.path.parent.mkdir(mode=0o700)
    files.store.path.write_bytes(foreign)
    os.chmod(files.store.path, 0o644)
    with caplog.at_level(logging.INFO, logger="cidx_auth.storage"):
        assert files.store.load() is None
    assert "another program's file" in caplog.text and "left alone" in caplog.text
    with files.store.lock(5), pytest.raises(StorageError, match="will not overwrite it"):
        files.store.save(known_sessions()[0])
    with files.store.lock(5), pytest.raises(StorageError, match="will not overwrite it"):
        files.store.clear()
    assert files.store.path.read_bytes() == foreign
    assert stat.S_IMODE(files.store.path.stat().st_mode) == 0o644  # never chmod'ed
    assert not list(files.store.path.parent.glob(".token.corrupt-*"))


def test_another_programs_credentials_are_left_alone(files: Files, foreign: bytes) -> None:
    files.credentials.path.parent.mkdir(mode=0o700)
    files.credentials.path.write_bytes(foreign)
    assert files.credentials.load() is None
    with pytest.raises(StorageError, match="will not overwrite it"):
        files.credentials.save(ALICE)
    with pytest.raises(StorageError, match="will not overwrite it"):
        files.credentials.clear()
    assert files.credentials.path.read_bytes() == foreign
