"""A real "disk full": a child process whose writes are capped with RLIMIT_FSIZE.

The cap makes the kernel refuse to grow any file past a few hundred bytes (EFBIG), as a
full disk refuses with ENOSPC, for the child alone, without filling a real disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Files
from tests.integration.storage_helpers import ALICE, HELPERS, known_sessions, token_store

pytestmark = [pytest.mark.posix, pytest.mark.slow]

LIMIT = 300
"""Bytes: above the state file and the credentials, below an encrypted session."""


def run(command: str, project: Path, config_dir: Path) -> dict[str, Any]:
    child = subprocess.run(
        [sys.executable, str(HELPERS), command, str(project), str(config_dir), str(LIMIT)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert child.returncode == 0, child.stderr
    report: dict[str, Any] = json.loads(child.stdout)
    return report


def test_a_full_disk_keeps_the_old_token_and_leaves_no_temp_file(
    project: Path, config_dir: Path
) -> None:
    store = token_store(project, config_dir)
    with store.lock(5):
        store.save(known_sessions()[0])
    assert store.path.stat().st_size > LIMIT  # the new one cannot fit either

    report = run("full-disk", project, config_dir)

    assert report["error"][0] == "StorageError"
    assert "File too large" in report["error"][1]
    assert token_store(project, config_dir).load() == known_sessions()[0]
    assert not list(store.path.parent.glob("*.tmp-*"))


def test_a_provider_that_cannot_save_warns_once_and_still_hands_out_tokens(
    files: Files, project: Path, config_dir: Path
) -> None:
    files.credentials.save(ALICE)
    assert files.credentials.path.stat().st_size < LIMIT

    report = run("full-disk-provider", project, config_dir)

    assert report["token"].count(".") == 2
    assert report["renewed"] != report["token"]
    assert report["degraded"] == 1
    assert report["calls"] == 2  # a login, then a refresh from memory
    assert files.store.load() is None  # nothing half-written was left either
    assert not list(files.store.path.parent.glob("*.tmp-*"))
